"""The alert rules' vocabulary: severities, the built-in rules with their default thresholds,
and the overrides a config layers on them (globally, per provider, per target).

It sits below the config and the targets that carry overrides, and below the alert engine that
evaluates them (``alerts.window``).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from llmpulse.durations import Duration, DurationOrZero, parse_duration


class Severity(enum.StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"


@dataclasses.dataclass(frozen=True, slots=True)
class RuleSpec:
    id: str
    severity: Severity
    threshold: float
    min_samples: int = 3
    window_s: float = 300.0
    for_s: float = 0.0  # how long the condition must hold (pending) before the alert fires
    enabled: bool = True
    # Multi-window: the condition must also hold over this recent window, and once firing it is
    # judged over this window alone, so a recovery shows within a minute rather than when the
    # last bad sample leaves a 5 m window.
    clear_window_s: float | None = None
    # Rules on spend: below this many US dollars over the window, never a spike.
    min_usd: float = 0.0


# A point event rather than a condition: each change of the served model or system fingerprint
# is one alert episode of its own (``alerts.engine.Engine.observe``).
MODEL_CHANGED = "model_changed"
# Likewise, each change of the correctness canary's answer (``canary: true``) while the same
# model is served, or a wrong answer: the evidence is model_changed's, with the answer.
CANARY_CHANGED = "canary_changed"
CONTEXT_UTILIZATION_HIGH = "context_utilization_high"
BUDGET_WARNING = "budget_warning"  # spend reached the budget's warn_at
BUDGET_EXHAUSTED = "budget_exhausted"  # spend reached the budget
SPEND_FORECAST = "spend_forecast"  # at the current rate, spend reaches it before the period ends
# A gateway failover path whose latest drill failed (``gateway.drill``): per group and path,
# resolved by the next drill of the path that passes. A warning: the primary still serves.
FAILOVER_PATH_BROKEN = "failover_path_broken"
# A gateway model group without a ready fallback (``gateway.readiness``), per group.
FAILOVER_NOT_READY = "failover_not_ready"

DEFAULT_RULES: dict[str, RuleSpec] = {
    r.id: r
    for r in (
        RuleSpec("ttft_p95_high", Severity.WARNING, 3.0, min_samples=3, clear_window_s=30),
        # A warning may wait 10 s: in a hard outage the critical rules fire by then, and the
        # incident pages once as critical instead of warning-then-escalation.
        RuleSpec("error_rate_warning", Severity.WARNING, 0.05, 5, for_s=10, clear_window_s=30),
        RuleSpec("error_rate_critical", Severity.CRITICAL, 0.2, min_samples=5, clear_window_s=30),
        RuleSpec("consecutive_unavailable", Severity.CRITICAL, threshold=3, min_samples=3),
        RuleSpec("rate_limit_headroom", Severity.WARNING, threshold=0.70, min_samples=1),
        RuleSpec("auth_failure", Severity.CRITICAL, threshold=1, min_samples=1),
        RuleSpec("tps_low", Severity.WARNING, threshold=0.0, min_samples=3, clear_window_s=30),
        RuleSpec(
            "tokens_per_request_spike", Severity.WARNING, 3.0, min_samples=3, clear_window_s=30
        ),
        # Model lifecycle (see MODEL_CHANGED). A change holds for ``window`` after the answer
        # that showed it, so it pages once and resolves by itself; the threshold is unused.
        RuleSpec(MODEL_CHANGED, Severity.WARNING, threshold=0, min_samples=1, window_s=60),
        RuleSpec(CANARY_CHANGED, Severity.WARNING, threshold=0, min_samples=1, window_s=60),
        RuleSpec("model_unlisted", Severity.CRITICAL, threshold=0, min_samples=1),
        # The threshold is the notice period: how long before its retirement date a model warns.
        RuleSpec("model_deprecated", Severity.WARNING, threshold=30 * 86400, min_samples=1),
        # Per provider and overall, from the store (STORE_RULES): spend over the last hour
        # against the hourly average of the 7 days before it.
        RuleSpec("cost_spike", Severity.WARNING, 3.0, min_samples=1, window_s=3600, min_usd=1.0),
        # p95 of prompt tokens over the context window on real traffic (METRIC_RULES).
        RuleSpec(CONTEXT_UTILIZATION_HIGH, Severity.WARNING, 0.8, min_samples=5, window_s=3600),
        # Per gateway key and team with a budget (BUDGET_RULES, ``alerts.budgets``): thresholds
        # and windows are each budget's own, so theirs are unused.
        RuleSpec(BUDGET_WARNING, Severity.WARNING, threshold=0, min_samples=1),
        RuleSpec(BUDGET_EXHAUSTED, Severity.CRITICAL, threshold=0, min_samples=1),
        RuleSpec(SPEND_FORECAST, Severity.WARNING, threshold=0, min_samples=1),
        # Judged on each drill run, not over a window: threshold and window unused.
        RuleSpec(FAILOVER_PATH_BROKEN, Severity.WARNING, threshold=0, min_samples=1),
        # Per gateway model group (GROUP_RULES): fires when none of its fallbacks is ready,
        # resolves when one is; nothing fails yet, so a warning.
        RuleSpec(FAILOVER_NOT_READY, Severity.WARNING, threshold=0, min_samples=1),
    )
}
# Built-in rules that the metric-rule engine evaluates (``alerts.metric_rules``), as a custom
# rule of the same metric would be: each maps to (metric, sources it reads). Context use means
# something on real requests only: probes send a few tokens.
METRIC_RULES = {CONTEXT_UTILIZATION_HIGH: ("context_utilization_p95", ("traffic",))}
# The alerts the engine makes of its own (``alerts.engine``): a custom rule may not be named so.
INCIDENT = "availability"  # a target's incident record, notified under its lead rule's id
PROVIDER_RULE = "provider_down"
ALL_PROVIDERS_RULE = "all_providers_down"
OFFICIAL_STATUS_RULE = "official_status"
SLO_BURN_RULE = "slo_burn_rate"  # per SLO: its target is the SLO's name (alerts.slo)
# Per provider: its own bill and what llmpulse measured differ (alerts.billing).
BILLING_DRIFT_RULE = "billing_drift"
ENGINE_RULES = frozenset(
    {
        INCIDENT,
        PROVIDER_RULE,
        ALL_PROVIDERS_RULE,
        OFFICIAL_STATUS_RULE,
        SLO_BURN_RULE,
        BILLING_DRIFT_RULE,
    }
)
# Rules that say a target is failing. They are one incident per target (see alerts.engine),
# in order of which one's id and summary the page carries when several fire.
AVAILABILITY_RULES = ("consecutive_unavailable", "error_rate_critical", "error_rate_warning")
# Rules the leader computes from the store per provider and overall ("*"), not from a target's
# window of recent results; their per-target overrides are ignored.
STORE_RULES = ("cost_spike",)
# Rules the leader judges per gateway key and team with a budget (``alerts.budgets``), from the
# store; only the global overrides (severity, enabled) apply.
BUDGET_RULES = (BUDGET_WARNING, BUDGET_EXHAUSTED, SPEND_FORECAST)
# Rules the leader judges per gateway failover path, from drill results (``monitor.drills``);
# only the global overrides (severity, enabled) apply.
DRILL_RULES = (FAILOVER_PATH_BROKEN,)
# Rules the leader judges per gateway model group (subject ``group:NAME``, provider ``*``) from
# the store and the config; only the global overrides (severity, enabled) apply.
GROUP_RULES = (FAILOVER_NOT_READY,)


def group_subject(group: str) -> str:
    """A group rule's subject (its alerts' ``target``) for the model group ``group``."""
    return f"group:{group}"


# Rules a target's window of recent results does not evaluate.
NOT_WINDOWED = (*STORE_RULES, *METRIC_RULES, *BUDGET_RULES, *DRILL_RULES, *GROUP_RULES)
# Alerts that say nothing of how the service answers: they page like any other, but leave a
# target's status (dashboard, public status page, badges) and the public incidents alone; so do
# custom rules, which may watch anything (spend, volume).
INFORMATIONAL_RULES = frozenset(
    {
        MODEL_CHANGED,
        CANARY_CHANGED,
        "model_deprecated",
        CONTEXT_UTILIZATION_HIGH,
        BILLING_DRIFT_RULE,
        *STORE_RULES,
        *BUDGET_RULES,
        *DRILL_RULES,
        *GROUP_RULES,
    }
)


class Unit(enum.StrEnum):
    """A metric's unit: values, thresholds and webhook figures are in it, unscaled."""

    SECONDS = "seconds"
    FRACTION = "fraction"  # 0.05 for 5 %
    TOKENS_PER_S = "tokens/s"
    TOKENS = "tokens"
    COUNT = "count"
    USD = "USD"
    TIMES = "×"  # a multiple of a baseline (built-in spike rules only)


# The unit of each built-in rule's threshold; None: its threshold is unused (a point event,
# a listing).
THRESHOLD_UNITS: dict[str, Unit | None] = {
    "ttft_p95_high": Unit.SECONDS,
    "error_rate_warning": Unit.FRACTION,
    "error_rate_critical": Unit.FRACTION,
    "consecutive_unavailable": Unit.COUNT,
    "rate_limit_headroom": Unit.FRACTION,
    "auth_failure": Unit.COUNT,
    "tps_low": Unit.TOKENS_PER_S,
    "tokens_per_request_spike": Unit.TIMES,
    MODEL_CHANGED: None,
    CANARY_CHANGED: None,
    "model_unlisted": None,
    "model_deprecated": Unit.SECONDS,  # the notice period
    "cost_spike": Unit.TIMES,
    CONTEXT_UTILIZATION_HIGH: Unit.FRACTION,
    # Each budget's own threshold (USD), not the rule's.
    BUDGET_WARNING: None,
    BUDGET_EXHAUSTED: None,
    SPEND_FORECAST: None,
    FAILOVER_PATH_BROKEN: None,
    FAILOVER_NOT_READY: None,
}


class Aggregation(enum.StrEnum):
    """How a metric reduces the results of a window."""

    QUANTILE = "quantile"  # of the values the results carry
    RATE = "rate"  # results with a property over the results that count
    TOTAL = "total"  # sum over the window
    RATIO = "ratio"  # a sum over a count (tokens per request)
    MAX = "max"


@dataclasses.dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    unit: Unit
    aggregation: Aggregation
    description: str
    q: float = 0.0  # the quantile, for Aggregation.QUANTILE


def _quantiles(prefix: str, unit: Unit, what: str, qs: dict[str, float]) -> list[MetricSpec]:
    return [
        MetricSpec(f"{prefix}_{label}", unit, Aggregation.QUANTILE, f"{label} of {what}", q)
        for label, q in qs.items()
    ]


# What a custom rule can watch (README, "Metrics"). Quantiles use DDSketch's rank over the
# window's values, as every other quantile here (``store.queries.exact_quantile``).
METRICS: dict[str, MetricSpec] = {
    m.name: m
    for m in (
        *_quantiles(
            "ttft", Unit.SECONDS, "time to first token (stream results)",
            {"p50": 0.5, "p95": 0.95, "p99": 0.99},
        ),
        *_quantiles(
            "latency", Unit.SECONDS, "total latency (every result)",
            {"p50": 0.5, "p95": 0.95, "p99": 0.99},
        ),
        *_quantiles(
            "tokens_per_s", Unit.TOKENS_PER_S, "output tokens per second (stream results)",
            {"p50": 0.5, "p05": 0.05},
        ),
        *_quantiles(
            "itl", Unit.SECONDS,
            "each streamed answer's median inter-token latency", {"p95": 0.95},
        ),
        *_quantiles(
            "context_utilization", Unit.FRACTION,
            "prompt tokens over the model's context window", {"p95": 0.95},
        ),
        MetricSpec(
            "error_rate", Unit.FRACTION, Aggregation.RATE,
            "failed results over all results; 429, exhausted quota and wrong answers "
            "(assertion) are not failures, nor the faults of traffic's own requests (bad "
            "request, context length, content filter)",
        ),
        MetricSpec(
            "availability", Unit.FRACTION, Aggregation.RATE,
            "1 - outages (unavailable, timeout, ...) over all results; 429, quota and "
            "assertion are not outages",
        ),
        MetricSpec(
            "correct_rate", Unit.FRACTION, Aggregation.RATE,
            "ok results over answered results (ok, or failed with assertion: an answer that "
            "failed a probe's expectation); no value when nothing answered",
        ),
        MetricSpec(
            "rate_limited_rate", Unit.FRACTION, Aggregation.RATE,
            "results answered 429 (rate_limited) over all results",
        ),
        MetricSpec(
            "ratelimit_utilization", Unit.FRACTION, Aggregation.MAX,
            "highest share of a rate limit used, from the response headers",
        ),
        MetricSpec("requests", Unit.COUNT, Aggregation.TOTAL, "results in the window"),
        MetricSpec("tokens_in", Unit.TOKENS, Aggregation.TOTAL, "input tokens in the window"),
        MetricSpec("tokens_out", Unit.TOKENS, Aggregation.TOTAL, "output tokens in the window"),
        MetricSpec(
            "tokens_per_request", Unit.TOKENS, Aggregation.RATIO,
            "mean input + output tokens per result that reported usage",
        ),
        MetricSpec("cost_usd", Unit.USD, Aggregation.TOTAL, "US dollars spent in the window"),
    )
}  # fmt: skip


def _threshold(value: object) -> object:
    # ttft thresholds read naturally as durations ("5s"); others are plain numbers. Parsed at
    # load, so a bad one is a config error rather than a crash when the rules are applied.
    return parse_duration(value) if isinstance(value, str) else value


class RuleOverride(BaseModel):
    """A partial rule setting from the config (global, per provider or per target)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)

    threshold: Annotated[float, BeforeValidator(_threshold)] | None = None
    window: Duration | None = None
    clear_window: Duration | None = None
    min_samples: int | None = Field(default=None, ge=1)
    for_: DurationOrZero | None = Field(default=None, alias="for")
    severity: Severity | None = None
    enabled: bool | None = None
    min_usd: float | None = Field(default=None, ge=0)

    def apply(self, spec: RuleSpec) -> RuleSpec:
        changes: dict[str, Any] = {}
        for name, value in (
            ("threshold", self.threshold),
            ("window_s", self.window),
            ("clear_window_s", self.clear_window),
            ("min_samples", self.min_samples),
            ("for_s", self.for_),
            ("severity", self.severity),
            ("enabled", self.enabled),
            ("min_usd", self.min_usd),
        ):
            if value is not None:
                changes[name] = value
        return dataclasses.replace(spec, **changes)


def resolve_rules(*layers: Mapping[str, RuleOverride] | None) -> dict[str, RuleSpec]:
    """Defaults, then each layer of overrides in order (global, provider, target)."""
    rules = dict(DEFAULT_RULES)
    for layer in layers:
        for rule_id, override in (layer or {}).items():
            rules[rule_id] = override.apply(rules[rule_id])
    return rules


def known_rules(value: dict[str, RuleOverride]) -> dict[str, RuleOverride]:
    unknown = set(value) - set(DEFAULT_RULES)
    if unknown:
        raise ValueError(
            f"unknown rule {', '.join(sorted(unknown))}; expected one of {', '.join(DEFAULT_RULES)}"
        )
    return value


RuleOverrides = Annotated[dict[str, RuleOverride], AfterValidator(known_rules)]
