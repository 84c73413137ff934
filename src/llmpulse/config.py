"""Configuration: the YAML file, its validation, and the resolved targets the probes use.

Validation errors name the key path, the bad value and what is expected (``ConfigError``);
API keys are only ever referenced (``os.environ/NAME`` or ``${NAME}``) and resolved from the
environment at load time, never echoed in errors, logs or output.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from llmpulse.durations import Duration, DurationOrZero
from llmpulse.monitor.rules import DEFAULT_RULES, RuleOverride
from llmpulse.providers.presets import DISCOVERABLE, PRESETS
from llmpulse.redact import Redactor, credentials, is_credential_header, url_password
from llmpulse.result import CheckKind
from llmpulse.yamlfile import YAMLFileError, gc_paused, read_yaml

if TYPE_CHECKING:
    from llmpulse.alerts.notifiers import Notifier
    from llmpulse.gateway.config import GatewayConfig

DEFAULT_CONFIG_PATH = Path("llmpulse.yaml")
_SECRET_FIELDS = frozenset(
    {"api_key", "headers", "token", "password", "master_key", "keys", "extra_headers"}
)
_ENV_REF = re.compile(r"^(?:os\.environ/([A-Za-z_][A-Za-z0-9_]*)|\$\{([A-Za-z_][A-Za-z0-9_]*)\})$")


def env_var(value: str) -> str | None:
    """The variable named by a secret reference (``os.environ/NAME`` or ``${NAME}``), else None."""
    match = _ENV_REF.match(value.strip())
    return (match.group(1) or match.group(2)) if match else None


class ConfigError(Exception):
    """Invalid configuration; the message names the key path and what is expected."""


class PriceOverride(BaseModel):
    """USD per million tokens. Cached/cache-write rates fall back to the catalogue's."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    cached_input_per_mtok: float | None = Field(default=None, ge=0)
    cache_write_per_mtok: float | None = Field(default=None, ge=0)


def _known_rules(value: dict[str, RuleOverride]) -> dict[str, RuleOverride]:
    unknown = set(value) - set(DEFAULT_RULES)
    if unknown:
        raise ValueError(
            f"unknown rule {', '.join(sorted(unknown))}; expected one of {', '.join(DEFAULT_RULES)}"
        )
    return value


RuleOverrides = Annotated[dict[str, RuleOverride], AfterValidator(_known_rules)]
_ALL_CHECKS = list(CheckKind)  # iterating an Enum is slow enough to show over 80,000 targets


class TargetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str | None = None
    provider: str
    model: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    checks: list[CheckKind] = Field(default_factory=_ALL_CHECKS.copy, min_length=1)
    interval: Duration = 30.0
    timeout: Duration = 20.0
    connect_timeout: Duration = 5.0
    first_token_timeout: Duration | None = None
    idle_timeout: Duration = 10.0
    max_tokens: int = Field(default=64, ge=1, le=4096)
    prices: PriceOverride | None = None
    context_window: int | None = Field(default=None, ge=1)
    headers: dict[str, str] = Field(default_factory=dict)
    api_version: str | None = None
    deployment: str | None = None
    tps_floor: float | None = Field(default=None, gt=0)
    rules: RuleOverrides = Field(default_factory=dict)

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        if value not in PRESETS:
            raise ValueError(f"unknown provider; expected one of {', '.join(PRESETS)}")
        return value

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value

    @field_validator("api_key")
    @classmethod
    def _env_reference(cls, value: str | None) -> str | None:
        if value is not None and env_var(value) is None:
            raise ValueError(
                "must reference an environment variable as os.environ/NAME or ${NAME}; "
                "keys are never written in the config file"
            )
        return value

    @field_validator("headers")
    @classmethod
    def _credential_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, header in value.items():
            if is_credential_header(name) and env_var(header) is None:
                raise ValueError(
                    f"header {name!r} carries a credential: reference an environment variable "
                    "as os.environ/NAME or ${NAME}; keys are never written in the config file"
                )
        return value

    @field_validator("checks")
    @classmethod
    def _unique_checks(cls, value: list[CheckKind]) -> list[CheckKind]:
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _complete(self) -> TargetConfig:
        preset = PRESETS[self.provider]
        if self.model is None and preset.default_model is None:
            raise ValueError(f"'model' is required for provider {self.provider}")
        if self.base_url is None and preset.base_url is None:
            raise ValueError(f"'base_url' is required for provider {self.provider}")
        if self.provider == "azure" and not self.api_version:
            raise ValueError("'api_version' is required for provider azure (e.g. 2024-10-21)")
        if self.first_token_timeout is not None and self.first_token_timeout > self.timeout:
            raise ValueError("'first_token_timeout' cannot exceed 'timeout'")
        return self


class MonitorSettings(BaseModel):
    """How ``llmpulse run`` schedules checks and keeps data."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    retry_interval: Duration = 1.5
    confirmations: int = Field(default=3, ge=1, le=20)
    concurrency: int = Field(default=256, ge=1, le=100_000)
    raw_retention: Duration = 7 * 86400.0
    rollup_retention: Duration = 400 * 86400.0
    status_pages: bool = True
    status_interval: Duration = 60.0
    # Several agents sharing one PostgreSQL store: who this one is, where it probes from, and
    # how many regions must agree before a condition holds (see monitor.alerting).
    agent: str | None = Field(default=None, min_length=1, max_length=100)
    region: str | None = Field(default=None, min_length=1, max_length=100)
    min_regions: int = Field(default=1, ge=1, le=100)


class AlertingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    repeat_interval: Duration = 4 * 3600.0
    # 0: resolve, notify or release a flapping alert without waiting.
    resolve_after: DurationOrZero = 30.0
    group_wait: DurationOrZero = 1.0
    flap_window: Duration = 3600.0
    flap_threshold: int = Field(default=3, ge=2)
    flap_resolve_after: DurationOrZero = 600.0


class ProviderSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    rules: RuleOverrides = Field(default_factory=dict)
    # A Statuspage summary.json URL, or false to not poll this provider's status page.
    status_page: str | Literal[False] | None = None


class SilenceConfig(BaseModel):
    """A maintenance window in the config: glob patterns and a time range."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    target: str = "*"
    provider: str = "*"
    rule: str = "*"
    starts: datetime | None = None
    ends: datetime
    comment: str = ""


def _address(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:8080, got {value!r}")
    return value


Address = Annotated[str, AfterValidator(_address)]


def _secret_reference(value: str | None) -> str | None:
    if value is not None and env_var(value) is None:
        raise ValueError("must reference an environment variable: os.environ/NAME or ${NAME}")
    return value


SecretReference = Annotated[str | None, AfterValidator(_secret_reference)]


class WebSettings(BaseModel):
    """The dashboard, API and public status page that ``llmpulse run`` serves."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    enabled: bool = True
    listen: Address = "127.0.0.1:8080"
    # Also serve the public status page alone on this address (no auth, nothing else).
    status_listen: Address | None = None
    # Required off loopback: a bearer token, or basic auth, each referenced from the environment.
    token: SecretReference = None
    username: str | None = None
    password: SecretReference = None
    # false: serve the UI and API off loopback without any credentials (an explicit opt-out).
    auth: bool = True
    # A browser's sign-in ends after this long without a request (each request restarts it).
    session_timeout: Duration = Field(
        default=12 * 3600.0, gt=0, le=365 * 86400.0, allow_inf_nan=False
    )
    title: str = "llmpulse"

    @model_validator(mode="after")
    def _credentials_complete(self) -> WebSettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("'username' and 'password' go together")
        return self


class TelemetrySettings(BaseModel):
    """OTLP export (http/protobuf) of a span and metrics per check result; off unless present.

    Unset keys leave the OpenTelemetry SDK's standard variables in charge
    (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS, OTEL_SERVICE_NAME,
    OTEL_METRIC_EXPORT_INTERVAL, ...).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    # The collector's base URL, as OTEL_EXPORTER_OTLP_ENDPOINT: /v1/traces and /v1/metrics are
    # appended.
    endpoint: str | None = None
    # Header name -> os.environ/NAME or ${NAME}: collector credentials never sit in the file.
    headers: dict[str, str] = Field(default_factory=dict)
    service_name: str | None = None
    traces: bool = True
    metrics: bool = True
    export_interval: Duration | None = None

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL (OTLP over HTTP)")
        return value

    @field_validator("headers")
    @classmethod
    def _env_references(cls, value: dict[str, str]) -> dict[str, str]:
        for name, ref in value.items():
            if env_var(ref) is None:
                raise ValueError(
                    f"header {name!r} must reference an environment variable as os.environ/NAME "
                    "or ${NAME}; credentials are never written in the config file"
                )
        return value


class ConfigFile(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    # May be empty when the file has a LiteLLM model_list (the gateway's deployments).
    targets: list[TargetConfig] = Field(default_factory=list)
    # Results: a SQLite file path, sqlite:///PATH or postgresql://USER@HOST/DB.
    storage: str | None = None
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    alerting: AlertingSettings = Field(default_factory=AlertingSettings)
    rules: RuleOverrides = Field(default_factory=dict)
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)
    silences: list[SilenceConfig] = Field(default_factory=list)
    web: WebSettings = Field(default_factory=WebSettings)
    # Validated by llmpulse.alerts.notifiers, which owns each channel's settings.
    notifiers: list[dict[str, Any]] = Field(default_factory=list)
    telemetry: TelemetrySettings | None = None

    @field_validator("providers")
    @classmethod
    def _known_providers(cls, value: dict[str, ProviderSettings]) -> dict[str, ProviderSettings]:
        unknown = set(value) - set(PRESETS)
        if unknown:
            raise ValueError(f"unknown provider {', '.join(sorted(unknown))}")
        return value


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """A resolved target: everything a probe needs, the key already read from the environment."""

    name: str
    provider: str
    protocol: str
    model: str
    base_url: str
    api_key: str | None = dataclasses.field(default=None, repr=False)
    checks: tuple[CheckKind, ...] = tuple(CheckKind)
    interval: float = 30.0
    timeout: float = 20.0
    connect_timeout: float = 5.0
    first_token_timeout: float | None = None
    idle_timeout: float = 10.0
    max_tokens: int = 64
    prices: PriceOverride | None = None
    context_window: int | None = None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)
    api_version: str | None = None
    deployment: str | None = None
    max_tokens_field: str = "max_tokens"
    stream_include_usage: bool = True
    price_provider: str | None = None
    tps_floor: float | None = None
    rules: Mapping[str, RuleOverride] = dataclasses.field(default_factory=dict, repr=False)
    # A gateway deployment with no key to send: what to set. Its probes report auth without
    # calling the provider.
    missing_key: str | None = None

    @property
    def secrets(self) -> tuple[str, ...]:
        """Its key and credential headers: what a provider may echo back."""
        return credentials(self.api_key, self.headers)


@dataclasses.dataclass(frozen=True, slots=True)
class WebConfig:
    """Resolved web settings: addresses split, credentials read from the environment."""

    host: str = "127.0.0.1"
    port: int = 8080
    enabled: bool = True
    status_host: str | None = None
    status_port: int | None = None
    token: str | None = dataclasses.field(default=None, repr=False)
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    auth: bool = True
    session_timeout: float = 12 * 3600.0
    title: str = "llmpulse"

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.token, self.password) if s)

    @property
    def requires_auth(self) -> bool:
        """Credentials are checked when any are set, or off loopback unless opted out."""
        if not self.auth:
            return False
        return bool(self.token or self.password) or not is_loopback(self.host)


@dataclasses.dataclass(frozen=True, slots=True)
class TelemetryConfig:
    """Resolved telemetry settings: header values read from the environment (never shown)."""

    endpoint: str | None = None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)
    service_name: str | None = None
    traces: bool = True
    metrics: bool = True
    export_interval: float | None = None


def resolve_telemetry(
    settings: TelemetrySettings, env: Mapping[str, str], where: str = ""
) -> TelemetryConfig:
    headers = {}
    for name, ref in settings.headers.items():
        var = env_var(ref)
        assert var is not None  # validated
        if not env.get(var):
            raise ConfigError(
                f"{where}telemetry.headers.{name}: environment variable {var} is not set"
            )
        headers[name] = env[var]
    return TelemetryConfig(
        endpoint=settings.endpoint.rstrip("/") if settings.endpoint else None,
        headers=headers,
        service_name=settings.service_name,
        traces=settings.traces,
        metrics=settings.metrics,
        export_interval=settings.export_interval,
    )


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def resolve_web(settings: WebSettings, env: Mapping[str, str], where: str = "") -> WebConfig:
    """Resolve the web section; off loopback it must name credentials or opt out of auth."""
    secrets: dict[str, str | None] = {}
    for key in ("token", "password"):
        ref = getattr(settings, key)
        if ref is None:
            secrets[key] = None
            continue
        var = env_var(ref)
        assert var is not None  # validated
        if not env.get(var):
            raise ConfigError(f"{where}web.{key}: environment variable {var} is not set")
        secrets[key] = env[var]
    host, port = split_address(settings.listen)
    status_host, status_port = (
        split_address(settings.status_listen) if settings.status_listen else (None, None)
    )
    web = WebConfig(
        host=host,
        port=port,
        enabled=settings.enabled,
        status_host=status_host,
        status_port=status_port,
        token=secrets["token"],
        username=settings.username,
        password=secrets["password"],
        auth=settings.auth,
        session_timeout=settings.session_timeout,
        title=settings.title,
    )
    _check_credentials(web, where + "web.listen")
    return web


def with_web(
    config: Config,
    *,
    listen: str | None = None,
    status_listen: str | None = None,
    enabled: bool | None = None,
) -> Config:
    """The config with command-line overrides of its web section, validated like the file."""
    web = config.web
    for option, value in (("--listen", listen), ("--status-listen", status_listen)):
        if value is None:
            continue
        try:
            host, port = split_address(_address(value))
        except ValueError as exc:
            raise ConfigError(f"{option}: {exc}") from None
        if option == "--listen":
            web = dataclasses.replace(web, host=host, port=port)
        else:
            web = dataclasses.replace(web, status_host=host, status_port=port)
    if enabled is not None:
        web = dataclasses.replace(web, enabled=enabled)
    if listen is not None:
        _check_credentials(web, "--listen")
    return dataclasses.replace(config, web=web)


def _check_credentials(web: WebConfig, where: str) -> None:
    if web.enabled and web.requires_auth and not (web.token or web.password):
        raise ConfigError(
            f"{where}: {web.host}:{web.port} is not a loopback address, so the dashboard needs "
            "credentials: set web.token (or web.username and web.password), or web.auth: false"
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    targets: list[Target]
    storage: str | None = None
    source: Path | None = None
    monitor: MonitorSettings = dataclasses.field(default_factory=MonitorSettings)
    alerting: AlertingSettings = dataclasses.field(default_factory=AlertingSettings)
    rules: Mapping[str, RuleOverride] = dataclasses.field(default_factory=dict)
    providers: Mapping[str, ProviderSettings] = dataclasses.field(default_factory=dict)
    silences: list[SilenceConfig] = dataclasses.field(default_factory=list)
    notifiers: list[Notifier] = dataclasses.field(default_factory=list)
    web: WebConfig = dataclasses.field(default_factory=WebConfig)
    # The LiteLLM-format model_list and router settings, when the file has them.
    gateway: GatewayConfig | None = None
    # OTLP export; None (the default) exports nothing.
    telemetry: TelemetryConfig | None = None
    # Said once by whoever loads the config (e.g. settings that are accepted but ignored).
    warnings: tuple[str, ...] = ()

    @property
    def redactor(self) -> Redactor:
        """Removes every secret this config holds (and anything key-shaped) from outside text."""
        secrets: list[str] = [*self.web.secrets, *url_password(self.storage)]
        for target in self.targets:
            secrets += target.secrets
        for notifier in self.notifiers:
            secrets += notifier.secrets
        if self.gateway is not None:
            secrets += self.gateway.secrets
        if self.telemetry is not None:
            secrets += self.telemetry.headers.values()
        return _redactor(frozenset(secrets))


@functools.lru_cache(maxsize=16)
def _redactor(secrets: frozenset[str]) -> Redactor:
    # Each part of a process asks its config for the redactor: compiled once.
    return Redactor(secrets)


# Loading a config only to serve the dashboard, or only the public status page, from the
# database: provider keys and notifier secrets are not needed (and the status page needs no
# web credentials either), so a host that serves it holds none of them.
ServeOnly = Literal["dashboard", "status_page"]


def load_config(
    path: str | Path, env: Mapping[str, str] | None = None, *, serve_only: ServeOnly | None = None
) -> Config:
    """Read and validate a config file; ConfigError says what is wrong and where."""
    path = Path(path)
    # Paused as in read_yaml: validating 80,000 targets builds a million acyclic objects.
    with gc_paused():
        try:
            raw = read_yaml(path)  # bounded: size, depth and aliases (see llmpulse.yamlfile)
        except YAMLFileError as exc:
            raise ConfigError(str(exc)) from None
        return parse_config(raw, env=env, source=path, serve_only=serve_only)


def parse_config(
    raw: Any,
    env: Mapping[str, str] | None = None,
    source: Path | None = None,
    *,
    serve_only: ServeOnly | None = None,
) -> Config:
    where = f"{source}: " if source else ""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{where}expected a mapping with a 'targets' or 'model_list' list at the top level"
        )
    from llmpulse.gateway.config import SECTIONS, parse_gateway  # it imports from here

    try:
        parsed = ConfigFile.model_validate({k: v for k, v in raw.items() if k not in SECTIONS})
    except ValidationError as exc:
        raise ConfigError(where + _format_errors(exc)) from None
    env = os.environ if env is None else env
    # The monitor serves no gateway clients, so access control it lacks is `llmpulse gateway`'s
    # to refuse.
    need_keys = serve_only is None
    gateway = parse_gateway(raw, env, where, accept_unenforced_auth=True, gateway_secrets=need_keys)
    if not parsed.targets and not (gateway and gateway.deployments):
        if gateway is not None and gateway.skipped:
            raise ConfigError(f"{where}{gateway.nothing_to_serve}")
        raise ConfigError(f"{where}targets: expected at least one target, or a model_list")
    targets = [_resolve(i, t, env, where, need_keys) for i, t in enumerate(parsed.targets)]
    seen: set[str] = set()
    for i, target in enumerate(targets):
        if target.name in seen:
            raise ConfigError(f"{where}targets[{i}].name: duplicate target name {target.name!r}")
        seen.add(target.name)
    for target in gateway.targets() if gateway else ():
        if target.name in seen:
            raise ConfigError(
                f"{where}model_list: deployment {target.name!r} has the name of a target; "
                "rename the target or set gateway.monitor: false"
            )
        targets.append(target)
    from llmpulse.alerts.notifiers import build_notifiers  # it imports ConfigError from here

    try:
        notifiers = build_notifiers(parsed.notifiers, env) if need_keys else []
    except ConfigError as exc:
        raise ConfigError(f"{where}{exc}") from None
    web = parsed.web
    if serve_only == "status_page":
        # The public page needs no credentials, on any address; the dashboard, not served
        # here, keeps them.
        web = web.model_copy(
            update={"token": None, "username": None, "password": None, "auth": False}
        )
    return Config(
        targets=targets,
        storage=resolve_storage(parsed.storage, env, where),
        source=source,
        monitor=parsed.monitor,
        alerting=parsed.alerting,
        rules=parsed.rules,
        providers=parsed.providers,
        silences=parsed.silences,
        notifiers=notifiers,
        web=resolve_web(web, env, where),
        gateway=gateway,
        # Serving the web UI exports nothing: its collector's credentials are not needed.
        telemetry=(
            resolve_telemetry(parsed.telemetry, env, where)
            if parsed.telemetry and need_keys
            else None
        ),
        warnings=gateway.warnings if gateway else (),
    )


def resolve_storage(value: str | None, env: Mapping[str, str], where: str = "") -> str | None:
    """Where results live: $LLMPULSE_STORAGE_URL over the ``storage`` key (a file path,
    sqlite:///PATH or postgresql://...), validated; None for the default SQLite file."""
    from llmpulse.store.url import STORAGE_ENV, check_location, redact_url

    for name, location in ((STORAGE_ENV, env.get(STORAGE_ENV)), (f"{where}storage", value)):
        if location is None or (name == STORAGE_ENV and not location):
            continue
        try:
            check_location(location)
        except ValueError as exc:
            raise ConfigError(f"{name}: {redact_url(str(exc))}") from None
        return location
    return None


@functools.lru_cache(maxsize=1024)
def preset_target(provider: str, model: str) -> Target:
    """A keyless target of a preset's defaults: what prices and context windows are looked up
    by when only a provider and a model are known (SDK calls, routing by cost)."""
    preset = PRESETS[provider]
    return Target(
        name=f"{provider}/{model}",
        provider=provider,
        protocol=preset.protocol,
        model=model,
        base_url=preset.base_url or "",
        price_provider=preset.price_provider,
    )


def discover_targets(env: Mapping[str, str] | None = None) -> list[Target]:
    """One target per provider whose standard key variable is set, on its cheap default model."""
    env = os.environ if env is None else env
    targets = []
    for provider in DISCOVERABLE:
        preset = PRESETS[provider]
        var = next((v for v in preset.env if env.get(v)), None)
        if var is None:
            continue
        cfg = TargetConfig(provider=provider, api_key=f"os.environ/{var}")
        targets.append(_resolve(len(targets), cfg, env, ""))
    return targets


def _resolve(
    index: int, cfg: TargetConfig, env: Mapping[str, str], where: str, need_key: bool = True
) -> Target:
    """A target with its references read from ``env``; without ``need_key`` (serving the web
    UI only) a provider key or credential header whose variable is unset is left out."""
    preset = PRESETS[cfg.provider]
    api_key = None
    if cfg.api_key is not None:
        var = env_var(cfg.api_key)
        assert var is not None  # validated above
        api_key = env.get(var)
        if not api_key and need_key:
            raise ConfigError(
                f"{where}targets[{index}].api_key: environment variable {var} is not set"
            )
    elif preset.needs_key:
        var = next((v for v in preset.env if env.get(v)), None)
        if var is None and need_key:
            names = " or ".join(preset.env)
            raise ConfigError(
                f"{where}targets[{index}].api_key: not set, and {names} is not in the environment"
            )
        api_key = env[var] if var else None
    headers = {}
    for name, value in cfg.headers.items():
        var = env_var(value)
        if var is None:
            headers[name] = value
        elif env.get(var):
            headers[name] = env[var]
        elif need_key:
            raise ConfigError(
                f"{where}targets[{index}].headers.{name}: environment variable {var} is not set"
            )
    model = cfg.model or preset.default_model
    assert model is not None
    base_url = (cfg.base_url or preset.base_url or "").rstrip("/")
    return Target(
        name=cfg.name or f"{cfg.provider}/{model}",
        provider=cfg.provider,
        protocol=preset.protocol,
        model=model,
        base_url=base_url,
        api_key=api_key,
        checks=tuple(cfg.checks),
        interval=cfg.interval,
        timeout=cfg.timeout,
        connect_timeout=min(cfg.connect_timeout, cfg.timeout),
        first_token_timeout=cfg.first_token_timeout,
        idle_timeout=min(cfg.idle_timeout, cfg.timeout),
        max_tokens=cfg.max_tokens,
        prices=cfg.prices,
        context_window=cfg.context_window,
        headers=headers,
        api_version=cfg.api_version,
        deployment=cfg.deployment,
        max_tokens_field=preset.max_tokens_field,
        stream_include_usage=preset.stream_include_usage,
        price_provider=preset.price_provider,
        tps_floor=cfg.tps_floor,
        rules=cfg.rules,
    )


def _format_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = err["loc"]
        path = ""
        for part in loc:
            if isinstance(part, int):
                path += f"[{part}]"
                continue
            # A key is the file's text: one with a line break or control character is quoted,
            # so the error stays one line.
            name = part if part.isprintable() else repr(part)
            path += f".{name}" if path else name
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["type"] == "missing":
            message = "required key is missing"
        # Echo only scalar values of non-secret keys: an unknown key may hold a pasted secret.
        secret = any(part in _SECRET_FIELDS for part in loc if isinstance(part, str))
        shown = not secret and err["type"] not in ("missing", "extra_forbidden")
        value = err.get("input")
        scalar = isinstance(value, str | int | float | bool)
        got = f" (got {value!r})" if shown and scalar and repr(value) not in message else ""
        lines.append(f"{path or '(top level)'}: {message}{got}")
    return "; ".join(lines)
