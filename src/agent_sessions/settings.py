"""Service settings, read from the environment (prefix ``AGENT_SESSIONS_``).

One flat class so ``agent-sessions`` and the tests can build a complete configuration from a
dict; each concern keeps its fields together below. Invalid values stop start-up with one line
naming the variable (see :func:`load_settings`).
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Iterable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from agent_sessions.approval_rules import RuleList

ENV_PREFIX = "AGENT_SESSIONS_"
WORKER_TURNS_PER_CPU = 32
WORKER_TURNS_MAX = 256


def default_worker_concurrency() -> int:
    """``AGENT_WORKER_CONCURRENCY`` when unset: 32 turns per CPU this process may run on, at
    most 256.

    A turn spends nearly all its time waiting on the model; its CPU is a fixed part plus a
    little per chunk streamed (issue 16 measured ~150 ms a turn for a 2 s reply before the
    fixed costs were cut), so one CPU keeps up with dozens of turns of realistic length. A
    busy CPU slows every stream a little; a turn the limit holds back waits a whole reply for
    its first token, which the old default, 8, did to the ninth chat of a box while its CPU
    idled. The cap keeps a large box from starting more turns than its database pool and
    sandboxes are sized for; set it lower where turns run heavy tools on the same box.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(WORKER_TURNS_PER_CPU * (cpus or 1), WORKER_TURNS_MAX)


class ModelPrice(BaseModel):
    """A model's price in US dollars per million tokens (``MODEL_PRICES``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0, alias="cachedInput")
    """Input read from the provider's cache; unset, the input price."""
    cache_write: float | None = Field(default=None, ge=0, alias="cacheWrite")
    """Input written to the provider's cache; unset, the input price."""


class Settings(BaseSettings):
    """Everything the service reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", frozen=True, populate_by_name=True
    )

    # --- storage ---------------------------------------------------------------------------
    data_dir: Path = Path("./.agent-sessions")
    """Root of everything the embedded defaults keep on disk (database, snapshots, workspaces)."""
    database_url: str | None = None
    """SQLAlchemy URL; default SQLite in ``data_dir``. ``postgresql://…`` to scale out."""

    # --- HTTP --------------------------------------------------------------------------------
    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    """Requests with a larger body are refused with 413 before they are parsed."""
    max_attachment_bytes: int = Field(default=512 << 10, ge=0)
    """Largest file (decoded) a user message may carry inline as a ``data:`` URL. As base64 it
    takes 4/3 of that in the body, which ``max_body_bytes`` bounds too: 512 KiB is 683 KiB of
    base64, room left in the default 1 MiB body for the rest of the request."""
    cors_origins: list[str] = ["*"]
    """Origins allowed by CORS. Credentials travel in headers, never cookies, so ``*`` is safe."""

    # --- observability (README, Operating) ----------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Lowest level logged, by the service and the libraries it runs (DBOS, uvicorn)."""
    log_format: Literal["text", "json"] = "text"
    """``json``: one JSON object a line (``ts``, ``level``, ``logger``, ``msg`` and the
    ``session_id``, ``chat_id``, ``run_id`` known where it was written)."""
    access_log: bool = False
    """One INFO line per HTTP request (method, path, status, milliseconds); off by default."""
    metrics_enabled: bool = True
    """Serve Prometheus metrics at ``GET /metrics`` (404 when off)."""
    metrics_token: SecretStr | None = None
    """When set, ``/metrics`` answers only ``Authorization: Bearer <token>`` (401 otherwise).
    Unset, it needs no credentials: bind it to a private network or set this."""
    otlp_endpoint: str | None = None
    """OTLP/HTTP collector base URL (``http://collector:4318``): traces go to its
    ``/v1/traces``. Unset (the default), nothing is traced and tracing costs nothing."""
    otel_service_name: str = "agent-sessions"
    """The ``service.name`` of the traces."""

    # --- auth --------------------------------------------------------------------------------
    jwt_secret: SecretStr | None = None
    """HS256 shared secret for Bearer JWTs (mutually exclusive with a JWKS)."""
    jwt_jwks_url: str | None = None
    """JWKS URL for asymmetric Bearer JWTs."""
    jwt_jwks_file: Path | None = None
    """JWKS file for asymmetric Bearer JWTs (offline deployments and tests)."""
    jwt_algorithm: Literal["HS256", "RS256", "ES256", "EdDSA"] | None = None
    """Pinned algorithm; defaults to HS256 with a secret, RS256 with a JWKS."""
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=60)
    jwt_max_lifetime_seconds: int = Field(default=24 * 3600, gt=0)
    """Tokens whose ``exp - iat`` exceeds this are refused."""

    # --- sandboxes ---------------------------------------------------------------------------
    sandbox_provider: Literal["local", "vercel"] = "local"
    sandbox_network: Literal["off", "on"] = "off"
    sandbox_uid_base: int = Field(default=200_000, ge=1000)
    """First host uid handed to sandboxes when the service runs as root."""
    sandbox_uid_count: int = Field(default=50_000, ge=1)
    sandbox_cgroup_root: Path | None = None
    """A delegated cgroup v2 directory for per-sandbox memory/pids limits (else rlimits only)."""
    sandbox_memory_max_bytes: int = Field(default=2 << 30, ge=16 << 20)
    sandbox_pids_max: int = Field(default=512, ge=16)
    sandbox_tmpfs_bytes: int = Field(default=256 << 20, ge=1 << 20)
    """Size cap of each sandbox's RAM-backed ``/tmp``."""
    vercel_plan: Literal["hobby", "pro", "enterprise"] = "hobby"
    """The Vercel plan of the team whose sandboxes we use: it bounds how long one sandbox
    session may run (Hobby 45 minutes; Pro and Enterprise 24 hours, Vercel's docs,
    docs/vercel-provider.md). Hobby by default: the one limit every plan accepts. A session
    past it is stopped by Vercel and resumed at the next call (files kept, processes not)."""
    vercel_api_url: str | None = None
    """Base URL of Vercel's Sandbox API; unset, the SDK's (``https://vercel.com/api``). For a
    proxy in front of it, or the labelled stand-in of it in tests."""
    sandbox_disk_bytes: int | None = Field(default=None, ge=32 << 20)
    """Size of each local workspace (an ext4 image, loop-mounted: needs root); unset, none.
    Off by default: it changes how workspaces are stored, needs root and loop devices, and
    a fitting size depends on the projects (a ``node_modules`` alone can take gigabytes)."""

    # --- snapshots ---------------------------------------------------------------------------
    snapshot_store: Literal["local", "s3"] = "local"
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_prefix: str = "snapshots/"

    # --- lifecycle ---------------------------------------------------------------------------
    executor_id: str = Field(default="local", min_length=1, max_length=64)
    """DBOS executor id: distinct for every process that shares one system database (a second
    live process with the same id is refused at start-up)."""
    advertise_url: str | None = None
    """Where the other processes reach this one's HTTP API, for the requests they forward to
    the host of a session's local sandbox (``serve`` sets it from its address when unset)."""
    host_heartbeat_seconds: float = Field(default=5.0, gt=0, le=60)
    host_dead_after_seconds: float = Field(default=20.0, gt=0, le=3600)
    """A process silent this long is taken over by a live one (docs/architecture.md,
    Scale-out)."""
    extend_seconds: int = Field(default=1200, gt=0)
    """How much ``POST …/sandbox/extend`` adds to the hard deadline."""
    idle_timeout_seconds: int = Field(default=1800, gt=0)
    hard_timeout_seconds: int = Field(default=18000, gt=0)

    # --- agent -------------------------------------------------------------------------------
    default_model: str = "openai/gpt-5.4"
    hooks_file: Path | None = None
    """The operator's hooks (Claude Code format), run on the host."""
    allow_repo_hooks: bool = False
    """Run the hooks a session's repository declares in ``.claude/settings.json``, inside its
    sandbox (never on the host). Off by default: a repository's commands then run at every
    tool call and turn of its sessions."""
    agent_step_cap: int = Field(default=200, ge=1, le=10_000)
    """Model requests one turn may make; past it the turn ends with a clear error."""
    subagent_step_cap: int = Field(default=30, ge=1, le=1000)
    agent_worker_concurrency: int = Field(
        default_factory=lambda: default_worker_concurrency(), ge=1, le=1000
    )
    """Turns one process runs at once; the rest wait, in order, in the process that accepted
    them (a crash hands them to the queue at the next start). By default 32 per CPU the
    process may use, at most 256 (:func:`default_worker_concurrency`)."""
    agent_global_concurrency: int | None = Field(default=None, ge=1)
    """Turns all processes together run at once (unbounded when unset). When set, every turn
    goes through the shared DBOS queue, the one place that counts across processes."""
    bash_timeout_seconds: int = Field(default=120, ge=1, le=3600)
    approval_rules: RuleList = []
    """Tool calls that wait for a person's approval, as JSON: ``[{"tool": "bash", "match":
    {"command": "rm -rf|git push"}}]`` (ADR 14). None by default; a chat may add its own."""
    context_windows: dict[str, int] = {}
    """Context window in tokens per model id, as JSON (``{"openai/my-model": 32000}``); wins
    over the windows listed in genai-prices' data (shipped with pydantic-ai)."""
    context_window_default: int = Field(default=128_000, ge=1)
    """The window of a model that neither ``context_windows`` nor that data lists."""
    context_compact_at: float = Field(default=0.8, gt=0, le=1)
    """Share of the window past which a turn prunes older tool outputs from what the model
    receives and, if that is not enough, summarises older turns (ADR 15)."""
    context_keep_turns: int = Field(default=2, ge=1)
    """Turns (a user message and the replies to it) a summary leaves as they are, the new one
    included."""
    context_tool_output_turns: int = Field(default=2, ge=0)
    """Turns whose tool outputs pruning leaves, the new one included."""
    model_prices: dict[str, ModelPrice] = {}
    """Prices by model id (``provider/model``), JSON: ``{"openai/gpt-5.4": {"input": 1.25,
    "output": 10, "cachedInput": 0.125}}`` in USD per million tokens. A model listed here is
    priced by it; any other by the price table pydantic-ai ships (``genai-prices``), else it
    has no price and its cost is null (``agent.pricing``)."""
    served_models_ttl_seconds: int = Field(default=300, ge=0)
    """How long ``GET /api/models`` keeps what an OpenAI-compatible endpoint said it serves
    (its ``/models``); an endpoint that did not answer is asked again after a tenth of it."""

    # --- account limits (429 with Retry-After; 0 turns a limit off) ----------------------------
    account_max_live_sandboxes: int = Field(default=20, ge=0)
    """Sessions one account may have with a live sandbox (provisioning, active, restoring or
    hibernating): creating or resuming one more is refused. Counted in the database, exact
    across processes."""
    account_max_turns: int = Field(default=16, ge=0)
    """Turns one account may have queued or running at once, over all processes (exact)."""
    account_writes_per_minute: int = Field(default=600, ge=0)
    """POST, PATCH, PUT and DELETE requests per minute and account (a token bucket holding a
    minute's worth). Counted by each process on its own: N processes let N times through."""

    # --- workspace: repositories, forge, files, skills (ADR 13) -------------------------------
    forge_base_url: str = "https://github.com"
    """Web base of the GitHub-style forge that ``repoOwner`` + ``repoName`` refer to."""
    forge_api_url: str = "https://api.github.com"
    """REST API base of that forge (pull requests)."""
    forge_token: SecretStr | None = None
    """Operator-wide forge token, used for an account that has set none of its own."""
    secret_key: SecretStr | None = None
    """Key that encrypts stored forge tokens (any string; a Fernet key is derived from it).
    Unset: a random one is created once in ``DATA_DIR/secret.key`` (0600). Losing it makes the
    stored tokens unreadable (accounts set them again); it never decrypts anything else."""
    allow_local_repos: bool = False
    """Accept ``file://`` URLs and local paths as ``cloneUrl``, and ``file://`` skill sources
    (tests only: a local path lets a caller read the service's own files). Skill directories
    listed in ``skill_sources`` need no such flag: the operator named them."""
    skill_sources: list[str] = []
    """What ``globalSkillRefs`` may name: absolute host directories (any skill under one) and
    git URL prefixes (matched on whole path segments; ``owner/repo`` means the forge's URL)."""
    git_author_name: str = "Agent Sessions"
    git_author_email: str = "agent@agent-sessions.invalid"
    clone_max_bytes: int = Field(default=2 << 30, ge=1 << 20)
    """Largest repository (its packed objects) a session may clone."""
    files_max_read_bytes: int = Field(default=8 << 20, ge=1024)
    """Largest file ``GET …/files/content`` answers (413 above)."""
    files_max_upload_bytes: int = Field(default=16 << 20, ge=1024)
    """Largest upload ``PUT …/files/content`` accepts (413 above)."""
    diff_max_bytes: int = Field(default=1 << 20, ge=4096)
    """Patch text a diff carries in all; past it, files keep their counts but lose their hunks
    and the diff is marked ``truncated``."""

    # --- model providers (their own variable names, no prefix) --------------------------------
    openai_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL")
    anthropic_api_key: SecretStr | None = Field(default=None, validation_alias="ANTHROPIC_API_KEY")
    anthropic_base_url: str | None = Field(default=None, validation_alias="ANTHROPIC_BASE_URL")
    google_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("GOOGLE_API_KEY", "GEMINI_API_KEY")
    )
    """The Gemini API's key (``GEMINI_API_KEY``, its older name, when the first is unset)."""
    openrouter_api_key: SecretStr | None = Field(
        default=None, validation_alias="OPENROUTER_API_KEY"
    )
    groq_api_key: SecretStr | None = Field(default=None, validation_alias="GROQ_API_KEY")
    mistral_api_key: SecretStr | None = Field(default=None, validation_alias="MISTRAL_API_KEY")
    aws_bearer_token_bedrock: SecretStr | None = Field(
        default=None, validation_alias="AWS_BEARER_TOKEN_BEDROCK"
    )
    """A Bedrock API key; or the usual AWS credentials below."""
    aws_access_key_id: str | None = Field(default=None, validation_alias="AWS_ACCESS_KEY_ID")
    aws_secret_access_key: SecretStr | None = Field(
        default=None, validation_alias="AWS_SECRET_ACCESS_KEY"
    )
    aws_session_token: SecretStr | None = Field(default=None, validation_alias="AWS_SESSION_TOKEN")
    aws_region: str | None = Field(
        default=None, validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION")
    )

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("sqlite", "postgresql")):
            raise ValueError("must be a sqlite:// or postgresql:// URL")
        return v

    @field_validator("context_windows")
    @classmethod
    def _positive_windows(cls, v: dict[str, int]) -> dict[str, int]:
        bad = [model for model, tokens in v.items() if tokens < 1]
        if bad:
            raise ValueError(f"a context window must be at least 1 token ({bad[0]})")
        return v

    @field_validator("default_model")
    @classmethod
    def _provider_slash_model(cls, v: str) -> str:
        provider, _, model = v.partition("/")
        if not provider or not model:
            raise ValueError("must look like 'provider/model', e.g. 'openai/gpt-5.4'")
        return v

    @field_validator("model_prices")
    @classmethod
    def _priced_model_ids(cls, v: dict[str, ModelPrice]) -> dict[str, ModelPrice]:
        for model_id in v:
            provider, _, model = model_id.partition("/")
            if not provider or not model:
                raise ValueError(f"{model_id!r}: model ids look like 'provider/model'")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.jwt_secret is not None and (self.jwt_jwks_url or self.jwt_jwks_file):
            raise ValueError("set either AGENT_SESSIONS_JWT_SECRET or a JWKS, not both")
        if self.snapshot_store == "s3" and not self.s3_bucket:
            raise ValueError("AGENT_SESSIONS_S3_BUCKET is required when SNAPSHOT_STORE=s3")
        as_base64 = -(-self.max_attachment_bytes // 3) * 4
        if "max_attachment_bytes" in self.model_fields_set and as_base64 > self.max_body_bytes:
            raise ValueError(
                f"AGENT_SESSIONS_MAX_ATTACHMENT_BYTES={self.max_attachment_bytes} is "
                f"{as_base64} bytes as base64, over AGENT_SESSIONS_MAX_BODY_BYTES="
                f"{self.max_body_bytes}: raise the body limit with it"
            )
        return self

    @cached_property
    def resolved_database_url(self) -> str:
        """The database URL with the embedded default filled in and a sync driver chosen."""
        url = self.database_url or f"sqlite:///{(self.data_dir / 'agent-sessions.db').resolve()}"
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        return url

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")


def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = [str(part) for part in first["loc"]]
    name = ENV_PREFIX + loc[0].upper() if loc else "configuration"
    msg = first["msg"].removeprefix("Value error, ")
    return f"invalid setting {name}: {msg}"


def variable_names() -> set[str]:
    """The environment variables :class:`Settings` reads: ``AGENT_SESSIONS_<FIELD>`` for every
    field (the prefixed name counts for the providers' fields too, as ``populate_by_name`` makes
    pydantic-settings read it) and the providers' own names (``OPENAI_API_KEY``)."""
    names = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
        names.update(choice for choice in choices if isinstance(choice, str))
    return names


def unknown_variables(environ: Mapping[str, str], also_read: Iterable[str] = ()) -> list[str]:
    """A warning for each ``AGENT_SESSIONS_*`` variable that nothing reads, with the closest
    name that would be read: settings ignore unknown names (``extra="ignore"``), so a misspelt
    one would otherwise leave its default in place without a word. Names are matched without
    regard to case, as pydantic-settings reads them."""
    known = {name.upper() for name in (*variable_names(), *also_read)}
    suffixes = [name.removeprefix(ENV_PREFIX) for name in known if name.startswith(ENV_PREFIX)]
    warnings = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in known:
            continue
        rest = upper.removeprefix(ENV_PREFIX)
        if rest in known:  # a provider's variable given the prefix: ..._GEMINI_API_KEY
            guess: str | None = rest
        else:
            close = difflib.get_close_matches(rest, suffixes, n=1)
            guess = ENV_PREFIX + close[0] if close else None
        hint = f" (did you mean {guess}?)" if guess else ""
        warnings.append(f"unknown variable {name} ignored{hint}")
    return warnings


def load_settings() -> Settings:
    """Read settings; on error print one line naming the variable and exit with code 2."""
    try:
        return Settings()
    except ValidationError as err:
        print(f"agent-sessions: {_describe(err)}", file=sys.stderr)
        raise SystemExit(2) from None
