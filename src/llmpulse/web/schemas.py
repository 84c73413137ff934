"""Response and request bodies of the JSON API: the OpenAPI document is generated from these."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmpulse.alerts.status import Status
from llmpulse.result import CheckKind, Source
from llmpulse.store.queries import Aggregate, ValueSeries

Range = Literal["1h", "24h", "7d", "30d"]
Window = Literal["5m", "1h", "24h", "7d", "30d"]


class TargetInfo(BaseModel):
    name: str
    provider: str
    model: str
    checks: list[str] = Field(
        description="Its checks' names: the built-in checks' (their kinds), then its custom probes'"
    )
    interval_s: float


class Maintenance(BaseModel):
    """A maintenance the provider's status page announces."""

    name: str
    status: Literal["scheduled", "in_progress", "verifying"]
    starts_at: float | None = Field(description="Its scheduled start, Unix seconds")
    ends_at: float | None = Field(description="Its scheduled end, Unix seconds")
    url: str | None = Field(description="The announcement on the status page")


class ProviderMaintenance(Maintenance):
    provider: str


class Official(BaseModel):
    indicator: str
    description: str
    url: str
    updated_ts: float
    incidents: list[str] = Field(default_factory=list)
    # Under way first, then upcoming by start; a handful at most.
    maintenances: list[Maintenance] = Field(default_factory=list)


Scope = Literal["target", "provider", "model", "all", "slo", "key", "team", "failover_path"]


class Alert(BaseModel):
    fingerprint: str
    rule: str
    # "target": target names a target; "provider": a provider; "all": every provider ("*");
    # "slo": an SLO (its burn-rate alert); "failover_path": a gateway group's failover path,
    # "group: a → b" (failover_path_broken).
    scope: Scope
    target: str
    provider: str
    severity: str
    state: str
    active_since: float | None
    fired_at: float | None
    resolved_at: float | None
    value: float | None
    threshold: float | None
    summary: str
    silenced: bool
    acknowledged_by: str | None = None
    acknowledged_at: float | None = None
    acknowledged_comment: str | None = None
    # 0: paged on its route; k: escalated to step k (nobody acknowledged it in time).
    escalation_step: int = 0
    # The notifiers this episode paged (acknowledgement and resolution go to them).
    notified: list[str] = Field(default_factory=list)


class Acknowledge(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: str = Field(default="api", min_length=1, max_length=200)
    comment: str = Field(default="", max_length=2000)


class LastError(BaseModel):
    class_: str | None = Field(alias="class")
    message: str | None
    ts: float

    model_config = ConfigDict(populate_by_name=True)


class Card(BaseModel):
    name: str
    provider: str
    model: str
    status: Status
    status_since: float | None
    status_reason: str
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    tps_p50: float | None
    error_rate: float | None
    availability: float | None
    correct_rate: float | None = Field(
        description="Of the answered checks (ok, or failed with assertion), the share that "
        "were ok; None when none answered"
    )
    ratelimit_utilization: float | None
    cost_today_usd: float | None
    checks_1h: int
    last_check_ts: float | None
    last_error: LastError | None
    served_model: str | None
    retires: str | None  # the model's announced retirement day (ISO date), if configured
    official: Official | None
    alerts: list[Alert]
    checked_by_traffic: dict[str, float] = Field(
        default_factory=dict,
        description="Built-in checks (inference, stream) whose latest turn was skipped because "
        "successful traffic had checked the target within its interval, by name: when (Unix "
        "time). Known where the daemon that probes serves the dashboard (llmpulse run)",
    )


class MissedIncident(BaseModel):
    start: float  # our page: when its first alert was notified
    end: float | None  # None: still going on


class Confirmation(BaseModel):
    """How a provider's status page confirmed our incidents over the last 30 days
    (``llmpulse.alerts.confirmation`` defines each word)."""

    provider: str
    incidents: int  # ours whose confirmation window has closed, or that it confirmed
    confirmed: int
    pending: int  # unconfirmed, window still open: counted neither way
    median_lag_s: float | None  # official incident created minus our page; < 0: theirs first
    missed: list[MissedIncident]  # never posted, oldest first
    sentence: str  # "Anthropic's page confirmed 7 of our 9 incidents, a median 11 min after ..."


class ProviderRow(BaseModel):
    provider: str
    status: Status
    targets: int
    official: Official | None
    confirmation: Confirmation | None = None  # None: no status page for it


class Overview(BaseModel):
    generated_at: float
    window: str
    overall: Status
    cards: list[Card]
    providers: list[ProviderRow]
    firing: list[Alert]


class WrongAnswer(BaseModel):
    """The latest answer that failed an expectation (error class ``assertion``)."""

    ts: float
    message: str | None = Field(description="Which expectation it failed")
    answer_excerpt: str | None = Field(
        description="The answer's first characters, redacted (untrusted text: escape it)"
    )


class CheckSummary(BaseModel):
    """One check of a target, built-in or a custom probe, over ``CHECK_WINDOW``."""

    name: str = Field(description="The probe's name; a built-in check's is its kind")
    kind: CheckKind
    custom: bool = Field(description="A custom probe (``probes`` in the config)")
    window: Window
    count: int
    availability: float | None
    error_rate: float | None
    correct_rate: float | None
    latency_p50_ms: float | None
    ttft_p50_ms: float | None
    last_check_ts: float | None
    last_ok: bool | None
    last_error: LastError | None
    last_wrong_answer: WrongAnswer | None = Field(
        description="The latest answer in the window that failed an expectation, if any"
    )


class TargetDetail(BaseModel):
    target: TargetInfo
    card: Card
    windows: dict[str, Aggregate]
    checks: list[CheckSummary]


class Results(BaseModel):
    results: list[dict[str, Any]]


class Aggregates(BaseModel):
    window: Window
    by: Literal["target", "provider", "overall"]
    groups: dict[str, Aggregate]


# Breakdowns read raw results, which are kept for 7 days (store.RAW_RETENTION_S).
BreakdownWindow = Literal["5m", "1h", "24h", "7d"]
BreakdownBy = Literal["region", "source"]


class Breakdown(BaseModel):
    window: BreakdownWindow
    by: BreakdownBy
    target: str | None
    region: str | None
    source: Source | None
    # Keyed by region ("" for results without one) or source, sorted; absent without results.
    groups: dict[str, Aggregate]


class Series(BaseModel):
    target: str | None
    range: Range
    step_s: int
    ts: list[int]
    count: list[int]
    ttft_p50: list[float | None]
    ttft_p95: list[float | None]
    ttft_p99: list[float | None]
    latency_p50: list[float | None]
    latency_p95: list[float | None]
    latency_p99: list[float | None]
    tps_p50: list[float | None]
    context_utilization_p50: list[float | None]
    context_utilization_p95: list[float | None]
    context_utilization_max: list[float | None]
    error_rate: list[float | None]
    availability: list[float | None]
    correct_rate: list[float | None]
    errors: dict[str, list[int]]
    ratelimit_utilization: list[float | None]
    tokens_per_request: list[float | None]
    cost: list[float | None]


class ContextUtilization(BaseModel):
    """Prompt tokens over the context window per bucket, probes and gateway traffic apart:
    probes send a few tokens, so together they would hide what real requests use. From the
    raw results, so buckets older than raw retention (7 days by default) are empty."""

    target: str | None
    range: Range
    step_s: int
    ts: list[int]
    # Both sources always, empty buckets (count 0, figures null) where nothing had a value.
    sources: dict[Source, ValueSeries]


class Event(BaseModel):
    ts: float
    kind: Literal["alert_firing", "alert_resolved", "model_changed"]
    target: str
    summary: str
    rule: str | None = None
    severity: str | None = None
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None

    model_config = ConfigDict(populate_by_name=True)


class Events(BaseModel):
    events: list[Event]


class AlertEvent(BaseModel):
    ts: float
    status: str
    severity: str
    rule: str
    scope: Scope
    target: str
    provider: str
    summary: str
    value: float | None
    threshold: float | None
    starts_at: str
    ends_at: str | None
    fingerprint: str
    official_status: str | None


class Alerts(BaseModel):
    firing: list[Alert]
    pending: list[Alert]
    history: list[AlertEvent]
    # What the status pages of the providers shown announce (of the target's provider only,
    # with ``target``): under way first, then upcoming by start.
    maintenances: list[ProviderMaintenance] = Field(default_factory=list)


class SilenceSchedule(BaseModel):
    cron: str = Field(description="Five-field cron expression: when each window starts")
    duration_s: float = Field(description="How long each window lasts, in seconds")
    timezone: str = Field(description="The IANA time zone the cron expression is read in")


class Silence(BaseModel):
    id: str
    target: str
    provider: str
    rule: str
    starts_at: float
    ends_at: float | None = Field(description="Unix seconds; null: recurring without an end")
    comment: str
    created_by: str
    # Inside its window now (for a recurring silence: inside one of its windows).
    active: bool
    # False for the config's silences: they end when the config says.
    editable: bool
    schedule: SilenceSchedule | None = Field(description="Null for a one-off silence")
    next_occurrences: list[tuple[float, float]] = Field(
        description="The next few [start, end] windows not yet ended, Unix seconds (the one in "
        "progress first); a one-off silence's own window until it ends"
    )


class Silences(BaseModel):
    silences: list[Silence]


class NewSilence(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: str = Field(default="*", max_length=200)
    provider: str = Field(default="*", max_length=200)
    rule: str = Field(default="*", max_length=200)
    duration: str = Field(
        description="How long from now (with cron: each window): one or more <number><unit> "
        "parts (units ms, s, m, h, d), e.g. 30m or 1h30m; more than 0 and at most 365 days",
        pattern=r"^(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h|d))+$",
        max_length=64,
    )
    cron: str | None = Field(
        default=None,
        description="Recurring from now on: a window starts at each time of this five-field "
        'cron expression, e.g. "0 2 * * SUN"',
        max_length=200,
    )
    timezone: str | None = Field(
        default=None,
        description="The IANA time zone of cron (default UTC); only with cron",
        max_length=64,
    )
    comment: str = Field(default="", max_length=2000)
    created_by: str = Field(default="api", max_length=200)


class CostDay(BaseModel):
    day: str
    target: str
    provider: str
    model: str
    cost_usd: float | None
    requests: int
    tokens: int


class TokensPerRequest(BaseModel):
    day: str
    target: str
    value: float | None


class CostTotals(BaseModel):
    by_provider: dict[str, float]
    by_model: dict[str, float]


class Costs(BaseModel):
    days: list[CostDay]
    totals: CostTotals
    tokens_per_request: list[TokensPerRequest]


CostSource = Literal["probe", "traffic", "all"]


class CostRow(BaseModel):
    name: str | None = Field(
        description="The key, team, user, tag, model, provider or UTC day (YYYY-MM-DD); null "
        "for spend naming none (probes have no key, untagged traffic) and for the other row"
    )
    source: Source
    cost_usd: float
    requests: int = Field(description="Results counted, with or without a cost")
    input_tokens: int
    output_tokens: int
    other: bool = Field(
        default=False,
        description="The users or tags past a day's top N in the daily rollups, summed",
    )


class CostSourceTotal(BaseModel):
    source: Source
    cost_usd: float
    requests: int
    input_tokens: int
    output_tokens: int


class CostReport(BaseModel):
    """Spend over a range per owner, probes and traffic apart."""

    by: str
    from_: datetime = Field(alias="from", description="Start of the range read (inclusive)")
    to: datetime = Field(description="End of the range read (exclusive)")
    source: CostSource
    exact: bool = Field(
        description="Every row is its owner's exact spend over the range asked for: false "
        "when an edge day past raw retention was read whole from the daily rollup (from/to "
        "say the range read) or when an other row is present"
    )
    rows: list[CostRow] = Field(description="Largest spend first, at most limit")
    truncated: int = Field(description="Rows left out past limit")
    totals: list[CostSourceTotal] = Field(
        description="Per source over the whole range, every result once (a result with two "
        "tags counts once here)"
    )

    model_config = ConfigDict(populate_by_name=True)


class BillingModel(BaseModel):
    """One model's day on the provider's bill and as measured (traffic and probes)."""

    model: str = Field(description="The model's base name (no snapshot date)")
    names: list[str] = Field(description="The names the provider billed it under")
    reported_usd: float
    measured_usd: float
    difference_usd: float = Field(description="Measured minus billed")
    reported_input_tokens: int
    measured_input_tokens: int
    reported_output_tokens: int
    measured_output_tokens: int
    reported_requests: int | None = Field(description="None: the provider counts none")
    measured_requests: int


class BillingDay(BaseModel):
    """A provider's UTC day: its bill against what llmpulse measured, or why it was not
    read."""

    day: str
    status: str = Field(description='"ok", or the class of the error reading the reports')
    checked_at: float
    reported_usd: float | None
    measured_usd: float | None
    difference_usd: float | None = Field(description="Measured minus billed")
    difference: float | None = Field(description="The difference as a share of the bill")
    drift: bool
    threshold: float | None
    error: str | None
    models: list[BillingModel]


class BillingProvider(BaseModel):
    provider: str
    days: list[BillingDay]


class Billing(BaseModel):
    providers: list[BillingProvider]


class StatusTarget(BaseModel):
    name: str
    provider: str
    model: str
    status: Status
    status_since: float | None


class StatusSummary(BaseModel):
    generated_at: float
    overall: Status
    targets: list[StatusTarget]
    # Per provider with a status page, in the targets' order.
    confirmations: list[Confirmation] = Field(default_factory=list)


class Incident(BaseModel):
    target: str
    provider: str
    rule: str
    severity: str
    summary: str
    start: float
    end: float | None


class Slo(BaseModel):
    """An SLO's figures over its rolling window, up to the current minute (``alerts.slo``)."""

    name: str
    kind: Literal["availability", "correctness", "ttft", "latency"]
    threshold_s: float | None = Field(description="ttft and latency: the good events' bound")
    sli: float | None = Field(description="Share of good events in the window (None: none)")
    objective: float = Field(description="The target share, a fraction")
    window: str = Field(description='The rolling window, e.g. "30d"')
    window_s: float
    source: Literal["probe", "traffic", "all"]
    events: int
    good: int
    since: datetime | None = Field(description="The first minute with events in the window")
    budget_remaining: float | None = Field(description="1 - bad / allowed; negative once spent")
    budget_remaining_events: float = Field(description="Bad events the budget still allows")
    burn_rates: dict[str, float | None] = Field(description="Per alert window, e.g. 5m, 1h")
    exhausted_at: datetime | None = Field(
        description="When the budget runs out at the fastest page's long-window burn rate"
    )
    exact: bool = Field(description="Counted from every raw result (the alert leader's counts)")
    alert_state: str = Field(description="Its slo_burn_rate alert: firing, pending or inactive")
    alert_severity: str | None


class BudgetAlert(BaseModel):
    rule: Literal["budget_warning", "budget_exhausted", "spend_forecast"]
    state: Literal["firing", "pending"]
    severity: str
    fingerprint: str
    fired_at: float | None
    summary: str


class BudgetUse(BaseModel):
    """A gateway key's or team's budget at the time of the request (``alerts.budgets``)."""

    scope: Literal["key", "team"]
    name: str
    max_usd: float
    period: Literal["1d", "7d", "30d", "1mo"] = Field(
        description="1d, 7d and 30d roll; 1mo is the UTC calendar month"
    )
    warn_at: float | None = Field(description="The fraction of max_usd that warns")
    spent_usd: float = Field(description="Gateway traffic spend over the period")
    remaining_usd: float = Field(description="max_usd - spent_usd; negative once overspent")
    percent: float = Field(description="spent_usd / max_usd × 100")
    resets_at: datetime | None = Field(
        description="When a 1mo budget starts anew; null for a rolling one (its spend ages out)"
    )
    rate_usd_per_day: float = Field(
        description="The current rate: the higher of the last 24 h's and the last 7 d's average"
    )
    exhausts_at: datetime | None = Field(
        description="When at the current rate the spend reaches max_usd within the period "
        "(null: it does not, or already has)"
    )
    alert_state: Literal["firing", "pending", "inactive"] = Field(
        description="Its budget alerts together: firing when any fires"
    )
    alerts: list[BudgetAlert] = Field(description="Its budget alerts firing or pending")


class ProbeBudget(BaseModel):
    """The probes' own budget (``monitor.probe_budget_usd``) in the current UTC month."""

    max_usd: float
    spent_usd: float = Field(description="Probe spend since the month began, UTC")
    remaining_usd: float = Field(description="max_usd - spent_usd; negative once overspent")
    percent: float = Field(description="spent_usd / max_usd × 100")
    resets_at: datetime = Field(description="When the next UTC month begins")
    expected_usd_per_month: float = Field(
        description="What the probes cost in 30 days at their configured intervals (prices "
        "from the catalogue; models without a price count nothing); the daemon stretches "
        "intervals while this outruns what is left"
    )


class Budgets(BaseModel):
    generated_at: datetime
    budgets: list[BudgetUse]
    probes: ProbeBudget | None = Field(
        default=None, description="The probe budget, when monitor.probe_budget_usd is set"
    )


class SloIncident(Incident):
    bad_events: int = Field(description="Bad events of the SLO counted during the incident")


class SloDetail(Slo):
    burn_down_ts: list[float] = Field(description="Ends of the burn-down chart's steps")
    burn_down: list[float | None] = Field(description="Budget remaining at each step")
    incidents: list[SloIncident]


class StatusDay(BaseModel):
    day: str
    availability: float | None
    checks: int
    incidents: list[Incident]


class StatusPageTarget(StatusTarget):
    uptime_90d: float | None
    days: list[StatusDay]


class StatusPage(BaseModel):
    generated_at: float
    title: str
    overall: Status
    targets: list[StatusPageTarget]
    incidents: list[Incident]
    # How each provider's own status page confirmed our incidents (30 days).
    confirmations: list[Confirmation] = Field(default_factory=list)


class Health(BaseModel):
    ok: bool


class Problem(BaseModel):
    detail: str


class WebhookResult(BaseModel):
    """What an inbound webhook (PagerDuty's) did with the event it was sent."""

    result: Literal["acknowledged", "unacknowledged", "ignored"]
    reason: str | None = None  # why it was ignored
    fingerprint: str | None = None
    acknowledged_by: str | None = None


# The gateway page reads raw results, which are kept for 7 days (store.RAW_RETENTION_S).
GatewayWindow = Literal["1h", "6h", "24h", "7d"]


class GatewayGroup(BaseModel):
    """One model group's traffic per bucket: a group is the group of a request's first choice
    (a deployment of the gateway config; without the config, the first choice's own name)."""

    group: str
    requests: list[int]
    # Requests per bucket by the deployment that answered them (or failed last): route[-1].
    deployments: dict[str, list[int]]
    # Requests per bucket answered by another deployment than their first choice (route[0]).
    fallbacks: list[int]


class GatewayBreakerEvent(BaseModel):
    ts: float
    agent: str
    deployment: str
    group: str | None
    state: Literal["open", "half_open", "closed"]
    reason: str


class GatewayIncident(BaseModel):
    """Traffic moved from ``from`` to ``to`` at ``start_ts``, back at ``end_ts`` (None while
    ongoing); see ``web.gateway.incidents`` for the precise definition."""

    group: str
    from_: str = Field(alias="from", description="The first choice most moved requests left")
    to: str = Field(description="The deployment that answered most of them")
    start_ts: float = Field(description="The first moved request")
    end_ts: float | None = Field(description="The first request answered by its first choice again")
    ongoing: bool
    requests: int = Field(description="The group's requests in the incident's minutes")
    fallbacks: int = Field(description="Of them, answered by another deployment")
    reasons: dict[str, int] = Field(description="Fallbacks by what moved them (error class)")
    summary: str

    model_config = ConfigDict(populate_by_name=True)


class GatewayDrill(BaseModel):
    """The latest drill (``source=drill``) of one failover path, streaming or not."""

    group: str
    path: list[str] = Field(description="The deployments in order, the answering one last")
    stream: bool
    ok: bool
    ts: float
    label: str | None
    error_class: str | None
    error_message: str | None


class Gateway(BaseModel):
    """The gateway page: traffic share per deployment, fallbacks, breaker events, incidents and
    drills over a window, from the results store (gateway traffic, source=traffic)."""

    window: GatewayWindow
    step_s: int
    ts: list[int] = Field(description="Bucket starts, Unix seconds")
    groups: list[GatewayGroup]
    fallbacks_per_minute: dict[str, list[float]] = Field(
        description="Fallbacks per minute in each bucket, all groups, by reason (error class; "
        '"unknown" when none was recorded)'
    )
    requests: int
    fallbacks: int
    live_drills: int = Field(
        description="Traffic sent with a live-drill header, apart from every figure above"
    )
    breaker_events: list[GatewayBreakerEvent]
    incidents: list[GatewayIncident]
    drills: list[GatewayDrill]


Readiness = Literal["ready", "at_risk", "not_ready"]


class FailoverLoad(BaseModel):
    """The traffic that entered at a group's primary: what a fallback must take."""

    requests: int = Field(description="Requests over the last hour")
    rpm: float = Field(description="Requests per minute over the last 5 minutes")
    tpm: float = Field(description="Tokens (in + out) per minute over the last 5 minutes")
    prompt_p99: int | None = Field(description="p99 of input tokens over the last hour")
    features: list[str] = Field(
        description="Request parameters its traffic used over the last hour (tools, images, "
        "response_format, reasoning, ...)"
    )


class FallbackReadiness(BaseModel):
    name: str = Field(description="The deployment (its target's name)")
    group: str
    status: Readiness
    reasons: list[str] = Field(description="Why it is not ready or at risk; empty when ready")
    context_window: int | None
    headroom_rpm: float | None = Field(
        description="Requests per minute it could still take (null: no headers or rpm say)"
    )
    headroom_tpm: float | None = Field(description="Tokens per minute it could still take")
    own_rpm: float = Field(description="Its own traffic's requests per minute")
    own_tpm: float = Field(description="Its own traffic's tokens per minute")
    breaker: Literal["closed", "open", "cooling", "unknown"]
    breaker_inferred: bool = Field(
        description="Inferred from its latest call, not read from the gateway's shared state"
    )


class GroupReadiness(BaseModel):
    group: str
    status: Readiness = Field(
        description="ready: a fallback is ready; at_risk: none is, one is at risk; not_ready: "
        "every fallback is not ready, or there is none"
    )
    reason: str
    primary: str = Field(description="Its first deployment in the gateway's order")
    load: FailoverLoad
    fallbacks: list[FallbackReadiness] = Field(description="In the order the gateway tries them")
    alert: str | None = Field(description="The failover_not_ready alert's state, if it has one")


class Failover(BaseModel):
    generated_at: datetime
    groups: list[GroupReadiness] = Field(description="Empty without a gateway model_list")
