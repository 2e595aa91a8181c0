"""A real turn's usage and cost, end to end: the stand-in model reports tokens (cached ones
included) over real HTTP, a ``task`` subagent's share is counted apart and in the total, and the
stream's final metadata, the run record, the chat's usage and ``GET /api/usage`` agree."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from tests.agent.conftest import AgentsFactory
from tests.agent.protocol import check_protocol
from tests.conftest import make_account
from tests.support.model_server import Call, Step, Text, ToolCalls, prompt_tokens_of

SUBAGENT = "You are a subagent"
PRICE = {"input": 2.0, "output": 8.0, "cachedInput": 0.5}
MAIN_CACHED, SUB_CACHED = 10, 4


def _is_subagent(request: dict[str, Any]) -> bool:
    return str(request["messages"][0]["content"]).startswith(SUBAGENT)


def _step0(request: dict[str, Any]) -> Step:
    if _is_subagent(request):
        return ToolCalls([Call("bash", {"command": "echo 1 > u.txt"})], cached_tokens=SUB_CACHED)
    call = Call("task", {"task": "write 1 to u.txt", "subagentType": "executor"})
    return ToolCalls([call], cached_tokens=MAIN_CACHED)


def _step1(request: dict[str, Any]) -> Step:
    if _is_subagent(request):
        return Text("Summary: wrote it. Answer: 1", cached_tokens=SUB_CACHED)
    return Text("All done.", cached_tokens=MAIN_CACHED)


def _cost(input_tokens: int, cached: int, output_tokens: int) -> float:
    usd = (
        (input_tokens - cached) * Decimal(str(PRICE["input"]))
        + cached * Decimal(str(PRICE["cachedInput"]))
        + output_tokens * Decimal(str(PRICE["output"]))
    ) / 10**6
    return float(usd.quantize(Decimal("1e-9")))


def test_usage_and_cost_of_turns_with_a_subagent(agents: AgentsFactory) -> None:
    name = f"priced-{uuid.uuid4().hex[:10]}"
    priced = f"openai/{name}"
    h = agents(model_prices={priced: PRICE})
    h.model.script(name, [_step0, _step1])
    created = h.new_session()
    sid, chat_id = created["session"]["id"], created["chat"]["id"]

    chunks, headers = h.turn(sid, chat_id, "delegate", model=priced)
    check_protocol(chunks)
    run = h.run(headers["x-workflow-run-id"])
    assert run["status"] == "completed", run

    # What the stand-in reported, request by request (two of the main agent, two of the
    # subagent's), is what the run recorded: the total and the subagents' part of it.
    requests = h.model.requests(name)
    sub = [r for r in requests if _is_subagent(r)]
    assert len(requests) == 4 and len(sub) == 2
    usage = run["usage"]
    assert usage["inputTokens"] == sum(prompt_tokens_of(r["messages"]) for r in requests)
    assert usage["subagent"]["inputTokens"] == sum(prompt_tokens_of(r["messages"]) for r in sub)
    assert usage["cachedInputTokens"] == 2 * MAIN_CACHED + 2 * SUB_CACHED
    assert usage["subagent"]["cachedInputTokens"] == 2 * SUB_CACHED
    assert 0 < usage["subagent"]["outputTokens"] < usage["outputTokens"]
    assert usage["cacheWriteTokens"] == 0
    assert run["toolCalls"] == 2 and usage["subagent"]["toolCalls"] == 1  # task + its bash
    sub_cost = _cost(
        usage["subagent"]["inputTokens"],
        usage["subagent"]["cachedInputTokens"],
        usage["subagent"]["outputTokens"],
    )
    assert usage["subagent"]["costUsd"] == sub_cost
    total_cost = _cost(usage["inputTokens"], usage["cachedInputTokens"], usage["outputTokens"])
    assert abs(usage["costUsd"] - total_cost) < 2e-9  # two priced parts, each rounded to 1e-9
    assert run["durationMs"] is not None and run["durationMs"] >= 0

    # The turn's final metadata says the same (and is stored with the reply).
    metadata = [c for c in chunks if c["type"] == "message-metadata"][-1]["messageMetadata"]
    assert metadata["usage"] == {**usage, "toolCalls": 2}
    assert metadata["durationMs"] == run["durationMs"]
    stored = h.chat(sid, chat_id)["messages"][-1]
    assert stored["metadata"]["usage"] == metadata["usage"]

    # A model without a price: tokens counted, cost null.
    unpriced = h.script([Text("plain")])
    other = h.new_session()
    other_sid, other_chat = other["session"]["id"], other["chat"]["id"]
    _, headers2 = h.turn(other_sid, other_chat, "hi", model=unpriced)
    run2 = h.run(headers2["x-workflow-run-id"])
    assert run2["usage"]["inputTokens"] > 0 and run2["usage"]["costUsd"] is None

    def report(**params: str) -> dict[str, Any]:
        r = h.client.get("/api/usage", params=params, headers=h.account.headers)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    by_model = {r["key"]: r for r in report(groupBy="model")["rows"]}
    assert set(by_model) == {priced, unpriced}
    assert by_model[priced]["costUsd"] == usage["costUsd"]
    assert by_model[priced]["subagent"] == usage["subagent"]
    assert by_model[priced]["inputTokens"] == usage["inputTokens"]
    assert by_model[priced]["durationMs"] == run["durationMs"]
    assert by_model[unpriced]["costUsd"] is None and by_model[unpriced]["unpricedRuns"] == 1

    by_session = report(groupBy="session")
    assert {r["key"]: r["runs"] for r in by_session["rows"]} == {sid: 1, other_sid: 1}
    days = {datetime.fromisoformat(x["createdAt"]).date().isoformat() for x in (run, run2)}
    by_day = report(groupBy="day")
    assert [r["key"] for r in by_day["rows"]] == sorted(days)
    total = by_day["total"]
    assert total["runs"] == 2 and total["unpricedRuns"] == 1
    assert total["inputTokens"] == usage["inputTokens"] + run2["usage"]["inputTokens"]
    assert total["costUsd"] == usage["costUsd"]

    r = h.client.get(f"/api/sessions/{sid}/chats/{chat_id}/usage", headers=h.account.headers)
    assert r.status_code == 200, r.text
    assert r.json()["usage"] == {k: v for k, v in by_model[priced].items() if k != "key"}

    # Another account sees none of it.
    stranger = make_account(h.backend.db, "stranger")
    r = h.client.get("/api/usage", params={"groupBy": "model"}, headers=stranger.headers)
    assert r.status_code == 200 and r.json()["rows"] == [] and r.json()["total"]["runs"] == 0
    r = h.client.get(f"/api/sessions/{sid}/chats/{chat_id}/usage", headers=stranger.headers)
    assert r.status_code == 403
