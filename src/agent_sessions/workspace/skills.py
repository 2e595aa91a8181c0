"""Skills: ``SKILL.md`` instructions the agent loads by name when a task calls for them.

The format is Claude Code's and open-agents': a directory per skill holding ``SKILL.md`` (or
``skill.md``) that starts with YAML frontmatter (``name``, ``description``; optionally
``disable-model-invocation``), followed by the instructions. Three places are searched, in this
order, all inside the workspace: ``.claude/skills/*/``, ``.agents/skills/*/`` (the project's
own) and ``.agent-sessions/skills/*/`` (the global skills of ``globalSkillRefs``, installed by
:mod:`.skill_install`). The model sees names and descriptions only (the system prompt); the
``skill`` tool hands it one body on demand.

Rules (a skill breaking one is reported with its reason and skipped, never fatal):

* ``name`` is the skill's name, whatever its directory is called (as open-agents and Claude
  Code do): 1-64 letters, digits, ``.``, ``_``, ``-`` or ``:``. Names are unique without regard
  to case: the first found in the order above wins (the project's skills shadow global ones)
  and every later one is reported as a duplicate.
* Frontmatter is YAML. open-agents reads it line by line (``key: value``), which accepts the
  unquoted ``description: Use when: …`` that YAML refuses; such frontmatter is read the same
  way here rather than refused.
* Discovery is one ``exec`` in the sandbox that prints at most :data:`FRONTMATTER_MAX` bytes of
  each file, for at most :data:`MAX_SKILLS_PER_DIR` skills per place.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

import yaml  # type: ignore[import-untyped]

from agent_sessions.exceptions import InvalidInput
from agent_sessions.settings import Settings

if TYPE_CHECKING:  # not loaded at run time: the wire models (and the client) import this module
    from agent_sessions.sandbox import Sandbox

__all__ = [
    "FRONTMATTER_MAX",
    "INSTALL_DIR",
    "INSTALL_ERRORS_FILE",
    "INSTALL_ROOT",
    "MAX_REFS",
    "SKILL_NAME_PATTERN",
    "Discovery",
    "Skill",
    "SkillProblem",
    "SkillSource",
    "check_refs",
    "discover",
    "ref_problem",
    "render_body",
    "split_frontmatter",
    "uninstalled",
]

INSTALL_ROOT = ".agent-sessions"
"""The service's own directory in the workspace; ``.git/info/exclude`` keeps it out of git."""
INSTALL_DIR = f"{INSTALL_ROOT}/skills"
INSTALL_ERRORS_FILE = f"{INSTALL_DIR}/.install-errors.json"
"""What the last installation could not install, for ``GET …/skills`` to report."""
PLACES: tuple[tuple[str, Literal["workspace", "global"]], ...] = (
    (".claude/skills", "workspace"),
    (".agents/skills", "workspace"),
    (INSTALL_DIR, "global"),
)
MAX_REFS = 50
SKILL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
"""A ref's ``skillName``: one path component that is never ``.``, ``..`` or an option."""
_SKILL_NAME = re.compile(SKILL_NAME_PATTERN)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
"""A skill's frontmatter ``name``."""
_SHORTHAND = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*/[A-Za-z0-9_][A-Za-z0-9_.-]*$")
"""``owner/repo`` on the forge (open-agents' form of ``source``)."""
_GIT_URL = re.compile(r"^(?:(https|ssh|git|file)://\S+|[\w.-]+@[\w.-]+:\S+)$")
FRONTMATTER_MAX = 8192
"""Bytes of each ``SKILL.md`` discovery reads; the frontmatter must end within them."""
MAX_SKILLS_PER_DIR = 100
DESCRIPTION_MAX = 1024
"""Characters of a description kept (the Agent Skills limit); longer ones are cut."""


# --- refs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SkillSource:
    """Where a ref's skills come from: a host directory (its real path) or a git URL."""

    kind: Literal["dir", "git"]
    location: str


def check_refs(settings: Settings, refs: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The refs as stored, or :class:`InvalidInput` naming the first bad one (the API's 400)."""
    if len(refs) > MAX_REFS:
        raise InvalidInput(f"globalSkillRefs: at most {MAX_REFS} skills")
    seen: set[str] = set()
    out = []
    for i, ref in enumerate(refs):
        problem = ref_problem(settings, ref)
        if problem is None and str(ref["skillName"]).lower() in seen:
            problem = f"skillName {ref['skillName']!r} appears twice"
        if problem is not None:
            raise InvalidInput(f"globalSkillRefs[{i}]: {problem}")
        seen.add(str(ref["skillName"]).lower())
        out.append({"source": ref["source"], "skillName": ref["skillName"]})
    return out


def ref_problem(settings: Settings, ref: Mapping[str, Any]) -> str | None:
    """Why ``ref`` may not be installed, or None. Checked at the API and again at every
    installation (a stored ref outlives a change of the operator's settings)."""
    if not isinstance(ref, Mapping) or set(ref) != {"source", "skillName"}:
        return "a skill ref is exactly {source, skillName}"
    source, name = ref["source"], ref["skillName"]
    if not isinstance(source, str) or not isinstance(name, str):
        return "source and skillName must be strings"
    if not _SKILL_NAME.match(name):
        return (
            f"skillName {name!r} must be one directory name: letters, digits, '.', '_' or '-', "
            "not starting with '.' or '-'"
        )
    resolved = resolve_source(settings, source)
    return resolved if isinstance(resolved, str) else None


def resolve_source(settings: Settings, source: str) -> SkillSource | str:
    """The source, or why it is refused: an absolute path under one of the operator's
    directories (``skill_sources`` entries starting with ``/``; links resolved first), or a git
    URL (``owner/repo`` meaning the forge's) that starts with one of the operator's prefixes."""
    if not source or len(source) > 2048:
        return "source must be 1-2048 characters"
    if source.startswith("-"):
        return "source must not start with '-'"
    if any(c.isspace() or ord(c) < 32 for c in source):
        return "source must not contain spaces or control characters"
    if source.startswith("/"):
        return _local_source(settings, source)
    url = source
    if _SHORTHAND.match(source):
        url = f"{settings.forge_base_url.rstrip('/')}/{source}"
    match = _GIT_URL.match(url)
    if match is None:
        return "source must be an absolute directory path, owner/repo, or an https, ssh or git URL"
    if match.group(1) == "file" and not settings.allow_local_repos:
        return "file:// sources are not allowed on this server"
    if re.search(r"(^|[/:])\.\.?(/|$)|[\\%?#]", url.split("://", 1)[-1]):
        return "source must not contain '.' or '..' path segments, '\\', '%', '?' or '#'"
    prefixes = [p for p in settings.skill_sources if p and not p.startswith("/")]
    if not any(_under_prefix(url, p) for p in prefixes):
        return f"{source} is not an allowed skill source on this server"
    return SkillSource("git", url)


def _under_prefix(url: str, prefix: str) -> bool:
    """``prefix`` matches whole path segments only: ``https://h/acme`` allows
    ``https://h/acme/x`` but neither ``https://h/acme-evil/x`` nor ``https://h/acme@evil/x``."""
    if url == prefix:
        return True
    if not url.startswith(prefix):
        return False
    return prefix.endswith(("/", ":")) or url[len(prefix)] == "/"


def _local_source(settings: Settings, source: str) -> SkillSource | str:
    if ".." in PurePosixPath(source).parts:
        return "source must not contain '..'"
    real = os.path.realpath(source)
    for entry in settings.skill_sources:
        if entry.startswith("/"):
            root = os.path.realpath(entry)
            if real == root or real.startswith(root.rstrip("/") + "/"):
                return SkillSource("dir", real)
    return f"{source} is not under an allowed skill source directory on this server"


# --- discovery ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Skill:
    name: str
    description: str
    source: Literal["workspace", "global"]
    path: str
    """Workspace-relative path of its ``SKILL.md``."""
    model_invocable: bool = True
    """False with ``disable-model-invocation: true``: not offered to the model, and the
    ``skill`` tool refuses it (a user may still use it)."""

    @property
    def directory(self) -> str:
        return str(PurePosixPath(self.path).parent)


@dataclass(frozen=True)
class SkillProblem:
    path: str
    error: str


@dataclass
class Discovery:
    skills: list[Skill] = field(default_factory=list)
    errors: list[SkillProblem] = field(default_factory=list)

    def find(self, name: str) -> Skill | None:
        wanted = name.strip().lower()
        return next((s for s in self.skills if s.name.lower() == wanted), None)


# One python3 run prints, as JSON, the head of every SKILL.md in the three places, and the
# install errors file. It runs as the sandbox user, so it reads only what the agent could.
_DISCOVER = r"""
import json, os, sys
cap, most, errors_file, roots = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4:]
NAMES = ("SKILL.md", "skill.md")
found = []
for root in roots:
    try:
        names = sorted(os.listdir(root))
    except OSError:
        continue
    dirs = [n for n in names if not n.startswith(".") and os.path.isdir(os.path.join(root, n))]
    for n in dirs[:most]:
        d = root + "/" + n
        f = next((d + "/" + m for m in NAMES if os.path.isfile(d + "/" + m)), None)
        if f is None:
            found.append({"path": d, "error": "no SKILL.md in this directory"})
            continue
        try:
            with open(f, "rb") as h:
                head = h.read(cap + 1)
        except OSError as e:
            found.append({"path": f, "error": "cannot read: " + (e.strerror or "error")})
            continue
        found.append({"path": f, "head": head.decode("utf-8", "replace")})
    if len(dirs) > most:
        found.append({"path": root, "error": "over %d skills here: the rest are skipped" % most})
installed = None
try:
    with open(errors_file, "rb") as h:
        installed = h.read(cap * 8).decode("utf-8", "replace")
except OSError:
    pass
print(json.dumps({"found": found, "installErrors": installed}))
"""
_DISCOVER_PYTHON = " ".join(
    shlex.quote(a)
    for a in [
        "python3", "-c", _DISCOVER, str(FRONTMATTER_MAX), str(MAX_SKILLS_PER_DIR),
        INSTALL_ERRORS_FILE, *(place for place, _ in PLACES),
    ]
)  # fmt: skip
_NOTHING_FOUND = json.dumps({"found": [], "installErrors": None})
_DISCOVER_COMMAND = (
    f"if {' || '.join(f'[ -e {shlex.quote(place)} ]' for place, _ in PLACES)}; "
    f"then exec {_DISCOVER_PYTHON}; else printf '%s\\n' {shlex.quote(_NOTHING_FOUND)}; fi"
)
"""Discovery runs on every turn, and most workspaces have none of the places: then the shell
prints what the script would (every root unlistable, no install errors file, which lives in
one of them) without starting Python, which took most of the command's time."""
_DISCOVER_MAX_OUTPUT = (len(PLACES) * (MAX_SKILLS_PER_DIR + 1) + 8) * (FRONTMATTER_MAX * 2 + 512)
"""Worst case of the JSON above (every character escaped as two), so it is never cut."""


async def discover(sandbox: Sandbox) -> Discovery:
    """Every skill of the workspace and the installed global ones, in one ``exec``."""
    r = await sandbox.exec(_DISCOVER_COMMAND, timeout=30, max_output=_DISCOVER_MAX_OUTPUT)
    if r.exit_code != 0 or r.truncated:
        detail = (r.stderr.strip().splitlines() or ["no output"])[-1][:300]
        return Discovery(errors=[SkillProblem(".", f"skill discovery failed: {detail}")])
    try:
        out = json.loads(r.stdout)
    except ValueError:
        return Discovery(errors=[SkillProblem(".", "skill discovery printed no JSON")])
    found = Discovery()
    for entry in out["found"]:
        path = str(entry["path"])
        if "error" in entry:
            found.errors.append(SkillProblem(path, str(entry["error"])))
            continue
        skill = _skill(path, str(entry["head"]))
        if isinstance(skill, str):
            found.errors.append(SkillProblem(path, skill))
        elif (first := found.find(skill.name)) is not None:
            found.errors.append(
                SkillProblem(path, f"duplicate skill name {skill.name!r}: {first.path} is used")
            )
        else:
            found.skills.append(skill)
    found.errors += _install_errors(out.get("installErrors"))
    return found


def _source_of(path: str) -> Literal["workspace", "global"]:
    return next(kind for place, kind in PLACES if path.startswith(place + "/"))


def _skill(path: str, head: str) -> Skill | str:
    """The skill described by the head of its ``SKILL.md``, or what is wrong with it."""
    block, _ = split_frontmatter(head)
    if block is None:
        if head.startswith("---") and len(head.encode()) > FRONTMATTER_MAX:
            return f"frontmatter longer than {FRONTMATTER_MAX} bytes"
        if head.startswith("---"):
            return "frontmatter is not closed by a '---' line"
        return "no frontmatter: SKILL.md must start with a '---' line"
    meta, yaml_error = _frontmatter(block)
    name, description = meta.get("name"), meta.get("description")
    problem = None
    if name is None or description is None:
        problem = f"frontmatter has no {'name' if name is None else 'description'}"
    elif not isinstance(name, str) or not isinstance(description, str):
        problem = "name and description must be text"
    elif not _NAME.match(name.strip()):
        problem = f"name {name.strip()[:80]!r} must be 1-64 letters, digits, '.', '_', '-', ':'"
    elif not description.strip():
        problem = "description is empty"
    if problem is not None:
        return f"invalid YAML frontmatter: {yaml_error}" if yaml_error else problem
    assert isinstance(name, str) and isinstance(description, str)
    text = " ".join(description.split())
    if len(text) > DESCRIPTION_MAX:
        text = text[: DESCRIPTION_MAX - 1] + "…"
    invocable = meta.get("disable-model-invocation") is not True
    return Skill(name.strip(), text, _source_of(path), path, invocable)


def _frontmatter(block: str) -> tuple[dict[str, Any], str | None]:
    """The frontmatter's keys, and the YAML error if YAML could not read it (then the keys
    are read line by line, as open-agents does)."""
    try:
        data = yaml.safe_load(block)
    except yaml.YAMLError as err:
        lines: dict[str, Any] = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep and key and not key[0].isspace() and not key.startswith("#"):
                v = value.strip()
                if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
                    v = v[1:-1]
                lines[key.strip()] = {"true": True, "false": False}.get(v, v)
        return lines, " ".join(str(err).split())[:200]
    if not isinstance(data, dict):
        return {}, "the frontmatter is not a mapping of keys to values"
    return data, None


def split_frontmatter(text: str) -> tuple[str | None, str]:
    """``(frontmatter, body)``; ``(None, text)`` when the text does not start with a closed
    ``---`` block."""
    lines = text.split("\n")
    if lines[0].rstrip() != "---":
        return None, text
    for i in range(1, len(lines)):
        if lines[i].rstrip() == "---":
            return "\n".join(lines[1:i]), "\n".join(lines[i + 1 :])
    return None, text


def _install_errors(raw: object) -> list[SkillProblem]:
    if not isinstance(raw, str):
        return []
    try:
        entries = json.loads(raw)
    except ValueError:
        return [SkillProblem(INSTALL_ERRORS_FILE, "unreadable installation report")]
    return [
        SkillProblem(str(e["path"])[:500], str(e["error"])[:1000])
        for e in (entries if isinstance(entries, list) else [])[:MAX_REFS]
        if isinstance(e, dict) and "path" in e and "error" in e
    ]


def uninstalled(refs: Sequence[Mapping[str, Any]], found: Discovery) -> list[SkillProblem]:
    """Refs with neither an installed skill nor a reported problem: stored since the sandbox
    last installed its skills (they install at the next restore)."""
    seen = {PurePosixPath(s.path).parts[2] for s in found.skills if s.source == "global"}
    seen |= {
        PurePosixPath(e.path).parts[2] for e in found.errors if e.path.startswith(INSTALL_DIR + "/")
    }
    return [
        SkillProblem(f"{INSTALL_DIR}/{name}", "not installed yet: it is installed when the "
                     "sandbox is next restored")
        for ref in refs
        if (name := str(ref.get("skillName") if isinstance(ref, Mapping) else ref)) not in seen
    ]  # fmt: skip


# --- the skill tool ----------------------------------------------------------------------------


def render_body(skill: Skill, text: str, arguments: str | None) -> str:
    """What the ``skill`` tool answers: where the skill lives (for its scripts), then its body
    without frontmatter, ``$ARGUMENTS`` replaced by the arguments (appended when the body does
    not ask for them, as Claude Code does)."""
    _, body = split_frontmatter(text)
    body = body.strip()
    args = (arguments or "").strip()
    if "$ARGUMENTS" in body:
        body = body.replace("$ARGUMENTS", args)
    elif args:
        body = f"{body}\n\nARGUMENTS: {args}"
    return f"Skill directory: /workspace/{skill.directory}\n\n{body}"
