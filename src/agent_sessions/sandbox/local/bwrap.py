"""The command line that starts one sandboxed command (docs/architecture.md, Local sandbox).

``setpriv`` drops host root to the sandbox's own uid (no supplementary groups, no inheritable
or bounding capabilities), ``prlimit`` sets rlimits, ``choom`` makes sandbox processes the OOM
killer's first choice, and bwrap builds the jail: every namespace unshared, nested user
namespaces disabled, a read-only root with the host's ``/usr`` and a minimal ``/etc``, a
size-capped ``/tmp``, the workspace at ``/workspace``, a cleared environment and the seccomp
filter passed as a descriptor.

bwrap's options name host paths (the data directory, the workspace), and bwrap is pid 1 inside
the sandbox, where ``/proc/1/cmdline`` shows its command line. So they reach it through
``--args FD`` (NUL-separated, read and closed by bwrap before the command starts) and its
visible command line is ``bwrap --args FD -- /bin/bash -c COMMAND`` (issue 14, finding 11).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agent_sessions.exceptions import InvalidInput
from agent_sessions.sandbox.errors import SandboxError
from agent_sessions.sandbox.local.netns import SLIRP_DNS

__all__ = [
    "BASE_ENV",
    "SANDBOX_GID",
    "SANDBOX_UID",
    "InvalidEnvironment",
    "Jail",
    "Limits",
    "args_fd",
    "data_fd",
]

SANDBOX_UID = 1000
SANDBOX_GID = 1000
WORKSPACE = "/workspace"
BASE_ENV: Mapping[str, str] = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": WORKSPACE,
    "LANG": "C.UTF-8",
    "TERM": "dumb",
}

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Read-only host files a build needs; none holds a secret. ``-try``: absent ones are skipped.
_ETC_FROM_HOST = (
    "/etc/ld.so.cache",
    "/etc/alternatives",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/localtime",
    "/etc/nsswitch.conf",
)
_USR_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


class InvalidEnvironment(SandboxError, InvalidInput):
    """An ``env`` name or value the kernel cannot carry."""


@dataclass(frozen=True)
class Limits:
    """Per-command rlimits (plus the tmpfs size); cgroup limits live in :mod:`.cgroups`."""

    nproc: int = 512
    """Tasks of the sandbox uid (threads count); per sandbox since each has its own uid."""
    nofile: int = 4096
    fsize: int = 1 << 30
    """Largest single file a command may write (SIGXFSZ beyond)."""
    data: int | None = None
    """RLIMIT_DATA per process: the memory fallback when no cgroup caps the sandbox."""
    tmpfs_bytes: int = 256 << 20


@dataclass(frozen=True)
class Jail:
    """Everything fixed for one sandbox; :meth:`argv` adds the per-command parts."""

    workspace: Path
    etc_dir: Path
    """Host directory with our ``passwd``, ``group`` and ``hosts`` for the sandbox."""
    host_uid: int | None
    """Dedicated host uid (service runs as root), or None to keep the service's own uid."""
    limits: Limits = field(default_factory=Limits)
    online: bool = False
    """The namespace has user-mode networking: bind a ``resolv.conf`` pointing at it."""
    usr_links: tuple[str, ...] = field(
        default_factory=lambda: tuple(n for n in _USR_LINKS if Path("/", n).is_symlink())
    )

    def environment(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        env = dict(BASE_ENV)
        for name, value in (extra or {}).items():
            if not _ENV_NAME.fullmatch(name) or "\0" in value:
                raise InvalidEnvironment(f"invalid environment variable {name!r}")
            env[name] = value
        return env

    def argv(
        self, command: str, *, cpu_seconds: int, args_fd: int, netns: str | None = None
    ) -> list[str]:
        """The host command line: the launchers, then bwrap reading its options (see
        :meth:`options`) from ``args_fd``; ``netns`` is the sandbox's network namespace (see
        :mod:`.netns`), None for a private one per command (bwrap's ``--unshare-net``)."""
        lim = self.limits
        prefix = ["nsenter", f"--net={netns}", "--"] if netns else []
        if self.host_uid is not None:
            u = str(self.host_uid)
            prefix += ["setpriv", f"--reuid={u}", f"--regid={u}", "--clear-groups",
                       "--inh-caps=-all", "--bounding-set=-all", "--"]  # fmt: skip
        prefix += ["prlimit", f"--nproc={lim.nproc}", f"--nofile={lim.nofile}",
                   f"--fsize={lim.fsize}", f"--cpu={cpu_seconds}", "--core=0"]  # fmt: skip
        if lim.data is not None:
            prefix.append(f"--data={lim.data}")
        prefix += ["--", "choom", "-n", "1000", "--"]
        return [*prefix, "bwrap", "--args", str(args_fd), "--", "/bin/bash", "-c", command]

    def options(
        self,
        *,
        cwd_parts: list[str],
        env: Mapping[str, str],
        seccomp_fd: int,
        netns: str | None = None,
    ) -> list[str]:
        """bwrap's options (for ``--args``): the jail of one command."""
        lim = self.limits
        if netns:  # every namespace but the network, which nsenter entered already
            unshare = ["--unshare-user", "--unshare-ipc", "--unshare-pid", "--unshare-uts",
                       "--unshare-cgroup-try"]  # fmt: skip
        else:
            unshare = ["--unshare-all", "--unshare-user"]
        jail = [*unshare, "--disable-userns",
                "--die-with-parent", "--new-session", "--cap-drop", "ALL",
                "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_GID),
                "--hostname", "sandbox", "--clearenv"]  # fmt: skip
        for name, value in env.items():
            jail += ["--setenv", name, value]
        jail += ["--ro-bind", "/usr", "/usr"]
        for name in self.usr_links:
            jail += ["--symlink", f"usr/{name}", f"/{name}"]
        for name in ("passwd", "group", "hosts", *(("resolv.conf",) if self.online else ())):
            jail += ["--ro-bind", str(self.etc_dir / name), f"/etc/{name}"]
        for path in _ETC_FROM_HOST:
            jail += ["--ro-bind-try", path, path]
        jail += ["--proc", "/proc", "--dev", "/dev",
                 "--size", str(lim.tmpfs_bytes), "--tmpfs", "/tmp",  # noqa: S108 (inside the sandbox)
                 "--symlink", "../tmp", "/var/tmp",  # noqa: S108
                 "--bind", str(self.workspace), WORKSPACE,
                 "--chdir", "/".join([WORKSPACE, *cwd_parts]),
                 "--seccomp", str(seccomp_fd),
                 "--remount-ro", "/"]  # fmt: skip
        return jail


def data_fd(name: str, data: bytes) -> int:
    """A fresh memfd holding ``data``, positioned at its start, for bwrap to read once (it
    closes the descriptors it reads); the caller closes its copy once the child started."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def args_fd(options: Sequence[str]) -> int:
    """bwrap's ``--args`` descriptor: ``options``, each ended by NUL."""
    data = "".join(f"{o}\0" for o in options).encode(sys.getfilesystemencoding(), "surrogateescape")
    return data_fd("agent-sessions-bwrap-args", data)


def etc_files() -> dict[str, str]:
    """Contents of the sandbox's ``/etc/passwd``, ``group`` and ``hosts``."""
    return {
        "passwd": (
            f"sandbox:x:{SANDBOX_UID}:{SANDBOX_GID}:sandbox:{WORKSPACE}:/bin/bash\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        ),
        "group": f"sandbox:x:{SANDBOX_GID}:\nnogroup:x:65534:\n",
        "hosts": "127.0.0.1\tlocalhost sandbox\n::1\tlocalhost ip6-localhost\n",
        "resolv.conf": f"nameserver {SLIRP_DNS}\n",
    }
