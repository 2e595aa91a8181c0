"""Per-sandbox disk limits: each workspace on its own loop-mounted ext4 image.

Without a limit one sandbox can fill the filesystem of ``DATA_DIR``, and with it the database
and every other workspace. ext4 project quotas would need that filesystem mounted with
``prjquota``; a loop image needs only root. So with ``AGENT_SESSIONS_SANDBOX_DISK_BYTES`` set,
on a host where :func:`detect` could format and mount a trial image, a new workspace is a
sparse image file of that size (``<home>/disk.img``, root's, 0600) formatted ext4 and mounted
at ``<home>/workspace`` (``nodev,nosuid``): a write past the limit fails with ``ENOSPC`` in
that sandbox alone. Where it cannot be done the reason goes to ``capabilities()`` and the
start-up log, as for the cgroup limits.

* The image takes on the host only what the workspace holds: it is sparse, formatted without
  zeroing its journal or inode tables (a new sparse file reads as zeros already), and mounted
  with ``discard`` (deleted files punch holes back into it).
* A restore extracts into a new image mounted beside the workspace (the limit holds during the
  restore too), then swaps the images: unmount both, rename the new one over ``disk.img`` (the
  commit point), mount it. After a crash ``disk.img`` is a whole image, old or new. While a
  process makes or fills an image it holds an ``flock`` on the sandbox's home directory, so a
  staging image in a home nobody has locked was left by a dead process: the next restore or
  destroy of that sandbox, or a service starting, removes it.
* Mounts do not survive a reboot: :meth:`WorkspaceDisk.ensure_mounted` mounts the image again
  before a sandbox is handed out. An existing image is always mounted, whatever the setting
  says now: turning the limit off never hides a workspace (new workspaces are then plain
  directories), and a new limit applies to workspaces created (or resumed) after it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from agent_sessions.faults import fault_point
from agent_sessions.sandbox.errors import SandboxUnavailable
from agent_sessions.sandbox.local.runner import _HOST_ENV

__all__ = ["DiskCommandFailed", "DiskSupport", "StagedImage", "WorkspaceDisk", "detect", "recover"]

log = logging.getLogger(__name__)

IMAGE = "disk.img"
_STAGED = ".disk-"  # <home>/.disk-<hex>.img, mounted (for a restore) at <home>/.disk-<hex>
_TOOLS = ("mkfs.ext4", "mount", "umount")
# -m 0: no blocks reserved for root; -i 8192: an inode per 8 KiB (source trees are many small
# files; ext4's default of 16 KiB runs out of inodes first); lazy init: see the module doc.
_MKFS = ("mkfs.ext4", "-q", "-F", "-b", "4096", "-m", "0", "-i", "8192")
_MKFS_EXTENDED = "lazy_itable_init=1,lazy_journal_init=1,nodiscard"
_MOUNT_OPTIONS = "loop,nodev,nosuid,discard,noinit_itable"
_PROBE_BYTES = 32 << 20
_probed: dict[Path, str | None] = {}
"""Outcome of the trial mount per directory: once per process, providers are built often."""


class DiskCommandFailed(SandboxUnavailable):
    """``mkfs``, ``mount`` or ``umount`` failed. The message names the tool only (it may reach
    a client through a session's error); ``detail`` has its own words, for the operator."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail


@dataclass(frozen=True)
class DiskSupport:
    """Whether per-sandbox disk limits are in force, and if not, why."""

    limit: int | None
    reason: str

    @property
    def available(self) -> bool:
        return self.limit is not None


def detect(limit: int | None, scratch: Path, *, as_root: bool) -> DiskSupport:
    """Check that ``limit`` can be enforced here: root, the tools, and a trial image formatted
    and mounted in ``scratch`` (a directory of the data dir, so the same filesystem)."""
    if limit is None:
        return DiskSupport(
            None,
            "AGENT_SESSIONS_SANDBOX_DISK_BYTES is not set: a sandbox can fill the disk of the "
            "data directory",
        )
    if not as_root:
        return DiskSupport(None, "a disk limit needs the service to run as root (loop mounts)")
    missing = [tool for tool in _TOOLS if shutil.which(tool, path=_HOST_ENV["PATH"]) is None]
    if missing:
        return DiskSupport(
            None, f"a disk limit needs {', '.join(missing)} (Debian: e2fsprogs, mount)"
        )
    scratch = scratch.resolve()
    if scratch not in _probed:
        _probed[scratch] = _trial_mount(scratch)
    failure = _probed[scratch]
    if failure is not None:
        return DiskSupport(None, f"loop-mounted images do not work on this host: {failure}")
    return DiskSupport(limit, f"each workspace is an ext4 image of {limit} bytes (loop mount)")


def _trial_mount(scratch: Path) -> str | None:
    """None if an image can be formatted, mounted and unmounted here, else what failed."""
    try:
        recover(scratch)
        staged = StagedImage.create(scratch, _PROBE_BYTES, None)
        try:
            staged.mount()
        finally:
            staged.discard()
    except DiskCommandFailed as exc:
        return exc.detail
    except OSError as exc:
        return str(exc)
    return None


class StagedImage:
    """A new image, not yet the workspace's; its home stays locked until :meth:`release`."""

    def __init__(self, path: Path, lock: int) -> None:
        self.path = path
        self.mountpoint = path.with_suffix("")
        self._lock: int | None = lock

    @classmethod
    def create(cls, home: Path, size: int, owner: tuple[int, int] | None) -> StagedImage:
        lock = _lock_home(home, wait=True)
        assert lock is not None
        staged = cls(home / f"{_STAGED}{secrets.token_hex(6)}.img", lock)
        try:
            fd = os.open(staged.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                os.ftruncate(fd, size)  # sparse: nothing allocated yet
            finally:
                os.close(fd)
            extended = _MKFS_EXTENDED
            if owner is not None:
                extended += f",root_owner={owner[0]}:{owner[1]}"
            _run([*_MKFS, "-E", extended, str(staged.path)])
        except BaseException:
            staged.discard()
            raise
        return staged

    def mount(self) -> Path:
        """Mount it at its own mount point beside the workspace (for a restore)."""
        self.mountpoint.mkdir(mode=0o700)
        _mount(self.path, self.mountpoint)
        return self.mountpoint

    def release(self) -> None:
        """Unlock the home (a crash releases it too)."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def discard(self) -> None:
        """Unmount and remove it (a failed restore, or a trial)."""
        try:
            _remove_staged(self.path)
        finally:
            self.release()


class WorkspaceDisk:
    """The image behind one workspace, if it has one: ``<home>/disk.img`` at ``workspace``."""

    def __init__(self, home: Path, workspace: Path) -> None:
        self.home = home
        self.workspace = workspace
        self.image = home / IMAGE

    def exists(self) -> bool:
        return self.image.exists()

    def needs_mount(self) -> bool:
        """Whether the workspace has an image that is not mounted (three ``stat`` calls)."""
        return not os.path.ismount(self.workspace) and self.image.exists()

    def create(self, size: int, owner: tuple[int, int] | None) -> None:
        """A new image for a new (empty) workspace, mounted."""
        staged = StagedImage.create(self.home, size, owner)
        try:
            os.rename(staged.path, self.image)
        except BaseException:
            staged.discard()
            raise
        staged.release()
        self.ensure_mounted()

    def ensure_mounted(self) -> None:
        """Mount the image if it is not (after a reboot); a no-op for a plain workspace."""
        if not self.needs_mount():
            return
        self.workspace.mkdir(mode=0o700, exist_ok=True)
        _mount(self.image, self.workspace)

    def begin_restore(self, size: int, owner: tuple[int, int] | None) -> StagedImage:
        """A new image, mounted beside the workspace, for a restore to fill."""
        recover(self.home)
        staged = StagedImage.create(self.home, size, owner)
        try:
            staged.mount()
        except BaseException:
            staged.discard()
            raise
        return staged

    def finish_restore(self, staged: StagedImage) -> None:
        """Make the filled image the workspace's (the old one goes)."""
        try:
            _unmount(staged.mountpoint)
            fault_point("disk.staging-unmounted")
            _unmount(self.workspace)
            fault_point("disk.old-unmounted")
            os.rename(staged.path, self.image)  # the commit point
            fault_point("disk.committed")
            staged.mountpoint.rmdir()
        finally:
            staged.release()  # on a failure, what is left is a dead restore's: recovered
        self.ensure_mounted()

    def unmount(self) -> None:
        """Unmount the workspace and any staging image (before the home is removed)."""
        recover(self.home)
        _unmount(self.workspace)


def recover(home: Path) -> None:
    """Remove the staging images (unmounting them first) a dead process left in ``home``;
    a home locked by a live process is left alone."""
    lock = _lock_home(home, wait=False)
    if lock is None:
        return
    try:
        for path in home.glob(f"{_STAGED}*"):
            if path.suffix == ".img":
                _remove_staged(path)
            elif path.is_dir() and not path.with_suffix(".img").exists():
                _remove_staged(path.with_suffix(".img"))  # its mount point only
    finally:
        os.close(lock)


def _lock_home(home: Path, *, wait: bool) -> int | None:
    """An fd holding ``flock`` on ``home``, or None if another holds it and ``wait`` is off."""
    fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _remove_staged(image: Path) -> None:
    mountpoint = image.with_suffix("")
    _unmount(mountpoint)
    with contextlib.suppress(FileNotFoundError):
        mountpoint.rmdir()
    image.unlink(missing_ok=True)


def _mount(image: Path, mountpoint: Path) -> None:
    _run(["mount", "-t", "ext4", "-o", _MOUNT_OPTIONS, str(image), str(mountpoint)])
    # mkfs makes lost+found; a workspace has no use for it. Only mkfs's own is removed (empty
    # and root's: a sandbox cannot make a root-owned directory).
    lost = mountpoint / "lost+found"
    with contextlib.suppress(OSError):
        st = lost.lstat()
        if stat.S_ISDIR(st.st_mode) and st.st_uid == 0:
            lost.rmdir()


def _unmount(mountpoint: Path) -> None:
    """Unmount if mounted. A busy filesystem (a process not yet gone) is detached lazily: it
    disappears from the path now and from the kernel when its last user exits."""
    if not os.path.ismount(mountpoint):
        return
    try:
        _run(["umount", str(mountpoint)])
    except DiskCommandFailed:
        log.warning("%s is busy: detaching it lazily", mountpoint)
        _run(["umount", "--lazy", str(mountpoint)])


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, env=_HOST_ENV, check=False)
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        detail = f"`{' '.join(argv)}` exited with {done.returncode}"
        detail += f": {said[-1]}" if said else ""
        log.warning("%s", detail)
        raise DiskCommandFailed(f"{argv[0]} failed for a workspace image", detail)
