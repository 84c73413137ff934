"""The LiteLLM dialect: LiteLLM proxy config files, as LiteLLM users already write them, read
into the gateway's configuration (``llmpulse.config.gateway``).

Sections read (names and semantics as LiteLLM documents them: docs.litellm.ai/docs/proxy/configs
and /proxy/config_settings, /routing, /proxy/reliability, /wildcard_routing; and its source,
``litellm/router_utils/pattern_match_deployments.py``, ``litellm/constants.py``):

- ``model_list``: deployments grouped by ``model_name``. ``litellm_params.model`` is
  ``provider/name`` (the provider prefixes are mapped to llmpulse's presets below); ``api_key``,
  ``api_base``, ``api_version`` and, as LiteLLM's params type reads them as numbers or a flag,
  ``rpm``, ``tpm``, ``timeout``, ``stream_timeout``, ``input_cost_per_token``,
  ``output_cost_per_token`` and ``drop_params`` may be ``os.environ/NAME``; ``rpm``/``tpm``
  (also accepted at the deployment level and in ``model_info``, as LiteLLM reads them),
  ``order`` (lower first, as LiteLLM's order filter; also in ``model_info``), ``weight``,
  ``timeout``, ``stream_timeout``, ``max_tokens``/``temperature`` defaults,
  ``input_cost_per_token``/``output_cost_per_token``, and ``model_info`` (``id``,
  ``base_model``, ``max_input_tokens`` else ``max_tokens`` as the context window).
- Wildcards: ``model_name: "fb-*"`` with ``model: openai/fb-*`` serves any ``fb-...`` model,
  each ``*`` of the model taking the text the ``*`` of the name matched (LiteLLM's rule). The
  most specific pattern (longest) wins and exact names win over patterns. Unlike LiteLLM's
  ``re.match``, the whole requested name must match.
- ``router_settings``: ``routing_strategy``, ``num_retries``, ``timeout``, ``stream_timeout``,
  ``retry_after``, ``allowed_fails``, ``cooldown_time`` (LiteLLM's defaults 3 and 5 s),
  ``disable_cooldowns``, ``fallbacks``, ``context_window_fallbacks``,
  ``content_policy_fallbacks``, ``default_fallbacks``, ``max_fallbacks`` (5),
  ``enable_pre_call_checks``, ``model_group_alias``, and ``redis_url`` or ``redis_host``/
  ``redis_port``/``redis_password`` (routing state shared between replicas). The same fallback
  and retry keys are also read from ``litellm_settings``, ``router_settings`` winning, as in
  LiteLLM.
- ``general_settings.master_key``: a key clients use to call the gateway;
  ``general_settings.max_request_size_mb``: the largest request body accepted (32).
- ``gateway``: llmpulse's own settings (listen address, gateway keys, limits, monitoring,
  ``redis_url``, ``drills``: the failover drills' schedule).

What LiteLLM accepts loads too, each concern said in one warning line (``GatewayConfig.warnings``,
naming key paths, never a value):

- Keys written in the file (``api_key: sk-1234``, a credential header in ``extra_headers``,
  ``general_settings.master_key``, ``redis_password``) are used as written and are secrets like
  referenced ones. llmpulse's own sections keep the stricter rule (references only).
- ``bedrock/`` (and ``bedrock/converse/``, ``bedrock/invoke/``: all served through the Converse
  API) is signed with AWS credentials: ``aws_access_key_id``/``aws_secret_access_key``/
  ``aws_session_token`` or ``aws_profile_name`` when given (usually ``os.environ/...``), else
  the AWS SDKs' standard chain; its region is ``aws_region_name``, else a model ARN's, else
  ``AWS_REGION_NAME``, ``AWS_REGION``, ``AWS_DEFAULT_REGION``, else LiteLLM's default
  (us-west-2); its endpoint ``api_base`` or ``aws_bedrock_runtime_endpoint``. LiteLLM's role
  assumption (``aws_role_name``, web identity, ...) is not implemented: such a deployment is
  skipped, said in one warning.
- A deployment of a provider llmpulse does not speak yet (``sagemaker/``, ``cohere/``, ...) or
  that is not a chat model (``model_info.mode: embedding``, ...) is skipped, its settings unread
  beyond ``model_name``, ``litellm_params.model`` and ``model_info.mode``; only a file with
  nothing left to serve is refused (``GatewayConfig.nothing_to_serve``). A fallback or alias
  naming only skipped deployments is dropped (a key's ``models`` entry is kept, allowing nothing
  served); one naming nothing at all is still a typo, refused.
- An ``azure/`` deployment LiteLLM would authenticate with Microsoft Entra ID (``azure_ad_token``,
  a client secret, a username and password, ``enable_azure_ad_token_refresh``: ``_ENTRA_ID``)
  is skipped too, llmpulse not implementing it, unless LiteLLM would use its key.
- ``azure/`` without ``api_version`` (nor ``AZURE_API_VERSION``) uses LiteLLM's default.
- ``vertex_ai/`` (Gemini, and Claude by its ``claude-`` name): ``vertex_project``,
  ``vertex_location`` (LiteLLM's default us-central1) and ``vertex_credentials`` (a
  credentials file's path, else that JSON itself as text or a mapping, as LiteLLM reads it;
  none: application default credentials), also spelled ``vertex_ai_*`` or taken from
  ``VERTEXAI_PROJECT``/``VERTEXAI_LOCATION``/``VERTEXAI_CREDENTIALS`` as LiteLLM does. Without
  a project, the credentials' ``project_id`` (or ``quota_project_id``) is it, as in LiteLLM
  (application default credentials: ``GOOGLE_CLOUD_PROJECT``, else their file's).
  ``api_base`` is used as LiteLLM uses it: requests go to ``{api_base}:{method}`` (a proxy's
  URL for the model; ``?alt=sse`` when streaming Gemini).
- A deployment without a key (its variable unset) still loads, marked with ``missing_key``: its
  requests are answered 401 as the provider would, and probes report ``auth`` without calling it.
  One of a server that may need no key (``ollama/``, ``hosted_vllm/``, ``openai/`` with an
  ``api_base``) is served without one instead.
- Access control LiteLLM's proxy offers and llmpulse does not enforce (JWT, custom auth, route
  and IP allowlists, ...: ``ACCESS_CONTROL_SETTINGS``) fails closed: refused unless the caller
  accepts serving without it (``accept_unenforced_auth``, ``llmpulse gateway
  --accept-unenforced-auth``).

Anything else LiteLLM knows (callbacks, caching, database, ``environment_variables``,
other ``litellm_params``) is accepted and named in one warning; values that are present but
wrong raise ``ConfigError`` naming their key path. Keys never appear in errors or reprs.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any, Literal, TypeVar
from urllib.parse import quote, urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
)

from llmpulse.config.errors import ConfigError, format_errors
from llmpulse.config.fields import Address, Cron, TimeZone, read_reference
from llmpulse.config.gateway import (
    CAPABILITY_FLAGS,
    MIB,
    MIN_WORKER_TIMEOUT_S,
    Deployment,
    DrillSettings,
    GatewayConfig,
    GatewaySettings,
    ModelGroup,
    RouterSettings,
    Strategy,
    group_pattern,
)
from llmpulse.config.keys import (
    GatewayKey,
    KeyConfig,
    KeyEntry,
    Team,
    TeamConfig,
    key_digest,
    plain_key_name,
    resolve_key,
    resolve_teams,
)
from llmpulse.config.web import is_loopback, split_address
from llmpulse.durations import Duration, DurationOrZero
from llmpulse.presets import (
    PRESETS,
    VERTEX_LOCATION,
    VERTEX_PROJECT,
    arn_region,
    bedrock_url,
    protocol_for,
    vertex_base_url,
    vertex_serves,
)
from llmpulse.secrets import env_var, is_credential_header
from llmpulse.target import PriceOverride

# LiteLLM's provider prefix -> llmpulse preset.
PROVIDERS: dict[str, str] = {
    "openai": "openai",
    "custom_openai": "openai-compatible",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "groq": "groq",
    "mistral": "mistral",
    "deepseek": "deepseek",
    "together_ai": "together",
    "fireworks_ai": "fireworks",
    "openrouter": "openrouter",
    "xai": "xai",
    "azure": "azure",
    "ollama": "ollama",
    "ollama_chat": "ollama",
    "hosted_vllm": "vllm",
    "vertex_ai": "vertex",
    "bedrock": "bedrock",
}

# LiteLLM's routes within bedrock/ (bedrock/converse/<model>); llmpulse speaks Converse to all.
_BEDROCK_ROUTES = ("converse/", "invoke/")
# litellm_params by which LiteLLM assumes an AWS role or a web identity before calling Bedrock
# (its docs, providers/bedrock "Authentication"); llmpulse does not implement them.
_AWS_ROLE = (
    "aws_role_name",
    "aws_session_name",
    "aws_web_identity_token",
    "aws_sts_endpoint",
    "aws_external_id",
)
# LiteLLM's default region when none is named (litellm/llms/bedrock/base_aws_llm.py).
BEDROCK_DEFAULT_REGION = "us-west-2"
# litellm_params naming AWS credentials -> Target.aws keys.
_AWS_CREDENTIALS = {
    "aws_access_key_id": "access_key_id",
    "aws_secret_access_key": "secret_access_key",
    "aws_session_token": "session_token",
    "aws_profile_name": "profile",
}

# vertex_ai/ settings as LiteLLM reads them (litellm/llms/vertex_ai): a param under either
# name, else the first variable set; LiteLLM's location when none is given is us-central1.
_VERTEX_PROJECT = AliasChoices("vertex_project", "vertex_ai_project")
_VERTEX_LOCATION = AliasChoices("vertex_location", "vertex_ai_location")
_VERTEX_CREDENTIALS = AliasChoices("vertex_credentials", "vertex_ai_credentials")
_VERTEX_ENV = {
    "project": ("VERTEXAI_PROJECT", "VERTEX_PROJECT"),
    "location": ("VERTEXAI_LOCATION", "VERTEX_LOCATION"),
    "credentials": ("VERTEXAI_CREDENTIALS", "VERTEX_CREDENTIALS"),
}
VERTEX_DEFAULT_LOCATION = "us-central1"

# Key variables LiteLLM reads when a deployment has no api_key, besides the preset's own.
_LITELLM_KEY_VARS: dict[str, tuple[str, ...]] = {
    "azure": ("AZURE_API_KEY",),
    "together": ("TOGETHERAI_API_KEY",),
    "fireworks": ("FIREWORKS_AI_API_KEY",),
}

# litellm_params by which LiteLLM authenticates an azure/ deployment with Microsoft Entra ID
# instead of a key (its docs, providers/azure "Authentication"; llms/azure/common_utils.py).
# llmpulse does not implement Entra ID. LiteLLM's Azure client sends a token, or one it gets
# with a username and password, in place of the key; a client secret (tenant_id, client_id,
# client_secret) and litellm_settings.enable_azure_ad_token_refresh it uses only when there is
# no key. (azure_ad_token_provider is a callable in LiteLLM's SDK; a file can only name it.)
_ENTRA_ID = (
    "azure_ad_token",
    "azure_ad_token_provider",
    "tenant_id",
    "client_id",
    "client_secret",
    "azure_username",
    "azure_password",
)
_ENTRA_ID_REFRESH = "enable_azure_ad_token_refresh"

# LiteLLM's Azure api-version when neither the deployment nor AZURE_API_VERSION names one:
# litellm/__init__.py, AZURE_DEFAULT_API_VERSION ("this is updated to the latest").
AZURE_DEFAULT_API_VERSION = "2025-02-01-preview"

# general_settings keys by which LiteLLM's proxy restricts who may call it and how (its
# docs/proxy/config_settings.md, "general_settings - Reference"; proxy/_types.py). llmpulse
# checks gateway keys only, so one of these present and truthy is refused unless accepted.
ACCESS_CONTROL_SETTINGS = (
    "enable_jwt_auth",
    "litellm_jwtauth",
    "custom_auth",
    "enable_oauth2_auth",
    "enable_oauth2_proxy_auth",
    "allowed_routes",
    "admin_only_routes",
    "allowed_ips",
    "enforce_user_param",
    "enforced_params",
)

# Top-level sections of a LiteLLM proxy config, and llmpulse's `gateway`. Those not in
# _READ_SECTIONS (nor `gateway`) are accepted and named in the warning.
SECTIONS = frozenset(
    {
        "model_list",
        "router_settings",
        "litellm_settings",
        "general_settings",
        "environment_variables",
        "gateway",
        "callback_settings",
        "guardrails",
        "credential_list",
        "mcp_servers",
        "assistant_settings",
        "finetune_settings",
        "files_settings",
        "search_tools",
        "vector_store_registry",
        "prompts",
        "include",
    }
)
_READ_SECTIONS = ("model_list", "router_settings", "litellm_settings", "general_settings")


T = TypeVar("T")

# ---- the file's shape -------------------------------------------------------------------------

Fallbacks = list[dict[str, list[str]]]


# A model_list entry is read in two steps: its shape (_Shape) tells whether it is served, and
# only a served entry is validated in full (_Entry), so whatever LiteLLM accepts in an entry the
# gateway skips (an embedding model's settings, a Bedrock deployment's AWS keys) cannot refuse
# the file.


class _ShapeParams(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)


class _ShapeInfo(BaseModel):
    model_config = ConfigDict(extra="allow")
    mode: str | None = None


class _Shape(BaseModel):
    model_config = ConfigDict(extra="allow")
    model_name: str = Field(min_length=1)
    litellm_params: _ShapeParams
    model_info: _ShapeInfo = Field(default_factory=_ShapeInfo)

    @field_validator("model_info", mode="before")
    @classmethod
    def _empty_info(cls, value: object) -> object:
        # YAML's `model_info:` with nothing under it; LiteLLM's Deployment takes None as none.
        return {} if value is None else value


class _Shapes(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model_list: list[_Shape] = Field(default_factory=list)


class _Params(_ShapeParams):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    api_key: str | None = None
    api_base: str | None = None
    api_version: str | None = None
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    order: int | None = Field(default=None, ge=0)
    weight: float | None = Field(default=None, ge=0)
    timeout: Duration | None = None
    stream_timeout: Duration | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    input_cost_per_token: float | None = Field(default=None, ge=0)
    output_cost_per_token: float | None = Field(default=None, ge=0)
    extra_headers: dict[str, str] = Field(default_factory=dict)
    drop_params: bool | None = None
    # vertex_ai/: LiteLLM's names (its vertex_ai_* spellings are the same settings).
    vertex_project: str | None = Field(default=None, validation_alias=_VERTEX_PROJECT)
    vertex_location: str | None = Field(default=None, validation_alias=_VERTEX_LOCATION)
    vertex_credentials: str | dict[str, Any] | None = Field(
        default=None, validation_alias=_VERTEX_CREDENTIALS
    )
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None
    aws_profile_name: str | None = None
    aws_region_name: str | None = None
    aws_bedrock_runtime_endpoint: str | None = None

    # LiteLLM's proxy resolves every os.environ/ value of litellm_params and its params type
    # then reads these as numbers or a flag (the others it passes on as text, so they stay
    # literal here). The file is validated with the environment as context.
    @field_validator(
        "rpm",
        "tpm",
        "timeout",
        "stream_timeout",
        "input_cost_per_token",
        "output_cost_per_token",
        "drop_params",
        mode="wrap",
    )
    @classmethod
    def _from_env(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> Any:
        var = env_var(value) if isinstance(value, str) else None
        if var is None:
            return handler(value)
        env = (info.context or {}).get("env", {})
        if not env.get(var):
            raise ValueError(f"environment variable {var} is not set")
        try:
            return handler(env[var])
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
            raise ValueError(f"{reason} (from {value!r})") from None


class _Info(_ShapeInfo):
    # Other descriptive metadata LiteLLM itself only reports. The capability flags a user sets
    # false are honoured: routing and readiness skip the deployment for what it cannot take.
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)
    id: str | None = Field(default=None, min_length=1)
    base_model: str | None = None
    max_input_tokens: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    input_cost_per_token: float | None = Field(default=None, ge=0)
    output_cost_per_token: float | None = Field(default=None, ge=0)
    order: int | None = Field(default=None, ge=0)
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    supports_function_calling: bool | None = None
    supports_vision: bool | None = None
    supports_response_schema: bool | None = None
    supports_reasoning: bool | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _int_id(cls, value: object) -> object:
        # LiteLLM's ModelInfo takes an int id as its text (a bool too: it is an int there).
        return str(value) if isinstance(value, int) else value


class _Entry(_Shape):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    litellm_params: _Params
    model_info: _Info = Field(default_factory=_Info)
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)


class _Alias(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    model: str
    hidden: bool = False


class _Reliability(BaseModel):
    """The keys LiteLLM reads from both router_settings and litellm_settings."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    num_retries: int | None = Field(default=None, ge=0, le=20)
    fallbacks: Fallbacks | None = None
    context_window_fallbacks: Fallbacks | None = None
    content_policy_fallbacks: Fallbacks | None = None
    default_fallbacks: list[str] | None = None


class _Router(_Reliability):
    routing_strategy: str | None = None
    timeout: Duration | None = None
    stream_timeout: Duration | None = None
    retry_after: DurationOrZero | None = None
    allowed_fails: int | None = Field(default=None, ge=0)
    cooldown_time: DurationOrZero | None = None
    disable_cooldowns: bool | None = None
    max_fallbacks: int | None = Field(default=None, ge=0)
    enable_pre_call_checks: bool | None = None
    model_group_alias: dict[str, str | _Alias] = Field(default_factory=dict)
    # LiteLLM's Redis settings, for state shared between replicas (values may be
    # os.environ/NAME references).
    redis_url: str | None = None
    redis_host: str | None = None
    redis_port: int | str | None = None
    redis_password: str | int | None = None  # YAML reads a numeric password as a number

    @field_validator("routing_strategy")
    @classmethod
    def _known_strategy(cls, value: str | None) -> str | None:
        if value is not None:
            Strategy.parse(value)  # one list of names: the router's
        return value


class _LitellmSettings(_Reliability):
    request_timeout: Duration | None = None
    drop_params: bool = False


class _General(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    master_key: str | None = Field(default=None, min_length=1)
    max_request_size_mb: float | None = Field(default=None, ge=0.001)  # a kilobyte at least


class _Drills(BaseModel):
    """``gateway.drills``: a cron expression and its time zone (``llmpulse.schedule``)."""

    model_config = ConfigDict(extra="forbid")
    schedule: Cron
    timezone: TimeZone = "UTC"


class _Gateway(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    listen: Address = "127.0.0.1:4000"
    keys: list[KeyEntry] = Field(default_factory=list)
    ttft_limit: Duration | None = None
    idle_timeout: Duration = 30.0
    max_retry_wait: DurationOrZero = 10.0
    rate_limit_threshold: float = Field(default=0.9, gt=0, le=1)
    monitor: bool = True
    probe_interval: Duration | None = None
    store_prompts: bool = False
    redis_url: str | None = None
    redis_prefix: str = Field(default="llmpulse:gateway", min_length=1)
    max_request_size_mb: float | None = Field(default=None, ge=0.001)  # a kilobyte at least
    # Deeper than a few hundred levels, parsing and re-encoding would hit Python's recursion limit.
    max_json_depth: int = Field(default=128, ge=1, le=256)
    max_model_name_length: int = Field(default=256, ge=1)
    max_wildcard_targets: int = Field(default=1000, ge=0)
    header_timeout: Duration = 30.0
    shutdown_grace: Duration = 10.0
    # --num_workers: a worker whose event loop has not run for this long is killed and
    # restarted (gunicorn's --timeout, 30 s by default there too).
    worker_timeout: Duration = Field(default=30.0, ge=MIN_WORKER_TIMEOUT_S)
    # The gateway's own /metrics port; unset: loopback, the gateway's port + 1 (when free; the
    # API's port serves /metrics too); false: no /metrics at all.
    metrics_listen: Address | Literal[False] | None = None
    drills: _Drills | None = None


class _File(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    model_list: dict[int, _Entry] = Field(default_factory=dict)  # the served entries by index
    router_settings: _Router = Field(default_factory=_Router)
    litellm_settings: _LitellmSettings = Field(default_factory=_LitellmSettings)
    general_settings: _General = Field(default_factory=_General)
    gateway: _Gateway = Field(default_factory=_Gateway)


# ---- parsing ----------------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class _Notes:
    """What the file holds that loads but must be said, gathered so that each concern is one
    warning line. Entries are key paths (and provider names or variables), never values."""

    not_chat: list[str] = dataclasses.field(default_factory=list)
    unknown_provider: list[str] = dataclasses.field(default_factory=list)
    unsupported_auth: list[str] = dataclasses.field(default_factory=list)
    dropped: list[str] = dataclasses.field(default_factory=list)
    skipped_models: list[str] = dataclasses.field(default_factory=list)
    azure_default: list[str] = dataclasses.field(default_factory=list)
    keyless: list[str] = dataclasses.field(default_factory=list)
    no_key: list[str] = dataclasses.field(default_factory=list)
    literal: list[str] = dataclasses.field(default_factory=list)
    ignored: list[str] = dataclasses.field(default_factory=list)

    def warnings(self) -> tuple[str, ...]:
        azure = f"azure deployments without api_version use {AZURE_DEFAULT_API_VERSION}"
        lines = (
            ("skipping deployments that are not chat models", self.not_chat),
            (
                "skipping deployments of providers llmpulse does not speak yet",
                self.unknown_provider,
            ),
            ("skipping deployments with an auth method not supported", self.unsupported_auth),
            ("ignoring fallbacks and aliases that name only skipped deployments", self.dropped),
            (
                "keys' models that name only skipped deployments allow nothing there",
                self.skipped_models,
            ),
            (f"{azure} (LiteLLM's default)", self.azure_default),
            ("deployments without an API key answer 401 until it is set", self.keyless),
            (
                "sending no API key where its variable is unset (a local or OpenAI-compatible "
                "server may need none)",
                self.no_key,
            ),
            ("keys written in the file are used as written and kept secret", self.literal),
            ("ignoring settings llmpulse does not act on", self.ignored),
        )
        return tuple(f"{what}: {', '.join(dict.fromkeys(items))}" for what, items in lines if items)


def parse_gateway(
    raw: Mapping[str, Any],
    env: Mapping[str, str],
    where: str = "",
    *,
    accept_unenforced_auth: bool = False,
    gateway_secrets: bool = True,
) -> GatewayConfig | None:
    """The gateway config from a file's top-level mapping; None when it has no gateway keys.

    ``raw`` may hold other (monitor) keys; only the LiteLLM sections and ``gateway`` are read.
    A file asking for access control llmpulse does not enforce is refused unless
    ``accept_unenforced_auth``: loaders that serve no clients (the monitor, ``Router``) pass
    True, and whoever serves checks again (``GatewayConfig.auth_warning``). Without
    ``gateway_secrets`` (a host serving only the web UI), the gateway's own keys and Redis are
    neither read nor required: nothing there serves the gateway.
    """
    sections = {k: v for k, v in raw.items() if k in SECTIONS}
    if not sections:
        return None
    # YAML's `key:` with no value is None; LiteLLM treats an empty section as absent.
    present = {k: v for k, v in sections.items() if v is not None}
    notes = _Notes()
    try:
        shapes = _Shapes.model_validate(present).model_list
        litellm = present.get("litellm_settings")
        refresh = isinstance(litellm, Mapping) and litellm.get(_ENTRA_ID_REFRESH) is True
        served = {
            i: present["model_list"][i]
            for i, entry in enumerate(shapes)
            if _served(i, entry, env, refresh, notes)
        }
        parsed = _File.model_validate({**present, "model_list": served}, context={"env": env})
    except ValidationError as exc:
        raise ConfigError(where + format_errors(exc)) from None
    notes.ignored = [k for k in sorted(present) if k not in (*_READ_SECTIONS, "gateway")]
    for section in ("router_settings", "litellm_settings", "general_settings"):
        extra = getattr(parsed, section).model_extra or {}
        # Access control is refused or accepted on its own, and Entra ID skips deployments:
        # never just "ignored".
        notes.ignored += [
            f"{section}.{k}"
            for k in sorted(extra)
            if not (section == "general_settings" and k in ACCESS_CONTROL_SETTINGS)
            and not (section == "litellm_settings" and k == _ENTRA_ID_REFRESH)
        ]
    general = parsed.general_settings.model_extra or {}
    unenforced = tuple(f"general_settings.{k}" for k in ACCESS_CONTROL_SETTINGS if general.get(k))

    entries = list(parsed.model_list.items())
    skipped_groups = {s.model_name for i, s in enumerate(shapes) if i not in parsed.model_list}
    drop = parsed.litellm_settings.drop_params
    deployments = [_deployment(i, e, env, where, notes, drop, gateway_secrets) for i, e in entries]
    _unique(deployments, entries, where)
    groups: dict[str, list[Deployment]] = {}
    for d in deployments:
        groups.setdefault(d.group, []).append(d)
    config = GatewayConfig(
        groups=tuple(ModelGroup(name, tuple(ds)) for name, ds in groups.items()),
        router=_router(parsed.router_settings, parsed.litellm_settings),
        settings=_settings(parsed, env, where, notes, gateway_secrets),
        aliases={
            k: v if isinstance(v, str) else v.model
            for k, v in parsed.router_settings.model_group_alias.items()
        },
        hidden_aliases=frozenset(
            k
            for k, v in parsed.router_settings.model_group_alias.items()
            if isinstance(v, _Alias) and v.hidden
        ),
        skipped=(*notes.not_chat, *notes.unknown_provider, *notes.unsupported_auth),
        unenforced_auth=unenforced,
        secrets_read=gateway_secrets,
    )
    config = _served_references(config, parsed, skipped_groups, where, notes)
    config = dataclasses.replace(config, teams=_teams(raw.get("teams"), where))
    _key_models(config, parsed.gateway.keys, skipped_groups, where, notes)
    config = dataclasses.replace(config, warnings=notes.warnings())
    config.auth_warning(accept_unenforced_auth, where)
    return config


def _served(
    index: int, entry: _Shape, env: Mapping[str, str], refresh: bool, notes: _Notes
) -> bool:
    """Whether the gateway serves this entry; if not, the reason is noted."""
    mode, model = entry.model_info.mode, entry.litellm_params.model
    if mode not in (None, "chat"):
        # Embeddings, images, audio: the gateway serves chat only.
        notes.not_chat.append(f"model_list[{index}] (mode: {mode})")
        return False
    resolved = _provider(model)
    if resolved is None:
        prefix, sep, _ = model.partition("/")
        named = f"{prefix}/" if sep else f"no provider in {model!r}"
        notes.unknown_provider.append(f"model_list[{index}] ({named})")
        return False
    if resolved[0] == "azure":
        entra = _entra_id(entry.litellm_params.model_extra or {}, env, refresh)
        if entra:
            notes.unsupported_auth.append(f"model_list[{index}] (Azure Entra ID: {entra})")
            return False
    if resolved[0] == "vertex" and "*" not in resolved[1] and not vertex_serves(resolved[1]):
        notes.unknown_provider.append(f"model_list[{index}] ({model}: not Gemini nor Claude)")
        return False
    if resolved[0] == "bedrock":
        extra = entry.litellm_params.model_extra or {}
        role = [k for k in _AWS_ROLE if extra.get(k) not in (None, "")]
        if role:
            notes.unsupported_auth.append(f"model_list[{index}] (AWS {', '.join(role)})")
            return False
    return True


def _entra_id(params: Mapping[str, Any], env: Mapping[str, str], refresh: bool) -> str:
    """The Entra ID settings LiteLLM would authenticate an azure/ deployment with ('' when it
    would use the key), read from the raw ``litellm_params``."""
    if params.get("api_key") not in (None, ""):
        has_key = _set(params, "api_key", env)
    else:
        has_key = any(env.get(v) for v in _key_variables("azure"))
    token = _set(params, "azure_ad_token", env) or _set(params, "azure_ad_token_provider", env)
    user = _set(params, "azure_username", env) and _set(params, "azure_password", env)
    if has_key and not (token or user):
        return ""
    given = [k for k in _ENTRA_ID if params.get(k) not in (None, "")]
    if refresh and not has_key:
        given.append(f"litellm_settings.{_ENTRA_ID_REFRESH}")
    return ", ".join(given)


def _set(params: Mapping[str, Any], key: str, env: Mapping[str, str]) -> bool:
    """Whether ``key`` has a value once resolved, as LiteLLM's proxy resolves it."""
    value = params.get(key)
    var = env_var(value) if isinstance(value, str) else None
    return bool(env.get(var)) if var is not None else value not in (None, "")


def _provider(model: str) -> tuple[str, str] | None:
    """(llmpulse preset, model name) of LiteLLM's ``model``; None for a provider llmpulse does
    not speak."""
    prefix, sep, name = model.partition("/")
    if sep and prefix in PROVIDERS:
        if prefix == "bedrock":
            name = next((name[len(r) :] for r in _BEDROCK_ROUTES if name.startswith(r)), name)
        return PROVIDERS[prefix], name
    if model.startswith(("gpt-", "o1", "o3", "o4", "chatgpt-")):
        return "openai", model  # LiteLLM infers these providers
    if model.startswith("claude-"):
        return "anthropic", model
    return None


def _deployment(
    index: int,
    entry: _Entry,
    env: Mapping[str, str],
    where: str,
    notes: _Notes,
    drop_params: bool,
    secrets: bool = True,
) -> Deployment:
    """One served entry, resolved; without ``secrets`` (serving only the web UI), extra headers
    whose variables are unset are left out instead of refused."""
    key_path = f"model_list[{index}].litellm_params"
    path = where + key_path
    params, info = entry.litellm_params, entry.model_info
    notes.ignored += [f"model_list[{index}].{k}" for k in sorted(entry.model_extra or {})]
    notes.ignored += [f"{key_path}.{k}" for k in sorted(params.model_extra or {})]

    resolved = _provider(params.model)
    assert resolved is not None  # unknown providers were skipped
    provider, model = resolved
    if not model:
        raise ConfigError(f"{path}.model: no model name after the provider in {params.model!r}")

    base_url = _value(params.api_base, env, f"{path}.api_base")
    api_version = _value(params.api_version, env, f"{path}.api_version")
    if provider == "azure":
        base_url = base_url or env.get("AZURE_API_BASE")
        api_version = api_version or env.get("AZURE_API_VERSION")
        if not base_url:
            raise ConfigError(f"{path}.api_base: required for azure/ (or set AZURE_API_BASE)")
        if not api_version:
            api_version = AZURE_DEFAULT_API_VERSION
            notes.azure_default.append(f"model_list[{index}]")
    region = None
    aws: dict[str, str] = {}
    if provider == "bedrock":
        region = (
            _value(params.aws_region_name, env, f"{path}.aws_region_name")
            or arn_region(model)
            or env.get("AWS_REGION_NAME")
            or env.get("AWS_REGION")
            or env.get("AWS_DEFAULT_REGION")
            or BEDROCK_DEFAULT_REGION
        )
        base_url = (
            base_url
            or _value(
                params.aws_bedrock_runtime_endpoint, env, f"{path}.aws_bedrock_runtime_endpoint"
            )
            or bedrock_url(region)
        )
    if provider == "openai" and base_url and "api.openai.com" not in base_url:
        provider = "openai-compatible"  # openai/ + api_base: LiteLLM's any-compatible-server form
    if base_url and not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{path}.api_base: expected an http:// or https:// URL")
    preset = PRESETS[provider]
    base_url = (base_url or preset.base_url or "").rstrip("/")
    if provider == "ollama" and not base_url.endswith("/v1"):
        base_url += "/v1"  # LiteLLM's api_base is Ollama's root; llmpulse speaks its /v1 API
    if provider == "anthropic":
        base_url = base_url.removesuffix("/v1/messages")
    project = location = credentials_file = credentials_info = model_endpoint = None
    if provider == "vertex":
        project, location, credentials_file, credentials_info = _vertex(params, env, path)
        if base_url:
            # LiteLLM sends to ``{api_base}:{method}`` whatever the model: a proxy's URL for
            # the model. Publisher models are looked up at the root its path shows, if any.
            model_endpoint = base_url
            base_url = base_url.split("/projects/", 1)[0]
        else:
            base_url = vertex_base_url(location)
        written = params.vertex_credentials
        if isinstance(written, dict) or (written and env_var(written) is None and credentials_info):
            notes.literal.append(f"{key_path}.vertex_credentials")  # the JSON in the file

    headers = {}
    for name, value in params.extra_headers.items():
        if is_credential_header(name) and env_var(value) is None:
            notes.literal.append(f"{key_path}.extra_headers.{name}")
        var = env_var(value)
        if not secrets and var is not None and not env.get(var):
            continue
        headers[name] = _value(value, env, f"{path}.extra_headers.{name}") or ""
    api_key, missing_key = _api_key(params.api_key or None, provider, env, index, notes)
    if credentials_file is not None and secrets and not os.path.isfile(credentials_file):
        # As an unset key: the file loads, the deployment answers 401 until the file is there.
        notes.keyless.append(f"model_list[{index}] (no file at vertex_credentials)")
        missing_key = (
            f"no Vertex AI credentials: {credentials_file} "
            f"({key_path}.vertex_credentials) is not a file"
        )
    if provider == "bedrock":
        aws, missing_key = _aws(params, env, index, where, notes)

    raw_params = entry.litellm_params.model_dump(exclude_unset=True)
    digest = json.dumps([entry.model_name, raw_params], sort_keys=True, default=str)
    deployment_id = info.id or hashlib.sha256(digest.encode()).hexdigest()[:16]
    input_cost = _first(params.input_cost_per_token, info.input_cost_per_token)
    output_cost = _first(params.output_cost_per_token, info.output_cost_per_token)
    prices = None
    if input_cost is not None and output_cost is not None:
        prices = PriceOverride(input_per_mtok=input_cost * 1e6, output_per_mtok=output_cost * 1e6)
    return Deployment(
        group=entry.model_name,
        provider=provider,
        protocol=protocol_for(provider, model),
        model=model,
        base_url=base_url,
        id=deployment_id,
        name=f"{entry.model_name}/{info.id or params.model}",
        api_key=api_key,
        api_version=api_version,
        rpm=_first(params.rpm, entry.rpm, info.rpm),
        tpm=_first(params.tpm, entry.tpm, info.tpm),
        order=_first(params.order, info.order),
        weight=params.weight,
        timeout=params.timeout,
        stream_timeout=params.stream_timeout,
        max_tokens=params.max_tokens,
        temperature=params.temperature,
        context_window=_first(info.max_input_tokens, info.max_tokens),
        # LiteLLM writes it with its provider prefix (azure/gpt-4o); prices want the model.
        base_model=_strip_provider(info.base_model),
        prices=prices,
        headers=headers,
        drop_params=_or(params.drop_params, drop_params),
        lacks=frozenset(flag for flag in CAPABILITY_FLAGS if getattr(info, flag) is False),
        missing_key=missing_key,
        project=project,
        location=location,
        credentials_file=credentials_file,
        credentials_info=credentials_info,
        model_endpoint=model_endpoint,
        region=region,
        aws=aws,
    )


def _vertex(
    params: _Params, env: Mapping[str, str], path: str
) -> tuple[str, str, str | None, str | None]:
    """A vertex_ai/ deployment's project, location, and credentials: a file's path or their
    JSON (neither: application default credentials), as LiteLLM resolves them."""
    found: dict[str, str | None] = {}
    for name in ("project", "location", "credentials"):
        value = getattr(params, f"vertex_{name}")
        if isinstance(value, dict):
            found[name] = json.dumps(value)  # a mapping in the YAML: the credentials' JSON
        elif value:
            found[name] = _value(value, env, f"{path}.vertex_{name}")
        else:
            found[name] = next((env[v] for v in _VERTEX_ENV[name] if env.get(v)), None)
    project, location, creds = found["project"], found["location"], found["credentials"]
    credentials_file = credentials_info = None
    if creds is not None:
        # LiteLLM's order: a path when one exists there, else the JSON itself.
        as_path = os.path.expanduser(creds)
        if creds.lstrip().startswith("{") and not os.path.exists(as_path):
            credentials_info = creds
        else:
            credentials_file = as_path
    project = project or _credentials_project(credentials_file, credentials_info, path)
    if not project and creds is None:
        # Application default credentials: google.auth.default's project, as LiteLLM takes it
        # (its variables, else the GOOGLE_APPLICATION_CREDENTIALS file's).
        adc = env.get("GOOGLE_APPLICATION_CREDENTIALS")
        project = (
            env.get("GOOGLE_CLOUD_PROJECT")
            or env.get("GCLOUD_PROJECT")
            or _credentials_project(os.path.expanduser(adc) if adc else None, None, path)
        )
    if not project:
        raise ConfigError(
            f"{path}.vertex_project: required for vertex_ai/ (or set VERTEXAI_PROJECT, or "
            "give credentials with a project_id)"
        )
    if not VERTEX_PROJECT.fullmatch(project):
        raise ConfigError(
            f"{path}.vertex_project: expected a Google Cloud project id such as my-project-123"
        )
    location = location or VERTEX_DEFAULT_LOCATION
    if not VERTEX_LOCATION.fullmatch(location):
        raise ConfigError(f"{path}.vertex_location: expected a region such as us-east5, or global")
    return project, location, credentials_file, credentials_info


_MAX_CREDENTIALS_BYTES = 1024 * 1024


def _credentials_project(file: str | None, info: str | None, path: str) -> str | None:
    """The project LiteLLM takes from the credentials when none is given: their
    ``project_id``, else their ``quota_project_id``. Inline JSON must parse; a file that does
    not names no project here (reading it fails later, as an auth result)."""
    parsed: Any = None
    if info is not None:
        try:
            parsed = json.loads(info)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise ConfigError(
                f"{path}.vertex_credentials: expected a credentials file's path or its JSON object"
            )
    elif file is not None:
        try:
            with open(file, "rb") as handle:
                parsed = json.loads(handle.read(_MAX_CREDENTIALS_BYTES))
        except (OSError, ValueError):
            return None
    if not isinstance(parsed, dict):
        return None
    project = parsed.get("project_id") or parsed.get("quota_project_id")
    return project if isinstance(project, str) else None


def _aws(
    params: _Params, env: Mapping[str, str], index: int, where: str, notes: _Notes
) -> tuple[dict[str, str], str | None]:
    """A bedrock/ deployment's AWS credentials as named in its params (empty: the standard
    chain), and, when a variable they reference is unset, what to set."""
    key_path = f"model_list[{index}].litellm_params"
    aws: dict[str, str] = {}
    unset: list[str] = []
    for param, key in _AWS_CREDENTIALS.items():
        value = getattr(params, param)
        if value in (None, ""):
            continue
        var = env_var(value)
        if var is None:
            if key != "profile":
                notes.literal.append(f"{key_path}.{param}")
            aws[key] = value
        elif env.get(var):
            aws[key] = env[var]
        else:
            unset.append(f"{var} ({key_path}.{param})")
    if unset:
        notes.keyless.append(f"model_list[{index}] (set {', '.join(unset)})")
        return {}, f"no AWS credentials: {', '.join(unset)} not set"
    if ("access_key_id" in aws) != ("secret_access_key" in aws):
        given, other = (
            ("aws_access_key_id", "aws_secret_access_key")
            if "access_key_id" in aws
            else ("aws_secret_access_key", "aws_access_key_id")
        )
        raise ConfigError(f"{where}{key_path}.{other}: required with {given}")
    return aws, None


def _strip_provider(model: str | None) -> str | None:
    if model is None:
        return None
    prefix, sep, name = model.partition("/")
    return name if sep and prefix in PROVIDERS else model


def _first(*values: T | None) -> T | None:
    return next((v for v in values if v is not None), None)


def _or(value: T | None, default: T) -> T:
    return default if value is None else value


def _teams(raw: Any, where: str) -> tuple[Team, ...]:
    """``teams:`` (top level, beside the gateway's sections): team budgets."""
    try:
        entries = _Teams.model_validate({"teams": raw or []}).teams
    except ValidationError as exc:
        raise ConfigError(where + format_errors(exc)) from None
    return resolve_teams(entries, where)


class _Teams(BaseModel):
    teams: list[TeamConfig]


def _key_models(
    config: GatewayConfig, entries: list[Any], skipped: set[str], where: str, notes: _Notes
) -> None:
    """A key's ``models`` must each name something served (``GatewayConfig.serves``): a typo
    would otherwise lock the key out of what it was meant to use, silently. One naming only
    skipped deployments is said, as fallbacks and aliases naming them are, and kept: it allows
    nothing served (dropped, it could leave the key allowed every group). Read from the
    entries as written, so the path is right whether or not the keys themselves were read."""
    for i, entry in enumerate(entries):
        for j, glob in enumerate(entry.models if isinstance(entry, KeyConfig) else ()):
            if config.serves(glob):
                continue
            path = f"gateway.keys[{i}].models[{j}]"
            if any(fnmatch.fnmatchcase(g, glob) for g in skipped) or any(
                group_pattern(g).fullmatch(glob) for g in skipped if "*" in g
            ):
                notes.skipped_models.append(f"{path} ({glob!r})")
                continue
            raise ConfigError(f"{where}{path}: {config.no_group(glob)}")


def _keys(
    entries: list[str | KeyConfig | None], master: str | None, env: Mapping[str, str], where: str
) -> tuple[GatewayKey, ...]:
    """``general_settings.master_key`` (named ``master``), then ``gateway.keys``: a plain
    reference is a key named by its digest, a mapping a named key (or, without ``key``, the
    policy of the run-time key of that name)."""
    keys: list[GatewayKey] = []
    if master:
        keys.append(GatewayKey("master", key_digest(master), master=True, secret=master))
    for i, entry in enumerate(entries):
        path = f"{where}gateway.keys[{i}]"
        if isinstance(entry, KeyConfig):
            secret = _value(entry.key, env, f"{path}.key")
            key = resolve_key(entry, secret)
        else:
            secret = _value(entry, env, path)
            if not secret:
                continue
            digest = key_digest(secret)
            key = GatewayKey(plain_key_name(digest), digest, secret=secret)
            # Listed twice, or also the master key (valid before keys had names): nothing to
            # tell apart, so the first stands.
            if any(o.digest == digest and (o.master or _plain(o)) for o in keys):
                continue
        for other in keys:
            if other.name == key.name:
                raise ConfigError(f"{path}.name: {key.name!r} names two keys")
            if key.digest and other.digest == key.digest:
                raise ConfigError(f"{path}: the same key as {other.name!r}")
        keys.append(key)
    return tuple(keys)


def _plain(key: GatewayKey) -> bool:
    """Whether ``key`` came from a plain entry (named by its digest, no policy)."""
    return key.name == plain_key_name(key.digest)


def _value(value: str | None, env: Mapping[str, str], path: str) -> str | None:
    """A plain value, or the variable it references (``os.environ/NAME``), as LiteLLM does."""
    return None if value is None else read_reference(value, env, path)


def _api_key(
    ref: str | None, provider: str, env: Mapping[str, str], index: int, notes: _Notes
) -> tuple[str | None, str | None]:
    """The deployment's key, and when there is none to send, what to set instead.

    As in LiteLLM, an unset variable does not stop the file loading: the deployment's requests
    fail as its provider would fail them, or go without a key to a server that may need none."""
    key_path = f"model_list[{index}].litellm_params.api_key"
    if ref is not None:
        var = env_var(ref)
        if var is None:
            notes.literal.append(key_path)
            return ref, None
        if env.get(var):
            return env[var], None
        if not PRESETS[provider].needs_key:
            # A local or OpenAI-compatible server may check no key; LiteLLM sends it none (or
            # a placeholder), and so does llmpulse: no Authorization header.
            notes.no_key.append(f"{key_path} ({var})")
            return None, None
        notes.keyless.append(f"model_list[{index}] (set {var})")
        return None, f"no API key: {var} ({key_path}) is not set"
    preset = PRESETS[provider]
    names = " or ".join(_key_variables(provider))
    var = next((v for v in _key_variables(provider) if env.get(v)), None)
    if var is not None:
        return env[var], None
    if not preset.needs_key:
        return None, None
    notes.keyless.append(f"model_list[{index}] (set {names})")
    return None, f"no API key for {provider}: set {names}, or {key_path}"


def _key_variables(provider: str) -> tuple[str, ...]:
    """The variables a deployment without an api_key takes its key from, as LiteLLM does."""
    return _LITELLM_KEY_VARS.get(provider, ()) + PRESETS[provider].env


def _unique(deployments: list[Deployment], entries: list[tuple[int, _Entry]], where: str) -> None:
    ids: dict[str, int] = {}
    for d, (i, entry) in zip(deployments, entries, strict=True):
        if d.id in ids:
            path = "model_info.id" if entry.model_info.id else "litellm_params"
            raise ConfigError(
                f"{where}model_list[{i}].{path}: same deployment as model_list[{ids[d.id]}]"
            )
        ids[d.id] = i
    names = [d.name for d in deployments]
    for i, d in enumerate(deployments):
        if names.count(d.name) > 1:
            # Two deployments of one model (e.g. two regions): the id tells them apart.
            deployments[i] = dataclasses.replace(d, name=f"{d.name}#{d.id[:8]}")


def _router(router: _Router, litellm: _LitellmSettings) -> RouterSettings:
    def pick(key: str) -> Any:
        # router_settings overrides litellm_settings, as LiteLLM documents.
        value = getattr(router, key)
        return value if value is not None else getattr(litellm, key)

    defaults = RouterSettings()
    timeout = router.timeout if router.timeout is not None else litellm.request_timeout
    return RouterSettings(
        strategy=Strategy.parse(router.routing_strategy or "priority"),
        num_retries=_or(pick("num_retries"), defaults.num_retries),
        timeout=timeout,
        stream_timeout=router.stream_timeout,
        retry_after=_or(router.retry_after, defaults.retry_after),
        allowed_fails=_or(router.allowed_fails, defaults.allowed_fails),
        cooldown_time=_or(router.cooldown_time, defaults.cooldown_time),
        disable_cooldowns=bool(router.disable_cooldowns),
        fallbacks=_fallback_map(pick("fallbacks")),
        context_window_fallbacks=_fallback_map(pick("context_window_fallbacks")),
        content_policy_fallbacks=_fallback_map(pick("content_policy_fallbacks")),
        default_fallbacks=tuple(pick("default_fallbacks") or ()),
        max_fallbacks=_or(router.max_fallbacks, defaults.max_fallbacks),
        enable_pre_call_checks=bool(router.enable_pre_call_checks),
    )


def _fallback_map(entries: Fallbacks | None) -> dict[str, tuple[str, ...]]:
    result: dict[str, tuple[str, ...]] = {}
    for entry in entries or ():
        for group, targets in entry.items():
            result[group] = result.get(group, ()) + tuple(targets)
    return result


def _settings(
    parsed: _File, env: Mapping[str, str], where: str, notes: _Notes, secrets: bool = True
) -> GatewaySettings:
    gateway = parsed.gateway
    host, port = split_address(gateway.listen)
    # Ours wins over LiteLLM's, as gateway.redis_url does.
    size_mb = _first(gateway.max_request_size_mb, parsed.general_settings.max_request_size_mb)
    resolved: tuple[GatewayKey, ...] = ()
    master_ref = parsed.general_settings.master_key
    if secrets:
        if master_ref is not None and env_var(master_ref) is None:
            notes.literal.append("general_settings.master_key")
        # A reference to an unset variable stays an error: LiteLLM would then serve without one.
        master = _value(master_ref, env, f"{where}general_settings.master_key")
        resolved = _keys(gateway.keys, master, env, where)
    if secrets and not any(k.digest for k in resolved) and not is_loopback(host):
        raise ConfigError(
            f"{where}gateway.listen: {gateway.listen} is not a loopback address, so the gateway "
            "needs keys: set general_settings.master_key or gateway.keys"
        )
    metrics_host, metrics_port = "127.0.0.1", None
    if gateway.metrics_listen is not None and gateway.metrics_listen is not False:
        metrics_host, metrics_port = split_address(gateway.metrics_listen)
        if secrets and not is_loopback(metrics_host) and not any(k.master for k in resolved):
            raise ConfigError(
                f"{where}gateway.metrics_listen: {gateway.metrics_listen} is not a loopback "
                "address, so /metrics needs the master key: set general_settings.master_key"
            )
    return GatewaySettings(
        host=host,
        port=port,
        keys=resolved,
        ttft_limit=gateway.ttft_limit,
        idle_timeout=gateway.idle_timeout,
        max_retry_wait=gateway.max_retry_wait,
        rate_limit_threshold=gateway.rate_limit_threshold,
        monitor=gateway.monitor,
        probe_interval=gateway.probe_interval,
        store_prompts=gateway.store_prompts,
        redis_url=_redis_url(parsed, env, where, notes) if secrets else None,
        redis_prefix=gateway.redis_prefix,
        max_request_bytes=round(_or(size_mb, 32) * MIB),
        max_json_depth=gateway.max_json_depth,
        max_model_name_length=gateway.max_model_name_length,
        max_wildcard_targets=gateway.max_wildcard_targets,
        header_timeout=gateway.header_timeout,
        shutdown_grace=gateway.shutdown_grace,
        worker_timeout=gateway.worker_timeout,
        metrics=gateway.metrics_listen is not False,
        metrics_host=metrics_host,
        metrics_port=metrics_port,
        drills=(
            DrillSettings(gateway.drills.schedule, gateway.drills.timezone)
            if gateway.drills is not None
            else None
        ),
    )


def _redis_url(parsed: _File, env: Mapping[str, str], where: str, notes: _Notes) -> str | None:
    """gateway.redis_url, else LiteLLM's router_settings.redis_url or redis_host/port/password."""
    router = parsed.router_settings
    if parsed.gateway.redis_url:
        url = _value(parsed.gateway.redis_url, env, f"{where}gateway.redis_url")
    elif router.redis_url:
        url = _value(router.redis_url, env, f"{where}router_settings.redis_url")
        if url and env_var(router.redis_url) is None and urlsplit(url).password:
            notes.literal.append("router_settings.redis_url")
    elif router.redis_host:
        host = _value(router.redis_host, env, f"{where}router_settings.redis_host")
        port = _value(str(router.redis_port or 6379), env, f"{where}router_settings.redis_port")
        secret = None if router.redis_password is None else str(router.redis_password)
        if secret is not None and env_var(secret) is None:
            notes.literal.append("router_settings.redis_password")
        password = _value(secret, env, f"{where}router_settings.redis_password")
        auth = f":{quote(password, safe='')}@" if password else ""
        url = f"redis://{auth}{host}:{port}"
    else:
        return None
    if url and not url.startswith(("redis://", "rediss://", "unix://")):
        key = "gateway.redis_url" if parsed.gateway.redis_url else "router_settings.redis_url"
        raise ConfigError(f"{where}{key}: expected a redis://, rediss:// or unix:// URL")
    return url or None


def _served_references(
    config: GatewayConfig, parsed: _File, skipped: set[str], where: str, notes: _Notes
) -> GatewayConfig:
    """Every fallback and alias must name a model the gateway serves, so a typo fails at load.

    One naming only skipped deployments is dropped with a warning instead: LiteLLM loads the
    file, and a request sent there could only fail."""

    def served(name: str, path: str) -> bool:
        if config.resolve(name):
            return True
        if any(name == g or ("*" in g and group_pattern(g).fullmatch(name)) for g in skipped):
            notes.dropped.append(f"{path} ({name!r})")
            return False
        raise ConfigError(f"{where}{path}: no model named {name!r}")

    aliases = {
        alias: group
        for alias, group in config.aliases.items()
        if served(group, f"router_settings.model_group_alias.{alias}")
    }
    config = dataclasses.replace(
        config, aliases=aliases, hidden_aliases=config.hidden_aliases & aliases.keys()
    )
    router = config.router
    kept: dict[str, dict[str, tuple[str, ...]]] = {}
    for key in ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks"):
        section = "router_settings" if getattr(parsed.router_settings, key) else "litellm_settings"
        kept[key] = {}
        for group, targets in getattr(router, key).items():
            names = tuple(t for t in targets if served(t, f"{section}.{key}"))
            if served(group, f"{section}.{key}") and names:
                kept[key][group] = names
    section = "router_settings" if parsed.router_settings.default_fallbacks else "litellm_settings"
    default = tuple(
        n for n in router.default_fallbacks if served(n, f"{section}.default_fallbacks")
    )
    router = dataclasses.replace(
        router,
        fallbacks=kept["fallbacks"],
        context_window_fallbacks=kept["context_window_fallbacks"],
        content_policy_fallbacks=kept["content_policy_fallbacks"],
        default_fallbacks=default,
    )
    return dataclasses.replace(config, router=router)
