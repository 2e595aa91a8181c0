"""Chat model ids (``provider/model``) → pydantic-ai models, and which ones are usable.

A model whose provider has no credentials is refused before a turn starts (DESIGN §6), with the
name of the missing variable, rather than failing inside the turn after the user waited.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, replace

import httpx2
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_ai.tools import ToolDefinition

from agent_sessions.exceptions import InvalidInput
from agent_sessions.heap import freeze_late_imports
from agent_sessions.settings import Settings


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    key_variable: str
    """The environment variable that must be set for this provider's models."""
    examples: tuple[str, ...]


PROVIDERS = {
    "openai": ProviderSpec("openai", "OPENAI_API_KEY", ("gpt-5.4", "gpt-5.4-mini")),
    "anthropic": ProviderSpec(
        "anthropic", "ANTHROPIC_API_KEY", ("claude-sonnet-4.6", "claude-haiku-4.5")
    ),
}

MODEL_TIMEOUT_SECONDS = 600.0
"""A model request (streamed) may take this long; reasoning models can think for minutes."""

_in_process: dict[str, Model] = {}
"""Models registered by code (tests with pydantic-ai's ``FunctionModel``), keyed by full id."""


def register_model(model_id: str, model: Model) -> None:
    """Make an in-process model usable under ``model_id`` (for tests and embedding)."""
    _in_process[model_id] = model


def split(model_id: str) -> tuple[str, str]:
    provider, _, name = model_id.strip().partition("/")
    if not provider or not name:
        raise InvalidInput(f"Invalid model id {model_id!r}: expected 'provider/model'")
    return provider, name


def check_usable(settings: Settings, model_id: str) -> None:
    """Raise 400 naming the missing variable when ``model_id`` cannot be used here."""
    if model_id in _in_process:
        return
    provider, _ = split(model_id)
    spec = PROVIDERS.get(provider)
    if spec is None:
        known = ", ".join(sorted(PROVIDERS))
        raise InvalidInput(f"Unknown model provider {provider!r} (known: {known})")
    if _api_key(settings, provider) is None:
        raise InvalidInput(f"Model {model_id} is not configured: set {spec.key_variable}")


def usable_models(settings: Settings) -> list[dict[str, object]]:
    """What ``GET /api/models`` lists: configured providers, the default, registered models."""
    out: list[dict[str, object]] = []
    for spec in PROVIDERS.values():
        configured = _api_key(settings, spec.name) is not None
        for name in spec.examples:
            out.append(
                {"id": f"{spec.name}/{name}", "provider": spec.name, "available": configured}
            )
    ids = {str(m["id"]) for m in out}
    for extra in (settings.default_model, *_in_process):
        if extra not in ids:
            provider, _ = split(extra)
            available = extra in _in_process or _api_key(settings, provider) is not None
            out.append({"id": extra, "provider": provider, "available": available})
            ids.add(extra)
    for m in out:
        m["default"] = m["id"] == settings.default_model
    return out


def _api_key(settings: Settings, provider: str) -> str | None:
    secret = {"openai": settings.openai_api_key, "anthropic": settings.anthropic_api_key}.get(
        provider
    )
    return secret.get_secret_value() if secret is not None else None


def warm_up(settings: Settings) -> None:
    """Import the configured providers' model modules in the background: the SDKs take
    seconds to import, which the first turn would otherwise wait for."""

    def load() -> None:
        if settings.openai_api_key is not None:
            import pydantic_ai.models.openai
        if settings.anthropic_api_key is not None:
            import pydantic_ai.models.anthropic  # noqa: F401
        freeze_late_imports()

    threading.Thread(target=load, name="import-model-providers", daemon=True).start()


def build_model(settings: Settings, model_id: str) -> Model:
    """The pydantic-ai model for ``model_id``, one per id and event loop.

    Each model gets a long-lived HTTP client: a provider that makes its own closes it when a
    request ends, and building a client (TLS context included) cost 20-50 ms a step here
    (bench/agent.py). HTTP connections belong to an event loop, hence one per loop.
    """
    if model_id in _in_process:
        return _in_process[model_id]
    check_usable(settings, model_id)
    provider, name = split(model_id)
    base_url = settings.openai_base_url if provider == "openai" else settings.anthropic_base_url
    loop = asyncio.get_running_loop()
    key = (id(loop), model_id, base_url, _api_key(settings, provider))
    built = _built.get(key)
    if built is None or built[0] is not loop:
        built = (loop, _build(provider, name, base_url, _api_key(settings, provider)))
        _built[key] = built
    return built[1]


_built: dict[tuple[int, str, str | None, str | None], tuple[asyncio.AbstractEventLoop, Model]] = {}


def _build(provider: str, name: str, base_url: str | None, api_key: str | None) -> Model:
    client = httpx2.AsyncClient(timeout=httpx2.Timeout(MODEL_TIMEOUT_SECONDS, connect=10.0))
    if provider == "openai":
        from pydantic_ai.models.openai import OpenAIChatModel
        from pydantic_ai.providers.openai import OpenAIProvider

        from agent_sessions.agent.openai_client import DirectChatOpenAI

        class OpenAIModel(CachedToolSchemas, OpenAIChatModel):
            pass

        sdk = DirectChatOpenAI(api_key=api_key, base_url=base_url, http_client=client)
        return OpenAIModel(name, provider=OpenAIProvider(openai_client=sdk))
    from pydantic_ai.models.anthropic import AnthropicModel
    from pydantic_ai.providers.anthropic import AnthropicProvider

    class ClaudeModel(CachedToolSchemas, AnthropicModel):
        pass

    return ClaudeModel(
        name,
        provider=AnthropicProvider(api_key=api_key, base_url=base_url, http_client=client),
    )


class CachedToolSchemas(Model):
    """A model that transforms each tool's JSON schema for its provider once, not per request.

    pydantic-ai walks every tool's schema with the profile's transformer before each request
    (5% of a turn's CPU here, py-spy on bench/agent.py), and hands over a fresh copy of the
    same schemas each time. The result depends only on the schema and ``strict``, so it is kept
    by the schema's canonical JSON (a C-speed dump, several times cheaper than the walk); other
    fields of the tool definition come from each request's own.
    """

    _MAX_CACHED = 256

    def customize_request_parameters(
        self, model_request_parameters: ModelRequestParameters
    ) -> ModelRequestParameters:
        params = model_request_parameters
        if not self.profile.get("json_schema_transformer") or params.output_object is not None:
            return super().customize_request_parameters(params)
        return replace(
            params,
            function_tools=[self._customized(t) for t in params.function_tools],
            output_tools=[self._customized(t) for t in params.output_tools],
        )

    def _customized(self, tool: ToolDefinition) -> ToolDefinition:
        # Made on first use: the providers' models are dataclasses with an __init__ of their own.
        cache: dict[tuple[str, bool | None], ToolDefinition]
        cache = self.__dict__.setdefault("_tool_schema_cache", {})
        try:
            key = (json.dumps(tool.parameters_json_schema, sort_keys=True), tool.strict)
        except (TypeError, ValueError):  # not plain JSON: no cache
            alone = ModelRequestParameters(function_tools=[tool])
            return super().customize_request_parameters(alone).function_tools[0]
        done = cache.get(key)
        if done is None:
            alone = ModelRequestParameters(function_tools=[tool])
            done = super().customize_request_parameters(alone).function_tools[0]
            if len(cache) >= self._MAX_CACHED:
                cache.clear()
            cache[key] = done
        return replace(tool, parameters_json_schema=done.parameters_json_schema, strict=done.strict)
