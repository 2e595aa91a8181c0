"""Networking of the local provider: one namespace per sandbox, never the host's.

With the network off, a sandbox's commands share a loopback (a detached dev server is reachable
from the next command) and nothing else. With ``SANDBOX_NETWORK=on``, slirp4netns adds a
``tap0`` with egress, still without the host's loopback or abstract sockets.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent_sessions.sandbox.local import LocalProvider, LocalSandbox
from tests.support.waiting import until_async

from .conftest import local_settings, local_unavailable_reason, require_root

pytestmark = pytest.mark.anyio

_GET = """
import sys, time, urllib.request
deadline = time.monotonic() + float(sys.argv[2])
while True:
    try:
        print(urllib.request.urlopen(sys.argv[1], timeout=3).status)
        break
    except Exception as e:
        if time.monotonic() > deadline:
            print(type(e).__name__)
            break
        time.sleep(0.1)
"""


def _get(url: str, retry_for: float = 0) -> str:
    """A command printing the HTTP status of ``url``, or the error's name."""
    return f"python3 - {url} {retry_for} <<'EOF'\n{textwrap.dedent(_GET)}\nEOF"


async def _provider(data_dir: Path, network: str) -> LocalProvider:
    if reason := local_unavailable_reason():
        pytest.skip(reason)
    require_root()
    if network == "on" and shutil.which("slirp4netns") is None:
        pytest.skip("NEEDS slirp4netns for SANDBOX_NETWORK=on (apt-get install slirp4netns)")
    return LocalProvider(local_settings(data_dir, sandbox_network=network))


@pytest.fixture
async def boxes(sandbox_data_dir: Path) -> AsyncIterator[tuple[LocalSandbox, LocalSandbox]]:
    provider = await _provider(sandbox_data_dir, "off")
    a = await provider.create(f"na-{secrets.token_hex(3)}")
    b = await provider.create(f"nb-{secrets.token_hex(3)}")
    assert isinstance(a, LocalSandbox) and isinstance(b, LocalSandbox)
    yield a, b
    await a.destroy()
    await b.destroy()


async def test_detached_server_reachable_from_the_same_sandbox_only(
    boxes: tuple[LocalSandbox, LocalSandbox],
) -> None:
    a, b = boxes
    await a.write_file("index.html", b"hello from a")
    await a.exec("python3 -m http.server 8765 --bind 127.0.0.1", detached=True)
    url = "http://127.0.0.1:8765/index.html"
    r = await a.exec(_get(url, retry_for=20), timeout=60)  # the server may start slowly
    assert r.stdout.strip() == "200", r
    r = await b.exec(_get(url))
    assert r.stdout.strip() == "URLError"  # B has its own, empty loopback
    await a.stop()
    assert a.netns is not None and a.netns.path() is None  # stop() released the namespace
    assert (await a.exec(_get(url))).stdout.strip() == "URLError"


async def test_first_execs_racing_share_one_namespace(
    boxes: tuple[LocalSandbox, LocalSandbox],
) -> None:
    a, b = boxes
    handles = [await a.provider.connect(a.state) for _ in range(3)]  # as the API does
    results = await asyncio.gather(
        *(h.exec("readlink /proc/self/ns/net") for h in [a, *handles] for _ in range(2))
    )
    namespaces = {r.stdout for r in results}
    assert len(namespaces) == 1, namespaces
    assert namespaces != {os.readlink("/proc/self/ns/net") + "\n"}  # never the host's
    assert (await b.exec("readlink /proc/self/ns/net")).stdout not in namespaces


async def test_a_sandbox_cannot_pass_for_another_ones_namespace_holder(
    boxes: tuple[LocalSandbox, LocalSandbox], sandbox_data_dir: Path
) -> None:
    """Issue 14 finding 3: A names a process like B's holder; B must not join A's namespace,
    neither on its first command nor once its holder is gone and a restarted service (a fresh
    provider) looks it up anew."""
    a, b = boxes
    url = "http://127.0.0.1:8766/"
    await a.exec("python3 -m http.server 8766 --bind 127.0.0.1", detached=True)
    r = await a.exec(f"readlink /proc/self/ns/net; {_get(url, retry_for=20)}", timeout=60)
    a_ns, status = r.stdout.split()
    assert status == "200", r

    async def forge() -> None:
        forged = f"agent-sessions-netns:{b.home}"
        before = set(_pids_named(forged + "\0"))
        await a.exec(f"exec -a {shlex.quote(forged)} sleep 1000", detached=True)
        await until_async("a forged holder", lambda: set(_pids_named(forged + "\0")) - before)

    async def b_network(box: LocalSandbox) -> list[str]:
        return (await box.exec(f"readlink /proc/self/ns/net; {_get(url)}")).stdout.split()

    await forge()
    ns, status = await b_network(b)
    assert ns != a_ns and status == "URLError"
    await b.stop()  # B's holder is gone, as after a restart of the service
    await forge()
    restarted = await _provider(sandbox_data_dir, "off")
    b_again = await restarted.connect(b.state)
    assert isinstance(b_again, LocalSandbox)
    ns, status = await b_network(b_again)
    assert ns != a_ns and status == "URLError"
    await b_again.stop()


async def test_a_sandbox_cannot_pass_for_another_ones_network_helper(
    sandbox_data_dir: Path,
) -> None:
    """Issue 14 finding 3, the slirp4netns side: when B's helper dies, a process of A named
    like it must not keep B from getting a new one (and its network)."""
    provider = await _provider(sandbox_data_dir, "on")
    a = await provider.create(f"ha-{secrets.token_hex(3)}")
    b = await provider.create(f"hb-{secrets.token_hex(3)}")
    assert isinstance(a, LocalSandbox) and isinstance(b, LocalSandbox) and b.netns is not None
    interfaces = "tail -n +3 /proc/net/dev | cut -d: -f1 | sort | tr '\\n' ' '"
    try:
        assert (await b.exec(interfaces)).stdout.split() == ["lo", "tap0"]
        holder = b.netns.path()
        helper = b.netns._helper_pid()
        assert holder is not None and helper is not None
        holder_pid = holder.split("/")[2]
        forged = f"exec -a agent-sessions-slirp4netns bash -c 'sleep 1000; :' x {holder_pid} tap0"
        await a.exec(forged, detached=True)
        await until_async(
            "a forged helper",
            lambda: _pids_named("agent-sessions-slirp4netns\0-c\0sleep 1000; :\0"),
        )
        os.kill(helper, signal.SIGKILL)  # B's helper crashes
        await until_async("the helper to die of SIGKILL", lambda: not _running(helper))
        assert (await b.exec(interfaces)).stdout.split() == ["lo", "tap0"]
    finally:
        await a.destroy()
        await b.destroy()


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] != b"Z"
    except OSError:
        return False


_OTHER_SERVICE = """
import asyncio, sys
from pathlib import Path
sys.path[:0] = {path!r}
from tests.sandbox.conftest import local_settings
from agent_sessions.sandbox.local import LocalProvider

async def main():
    settings = local_settings(Path({data_dir!r}), sandbox_uid_base={uid_base})
    box = await LocalProvider(settings).connect({state!r})
    print((await box.exec("readlink /proc/self/ns/net")).stdout, end="")

asyncio.run(main())
"""


async def test_another_service_process_joins_the_same_namespace(
    boxes: tuple[LocalSandbox, LocalSandbox], sandbox_data_dir: Path
) -> None:
    """``serve`` and ``worker`` share the data directory: a command of the sandbox run by the
    other process lands in the namespace this one created (found through its record)."""
    from .conftest import UID_BASE

    a, _ = boxes
    ns = (await a.exec("readlink /proc/self/ns/net")).stdout
    script = _OTHER_SERVICE.format(
        path=sys.path, data_dir=str(sandbox_data_dir), uid_base=UID_BASE, state=a.state
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE, cwd=os.getcwd()
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    assert out.decode() == ns


async def test_interfaces_with_network_off(boxes: tuple[LocalSandbox, LocalSandbox]) -> None:
    a, _ = boxes
    r = await a.exec("tail -n +3 /proc/net/dev | cut -d: -f1; ip link add x type dummy")
    assert r.stdout.split() == ["lo"]
    assert r.stderr  # no CAP_NET_ADMIN over the namespace


async def test_network_on_gives_egress_but_no_host_loopback(sandbox_data_dir: Path) -> None:
    provider = await _provider(sandbox_data_dir, "on")
    box = await provider.create(f"on-{secrets.token_hex(3)}")
    assert isinstance(box, LocalSandbox) and box.netns is not None
    name = f"agent-sessions-canary-{secrets.token_hex(4)}"
    try:
        with socket.socket() as listener, socket.socket(socket.AF_UNIX) as abstract:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            port = listener.getsockname()[1]
            abstract.bind("\0" + name)
            abstract.listen()
            r = await box.exec(
                "tail -n +3 /proc/net/dev | cut -d: -f1 | sort | tr '\\n' ' '; echo; "
                f"{_get(f'http://10.0.2.2:{port}/')}\n{_get(f'http://127.0.0.1:{port}/')}\n"
                f'python3 -c "import socket; s=socket.socket(socket.AF_UNIX); '
                f"s.connect('\\0{name}')\" 2>&1 | tail -1; ls /proc/$$/fd; true",
                timeout=30,
            )
        lines = r.stdout.splitlines()
        assert lines[0].split() == ["lo", "tap0"], r
        assert lines[1] != "200" and lines[2] != "200"  # host loopback stays closed
        assert "ConnectionRefusedError" in lines[3]
        assert lines[4:] == ["0", "1", "2"]  # slirp's ready pipe never reaches the sandbox
        if _host_has_egress():
            r = await box.exec(_get("http://deb.debian.org/debian/"), timeout=30)
            assert r.stdout.strip() == "200", r
        helper = box.netns._helper_pid()
        assert helper is not None
    finally:
        await box.destroy()
    assert helper not in _pids("slirp4netns")
    assert not _pids_named(f"agent-sessions-netns:{box.home}\0")
    assert box.netns.path() is None


def _host_has_egress() -> bool:
    done = subprocess.run(
        ["timeout", "5", "bash", "-c", "echo > /dev/tcp/deb.debian.org/80"],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def _pids_named(prefix: str) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if f.read().startswith(prefix.encode()):
                        out.append(int(entry))
            except OSError:
                pass
    return out


def _pids(comm: str) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() == comm:
                        out.append(int(entry))
            except OSError:
                pass
    return out
