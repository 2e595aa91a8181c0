"""Which tool calls wait for a person's approval (ADR 14).

A rule names a tool (or ``*``) and, optionally, regular expressions that arguments must match
(searched in the argument's text; a non-string argument is matched as its JSON). A call needs
approval when any rule matches it. The operator's rules (``AGENT_SESSIONS_APPROVAL_RULES``)
apply to every chat; a chat adds its own (``PATCH …/chats/{chatId}`` ``approvalRules``), which
can only ask for more approvals, never fewer.

Patterns come from users too, so they are matched with the ``regex`` module and a time limit: a
pattern that backtracks for ever cannot hold the event loop, and a match that runs out of time
counts as a match (the call waits for a person rather than slipping through).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Annotated, Any

import regex
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

MAX_RULES = 50
MAX_PATTERN = 500
MATCH_TIMEOUT_SECONDS = 0.05
MATCH_MAX_CHARS = 100_000
"""Characters of an argument a pattern is searched in (a 4 MiB ``write`` is not scanned whole)."""

ToolName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[\w*.-]+$")]


class ApprovalRule(BaseModel):
    """``{"tool": "bash", "match": {"command": "rm -rf|git push"}}``: calls of ``tool`` (``*``:
    any tool) whose every named argument matches its pattern. Without ``match``, every call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tool: ToolName
    match: dict[
        Annotated[str, StringConstraints(min_length=1, max_length=64)],
        Annotated[str, StringConstraints(min_length=1, max_length=MAX_PATTERN)],
    ] = Field(default_factory=dict, max_length=16)

    @field_validator("match")
    @classmethod
    def _compiles(cls, value: dict[str, str]) -> dict[str, str]:
        for argument, pattern in value.items():
            if "\x00" in pattern or "\x00" in argument:
                raise ValueError("a pattern cannot contain a NUL character")
            try:
                _compiled(pattern)
            except regex.error as err:
                raise ValueError(f"invalid regular expression for {argument!r}: {err}") from None
        return value

    def matches(self, tool_name: str, args: Mapping[str, Any]) -> bool:
        if self.tool not in ("*", tool_name):
            return False
        return all(_search(pattern, args.get(argument)) for argument, pattern in self.match.items())


RuleList = Annotated[list[ApprovalRule], Field(max_length=MAX_RULES)]


@lru_cache(maxsize=512)
def _compiled(pattern: str) -> Any:
    return regex.compile(pattern)


def _search(pattern: str, value: Any) -> bool:
    if value is None:
        return False
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    try:
        found = _compiled(pattern).search(text[:MATCH_MAX_CHARS], timeout=MATCH_TIMEOUT_SECONDS)
    except TimeoutError:
        return True  # fail closed: a person decides
    return found is not None


def needs_approval(
    rules: Iterable[ApprovalRule], tool_name: str, args: Mapping[str, Any]
) -> ApprovalRule | None:
    """The first rule that asks for approval of this call, if any."""
    for rule in rules:
        if rule.matches(tool_name, args):
            return rule
    return None


def parse_rules(raw: Any) -> list[ApprovalRule]:
    """Rules from stored JSON (validated when they were stored)."""
    if not raw:
        return []
    return [ApprovalRule.model_validate(r) for r in raw]
