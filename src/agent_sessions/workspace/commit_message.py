"""A commit message written by the chat's model from the staged changes, or a plain fallback.

As the reference product does: the model gets the diff stat and at most 8,000 characters of the
staged patch and answers one conventional-commit line of at most 72 characters. Whatever it
answers is cut down to one clean line; no model configured, a failure, a timeout or an empty
answer gives :data:`FALLBACK` (logged), never an error: a commit does not depend on a model.
"""

from __future__ import annotations

import logging
import re

from agent_sessions.settings import Settings
from agent_sessions.workspace import textgen

__all__ = ["FALLBACK", "MAX_DIFF_CHARS", "MAX_SUBJECT", "generate", "sanitize"]

log = logging.getLogger(__name__)

FALLBACK = "chore: update repository changes"
MAX_DIFF_CHARS = 8000
MAX_STAT_CHARS = 4000
MAX_SUBJECT = 72
TIMEOUT_SECONDS = 30.0

INSTRUCTIONS = (
    "You write git commit messages. Answer with exactly one line: a conventional commit "
    "message such as `feat(api): add session search` (types: feat, fix, refactor, docs, test, "
    "chore, perf, build, ci, style), imperative mood, at most 72 characters. No quotes, no "
    "body, no explanation."
)

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0080-\u009f\u2028\u2029]")
_DECORATION = "`*_#>\"' \t"
_LABEL = re.compile(r"^(commit message|message|subject)\s*:\s*", re.IGNORECASE)


def prompt(stat: str, diff: str, title: str | None) -> str:
    parts = [f"Task the changes were made for: {title}"] if title else []
    parts.append(f"Files changed:\n{stat[:MAX_STAT_CHARS]}")
    clipped = diff[:MAX_DIFF_CHARS]
    more = " (cut)" if len(diff) > MAX_DIFF_CHARS else ""
    parts.append(f"Staged diff{more}:\n{clipped}")
    return "\n\n".join(parts)


async def generate(
    settings: Settings,
    model_id: str | None,
    *,
    stat: str,
    diff: str,
    title: str | None = None,
) -> str:
    """One commit subject line for the staged changes; :data:`FALLBACK` when there is no model
    or it fails, times out or answers nothing usable (:func:`.textgen.write` logs why)."""
    if model_id is None:
        return FALLBACK
    answer = await textgen.write(
        settings, model_id, INSTRUCTIONS, prompt(stat, diff, title), timeout=TIMEOUT_SECONDS
    )
    if answer is None:
        return FALLBACK
    subject = sanitize(answer)
    if subject is None:
        log.warning("commit message: the model's answer had no usable line; using the fallback")
        return FALLBACK
    return subject


def sanitize(text: str) -> str | None:
    """The first non-empty line of a model's answer, without quotes, markdown or control
    characters, at most :data:`MAX_SUBJECT` characters (cut at a word where possible)."""
    for raw in text.splitlines():
        line = _CONTROL.sub(" ", raw).strip(_DECORATION)
        line = _LABEL.sub("", line).strip(_DECORATION)
        line = " ".join(line.split())
        if line:
            break
    else:
        return None
    if len(line) > MAX_SUBJECT:
        head = line[: MAX_SUBJECT + 1]
        cut = head.rsplit(" ", 1)[0] if " " in head else ""
        line = (cut if len(cut) >= MAX_SUBJECT // 2 else line[:MAX_SUBJECT]).rstrip(" .,;:")
    return line or None
