"""Fixtures for the snapshot store tests: workspace trees, both stores, a local S3 server."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_sessions.snapshots import LocalSnapshotStore, SnapshotStore
from agent_sessions.snapshots.s3 import S3SnapshotStore

MB = 1 << 20


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_tree(root: Path, *, large: bool = True) -> None:
    """A workspace exercising what a round trip must keep."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "pkg" / "mod.py").write_text("print('hello')\n" * 50)
    (root / "run.sh").write_text("#!/bin/sh\necho ok\n")
    (root / "run.sh").chmod(0o755)
    (root / "secret.txt").write_text("only me\n")
    (root / "secret.txt").chmod(0o600)
    (root / "shared.txt").write_text("group writable\n")
    (root / "shared.txt").chmod(0o664)
    (root / "readonly.txt").write_text("r/o\n")
    (root / "readonly.txt").chmod(0o444)
    (root / "private").mkdir(mode=0o700)
    (root / "private").chmod(0o700)
    (root / "private" / "key").write_bytes(b"\x00\x01binary\xff" * 100)
    (root / "sealed").mkdir()
    (root / "sealed" / "inside.txt").write_text("in a read-only dir\n")
    (root / "sealed").chmod(0o555)
    (root / "empty" / "deeper" / "deepest").mkdir(parents=True)
    (root / "empty-top").mkdir()
    (root / "empty-file").write_bytes(b"")
    os.symlink("src/pkg/mod.py", root / "link-to-file")
    os.symlink("src/pkg", root / "link-to-dir")
    os.symlink("does-not-exist", root / "dangling")
    os.symlink("/usr/bin/python3", root / "venv-python")  # absolute: kept as an inert link
    os.link(root / "src" / "pkg" / "mod.py", root / "hardlink.py")
    long_dir = root / ("d" * 120)
    long_dir.mkdir()
    (long_dir / ("f" * 150)).write_text("long names need GNU/PAX headers\n")
    (root / "unicodé ✓.txt").write_text("non-ASCII name\n")
    if large:
        text = b"".join(b"line %d of a large text file\n" % i for i in range(200_000))
        (root / "large.txt").write_bytes(text[: 6 * MB])
        (root / "large.bin").write_bytes(os.urandom(7 * MB))


def tree_digest(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything a restore must preserve, per path: type, mode, content/target, mtime."""
    out: dict[str, tuple[object, ...]] = {}
    inodes: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st = path.lstat()
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", oct(mode))
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                linked = inodes.setdefault(st.st_ino, rel) if st.st_nlink > 1 else None
                out[rel] = ("file", oct(mode), digest, int(st.st_mtime), linked is not None)
    return out


def leftovers(path: Path) -> list[str]:
    """Staging or parked directories a restore left beside ``path`` (should be none)."""
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible HTTP server (moto's server mode) on a free loopback port."""
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in _AWS_ENV}
    os.environ.update(_AWS_ENV)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture
def s3_store(s3_endpoint: str) -> Iterator[S3SnapshotStore]:
    import boto3

    bucket = f"snapshots-{uuid.uuid4().hex[:12]}"
    with contextlib.closing(boto3.client("s3", endpoint_url=s3_endpoint)) as admin:
        admin.create_bucket(Bucket=bucket)
    # 5 MiB parts (S3's minimum) so the test archives span several parts.
    store = S3SnapshotStore(
        bucket=bucket, prefix="snaps/", endpoint_url=s3_endpoint, part_size=5 * MB
    )
    yield store
    store.close()  # its pooled connections, not left to the garbage collector


@pytest.fixture
def local_store(tmp_path: Path) -> LocalSnapshotStore:
    return LocalSnapshotStore(tmp_path / "data" / "snapshots")


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> SnapshotStore:
    name = "local_store" if request.param == "local" else "s3_store"
    result: SnapshotStore = request.getfixturevalue(name)
    return result
