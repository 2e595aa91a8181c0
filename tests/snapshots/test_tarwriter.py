"""The fast tar writer produces exactly what tarfile would, and tarfile reads it back."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from agent_sessions.snapshots._tarwriter import TarWriter, _header

CASES = [
    ("file.txt", tarfile.REGTYPE, 0o644, 1000, 1000, 1_700_000_000, 12, ""),
    ("dir/", tarfile.DIRTYPE, 0o755, 0, 0, 0, 0, ""),
    ("link", tarfile.SYMTYPE, 0o777, 1, 2, 5, 0, "../target"),
    ("hard", tarfile.LNKTYPE, 0o600, 3, 4, 6, 0, "file.txt"),
    ("unicodé ✓/name", tarfile.REGTYPE, 0o4755, 0, 0, 7, 1, ""),
    ("bad-\udcff-bytes", tarfile.REGTYPE, 0o640, 0, 0, 8, 1, ""),
    ("x" * 100, tarfile.REGTYPE, 0o644, 0, 0, 9, 1, ""),  # exactly the field size
    ("y" * 101, tarfile.REGTYPE, 0o644, 0, 0, 9, 1, ""),  # GNU long name (fallback)
    ("l", tarfile.SYMTYPE, 0o777, 0, 0, 9, 0, "t" * 150),  # GNU long link (fallback)
    ("big", tarfile.REGTYPE, 0o644, 0, 0, 9, 9 << 30, ""),  # > 8 GiB: base-256 (fallback)
    ("uid", tarfile.REGTYPE, 0o644, 3_000_000, 3_000_000, 9, 0, ""),  # id beyond octal
]


@pytest.mark.parametrize("case", CASES, ids=[c[0][:12] for c in CASES])
def test_header_matches_tarfile(case: tuple[str, bytes, int, int, int, int, int, str]) -> None:
    name, kind, mode, uid, gid, mtime, size, linkname = case
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid = kind, mode, uid, gid
    info.mtime, info.size, info.linkname = mtime, size, linkname
    info.uname = info.gname = ""
    expected = info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
    assert _header(name, kind, mode, uid, gid, mtime, size, linkname) == expected


def test_archive_reads_back() -> None:
    out = io.BytesIO()
    writer = TarWriter(out.write)
    r, w = os.pipe()
    payload = os.urandom(3000)
    os.write(w, payload)
    os.close(w)
    writer.add("d/", tarfile.DIRTYPE, mode=0o700, uid=0, gid=0, mtime=1)
    writer.add("d/f", tarfile.REGTYPE, mode=0o640, uid=0, gid=0, mtime=2, size=3000, fd=r)
    writer.add("d/" + "n" * 120, tarfile.SYMTYPE, mode=0o777, uid=0, gid=0, mtime=3, linkname="f")
    writer.close()
    os.close(r)
    assert len(out.getvalue()) % tarfile.RECORDSIZE == 0
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["d", "d/f", "d/" + "n" * 120]
        assert [m.mode for m in members] == [0o700, 0o640, 0o777]
        extracted = tar.extractfile("d/f")
        assert extracted is not None and extracted.read() == payload
