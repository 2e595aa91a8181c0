"""Network git, on the host only: clone and push against the forge, with the token (ADR 13).

A session bound to a repository has a bare repository of the host's own,
``DATA_DIR/repos/<sessionId>.git`` (in a 0700 directory): sandboxes have no network, and the
token must never reach one.

* **Clone** (provisioning): ``git clone --bare`` from the forge, watched against
  ``clone_max_bytes`` and a timeout. A staging repository then fetches every branch from it as
  ``refs/remotes/origin/*`` and gets ``origin`` = the plain URL, ``origin/HEAD``, the branch to
  work on and its upstream. Only its ``.git`` reaches the sandbox, as a snapshot restore (the
  one call every provider implements that streams a tree into a workspace, with the sandbox's
  ownership, its disk limit and an atomic swap; the archive is deleted right after), and the
  sandbox checks the files out itself: no file of the repository is ever written out on the
  host, and nothing is held in memory whole.
* **Push**: the sandbox writes a bundle of its branch (``--not --remotes=origin``), the host
  reads it (bounded), checks its header, and indexes its pack into the bare repository with
  ``git index-pack --strict`` (every object fsck'ed: git 2.39 does not check objects fetched
  from a bundle); then it pushes that commit, never with force. A bundle is data: git on the
  host never runs in a tree the sandbox wrote.

Git here reads no user or system configuration, never prompts, speaks https, ssh and git only
(``file`` too with ``allow_local_repos``, and for its own local copies), and gets the token
through its environment (``GIT_CONFIG_*``: an ``http.extraHeader``), so the token is in no
argv, no file and no log line; it is sent only to the configured forge (:func:`token_applies`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import secrets
import shutil
import signal
from collections.abc import Iterator
from contextlib import aclosing
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO
from weakref import WeakValueDictionary

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from agent_sessions.datadir import PRIVATE_DIR, private
from agent_sessions.exceptions import Conflict, NotFound, TooLarge, UpstreamError
from agent_sessions.inflight import hold
from agent_sessions.sandbox import Sandbox
from agent_sessions.sandbox.base import ExecResult
from agent_sessions.settings import Settings
from agent_sessions.snapshots import store_from_settings
from agent_sessions.store import Database
from agent_sessions.store.models import SessionRow
from agent_sessions.workspace.credentials import Vault
from agent_sessions.workspace.repo import (
    BindingError,
    check_branch,
    check_clone_url,
    token_applies,
)

__all__ = [
    "BUNDLE",
    "PushRejected",
    "PushResult",
    "RemoteError",
    "bare_path",
    "forget",
    "git_env",
    "provision",
    "push_branch",
]

REPOS = "repos"
"""Under ``DATA_DIR``: the sessions' bare repositories (0700)."""
BUNDLE = ".git/agent-sessions-push.bundle"
"""Where the sandbox writes the bundle of a push (workspace-relative: ``read_stream`` reads
only the workspace)."""
CLONE_TIMEOUT = 900.0
PUSH_TIMEOUT = 300.0
LOCAL_TIMEOUT = 600.0
SANDBOX_TIMEOUT = 600.0
WATCH_SECONDS = 0.2
STDERR_KEEP = 8192
STDOUT_MAX = 64 << 20
HEADER_MAX = 1 << 20

NO_REPOSITORY = "This session has no repository to push to"
NON_FAST_FORWARD = (
    "The remote branch has commits this session does not have; the push was refused "
    "(never forced). Start a new session from the remote branch, or push to another branch."
)
STALE_BASE = (
    "The session's commits build on commits the remote does not have any more (was the "
    "branch force-pushed?); the push was refused"
)
BAD_CREDENTIALS = (
    "the forge refused the credentials (set a valid token with PUT /api/account/forge-token)"
)

_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_OID = re.compile(r"[0-9a-f]{40}")
_KEEP_ENV = frozenset({"GIT_SSH", "GIT_SSH_COMMAND", "GIT_SSH_VARIANT"})
_AUTH = re.compile(
    r"Authentication failed|could not read (Username|Password)|terminal prompts disabled|"
    r"returned error: 40[13]|HTTP 40[13]|Permission denied \(publickey"
)
_NOT_FOUND = re.compile(r"not found|does not appear to be a git repository|returned error: 404")

# Run in the sandbox (bash -c), values through the environment, never spliced into the script.
_CHECKOUT = "set -e; if git rev-parse -q --verify HEAD >/dev/null; then git reset -q --hard; fi"
_INIT = (
    'set -e; rm -rf .git; git init -q -b "$AS_BRANCH"; '
    'git commit -q --allow-empty -m "Initial commit"'
)
_BUNDLE = f"""
f={BUNDLE}
rm -f -- "$f"
git rev-parse --git-dir >/dev/null 2>&1 || {{ printf 'norepo\\0'; exit 0; }}
ref=$(git symbolic-ref -q HEAD) || {{ printf 'detached\\0'; exit 0; }}
sha=$(git rev-parse -q --verify 'HEAD^{{commit}}') || {{ printf 'unborn\\0'; exit 0; }}
if out=$(git bundle create -q "$f" "$ref" --not --remotes=origin 2>&1); then made=1
elif printf '%s' "$out" | grep -q 'empty bundle'; then made=0
else printf 'error\\0%s\\0' "$(printf '%s' "$out" | tail -c 300)"; exit 0
fi
printf 'ok\\0%s\\0%s\\0%s\\0' "$ref" "$sha" "$made"
"""
_TRACK = """set -e
git update-ref "refs/remotes/origin/$AS_BRANCH" "$AS_SHA"
if ! git config --get "branch.$AS_BRANCH.merge" >/dev/null; then
  git config "branch.$AS_BRANCH.remote" origin
  git config "branch.$AS_BRANCH.merge" "refs/heads/$AS_BRANCH"
fi
"""


class RemoteError(UpstreamError):
    """Git against the forge (or on the host's copies) failed. The message is safe to show:
    no token, no host path."""


class PushRejected(Conflict):
    """The push cannot be made as the session stands (rejected by the forge, detached HEAD)."""


@dataclass(frozen=True)
class PushResult:
    branch: str
    pushed: bool
    """False when the remote branch was already at ``commit_sha``."""
    commit_sha: str
    remote_url: str


@dataclass(frozen=True)
class _Target:
    """A session's binding as the host needs it; the token is never shown in a repr."""

    clone_url: str | None
    branch: str | None
    base_branch: str | None
    is_new_branch: bool
    token: str | None = field(default=None, repr=False)


# --- paths ------------------------------------------------------------------------------------


def _repos(settings: Settings) -> Path:
    root = settings.data_dir / REPOS
    root.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    if root.stat().st_mode & 0o777 != PRIVATE_DIR:
        os.chmod(root, PRIVATE_DIR)
    return root


def bare_path(settings: Settings, session_id: str) -> Path:
    """The session's bare repository on this host (it may not exist)."""
    if not _SESSION_ID.fullmatch(session_id):
        raise ValueError(f"invalid session id {session_id!r}")
    return settings.data_dir / REPOS / f"{session_id}.git"


def _leftovers(settings: Settings, session_id: str) -> Iterator[Path]:
    root = settings.data_dir / REPOS
    if root.is_dir():
        yield from root.glob(f".{session_id}.*")
    yield bare_path(settings, session_id)


async def forget(settings: Settings, session_id: str) -> None:
    """Remove the session's bare repository and anything a crash left beside it."""
    paths = list(_leftovers(settings, session_id))
    for path in paths:
        await asyncio.to_thread(_remove, path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _temp(settings: Settings, session_id: str, suffix: str) -> Path:
    return _repos(settings) / f".{session_id}.{secrets.token_hex(6)}.{suffix}"


# --- git on the host --------------------------------------------------------------------------


def _config(settings: Settings, token: str | None, local: bool) -> list[tuple[str, str]]:
    pairs = [("protocol.allow", "never")]
    pairs += [(f"protocol.{p}.allow", "always") for p in ("https", "http", "ssh", "git")]
    if local or settings.allow_local_repos:
        pairs.append(("protocol.file.allow", "always"))
    pairs += [
        ("core.hooksPath", os.devnull),
        ("credential.helper", ""),
        ("core.logAllRefUpdates", "false"),
        ("init.defaultBranch", "main"),
    ]
    if token is not None:
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        # A redirect must not carry the header to another host.
        pairs += [("http.extraHeader", f"Authorization: Basic {basic}")]
        pairs += [("http.followRedirects", "false")]
    return pairs


def git_env(settings: Settings, token: str | None = None, *, local: bool = False) -> dict[str, str]:
    """Git's environment: none of the caller's git variables, no prompts, no user or system
    configuration, and ours (with the token, if any) through ``GIT_CONFIG_*``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k in _KEEP_ENV}
    env.pop("SSH_ASKPASS", None)
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        LC_ALL="C",
        **_identity(settings),
    )
    pairs = _config(settings, token, local)
    env["GIT_CONFIG_COUNT"] = str(len(pairs))
    for i, (key, value) in enumerate(pairs):
        env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"] = key, value
    return env


def _identity(settings: Settings) -> dict[str, str]:
    name, email = settings.git_author_name, settings.git_author_email
    return {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }


@dataclass(frozen=True)
class _Done:
    code: int
    stdout: bytes
    stderr: str


async def _git(
    *args: str,
    env: dict[str, str],
    timeout: float,  # noqa: ASYNC109 (the process group is killed at the deadline)
    input: bytes | None = None,
    stdin: IO[bytes] | None = None,
    watch: tuple[Path, int] | None = None,
) -> _Done:
    """Run git; its stdout (bounded) and the tail of its stderr. A timeout, or ``watch``'s
    directory growing past its limit, kills git's whole process group and raises."""
    if input is not None:
        source: IO[bytes] | int = asyncio.subprocess.PIPE
    else:
        source = stdin if stdin is not None else asyncio.subprocess.DEVNULL
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        stdin=source,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    hold(proc)
    out = bytearray()
    err = bytearray()
    over: list[str] = []

    async def feed() -> None:
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.write(input or b"")
            await proc.stdin.drain()
        proc.stdin.close()

    async def read_out() -> None:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(1 << 16):
            out.extend(chunk)
            if len(out) > STDOUT_MAX:
                over.append("git's output is larger than expected")
                _kill(proc)
                return

    async def read_err() -> None:
        assert proc.stderr is not None
        while chunk := await proc.stderr.read(1 << 16):
            err.extend(chunk)
            del err[:-STDERR_KEEP]

    async def watcher(path: Path, limit: int) -> None:
        while not over:
            await asyncio.sleep(WATCH_SECONDS)
            await measure(path, limit)

    async def measure(path: Path, limit: int) -> None:
        if await asyncio.to_thread(_tree_size, path) > limit:
            over.append(f"the repository is larger than the limit ({limit} bytes)")
            _kill(proc)

    jobs = [read_out(), read_err(), proc.wait()]
    if input is not None:
        jobs.append(feed())
    guard = asyncio.create_task(watcher(*watch)) if watch is not None else None
    try:
        await asyncio.wait_for(asyncio.gather(*jobs), timeout)
    except TimeoutError:
        _kill(proc)
        await proc.wait()
        raise RemoteError(f"git {args[_verb(args)]} timed out after {timeout:.0f} s") from None
    except BaseException:
        _kill(proc)
        raise
    finally:
        if guard is not None:
            guard.cancel()
    if watch is not None and not over:  # what grew faster than the watcher looked
        await measure(*watch)
    if over:
        raise RemoteError(over[0])
    assert proc.returncode is not None
    return _Done(proc.returncode, bytes(out), err.decode(errors="replace"))


def _verb(args: tuple[str, ...]) -> int:
    """Index of the git command in ``args`` (after ``--git-dir <path>``)."""
    return 2 if args and args[0] == "--git-dir" else 0


def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _tree_size(path: Path) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _explain(
    what: str, stderr: str, settings: Settings, token: str | None, paths: tuple[Path, ...] = ()
) -> str:
    """A one-line reason for a failed git command, without the token or any host path."""
    if _AUTH.search(stderr):
        return f"{what}: {BAD_CREDENTIALS}"
    if _NOT_FOUND.search(stderr):
        return f"{what}: the repository was not found (or is not readable with the credentials)"
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]  # the detail, before the "fatal:"
    chosen = errors[0] if errors else (lines or ["no output"])[-1]
    return f"{what}: {_scrub(chosen, settings, token, paths)[:300]}"


def _scrub(text: str, settings: Settings, token: str | None, paths: tuple[Path, ...]) -> str:
    if token:
        text = text.replace(token, "***")
        text = text.replace(base64.b64encode(f"x-access-token:{token}".encode()).decode(), "***")
    for path in paths:
        text = text.replace(str(path), "<repository>")
    for root in {str(settings.data_dir.resolve()), str(settings.data_dir)}:
        text = text.replace(root, "<data dir>")
    return text


async def _clone_bare(settings: Settings, session_id: str, url: str, token: str | None) -> Path:
    """A fresh bare clone of ``url`` as the session's bare repository: cloned beside it, then
    renamed into place, so a repository there is always complete."""
    dest = bare_path(settings, session_id)
    tmp = _temp(settings, session_id, "clone")
    try:
        await asyncio.to_thread(tmp.mkdir, PRIVATE_DIR)
        done = await _git(
            "clone", "--bare", "--no-local", "--quiet", "--", url, str(tmp),
            env=git_env(settings, token), timeout=CLONE_TIMEOUT,
            watch=(tmp, settings.clone_max_bytes),
        )  # fmt: skip
        if done.code != 0:
            raise RemoteError(_explain("git clone failed", done.stderr, settings, token, (tmp,)))
        await asyncio.to_thread(_remove, dest)
        await asyncio.to_thread(os.rename, tmp, dest)
    finally:
        await asyncio.to_thread(_remove, tmp)
    return dest


async def _local(settings: Settings, *args: str, input: bytes | None = None) -> bytes:
    """Git on the host's own repositories (no network, no token); raises on failure."""
    done = await _git(*args, env=git_env(settings, local=True), timeout=LOCAL_TIMEOUT, input=input)
    if done.code != 0:
        raise RemoteError(_explain(f"git {args[_verb(args)]} failed", done.stderr, settings, None))
    return done.stdout


# --- provisioning -----------------------------------------------------------------------------


def _target(settings: Settings, vault: Vault, session_id: str, db: Session) -> _Target | None:
    row = db.execute(
        select(
            SessionRow.account_id,
            SessionRow.clone_url,
            SessionRow.branch,
            SessionRow.base_branch,
            SessionRow.is_new_branch,
        ).where(SessionRow.id == session_id)
    ).one_or_none()
    if row is None:
        return None
    token = None
    if row.clone_url is not None and token_applies(settings, row.clone_url):
        token = vault.token_for(db, row.account_id)
    return _Target(row.clone_url, row.branch, row.base_branch, row.is_new_branch, token)


async def provision(
    settings: Settings, db: Database, vault: Vault, session_id: str, sandbox: Sandbox
) -> None:
    """Make the new sandbox's workspace a repository: the session's, cloned on the host, or a
    fresh one with an empty first commit (the base of its diffs). Safe to run again after a
    crash: each run starts from scratch."""
    target = await db.read_call(partial(_target, settings, vault, session_id))
    if target is None:
        return
    if target.clone_url is None:
        await _init_empty(settings, sandbox, target.branch or "main")
        return
    try:
        check_clone_url(settings, target.clone_url)
    except BindingError as err:
        raise RemoteError(f"cloneUrl {err.message}") from None
    await forget(settings, session_id)  # what a run cut off by a crash left
    staging = _temp(settings, session_id, "staging")
    try:
        bare = await _clone_bare(settings, session_id, target.clone_url, target.token)
        branch = await _stage(settings, bare, staging, target)
        await _hand_over(settings, session_id, staging, sandbox)
    except BaseException:
        await forget(settings, session_id)
        raise
    finally:
        await asyncio.to_thread(_remove, staging)
    if target.branch is None and branch is not None:
        await db.write_call(partial(_record_branch, session_id, branch))


def _record_branch(session_id: str, branch: str, db: Session) -> None:
    """The default branch checked out, for the API to answer (when none was asked for)."""
    db.execute(
        update(SessionRow)
        .where(SessionRow.id == session_id, SessionRow.branch.is_(None))
        .values(branch=branch)
    )


async def _init_empty(settings: Settings, sandbox: Sandbox, branch: str) -> None:
    env = {"AS_BRANCH": check_branch(branch), **_identity(settings)}
    result = await sandbox.exec(_INIT, env=env, timeout=SANDBOX_TIMEOUT, max_output=4000)
    if result.exit_code != 0:
        raise RemoteError(f"git init failed in the sandbox: {_last_line(result)}")


def _last_line(result: ExecResult) -> str:
    text = (result.stderr or result.stdout).strip()
    return (text.splitlines() or ["no output"])[-1][:300]


async def _stage(settings: Settings, bare: Path, staging: Path, target: _Target) -> str | None:
    """Build the sandbox's ``.git`` in ``staging`` from the bare clone; returns the default
    branch when it is the one checked out (to record), else None."""
    await asyncio.to_thread(staging.mkdir, 0o755)
    git_dir = str(staging / ".git")
    await _local(settings, "init", "-q", "--", str(staging))
    await _local(
        settings, "--git-dir", git_dir, "fetch", "-q", "--no-tags", "--no-write-fetch-head",
        "--", str(bare), "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*",
    )  # fmt: skip
    listed = await _local(
        settings, "--git-dir", git_dir, "for-each-ref",
        "--format=%(refname)%00%(objectname)", "refs/remotes/origin/",
    )  # fmt: skip
    heads: dict[str, str] = {}
    for line in listed.decode(errors="surrogateescape").splitlines():
        ref, _, oid = line.partition("\0")
        heads[ref.removeprefix("refs/remotes/origin/")] = oid
    default = await _default_branch(settings, bare, heads)

    if target.is_new_branch:
        assert target.branch is not None
        base = target.base_branch or default
        _require(target.base_branch, heads)
        branch, start, upstream = target.branch, heads.get(base) if base else None, False
    else:
        _require(target.branch, heads)
        branch = target.branch or default or "main"
        start, upstream = heads.get(branch), branch in heads

    if start is not None:
        await _local(settings, "--git-dir", git_dir, "update-ref", f"refs/heads/{branch}", start)
    await _local(settings, "--git-dir", git_dir, "symbolic-ref", "HEAD", f"refs/heads/{branch}")
    if default is not None:
        await _local(
            settings, "--git-dir", git_dir, "symbolic-ref",
            "refs/remotes/origin/HEAD", f"refs/remotes/origin/{default}",
        )  # fmt: skip
    config = [
        ("remote.origin.url", target.clone_url or ""),
        ("remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*"),
    ]
    if upstream:
        config.append((f"branch.{branch}.remote", "origin"))
        config.append((f"branch.{branch}.merge", f"refs/heads/{branch}"))
    for key, value in config:
        await _local(settings, "--git-dir", git_dir, "config", "--", key, value)
    return default if target.branch is None and branch == default else None


def _require(branch: str | None, heads: dict[str, str]) -> None:
    if branch is not None and branch not in heads:
        raise RemoteError(f"branch {branch!r} does not exist in the repository")


async def _default_branch(settings: Settings, bare: Path, heads: dict[str, str]) -> str | None:
    """The remote's default branch (its HEAD, as the bare clone recorded it), if it has one
    and git would accept its name as ours."""
    done = await _git(
        "--git-dir", str(bare), "symbolic-ref", "-q", "HEAD",
        env=git_env(settings, local=True), timeout=LOCAL_TIMEOUT,
    )  # fmt: skip
    name = done.stdout.decode(errors="replace").strip().removeprefix("refs/heads/")
    if done.code != 0 or name not in heads:
        return None
    try:
        return check_branch(name)
    except BindingError:
        return None


async def _hand_over(settings: Settings, session_id: str, staging: Path, sandbox: Sandbox) -> None:
    """``staging`` (a ``.git`` only) becomes the workspace, then the sandbox checks it out."""
    store = store_from_settings(settings)
    info = await store.save(staging, f"clone-{session_id}")
    try:
        await sandbox.restore(info.url)
    finally:
        await store.delete(info.url)
    result = await sandbox.exec(_CHECKOUT, timeout=SANDBOX_TIMEOUT, max_output=4000)
    if result.exit_code != 0:
        raise RemoteError(f"git checkout failed in the sandbox: {_last_line(result)}")


# --- push -------------------------------------------------------------------------------------

_locks: WeakValueDictionary[str, asyncio.Lock] = WeakValueDictionary()


def _lock(session_id: str) -> asyncio.Lock:
    lock = _locks.get(session_id)
    if lock is None:
        lock = _locks[session_id] = asyncio.Lock()
    return lock


async def push_branch(
    settings: Settings, db: Database, vault: Vault, session_id: str, sandbox: Sandbox
) -> PushResult:
    """Push the sandbox's current branch to the session's repository, never with force.

    :class:`PushRejected` (409) when there is no repository, HEAD is detached or unborn, or
    the forge refuses (the remote has commits the session does not); :class:`RemoteError`
    (502) when the forge cannot be reached or refuses the credentials.
    """
    target = await db.read_call(partial(_target, settings, vault, session_id))
    if target is None:
        raise NotFound("Session not found")
    if target.clone_url is None:
        raise PushRejected(NO_REPOSITORY)
    lock = _lock(session_id)
    async with lock:
        return await _push(settings, session_id, target.clone_url, target.token, sandbox)


async def _push(
    settings: Settings, session_id: str, url: str, token: str | None, sandbox: Sandbox
) -> PushResult:
    ref, sha, made = await _bundle_in_sandbox(sandbox)
    branch = ref.removeprefix("refs/heads/")
    try:
        check_branch(branch)
    except BindingError as err:
        raise PushRejected(f"The branch {branch!r} cannot be pushed: it {err.message}") from None
    bare = bare_path(settings, session_id)
    try:
        if not (bare / "HEAD").is_file():  # a new host, or a lost data directory: rebuild it
            await _clone_bare(settings, session_id, url, token)
        if made:
            await _take_bundle(settings, session_id, sandbox, bare, ref, sha)
        elif not await _has_commit(settings, bare, sha):
            raise PushRejected(STALE_BASE)
    finally:
        if made:
            with contextlib.suppress(Exception):
                await sandbox.remove(BUNDLE)
    pushed = await _push_ref(settings, bare, url, token, sha, branch)
    await _local(settings, "--git-dir", str(bare), "update-ref", f"refs/heads/{branch}", sha)
    env = {"AS_BRANCH": branch, "AS_SHA": sha, **_identity(settings)}
    tracked = await sandbox.exec(_TRACK, env=env, timeout=SANDBOX_TIMEOUT, max_output=4000)
    if tracked.exit_code != 0:
        raise RemoteError(f"pushed, but updating origin/{branch} failed: {_last_line(tracked)}")
    return PushResult(branch, pushed, sha, url)


async def _bundle_in_sandbox(sandbox: Sandbox) -> tuple[str, str, bool]:
    """(ref, commit, whether a bundle was written) of the sandbox's current branch."""
    result = await sandbox.exec(_BUNDLE, timeout=SANDBOX_TIMEOUT, max_output=8192)
    fields = result.stdout.split("\0")
    status = fields[0]
    if status == "norepo":
        raise PushRejected("The workspace is not a git repository")
    if status == "detached":
        raise PushRejected("HEAD is detached: check out a branch to push it")
    if status == "unborn":
        raise PushRejected("The branch has no commits to push")
    if status == "error" and len(fields) > 1:
        raise RemoteError(f"git bundle failed in the sandbox: {fields[1].strip()[:300]}")
    if status != "ok" or len(fields) < 4 or not _OID.fullmatch(fields[2]):
        raise RemoteError(f"reading the branch in the sandbox failed: {_last_line(result)}")
    return fields[1], fields[2], fields[3] == "1"


async def _take_bundle(
    settings: Settings, session_id: str, sandbox: Sandbox, bare: Path, ref: str, sha: str
) -> None:
    """Copy the sandbox's bundle to the host (bounded), check it, and index its objects into
    the bare repository with every object checked."""
    tmp = _temp(settings, session_id, "bundle")
    try:
        await _copy_out(sandbox, tmp, settings.clone_max_bytes)
        prerequisites, refs, offset = await asyncio.to_thread(_bundle_header, tmp)
        if refs != {ref: sha}:
            raise RemoteError("the sandbox's bundle does not hold exactly its branch")
        if prerequisites:
            listed = await _local(
                settings, "--git-dir", str(bare), "cat-file", "--batch-check",
                input="".join(f"{oid}\n" for oid in prerequisites).encode(),
            )  # fmt: skip
            if b" missing" in listed:
                raise PushRejected(STALE_BASE)
        pack = await asyncio.to_thread(open, tmp, "rb", buffering=0)
        with pack:
            pack.seek(offset)
            done = await _git(
                "--git-dir", str(bare), "index-pack", "--stdin", "--fix-thin", "--strict",
                env=git_env(settings, local=True), timeout=LOCAL_TIMEOUT, stdin=pack,
            )  # fmt: skip
        if done.code != 0:
            what = "the session's commits failed git's checks"
            raise PushRejected(_explain(what, done.stderr, settings, None, (bare,)))
    finally:
        await asyncio.to_thread(_remove, tmp)


async def _copy_out(sandbox: Sandbox, dest: Path, limit: int) -> None:
    size = 0
    f = await asyncio.to_thread(open, dest, "xb", opener=private)
    with f:
        async with aclosing(sandbox.read_stream(BUNDLE)) as chunks:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"The push is larger than the limit ({limit} bytes)")
                await asyncio.to_thread(f.write, chunk)


def _bundle_header(path: Path) -> tuple[list[str], dict[str, str], int]:
    """(prerequisites, refs, offset of the pack) of a v2 or v3 bundle; a bundle git itself
    would not write (another object format, a filter, a malformed line) is refused."""
    prerequisites: list[str] = []
    refs: dict[str, str] = {}
    with open(path, "rb") as f:
        first = f.readline(100)
        if first not in (b"# v2 git bundle\n", b"# v3 git bundle\n"):
            raise RemoteError("the sandbox's bundle is not a git bundle")
        while True:
            line = f.readline(HEADER_MAX)
            if f.tell() > HEADER_MAX or not line.endswith(b"\n"):
                raise RemoteError("the sandbox's bundle has a malformed header")
            text = line[:-1].decode("utf-8", errors="strict")
            if not text:
                return prerequisites, refs, f.tell()
            if text.startswith("@"):
                if text != "@object-format=sha1":
                    raise RemoteError(f"the sandbox's bundle needs {text[1:]!r}")
            elif text.startswith("-"):
                oid = text[1:].split(" ", 1)[0]
                if not _OID.fullmatch(oid):
                    raise RemoteError("the sandbox's bundle has a malformed header")
                prerequisites.append(oid)
            else:
                oid, _, name = text.partition(" ")
                if not _OID.fullmatch(oid) or not name:
                    raise RemoteError("the sandbox's bundle has a malformed header")
                refs[name] = oid


async def _has_commit(settings: Settings, bare: Path, sha: str) -> bool:
    done = await _git(
        "--git-dir", str(bare), "cat-file", "-e", f"{sha}^{{commit}}",
        env=git_env(settings, local=True), timeout=LOCAL_TIMEOUT,
    )  # fmt: skip
    return done.code == 0


async def _push_ref(
    settings: Settings, bare: Path, url: str, token: str | None, sha: str, branch: str
) -> bool:
    """Push ``sha`` to the remote branch (no force); whether the remote branch moved."""
    done = await _git(
        "--git-dir", str(bare), "push", "--porcelain", "--no-verify",
        "--", url, f"{sha}:refs/heads/{branch}",
        env=git_env(settings, token), timeout=PUSH_TIMEOUT,
    )  # fmt: skip
    for line in done.stdout.decode(errors="replace").splitlines():
        flag, _, rest = line.partition("\t")
        if len(flag) != 1 or not rest:
            continue
        if flag == "!":
            summary = rest.partition("\t")[2]
            if "non-fast-forward" in summary or "fetch first" in summary:
                raise PushRejected(NON_FAST_FORWARD)
            reason = _scrub(summary, settings, token, (bare,))[:300]
            raise PushRejected(f"The forge rejected the push: {reason}")
        if done.code == 0:
            return flag != "="
    raise RemoteError(_explain("git push failed", done.stderr, settings, token, (bare,)))
