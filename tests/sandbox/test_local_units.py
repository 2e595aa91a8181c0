"""Unit tests of the local provider's parts that need no sandbox: capture, uid map, cgroup
detection, path checks, the openat2 fallback, settings-driven construction."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from agent_sessions.sandbox import (
    FileTooLarge,
    SandboxSetupError,
    SandboxUnavailable,
    UnsafePath,
    _openat2,
    provider_from_settings,
)
from agent_sessions.sandbox._output import HeadTail
from agent_sessions.sandbox._workspace_fs import WorkspaceFS
from agent_sessions.sandbox.local import cgroups, processes
from agent_sessions.sandbox.local.bwrap import InvalidEnvironment, Jail
from agent_sessions.sandbox.local.seccomp import filter_bpf
from agent_sessions.sandbox.local.uids import UidAllocator

from .conftest import local_settings, local_unavailable_reason

# --- processes -----------------------------------------------------------------------------


def _session(sid: int) -> dict[int, str]:
    """The processes of session ``sid`` and their states, from ``/proc/<pid>/stat``."""
    found = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[3]) == sid:
            found[int(entry)] = fields[0]
    return found


def test_freeze_reaches_descendants_that_do_not_carry_the_marker() -> None:
    """Without a sandbox uid (the service is not root) only the launchers and bwrap carry the
    marker in their environment; what runs inside has none, and must be frozen all the same."""
    tag = f"freeze-test-{secrets.token_hex(4)}"
    marker = processes.Marker.of(Path("/nonexistent") / tag)
    # bash keeps the marker in /proc/<pid>/environ (its initial environment), its forked
    # subshell too; the two sleeps are exec'd after the unset, without it.
    script = "unset AGENT_SESSIONS_SANDBOX; sleep 600 & (sleep 600 & wait) & wait"
    parent = subprocess.Popen(
        ["/bin/bash", "-c", script, tag], start_new_session=True, env={**os.environ, **marker.env}
    )
    try:
        deadline = time.monotonic() + 10
        while len(_session(parent.pid)) < 4:  # bash, its subshell, two sleeps
            assert time.monotonic() < deadline, _session(parent.pid)
            time.sleep(0.01)
        processes.freeze_all(None, marker)
        assert set(_session(parent.pid).values()) == {"T"}
        processes.kill_all(None, marker)
        assert processes.sandbox_pids(None, marker) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()


# --- output capture ----------------------------------------------------------------------


def test_head_tail_keeps_everything_under_the_cap() -> None:
    sink = HeadTail(100)
    for _ in range(10):
        sink.feed(b"0123456789")
    assert sink.result() == ("0123456789" * 10, False)


def test_head_tail_drops_the_middle_and_counts_it() -> None:
    sink = HeadTail(10)
    for i in range(100_000):
        sink.feed(f"{i:08d}\n".encode())
    text, truncated = sink.result()
    assert truncated
    assert text.startswith("00000")
    assert text.endswith("9999\n")
    assert "bytes truncated" in text
    assert sink.total == 900_000
    assert len(sink._tail) <= 2 * 40  # memory stays bounded however long the stream


def test_head_tail_holds_no_more_than_its_cap_of_one_huge_chunk() -> None:
    """Not even for a moment: a 50 MiB chunk never gets copied whole into the tail."""
    chunk = b"h" * 10 + b"x" * (50 << 20) + b"t" * 10
    sink = HeadTail(1000)
    tracemalloc.start()
    try:
        sink.feed(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1000  # a few copies of the 4,000 bytes kept at each end, at most
    text, truncated = sink.result()
    assert truncated and text.startswith("hhhhhhhhhhx") and text.endswith("xtttttttttt")
    assert sink.total == len(chunk)


def test_head_tail_counts_characters_not_bytes() -> None:
    sink = HeadTail(5)
    sink.feed("ééééé".encode())  # 5 characters, 10 bytes
    assert sink.result() == ("ééééé", False)
    sink.feed("é".encode())
    text, truncated = sink.result()
    assert truncated and text.startswith("éé") and text.endswith("ééé")


# --- uid allocation ----------------------------------------------------------------------


def test_uids_are_stable_unique_and_released(tmp_path: Path) -> None:
    uids = UidAllocator(tmp_path / "uids.json", 5000, 3, claims=tmp_path / "claims")
    assert [uids.allocate(n) for n in ("a", "b", "a")] == [5000, 5001, 5000]
    assert json.loads((tmp_path / "uids.json").read_text()) == {"a": 5000, "b": 5001}
    uids.release("a")
    assert uids.lookup("a") is None
    assert uids.allocate("c") == 5000
    assert uids.allocate("d") == 5002
    with pytest.raises(SandboxUnavailable):
        uids.allocate("e")


def test_uids_under_concurrency(tmp_path: Path) -> None:
    """Two service processes share the map; the fcntl lock serialises them (threads here)."""
    got: list[int] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        uids = UidAllocator(tmp_path / "uids.json", 7000, 100, claims=tmp_path / "claims")
        uid = uids.allocate(f"s{i}")
        with lock:
            got.append(uid)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(7000, 7040))


def test_uids_are_unique_across_data_directories(tmp_path: Path) -> None:
    """Two services with different data dirs on one host never share a sandbox uid."""
    claims = tmp_path / "claims"
    one = UidAllocator(tmp_path / "one" / "uids.json", 9000, 10, claims=claims)
    two = UidAllocator(tmp_path / "two" / "uids.json", 9000, 10, claims=claims)
    assert one.allocate("box") == 9000
    assert two.allocate("box") == 9001
    assert one.lookup("box") == 9000
    one.release("box")
    assert two.allocate("other") == 9000
    # A claim whose data directory was deleted (without destroying its sandboxes) is reused.
    import shutil

    shutil.rmtree(tmp_path / "two")
    assert one.allocate("again") == 9000  # was two's "other"


# --- cgroups -----------------------------------------------------------------------------


def test_cgroup_detection_reports_why_not() -> None:
    support = cgroups.detect(None)
    assert not support.available
    assert "AGENT_SESSIONS_SANDBOX_CGROUP_ROOT" in support.reason


def test_cgroup_detection_rejects_a_plain_directory(tmp_path: Path) -> None:
    support = cgroups.detect(tmp_path)
    assert not support.available and "not a cgroup v2 directory" in support.reason


def test_cgroup_files_written(tmp_path: Path) -> None:
    """Against a directory shaped like a delegated cgroup (the kernel's files faked)."""
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    (tmp_path / "cgroup.procs").write_text("")
    (tmp_path / "cgroup.subtree_control").write_text("")
    support = cgroups.detect(tmp_path)
    assert support.available, support.reason
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+memory +pids"
    limits = cgroups.CgroupLimits(tmp_path / "box", memory_max=1 << 30, pids_max=100)
    limits.ensure()
    assert (tmp_path / "box" / "memory.max").read_text() == str(1 << 30)
    assert (tmp_path / "box" / "pids.max").read_text() == "100"
    argv = limits.wrap(["bwrap", "true"])
    assert argv[:3] == ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"']
    assert argv[3] == str(tmp_path / "box" / "cgroup.procs") and argv[4:] == ["bwrap", "true"]


# --- paths and host-side file access ------------------------------------------------------


@pytest.mark.parametrize("good", [".", "", "a", "./a//b/", "a/./b", "%2e%2e", "...", ".hidden"])
def test_relative_paths_accepted(good: str) -> None:
    parts = _openat2.split_relative(good)
    assert ".." not in parts and "." not in parts and "" not in parts


@pytest.mark.parametrize("bad", ["/", "/a", "..", "a/..", "a/../b", "a\0", "x" * 256, "a/" * 2049])
def test_relative_paths_refused(bad: str) -> None:
    with pytest.raises(UnsafePath):
        _openat2.split_relative(bad)


@pytest.mark.parametrize("openat2", [True, False], ids=["openat2", "component-walk"])
def test_links_refused_with_and_without_openat2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, openat2: bool
) -> None:
    if not openat2:
        monkeypatch.setattr(_openat2, "_has_openat2", False)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host")
    ws = tmp_path / "ws"
    (ws / "real").mkdir(parents=True)
    (ws / "real" / "f").write_text("inside")
    (ws / "link").symlink_to(outside)
    (ws / "flink").symlink_to(outside / "secret")
    (ws / "real" / "up").symlink_to("..")
    os.mkfifo(ws / "fifo")
    fs = WorkspaceFS(ws, None)
    assert fs.read("real/f", 100) == b"inside"
    for path in ["link/secret", "flink", "real/up/real/f"]:
        with pytest.raises(UnsafePath):
            fs.read(path, 100)
    with pytest.raises(UnsafePath):
        fs.write("link/new", b"x", 0o644)
    assert not (outside / "new").exists()
    from agent_sessions.sandbox import PathConflict

    with pytest.raises(PathConflict):  # a FIFO must not hang the service
        fs.read("fifo", 100)


def test_a_file_that_outgrows_its_size_is_refused_while_reading() -> None:
    """``/proc/<pid>/status`` says it is 0 bytes and has more: the case of a file the sandbox
    grows after the size check. Reading stops one byte past the limit."""
    fs = WorkspaceFS(Path(f"/proc/{os.getpid()}"), None)
    assert fs.stat("status").size == 0
    with pytest.raises(FileTooLarge) as caught:
        fs.read("status", 10)
    assert (caught.value.size, caught.value.limit) == (None, 10)
    assert b"Name:" in fs.read("status", 1 << 20)


# --- jail and settings -------------------------------------------------------------------


def test_environment_names_are_checked(tmp_path: Path) -> None:
    jail = Jail(tmp_path, tmp_path, None)
    assert jail.environment({"A_1": "x"})["A_1"] == "x"
    for bad in [{"1A": "x"}, {"A=B": "x"}, {"A": "x\0y"}, {"": "x"}]:
        with pytest.raises(InvalidEnvironment):
            jail.environment(bad)


def test_argv_hardening_flags(tmp_path: Path) -> None:
    jail = Jail(tmp_path, tmp_path, 123456)
    argv = jail.argv("echo hi", cpu_seconds=5, args_fd=8)
    assert argv[:2] == ["setpriv", "--reuid=123456"]
    for flag in ["--clear-groups", "--inh-caps=-all", "--core=0"]:
        assert flag in argv, flag
    # bwrap's options come through --args: none shows on its command line, /proc/1/cmdline
    bwrap = ["bwrap", "--args", "8", "--", "/bin/bash", "-c", "echo hi"]
    assert argv[argv.index("bwrap") :] == bwrap
    options = jail.options(cwd_parts=["src"], env={"PATH": "/usr/bin"}, seccomp_fd=9)
    for flag in ["--unshare-all", "--disable-userns", "--die-with-parent", "--new-session",
                 "--clearenv"]:  # fmt: skip
        assert flag in options, flag
    assert "--share-net" not in options
    assert options[options.index("--cap-drop") + 1] == "ALL"
    assert options[options.index("--seccomp") + 1] == "9"
    assert options.index("--size") + 2 == options.index("--tmpfs")  # --size must precede --tmpfs
    assert options[options.index("--remount-ro") + 1] == "/"
    assert options[options.index("--chdir") + 1] == "/workspace/src"
    assert str(tmp_path) not in " ".join(argv)


def test_argv_with_the_sandbox_network_namespace(tmp_path: Path) -> None:
    jail = Jail(tmp_path, tmp_path, 123456)
    argv = jail.argv("true", cpu_seconds=5, args_fd=8, netns="/proc/42/ns/net")
    assert argv[:3] == ["nsenter", "--net=/proc/42/ns/net", "--"]
    options = jail.options(cwd_parts=[], env={}, seccomp_fd=9, netns="/proc/42/ns/net")
    for flag in ["--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]:
        assert flag in options
    assert "--share-net" not in options and "--unshare-all" not in options


def test_seccomp_program_builds() -> None:
    program = filter_bpf()
    assert len(program) % 8 == 0 and len(program) > 100  # struct sock_filter is 8 bytes


def test_network_on_refused_without_user_mode_networking(
    sandbox_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never a fallback to the host network: start-up fails and names the fix."""
    if reason := local_unavailable_reason():
        pytest.skip(reason)
    import shutil

    from agent_sessions.sandbox.local import LocalProvider

    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda t: None if t == "slirp4netns" else real_which(t))
    with pytest.raises(SandboxSetupError, match="slirp4netns"):
        LocalProvider(local_settings(sandbox_data_dir, sandbox_network="on"))


def test_provider_from_settings(sandbox_data_dir: Path) -> None:
    if reason := local_unavailable_reason():
        pytest.skip(reason)
    provider = provider_from_settings(local_settings(sandbox_data_dir))
    assert provider.kind == "local"
    caps = provider.capabilities()
    assert caps["seccomp"] is True and caps["network"] == "off"
    assert isinstance(caps["cgroupReason"], str) and caps["cgroupReason"]
    with pytest.raises(SandboxSetupError):
        provider_from_settings(local_settings(sandbox_data_dir), kind="nope")


def test_untraversable_data_dir_is_a_clear_startup_error(tmp_path: Path) -> None:
    if reason := local_unavailable_reason():
        pytest.skip(reason)
    if os.geteuid() != 0:
        pytest.skip("NEEDS ROOT: the traversal check applies to per-sandbox uids")
    from agent_sessions.sandbox.local import LocalProvider

    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(SandboxSetupError, match="chmod o\\+x"):
        LocalProvider(local_settings(private / "data"))
