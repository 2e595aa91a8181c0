"""Models: providers and their refusals, what OpenAI-compatible endpoints serve, the account's
default model, model errors as one line, and the built-in demo model through a real turn.

The stand-in model server (``tests/support/model_server.py``, STAND-IN) plays the endpoint
over real HTTP; the demo model runs in the real turn machinery with a real sandbox.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai import Agent
from pydantic_ai.exceptions import ModelConnectionError, ModelHTTPError, UserError

from agent_sessions.agent import model_errors, models, served_models
from agent_sessions.exceptions import InvalidInput
from agent_sessions.settings import Settings
from tests.agent.conftest import AgentsFactory
from tests.agent.protocol import check_protocol, text_of, tool_outputs
from tests.support.model_server import Fail, ModelServer, Text, run_model_server


@pytest.fixture(autouse=True)
def _fresh_listing_cache() -> Iterator[None]:
    served_models.forget()
    yield
    served_models.forget()


def _settings(tmp_path: Path, **values: Any) -> Settings:
    return Settings(data_dir=tmp_path, **values)


def _closed_port_url() -> str:
    """A URL on a port nobody listens on (bound, then released: refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


# --- providers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_id", "variable", "settings"),
    [
        ("google/gemini-3.1-flash-lite", "GOOGLE_API_KEY", {"google_api_key": "g"}),
        ("openrouter/openai/gpt-5.4", "OPENROUTER_API_KEY", {"openrouter_api_key": "o"}),
        ("groq/openai/gpt-oss-120b", "GROQ_API_KEY", {"groq_api_key": "q"}),
        ("mistral/mistral-large-latest", "MISTRAL_API_KEY", {"mistral_api_key": "m"}),
        (
            "bedrock/us.amazon.nova-pro-v1:0",
            "AWS_REGION and AWS_BEARER_TOKEN_BEDROCK",
            {"aws_region": "us-east-1", "aws_bearer_token_bedrock": "b"},
        ),
    ],
)
def test_each_provider_is_refused_naming_its_variable_and_builds_once_set(
    tmp_path: Path, model_id: str, variable: str, settings: dict[str, Any]
) -> None:
    with pytest.raises(InvalidInput, match=f"Model {model_id} is not configured: set {variable}"):
        models.check_usable(_settings(tmp_path), model_id)
    configured = _settings(tmp_path, **settings)
    models.check_usable(configured, model_id)

    async def build() -> str:
        return models.build_model(configured, model_id).model_name

    assert asyncio.run(build()) == model_id.partition("/")[2]


def test_bedrock_takes_an_access_key_pair_and_needs_a_region(tmp_path: Path) -> None:
    pair = {"aws_access_key_id": "AKIA", "aws_secret_access_key": "s"}
    with pytest.raises(InvalidInput, match="set AWS_REGION"):
        models.check_usable(_settings(tmp_path, **pair), "bedrock/x")
    models.check_usable(_settings(tmp_path, aws_region="eu-west-1", **pair), "bedrock/x")


def test_gemini_api_key_is_the_older_name_of_google_api_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "older")
    settings = _settings(tmp_path)
    assert settings.google_api_key is not None
    assert settings.google_api_key.get_secret_value() == "older"
    monkeypatch.setenv("GOOGLE_API_KEY", "newer")
    assert _settings(tmp_path).google_api_key.get_secret_value() == "newer"  # type: ignore[union-attr]


def test_the_demo_model_needs_nothing_and_only_its_own_names(tmp_path: Path) -> None:
    models.check_usable(_settings(tmp_path), "demo/echo")
    with pytest.raises(InvalidInput, match=r"Unknown demo model 'demo/nope' \(known: demo/echo\)"):
        models.check_usable(_settings(tmp_path), "demo/nope")


# --- what endpoints serve --------------------------------------------------------------------


def test_the_listing_has_what_the_endpoint_serves_asked_with_the_key_and_cached(
    tmp_path: Path, model_server: ModelServer
) -> None:
    model_server.script("served-by-the-stand-in", [Text("hi")])
    settings = _settings(
        tmp_path, openai_api_key="listing-key", openai_base_url=model_server.base_url
    )
    before = len(model_server.models_listed())
    listed, providers = asyncio.run(models.usable_models(settings))
    by_id = {m["id"]: m for m in listed}
    served = by_id["openai/served-by-the-stand-in"]
    assert served == {
        "id": "openai/served-by-the-stand-in", "provider": "openai", "available": True,
        "default": False, "served": True, "demo": False, "description": None,
    }  # fmt: skip
    assert by_id["openai/gpt-5.4"]["served"] is False  # the examples stay
    assert by_id["openai/gpt-5.4"]["default"] is True
    demo = by_id["demo/echo"]
    assert demo["available"] is True and demo["demo"] is True and "Demo" in str(demo["description"])
    assert by_id["anthropic/claude-haiku-4.5"]["available"] is False
    openai = next(p for p in providers if p["name"] == "openai")
    assert openai["lists_models"] is True
    assert openai["reachable"] is True and openai["error"] is None
    anthropic = next(p for p in providers if p["name"] == "anthropic")
    assert anthropic["configured"] is False and anthropic["missing"] == "ANTHROPIC_API_KEY"
    assert model_server.models_listed()[before:] == ["Bearer listing-key"]

    asyncio.run(models.usable_models(settings))  # within the TTL: not asked again
    assert len(model_server.models_listed()) == before + 1


def test_an_unreachable_endpoint_is_reported_and_the_listing_still_answers(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path, openai_api_key="k", openai_base_url=_closed_port_url())
    listed, providers = asyncio.run(models.usable_models(settings))
    assert "openai/gpt-5.4" in {m["id"] for m in listed}
    openai = next(p for p in providers if p["name"] == "openai")
    assert openai["reachable"] is False
    assert str(openai["error"]).startswith("unreachable: ")


def test_an_endpoint_that_refuses_the_key_says_why() -> None:
    with run_model_server() as server:
        server.fail_models(Fail(401, "Incorrect API key provided"))
        url = f"{server.base_url}/models"
        result = asyncio.run(served_models.served(url, "bad", 60))
    assert result == served_models.Served((), "HTTP 401: Incorrect API key provided")


# --- model errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "message", "line"),
    [
        (401, "Incorrect API key", "openai: 401 Unauthorized — Incorrect API key"),
        (429, "Rate limit reached", "openai: 429 Too Many Requests — Rate limit reached"),
        (500, "It broke", "openai: 500 Internal Server Error — It broke"),
    ],
)  # fmt: skip
def test_an_upstream_error_is_one_readable_line(
    tmp_path: Path, model_server: ModelServer, status: int, message: str, line: str
) -> None:
    """Against the stand-in over HTTP: the OpenAI SDK's error, pydantic-ai's ModelHTTPError,
    then the line (the SDK retries 429 and 500 twice first; each retry gets the same)."""
    name = f"fails-{status}"
    model_server.script(name, [Fail(status, message)])
    settings = _settings(tmp_path, openai_api_key="k", openai_base_url=model_server.base_url)

    async def run() -> BaseException:
        agent = Agent(models.build_model(settings, f"openai/{name}"))
        with pytest.raises(ModelHTTPError) as caught:
            await agent.run("hi")
        return caught.value

    err = asyncio.run(run())
    assert "body:" in str(err)  # pydantic-ai's own text is a repr
    assert model_errors.describe(err, "openai") == line


def test_other_providers_bodies_and_failures_read_the_same() -> None:
    anthropic = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert (
        model_errors.describe(ModelHTTPError(529, "claude", anthropic), "anthropic")
        == "anthropic: 529 — Overloaded"
    )
    google = {"error": {"code": 403, "message": "API key not valid.", "status": "DENIED"}}
    assert (
        model_errors.describe(ModelHTTPError(403, "gemini", google), "google")
        == "google: 403 Forbidden — API key not valid."
    )
    mistral = '{"object":"error","message":"Unauthorized","type":"invalid_request_error"}'
    assert (
        model_errors.describe(ModelHTTPError(401, "m", mistral), "mistral")
        == "mistral: 401 Unauthorized — Unauthorized"
    )
    assert model_errors.describe(ModelHTTPError(502, "m", None), "groq") == "groq: 502 Bad Gateway"
    refused = ModelConnectionError("gpt", "Connection error.", phase="connect")
    assert model_errors.describe(refused, "openai") == (
        "openai: could not reach the model — Connection error."
    )
    assert model_errors.describe(UserError("not a model's"), "openai") is None
    assert model_errors.describe(ValueError("x"), "openai") is None


def test_a_failed_turn_shows_the_line_in_the_stream_and_the_run(agents: AgentsFactory) -> None:
    h = agents()
    model = h.script([Fail(401, "Incorrect API key provided: sk-***")])
    created = h.new_session()
    sid, chat_id = created["session"]["id"], created["chat"]["id"]
    chunks, headers = h.turn(sid, chat_id, "hi", model=model)
    check_protocol(chunks)
    line = "openai: 401 Unauthorized — Incorrect API key provided: sk-***"
    assert [c["errorText"] for c in chunks if c["type"] == "error"] == [line]
    run = h.run(headers["x-workflow-run-id"])
    assert run["status"] == "failed" and run["error"] == line


# --- the account's default model -------------------------------------------------------------


def test_the_account_default_model_is_set_used_marked_and_cleared(agents: AgentsFactory) -> None:
    h = agents()
    headers = h.account.headers
    r = h.client.get("/api/account/default-model", headers=headers)
    assert r.json() == {"modelId": h.settings.default_model, "source": "operator"}

    for bad, error in (
        ("nope", "Invalid model id 'nope': expected 'provider/model'"),
        ("mystery/m1", "Unknown model provider 'mystery'"),
        ("anthropic/claude-haiku-4.5", "set ANTHROPIC_API_KEY"),
    ):
        r = h.client.put("/api/account/default-model", json={"modelId": bad}, headers=headers)
        assert r.status_code == 400 and error in r.json()["error"], r.text
    r = h.client.put("/api/account/default-model", json={"model": "demo/echo"}, headers=headers)
    assert r.status_code == 400
    assert h.client.get("/api/account/default-model", headers=headers).json()["source"] == (
        "operator"
    )  # nothing stored by a refusal

    r = h.client.put("/api/account/default-model", json={"modelId": "demo/echo"}, headers=headers)
    assert r.status_code == 200 and r.json() == {"modelId": "demo/echo", "source": "account"}
    listing = h.client.get("/api/models", headers=headers).json()
    assert listing["defaultModelId"] == "demo/echo"
    assert [m["id"] for m in listing["models"] if m["default"]] == ["demo/echo"]

    # A turn that names no model runs on the account's default.
    created = h.new_session()
    sid, chat_id = created["session"]["id"], created["chat"]["id"]
    chats = h.client.get(f"/api/sessions/{sid}/chats", headers=headers).json()
    assert chats["defaultModelId"] == "demo/echo"
    chunks, turn_headers = h.turn(sid, chat_id, "default please")
    assert h.run(turn_headers["x-workflow-run-id"])["model"] == "demo/echo"
    assert text_of(chunks).startswith("[demo model]")

    # Another account keeps the operator's.
    from tests.conftest import make_account

    other = make_account(h.backend.db, "other")
    r = h.client.get("/api/account/default-model", headers=other.headers)
    assert r.json()["source"] == "operator"

    assert h.client.delete("/api/account/default-model", headers=headers).status_code == 204
    r = h.client.delete("/api/account/default-model", headers=headers)
    assert r.status_code == 404
    assert r.json()["error"] == "No default model is set for this account"
    assert h.client.get("/api/account/default-model", headers=headers).json() == {
        "modelId": h.settings.default_model, "source": "operator",
    }  # fmt: skip


# --- the demo model --------------------------------------------------------------------------


def test_the_demo_model_writes_a_file_runs_it_and_says_what_it_printed(
    agents: AgentsFactory,
) -> None:
    h = agents(openai_api_key=None, openai_base_url=None)  # no key anywhere
    listing = h.client.get("/api/models", headers=h.account.headers).json()
    demo = next(m for m in listing["models"] if m["id"] == "demo/echo")
    assert demo["available"] is True and demo["demo"] is True
    created = h.new_session()
    sid, chat_id = created["session"]["id"], created["chat"]["id"]
    prompt = "Say hello to the world"
    chunks, headers = h.turn(sid, chat_id, prompt, model="demo/echo")
    check_protocol(chunks)

    kinds = [c["type"] for c in chunks]
    assert "tool-input-delta" in kinds  # the arguments streamed in pieces
    starts = [c["toolName"] for c in chunks if c["type"] == "tool-input-start"]
    assert starts == ["write", "bash"]
    outputs = tool_outputs(chunks)
    ran = next(o for k, o in outputs.items() if k.endswith("_bash"))
    assert ran["type"] == "tool-output-available"
    assert ran["output"]["exitCode"] == 0
    assert "Hello from hello.py, written by the demo model!" in ran["output"]["stdout"]
    assert "Your prompt has 5 words and 22 characters." in ran["output"]["stdout"]
    reply = text_of(chunks)
    assert reply.startswith("[demo model] I wrote hello.py with the write tool")
    assert "Backwards: dlrow eht ot olleh yaS" in reply

    run = h.run(headers["x-workflow-run-id"])
    assert run["status"] == "completed" and run["toolCalls"] == 2 and run["model"] == "demo/echo"
    r = h.client.get(
        f"/api/sessions/{sid}/files/content", params={"path": "hello.py"},
        headers=h.account.headers,
    )  # fmt: skip
    assert r.status_code == 200 and "Say hello to the world" in r.json()["content"]

    # A second turn in the same chat: fresh tool-call ids, the same loop.
    chunks, _ = h.turn(sid, chat_id, "again", model="demo/echo")
    check_protocol(chunks)
    assert "Your prompt has 1 words" in text_of(chunks)
    assert not set(tool_outputs(chunks)) & set(outputs)


def test_the_demo_model_streams_its_reply_in_pieces() -> None:
    """As a model does; the turn's stream may join pieces that arrive together."""
    from pydantic_ai.messages import ModelRequest, UserPromptPart
    from pydantic_ai.models.function import AgentInfo

    from agent_sessions.agent import demo_model

    async def pieces() -> list[object]:
        info = AgentInfo(
            function_tools=[], allow_text_output=True, output_tools=[], model_settings=None,
            model_request_parameters=None, instructions=None,  # type: ignore[arg-type]
        )  # fmt: skip
        messages = [ModelRequest(parts=[UserPromptPart("a title please")])]
        return [p async for p in demo_model._stream(messages, info)]

    got = asyncio.run(pieces())
    assert "".join(str(p) for p in got) == "Demo change [demo model]" and len(got) == 4
