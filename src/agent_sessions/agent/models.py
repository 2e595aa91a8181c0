"""Chat model ids (``provider/model``) → pydantic-ai models, and which ones are usable.

A model whose provider has no credentials is refused before a turn starts (architecture.md, Agent
turns), with the name of the missing variable, rather than failing inside the turn after the user
waited.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

import httpx2
from pydantic import SecretStr
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_ai.tools import ToolDefinition

from agent_sessions.agent import served_models
from agent_sessions.exceptions import InvalidInput
from agent_sessions.heap import freeze_late_imports
from agent_sessions.settings import Settings
from agent_sessions.store import accounts
from agent_sessions.store.reads import Reader


@dataclass(frozen=True)
class ProviderSpec:
    """One model provider: what it needs, what to show, how to build its models.

    ``PROVIDERS`` below is the one place that knows the providers; settings only hold the
    variables they read.
    """

    name: str
    key_variable: str | None
    """What a refusal tells the operator to set; None: the provider needs nothing."""
    examples: tuple[str, ...]
    build: Callable[[Settings, str, httpx2.AsyncClient | None], Model]
    credentials: Callable[[Settings], str | None]
    """The credential the provider uses (a key, or a marker), None when it is not configured."""
    module: str | None = None
    """The pydantic-ai module that ``warm_up`` imports ahead of the first turn."""
    models_url: Callable[[Settings], str] | None = None
    """An OpenAI-style ``GET …/models`` that lists what the provider serves (with the key)."""
    description: str | None = None
    demo: bool = False
    http_client: bool = True
    """Whether ``build`` takes the model's HTTP client (Groq's SDK, boto3 and the demo don't)."""


def _key(field: str) -> Callable[[Settings], str | None]:
    def read(settings: Settings) -> str | None:
        secret: SecretStr | None = getattr(settings, field)
        return secret.get_secret_value() if secret is not None else None

    return read


def _aws_credentials(settings: Settings) -> str | None:
    """Bedrock's credential: a Bedrock API key, or an access key pair, both with a region."""
    if settings.aws_region is None:
        return None
    if settings.aws_bearer_token_bedrock is not None:
        return settings.aws_bearer_token_bedrock.get_secret_value()
    if settings.aws_access_key_id and settings.aws_secret_access_key is not None:
        return settings.aws_access_key_id
    return None


def _openai(settings: Settings, name: str, client: httpx2.AsyncClient | None) -> Model:
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    from agent_sessions.agent.openai_client import DirectChatOpenAI

    class OpenAIModel(CachedToolSchemas, OpenAIChatModel):
        pass

    sdk = DirectChatOpenAI(
        api_key=_key("openai_api_key")(settings),
        base_url=settings.openai_base_url,
        http_client=client,
    )
    return OpenAIModel(name, provider=OpenAIProvider(openai_client=sdk))


def _anthropic(settings: Settings, name: str, client: httpx2.AsyncClient | None) -> Model:
    from pydantic_ai.models.anthropic import AnthropicModel
    from pydantic_ai.providers.anthropic import AnthropicProvider

    class ClaudeModel(CachedToolSchemas, AnthropicModel):
        pass

    provider = AnthropicProvider(
        api_key=_key("anthropic_api_key")(settings),
        base_url=settings.anthropic_base_url,
        http_client=client,
    )
    return ClaudeModel(name, provider=provider)


def _google(settings: Settings, name: str, client: httpx2.AsyncClient | None) -> Model:
    from pydantic_ai.models.google import GoogleModel
    from pydantic_ai.providers.google import GoogleProvider

    class GeminiModel(CachedToolSchemas, GoogleModel):
        pass

    key = _key("google_api_key")(settings)
    return GeminiModel(name, provider=GoogleProvider(api_key=key, http_client=client))


def _openrouter(settings: Settings, name: str, client: httpx2.AsyncClient | None) -> Model:
    from pydantic_ai.models.openrouter import OpenRouterModel
    from pydantic_ai.providers.openrouter import OpenRouterProvider

    class RoutedModel(CachedToolSchemas, OpenRouterModel):
        pass

    key = _key("openrouter_api_key")(settings)
    return RoutedModel(name, provider=OpenRouterProvider(api_key=key, http_client=client))


def _groq(settings: Settings, name: str, client: httpx2.AsyncClient | None) -> Model:
    from pydantic_ai.models.groq import GroqModel
    from pydantic_ai.providers.groq import GroqProvider

    class FastModel(CachedToolSchemas, GroqModel):
        pass

    # Groq's SDK takes only its own (httpx) client: the provider makes one, per model and loop.
    return FastModel(name, provider=GroqProvider(api_key=_key("groq_api_key")(settings)))


def _mistral(settings: Settings, name: str, client: httpx2.AsyncClient | None) -> Model:
    from pydantic_ai.models.mistral import MistralModel
    from pydantic_ai.providers.mistral import MistralProvider

    class WindModel(CachedToolSchemas, MistralModel):
        pass

    key = _key("mistral_api_key")(settings)
    return WindModel(name, provider=MistralProvider(api_key=key, http_client=client))


def _bedrock(settings: Settings, name: str, client: httpx2.AsyncClient | None) -> Model:
    from pydantic_ai.models.bedrock import BedrockConverseModel
    from pydantic_ai.providers.bedrock import BedrockProvider

    class AwsModel(CachedToolSchemas, BedrockConverseModel):
        pass

    region = settings.aws_region
    if settings.aws_bearer_token_bedrock is not None:
        token = settings.aws_bearer_token_bedrock.get_secret_value()
        provider = BedrockProvider(api_key=token, region_name=region)
    else:
        secret, session = settings.aws_secret_access_key, settings.aws_session_token
        provider = BedrockProvider(
            aws_access_key_id=settings.aws_access_key_id,
            aws_secret_access_key=secret.get_secret_value() if secret else None,
            aws_session_token=session.get_secret_value() if session else None,
            region_name=region,
        )
    return AwsModel(name, provider=provider)


def _demo(settings: Settings, name: str, client: httpx2.AsyncClient | None) -> Model:
    from agent_sessions.agent import demo_model

    return demo_model.build(name)


def _openai_models_url(settings: Settings) -> str:
    return (settings.openai_base_url or "https://api.openai.com/v1").rstrip("/") + "/models"


PROVIDERS: dict[str, ProviderSpec] = {
    spec.name: spec
    for spec in (
        ProviderSpec(
            "openai", "OPENAI_API_KEY", ("gpt-5.4", "gpt-5.4-mini"), _openai,
            _key("openai_api_key"), "pydantic_ai.models.openai", _openai_models_url,
        ),
        ProviderSpec(
            "anthropic", "ANTHROPIC_API_KEY", ("claude-sonnet-4.6", "claude-haiku-4.5"),
            _anthropic, _key("anthropic_api_key"), "pydantic_ai.models.anthropic",
        ),
        ProviderSpec(
            "google", "GOOGLE_API_KEY", ("gemini-3.1-pro-preview", "gemini-3.1-flash-lite"),
            _google, _key("google_api_key"), "pydantic_ai.models.google",
        ),
        ProviderSpec(
            "openrouter", "OPENROUTER_API_KEY",
            ("anthropic/claude-sonnet-4.6", "openai/gpt-5.4"), _openrouter,
            _key("openrouter_api_key"), "pydantic_ai.models.openrouter",
            lambda _: "https://openrouter.ai/api/v1/models",
        ),
        ProviderSpec(
            "groq", "GROQ_API_KEY", ("openai/gpt-oss-120b", "qwen/qwen3.8-27b"), _groq,
            _key("groq_api_key"), "pydantic_ai.models.groq",
            lambda _: "https://api.groq.com/openai/v1/models", http_client=False,
        ),
        ProviderSpec(
            "mistral", "MISTRAL_API_KEY", ("mistral-large-latest", "codestral-latest"),
            _mistral, _key("mistral_api_key"), "pydantic_ai.models.mistral",
            lambda _: "https://api.mistral.ai/v1/models",
        ),
        ProviderSpec(
            "bedrock",
            "AWS_REGION and AWS_BEARER_TOKEN_BEDROCK (or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY)",
            ("global.anthropic.claude-sonnet-4-6", "us.amazon.nova-pro-v1:0"), _bedrock,
            _aws_credentials, "pydantic_ai.models.bedrock", http_client=False,
        ),
        ProviderSpec(
            "demo", None, ("echo",), _demo, lambda _: "", None,
            description="Demo model, not an LLM: writes hello.py from your prompt, runs it "
            "with bash and reports the output. Needs no key.",
            demo=True, http_client=False,
        ),
    )
}  # fmt: skip

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
    provider, name = split(model_id)
    spec = PROVIDERS.get(provider)
    if spec is None:
        known = ", ".join(sorted(PROVIDERS))
        raise InvalidInput(f"Unknown model provider {provider!r} (known: {known})")
    if spec.demo and name not in spec.examples:
        known = ", ".join(f"{provider}/{n}" for n in spec.examples)
        raise InvalidInput(f"Unknown demo model {model_id!r} (known: {known})")
    if spec.credentials(settings) is None:
        raise InvalidInput(f"Model {model_id} is not configured: set {spec.key_variable}")


def default_model_for(db: Reader, settings: Settings, account_id: str) -> str:
    """The model of the account's new chats and of its turns that name none: its own default
    (``PUT /api/account/default-model``), else the operator's ``DEFAULT_MODEL``. One indexed
    read; ``db`` is an ORM session, a connection or ``Database.query_call``'s reader."""
    return effective_default(settings, accounts.default_model_of(db, account_id))


def effective_default(settings: Settings, account_default: str | None) -> str:
    """The account's default when it set one, else the operator's."""
    return account_default or settings.default_model


async def usable_models(
    settings: Settings, default_id: str | None = None
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """What ``GET /api/models`` lists: each provider's examples and, for a configured
    OpenAI-compatible endpoint, what it serves; the default; registered models. Also each
    provider's state (configured, what to set, whether its model list answered).

    ``default_id`` is the caller's default (the operator's when None). Listing never fails:
    an endpoint that does not answer is reported as such, its examples still listed.
    """
    default_id = default_id or settings.default_model
    configured = {name: spec.credentials(settings) for name, spec in PROVIDERS.items()}
    fetches = {
        name: served_models.served(spec.models_url(settings), key,
                                   settings.served_models_ttl_seconds)
        for name, spec in PROVIDERS.items()
        if spec.models_url is not None and (key := configured[name]) is not None
    }  # fmt: skip
    served = dict(zip(fetches, await asyncio.gather(*fetches.values()), strict=True))
    out: list[dict[str, object]] = []
    seen: set[str] = set()

    def add(model_id: str, provider: str, available: bool, served_here: bool) -> None:
        if model_id in seen:
            return
        seen.add(model_id)
        spec = PROVIDERS.get(provider)
        out.append({
            "id": model_id, "provider": provider, "available": available,
            "default": model_id == default_id, "served": served_here,
            "demo": spec is not None and spec.demo,
            "description": spec.description if spec is not None else None,
        })  # fmt: skip

    for name, spec in PROVIDERS.items():
        for model in spec.examples:
            add(f"{name}/{model}", name, configured[name] is not None, False)
        listed = served.get(name)
        for model in listed.names if listed is not None else ():
            add(f"{name}/{model}", name, True, True)
    for extra in (default_id, settings.default_model, *_in_process):
        provider, _ = split(extra)
        known = PROVIDERS.get(provider)
        available = extra in _in_process or (
            known is not None and known.credentials(settings) is not None
        )
        add(extra, provider, available, False)
    providers: list[dict[str, object]] = []
    for name, spec in PROVIDERS.items():
        listed = served.get(name)
        providers.append({
            "name": name, "configured": configured[name] is not None,
            "missing": None if configured[name] is not None else spec.key_variable,
            "lists_models": listed is not None,
            "reachable": None if listed is None else listed.error is None,
            "error": None if listed is None else listed.error,
            "demo": spec.demo,
        })  # fmt: skip
    return out, providers


def warm_up(settings: Settings) -> None:
    """Import the configured providers' model modules in the background: the SDKs take
    seconds to import, which the first turn would otherwise wait for."""

    def load() -> None:
        for spec in PROVIDERS.values():
            if spec.module is not None and spec.credentials(settings) is not None:
                importlib.import_module(spec.module)
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
    spec = PROVIDERS[provider]
    loop = asyncio.get_running_loop()
    where = (spec.credentials(settings), settings.openai_base_url, settings.anthropic_base_url)
    key = (id(loop), model_id, *where)
    built = _built.get(key)
    if built is None or built[0] is not loop:
        client = None
        if spec.http_client:
            timeout = httpx2.Timeout(MODEL_TIMEOUT_SECONDS, connect=10.0)
            client = httpx2.AsyncClient(timeout=timeout)
        built = (loop, spec.build(settings, name, client))
        _built[key] = built
    return built[1]


_built: dict[tuple[object, ...], tuple[asyncio.AbstractEventLoop, Model]] = {}


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
