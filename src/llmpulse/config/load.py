"""Loading a config file: its sections (one module each) assembled into one resolved ``Config``;
the LiteLLM sections are read by ``litellm``, and only what a process serves needs its keys."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llmpulse.config.alerting import (
    AlertingSettings,
    MonitorSettings,
    ProviderSettings,
    SilenceConfig,
)
from llmpulse.config.billing import BillingSource, resolve_billing
from llmpulse.config.errors import ConfigError, format_errors
from llmpulse.config.fields import check_address
from llmpulse.config.gateway import GatewayConfig
from llmpulse.config.keys import TeamConfig
from llmpulse.config.litellm import SECTIONS, parse_gateway
from llmpulse.config.notifiers import NotifierSettings, check_routes, resolve_notifiers
from llmpulse.config.rules import MetricRule, RulesSection, resolve_custom_rules
from llmpulse.config.slos import Slo, SloConfig, resolve_slos
from llmpulse.config.storage import resolve_storage
from llmpulse.config.targets import TargetConfig, resolve_target
from llmpulse.config.telemetry import TelemetryConfig, TelemetrySettings, resolve_telemetry
from llmpulse.config.web import (
    WebConfig,
    WebSettings,
    check_credentials,
    resolve_web,
    split_address,
)
from llmpulse.presets import PRESETS
from llmpulse.rules import RuleOverride, RuleSpec, resolve_rules
from llmpulse.secrets import Redactor, url_password
from llmpulse.target import Target
from llmpulse.yamlfile import YAMLFileError, gc_paused, read_yaml

DEFAULT_CONFIG_PATH = Path("llmpulse.yaml")


class ConfigFile(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    # May be empty when the file has a LiteLLM model_list (the gateway's deployments).
    targets: list[TargetConfig] = Field(default_factory=list)
    # Results: a SQLite file path, sqlite:///PATH or postgresql://USER@HOST/DB.
    storage: str | None = None
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    alerting: AlertingSettings = Field(default_factory=AlertingSettings)
    rules: RulesSection = Field(default_factory=RulesSection)
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)
    silences: list[SilenceConfig] = Field(default_factory=list)
    slos: list[SloConfig] = Field(default_factory=list)
    # Team budgets; resolved with the gateway (config.litellm), whose keys name the teams.
    teams: list[TeamConfig] = Field(default_factory=list)
    web: WebSettings = Field(default_factory=WebSettings)
    # Validated by llmpulse.config.notifiers, which knows each channel's settings.
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
class Config:
    targets: list[Target]
    storage: str | None = None
    source: Path | None = None
    monitor: MonitorSettings = dataclasses.field(default_factory=MonitorSettings)
    alerting: AlertingSettings = dataclasses.field(default_factory=AlertingSettings)
    rules: Mapping[str, RuleOverride] = dataclasses.field(default_factory=dict)
    # rules.custom, and nothing else: the built-in rules of METRIC_RULES are the targets'.
    custom_rules: tuple[MetricRule, ...] = ()
    providers: Mapping[str, ProviderSettings] = dataclasses.field(default_factory=dict)
    silences: list[SilenceConfig] = dataclasses.field(default_factory=list)
    slos: list[Slo] = dataclasses.field(default_factory=list)
    # Each channel's settings, references read; llmpulse.alerts.notifiers builds the channels.
    notifiers: list[NotifierSettings] = dataclasses.field(default_factory=list)
    web: WebConfig = dataclasses.field(default_factory=WebConfig)
    # The LiteLLM-format model_list and router settings, when the file has them.
    gateway: GatewayConfig | None = None
    # OTLP export; None (the default) exports nothing.
    telemetry: TelemetryConfig | None = None
    # Said once by whoever loads the config (e.g. settings that are accepted but ignored).
    warnings: tuple[str, ...] = ()
    # Providers whose own cost and usage reports are reconciled (providers.NAME.admin_key).
    billing: tuple[BillingSource, ...] = ()

    def target_rules(self, target: Target) -> dict[str, RuleSpec]:
        """The built-in rules as they apply to ``target``: defaults, then the overrides of the
        config, of its provider and of the target itself."""
        provider = self.providers.get(target.provider)
        return resolve_rules(self.rules, provider.rules if provider else None, target.rules)

    def provider_rules(self, provider: str | None) -> dict[str, RuleSpec]:
        """The built-in rules of a provider's own alerts (``rules.STORE_RULES``), or of those
        over every provider (None)."""
        settings = self.providers.get(provider) if provider else None
        return resolve_rules(self.rules, settings.rules if settings else None)

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
        secrets += (source.admin_key for source in self.billing)
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
    try:
        parsed = ConfigFile.model_validate({k: v for k, v in raw.items() if k not in SECTIONS})
    except ValidationError as exc:
        raise ConfigError(where + format_errors(exc)) from None
    env = os.environ if env is None else env
    # The monitor serves no gateway clients, so access control it lacks is `llmpulse gateway`'s
    # to refuse.
    need_keys = serve_only is None
    gateway = parse_gateway(raw, env, where, accept_unenforced_auth=True, gateway_secrets=need_keys)
    if not parsed.targets and not (gateway and gateway.deployments):
        if gateway is not None and gateway.skipped:
            raise ConfigError(f"{where}{gateway.nothing_to_serve}")
        raise ConfigError(f"{where}targets: expected at least one target, or a model_list")
    targets = [resolve_target(i, t, env, where, need_keys) for i, t in enumerate(parsed.targets)]
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
    try:
        notifiers = resolve_notifiers(parsed.notifiers, env) if need_keys else []
        check_routes(parsed.alerting.routes, parsed.notifiers)
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
        rules=parsed.rules.overrides,
        custom_rules=resolve_custom_rules(parsed.rules.custom, targets, where),
        providers=parsed.providers,
        silences=parsed.silences,
        slos=resolve_slos(parsed.slos, targets, where),
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
        # Only the alert leader reads the reports: serving the web UI needs no admin key.
        billing=(
            resolve_billing(
                {n: (p.admin_key, p.reconciliation) for n, p in parsed.providers.items()},
                env,
                where,
            )
            if need_keys
            else ()
        ),
    )


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
            host, port = split_address(check_address(value))
        except ValueError as exc:
            raise ConfigError(f"{option}: {exc}") from None
        if option == "--listen":
            web = dataclasses.replace(web, host=host, port=port)
        else:
            web = dataclasses.replace(web, status_host=host, status_port=port)
    if enabled is not None:
        web = dataclasses.replace(web, enabled=enabled)
    if listen is not None:
        check_credentials(web, "--listen")
    return dataclasses.replace(config, web=web)
