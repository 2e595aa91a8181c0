"""The files layer works alike on every sandbox provider: local (with and without a disk
image), the fake, and Vercel's SDK over its labelled stand-in transport (no Vercel reached).

``workspace.files`` and ``workspace.archive`` are called on the provider interface directly;
the API over them is tested in ``test_files.py``.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import tarfile
import zipfile

import pytest

from agent_sessions.sandbox import PathConflict, PathNotFound, SandboxProvider, UnsafePath
from agent_sessions.workspace import archive as archives
from agent_sessions.workspace import files
from tests.sandbox.conftest import (
    anyio_backend,
    fake_provider,
    local_disk_provider,
    local_provider,
    provider,
    sandbox_data_dir,
    vercel_provider,
)

__all__ = [
    "anyio_backend", "fake_provider", "local_disk_provider", "local_provider", "provider",
    "sandbox_data_dir", "vercel_provider",
]  # fmt: skip

pytestmark = pytest.mark.anyio

SETUP = r"""
mkdir -p 'src/a b' node_modules/m .git empty
printf 'hi\n' > 'src/a b/f
g.txt'
printf 'x\0y' > src/bin
: > node_modules/m/i.js
: > .git/HEAD
ln -s /etc/passwd src/link
head -c 2000000 /dev/urandom > src/random
sha256sum src/random
"""


async def _collect(stream: files.ByteStream) -> bytes:
    out = bytearray()
    try:
        async for chunk in stream:
            out += chunk
    finally:
        await stream.aclose()
    return bytes(out)


async def test_tree_content_upload_and_archives(provider: SandboxProvider) -> None:
    sandbox = await provider.create(f"t-{secrets.token_hex(4)}")
    made = await sandbox.exec(SETUP)
    assert made.exit_code == 0, made
    random_sha = made.stdout.split()[0]

    listed = await files.tree(sandbox)
    got = {(e.path, e.type, e.size) for e in listed.entries}
    assert got == {
        ("empty", "directory", 0),
        ("src", "directory", 0),
        ("src/a b", "directory", 0),
        ("src/a b/f\ng.txt", "file", 3),
        ("src/bin", "file", 3),
        ("src/link", "symlink", 11),
        ("src/random", "file", 2_000_000),
    }
    assert not listed.truncated
    everything = await files.tree(sandbox, include_all=True)
    assert {"node_modules/m/i.js", ".git/HEAD"} <= {e.path for e in everything.entries}
    capped = await files.tree(sandbox, "src", limit=2)
    assert capped.truncated and len(capped.entries) == 2
    # Past the byte cap the listing stops at the last whole record.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(files, "TREE_MAX_BYTES", 60)
        cut = await files.tree(sandbox)
    assert cut.truncated and 0 < len(cut.entries) < len(listed.entries)
    assert set(cut.entries) <= set(listed.entries)
    with pytest.raises(PathNotFound):
        await files.tree(sandbox, "nope")

    text = await files.read_content(sandbox, "src/a b/f\ng.txt", 1024)
    assert text.text == "hi\n"
    binary = await files.read_content(sandbox, "src/bin", 1024)
    assert binary.text is None and binary.data == b"x\0y"
    for bad in ("src/link", "../x", "/etc/passwd"):
        with pytest.raises(UnsafePath):
            await files.read_content(sandbox, bad, 1024)
        with pytest.raises(UnsafePath):
            await files.stream_content(sandbox, bad)
    with pytest.raises(files.NotAFile):
        await files.read_content(sandbox, "src", 1024)
    _, stream = await files.stream_content(sandbox, "src/random")
    assert stream.size == 2_000_000
    assert hashlib.sha256(await _collect(stream)).hexdigest() == random_sha

    entry = await files.upload(sandbox, "new/deep/up.txt", b"uploaded")
    assert entry == files.Entry("new/deep/up.txt", "file", 8)
    assert (await files.read_content(sandbox, "new/deep/up.txt", 1024)).text == "uploaded"
    with pytest.raises(PathConflict):
        await files.upload(sandbox, "src", b"x")

    expected = {e.path for e in (await files.tree(sandbox)).entries}
    tgz = await _collect(await archives.archive(sandbox, "tar.gz"))
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        names = {m.name.removeprefix("./") for m in tar if m.name != "."}
        assert names == expected
        member = tar.extractfile("./src/random")
        assert member is not None and hashlib.sha256(member.read()).hexdigest() == random_sha
    zipped = await _collect(await archives.archive(sandbox, "zip"))
    with zipfile.ZipFile(io.BytesIO(zipped)) as z:
        assert {i.filename.rstrip("/") for i in z.infolist()} == expected
        assert z.read("src/link") == b"/etc/passwd"
        assert hashlib.sha256(z.read("src/random")).hexdigest() == random_sha
    # The temporary archives went with their downloads.
    assert {e.path for e in (await files.tree(sandbox)).entries} == expected
