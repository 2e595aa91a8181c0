"""The import rules of docs/architecture.md ("Layers"), checked on the source with ``ast``.

Every import counts, wherever it is written (a function's lazy import or a ``TYPE_CHECKING``
block too): the rules say what a layer may know, not only what it loads at start-up.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "agent_sessions"
ARCHITECTURE = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"

LAYERS: list[set[str]] = [
    {"__main__"},
    {"cli"},
    {"terminal"},
    {"client"},
    {"api"},
    {"agent", "auth"},
    {"lifecycle", "metrics_server"},
    {"workspace", "hooks"},
    {"sandbox"},
    {"snapshots"},
    {"store"},
]
"""Top-level packages and modules of ``agent_sessions``, highest first: each imports only those
of lower layers (and the foundation)."""

FOUNDATION = {
    "approval_rules",
    "datadir",
    "eventloop",
    "exceptions",
    "faults",
    "heap",
    "ids",
    "inflight",
    "logs",
    "metrics",
    "settings",
    "tracing",
}
"""Single modules any layer may import; they import only one another, without a cycle."""

CLIENT_MAY_IMPORT = {"agent_sessions.api", "agent_sessions.api.schemas"}
"""What the client library may import of the service: the wire models, shared with the server
(they load no server code; the package's index loads the app only on first use). Anything else
it knows, it learns over HTTP like any client."""

UPWARD = {("agent_sessions.workspace.textgen", "agent_sessions.agent.models")}
"""The one import against the layers: the workspace's short texts use the agent's model table."""

MODEL_TABLE = {
    "agent_sessions.agent",  # the package's index, which imports nothing
    "agent_sessions.agent.models",
    "agent_sessions.agent.served_models",
    "agent_sessions.agent.openai_client",
    "agent_sessions.agent.demo_model",
    "agent_sessions.agent.model_errors",
}
"""What that import may reach of the layers from ``workspace`` up: the agent's model table and
the modules it uses (so that no module imports itself round a cycle)."""

DBOS_MODULES = {
    # the workflows and what runs inside them (steps, streams, messages between workflows)
    "agent_sessions.agent.approvals",
    "agent_sessions.agent.autocommit",
    "agent_sessions.agent.autopr",
    "agent_sessions.agent.context",
    "agent_sessions.agent.group_commit",
    "agent_sessions.agent.hooks",
    "agent_sessions.agent.prompt",
    "agent_sessions.agent.stream",
    "agent_sessions.agent.tools",
    "agent_sessions.agent.turn",
    "agent_sessions.lifecycle.workflows",
    # what starts, reads and signals workflows, and DBOS's launch
    "agent_sessions.agent.service",
    "agent_sessions.lifecycle.service",
    "agent_sessions.lifecycle.runtime",
    "agent_sessions.lifecycle.hosts",
}
"""The modules that import DBOS, as docs/architecture.md names them."""

DBOS_INTERNALS_ADAPTER = "agent_sessions.agent.group_commit"
"""The one module that may use DBOS internals (ADR 16: no public batched stream write)."""

HTTP_FRAMEWORKS = ("fastapi", "starlette")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> Iterator[str]:
    """The absolute names of the modules ``path`` imports (``from x import y`` gives ``x.y``
    as well, since ``y`` may be a module)."""
    name = _module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)


@cache
def _graph() -> dict[str, set[str]]:
    return {_module_name(path): set(_imports(path)) for path in sorted(PACKAGE.rglob("*.py"))}


def _unit(module: str) -> str:
    """The top-level package or module of ``agent_sessions`` that ``module`` belongs to."""
    return module.split(".")[1] if module.count(".") else ""


def _rank(unit: str) -> int:
    for rank, layer in enumerate(LAYERS):
        if unit in layer:
            return rank
    if unit in FOUNDATION:
        return len(LAYERS)
    raise AssertionError(f"agent_sessions.{unit} is in no layer of tests/test_layers.py")


def _internal(imported: set[str]) -> set[str]:
    return {m for m in imported if m.startswith("agent_sessions.")}


def _known(graph: dict[str, set[str]], name: str) -> str:
    """``name`` itself if it is a module, else the module it names a member of."""
    return name if name in graph else name.rsplit(".", 1)[0]


def test_every_unit_has_a_layer() -> None:
    units = {_unit(m) for m in _graph()} - {""}
    for unit in units:
        _rank(unit)


def test_imports_go_down_the_layers() -> None:
    graph = _graph()
    wrong = set()
    for module, imported in graph.items():
        if not _unit(module):
            continue
        rank = _rank(_unit(module))
        for target in _internal(imported):
            target = _known(graph, target)
            other = _unit(target)
            if not other or other == _unit(module) or (module, target) in UPWARD:
                continue
            if _rank(other) <= rank and not (rank == len(LAYERS) == _rank(other)):
                wrong.add(f"{module} imports {target}")
    assert not wrong, "against the layers of docs/architecture.md:\n" + "\n".join(sorted(wrong))


def test_no_import_cycle_between_packages_but_the_upward_import() -> None:
    graph = _graph()
    edges: dict[str, set[str]] = {}
    for module, imported in graph.items():
        for target in _internal(imported):
            a, b = _unit(module), _unit(_known(graph, target))
            if a and b and a != b and (module, _known(graph, target)) not in UPWARD:
                edges.setdefault(a, set()).add(b)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in edges.get(start, set()) - seen:
            seen.add(nxt)
            if nxt == goal or reaches(nxt, goal, seen):
                return True
        return False

    cycles = sorted(u for u in edges if reaches(u, u, set()))
    assert not cycles, f"import cycles through {cycles}"


def _reached_from(unit: str) -> set[tuple[str, str]]:
    """(module, what it imports) for each module of ``unit`` and import of another unit."""
    graph = _graph()
    return {
        (module, target)
        for module, imported in graph.items()
        if _unit(module) == unit
        for target in {_known(graph, t) for t in _internal(imported)}
        if _unit(target) not in ("", unit)
    }


def test_the_client_imports_only_the_wire_models() -> None:
    wrong = sorted(
        f"{m} imports {t}" for m, t in _reached_from("client") if t not in CLIENT_MAY_IMPORT
    )
    assert not wrong, "the client library must stay a client:\n" + "\n".join(wrong)


def test_the_terminal_speaks_http_through_the_client_only() -> None:
    wrong = sorted(f"{m} imports {t}" for m, t in _reached_from("terminal") if _unit(t) != "client")
    assert not wrong, "the terminal client uses the client library only:\n" + "\n".join(wrong)


def test_the_upward_import_reaches_only_the_model_table() -> None:
    graph = _graph()
    reached, todo = set(), [target for _, target in UPWARD]
    while todo:
        module = todo.pop()
        if module in reached:
            continue
        reached.add(module)
        todo.extend(_known(graph, t) for t in _internal(graph[module]))
    above = {m for m in reached if _unit(m) and _rank(_unit(m)) <= _rank("workspace")}
    assert above <= MODEL_TABLE, f"the model table now reaches {sorted(above - MODEL_TABLE)}"


def test_dbos_is_imported_only_where_the_architecture_says() -> None:
    graph = _graph()
    importers = {
        module
        for module, imported in graph.items()
        if any(
            m == "dbos" or m.startswith(("dbos.", "pydantic_ai.durable_exec.dbos"))
            for m in imported
        )
    }
    assert importers == DBOS_MODULES
    text = ARCHITECTURE.read_text()
    layers = text[text.index("## Layers") :]
    layers = layers[: layers.index("\n## ")]
    for module in DBOS_MODULES:
        path = module.removeprefix("agent_sessions.").replace(".", "/") + ".py"
        assert f"`{path}`" in layers, f"docs/architecture.md, Layers, does not name {path}"


def test_no_private_dbos_module_is_imported() -> None:
    private = [
        f"{module} imports {name}"
        for module, imported in _graph().items()
        for name in imported
        if name.startswith("dbos._") and module != DBOS_INTERNALS_ADAPTER
    ]
    assert not private, "use the public names (dbos.error, …):\n" + "\n".join(private)


@pytest.mark.parametrize("framework", HTTP_FRAMEWORKS)
def test_only_the_api_knows_http(framework: str) -> None:
    outside = sorted(
        module
        for module, imported in _graph().items()
        if _unit(module) != "api"
        and any(m == framework or m.startswith(f"{framework}.") for m in imported)
    )
    assert not outside, f"{framework} imported outside api/: {outside}"
