"""Context management (ADR 15): a conversation driven past a small window, through the real
service, sandbox and DBOS, with the stand-in model; what the model receives is read back from
the stand-in's record of its requests."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_sessions.agent import context
from agent_sessions.settings import Settings
from tests.agent.conftest import AgentsFactory, parse_sse
from tests.agent.protocol import check_protocol, text_of
from tests.agent.test_crash import _env, _messages, _wait_run
from tests.conftest import Backend, make_account, start_server, stop_server
from tests.sandbox.conftest import local_unavailable_reason
from tests.support.model_server import (
    Call,
    Fail,
    ModelServer,
    Step,
    Text,
    ToolCalls,
    prompt_tokens_of,
)

SUMMARY = "SUMMARY-TEXT: the user sent two long notes; the agent ran two commands."
PRICE = {"input": 2.0, "output": 8.0}
BIG_OUTPUT = "head -c 4000 /dev/zero | tr '\\0' o"


def _content(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


def _is_summary_request(body: dict[str, Any]) -> bool:
    return any(context.SUMMARY_INSTRUCTIONS in _content(m) for m in body["messages"])


def respond(body: dict[str, Any]) -> Step:
    """The summary when asked for one; a command printing 4,000 characters for a prompt that
    starts with "tool" (its call id named after the prompt: unique in the chat); text else."""
    if _is_summary_request(body):
        return Text(SUMMARY)
    last = body["messages"][-1]
    if last["role"] == "tool":
        return Text("done")
    prompt = _content(last)
    if prompt.startswith("tool"):
        return ToolCalls([Call("bash", {"command": BIG_OUTPUT}, id=f"call-{prompt.split()[1]}")])
    return Text("ok")


def test_a_conversation_past_its_window_is_pruned_then_summarised_once(
    agents: AgentsFactory,
) -> None:
    """Sizes, in estimated tokens (characters / 4): user notes of 1,500 (turns 1-2) and 500
    (turns 3-4), command outputs of ~1,000, a pruned output ~40; the limit is 80% of a window of
    4,812 = 3,849. Turn 3 fits once the older outputs are pruned (3,599); turn 4 does not
    (4,145): turns 1-2 are summarised, turns 3-4 kept (1,053, under half the limit). Turn 5
    fits with the stored summary (~2,100) and asks for none."""
    from dbos import DBOS

    name = f"script-{uuid.uuid4().hex[:10]}"
    model = f"openai/{name}"
    h = agents(
        context_windows={model: 4812}, context_compact_at=0.8, context_keep_turns=2,
        context_tool_output_turns=1, model_prices={model: PRICE},
    )  # fmt: skip
    h.model.script(name, [respond] * 50)
    created = h.new_session()
    sid, chat_id = created["session"]["id"], created["chat"]["id"]
    prompts = [
        "tool 1 U1MARK " + "a" * 6000,
        "tool 2 U2MARK " + "b" * 6000,
        "tool 3 U3MARK " + "c" * 2000,
        "talk 4 U4MARK " + "d" * 2000,
        "talk 5 U5MARK",
    ]
    runs = []
    for n, prompt in enumerate(prompts, start=1):
        chunks, headers = h.turn(sid, chat_id, prompt, model=model, message_id=f"u{n}")
        check_protocol(chunks)
        assert text_of(chunks) == ("done" if n <= 3 else "ok"), chunks
        runs.append((chunks, headers["x-workflow-run-id"]))

    requests = h.model.requests(name)
    summaries = [r for r in requests if _is_summary_request(r)]
    turns = [r for r in requests if not _is_summary_request(r)]
    assert len(summaries) == 1  # turn 5 reused the stored summary
    first_of = {n: turns[i] for n, i in ((1, 0), (2, 2), (3, 4), (4, 6), (5, 7))}
    assert len(turns) == 8

    def sent(n: int) -> str:
        return json.dumps(first_of[n]["messages"])

    def tool_messages(n: int) -> list[str]:
        return [_content(m) for m in first_of[n]["messages"] if m["role"] == "tool"]

    # Turn 2: over the limit with turn 1's output, under it without: pruned, nothing summarised.
    assert [("o" * 4000) in t for t in tool_messages(2)] == [False]
    assert "output pruned from the context" in tool_messages(2)[0]
    assert "U1MARK" in sent(2) and SUMMARY not in sent(2)
    # Turn 3: both older outputs pruned, every user note intact.
    assert all("output pruned" in t for t in tool_messages(3)) and len(tool_messages(3)) == 2
    assert all(p in sent(3) for p in (prompts[0], prompts[1], prompts[2]))

    # Turn 4: the summary (a system message beside the instructions) instead of turns 1-2; turn
    # 3 kept (its output pruned), the new prompt last.
    messages = first_of[4]["messages"]
    assert [m["role"] for m in messages] == ["system", "system", "user", "assistant", "tool",
                                             "assistant", "user"]  # fmt: skip
    assert context.SUMMARY_PREFIX + SUMMARY in [_content(m) for m in messages[:2]]
    assert "U1MARK" not in sent(4) and "U2MARK" not in sent(4)
    assert _content(messages[2]) == prompts[2] and _content(messages[-1]) == prompts[3]
    assert "output pruned" in _content(messages[4])
    # The summariser got turns 1-2 as a transcript (outputs cut), not turns 3-4.
    transcript = json.dumps(summaries[0]["messages"])
    assert "U1MARK" in transcript and "U2MARK" in transcript
    assert "U3MARK" not in transcript and "U4MARK" not in transcript
    assert "characters cut" in transcript
    # Turn 5: the stored summary reused; turn 3's output is back (room enough without pruning).
    assert context.SUMMARY_PREFIX + SUMMARY in [_content(m) for m in first_of[5]["messages"][:2]]
    assert "U2MARK" not in sent(5) and "U3MARK" in sent(5) and "U4MARK" in sent(5)
    assert ("o" * 4000) in tool_messages(5)[0]

    # The boundary: on the last message summarised (turn 2's reply), in GET …/chats/{chatId}.
    stored = h.chat(sid, chat_id)["messages"]
    assert [m["id"] for m in stored[::2]] == ["u1", "u2", "u3", "u4", "u5"]
    marked = [m for m in stored if (m.get("metadata") or {}).get("compaction")]
    assert [m["id"] for m in marked] == [stored[3]["id"]]
    compaction = marked[0]["metadata"]["compaction"]
    assert compaction["summary"] == SUMMARY
    assert compaction["summarizedThrough"] == stored[3]["id"]
    assert compaction["firstKeptMessageId"] == "u3"
    assert compaction["summarizedMessages"] == 4
    assert compaction["runId"] == runs[3][1] and compaction["contextWindow"] == 4812
    assert compaction["estimatedTokens"] > 3849 and compaction["model"] == model
    # The live stream of turn 4 told of it too (a transient part: not stored in its message).
    shown = [c for c in runs[3][0] if c["type"] == "data-compaction"]
    assert len(shown) == 1 and shown[0]["transient"] is True
    assert shown[0]["data"]["summarizedThrough"] == stored[3]["id"]
    assert not [p for p in stored[7]["parts"] if p["type"] == "data-compaction"]
    # The summary is one DBOS step of turn 4's workflow (a recovery replays its result); no
    # other turn has one.
    steps = {run: [s["function_name"] for s in DBOS.list_workflow_steps(run)] for _, run in runs}
    assert [sum(n.endswith("compact_context") for n in names) for names in steps.values()] == [
        0, 0, 0, 1, 0
    ]  # fmt: skip

    # The summary's tokens are turn 4's (as the stand-in reported them), in its totals and
    # apart, priced with the chat's model; in the run, its final metadata and /api/usage.
    summary_in = prompt_tokens_of(summaries[0]["messages"])
    summary_out = max(1, len(SUMMARY) // 4)  # the stand-in's completion tokens
    usages = [h.run(run)["usage"] for _, run in runs]
    fourth = usages[3]
    assert fourth["compaction"] == {
        "inputTokens": summary_in, "outputTokens": summary_out,
        "costUsd": _cost(summary_in, summary_out),
    }  # fmt: skip
    assert fourth["inputTokens"] == prompt_tokens_of(first_of[4]["messages"]) + summary_in
    assert fourth["outputTokens"] == 1 + summary_out  # "ok", then the summary
    assert fourth["costUsd"] == _cost(fourth["inputTokens"], fourth["outputTokens"])
    assert all(u["compaction"] == {"inputTokens": 0, "outputTokens": 0, "costUsd": 0.0}
               for n, u in enumerate(usages) if n != 3)  # fmt: skip
    metadata = [c for c in runs[3][0] if c["type"] == "message-metadata"][-1]["messageMetadata"]
    assert metadata["usage"]["compaction"] == fourth["compaction"]
    assert metadata["usage"]["inputTokens"] == fourth["inputTokens"]
    r = h.client.get("/api/usage", params={"groupBy": "model"}, headers=h.account.headers)
    assert r.status_code == 200, r.text
    [row] = r.json()["rows"]
    assert row["runs"] == 5 and row["compaction"] == fourth["compaction"]
    assert row["inputTokens"] == sum(prompt_tokens_of(q["messages"]) for q in requests)
    assert row["inputTokens"] == sum(u["inputTokens"] for u in usages)


def _cost(input_tokens: int, output_tokens: int) -> float:
    from decimal import Decimal

    usd = input_tokens * Decimal(str(PRICE["input"])) + output_tokens * Decimal(
        str(PRICE["output"])
    )
    return float((usd / 10**6).quantize(Decimal("1e-9")))


def test_a_summary_the_model_cannot_write_leaves_the_turn_its_whole_history(
    agents: AgentsFactory,
) -> None:
    """The summariser's request fails (a 400 from the provider): the turn goes on with the
    history as it is, nothing is stored, and the next turn tries again."""
    name = f"script-{uuid.uuid4().hex[:10]}"
    model = f"openai/{name}"
    h = agents(context_windows={model: 1000}, context_keep_turns=1)

    def refuse_summaries(body: dict[str, Any]) -> Step:
        if _is_summary_request(body):
            return Fail(400, "the summariser is down")
        return respond(body)

    h.model.script(name, [refuse_summaries] * 10)
    created = h.new_session()
    sid, chat_id = created["session"]["id"], created["chat"]["id"]
    for n, text in enumerate(["talk 1 U1MARK " + "a" * 4000, "talk 2 U2MARK", "talk 3"], 1):
        chunks, _ = h.turn(sid, chat_id, text, model=model, message_id=f"u{n}")
        check_protocol(chunks)
        assert text_of(chunks) == "ok"
        assert not [c for c in chunks if c["type"] == "data-compaction"]
    requests = h.model.requests(name)
    assert sum(_is_summary_request(r) for r in requests) == 2  # turns 2 and 3 each tried once
    last = [r for r in requests if not _is_summary_request(r)][-1]
    assert "U1MARK" in json.dumps(last["messages"])
    stored = h.chat(sid, chat_id)["messages"]
    assert not [m for m in stored if (m.get("metadata") or {}).get("compaction")]


@pytest.mark.slow
def test_kill_9_after_the_summary_is_stored_asks_the_model_once(
    backend: Backend, sandbox_data_dir: Path, model_server: ModelServer
) -> None:
    """The process dies (SIGKILL) after the summary step stored its summary and before DBOS
    recorded the step: the restarted process runs the step again, finds the summary of its own
    run stored and goes on with it, without a second summary request."""
    reason = local_unavailable_reason()
    if reason:
        pytest.skip(reason)
    name = f"compact-crash-{uuid.uuid4().hex[:10]}"
    model_server.script(name, [respond] * 10)
    env = {
        **_env(model_server),
        "AGENT_SESSIONS_CONTEXT_WINDOWS": json.dumps({f"openai/{name}": 1000}),
        "AGENT_SESSIONS_CONTEXT_KEEP_TURNS": "1",
    }
    h = make_account(backend.db).headers

    def send(url: str, n: int, text: str) -> httpx.Response:
        body = {"id": chat_id, "sessionId": sid, "model": f"openai/{name}",
                "messages": [{"id": f"u{n}", "role": "user",
                              "parts": [{"type": "text", "text": text}]}]}  # fmt: skip
        return httpx.post(f"{url}/api/chat", json=body, headers=h, timeout=60)

    srv = start_server(sandbox_data_dir, backend.url, **env,
                       AGENT_SESSIONS_FAULT_POINT="compact-context.stored")  # fmt: skip
    try:
        created = httpx.post(f"{srv.url}/api/sessions", json={}, headers=h).json()
        sid, chat_id = created["session"]["id"], created["chat"]["id"]
        # Turn 1 (~1,000 tokens, over the 800 of the limit) has nothing older to summarise.
        first = send(srv.url, 1, "talk 1 U1MARK " + "a" * 4000)
        assert text_of(parse_sse(first.text)) == "ok"
        with pytest.raises(httpx.HTTPError):  # turn 2 summarises turn 1: the process dies
            send(srv.url, 2, "talk 2 U2MARK")
        srv.process.wait(10)
        assert srv.process.returncode == -9
    finally:
        stop_server(srv)
    stored = _summary_requests(model_server, name)
    assert stored == 1
    srv = start_server(sandbox_data_dir, backend.url, **env)
    try:
        run_id = _messages(srv, sid, chat_id, h)["chat"]["activeStreamId"]
        assert run_id, "the interrupted turn holds the chat"
        recovered = _wait_run(srv, run_id, h)
        assert recovered["status"] == "completed"
        detail = _messages(srv, sid, chat_id, h)
    finally:
        stop_server(srv)
    assert _summary_requests(model_server, name) == 1
    # Its tokens counted once in the run: the recorded summary's, not measured again.
    [summary] = [r for r in model_server.requests(name) if _is_summary_request(r)]
    compacted = recovered["usage"]["compaction"]
    assert compacted["inputTokens"] == prompt_tokens_of(summary["messages"])
    messages = detail["messages"]
    assert [m["id"] for m in messages[::2]] == ["u1", "u2"]
    compaction = messages[1]["metadata"]["compaction"]
    assert compaction["summary"] == SUMMARY and compaction["runId"] == run_id
    last = [r for r in model_server.requests(name) if not _is_summary_request(r)][-1]
    assert context.SUMMARY_PREFIX + SUMMARY in [_content(m) for m in last["messages"][:2]]
    assert "U1MARK" not in json.dumps(last["messages"])


def _summary_requests(server: ModelServer, name: str) -> int:
    return sum(_is_summary_request(r) for r in server.requests(name))


# --- the parts, without a service ------------------------------------------------------------


def _user(i: str, text: str) -> dict[str, Any]:
    return {"id": i, "role": "user", "parts": [{"type": "text", "text": text}]}


def _reply(i: str, output: Any, **metadata: Any) -> dict[str, Any]:
    part = {"type": "tool-bash", "toolCallId": f"c-{i}", "state": "output-available",
            "input": {"command": "x"}, "output": output}  # fmt: skip
    return {"id": i, "role": "assistant", "parts": [part], "metadata": metadata}


def test_pruning_leaves_the_last_turns_short_outputs_and_the_stored_messages() -> None:
    history = [
        _user("u1", "one"), _reply("a1", "x" * 500), _reply("a1b", "short"),
        _user("u2", "two"), _reply("a2", "y" * 500), _user("u3", "three"),
    ]  # fmt: skip
    pruned = context.prune_tool_outputs(history, keep_turns=2)
    outputs = [m["parts"][0]["output"] for m in pruned if m["role"] == "assistant"]
    assert outputs[0].startswith("[output pruned from the context (500 characters)")
    assert outputs[1:] == ["short", "y" * 500]
    assert history[1]["parts"][0]["output"] == "x" * 500  # a copy was changed
    assert context.prune_tool_outputs(history, keep_turns=5) == history
    assert all(
        m["parts"][0]["output"] in ("short",) or "pruned" in m["parts"][0]["output"]
        for m in context.prune_tool_outputs(history, keep_turns=0)
        if m["role"] == "assistant"
    )
    assert context.estimate_tokens(pruned) < context.estimate_tokens(history)


def test_only_a_summary_naming_its_own_message_counts() -> None:
    good = {"summary": "s", "summarizedThrough": "a1"}
    history = [
        _user("u1", "one"), _reply("a1", "x", compaction=good),
        _user("u2", "two"), _reply("a2", "y", compaction={**good, "summarizedThrough": "a1"}),
        _user("u3", "three"),
    ]  # fmt: skip
    assert context.stored_compaction(history) == (1, good)
    assert context.stored_compaction(history[2:]) is None


def test_the_transcript_keeps_the_latest_lines_within_its_budget() -> None:
    history = [_user(f"u{i}", f"note {i} " + "z" * 100) for i in range(50)]
    text = context.transcript(history, "EARLIER", budget_chars=1_000)
    assert "<earlier-summary>\nEARLIER\n" in text and "note 49 " in text
    assert "note 0 " not in text and "[older messages left out]" in text
    assert len(text) < 1_400


@pytest.mark.anyio
async def test_a_window_comes_from_the_setting_then_the_price_data_then_the_default() -> None:
    settings = Settings(context_windows={"openai/gpt-4o": 1234}, context_window_default=5678)  # type: ignore[call-arg]
    assert await context.context_window(settings, "openai/gpt-4o") == 1234
    assert await context.context_window(settings, "openai/no-such-model-here") == 5678
    listed = await context.context_window(settings, "anthropic/claude-haiku-4.5")
    assert listed not in (1234, 5678) and listed >= 100_000


def test_a_window_setting_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1 token"):
        Settings(context_windows={"openai/x": 0})  # type: ignore[call-arg]
