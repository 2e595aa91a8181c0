"""Installing a session's global skills (``globalSkillRefs``) into its workspace.

Each ref names ``<source>/<skillName>/``: a directory on the service's host under one of the
operator's ``skill_sources`` directories, or that subdirectory of a git repository whose URL
starts with one of the operator's prefixes. The sandbox has no network, so the host fetches: a
shallow, sparse clone into a temporary directory (``--`` before the URL, no prompt, the
protocols of ADR 13, redirects not followed), and no forge token (skills come from sources the
operator allowed, not from the account's repositories).

The files reach the workspace through the provider's file API under a staging directory, then
one ``exec`` swaps it in as ``.agent-sessions/skills/`` and adds ``/.agent-sessions/`` to
``.git/info/exclude``: the agent never sees half an installation, a skill dropped from the refs
goes, and installed skills never show in a diff or a commit. Caps keep a skill small
(:data:`SKILL_MAX_FILES`, :data:`SKILL_MAX_BYTES`); links are followed only to files inside the
skill. A skill that cannot be installed is logged, listed in ``.install-errors.json`` (which
``GET …/skills`` reports) and skipped: installation never fails provisioning or a restore.
Provisioning and restore run :func:`install` as the DBOS step ``lifecycle/workflows.py:
install_skills``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from agent_sessions.inflight import hold
from agent_sessions.sandbox import Sandbox
from agent_sessions.settings import Settings
from agent_sessions.store.models import SessionRow
from agent_sessions.workspace.remote import git_env
from agent_sessions.workspace.skills import (
    INSTALL_DIR,
    INSTALL_ROOT,
    SkillProblem,
    SkillSource,
    ref_problem,
    resolve_source,
)

__all__ = ["SKILL_MAX_BYTES", "SKILL_MAX_FILES", "install", "stored_refs"]

log = logging.getLogger(__name__)

SKILL_MAX_FILES = 500
SKILL_MAX_BYTES = 16 << 20
"""Bytes of all of one skill's files together."""
GIT_TIMEOUT = 120.0
"""Seconds the clone of one source may take (open-agents gives its installer as long)."""
EXCLUDE_LINE = f"/{INSTALL_ROOT}/"


class _Skip(Exception):
    """This skill cannot be installed; the message says why (no host path in it)."""


async def install(
    sandbox: Sandbox, settings: Settings, refs: Sequence[dict[str, Any]]
) -> list[SkillProblem]:
    """Make ``.agent-sessions/skills/`` hold exactly the skills of ``refs``; the problems."""
    if not refs:  # nothing to install: remove what an earlier list installed
        await _exec(sandbox, f"rm -rf -- {INSTALL_DIR} && rmdir -- {INSTALL_ROOT} 2>/dev/null; :")
        return []
    token = secrets.token_hex(6)
    staging = f"{INSTALL_ROOT}/.staging-{token}"
    problems: list[SkillProblem] = []
    with tempfile.TemporaryDirectory(prefix="agent-sessions-skills-") as tmp:
        clones: dict[str, Path | str] = {}
        for ref in refs:
            name = str(ref.get("skillName") if isinstance(ref, dict) else ref)
            if (problem := ref_problem(settings, ref)) is not None:
                problems.append(SkillProblem(f"{INSTALL_DIR}/{name}", f"not installed: {problem}"))
                continue
            try:
                root = await _skill_root(settings, ref, Path(tmp), refs, clones)
                await _copy(sandbox, root, f"{staging}/{name}")
                continue
            except _Skip as err:
                reason = str(err)
            except Exception as err:  # the sandbox refused a file, or vanished
                reason = _message(err, tmp)
            problems.append(SkillProblem(f"{INSTALL_DIR}/{name}", f"not installed: {reason}"))
            with contextlib.suppress(Exception):  # what was copied of it goes
                await sandbox.remove(f"{staging}/{name}")
    report = [{"path": p.path, "error": p.error} for p in problems]
    await sandbox.write_file(f"{staging}/.install-errors.json", json.dumps(report).encode())
    await _exec(sandbox, _swap(token))
    return problems


def _swap(token: str) -> str:
    """Swap the staging directory in (the previous installation goes), drop what an
    installation cut off by a crash left over an hour ago, and keep the directory out of git."""
    return f"""set -e
cd {INSTALL_ROOT}
if [ -e skills ] || [ -L skills ]; then mv -T skills .old-{token}; fi
mv -T .staging-{token} skills
rm -rf -- .old-{token}
find . -maxdepth 1 \\( -name '.staging-*' -o -name '.old-*' \\) -mmin +60 -exec rm -rf -- {{}} +
cd ..
if [ -d .git ] && [ ! -L .git ]; then
  mkdir -p .git/info
  f=.git/info/exclude
  if ! grep -qxF '{EXCLUDE_LINE}' "$f" 2>/dev/null; then
    if [ -s "$f" ] && [ -n "$(tail -c1 "$f")" ]; then echo >> "$f"; fi
    echo '{EXCLUDE_LINE}' >> "$f"
  fi
fi
"""


async def _exec(sandbox: Sandbox, script: str) -> None:
    r = await sandbox.exec(script, timeout=60)
    if r.exit_code != 0:
        detail = (r.stderr.strip().splitlines() or ["no output"])[-1][:300]
        raise RuntimeError(f"installing skills failed: {detail}")


def _message(err: BaseException, tmp: str) -> str:
    text = getattr(err, "message", None) or str(err) or type(err).__name__
    return text.replace(tmp, "<clone>")[:500]


async def _skill_root(
    settings: Settings,
    ref: dict[str, Any],
    tmp: Path,
    refs: Sequence[dict[str, Any]],
    clones: dict[str, Path | str],
) -> Path:
    """The host directory holding the (valid) ref's skill, cloning its repository once per
    URL."""
    source = resolve_source(settings, ref["source"])
    assert isinstance(source, SkillSource)
    name = ref["skillName"]
    if source.kind == "dir":
        base = Path(source.location)
    else:
        if source.location not in clones:
            dest = tmp / f"clone-{len(clones)}"
            # Every skill wanted from this repository, for one sparse checkout.
            names = [r["skillName"] for r in refs if ref_problem(settings, r) is None
                     and resolve_source(settings, r["source"]) == source]  # fmt: skip
            try:
                await _clone(settings, source.location, dest, names)
                clones[source.location] = dest
            except _Skip as err:
                clones[source.location] = str(err)
        cloned = clones[source.location]
        if isinstance(cloned, str):
            raise _Skip(cloned)
        base = cloned
    return await asyncio.to_thread(_locate, base, name, ref["source"])


def _locate(base: Path, name: str, source: str) -> Path:
    root = Path(os.path.realpath(base / name))
    if root.parent != Path(os.path.realpath(base)):
        raise _Skip(f"{source}/{name} is a link out of its source")
    if not root.is_dir():
        raise _Skip(f"no directory {name!r} in {source}")
    if not any((root / f).is_file() for f in ("SKILL.md", "skill.md")):
        raise _Skip(f"{name!r} in {source} has no SKILL.md")
    return root


async def _clone(settings: Settings, url: str, dest: Path, names: list[str]) -> None:
    """A depth-1 clone of ``url`` into ``dest`` with only the ``names`` directories checked
    out (and only their blobs fetched, where the server can filter)."""
    env = git_env(settings)  # no token: skills come from sources the operator allows
    steps = [
        ["git", "clone", "--quiet", "--depth=1", "--no-tags", "--single-branch",
         "--filter=blob:none", "--sparse", "--", url, str(dest)],
        ["git", "-C", str(dest), "sparse-checkout", "set", "--", *names],
    ]  # fmt: skip
    loop = asyncio.get_running_loop()
    deadline = loop.time() + GIT_TIMEOUT
    for argv in steps:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        hold(proc)
        try:
            _, err = await asyncio.wait_for(proc.communicate(), deadline - loop.time())
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise _Skip(f"cloning {url} took over {GIT_TIMEOUT:g} s") from None
        if proc.returncode != 0:
            lines = [ln for ln in err.decode(errors="replace").splitlines() if ln.strip()]
            detail = (lines or [f"git exited with {proc.returncode}"])[-1]
            raise _Skip(f"cloning {url} failed: {detail.replace(str(dest), '<clone>')[:300]}")


def _files(root: Path) -> list[tuple[str, Path, int]]:
    """``(relative path, host file, mode)`` of every file of the skill, within the caps.

    Links are followed only to regular files inside the skill; linked directories, other
    links and special files are left out, and so is ``.git``."""
    out: list[tuple[str, Path, int]] = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):  # never descends into linked dirs
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        for name in sorted(filenames):
            path = Path(dirpath) / name
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                target = Path(os.path.realpath(path))
                if not target.is_relative_to(root) or not target.is_file():
                    log.info("skill file %s: a link out of the skill, left out", name)
                    continue
                path, info = target, target.stat()
            elif not stat.S_ISREG(info.st_mode):
                continue
            total += info.st_size
            if len(out) >= SKILL_MAX_FILES:
                raise _Skip(f"more than {SKILL_MAX_FILES} files")
            if total > SKILL_MAX_BYTES:
                raise _Skip(f"larger than {SKILL_MAX_BYTES >> 20} MiB")
            rel = (Path(dirpath) / name).relative_to(root).as_posix()
            out.append((rel, path, 0o755 if info.st_mode & 0o111 else 0o644))
    return out


def _read(path: Path, limit: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise _Skip(f"larger than {SKILL_MAX_BYTES >> 20} MiB")
    return data


async def _copy(sandbox: Sandbox, root: Path, target: str) -> None:
    """Copy the skill at ``root`` (host) to ``target`` (workspace), one file in memory at a
    time; sizes are checked again as the files are read (they may have grown)."""
    files = await asyncio.to_thread(_files, root)
    budget = SKILL_MAX_BYTES
    for rel, path, mode in files:
        data = await asyncio.to_thread(_read, path, budget)
        budget -= len(data)
        await sandbox.write_file(f"{target}/{rel}", data, mode=mode)


def stored_refs(db: Session, session_id: str) -> list[dict[str, Any]]:
    row = db.get(SessionRow, session_id)
    return list(row.global_skill_refs or []) if row is not None else []
