"""The order in which a process starts its waiting turns (``agent/waiting.py``)."""

from __future__ import annotations

from agent_sessions.agent.waiting import WaitingTurns


def _fill(waiting: WaitingTurns, account: str, n: int) -> list[str]:
    runs = [f"{account}{i}" for i in range(n)]
    for run in runs:
        waiting.push(account, run)
    return runs


def test_backlogged_accounts_take_turns_each_in_its_own_order() -> None:
    waiting = WaitingTurns()
    _fill(waiting, "a", 3)
    _fill(waiting, "b", 3)
    _fill(waiting, "c", 3)
    started = [waiting.pop() for _ in range(9)]
    assert started == ["a0", "b0", "c0", "a1", "b1", "c1", "a2", "b2", "c2"]
    assert not waiting


def test_an_account_with_nothing_started_goes_before_a_backlog() -> None:
    """A started one turn (its only slot is taken); B arrives after A's backlog and still
    starts next, even once A's turn has ended."""
    waiting = WaitingTurns()
    _fill(waiting, "a", 4)
    assert waiting.pop() == "a0"
    waiting.push("b", "b0")
    waiting.done("a0")
    assert "b0" in waiting and "a1" in waiting and "a0" not in waiting
    assert [waiting.pop() for _ in range(4)] == ["b0", "a1", "a2", "a3"]


def test_an_idle_account_is_forgotten_and_comes_back_first() -> None:
    """Once an account has nothing waiting or running here, its last start no longer counts
    against it."""
    waiting = WaitingTurns()
    waiting.push("b", "b0")
    assert waiting.pop() == "b0"
    waiting.done("b0")  # b is idle now
    _fill(waiting, "a", 2)
    assert waiting.pop() == "a0"
    waiting.push("b", "b1")
    assert waiting.pop() == "b1"  # a started more recently than a forgotten b
    waiting.push("c", "c0")
    assert waiting.pop() == "c0"  # nothing started yet: before a's second
    assert waiting.pop() == "a1"
