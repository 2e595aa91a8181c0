"""The console folds a UI message stream into the message the server stores: its ``stream.js``
(run with node) against ``agent/sink.py``'s ``MessageBuilder`` on the same chunks, read from
the same SSE bytes, split at awkward places."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from agent_sessions.agent.sink import MessageBuilder
from agent_sessions.api.console import STATIC

NODE = shutil.which("node")

CHUNKS: list[dict[str, Any]] = [
    {"type": "start", "messageId": "msg-1"},
    {"type": "data-sandbox", "id": "sandbox", "data": {"state": "restoring"}},
    {"type": "data-sandbox", "id": "sandbox", "data": {"state": "active"}},
    {"type": "start-step"},
    {"type": "reasoning-start", "id": "r1"},
    {"type": "reasoning-delta", "id": "r1", "delta": "Let me look."},
    {"type": "reasoning-end", "id": "r1"},
    {"type": "tool-input-start", "toolCallId": "c1", "toolName": "bash"},
    {"type": "tool-input-delta", "toolCallId": "c1", "inputTextDelta": '{"command":'},
    {"type": "tool-input-available", "toolCallId": "c1", "toolName": "bash",
     "input": {"command": "seq 3"}},
    {"type": "tool-output-available", "toolCallId": "c1", "preliminary": True,
     "output": {"stdout": "1\n", "stderr": "", "running": True}},
    {"type": "tool-output-available", "toolCallId": "c1",
     "output": {"exitCode": 0, "stdout": "1\n2\n3\n", "stderr": ""}},
    {"type": "tool-input-start", "toolCallId": "c4", "toolName": "bash"},
    {"type": "tool-input-available", "toolCallId": "c4", "toolName": "bash",
     "input": {"command": "make"}},
    {"type": "tool-output-available", "toolCallId": "c4", "preliminary": True,
     "output": {"stdout": "cc -c a.c\n", "stderr": "", "running": True}},
    {"type": "tool-output-error", "toolCallId": "c4", "errorText": "Cancelled"},
    {"type": "tool-input-start", "toolCallId": "c5", "toolName": "bash"},
    {"type": "tool-input-available", "toolCallId": "c5", "toolName": "bash",
     "input": {"command": "sleep 9"}},
    {"type": "tool-output-available", "toolCallId": "c5", "preliminary": True,
     "output": {"stdout": "z", "stderr": "", "running": True}},
    {"type": "tool-input-start", "toolCallId": "c2", "toolName": "read"},
    {"type": "tool-input-available", "toolCallId": "c2", "toolName": "read",
     "input": {"filePath": "missing.txt"}},
    {"type": "tool-output-error", "toolCallId": "c2", "errorText": "missing.txt: no such file"},
    {"type": "tool-input-start", "toolCallId": "c3", "toolName": "bash"},
    {"type": "tool-input-available", "toolCallId": "c3", "toolName": "bash",
     "input": {"command": "rm -rf build"}},
    {"type": "tool-approval-request", "approvalId": "a1", "toolCallId": "c3"},
    {"type": "data-hook", "data": {"event": "PreToolUse"}, "transient": True},
    {"type": "data-commit", "data": {"sha": "abc"}},
    {"type": "finish-step"},
    {"type": "start-step"},
    {"type": "text-start", "id": "t1"},
    {"type": "text-delta", "id": "t1", "delta": "All "},
    {"type": "text-delta", "id": "t1", "delta": "done: `ü` ✓\n\n```py\nx = 1\n```"},
    {"type": "text-end", "id": "t1"},
    {"type": "finish-step"},
    {"type": "message-metadata", "messageMetadata": {"usage": {"inputTokens": 12}}},
    {"type": "finish", "finishReason": "stop", "messageMetadata": {"durationMs": 5}},
]  # fmt: skip

SCRIPT = """
import { sseChunks, MessageFolder } from %(module)s;
const bytes = new TextEncoder().encode(%(body)s);
const pieces = [1, 7, 2, 50, 3];  // uneven reads, cutting lines and UTF-8 sequences
let at = 0, i = 0;
const body = new ReadableStream({
  pull(controller) {
    if (at >= bytes.length) return controller.close();
    const n = pieces[i++ %% pieces.length];
    controller.enqueue(bytes.slice(at, at + n));
    at += n;
  },
});
const folder = new MessageFolder();
for await (const chunk of sseChunks({ body })) folder.apply(chunk);
console.log(JSON.stringify(folder.message));
"""


def _server_message() -> dict[str, Any]:
    builder = MessageBuilder({"id": "msg-1", "role": "assistant"})
    steps = 0
    for chunk in CHUNKS:
        if chunk["type"] == "start-step":  # the sink starts steps; they are not applied
            builder.begin_step(steps)
            steps += 1
        elif chunk["type"] != "start":
            builder.apply(chunk)
    return builder.message


@pytest.mark.skipif(NODE is None, reason="node not installed: the console's folding is untested")
def test_console_folds_chunks_as_the_server_stores_them() -> None:
    body = ": keep-alive\n\n" + "".join(f"data: {json.dumps(c)}\n\n" for c in CHUNKS)
    body += "data: [DONE]\n\ndata: {}\n\n"  # nothing after [DONE] is read
    module = (STATIC / "js" / "stream.js").as_uri()
    script = SCRIPT % {"module": json.dumps(module), "body": json.dumps(body)}
    out = subprocess.run(
        [str(NODE), "--input-type=module", "-e", script],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    console = json.loads(out.stdout)
    for part in console["parts"]:
        part.pop("inputText", None)  # the console's own: a call's arguments as they stream
    assert console == _server_message()


AI_SDK = """
import { readUIMessageStream } from "ai";
const chunks = %(chunks)s;
const stream = new ReadableStream({
  start(controller) { for (const c of chunks) controller.enqueue(c); controller.close(); },
});
let last;
for await (const message of readUIMessageStream({ stream })) last = message;
console.log(JSON.stringify(last));
"""
NODE_DIR = Path(__file__).parents[1] / "support" / "node"


@pytest.mark.skipif(NODE is None, reason="node not installed: the AI SDK's folding is untested")
@pytest.mark.skipif(
    not (NODE_DIR / "node_modules" / "ai").is_dir(),
    reason=f"the AI SDK client is not installed: npm ci --prefix {NODE_DIR} (make test does)",
)
def test_tool_calls_fold_as_the_ai_sdk_client_folds_them() -> None:
    """The AI SDK's own ``readUIMessageStream`` on the same chunks: every tool call ends in the
    state, output, error and ``preliminary`` flag the server stores (a command's output while it
    runs replaced by its result, or dropped by its error)."""
    script = AI_SDK % {"chunks": json.dumps(CHUNKS)}
    out = subprocess.run(
        [str(NODE), "--input-type=module", "-e", script],
        capture_output=True, text=True, check=True, timeout=60, cwd=NODE_DIR,
    )  # fmt: skip
    keys = ("toolCallId", "state", "output", "errorText", "preliminary")

    def calls(message: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {k: p[k] for k in keys if p.get(k) is not None}
            for p in message["parts"]
            if "toolCallId" in p
        ]

    sdk = calls(json.loads(out.stdout))
    assert sdk == calls(_server_message())
    assert {"toolCallId": "c5", "state": "output-available", "preliminary": True,
            "output": {"stdout": "z", "stderr": "", "running": True}} in sdk  # fmt: skip
