"""Running one sandboxed command from the host: drain, cap, time out, kill the tree.

The host owns the clock: on timeout it SIGKILLs the process group of the bwrap it started,
which takes down bwrap's pid-namespace init and, with it, every process inside (the kernel
kills a pid namespace whose init dies). Output is read continuously from both pipes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent_sessions.inflight import hold
from agent_sessions.sandbox._output import HeadTail, capture_pair
from agent_sessions.sandbox.base import OutputListener
from agent_sessions.sandbox.errors import SandboxUnavailable

__all__ = ["Completed", "run", "spawn_detached"]

_CHUNK = 1 << 16
_HOST_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
"""The launchers' environment: never the service's (bwrap clears it anyway, belt and braces)."""
_DRAIN_GRACE = 5.0


@dataclass(frozen=True)
class Completed:
    exit_code: int
    stdout: str
    stderr: str
    truncated: bool
    timed_out: bool


async def _drain(stream: asyncio.StreamReader | None, sink: HeadTail) -> None:
    if stream is None:
        return
    while chunk := await stream.read(_CHUNK):
        sink.feed(chunk)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def _spawn(
    argv: Sequence[str], pass_fds: Sequence[int], env: Mapping[str, str], *, capture: bool
) -> asyncio.subprocess.Process:
    """Start ``argv``; the descriptors in ``pass_fds`` are handed over and closed here, ``env``
    adds to the launchers' environment (bwrap clears it for the command)."""
    out = asyncio.subprocess.PIPE if capture else asyncio.subprocess.DEVNULL
    try:
        return hold(
            await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                pass_fds=tuple(pass_fds),  # only what bwrap reads; close_fds stays True
                start_new_session=True,  # own process group: the timeout kills exactly this tree
                env={**env, **_HOST_ENV},
            )
        )
    except OSError as err:
        raise SandboxUnavailable(f"cannot start the sandbox: {err}") from err
    finally:
        for fd in pass_fds:  # the child has its copy
            os.close(fd)


def _abandon(drains: asyncio.Future[Any]) -> None:
    """Cancel the drains and take their outcome when it comes (else asyncio logs a
    "never retrieved" CancelledError at exit)."""
    drains.cancel()
    drains.add_done_callback(lambda f: f.cancelled() or f.exception())


async def run(
    argv: Sequence[str],
    *,
    pass_fds: Sequence[int],
    env: Mapping[str, str],
    timeout: float,  # noqa: ASYNC109 (we must kill the tree, not just stop waiting)
    max_output: int,
    on_output: OutputListener | None = None,
) -> Completed:
    """Run to completion or to ``timeout`` seconds, whichever comes first."""
    proc = await _spawn(argv, pass_fds, env, capture=True)
    out, err = capture_pair(max_output, on_output)
    drains = asyncio.gather(_drain(proc.stdout, out), _drain(proc.stderr, err))
    waiter = asyncio.ensure_future(proc.wait())
    timed_out = False
    try:
        done, _ = await asyncio.wait({waiter}, timeout=timeout)
        if not done:
            timed_out = True
            _kill_group(proc.pid)
        await waiter
        try:
            # The namespace is gone once bwrap has exited, so the pipes close promptly.
            await asyncio.wait_for(asyncio.shield(drains), _DRAIN_GRACE)
        except TimeoutError:
            _abandon(drains)
    except BaseException:  # cancelled by the caller: leave nothing behind
        _kill_group(proc.pid)
        _abandon(drains)
        raise
    finally:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(waiter, 5)
    code = proc.returncode if proc.returncode is not None else -1
    if code < 0:
        code = 128 - code
    stdout, t1 = out.result()
    stderr, t2 = err.result()
    return Completed(code, stdout, stderr, t1 or t2, timed_out)


async def spawn_detached(
    argv: Sequence[str], *, pass_fds: Sequence[int], env: Mapping[str, str]
) -> asyncio.subprocess.Process:
    """Start without waiting; output is discarded (the command may redirect it to a file)."""
    return await _spawn(argv, pass_fds, env, capture=False)
