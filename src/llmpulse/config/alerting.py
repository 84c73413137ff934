"""The sections that tune detection and alerting: ``monitor``, ``alerting``, ``providers``
and ``silences`` (rule overrides themselves are ``llmpulse.rules.RuleOverride``)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

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
