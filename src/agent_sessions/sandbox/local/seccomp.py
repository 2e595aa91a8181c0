"""The seccomp filter bwrap installs in every sandbox (``--seccomp FD``).

bwrap only loads a precompiled BPF program, so we build one with libseccomp (``pyseccomp``),
starting from Flatpak's deny list (``flatpak-run.c``, ``setup_seccomp``): the kernel surface a
build tool never needs but exploits love. Syscalls of a foreign architecture are killed
(libseccomp's default bad-arch action), so 32-bit entry points cannot bypass the list.
"""

from __future__ import annotations

import errno
import functools
import tempfile

import pyseccomp as seccomp

from agent_sessions.sandbox.local.bwrap import data_fd

__all__ = ["DENIED_SYSCALLS", "filter_bpf", "filter_fd"]

CLONE_NEWUSER = 0x10000000
TIOCSTI = 0x5412
TIOCLINUX = 0x541C
PER_LINUX = 0x0000

DENIED_SYSCALLS: tuple[str, ...] = (
    # Kernel logs and keyrings: info leaks and shared state across containers.
    "syslog", "add_key", "keyctl", "request_key",
    # New namespaces or joining old ones; mounts (classic and the new mount API).
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot",
    "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    # Introspection and attack surface: tracing, eBPF, userfaultfd (race widening), perf.
    "ptrace", "process_vm_readv", "process_vm_writev", "bpf", "userfaultfd", "perf_event_open",
    # Modules, kexec, handles (the "shocker" escape), NUMA policy, accounting, quotas.
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "open_by_handle_at", "name_to_handle_at", "move_pages", "mbind", "get_mempolicy",
    "set_mempolicy", "migrate_pages", "acct", "quotactl", "uselib", "vhangup",
    "swapon", "swapoff", "reboot", "lookup_dcookie",
)  # fmt: skip

_ENOSYS_SYSCALLS = (
    # clone3 passes flags in memory where seccomp cannot see them; ENOSYS makes libc fall back
    # to clone, whose CLONE_NEWUSER flag the filter checks.
    "clone3",
    # io_uring bypasses the syscall filter for the operations it performs.
    "io_uring_setup", "io_uring_enter", "io_uring_register",
)  # fmt: skip


def _build() -> seccomp.SyscallFilter:
    f = seccomp.SyscallFilter(seccomp.ALLOW)
    eperm = seccomp.ERRNO(errno.EPERM)
    for name in DENIED_SYSCALLS:
        f.add_rule(eperm, name)
    for name in _ENOSYS_SYSCALLS:
        f.add_rule(seccomp.ERRNO(errno.ENOSYS), name)
    f.add_rule(eperm, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER))
    # MASKED_EQ on the low 32 bits: plain EQ lets TIOCSTI + 2**32 through (CVE-2019-10063).
    for request in (TIOCSTI, TIOCLINUX):
        f.add_rule(eperm, "ioctl", seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, request))
    # No faking another personality (e.g. ADDR_NO_RANDOMIZE to defeat ASLR).
    f.add_rule(eperm, "personality", seccomp.Arg(0, seccomp.NE, PER_LINUX))
    return f


@functools.cache
def filter_bpf() -> bytes:
    """The compiled BPF program (built once per process)."""
    with tempfile.TemporaryFile() as out:
        _build().export_bpf(out)
        out.seek(0)
        return out.read()


def filter_fd() -> int:
    """A fresh memfd holding the program, for one bwrap invocation (bwrap reads it to the end,
    so each spawn needs its own descriptor)."""
    return data_fd("agent-sessions-seccomp", filter_bpf())
