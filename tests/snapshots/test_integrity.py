"""Damaged and malicious archives: a clear error, and the workspace and host untouched."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from agent_sessions.snapshots import (
    LocalSnapshotStore,
    SnapshotCorrupt,
    UnsafeArchive,
)
from agent_sessions.snapshots.s3 import S3SnapshotStore

from .conftest import leftovers, make_tree, tree_digest

pytestmark = pytest.mark.anyio


def _flip_middle(data: bytes) -> bytes:
    i = len(data) // 2
    return data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]


DAMAGES: dict[str, Callable[[bytes], bytes]] = {
    "flipped-byte": _flip_middle,
    "truncated-half": lambda d: d[: len(d) // 2],
    "truncated-tail": lambda d: d[:-7],
    "garbage-appended": lambda d: d + b"\x00garbage",
    "not-zstd": lambda d: b"this is not an archive" * 100,
    "empty": lambda d: b"",
}


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("keep_hash", [True, False], ids=["hash-known", "hash-lost"])
async def test_damaged_local_archive_is_refused(
    local_store: LocalSnapshotStore, tmp_path: Path, damage: str, keep_hash: bool
) -> None:
    """Without the recorded hash (lost in a crash), zstd's frame checksum still catches it."""
    ws = tmp_path / "ws"
    make_tree(ws)
    info = await local_store.save(ws, "victim")
    archive = local_store.root / "victim.tar.zst"
    archive.write_bytes(DAMAGES[damage](archive.read_bytes()))
    if not keep_hash:
        archive.with_name("victim.tar.zst.sha256").unlink()
    (ws / "edited-after-snapshot").write_text("keep me")
    before = tree_digest(ws)

    with pytest.raises(SnapshotCorrupt):
        await local_store.restore(info.url, ws)
    assert tree_digest(ws) == before, "the workspace must be untouched"
    assert leftovers(ws) == []


@pytest.mark.parametrize("damage", ["flipped-byte", "truncated-half"])
async def test_damaged_s3_object_is_refused(
    s3_store: S3SnapshotStore, tmp_path: Path, damage: str
) -> None:
    ws = tmp_path / "ws"
    make_tree(ws)
    info = await s3_store.save(ws, "victim")
    key = "snaps/victim.tar.zst"
    client = s3_store.client
    head = client.head_object(Bucket=s3_store.bucket, Key=key)
    body = client.get_object(Bucket=s3_store.bucket, Key=key)["Body"].read()
    client.put_object(
        Bucket=s3_store.bucket, Key=key, Body=DAMAGES[damage](body), Metadata=head["Metadata"]
    )
    before = tree_digest(ws)
    with pytest.raises(SnapshotCorrupt):
        await s3_store.restore(info.url, ws)
    assert tree_digest(ws) == before
    assert leftovers(ws) == []


# --- malicious archives ------------------------------------------------------------------


def _member(name: str, kind: bytes = tarfile.REGTYPE, **attrs: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


def _plant(store: LocalSnapshotStore, snapshot_id: str, members: list[tarfile.TarInfo]) -> str:
    """Write a hand-made archive where the store keeps its snapshots (an attacker with write
    access to the snapshot store, or a tampered object)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info in members:
            data = b"payload\n" if info.isreg() else None
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    store.root.mkdir(parents=True, exist_ok=True)
    compressed = zstandard.ZstdCompressor().compress(raw.getvalue())
    (store.root / f"{snapshot_id}.tar.zst").write_bytes(compressed)
    return f"local://snapshots/{snapshot_id}.tar.zst"


def _escaped_to_tmp() -> bool:
    return os.path.lexists("/tmp/escaped.txt")


REJECTED = {
    "dotdot-path": [_member("../escaped.txt")],
    "dotdot-nested": [_member("a/../../escaped.txt")],
    "write-through-abs-symlink": [
        _member("link", tarfile.SYMTYPE, linkname="/tmp"),
        _member("link/escaped.txt"),
    ],
    "write-through-dotdot-symlink": [
        _member("up", tarfile.SYMTYPE, linkname=".."),
        _member("up/escaped.txt"),
    ],
    "overwrite-through-symlink": [
        _member("victim", tarfile.SYMTYPE, linkname="../host-file"),
        _member("victim"),
    ],
    "abs-hardlink": [_member("hl", tarfile.LNKTYPE, linkname="/etc/passwd")],
    "dotdot-hardlink": [_member("hl", tarfile.LNKTYPE, linkname="../host-file")],
    "hardlink-via-symlink": [
        _member("s", tarfile.SYMTYPE, linkname="../host-file"),
        _member("hl", tarfile.LNKTYPE, linkname="s"),
    ],
    "char-device": [_member("null", tarfile.CHRTYPE, devmajor=1, devminor=3)],
    "block-device": [_member("disk", tarfile.BLKTYPE, devmajor=8, devminor=0)],
    "fifo": [_member("pipe", tarfile.FIFOTYPE)],
    # Links that stay inside the tree are still never written through or hard-linked to.
    "write-through-inner-dir-symlink": [
        _member("real", tarfile.DIRTYPE),
        _member("inner", tarfile.SYMTYPE, linkname="real"),
        _member("inner/file.txt"),
    ],
    "symlink-through-inner-dir-symlink": [
        _member("real", tarfile.DIRTYPE),
        _member("inner", tarfile.SYMTYPE, linkname="real"),
        _member("inner/deeper", tarfile.SYMTYPE, linkname="/etc"),
    ],
    "hardlink-to-inner-symlink": [
        _member("file.txt"),
        _member("s", tarfile.SYMTYPE, linkname="file.txt"),
        _member("hl", tarfile.LNKTYPE, linkname="s"),
    ],
    "hardlink-to-later-member": [
        _member("hl", tarfile.LNKTYPE, linkname="file.txt"),
        _member("file.txt"),
    ],
    "hardlink-to-directory": [
        _member("d", tarfile.DIRTYPE),
        _member("hl", tarfile.LNKTYPE, linkname="d"),
    ],
    "file-replacing-directory": [_member("d", tarfile.DIRTYPE), _member("d")],
    "directory-over-symlink": [
        _member("d", tarfile.SYMTYPE, linkname="/tmp"),
        _member("d", tarfile.DIRTYPE, mode=0o777),
    ],
}


@pytest.mark.parametrize("case", REJECTED)
async def test_malicious_archive_is_rejected(
    local_store: LocalSnapshotStore, tmp_path: Path, case: str
) -> None:
    host_file = tmp_path / "work" / "host-file"
    ws = tmp_path / "work" / "ws"
    make_tree(ws, large=False)
    host_file.write_text("host data")
    url = _plant(local_store, case, REJECTED[case])
    before = tree_digest(ws)
    outside_before = sorted(p.name for p in (tmp_path / "work").iterdir())

    with pytest.raises(UnsafeArchive):
        await local_store.restore(url, ws)

    assert tree_digest(ws) == before
    assert host_file.read_text() == "host data"
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == outside_before
    assert not (tmp_path / "escaped.txt").exists()
    assert not _escaped_to_tmp()


async def test_dangerous_bits_and_names_are_neutralised(
    local_store: LocalSnapshotStore, tmp_path: Path
) -> None:
    """What can be made harmless is: absolute names land inside, special mode bits go,
    ownership is not taken from the archive, and links to outside stay inert links."""
    url = _plant(
        local_store,
        "neutral",
        [
            _member("/abs/name.txt"),
            _member("setuid", mode=0o4755),
            _member("setgid", mode=0o2755),
            _member("sticky-dir", tarfile.DIRTYPE, mode=0o1777),
            _member("owned-by-root", uid=0, gid=0, uname="root", gname="root"),
            _member("abs-link", tarfile.SYMTYPE, linkname="/etc/shadow"),
            _member("up-link", tarfile.SYMTYPE, linkname="../../.."),
        ],
    )
    ws = tmp_path / "ws"
    await local_store.restore(url, ws, owner=(4242, 4242) if os.geteuid() == 0 else None)

    assert (ws / "abs" / "name.txt").read_text() == "payload\n"
    assert stat.S_IMODE((ws / "setuid").stat().st_mode) == 0o755
    assert stat.S_IMODE((ws / "setgid").stat().st_mode) == 0o755
    assert stat.S_IMODE((ws / "sticky-dir").stat().st_mode) == 0o777
    if os.geteuid() == 0:
        assert (ws / "owned-by-root").stat().st_uid == 4242
    assert os.readlink(ws / "abs-link") == "/etc/shadow"
    assert os.readlink(ws / "up-link") == "../../.."


async def test_tar_without_end_marker_is_refused(
    local_store: LocalSnapshotStore, tmp_path: Path
) -> None:
    """A stream cut at a member boundary (zstd itself does not notice a frame that simply
    stops) is damaged, not a smaller workspace."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for i in range(3):
            info = _member(f"f{i}.txt", size=3)
            tar.addfile(info, io.BytesIO(b"abc"))
        cut = tar.offset  # before the end-of-archive blocks
    local_store.root.mkdir(parents=True, exist_ok=True)
    archive = local_store.root / "cut.tar.zst"
    archive.write_bytes(zstandard.ZstdCompressor().compress(raw.getvalue()[:cut]))
    ws = tmp_path / "ws"
    with pytest.raises(SnapshotCorrupt):
        await local_store.restore("local://snapshots/cut.tar.zst", ws)
    assert not ws.exists()
    assert leftovers(ws) == []


async def test_pax_gnu_and_duplicate_members_are_read(
    local_store: LocalSnapshotStore, tmp_path: Path
) -> None:
    """Archives made by other tools: PAX (local and global) headers, ``./`` prefixes, parents
    missing from the archive, and a later member replacing an earlier file (``tar -r``)."""
    long_name = "p" * 80 + "/" + "q" * 90 + "/é" * 30
    raw = io.BytesIO()
    with tarfile.open(
        fileobj=raw, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"comment": "global"}
    ) as tar:
        for name, data, mtime in [
            ("./dup.txt", b"first", 1_000_000),
            (long_name, b"long", 1_500_000_000.5),
            ("implicit/parent/file.txt", b"deep", 2_000_000),
            ("dup.txt", b"second", 3_000_000),
        ]:
            info = _member(name, size=len(data), mtime=mtime, mode=0o640)
            tar.addfile(info, io.BytesIO(data))
        tar.addfile(_member("long-link", tarfile.SYMTYPE, linkname="t" * 300))
    local_store.root.mkdir(parents=True, exist_ok=True)
    (local_store.root / "pax.tar.zst").write_bytes(
        zstandard.ZstdCompressor().compress(raw.getvalue())
    )
    ws = tmp_path / "ws"
    await local_store.restore("local://snapshots/pax.tar.zst", ws)

    assert (ws / "dup.txt").read_bytes() == b"second"
    assert int((ws / "dup.txt").stat().st_mtime) == 3_000_000
    assert (ws / long_name).read_bytes() == b"long"
    assert (ws / long_name).stat().st_mtime == 1_500_000_000.5
    assert stat.S_IMODE((ws / long_name).stat().st_mode) == 0o640
    assert (ws / "implicit" / "parent" / "file.txt").read_bytes() == b"deep"
    assert os.readlink(ws / "long-link") == "t" * 300
