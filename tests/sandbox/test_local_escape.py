"""Escape and abuse suite against the real local provider (issue 3 item 6; architecture.md, Local
sandbox).

One test per attempt; each asserts the attempt ends safe *and* that the host (this process, a
host canary process, a second sandbox B) is still fine afterwards. Real bubblewrap, real
processes. Tests needing root or a delegated cgroup skip with a loud reason when they cannot
run here.
"""

# Small host-side setup (a file, a setcap) blocks the loop for microseconds; fine in tests.
# ruff: noqa: ASYNC221, ASYNC240

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import platform
import secrets
import shutil
import socket
import subprocess
import sys
import tarfile
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agent_sessions.sandbox import PathNotFound, Sandbox, SandboxProvider, UnsafePath
from agent_sessions.sandbox.local import Limits, LocalProvider, LocalSandbox
from agent_sessions.sandbox.local.processes import sandbox_pids
from tests.support.waiting import until_async

from .conftest import local_settings, local_unavailable_reason, require_root

pytestmark = pytest.mark.anyio


@pytest.fixture
def local(local_provider: SandboxProvider) -> LocalProvider:
    inner = local_provider.inner  # type: ignore[attr-defined]
    assert isinstance(inner, LocalProvider)
    return inner


@pytest.fixture
async def a(local_provider: SandboxProvider) -> LocalSandbox:
    box = await local_provider.create(f"a-{secrets.token_hex(4)}")
    assert isinstance(box, LocalSandbox)
    return box


@pytest.fixture
async def b(local_provider: SandboxProvider) -> LocalSandbox:
    box = await local_provider.create(f"b-{secrets.token_hex(4)}")
    assert isinstance(box, LocalSandbox)
    await box.write_file(f"secret-{box.name}.txt", b"B's secret")
    return box


@pytest.fixture
def canary() -> Iterator[subprocess.Popen[bytes]]:
    """A host process (as the service's uid) that no sandbox may see or kill."""
    proc = subprocess.Popen(["sleep", "600"])
    yield proc
    proc.kill()
    proc.wait()


async def host_is_fine(b: Sandbox) -> None:
    """The service still serves: another sandbox runs commands and files normally."""
    r = await b.exec("cat secret-*.txt")
    assert r.exit_code == 0 and r.stdout == "B's secret"


async def nothing_left(box: LocalSandbox, wait: float = 30.0) -> None:
    for _ in range(int(wait / 0.05)):
        if not sandbox_pids(box.uid, box._marker):
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"processes of sandbox {box.name} survive: {sandbox_pids(box.uid, box._marker)}")


def py(code: str) -> str:
    """A bash command running ``code`` with the sandbox's python3."""
    return f"python3 - <<'PYEOF'\n{textwrap.dedent(code)}\nPYEOF"


# 1 ----------------------------------------------------------------------------------------
async def test_01_host_secret_files(a: LocalSandbox, b: LocalSandbox) -> None:
    require_root()
    r = await a.exec("cat /etc/shadow; ls /root; cat /root/.ssh/id_rsa; ls /home; echo end")
    assert r.stdout == "end\n"
    assert "No such file or directory" in r.stderr
    # Regression: a root-only file the sandbox *can* see (under the ro-bound
    # /usr) must be unreadable, which holds only if the sandbox is not host root.
    secret = Path(f"/usr/local/share/agent-sessions-canary-{secrets.token_hex(4)}")
    secret.write_text("root only")
    secret.chmod(0o600)
    try:
        r = await a.exec(f"cat {secret}")
        assert r.exit_code != 0 and "Permission denied" in r.stderr
        assert "root only" not in r.stdout
    finally:
        secret.unlink()
    await host_is_fine(b)


# 2 ----------------------------------------------------------------------------------------
async def test_02_write_outside_workspace(a: LocalSandbox, b: LocalSandbox) -> None:
    r = await a.exec(
        "for p in /usr/x /x /etc/x /bin/x /proc/sys/kernel/hostname /proc/sysrq-trigger; do "
        "  (echo 1 > $p) 2>/dev/null && echo WROTE $p; done; echo done"
    )
    assert r.stdout == "done\n"
    r = await a.exec("touch /usr/x")
    assert "Read-only file system" in r.stderr
    assert not Path("/usr/x").exists()
    await host_is_fine(b)


# 3 ----------------------------------------------------------------------------------------
async def test_03_other_sandboxes_are_invisible(a: LocalSandbox, b: LocalSandbox) -> None:
    r = await a.exec(
        f"ls -a / .. /workspace/..; find / -name '*{b.name}*' 2>/dev/null; "
        f"grep -c '{b.name}' /proc/self/mountinfo; cat /proc/self/mountinfo"
    )
    assert b.name not in r.stdout
    # Even knowing B's host path does not help: the host tree is not in the sandbox.
    r = await a.exec(f"cat {b.workspace}/secret-{b.name}.txt")
    assert r.exit_code != 0 and "B's secret" not in r.stdout
    await host_is_fine(b)


# 4 ----------------------------------------------------------------------------------------
async def test_04_processes_of_host_and_others(
    a: LocalSandbox, b: LocalSandbox, canary: subprocess.Popen[bytes]
) -> None:
    tag = str(600_000 + secrets.randbelow(99_999))
    await b.exec(f"sleep {tag}", detached=True)
    r = await a.exec("ps -e -o pid=,comm=")
    pids = r.stdout.split()
    assert "sleep" not in r.stdout and "python" not in r.stdout
    assert len(pids) <= 6, r.stdout  # bwrap's init, bash, ps
    r = await a.exec(f"kill -9 {canary.pid} {os.getpid()}; kill -9 -1; echo after")
    await asyncio.sleep(0.2)
    assert canary.poll() is None, "the host canary was killed from a sandbox"
    assert any(f"sleep {tag}" in line for line in _cmdlines()), "B's process was killed"
    await host_is_fine(b)


def _cmdlines() -> list[str]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/cmdline", "rb") as f:
                out.append(f.read().replace(b"\0", b" ").decode(errors="replace"))
    return out


# 5 ----------------------------------------------------------------------------------------
async def test_05_no_secrets_or_descriptors_inherited(
    a: LocalSandbox, b: LocalSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECRET_DB_URL", "postgresql://admin:hunter2@db/prod")
    leak = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    os.set_inheritable(leak, True)
    try:
        # ``; true`` keeps bash from exec'ing ls, so $$ is bash and ls is its child.
        r = await a.exec("env; echo FDS; ls /proc/$$/fd; true")
    finally:
        os.close(leak)
    env, _, fds = r.stdout.partition("FDS\n")
    assert "hunter2" not in env and "SECRET_DB_URL" not in env
    assert fds.split() == ["0", "1", "2"], fds
    await host_is_fine(b)


# 6 ----------------------------------------------------------------------------------------
async def test_06_fork_bomb(a: LocalSandbox, b: LocalSandbox) -> None:
    require_root()  # RLIMIT_NPROC is per host uid; host root is exempt from it
    bomb = asyncio.ensure_future(a.exec(":(){ :|:& };:; sleep 3", timeout=6, max_output=2000))
    peak = 0
    while not bomb.done():
        peak = max(peak, len(await asyncio.to_thread(sandbox_pids, a.uid, a._marker)))
        await host_is_fine(b)  # the service keeps serving during the bomb
        await asyncio.sleep(0.1)
    r = bomb.result()
    assert "Resource temporarily unavailable" in r.stderr
    assert peak <= a.jail.limits.nproc + 2, f"{peak} tasks, NPROC is {a.jail.limits.nproc}"
    await nothing_left(a)
    await host_is_fine(b)


# 7 ----------------------------------------------------------------------------------------
async def test_07_memory_and_tmpfs_bombs(
    a: LocalSandbox, b: LocalSandbox, local: LocalProvider
) -> None:
    if not local.cgroup.available:
        # Without a cgroup the fallback is RLIMIT_DATA per process: a big allocation fails.
        r = await a.exec(py("b = bytearray(3 << 30)"), timeout=30)
        assert r.exit_code != 0 and "MemoryError" in r.stderr
    r = await a.exec("dd if=/dev/zero of=/tmp/fill bs=1M count=400; ls -l /tmp/fill", timeout=30)
    assert "No space left on device" in r.stderr
    assert str(local.limits.tmpfs_bytes) in r.stdout
    r = await a.exec("dd if=/dev/zero of=/fill bs=1M count=1")
    assert "Read-only file system" in r.stderr
    await host_is_fine(b)


async def test_07_cgroup_memory_limit(a: LocalSandbox, local: LocalProvider) -> None:
    if not local.cgroup.available:
        pytest.skip(f"NO CGROUP LIMITS ON THIS HOST: {local.cgroup.reason}")
    r = await a.exec(py(f"b = bytearray({local.memory_max * 2})"), timeout=60)
    assert r.exit_code != 0


# 8 ----------------------------------------------------------------------------------------
async def test_08_disk_bomb_hits_the_file_size_limit(sandbox_data_dir: Path) -> None:
    if reason := local_unavailable_reason():
        pytest.skip(reason)
    provider = LocalProvider(local_settings(sandbox_data_dir), limits=Limits(fsize=8 << 20))
    box = await provider.create(f"d-{secrets.token_hex(4)}")
    try:
        r = await box.exec("dd if=/dev/zero of=big bs=1M count=32; stat -c %s big")
        assert "File size limit exceeded" in r.stderr or "File too large" in r.stderr
        assert (await box.stat("big")).size <= 8 << 20
    finally:
        await box.destroy()


async def test_08_disk_quota_per_sandbox(sandbox_data_dir: Path, b: LocalSandbox) -> None:
    """With AGENT_SESSIONS_SANDBOX_DISK_BYTES the workspace is its own ext4 image: filling it
    is ENOSPC there, and nobody else's disk (tests/sandbox/test_local_disk.py goes further)."""
    provider = LocalProvider(local_settings(sandbox_data_dir, sandbox_disk_bytes=64 << 20))
    if not provider.disk.available:
        pytest.skip(f"NOT ENFORCED ON THIS HOST: no per-sandbox disk limit: {provider.disk.reason}")
    box = await provider.create(f"q-{secrets.token_hex(4)}")
    try:
        r = await box.exec("dd if=/dev/zero of=fill bs=1M count=100")
        assert r.exit_code != 0 and "No space left on device" in r.stderr
        assert (await box.stat("fill")).size < 64 << 20
        await host_is_fine(b)
    finally:
        await box.destroy()


# 9 ----------------------------------------------------------------------------------------
async def test_09_output_flood(a: LocalSandbox, b: LocalSandbox) -> None:
    rss_before = _rss()
    r = await a.exec("yes", timeout=2)
    assert r.timed_out and r.truncated and len(r.stdout) < 60_000
    r = await a.exec("cat /dev/urandom >&2", timeout=2)
    assert r.timed_out and r.truncated and len(r.stderr) < 60_000
    assert _rss() - rss_before < 200 << 20, "the service's memory grew with the flood"
    await host_is_fine(b)


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


# 10 ---------------------------------------------------------------------------------------
async def test_10_never_ending_commands_and_orphans(a: LocalSandbox, b: LocalSandbox) -> None:
    r = await a.exec("setsid nohup sleep 1000000 & sleep infinity", timeout=1)
    assert r.timed_out
    r = await a.exec("while :; do :; done", timeout=1)
    assert r.timed_out
    await nothing_left(a)
    await a.exec(
        "setsid nohup sleep 2000000 >/dev/null 2>&1 & disown; sleep infinity", detached=True
    )
    await until_async("the detached command to start", lambda: sandbox_pids(a.uid, a._marker))
    await a.stop()
    assert not sandbox_pids(a.uid, a._marker)
    await host_is_fine(b)


# 11 ---------------------------------------------------------------------------------------
async def test_11_no_network_egress(a: LocalSandbox, b: LocalSandbox) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        targets = [("1.1.1.1", 80), ("169.254.169.254", 80), ("127.0.0.1", port),
                   ("127.0.0.1", 3001), ("10.0.2.2", 80)]  # fmt: skip
        checks = "; ".join(
            f"(timeout 3 bash -c 'echo > /dev/tcp/{h}/{p}') 2>/dev/null && echo OPEN {h}:{p}"
            for h, p in targets
        )
        r = await a.exec(f"{checks}; getent hosts example.com && echo DNS; "
                         "tail -n +3 /proc/net/dev | cut -d: -f1")  # fmt: skip
    assert "OPEN" not in r.stdout and "DNS" not in r.stdout
    assert r.stdout.split() == ["lo"]
    await host_is_fine(b)


# 12 ---------------------------------------------------------------------------------------
async def test_12_host_unix_sockets(a: LocalSandbox, b: LocalSandbox) -> None:
    name = f"agent-sessions-canary-{secrets.token_hex(4)}"
    with socket.socket(socket.AF_UNIX) as host:
        host.bind("\0" + name)
        host.listen()
        r = await a.exec(py(f"""
            import socket
            for addr in ["\\0{name}", "/run/docker.sock", "/var/run/docker.sock",
                         "/run/postgresql/.s.PGSQL.5432", "/run/dbus/system_bus_socket"]:
                s = socket.socket(socket.AF_UNIX)
                try:
                    s.connect(addr)
                    print("CONNECTED", repr(addr))
                except OSError as e:
                    print(type(e).__name__)
        """))  # fmt: skip
    assert "CONNECTED" not in r.stdout
    assert r.stdout.split()[0] == "ConnectionRefusedError"
    await host_is_fine(b)


# 13 ---------------------------------------------------------------------------------------
async def test_13_symlinks_through_host_file_api(a: LocalSandbox, b: LocalSandbox) -> None:
    await a.exec(
        f"ln -s /etc/passwd x; ln -s {b.workspace}/secret-{b.name}.txt y; ln -s .. up; "
        "ln -s /etc etcdir; mkdir real; ln -s ../../.. real/deep"
    )
    for path in ["x", "y", "up/x", "etcdir/passwd", "real/deep/etc/passwd"]:
        with pytest.raises(UnsafePath):
            await a.read_file(path)
    for path in ["etcdir/evil", "up/evil", "real/deep/tmp/evil"]:
        with pytest.raises(UnsafePath):
            await a.write_file(path, b"pwned")
        with pytest.raises(UnsafePath):
            await a.remove(path)
    with pytest.raises(UnsafePath):
        await a.list_dir("etcdir")
    # Writing *over* a link replaces the link; the target is untouched.
    await a.write_file("y", b"mine")
    assert await a.read_file("y") == b"mine"
    assert await b.read_file(f"secret-{b.name}.txt") == b"B's secret"
    assert not Path("/etc/evil").exists()
    await host_is_fine(b)


# 14 ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad", ["../../etc/passwd", "/etc/passwd", "a/../../x", "ok\0/../x", "n" * 4096, "a/" * 2100]
)
async def test_14_path_tricks(a: LocalSandbox, bad: str) -> None:
    for op in (a.read_file(bad), a.write_file(bad, b"x"), a.remove(bad), a.list_dir(bad)):
        with pytest.raises(UnsafePath):
            await op
    # Percent-encoding is not decoded here (that is the HTTP layer's job): just a name.
    with pytest.raises(PathNotFound):
        await a.read_file("%2e%2e/etc/passwd")
    assert [i.path for i in await a.list_dir(".")] == []


# 15 ---------------------------------------------------------------------------------------
async def test_15_directory_symlink_swap_race(a: LocalSandbox, b: LocalSandbox) -> None:
    outside = Path(f"/tmp/agent-sessions-outside-{secrets.token_hex(4)}")
    outside.mkdir()
    (outside / "f").write_text("HOST SECRET")
    try:
        await a.exec(
            f"while :; do mkdir -p d.new && echo inside > d.new/f && rm -rf d && mv d.new d; "
            f"ln -sfn {outside} d.lnk && rm -rf d && mv -T d.lnk d; done",
            detached=True,
        )
        seen = {"inside": 0, "refused": 0}
        for _ in range(1500):
            try:
                data = await a.read_file("d/f")
                assert data == b"inside\n", f"read outside the workspace: {data!r}"
                seen["inside"] += 1
            except (UnsafePath, PathNotFound):
                seen["refused"] += 1
            with contextlib.suppress(UnsafePath, PathNotFound, Exception):
                await a.write_file("d/g", b"race")
        assert not (outside / "g").exists(), "a write escaped through the swapped link"
        assert seen["refused"] > 0  # the race was really exercised
    finally:
        await a.stop()
        shutil.rmtree(outside)
    await host_is_fine(b)


# 16 ---------------------------------------------------------------------------------------
def _tar_zst(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    import zstandard

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return zstandard.ZstdCompressor().compress(raw.getvalue())


def _member(
    name: str, kind: bytes, *, link: str = "", mode: int = 0o644, data: bytes | None = None
) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, mode
    if data is not None:
        info.size = len(data)
    return info, data


OUTSIDE = Path("/tmp/agent-sessions-restore-target")


@pytest.mark.parametrize(
    ("members", "must_reject"),
    [
        ([_member("abs-link", tarfile.SYMTYPE, link="/etc/passwd")], False),
        ([_member("up-link", tarfile.SYMTYPE, link="../../../etc/passwd")], False),
        (
            [_member("out", tarfile.SYMTYPE, link=str(OUTSIDE)),
             _member("out/pwned", tarfile.REGTYPE, data=b"x")],
            True,
        ),
        ([_member("hard", tarfile.LNKTYPE, link="/etc/passwd")], True),
        ([_member("../../escape.txt", tarfile.REGTYPE, data=b"x")], True),
        ([_member("/abs.txt", tarfile.REGTYPE, data=b"x")], False),
        ([_member("dev", tarfile.CHRTYPE)], True),
    ],
    ids=["absolute-symlink", "dotdot-symlink", "write-through-link", "hardlink-out",
         "dotdot-name", "absolute-name", "device"],
)  # fmt: skip
async def test_16_malicious_snapshot(
    a: LocalSandbox, members: list[tuple[tarfile.TarInfo, bytes | None]], must_reject: bool
) -> None:
    """Rejected, or restored with everything inside the workspace and links inert.

    The snapshot store keeps symlinks whose *target* leaves the workspace (venvs are full of
    them; they resolve inside the sandbox's own filesystem), so for those the safe outcome is an
    inert link the host-side file API refuses to follow.
    """
    from agent_sessions.exceptions import AgentSessionsError

    url = _plant_snapshot(a, [_member("ok.txt", tarfile.REGTYPE, data=b"ok"), *members])
    await a.write_file("keep.txt", b"original")
    OUTSIDE.mkdir(exist_ok=True)
    try:
        try:
            await a.restore(url)
            restored = True
        except AgentSessionsError:
            restored = False
        assert not (restored and must_reject), "a malicious archive was restored"
        if restored:
            assert await a.read_file("ok.txt") == b"ok"
            for info in await a.list_dir("."):
                if info.kind == "symlink":
                    with pytest.raises(UnsafePath):
                        await a.read_file(info.path)
        else:
            assert await a.read_file("keep.txt") == b"original"
        outside = [OUTSIDE / "pwned", Path("/abs.txt"), Path("/escape.txt"),
                   a.home / "escape.txt", a.home.parent / "escape.txt"]  # fmt: skip
        assert not [p for p in outside if p.exists()]
    finally:
        shutil.rmtree(OUTSIDE, ignore_errors=True)


def _plant_snapshot(a: LocalSandbox, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> str:
    """Put a hand-made archive where the local snapshot store looks, as an attacker with write
    access to the snapshot store (or a tampered S3 object) would."""
    import hashlib

    store = a.provider.snapshots
    if store is None:
        pytest.skip("agent_sessions.snapshots is not available")
    snap_id = f"evil-{secrets.token_hex(4)}"
    blob = _tar_zst(members)
    root: Path = store.root  # type: ignore[attr-defined]
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{snap_id}.tar.zst").write_bytes(blob)
    digest = hashlib.sha256(blob).hexdigest()
    (root / f"{snap_id}.tar.zst.sha256").write_text(f"{digest}  {snap_id}.tar.zst\n")
    return f"local://snapshots/{snap_id}.tar.zst"


async def test_16_snapshot_setuid_bits_are_dropped(a: LocalSandbox) -> None:
    url = _plant_snapshot(
        a, [_member("suid", tarfile.REGTYPE, mode=0o6755, data=b"#!/bin/sh\nid -u\n")]
    )
    await a.restore(url)
    assert (await a.stat("suid")).mode == 0o755
    assert (a.workspace / "suid").stat().st_uid == (a.uid if a.uid is not None else os.getuid())


# 17 ---------------------------------------------------------------------------------------
async def test_17_setuid_and_file_capability_binaries(a: LocalSandbox, b: LocalSandbox) -> None:
    require_root()
    suid = a.workspace / "suid-id"
    shutil.copy("/usr/bin/id", suid)
    os.chown(suid, 0, 0)
    suid.chmod(0o4755)
    caps = a.workspace / "cap-grep"
    shutil.copy("/usr/bin/grep", caps)
    have_setcap = shutil.which("setcap") is not None
    if have_setcap:
        subprocess.run(["setcap", "cap_dac_read_search,cap_setuid+ep", str(caps)], check=True)
    r = await a.exec(
        "./suid-id -u; ./cap-grep -E '^CapEff' /proc/self/status; "
        "su -c id root </dev/null; sudo -n id; echo end"
    )
    lines = r.stdout.splitlines()
    assert lines[0] == "1000"
    assert lines[1].split()[1] == "0000000000000000"
    assert lines[-1] == "end" and "uid=0" not in r.stdout
    if not have_setcap:
        pytest.skip("setcap missing: the file-capability half of this test did not run")
    await host_is_fine(b)


# 18 ---------------------------------------------------------------------------------------
_X86_64_SYSCALLS = {
    "keyctl": (250, 0, 0),  # KEYCTL_GET_KEYRING_ID
    "add_key": (248, 0, 0, 0, 0, 0),
    "bpf": (321, 0, 0, 0),
    "perf_event_open": (298, 0, 0, -1, -1, 0),
    "userfaultfd": (323, 0),
    "ptrace": (101, 16, 1, 0, 0),  # PTRACE_ATTACH to pid 1
    "mount": (165, 0, 0, 0, 0, 0),
    "unshare": (272, 0x10000000),  # CLONE_NEWUSER
    "setns": (308, 0, 0),
    "clone-newuser": (56, 0x10000000 | 17, 0, 0, 0, 0),
    "chroot": (161, 0),
}


async def test_18_dangerous_syscalls(a: LocalSandbox, b: LocalSandbox) -> None:
    if platform.machine() != "x86_64":
        pytest.skip(f"syscall numbers in this test are for x86_64, not {platform.machine()}")
    r = await a.exec(py(f"""
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        for name, (nr, *args) in {_X86_64_SYSCALLS!r}.items():
            rc = libc.syscall(nr, *[ctypes.c_long(x) for x in args])
            print(name, "ALLOWED" if rc >= 0 else ctypes.get_errno())
    """) + "\nunshare -Urm true; echo unshare-cmd $?; "
               "mount -t tmpfs none /tmp; echo mount-cmd $?")  # fmt: skip
    results = dict(line.split() for line in r.stdout.splitlines())
    for name in _X86_64_SYSCALLS:
        assert results[name] == "1", f"{name}: {results[name]} (expected EPERM)"
    assert results["unshare-cmd"] != "0" and results["mount-cmd"] != "0"
    await host_is_fine(b)


# 19 ---------------------------------------------------------------------------------------
async def test_19_tiocsti_and_tioclinux(a: LocalSandbox, b: LocalSandbox) -> None:
    if platform.machine() != "x86_64":
        pytest.skip(f"ioctl syscall number in this test is for x86_64, not {platform.machine()}")
    r = await a.exec(
        py("""
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        master, slave = os.openpty()
        ch = ctypes.c_char(b"x")
        for name, req in [("TIOCSTI", 0x5412), ("TIOCSTI+2^32", 0x5412 | 1 << 32),
                          ("TIOCLINUX", 0x541C), ("TIOCLINUX+2^32", 0x541C | 1 << 32)]:
            rc = libc.syscall(16, slave, ctypes.c_ulong(req), ctypes.byref(ch))
            print(name, "ALLOWED" if rc >= 0 else ctypes.get_errno())
    """)
    )
    results = dict(line.split() for line in r.stdout.splitlines())
    assert results == {
        k: "1" for k in ["TIOCSTI", "TIOCSTI+2^32", "TIOCLINUX", "TIOCLINUX+2^32"]
    }, r
    await host_is_fine(b)


# 20 ---------------------------------------------------------------------------------------
async def test_20_self_check(a: LocalSandbox, b: LocalSandbox) -> None:
    r = await a.exec(
        "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status;"
        " touch made-inside"
    )
    status = dict(line.split(":\t") for line in r.stdout.splitlines())
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[cap], 16) == 0, (cap, status[cap])
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"
    owner = (a.workspace / "made-inside").stat().st_uid
    if os.geteuid() == 0:
        assert owner == a.uid and owner >= 1000, "files created in the sandbox belong to root"
    await host_is_fine(b)


# 21 ---------------------------------------------------------------------------------------
_SERVICE = """
import asyncio, sys
from pathlib import Path
sys.path[:0] = {path!r}
from tests.sandbox.conftest import local_settings
from agent_sessions.sandbox.local import LocalProvider

async def main():
    provider = LocalProvider(local_settings(Path({data_dir!r}), sandbox_uid_base={uid_base}))
    box = await provider.create({name!r})
    await box.exec("sleep {tag}1", detached=True)
    asyncio.ensure_future(box.exec("sleep {tag}2", timeout=600))
    await asyncio.sleep(0.5)
    print("ready", flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


async def test_21_service_killed_takes_sandboxes_with_it(sandbox_data_dir: Path) -> None:
    if reason := local_unavailable_reason():
        pytest.skip(reason)
    from .conftest import UID_BASE

    tag = str(500_000 + secrets.randbelow(99_999))
    name = f"k-{secrets.token_hex(4)}"
    script = _SERVICE.format(path=sys.path, data_dir=str(sandbox_data_dir), uid_base=UID_BASE,
                             name=name, tag=tag)  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE, cwd=os.getcwd()
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line == b"ready\n"
        assert any(f"sleep {tag}" in c for c in _cmdlines())
    finally:
        proc.kill()
        await proc.wait()
    for _ in range(100):
        if not any(f"sleep {tag}" in c for c in _cmdlines()):
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("sandbox processes outlived the killed service")
    holder = f"agent-sessions-netns:{sandbox_data_dir.resolve()}/sandboxes/{name}"
    for _ in range(100):
        if not any(c.startswith(holder) for c in _cmdlines()):
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the sandbox's network namespace holder outlived the killed service")
    provider = LocalProvider(local_settings(sandbox_data_dir))
    await (await provider.connect({"provider": "local", "name": name})).destroy()


# 22 ---------------------------------------------------------------------------------------
async def test_22_no_host_paths_in_process_arguments_or_environment(
    a: LocalSandbox, b: LocalSandbox, local: LocalProvider
) -> None:
    """Issue 14 finding 11: bwrap (pid 1 inside) was started with the host paths of the data
    directory and the workspace; no process the sandbox can see may show them."""
    r = await a.exec(
        "sleep 1000 & for f in /proc/[0-9]*/cmdline /proc/[0-9]*/environ; do "
        "echo \"== $f\"; tr '\\0' ' ' < $f; echo; done; kill %1; echo '== fds'; ls -l /proc/1/fd"
    )
    shown = dict(
        (part.partition("\n")[0], part.partition("\n")[2]) for part in r.stdout.split("== ")[1:]
    )
    assert shown["/proc/1/cmdline"].startswith("bwrap"), r  # it was readable
    assert "memfd" not in shown["fds"], r  # bwrap closed the descriptor of its options
    for host_path in (str(local.root.parent), str(a.workspace), str(a.home)):
        assert host_path not in r.stdout, (host_path, r.stdout)
    await host_is_fine(b)


@pytest.fixture
async def _unused() -> AsyncIterator[None]:  # keeps the AsyncIterator import honest for mypy
    yield
