"""The stand-in model server for ``bench/agent.py``, in a process of its own.

Registers the bench's scripts (``tools-<n>``: n × ``todo_write`` calls then a text; ``text``:
a text only; ``stream``: a text of ``--stream-tokens`` deltas at ``--stream-rate`` a second, for
``bench/capacity.py``) on ``tests.support.model_server`` and serves it (zero latency but for
``stream``). One extra route,
``GET /bench/requests?model=<name>``, returns the request bodies recorded for a script, so that
the bench can replay exactly what the agent sent ("model alone" baseline).

    python bench/_agent_support.py --port P --tool-steps 20,20 [--stream-tokens 100]
        [--stream-rate 50]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests.*

from tests.support.model_server import (
    Call,
    ModelServer,
    Text,
    ToolCalls,
    run_model_server,
)

TEXT_REPLY = "Done: the stand-in model answers this turn with a short text in a few deltas."


def tools_script(n: int) -> list[ToolCalls | Text]:
    return [ToolCalls([Call("todo_write", {"todos": []})]) for _ in range(n)] + [Text("done")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tool-steps", default="20", help="comma-separated step counts")
    parser.add_argument("--stream-tokens", type=int, default=100, help="deltas of `stream`")
    parser.add_argument("--stream-rate", type=float, default=50.0, help="`stream` deltas/s")
    args = parser.parse_args()
    server = ModelServer()
    tokens = args.stream_tokens
    server.script(
        "stream",
        [Text("tok " * tokens, chunks=tokens, delay_between_chunks=1 / args.stream_rate)],
    )
    for n in {int(s) for s in args.tool_steps.split(",")}:
        server.script(f"tools-{n}", tools_script(n))
    server.script("text", [Text(TEXT_REPLY, chunks=4)])

    async def recorded(request: Request) -> Response:
        return JSONResponse(server.requests(request.query_params["model"]))

    server.app.add_route("/bench/requests", recorded, methods=["GET"])
    with run_model_server(args.port, server=server):
        print(f"listening on {server.base_url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
