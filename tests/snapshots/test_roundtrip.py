"""Save → restore round trips through both stores, and the store API around them."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import anyio
import pytest
import zstandard

from agent_sessions.settings import Settings
from agent_sessions.snapshots import (
    InvalidSnapshotUrl,
    LocalSnapshotStore,
    SnapshotNotFound,
    SnapshotStore,
    store_from_settings,
)
from agent_sessions.snapshots.s3 import S3SnapshotStore

from .conftest import leftovers, make_tree, tree_digest

pytestmark = pytest.mark.anyio


async def test_round_trip_is_identical(store: SnapshotStore, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    make_tree(ws)
    before = tree_digest(ws)

    info = await store.save(ws, "snap-1")

    assert info.size_bytes > 7 << 20  # the random megabytes do not compress
    assert len(info.sha256) == 64
    assert str(tmp_path) not in info.url
    assert await store.exists(info.url)
    assert tree_digest(ws) == before, "saving must not touch the workspace"

    restored = tmp_path / "restored" / "ws"
    await store.restore(info.url, restored)
    assert tree_digest(restored) == before
    assert leftovers(restored) == [], "no staging directory left behind"


async def test_restore_replaces_an_existing_workspace(store: SnapshotStore, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    make_tree(ws, large=False)
    expected = tree_digest(ws)
    info = await store.save(ws, "snap-2")

    (ws / "added-later.txt").write_text("should vanish")
    (ws / "src" / "pkg" / "mod.py").write_text("changed")
    (ws / "link-to-dir").unlink()
    await store.restore(info.url, ws)

    assert tree_digest(ws) == expected
    assert leftovers(ws) == []
    await store.restore(info.url, ws)  # idempotent
    assert tree_digest(ws) == expected


async def test_fresh_restore_extracts_in_place(store: SnapshotStore, tmp_path: Path) -> None:
    """``fresh``: the caller made an empty directory for this restore (a new filesystem) and
    discards it on failure; nothing is staged beside it, and a non-empty one is refused."""
    ws = tmp_path / "ws"
    make_tree(ws, large=False)
    expected = tree_digest(ws)
    info = await store.save(ws, "fresh")
    target = tmp_path / "mount" / "point"
    target.mkdir(parents=True)

    await store.restore(info.url, target, fresh=True)

    assert tree_digest(target) == expected
    assert sorted(p.name for p in target.parent.iterdir()) == ["point"]
    with pytest.raises(ValueError, match="not empty"):
        await store.restore(info.url, target, fresh=True)
    assert tree_digest(target) == expected


async def test_empty_workspace_round_trip(store: SnapshotStore, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    info = await store.save(ws, "empty")
    target = tmp_path / "target"
    make_tree(target, large=False)
    await store.restore(info.url, target)
    assert list(target.iterdir()) == []


async def test_special_files_are_skipped(store: SnapshotStore, tmp_path: Path) -> None:
    """FIFOs and sockets carry no data and cannot be restored safely: left out, not fatal."""
    import socket

    ws = tmp_path / "ws"
    ws.mkdir()
    os.mkfifo(ws / "pipe")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(ws / "sock"))
    (ws / "data.txt").write_text("kept")
    try:
        info = await store.save(ws, "special")
    finally:
        sock.close()
    restored = tmp_path / "restored"
    await store.restore(info.url, restored)
    assert sorted(p.name for p in restored.iterdir()) == ["data.txt"]


async def test_symlinks_are_archived_not_followed(store: SnapshotStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "host-secret").write_text("must not be archived")
    ws = tmp_path / "ws"
    ws.mkdir()
    os.symlink(outside, ws / "dir-link")
    os.symlink(outside / "host-secret", ws / "file-link")
    os.symlink("../outside/host-secret", ws / "relative-escape")

    info = await store.save(ws, "links")
    restored = tmp_path / "restored"
    await store.restore(info.url, restored)

    for name in ("dir-link", "file-link", "relative-escape"):
        assert (restored / name).is_symlink()
        assert os.readlink(restored / name) == os.readlink(ws / name)
    assert sorted(p.name for p in restored.iterdir()) == [
        "dir-link",
        "file-link",
        "relative-escape",
    ]


async def test_archive_never_contains_followed_content(
    local_store: LocalSnapshotStore, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "host-secret").write_bytes(b"TOP-SECRET-CANARY")
    ws = tmp_path / "ws"
    ws.mkdir()
    os.symlink(outside, ws / "dir-link")
    os.symlink(outside / "host-secret", ws / "file-link")

    await local_store.save(ws, "canary")

    raw = (local_store.root / "canary.tar.zst").read_bytes()
    plain = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)).read()
    assert b"TOP-SECRET-CANARY" not in plain
    with tarfile.open(fileobj=io.BytesIO(plain)) as tar:
        kinds = {m.name: m.issym() for m in tar.getmembers()}
    assert kinds == {"dir-link": True, "file-link": True}


async def test_archive_is_readable_by_the_tar_cli(
    local_store: LocalSnapshotStore, tmp_path: Path
) -> None:
    """Operators can inspect a snapshot with standard tools: ``tar -I zstd -xf``."""
    ws = tmp_path / "ws"
    make_tree(ws, large=False)
    await local_store.save(ws, "cli")
    out = tmp_path / "cli-out"
    out.mkdir()
    archive = local_store.root / "cli.tar.zst"
    await anyio.run_process(["tar", "-I", "zstd", "-xf", str(archive), "-C", str(out)])
    assert (out / "src" / "pkg" / "mod.py").read_text() == (ws / "src/pkg/mod.py").read_text()
    sidecar = archive.with_name("cli.tar.zst.sha256")
    await anyio.run_process(["sha256sum", "-c", "--quiet", sidecar.name], cwd=archive.parent)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
async def test_restore_applies_owner(store: SnapshotStore, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    make_tree(ws, large=False)
    info = await store.save(ws, "owned")
    restored = tmp_path / "restored"
    await store.restore(info.url, restored, owner=(54321, 54322))
    for path in [restored, *restored.rglob("*")]:
        st = path.lstat()
        assert (st.st_uid, st.st_gid) == (54321, 54322), path


async def test_missing_and_deleted_snapshots(store: SnapshotStore, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    make_tree(ws, large=False)
    info = await store.save(ws, "gone")
    await store.delete(info.url)
    await store.delete(info.url)  # idempotent
    assert not await store.exists(info.url)
    target = tmp_path / "target"
    make_tree(target, large=False)
    before = tree_digest(target)
    with pytest.raises(SnapshotNotFound):
        await store.restore(info.url, target)
    assert tree_digest(target) == before


@pytest.mark.parametrize(
    "url",
    [
        "local://snapshots/../etc/passwd.tar.zst",
        "local://snapshots/a/b.tar.zst",
        "local://snapshots/.hidden.tar.zst",
        "file:///etc/passwd",
        "s3://other-bucket/snaps/x.tar.zst",
        "s3://snapshots/snaps/../x.tar.zst",
        "",
    ],
)
async def test_foreign_urls_are_refused(store: SnapshotStore, tmp_path: Path, url: str) -> None:
    assert not store.owns(url)
    with pytest.raises(InvalidSnapshotUrl):
        await store.restore(url, tmp_path / "ws")
    with pytest.raises(InvalidSnapshotUrl):
        await store.exists(url)


@pytest.mark.parametrize("snapshot_id", ["", "../x", "a/b", ".x", "x" * 200, "a\x00b"])
async def test_bad_ids_are_refused(
    local_store: LocalSnapshotStore, tmp_path: Path, snapshot_id: str
) -> None:
    with pytest.raises(InvalidSnapshotUrl):
        await local_store.save(tmp_path, snapshot_id)


def test_store_from_settings(tmp_path: Path) -> None:
    local = store_from_settings(Settings(data_dir=tmp_path))
    assert isinstance(local, LocalSnapshotStore)
    assert local.root == (tmp_path / "snapshots").absolute()
    s3 = store_from_settings(
        Settings(
            data_dir=tmp_path,
            snapshot_store="s3",
            s3_bucket="b",
            s3_prefix="p",
            s3_endpoint_url="http://127.0.0.1:1",
        )
    )
    assert isinstance(s3, S3SnapshotStore)
    assert (s3.bucket, s3.prefix) == ("b", "p/")
    assert s3.owns("s3://b/p/x.tar.zst")
