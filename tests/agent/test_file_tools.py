"""What the file tools answer on files too big to hold (issue 14, finding 2): the model gets
the lines it asked for, cut where they are too long, and a footer or a tool error that says
what was left out and how to get it with bash.

Real turns in real bubblewrap sandboxes; the scripted stand-in model makes the calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_sessions.agent.reading import READ_MAX_LINE, READ_MAX_OUTPUT, READ_SCAN_BYTES
from agent_sessions.agent.tools import EDIT_MAX_BYTES, GREP_MAX_LINE
from tests.agent.conftest import AgentsFactory
from tests.agent.protocol import check_protocol, tool_outputs
from tests.conftest import Backend, make_backend
from tests.support.model_server import Call, Text, ToolCalls

LONG = "é" * 5000
"""One line of 5,000 characters, 10,000 bytes."""
FAR = READ_SCAN_BYTES + 1000
"""Lines (all empty) of a file longer than what ``read`` scans."""
WIDE = 1000
"""Characters of each of the 200 lines of a file whose lines fit but whose whole does not."""

SETUP = (
    f"yes abcdefg | head -c 9000 > huge && truncate -s 1G huge"
    f" && printf '{LONG}\\nsecond\\n' > long"
    f" && head -c {FAR} /dev/zero | tr '\\0' '\\n' > far"
    f" && for i in $(seq 200); do printf '%0{WIDE}d\\n' $i; done > wide"
    f" && printf 'a\\r\\nb\\r\\nno newline at the end' > crlf"
    f" && printf 'a\\0b' > bin"
    f" && head -c {EDIT_MAX_BYTES + 1} /dev/zero | tr '\\0' x > over"
    f" && mkdir .hidden && echo second > .hidden/f"
)


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Backend]:
    """SQLite only: the tools' answers do not depend on the database."""
    with make_backend("sqlite", tmp_path / "db") as fresh:
        yield fresh


def _run(agents: AgentsFactory, calls: list[Call]) -> list[dict[str, Any]]:
    h = agents()
    model = h.script(
        [ToolCalls([Call("bash", {"command": SETUP})]), *(ToolCalls([c]) for c in calls),
         Text("done")]
    )  # fmt: skip
    created = h.new_session()
    chunks, _ = h.turn(created["session"]["id"], created["chat"]["id"], "go", model=model)
    check_protocol(chunks)
    outputs = tool_outputs(chunks)
    assert outputs["call_0_0"]["output"]["exitCode"] == 0, outputs["call_0_0"]
    return [outputs[f"call_{i + 1}_0"] for i in range(len(calls))]


def test_read_edit_and_grep_on_files_too_big_to_hold(agents: AgentsFactory) -> None:
    first, long_line, far, wide, crlf, binary, edit_over, edit_huge, grep = _run(
        agents,
        [
            Call("read", {"filePath": "huge", "limit": 1}),
            Call("read", {"filePath": "long"}),
            Call("read", {"filePath": "far", "offset": FAR - 10}),
            Call("read", {"filePath": "wide"}),
            Call("read", {"filePath": "crlf"}),
            Call("read", {"filePath": "bin"}),
            Call("edit", {"filePath": "over", "oldString": "xx", "newString": "y"}),
            Call("edit", {"filePath": "huge", "oldString": "abcdefg", "newString": "y"}),
            Call("grep", {"pattern": "second|éé"}),
        ],
    )
    # The first line of a 1 GiB file, without reading the rest.
    assert first["output"] == "1: abcdefg\n(lines 1-1; more follow: read on with offset=2)"

    # A line longer than READ_MAX_LINE: cut, its length said; the next line whole.
    cut = f"line cut at {READ_MAX_LINE} characters of {len(LONG.encode())} bytes"
    assert long_line["output"] == f"1: {LONG[:READ_MAX_LINE]}… ({cut})\n2: second\n(lines 1-2 of 2)"

    # An offset past what is scanned: no lines, and the way on with bash.
    lines = READ_SCAN_BYTES  # all of them empty, one byte each
    assert far["output"] == (
        f"(line {FAR - 10} is not in the first 64 MiB of this {FAR}-byte file (lines in them: "
        f"{lines}); only that much is scanned: read further with bash, e.g. "
        f"sed -n '{FAR - 10},{FAR - 10 + 1999}p' or tail -c)"
    )

    # Lines that fit, too many characters in all: as many lines as fit, and where to go on.
    shown = wide["output"].split("\n")
    n, chars = 0, 0
    while chars + len(entry := f"{n + 1}: {n + 1:0{WIDE}d}") + 1 <= READ_MAX_OUTPUT:
        n, chars = n + 1, chars + len(entry) + 1
    assert shown[:-1] == [f"{i}: {i:0{WIDE}d}" for i in range(1, n + 1)]
    assert shown[-1] == (
        f"(lines 1-{n}; output capped at {READ_MAX_OUTPUT} characters: read on with offset={n + 1})"
    )

    assert crlf["output"] == "1: a\n2: b\n3: no newline at the end\n(lines 1-3 of 3)"
    assert binary["type"] == "tool-output-error"
    assert binary["errorText"] == "bin is a binary file (3 bytes)"

    # edit refuses a file over its limit, and says what to use instead.
    assert edit_over["type"] == "tool-output-error"
    assert edit_over["errorText"] == (
        f"over is too large for edit ({EDIT_MAX_BYTES + 1} bytes; the limit is "
        f"{EDIT_MAX_BYTES} bytes): change it with bash instead (sed -i, or a script)"
    )
    assert edit_huge["errorText"].startswith(f"huge is too large for edit ({1 << 30} bytes;")

    # grep searches the workspace root (not hidden directories), long lines cut.
    matches = grep["output"]["matches"]
    assert sorted(m[: len("./long:1:")] for m in matches) == ["./long:1:", "./long:2:"]
    long_match = next(m for m in matches if m.startswith("./long:1:"))
    assert len(long_match) <= GREP_MAX_LINE
