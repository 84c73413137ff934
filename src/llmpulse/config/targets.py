"""The ``targets:`` section: each entry validated, its references read from the environment,
resolved into a ``Target``; and targets discovered from the standard key variables."""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llmpulse import catalog
from llmpulse.config.errors import ConfigError
from llmpulse.config.probes import (
    GEMINI_FORMAT,
    ProbeConfig,
    canary_probe,
    converse_params_problem,
    gemini_params_problem,
)
from llmpulse.durations import Duration
from llmpulse.presets import (
    DISCOVERABLE,
    PRESETS,
    VERTEX_LOCATION,
    VERTEX_PROJECT,
    arn_region,
    bedrock_url,
    protocol_for,
    supports,
    vertex_base_url,
    vertex_serves,
)
from llmpulse.result import CheckKind
from llmpulse.rules import RuleOverrides
from llmpulse.secrets import env_var, is_credential_header
from llmpulse.target import LONG_CONTEXT_TOKENS, PriceOverride, Target

# The built-in checks every target runs unless ``checks`` says otherwise (a list: iterating an
# Enum is slow enough to show over 80,000 targets).
_ALL_CHECKS = [CheckKind.MODELS, CheckKind.INFERENCE, CheckKind.STREAM]
# Providers whose base URL is made from other settings (a location, a region), not given.
_URL_MADE = frozenset({"vertex", "bedrock"})


class TargetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str | None = None
    provider: str
    model: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    checks: list[CheckKind] = Field(default_factory=_ALL_CHECKS.copy)
    probes: list[ProbeConfig] = Field(default_factory=list, max_length=64)
    canary: bool = False  # the built-in correctness canary, off by default
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
    retires: datetime.date | None = None  # the model's announced retirement (model_deprecated)
    # Vertex AI only: the Google Cloud project, its location (a region such as us-east5, or
    # global), and the path of a service-account JSON file (else application default
    # credentials). The file is referenced, never read into the config.
    project: str | None = None
    location: str | None = None
    credentials_file: str | None = Field(default=None, min_length=1)
    # The status-page components (names or globs) that carry this target's API; None: the
    # provider's default (probe.official.DEFAULT_COMPONENTS); []: the whole page.
    status_components: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        default=None, max_length=50
    )
    region: str | None = Field(default=None, pattern=r"^[a-z0-9-]{1,32}$")  # AWS Bedrock
    aws_profile: str | None = Field(default=None, min_length=1)  # else the standard chain

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

    @field_validator("project")
    @classmethod
    def _project_id(cls, value: str | None) -> str | None:
        if value is not None and not VERTEX_PROJECT.fullmatch(value):
            raise ValueError("expected a Google Cloud project id such as my-project-123")
        return value

    @field_validator("location")
    @classmethod
    def _location(cls, value: str | None) -> str | None:
        if value is not None and not VERTEX_LOCATION.fullmatch(value):
            raise ValueError("expected a Google Cloud region such as us-east5, or global")
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

    @field_validator("probes")
    @classmethod
    def _unique_probes(cls, value: list[ProbeConfig]) -> list[ProbeConfig]:
        seen: set[str] = set()
        for probe in value:
            if probe.name in seen:
                raise ValueError(f"two probes are named {probe.name!r}; a name must be unique")
            seen.add(probe.name)
        return value

    @model_validator(mode="after")
    def _complete(self) -> TargetConfig:
        preset = PRESETS[self.provider]
        if self.model is None and preset.default_model is None:
            raise ValueError(f"'model' is required for provider {self.provider}")
        vertex = ("project", "location", "credentials_file")
        if self.provider == "vertex":
            for name in vertex[:2]:
                if getattr(self, name) is None:
                    raise ValueError(f"'{name}' is required for provider vertex")
            if self.model is not None and not vertex_serves(self.model):
                raise ValueError(
                    "'model' of provider vertex: expected a Gemini (gemini-...) or Claude "
                    "(claude-...) model"
                )
        elif given := [n for n in vertex if getattr(self, n) is not None]:
            raise ValueError(f"'{given[0]}' is only for provider vertex")
        if (self.region is not None or self.aws_profile is not None) and self.provider != "bedrock":
            raise ValueError("'region' and 'aws_profile' apply to provider bedrock only")
        if self.provider == "bedrock" and self.api_key is not None:
            raise ValueError(
                "'api_key' does not apply to provider bedrock: requests are signed with AWS "
                "credentials (the standard chain, or 'aws_profile')"
            )
        if self.base_url is None and preset.base_url is None and preset.name not in _URL_MADE:
            raise ValueError(f"'base_url' is required for provider {self.provider}")
        if self.provider == "azure" and not self.api_version:
            raise ValueError("'api_version' is required for provider azure (e.g. 2024-10-21)")
        if self.first_token_timeout is not None and self.first_token_timeout > self.timeout:
            raise ValueError("'first_token_timeout' cannot exceed 'timeout'")
        if not self.checks and not self.probes and not self.canary:
            raise ValueError("'checks' is empty and there are no 'probes': nothing to run")
        protocol = protocol_for(self.provider, self.model or preset.default_model or "")
        offered = (("checks", kind) for kind in self.checks)
        custom = ((f"probes[{i}].kind", p.kind) for i, p in enumerate(self.probes))
        for key, kind in (*offered, *custom):
            if not supports(protocol, kind):
                fix = "remove it from 'checks'" if key == "checks" else "choose another kind"
                raise ValueError(
                    f"'{key}': {kind!s} is not offered by provider {self.provider} (its "
                    f"{protocol} API has no such endpoint); {fix}"
                )
        return self


def discover_targets(env: Mapping[str, str] | None = None) -> list[Target]:
    """One target per provider whose standard key variable is set, on its cheap default model."""
    env = os.environ if env is None else env
    targets: list[Target] = []
    for provider in DISCOVERABLE:
        preset = PRESETS[provider]
        var = next((v for v in preset.env if env.get(v)), None)
        if var is None:
            continue
        cfg = TargetConfig(provider=provider, api_key=f"os.environ/{var}")
        targets.append(resolve_target(len(targets), cfg, env, ""))
    return targets


def resolve_target(
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
    region = None
    if cfg.provider == "bedrock":
        region = aws_region(cfg.region or arn_region(model), env)
        if region is None:
            raise ConfigError(
                f"{where}targets[{index}].region: not set, and neither AWS_REGION nor "
                "AWS_DEFAULT_REGION is in the environment (e.g. region: us-east-1)"
            )
    base_url = (cfg.base_url or preset.base_url or "").rstrip("/")
    credentials_file = None
    if cfg.provider == "vertex":
        assert cfg.location is not None  # validated above
        base_url = base_url or vertex_base_url(cfg.location)
        if cfg.credentials_file is not None:
            credentials_file = os.path.expanduser(cfg.credentials_file)
            if need_key and not os.path.isfile(credentials_file):
                raise ConfigError(
                    f"{where}targets[{index}].credentials_file: {credentials_file} is not a "
                    "file (expected the path of a service-account JSON file)"
                )
    if not base_url and region is not None:
        base_url = bedrock_url(region)
    protocol = protocol_for(cfg.provider, model)
    _check_params(index, cfg, protocol, where)
    probes = tuple(p.resolve() for p in cfg.probes)
    if cfg.canary:
        probes += (canary_probe(protocol),)
    target = Target(
        name=cfg.name or f"{cfg.provider}/{model}",
        provider=cfg.provider,
        protocol=protocol,
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
        tps_floor=cfg.tps_floor if cfg.tps_floor is not None else preset.tps_floor,
        rules=cfg.rules,
        retires=cfg.retires,
        project=cfg.project,
        location=cfg.location,
        credentials_file=credentials_file,
        probes=probes,
        status_components=(
            tuple(cfg.status_components) if cfg.status_components is not None else None
        ),
        region=region,
        aws={"profile": cfg.aws_profile} if cfg.aws_profile else {},
    )
    _check_input_tokens(index, cfg, target, where)
    return target


def _check_params(index: int, cfg: TargetConfig, protocol: str, where: str) -> None:
    """A probe's params in the body of the target's protocol: Gemini's settings go in
    ``generationConfig`` and Bedrock's in ``inferenceConfig``, where OpenAI's and Anthropic's
    are top-level."""
    if protocol in GEMINI_FORMAT:
        check = gemini_params_problem
    elif protocol == "bedrock":
        check = converse_params_problem
    else:
        return
    for i, probe in enumerate(cfg.probes):
        problem = check(probe.params)
        if problem is not None:
            key, message = problem
            raise ConfigError(f"{where}targets[{index}].probes[{i}].params.{key}: {message}")


def _check_input_tokens(index: int, cfg: TargetConfig, target: Target, where: str) -> None:
    """A long-context prompt must fit the model's context window, when it is known: the
    built-in check's, and each probe's."""
    window = catalog.context_window(target)
    if window is None:
        return
    if CheckKind.LONG_CONTEXT in target.checks and window < LONG_CONTEXT_TOKENS:
        raise ConfigError(
            f"{where}targets[{index}].checks: long_context sends a prompt of "
            f"{LONG_CONTEXT_TOKENS} tokens, over the context window of {target.model} "
            f"({window} tokens); measure a smaller one with a probe of kind long_context and "
            "its input_tokens"
        )
    for i, probe in enumerate(cfg.probes):
        if probe.input_tokens is not None and probe.input_tokens > window:
            raise ConfigError(
                f"{where}targets[{index}].probes[{i}].input_tokens: {probe.input_tokens} is over "
                f"the context window of {target.model} ({window} tokens)"
            )


def aws_region(configured: str | None, env: Mapping[str, str]) -> str | None:
    """The region a Bedrock target is in: its own (or its model ARN's), else the AWS SDKs'
    variables'."""
    return configured or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
