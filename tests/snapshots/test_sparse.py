"""Holes survive a snapshot: sparse files stay sparse, their bytes exactly as they were.

Issue 14 finding 6: three ``truncate -s 1G`` files (a 100 KB snapshot) took 3 GiB of disk after
a restore. The archive records holes (GNU sparse members, as ``tar --sparse`` writes them), the
extractor leaves a hole wherever a block of zeros arrives (so archives of older versions, which
hold the zeros themselves, restore sparse too), and GNU tar and tarfile read what we write.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import anyio
import pytest
import zstandard

from agent_sessions.snapshots import LocalSnapshotStore, SnapshotCorrupt, SnapshotStore

from .conftest import leftovers, tree_digest

pytestmark = pytest.mark.anyio

GiB = 1 << 30
MiB = 1 << 20
BLOCK = 4096


def allocated(root: Path) -> int:
    """Bytes of disk the files under ``root`` occupy (``du``, not their apparent size)."""
    total = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def write_at(path: Path, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def sparse_tree(root: Path) -> None:
    """Every shape of hole a round trip must keep, each with real bytes where they belong."""
    root.mkdir()
    (root / "all-hole").touch()
    os.truncate(root / "all-hole", 64 * MiB)
    write_at(root / "data-in-the-middle", 20 * MiB + 123, b"middle" * 1000)
    os.truncate(root / "data-in-the-middle", 50 * MiB)
    write_at(root / "ends-in-a-hole", 0, os.urandom(10_000))
    os.truncate(root / "ends-in-a-hole", 30 * MiB)
    write_at(root / "ends-in-data", 8 * MiB, b"tail")  # size 8 MiB + 4: not block-aligned
    write_at(root / "unaligned", 5 * MiB + 7, b"x")
    os.truncate(root / "unaligned", 9 * MiB + 4097)
    # Many holes: the map needs GNU extension blocks (4 entries in the header, 21 per block).
    for i in range(60):
        write_at(root / "many-holes", i * 256 * 1024 + 17, os.urandom(5000))
    os.truncate(root / "many-holes", 16 * MiB)
    write_at(root / ("long-name-" + "n" * 120), 3 * MiB, b"a long name needs a GNU L header")
    os.link(root / "data-in-the-middle", root / "hard-link")
    (root / "plain.txt").write_text("an ordinary file\n")
    (root / "zeros-written").write_bytes(bytes(3 * MiB) + b"end")  # allocated zeros


def contents(root: Path) -> dict[str, tuple[int, str]]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest = hashlib.sha256()
            with path.open("rb") as f:
                while chunk := f.read(MiB):
                    digest.update(chunk)
            out[str(path.relative_to(root))] = (path.stat().st_size, digest.hexdigest())
    return out


async def test_three_sparse_gigabytes_restore_sparse(store: SnapshotStore, tmp_path: Path) -> None:
    """The review's case: ``truncate -s 1G`` three times, snapshot, restore, ``du``."""
    ws = tmp_path / "ws"
    ws.mkdir()
    for name in ("a", "b", "c"):
        (ws / name).touch()
        os.truncate(ws / name, GiB)
    assert allocated(ws) == 0

    info = await store.save(ws, "sparse")
    assert info.size_bytes < MiB
    restored = tmp_path / "restored" / "ws"
    await store.restore(info.url, restored)

    assert {p.name: p.stat().st_size for p in restored.iterdir()} == {"a": GiB, "b": GiB, "c": GiB}
    assert allocated(restored) < 4 * MiB, f"{allocated(restored) / MiB:.0f} MiB on disk"
    assert leftovers(restored) == []


async def test_sparse_contents_round_trip_exactly(store: SnapshotStore, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    sparse_tree(ws)
    before, digest = contents(ws), tree_digest(ws)
    info = await store.save(ws, "shapes")
    restored = tmp_path / "restored"
    await store.restore(info.url, restored)

    assert contents(restored) == before
    assert tree_digest(restored) == digest  # modes, mtimes, the hard link
    assert allocated(restored) <= allocated(ws) + MiB
    assert allocated(restored / "all-hole") == 0
    assert allocated(restored / "zeros-written") <= 2 * BLOCK  # zeros become a hole too


async def test_archive_of_an_older_version_restores_sparse(
    local_store: LocalSnapshotStore, tmp_path: Path
) -> None:
    """Older versions stored the zeros themselves, as plain members: still restored sparse."""
    members = {
        "zeros": bytes(64 * MiB),
        "zeros-then-data": bytes(32 * MiB) + b"data" + bytes(BLOCK * 3 + 5),
        "data-then-zeros": os.urandom(BLOCK + 1) + bytes(16 * MiB),
        "small": b"\0\0\0",
    }
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    local_store.root.mkdir(parents=True)
    (local_store.root / "old.tar.zst").write_bytes(
        zstandard.ZstdCompressor().compress(raw.getvalue())
    )
    ws = tmp_path / "ws"
    await local_store.restore("local://snapshots/old.tar.zst", ws)

    for name, data in members.items():
        assert (ws / name).read_bytes() == data, name
    assert allocated(ws) <= 4 * BLOCK, f"{allocated(ws)} bytes on disk"


async def test_gnu_tar_and_tarfile_read_the_sparse_archive(
    local_store: LocalSnapshotStore, tmp_path: Path
) -> None:
    """Operators inspect snapshots with ``tar -I zstd``: sparse members list with their real
    size and extract to the same bytes (sparse again); Python's tarfile reads them too."""
    ws = tmp_path / "ws"
    sparse_tree(ws)
    before = contents(ws)
    await local_store.save(ws, "cli")
    archive = local_store.root / "cli.tar.zst"

    listing = await anyio.run_process(["tar", "-I", "zstd", "-tvf", str(archive)])
    sizes = {
        line.split()[-1]: int(line.split()[2]) for line in listing.stdout.decode().splitlines()
    }
    assert sizes["all-hole"] == 64 * MiB and sizes["ends-in-a-hole"] == 30 * MiB
    out = tmp_path / "cli-out"
    out.mkdir()
    await anyio.run_process(["tar", "-I", "zstd", "-xf", str(archive), "-C", str(out)])
    assert contents(out) == before
    assert allocated(out) <= allocated(ws) + MiB

    with archive.open("rb") as f:
        plain = zstandard.ZstdDecompressor().stream_reader(f).read()
    with tarfile.open(fileobj=io.BytesIO(plain)) as tar:
        for name in ("many-holes", "ends-in-a-hole", "unaligned", "all-hole"):
            member = tar.getmember(name)
            assert member.issparse(), name
            extracted = tar.extractfile(member)
            assert extracted is not None
            assert extracted.read() == (ws / name).read_bytes(), name


async def test_huge_maps_are_coarsened_not_refused(
    local_store: LocalSnapshotStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file with more holes than a map may hold keeps the biggest ones in the map; the rest
    travel as zeros and come back as holes all the same."""
    from agent_sessions.snapshots import _sparse

    monkeypatch.setattr(_sparse, "MAX_EXTENTS", 8)
    ws = tmp_path / "ws"
    ws.mkdir()
    for i in range(40):
        write_at(ws / "f", i * 64 * 1024 * (1 + i % 3), b"%d" % i)
    before = contents(ws)
    info = await local_store.save(ws, "coarse")
    restored = tmp_path / "restored"
    await local_store.restore(info.url, restored)
    assert contents(restored) == before
    assert allocated(restored) <= allocated(ws)


# --- damaged and hostile sparse members ------------------------------------------------------


def _sparse_member(
    name: str, entries: list[tuple[int, int]], realsize: int, data: bytes, *, ext: bool = False
) -> bytes:
    """A GNU sparse member by hand: header with up to 4 map entries (the rest in one
    extension block when ``ext``), then ``data``."""
    info = tarfile.TarInfo(name)
    info.type = tarfile.GNUTYPE_SPARSE
    info.size = len(data)
    block = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    slots = b"".join(
        tarfile.itn(o, 12, tarfile.GNU_FORMAT) + tarfile.itn(n, 12, tarfile.GNU_FORMAT)
        for o, n in entries[:4]
    )
    block[386 : 386 + len(slots)] = slots
    block[482] = 1 if ext else 0
    block[483:495] = tarfile.itn(realsize, 12, tarfile.GNU_FORMAT)
    block[148:156] = b" " * 8
    block[148:155] = b"%06o\0" % tarfile.calc_chksums(bytes(block))[0]
    out = bytes(block)
    if ext:
        extension = bytearray(512)
        rest = b"".join(
            tarfile.itn(o, 12, tarfile.GNU_FORMAT) + tarfile.itn(n, 12, tarfile.GNU_FORMAT)
            for o, n in entries[4:]
        )
        extension[: len(rest)] = rest
        out += bytes(extension)
    return out + data + bytes(-len(data) % 512)


HOSTILE = {
    "overlapping": ([(0, 10), (5, 10)], 100, bytes(20)),
    "beyond-the-end": ([(90, 20)], 100, bytes(20)),
    "data-size-mismatch": ([(0, 10)], 100, bytes(30)),
    "unsorted": ([(50, 10), (0, 10)], 100, bytes(20)),
    "negative-size": ([(0, 10)], -1, bytes(10)),
    "huge-size": ([(0, 10)], 1 << 70, bytes(10)),
}


@pytest.mark.parametrize("case", HOSTILE)
async def test_bad_sparse_maps_are_refused(
    local_store: LocalSnapshotStore, tmp_path: Path, case: str
) -> None:
    entries, realsize, data = HOSTILE[case]
    raw = _sparse_member("victim", entries, realsize, data) + bytes(1024)
    local_store.root.mkdir(parents=True)
    (local_store.root / "bad.tar.zst").write_bytes(zstandard.ZstdCompressor().compress(raw))
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "kept").write_text("untouched")
    with pytest.raises(SnapshotCorrupt):
        await local_store.restore("local://snapshots/bad.tar.zst", ws)
    assert sorted(p.name for p in ws.iterdir()) == ["kept"]
    assert leftovers(ws) == []


async def test_a_map_too_long_is_refused(
    local_store: LocalSnapshotStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The map is held in memory before the data: beyond the writer's own bound, refused."""
    from agent_sessions.snapshots import _sparse

    monkeypatch.setattr(_sparse, "MAX_EXTENTS", 6)
    entries = [(i * 100, 10) for i in range(8)]
    raw = _sparse_member("long-map", entries, 1000, bytes(80), ext=True) + bytes(1024)
    local_store.root.mkdir(parents=True)
    (local_store.root / "long.tar.zst").write_bytes(zstandard.ZstdCompressor().compress(raw))
    with pytest.raises(SnapshotCorrupt):
        await local_store.restore("local://snapshots/long.tar.zst", tmp_path / "ws")


async def test_a_hand_made_sparse_member_with_an_extension_block(
    local_store: LocalSnapshotStore, tmp_path: Path
) -> None:
    entries = [(i * 1000, 3) for i in range(7)] + [(10_000, 0)]
    data = b"".join(b"%03d" % i for i in range(7))
    raw = _sparse_member("hand", entries, 10_000, data, ext=True) + bytes(1024)
    local_store.root.mkdir(parents=True)
    (local_store.root / "hand.tar.zst").write_bytes(zstandard.ZstdCompressor().compress(raw))
    ws = tmp_path / "ws"
    await local_store.restore("local://snapshots/hand.tar.zst", ws)
    expected = bytearray(10_000)
    for i in range(7):
        expected[i * 1000 : i * 1000 + 3] = b"%03d" % i
    assert (ws / "hand").read_bytes() == bytes(expected)


async def test_offsets_beyond_8_gib(store: SnapshotStore, tmp_path: Path) -> None:
    """Octal header fields end at 8 GiB; further offsets and sizes are base-256 numbers."""
    ws = tmp_path / "ws"
    ws.mkdir()
    write_at(ws / "far", 9 * GiB + 5, b"far away")
    os.truncate(ws / "far", 12 * GiB + 1)
    info = await store.save(ws, "far")
    restored = tmp_path / "restored"
    await store.restore(info.url, restored)
    assert (restored / "far").stat().st_size == 12 * GiB + 1
    with (restored / "far").open("rb") as f:
        f.seek(9 * GiB)
        assert f.read(13) == b"\0" * 5 + b"far away"
    assert allocated(restored) <= 2 * BLOCK
