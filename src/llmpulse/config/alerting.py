"""The sections that tune detection and alerting: ``monitor``, ``alerting`` (with its
``routes``), ``providers`` and ``silences`` (rule overrides themselves are
``llmpulse.rules.RuleOverride``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from llmpulse.config.billing import ReconciliationSettings
from llmpulse.config.fields import Cron, SecretReference, TimeZone
from llmpulse.config.match import Globs
from llmpulse.durations import Duration, DurationOrZero
from llmpulse.rules import RuleOverrides


class MonitorSettings(BaseModel):
    """How ``llmpulse run`` schedules checks and keeps data."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    retry_interval: Duration = 1.5
    confirmations: int = Field(default=3, ge=1, le=20)
    concurrency: int = Field(default=256, ge=1, le=100_000)
    raw_retention: Duration = 7 * 86400.0
    rollup_retention: Duration = 400 * 86400.0
    # Users and tags kept by name per UTC day in the daily spend rollup; the rest as "other".
    spend_top_n: int = Field(default=1000, ge=1, le=100_000)
    status_pages: bool = True
    status_interval: Duration = 60.0
    # Several agents sharing one PostgreSQL store: who this one is, where it probes from, and
    # how many regions must agree before a condition holds (see monitor.alerting).
    agent: str | None = Field(default=None, min_length=1, max_length=100)
    region: str | None = Field(default=None, min_length=1, max_length=100)
    min_regions: int = Field(default=1, ge=1, le=100)
    # USD the probes may spend per UTC calendar month: intervals stretch to fit (probe.budget).
    probe_budget_usd: float | None = Field(default=None, gt=0, le=1_000_000)


NotifierNames = Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]


class RouteMatch(BaseModel):
    """Which alerts a route takes, by their labels; a key left out matches every alert."""

    model_config = ConfigDict(extra="forbid")
    severity: Globs | None = None
    provider: Globs | None = None
    target: Globs | None = None
    rule: Globs | None = None
    # Alerts of a gateway failover path (failover_path_broken): its group, the path ("a → b")
    # and the deployment that must answer. Other alerts have none of these labels.
    group: Globs | None = None
    path: Globs | None = None
    deployment: Globs | None = None


class EscalationStep(BaseModel):
    """Who is paged next when an alert is still firing and unacknowledged ``after`` its first
    page."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    after: Duration
    notify: NotifierNames


class RouteConfig(BaseModel):
    """One route of ``alerting.routes``, as in Alertmanager: the first route that matches takes
    the alert, unless it says ``continue: true`` and the next matching route takes it too."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    match: RouteMatch = Field(default_factory=RouteMatch)
    notify: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    escalate: list[EscalationStep] = Field(default_factory=list)
    continue_: bool = Field(default=False, alias="continue")

    @field_validator("escalate")
    @classmethod
    def _in_order(cls, value: list[EscalationStep]) -> list[EscalationStep]:
        afters = [step.after for step in value]
        if afters != sorted(afters):
            raise ValueError("escalation steps must be in the order of their 'after'")
        return value


class AlertingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    # None: every notifier gets every alert. A list: the routes decide (llmpulse.alerts.routes).
    routes: list[RouteConfig] | None = Field(default=None, min_length=1)
    # Hold back pages for a provider while its status page announces maintenance in progress.
    silence_official_maintenance: bool = False
    repeat_interval: Duration = 4 * 3600.0
    # 0: resolve, notify or release a flapping alert without waiting.
    resolve_after: DurationOrZero = 30.0
    group_wait: DurationOrZero = 1.0
    flap_window: Duration = 3600.0
    flap_threshold: int = Field(default=3, ge=2)
    flap_resolve_after: DurationOrZero = 600.0


# How a status page is read (``llmpulse.probe.official``): Atlassian Statuspage v2
# summary.json, Google Cloud's incidents.json, an AWS Health Dashboard service RSS feed, Azure's
# status RSS feed, or an incident feed in RSS/Atom (one entry per incident, as xAI's).
StatusFormat = Literal["statuspage", "google", "aws", "azure", "rss"]


class ProviderSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    rules: RuleOverrides = Field(default_factory=dict)
    # A status page's machine-readable URL, or false to not poll this provider's status page.
    status_page: str | Literal[False] | None = None
    # How ``status_page`` is read; None: guessed from its URL (probe.official.guess_format).
    status_format: StatusFormat | None = None
    # OpenAI's or Anthropic's admin key (os.environ/NAME): its own cost and usage reports are
    # compared daily with what llmpulse measured (config.billing).
    admin_key: SecretReference = None
    reconciliation: ReconciliationSettings = Field(default_factory=ReconciliationSettings)


class ScheduleConfig(BaseModel):
    """A recurring maintenance window: each occurrence of ``cron`` in ``timezone``, for
    ``duration`` (``llmpulse.schedule``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    cron: Cron
    duration: Duration
    timezone: TimeZone = "UTC"


class SilenceConfig(BaseModel):
    """A maintenance window in the config: glob patterns and a time range (``ends``, and
    ``starts`` or from the start), or a ``schedule`` of windows, from ``starts`` until ``ends``
    when given."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    target: str = "*"
    provider: str = "*"
    rule: str = "*"
    starts: datetime | None = None
    ends: datetime | None = None
    schedule: ScheduleConfig | None = None
    comment: str = ""

    @model_validator(mode="after")
    def _window(self) -> SilenceConfig:
        if self.ends is None and self.schedule is None:
            raise ValueError("a silence needs 'ends' (one window) or a 'schedule' (recurring)")
        return self
