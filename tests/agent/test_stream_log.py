"""The in-memory stream log's bounds (``stream.RunLog``, ``stream.Budget``): a log that would
grow past its own limit or the process's budget gives up, and gives its memory back."""

from __future__ import annotations

import pytest

from agent_sessions.agent.stream import Budget, RunLog


def test_values_are_kept_in_order_and_returned_to_the_budget_at_the_end() -> None:
    budget = Budget(1000)
    log = RunLog(budget)
    for value in ("[1]", "[2]", "[3]"):
        log.add(value)
    assert log.values == ["[1]", "[2]", "[3]"] and log.usable
    assert budget.used == 9
    log.end()
    assert log.ended and budget.used == 0
    assert log.values == ["[1]", "[2]", "[3]"]  # readers still on it finish from it


def test_a_log_past_its_own_limit_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RunLog, "MAX_BYTES", 10)
    budget = Budget(1000)
    log = RunLog(budget)
    log.add("[12345]")
    held = log.values
    log.add("[12345]")
    assert not log.usable and log.values == [] and budget.used == 0
    assert held == ["[12345]"]  # a reader's earlier view stays right
    log.add("[1]")  # nothing more is kept once given up
    assert log.values == [] and budget.used == 0
    log.end()
    assert budget.used == 0


def test_the_process_budget_is_shared_by_all_logs() -> None:
    budget = Budget(10)
    first, second = RunLog(budget), RunLog(budget)
    first.add("[123456]")
    second.add("[1234]")  # 8 + 6 > 10
    assert first.usable and not second.usable
    assert budget.used == 8
    first.end()
    third = RunLog(budget)
    third.add("[1234]")
    assert third.usable and budget.used == 6
