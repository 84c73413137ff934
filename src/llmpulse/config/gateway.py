"""The gateway's resolved configuration: model groups of deployments, router and gateway
settings. Read from LiteLLM's format by ``config.litellm``; used by ``llmpulse.gateway``."""

from __future__ import annotations

import dataclasses
import enum
import fnmatch
import functools
import re
from collections.abc import Mapping

from llmpulse.config.errors import ConfigError
from llmpulse.config.keys import GatewayKey, Team
from llmpulse.presets import PRESETS, protocol_for, vertex_serves
from llmpulse.result import CheckKind
from llmpulse.secrets import credentials, url_password
from llmpulse.target import PriceOverride, Target

MIB = 1 << 20
# Workers beat every second and the parent looks every second: a healthy beat is up to ~2 s
# old, so a shorter gateway.worker_timeout would kill healthy workers.
MIN_WORKER_TIMEOUT_S = 3.0
# LiteLLM's model_info capability flags: one set false takes the deployment out of routing
# (and readiness) for requests needing it (``gateway.translate.params.CAPABILITIES``).
CAPABILITY_FLAGS = (
    "supports_function_calling",
    "supports_vision",
    "supports_response_schema",
    "supports_reasoning",
)


class Strategy(enum.StrEnum):
    PRIORITY = "priority"
    WEIGHTED = "simple-shuffle"
    LATENCY = "latency-based-routing"
    LEAST_BUSY = "least-busy"
    RATE_LIMIT_AWARE = "usage-based-routing-v2"
    COST = "cost-based-routing"

    @classmethod
    def parse(cls, name: str) -> Strategy:
        try:
            return _ALIASES[name.strip().lower()]
        except KeyError:
            accepted = ", ".join(sorted(_ALIASES))
            raise ValueError(
                f"unknown routing strategy {name!r}; expected one of {accepted}"
            ) from None


_ALIASES = {
    **{s.value: s for s in Strategy},
    "order": Strategy.PRIORITY,
    "weighted": Strategy.WEIGHTED,
    "latency": Strategy.LATENCY,
    "latency-based": Strategy.LATENCY,
    "usage-based-routing": Strategy.RATE_LIMIT_AWARE,
    "rate-limit-aware": Strategy.RATE_LIMIT_AWARE,
    "cost": Strategy.COST,
    "cost-based": Strategy.COST,
}


@dataclasses.dataclass(frozen=True, slots=True)
class Deployment:
    """One entry of ``model_list``, resolved: where to send a request of its group."""

    group: str
    provider: str
    protocol: str
    model: str
    base_url: str
    id: str
    name: str
    api_key: str | None = dataclasses.field(default=None, repr=False)
    api_version: str | None = None
    rpm: int | None = None
    tpm: int | None = None
    order: int | None = None
    weight: float | None = None
    timeout: float | None = None
    stream_timeout: float | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    context_window: int | None = None
    base_model: str | None = None
    prices: PriceOverride | None = None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)
    drop_params: bool = False  # drop parameters it cannot honour instead of being skipped
    lacks: frozenset[str] = frozenset()  # CAPABILITY_FLAGS its model_info sets false
    # Set when there is no key to send: what to set. Requests get the provider's 401 and probes
    # report auth, neither calling the provider.
    missing_key: str | None = None
    # Vertex AI (vertex_ai/): project, location and the service-account file's path (None:
    # application default credentials).
    project: str | None = None
    location: str | None = None
    credentials_file: str | None = None
    # vertex_credentials holding the JSON itself rather than a path: a secret.
    credentials_info: str | None = dataclasses.field(default=None, repr=False)
    # vertex_ai/ api_base: the model's URL up to ":method" (a proxy's), as LiteLLM uses it.
    model_endpoint: str | None = None
    region: str | None = None  # AWS Bedrock's
    aws: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)  # Target.aws

    @property
    def wildcard(self) -> bool:
        return "*" in self.group

    @property
    def secrets(self) -> tuple[str, ...]:
        """Its key and credential headers: what its provider may echo back."""
        aws = (v for k, v in self.aws.items() if k != "profile")
        return credentials(self.api_key, self.headers) + tuple(aws)

    def expand(self, requested: str, segments: tuple[str, ...]) -> Deployment:
        """This wildcard deployment serving ``requested``: each ``*`` of the model filled in."""
        model = self.model
        if "*" in model:
            if len(segments) > model.count("*"):
                model = requested  # LiteLLM's rule when the wildcards cannot be mapped
            else:
                for segment in segments:
                    model = model.replace("*", segment, 1)
        return dataclasses.replace(
            self,
            model=model,
            protocol=protocol_for(self.provider, model),  # Claude or Gemini on Vertex AI
            name=f"{requested}/{self.provider}/{model}",
        )

    def to_target(self) -> Target:
        """The monitor's target for this deployment, probed with the monitor's defaults."""
        preset = PRESETS[self.provider]
        azure = self.protocol == "azure"
        target = Target(
            name=self.name,
            provider=self.provider,
            protocol=self.protocol,
            model=(self.base_model or self.model) if azure else self.model,
            base_url=self.base_url,
            api_key=self.api_key,
            prices=self.prices,
            context_window=self.context_window,
            headers=dict(self.headers),
            api_version=self.api_version,
            deployment=self.model if azure else None,
            max_tokens_field=preset.max_tokens_field,
            stream_include_usage=preset.stream_include_usage,
            price_provider=preset.price_provider,
            missing_key=self.missing_key,
            project=self.project,
            location=self.location,
            credentials_file=self.credentials_file,
            credentials_info=self.credentials_info,
            model_endpoint=self.model_endpoint,
            region=self.region,
            aws=dict(self.aws),
        )
        if self.model_endpoint is not None and "/publishers/" not in self.model_endpoint:
            # A proxy's URL that does not show Vertex's path: no publisher model to look up.
            target = dataclasses.replace(target, checks=(CheckKind.INFERENCE, CheckKind.STREAM))
        return target


@dataclasses.dataclass(frozen=True, slots=True)
class ModelGroup:
    """The deployments sharing one ``model_name``, in file order; a name with ``*`` is a pattern."""

    name: str
    deployments: tuple[Deployment, ...]

    @property
    def wildcard(self) -> bool:
        return "*" in self.name


@dataclasses.dataclass(frozen=True, slots=True)
class RouterSettings:
    """How requests are routed, retried and failed over (``router_settings``)."""

    strategy: Strategy = Strategy.PRIORITY
    num_retries: int = 2
    timeout: float | None = None
    stream_timeout: float | None = None
    retry_after: float = 0.0
    allowed_fails: int = 3
    cooldown_time: float = 5.0
    disable_cooldowns: bool = False
    fallbacks: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    context_window_fallbacks: Mapping[str, tuple[str, ...]] = dataclasses.field(
        default_factory=dict
    )
    content_policy_fallbacks: Mapping[str, tuple[str, ...]] = dataclasses.field(
        default_factory=dict
    )
    default_fallbacks: tuple[str, ...] = ()
    max_fallbacks: int = 5
    enable_pre_call_checks: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class DrillSettings:
    """``gateway.drills``: when the failover drills run (``gateway.drill``), each occurrence of
    the cron expression ``schedule`` in ``timezone`` (``llmpulse.schedule``)."""

    schedule: str
    timezone: str = "UTC"


@dataclasses.dataclass(frozen=True, slots=True)
class GatewaySettings:
    """llmpulse's own ``gateway:`` section, resolved."""

    host: str = "127.0.0.1"
    port: int = 4000
    # Gateway keys clients present (general_settings.master_key, then gateway.keys); an entry
    # without a digest is the policy of the run-time key of its name (config.keys).
    keys: tuple[GatewayKey, ...] = dataclasses.field(default=(), repr=False)
    ttft_limit: float | None = None
    idle_timeout: float = 30.0
    max_retry_wait: float = 10.0
    rate_limit_threshold: float = 0.9
    monitor: bool = True
    # How often each deployment is probed (None: the monitor's default interval).
    probe_interval: float | None = None
    store_prompts: bool = False
    # Replicas share routing state through Redis when set (gateway.shared); it may hold a
    # password, so it is never shown.
    redis_url: str | None = dataclasses.field(default=None, repr=False)
    redis_prefix: str = "llmpulse:gateway"
    # Bounds on what a client can make the gateway hold or create (README's "Limits").
    max_request_bytes: int = 32 * MIB
    max_json_depth: int = 128
    max_model_name_length: int = 256
    max_wildcard_targets: int = 1000  # distinct targets wildcard groups create; then the group's
    # For a request line and headers: from the connection opening, or a later request's first byte
    header_timeout: float = 30.0
    shutdown_grace: float = 10.0  # in-flight requests may finish; the rest are cancelled
    worker_timeout: float = 30.0  # --num_workers: a worker's loop stalled this long is killed
    # The gateway's own /metrics: served unless off (gateway.metrics_listen: false), on the
    # API's port (as LiteLLM serves it) and on a port of its own: gateway.metrics_listen's, or
    # (port None) loopback on the gateway's port + 1 when that is free.
    metrics: bool = True
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    drills: DrillSettings | None = None  # scheduled failover drills; None: only on demand

    @property
    def has_master_key(self) -> bool:
        """Whether general_settings.master_key is set: /metrics and the keys API take it."""
        return any(k.master for k in self.keys)


@dataclasses.dataclass(frozen=True, slots=True)
class GatewayConfig:
    groups: tuple[ModelGroup, ...]
    router: RouterSettings = dataclasses.field(default_factory=RouterSettings)
    settings: GatewaySettings = dataclasses.field(default_factory=GatewaySettings)
    # model_group_alias: name -> group; hidden ones are not listed by /v1/models.
    aliases: Mapping[str, str] = dataclasses.field(default_factory=dict)
    hidden_aliases: frozenset[str] = frozenset()
    # Said once by whoever loads the file: one line per concern, key paths only.
    warnings: tuple[str, ...] = ()
    # model_list entries not served, each "model_list[i] (why)".
    skipped: tuple[str, ...] = ()
    # ACCESS_CONTROL_SETTINGS the file asks for, as key paths.
    unenforced_auth: tuple[str, ...] = ()
    # ``teams:``: team budgets (a key may name a team not declared here).
    teams: tuple[Team, ...] = ()
    # False when read for a host serving only the web UI: the gateway's keys and Redis were not
    # read, and a provider key missing here may well be set where the gateway runs.
    secrets_read: bool = True

    @property
    def deployments(self) -> tuple[Deployment, ...]:
        return tuple(d for g in self.groups for d in g.deployments)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every provider key, credential header, gateway key and the Redis password."""
        out = [s for d in self.deployments for s in d.secrets]
        keys = [k.secret for k in self.settings.keys if k.secret]
        return (*out, *keys, *url_password(self.settings.redis_url))

    @property
    def nothing_to_serve(self) -> str:
        """Why no deployment is served, in one line (for the error of whoever needs one)."""
        if not self.skipped:
            return "model_list: no deployments"
        return (
            "model_list: no deployment llmpulse can serve (a chat model of a provider and auth "
            "method it supports): " + ", ".join(self.skipped)
        )

    def auth_warning(self, accept: bool, where: str = "") -> str | None:
        """What to say when serving a file that asks for access control llmpulse does not
        enforce; unless ``accept``, ConfigError instead (fail closed). None when it asks none."""
        if not self.unenforced_auth:
            return None
        keys = ", ".join(self.unenforced_auth)
        if not accept:
            raise ConfigError(
                f"{where}{keys}: access control llmpulse does not enforce (it checks gateway keys "
                "only); remove it, or pass --accept-unenforced-auth to serve without it"
            )
        return (
            f"serving without access control the config asks for ({keys}): llmpulse checks "
            "only general_settings.master_key and gateway.keys"
        )

    @property
    def model_names(self) -> list[str]:
        """Names a client can ask for (patterns excluded): groups, then visible aliases."""
        names = [g.name for g in self.groups if not g.wildcard]
        return names + [a for a in self.aliases if a not in self.hidden_aliases]

    def serves(self, glob: str) -> bool:
        """Whether a key's ``models`` entry names something served: it matches a group or an
        alias name (a pattern's name too), or is a model a wildcard group serves."""
        names = [g.name for g in self.groups] + list(self.aliases)
        return any(fnmatch.fnmatchcase(n, glob) for n in names) or any(
            group_pattern(g.name).fullmatch(glob) for g in self.groups if g.wildcard
        )

    def no_group(self, glob: str) -> str:
        """What to say of a ``models`` entry that ``serves`` nothing."""
        names = [g.name for g in self.groups] + list(self.aliases)
        return f"{glob!r} names no model group; the groups are: {', '.join(names)}"

    def resolve(self, requested_model: str) -> list[Deployment]:
        """The deployments serving ``requested_model``: exact group, alias, else a pattern."""
        name = self.aliases.get(requested_model, requested_model)
        for group in self.groups:
            if group.name == name and not group.wildcard:
                return list(group.deployments)
        for group in _by_specificity(self.groups):
            match = group_pattern(group.name).fullmatch(name)
            if match:
                expanded = (d.expand(name, match.groups()) for d in group.deployments)
                # vertex_ai/* asked for a model it cannot ask Vertex for: not served there.
                return [d for d in expanded if d.provider != "vertex" or vertex_serves(d.model)]
        return []

    def named(self, name: str) -> Deployment | None:
        """The deployment a route's target name names: a config deployment, or a wildcard
        deployment's expansion (``<requested>/<provider>/<model>``, its group the pattern's)."""
        for d in self.deployments:
            if d.name == name:
                return d
        # The requested model may hold "/<provider>/" itself: each split is resolved as the
        # gateway resolved it, and only the expansion of that very name counts.
        for d in self.deployments:
            if not d.wildcard:
                continue
            marker = f"/{d.provider}/"
            at = name.find(marker)
            while at > 0:
                for e in self.resolve(name[:at]):
                    if e.id == d.id and e.name == name:
                        return e
                at = name.find(marker, at + 1)
        return None

    def targets(self) -> list[Target]:
        """One monitored target per concrete deployment, unless ``gateway.monitor`` is off."""
        if not self.settings.monitor:
            return []
        # A wildcard deployment names no concrete model, so there is nothing to probe.
        targets = [d.to_target() for d in self.deployments if not d.wildcard]
        interval = self.settings.probe_interval
        if interval is None:
            return targets
        return [dataclasses.replace(t, interval=interval) for t in targets]


@functools.cache
def group_pattern(name: str) -> re.Pattern[str]:
    return re.compile(re.escape(name).replace(r"\*", "(.*)"))


def _by_specificity(groups: tuple[ModelGroup, ...]) -> list[ModelGroup]:
    # LiteLLM's order: longer patterns, then more wildcards, first.
    patterns = [g for g in groups if g.wildcard]
    return sorted(patterns, key=lambda g: (len(g.name), g.name.count("*")), reverse=True)
