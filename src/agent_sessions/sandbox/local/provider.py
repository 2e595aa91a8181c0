"""The local provider: bubblewrap sandboxes on this host (single host by nature).

Layout under ``DATA_DIR/sandboxes`` (mode 0711: the sandbox uids must traverse it, not list
it)::

    .system/etc/{passwd,group,hosts}   the sandbox's /etc overrides
    .uids.json                         name → host uid (when running as root)
    <name>/workspace                   bound at /workspace, owned by the sandbox uid, 0700
    <name>/disk.img                    with a disk limit: the workspace's ext4 image (:mod:`.disk`)
    <name>/stopped                     marker: stop() ran and no exec since
    <name>/netns.json                  root, 0600: pid and start time of the namespace holder
                                       and helper (:mod:`.netns`)

Each ``exec`` is one bwrap invocation (see :mod:`.bwrap`): commands share the workspace and,
when the service is root, one network namespace per sandbox (:mod:`.netns`; a detached dev
server is reachable from the next command), but not a pid namespace. Detached commands live on
in their own bwrap until ``stop()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import math
import os
import secrets
import shutil
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent_sessions.exceptions import InvalidInput
from agent_sessions.sandbox._openat2 import split_relative
from agent_sessions.sandbox._workspace_fs import HostFileOps, WorkspaceFS
from agent_sessions.sandbox.base import (
    DEFAULT_MAX_OUTPUT,
    DEFAULT_TIMEOUT,
    ExecResult,
    OutputListener,
    Sandbox,
    SandboxProvider,
    SandboxStatus,
    SnapshotInfo,
    validate_name,
)
from agent_sessions.sandbox.errors import (
    PathConflict,
    SandboxElsewhere,
    SandboxError,
    SandboxNotFound,
    SandboxSetupError,
    SandboxUnavailable,
)
from agent_sessions.sandbox.local import bwrap, cgroups, disk, netns, processes, runner, seccomp
from agent_sessions.sandbox.local.bwrap import Jail, Limits, etc_files
from agent_sessions.sandbox.local.uids import UidAllocator
from agent_sessions.snapshots.base import new_snapshot_id

if TYPE_CHECKING:
    from agent_sessions.settings import Settings
    from agent_sessions.snapshots import SnapshotStore

__all__ = ["LocalProvider", "LocalSandbox"]

log = logging.getLogger(__name__)

MAX_COMMAND_BYTES = 100_000
"""Linux caps one argv string at 128 KiB (MAX_ARG_STRLEN); refuse clearly below that."""


class CommandTooLong(SandboxError, InvalidInput):
    """The command does not fit in one argument; write it to a script file instead."""


_NETNS_TOOLS = ("nsenter", "unshare", "ip")


def _require_tools(network: str, as_root: bool) -> None:
    missing = [t for t in ("bwrap", "setpriv", "prlimit", "choom") if shutil.which(t) is None]
    if missing:
        raise SandboxSetupError(
            f"the local sandbox provider needs {', '.join(missing)} "
            "(Debian: bubblewrap, util-linux; run scripts/ensure-system-deps.sh)"
        )
    if network == "on":
        netns_missing = [t for t in _NETNS_TOOLS if shutil.which(t) is None]
        if not as_root or netns_missing:
            raise SandboxSetupError(
                "AGENT_SESSIONS_SANDBOX_NETWORK=on needs the service to run as root with "
                f"{', '.join(_NETNS_TOOLS)} installed, to give each sandbox its own network "
                "namespace (the host network is never shared); set it to 'off'"
            )
        netns.user_mode_networking()


_warned: set[str] = set()
_DETACHED: set[asyncio.Task[int]] = set()
"""Reapers of detached commands, held here so they are never garbage-collected mid-wait."""


def _warn_once(message: str, *args: object) -> None:
    """Loud (WARNING) but once per process: providers may be built per request."""
    if message % args not in _warned:
        _warned.add(message % args)
        log.warning(message, *args)


def _check_traversable(path: Path) -> None:
    """The sandbox uid opens the workspace path itself, so every ancestor needs o+x."""
    for parent in [path, *path.parents]:
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            raise SandboxSetupError(
                f"{parent} is not searchable by other users, so sandbox uids cannot reach their "
                "workspace under it: chmod o+x it, or choose another AGENT_SESSIONS_DATA_DIR"
            )


class LocalProvider(SandboxProvider):
    """Creates bubblewrap sandboxes under ``settings.data_dir``."""

    kind = "local"

    def __init__(
        self,
        settings: Settings,
        snapshots: SnapshotStore | None = None,
        *,
        limits: Limits | None = None,
    ) -> None:
        self.as_root = os.geteuid() == 0
        _require_tools(settings.sandbox_network, self.as_root)
        self.root = (settings.data_dir / "sandboxes").resolve()
        self.host = settings.executor_id
        """Named in every sandbox's state: the one process that can reach it."""
        self.snapshots = snapshots
        self.online = settings.sandbox_network == "on"
        self.shared_netns = self.as_root and all(shutil.which(t) for t in _NETNS_TOOLS)
        """One network namespace per sandbox (needs root); else one per command."""
        self._namespaces: dict[str, netns.NetworkNamespace] = {}
        self.cgroup = cgroups.detect(settings.sandbox_cgroup_root)
        self.memory_max = settings.sandbox_memory_max_bytes
        self.pids_max = settings.sandbox_pids_max
        self.detached_cpu_seconds = settings.hard_timeout_seconds
        self.limits = limits or Limits(
            tmpfs_bytes=settings.sandbox_tmpfs_bytes,
            data=None if self.cgroup.available else settings.sandbox_memory_max_bytes,
        )
        self.uids = UidAllocator(
            self.root / ".uids.json", settings.sandbox_uid_base, settings.sandbox_uid_count
        )
        self.etc_dir = self.root / ".system" / "etc"
        self._setup_dirs()
        self.disk = disk.detect(
            settings.sandbox_disk_bytes, self.etc_dir.parent, as_root=self.as_root
        )
        if self.as_root:
            self._recover_disks()
        if not self.cgroup.available:
            _warn_once("local sandboxes run without cgroup limits: %s", self.cgroup.reason)
        if not self.disk.available:
            _warn_once("local sandboxes run without a disk limit: %s", self.disk.reason)
        if not self.as_root:
            _warn_once(
                "the service is not root: sandboxes share its uid (RLIMIT_NPROC is shared, files "
                "belong to the service user) and each command gets its own network namespace"
            )

    def _setup_dirs(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o711)
        self.etc_dir.mkdir(parents=True, exist_ok=True)
        for d in (self.etc_dir.parent, self.etc_dir):
            d.chmod(0o755)
        for name, text in etc_files().items():
            target = self.etc_dir / name
            if not target.exists() or target.read_text() != text:
                tmp = target.with_suffix(".tmp")
                tmp.write_text(text)
                tmp.chmod(0o644)
                tmp.replace(target)
        if self.as_root:
            _check_traversable(self.root)

    def _recover_disks(self) -> None:
        """Staging images a dead process left (a restore cut short) go, whatever the setting."""
        for home in self.root.iterdir():
            if home.is_dir() and not home.is_symlink():
                disk.recover(home)

    def capabilities(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "isolation": "bubblewrap (shared host kernel; single trusted team or dev box)",
            "dedicatedUid": self.as_root,
            "network": "on" if self.online else "off",
            "sharedNetworkNamespace": self.shared_netns,
            "seccomp": True,
            "cgroup": self.cgroup.available,
            "cgroupReason": self.cgroup.reason,
            "memoryLimit": "cgroup" if self.cgroup.available else "RLIMIT_DATA per process",
            "tmpfsBytes": self.limits.tmpfs_bytes,
            "diskLimit": self.disk.available,
            "diskLimitBytes": self.disk.limit,
            "diskReason": self.disk.reason,
            "rlimits": {
                "nproc": self.limits.nproc,
                "nofile": self.limits.nofile,
                "fsize": self.limits.fsize,
            },
        }

    def _namespace(self, name: str, home: Path) -> netns.NetworkNamespace:
        """One object per sandbox name, so every handle (the API connects per request) shares
        its lock and cached pid: racing first commands then create a single namespace."""
        if name not in self._namespaces:
            self._namespaces[name] = netns.NetworkNamespace(home, online=self.online)
        return self._namespaces[name]

    def _sandbox(self, name: str, uid: int | None) -> LocalSandbox:
        return LocalSandbox(self, name, uid)

    async def create(self, name: str) -> Sandbox:
        validate_name(name)
        uid = await asyncio.to_thread(self.uids.allocate, name) if self.as_root else None
        box = self._sandbox(name, uid)
        await asyncio.to_thread(box._prepare)
        return box

    async def connect(self, state: Mapping[str, Any]) -> Sandbox:
        if state.get("provider") != self.kind or not isinstance(state.get("name"), str):
            raise SandboxNotFound("not a local sandbox state")
        name = validate_name(state["name"])
        uid = await asyncio.to_thread(self.uids.lookup, name) if self.as_root else None
        box = self._sandbox(name, uid)
        if not box.workspace.is_dir() or (self.as_root and uid is None):
            host = state.get("host")
            if isinstance(host, str) and host != self.host:
                raise SandboxElsewhere(name, host)
            raise SandboxNotFound(f"sandbox {name!r} does not exist")
        if box.disk.needs_mount():  # its image, after a reboot
            await asyncio.to_thread(box.disk.ensure_mounted)
        return box


class LocalSandbox(HostFileOps, Sandbox):
    """One bubblewrap sandbox; cheap to construct, all state is on disk."""

    def __init__(self, provider: LocalProvider, name: str, uid: int | None) -> None:
        self.name = name
        self.provider = provider
        self.uid = uid
        self.home = provider.root / name
        self.workspace = self.home / "workspace"
        self.disk = disk.WorkspaceDisk(self.home, self.workspace)
        self.fs = WorkspaceFS(self.workspace, (uid, uid) if uid is not None else None)
        self.netns = provider._namespace(name, self.home) if provider.shared_netns else None
        self.jail = Jail(
            self.workspace,
            provider.etc_dir,
            uid,
            provider.limits,
            online=provider.online,
        )
        self.cgroup = (
            cgroups.CgroupLimits(
                provider.cgroup.root / name, provider.memory_max, provider.pids_max
            )
            if provider.cgroup.root is not None
            else None
        )
        # The launchers' environment holds this; stop() finds sandboxes started by anyone.
        self._marker = processes.Marker.of(self.workspace)
        self._detached: set[asyncio.Task[int]] = set()

    @property
    def state(self) -> dict[str, Any]:
        return {"provider": "local", "name": self.name, "host": self.provider.host}

    # -- setup -----------------------------------------------------------------------------

    @property
    def _owner(self) -> tuple[int, int] | None:
        return (self.uid, self.uid) if self.uid is not None else None

    def _prepare(self) -> None:
        self.home.mkdir(mode=0o711, exist_ok=True)
        self.home.chmod(0o711)
        self.workspace.mkdir(mode=0o700, exist_ok=True)
        limit = self.provider.disk.limit
        if limit is not None and not self.disk.exists() and not any(self.workspace.iterdir()):
            self.disk.create(limit, self._owner)  # a new workspace gets its image
        else:
            self.disk.ensure_mounted()  # an image made earlier, if any
        st = os.lstat(self.workspace)
        if not stat.S_ISDIR(st.st_mode):
            raise SandboxUnavailable(f"workspace of {self.name!r} is not a directory")
        if self.uid is not None and (st.st_uid, st.st_gid) != (self.uid, self.uid):
            os.chown(self.workspace, self.uid, self.uid, follow_symlinks=False)
        os.chmod(self.workspace, 0o700, follow_symlinks=False)
        if self.cgroup is not None:
            self.cgroup.ensure()

    def _set_stopped(self, stopped: bool) -> None:
        marker = self.home / "stopped"
        if stopped:
            marker.touch()
        else:
            marker.unlink(missing_ok=True)

    def _ready(self, cwd: str) -> list[str]:
        """Check ``cwd`` and clear the stopped marker.

        Called on the event loop: a handful of metadata syscalls on a local directory cost
        microseconds, less than a hop to a worker thread, and this is on every exec's path.
        """
        parts = split_relative(cwd)
        if self.fs.stat(cwd).kind != "dir":
            raise PathConflict(f"cwd is not a directory: {cwd!r}")
        self._set_stopped(False)
        return parts

    def launch(
        self, command: str, *, cwd_parts: list[str], env: Mapping[str, str] | None,
        cpu_seconds: int, netns: str | None = None,
    ) -> tuple[list[str], list[int]]:  # fmt: skip
        """The host command line of one exec and the descriptors it reads (the seccomp program,
        bwrap's options), which the caller passes on and closes (public for the benchmark)."""
        environment = self.jail.environment(env)
        fds = [seccomp.filter_fd()]
        try:
            options = self.jail.options(
                cwd_parts=cwd_parts, env=environment, seccomp_fd=fds[0], netns=netns
            )
            fds.append(bwrap.args_fd(options))
            argv = self.jail.argv(command, cpu_seconds=cpu_seconds, args_fd=fds[1], netns=netns)
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        return (self.cgroup.wrap(argv) if self.cgroup is not None else argv), fds

    # -- commands --------------------------------------------------------------------------

    async def exec(
        self,
        command: str,
        *,
        cwd: str = ".",
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 (enforced on the host by runner)
        env: Mapping[str, str] | None = None,
        detached: bool = False,
        max_output: int = DEFAULT_MAX_OUTPUT,
        on_output: OutputListener | None = None,
    ) -> ExecResult:
        if len(command.encode("utf-8", "surrogateescape")) > MAX_COMMAND_BYTES or "\0" in command:
            raise CommandTooLong(
                f"command longer than {MAX_COMMAND_BYTES} bytes or holding NUL; "
                "write it to a file and run that"
            )
        parts = self._ready(cwd)
        ns = None
        if self.netns is not None:
            ns = self.netns.path() or await self.netns.ensure()
        timeout = max(0.001, timeout)
        cpu = self.provider.detached_cpu_seconds if detached else math.ceil(timeout) + 1
        argv, fds = self.launch(command, cwd_parts=parts, env=env, cpu_seconds=cpu, netns=ns)
        if detached:
            proc = await runner.spawn_detached(argv, pass_fds=fds, env=self._marker.env)
            task = asyncio.ensure_future(proc.wait())  # reaps it; stop() does the killing
            self._detached.add(task)
            _DETACHED.add(task)  # outlives this object: the API reconnects per request
            task.add_done_callback(_DETACHED.discard)
            task.add_done_callback(self._detached.discard)
            return ExecResult(0, "", "", False, False, command_id=f"cmd_{secrets.token_hex(8)}")
        done = await runner.run(
            argv,
            pass_fds=fds,
            env=self._marker.env,
            timeout=timeout,
            max_output=max_output,
            on_output=on_output,
        )
        return ExecResult(done.exit_code, done.stdout, done.stderr, done.truncated, done.timed_out)

    # -- snapshots -------------------------------------------------------------------------

    def _store(self) -> SnapshotStore:
        if self.provider.snapshots is None:
            raise SandboxUnavailable("no snapshot store configured for the local provider")
        return self.provider.snapshots

    async def snapshot(self) -> SnapshotInfo:
        store = self._store()
        if not self.workspace.is_dir():
            raise SandboxNotFound(f"sandbox {self.name!r} does not exist")
        snapshot_id = new_snapshot_id(self.name)
        return await store.save(self.workspace, snapshot_id)

    async def restore(self, snapshot_url: str) -> None:
        store = self._store()
        # Running commands hold the old tree through their bind mount; stop them first.
        await self.stop()
        if self.disk.exists():
            await self._restore_image(store, snapshot_url)
        else:
            await store.restore(snapshot_url, self.workspace, owner=self._owner)
        await asyncio.to_thread(self._prepare)
        await asyncio.to_thread(self._set_stopped, False)  # restored = ready to run

    async def _restore_image(self, store: SnapshotStore, snapshot_url: str) -> None:
        """A workspace on its own image cannot be renamed: restore into a new image, then
        swap the images (:mod:`.disk`). The limit holds during the restore too."""
        size = self.provider.disk.limit or self.disk.image.stat().st_size
        staged = await asyncio.to_thread(self.disk.begin_restore, size, self._owner)
        try:
            await store.restore(snapshot_url, staged.mountpoint, owner=self._owner, fresh=True)
        except BaseException as exc:
            await asyncio.to_thread(staged.discard)
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise SandboxUnavailable(
                    f"the snapshot does not fit in the sandbox's disk limit ({size} bytes); "
                    "raise AGENT_SESSIONS_SANDBOX_DISK_BYTES to restore it"
                ) from exc
            raise
        await asyncio.to_thread(self.disk.finish_restore, staged)

    # -- lifecycle -------------------------------------------------------------------------

    async def freeze(self) -> None:
        await asyncio.to_thread(processes.freeze_all, self.uid, self._marker)

    def _kill_everything(self) -> None:
        if self.cgroup is not None:
            self.cgroup.kill()
        processes.kill_all(self.uid, self._marker)
        if self.netns is not None:  # a stopped sandbox holds no namespace and no helper
            self.netns.remove()

    async def stop(self) -> None:
        if self.home.is_dir():
            await asyncio.to_thread(self._set_stopped, True)
        await asyncio.to_thread(self._kill_everything)
        for task in list(self._detached):
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(task, 5)

    async def destroy(self) -> None:
        await self.stop()

        def remove() -> None:
            if self.home.is_dir():
                self.disk.unmount()  # else rmtree would empty the image, then fail
                shutil.rmtree(self.home)  # fd-based walk: safe against planted symlinks
            if self.cgroup is not None:
                self.cgroup.remove()
            if self.uid is not None:
                self.provider.uids.release(self.name)
            self.provider._namespaces.pop(self.name, None)

        await asyncio.to_thread(remove)

    async def status(self) -> SandboxStatus:
        if not self.workspace.is_dir():
            return "missing"
        return "stopped" if (self.home / "stopped").exists() else "running"
