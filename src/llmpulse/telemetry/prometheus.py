"""The Prometheus exposition served at ``/metrics`` (every metric is described in docs/metrics.md).

Names follow the OpenTelemetry GenAI semantic conventions (``llmpulse.telemetry.semconv``) where
they define the measurement, converted the way the OTel Prometheus exporter does (dots →
underscores, ``_seconds`` for unit "s", ``{token}`` dropped). Counters and histograms are fed
by ``observe`` once per check result; the gauges (status, availability, rate-limit utilization,
official status) are read from a ``Snapshot`` at scrape time, so a scrape shows current values
without the daemon pushing them.

Labels carry only names (target, provider, model, served model) and closed sets of values: the
exporter never sees a target's base URL, key or headers, and ignores error messages.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import get_args

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from llmpulse.alerts.status import Status
from llmpulse.probe.official import Indicator
from llmpulse.result import CheckKind, CheckResult
from llmpulse.telemetry.semconv import (
    DURATION_BUCKETS,
    OPERATION_DURATION,
    OPERATIONS,
    TIME_TO_FIRST_CHUNK,
    TOKEN_BUCKETS,
    TOKEN_USAGE,
    Histogram,
    ServedModels,
    error_type,
    provider_name,
)

log = logging.getLogger(__name__)

# From a slow local model to Groq/Cerebras-class serving (well over 1000 tokens/s).
TOKENS_PER_SECOND_BUCKETS = (
    5, 10, 20, 30, 40, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000, 3000,
)  # fmt: skip

# Prompt tokens over the context window: fine steps near the limit, where requests start to fail
# or be truncated; probes' few tokens fall in the first bucket.
CONTEXT_UTILIZATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.8, 0.9, 0.95, 1.0)

INDICATORS: tuple[Indicator, ...] = get_args(Indicator)

_TARGET = ("llmpulse_target", "gen_ai_provider_name", "gen_ai_request_model")
_GENAI = (
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
    "gen_ai_response_model",
    "llmpulse_target",
    "llmpulse_check",
    "llmpulse_check_kind",
)


@dataclasses.dataclass(frozen=True, slots=True)
class TargetSnapshot:
    """One target's current state. ``None`` figures (no data) are left out, never shown as 0."""

    name: str
    provider: str
    model: str
    status: Status
    availability: float | None = None  # 0..1 over Snapshot.availability_window
    ratelimit_utilization: float | None = None  # 0..1, from the latest check that reported it
    # ok / (ok + assertion) over Snapshot.availability_window: None when nothing answered.
    correct_rate: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class AlertSnapshot:
    """One firing or pending alert, built-in or custom (``rule`` is a custom rule's id)."""

    rule: str
    scope: str  # what ``target`` names: a target, a provider, a model, or "all"
    target: str
    provider: str
    severity: str
    state: str  # firing | pending


@dataclasses.dataclass(frozen=True, slots=True)
class SloSnapshot:
    """One SLO's figures over its window (``alerts.slo``); None figures (no events) left out."""

    name: str
    kind: str  # availability, correctness, ttft or latency
    objective: float
    sli: float | None = None
    budget_remaining: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class SpendSnapshot:
    """Spend of one key or team (``dimension``) from one source since ``Snapshot.spend_since``;
    ``name`` "" for spend naming none (probes have no key), ``_OTHER`` for the rest past the
    largest ``SPEND_SERIES`` names."""

    dimension: str  # key | team
    name: str
    source: str  # probe | traffic
    cost_usd: float
    input_tokens: int
    output_tokens: int


# Keys and teams with series of their own, per source: the largest spenders of the day.
SPEND_SERIES = 100
OTHER = "_OTHER"  # as the conventions name a bounded label's rest


class SpendSeries:
    """The spend counters' series from one scrape to the next. Per day (their ``since``), the
    first ``SPEND_SERIES`` names per dimension and source seen spending keep a series all day
    and every other name is summed in ``_OTHER``: were the largest spenders chosen afresh at
    each scrape, a name climbing among them would leave ``_OTHER``, which would go down. And a
    series never shows less than it last did: the same spend summed from raw results and again
    from its hourly rollup can differ in the last bits, and to ``rate()`` a counter that goes
    down, by however little, has reset (its whole value counted again). Scrapes may run in
    several threads at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: float | None = None
        self._named: dict[tuple[str, str], set[str]] = {}  # by (dimension, source)
        self._last: dict[tuple[str, str, str], tuple[float, int, int]] = {}

    def bounded(
        self,
        dimension: str,
        rows: Iterable[tuple[str | None, str, float, int, int]],
        since: float,
    ) -> list[SpendSnapshot]:
        """``(name, source, cost_usd, input_tokens, output_tokens)`` rows since ``since``,
        largest spend first, as snapshots: per source the names with a series of their own
        today (the first ``SPEND_SERIES`` to spend), the rest summed as ``_OTHER``."""
        sums: dict[tuple[str, str], list[float]] = {}
        with self._lock:
            if since != self._since:
                self._since, self._named, self._last = since, {}, {}
            for name, source, cost, tokens_in, tokens_out in rows:
                named = self._named.setdefault((dimension, source), set())
                label = name or ""
                if label not in named:
                    if len(named) < SPEND_SERIES:
                        named.add(label)
                    else:
                        label = OTHER
                s = sums.setdefault((label, source), [0.0, 0, 0])
                s[0] += cost
                s[1] += tokens_in
                s[2] += tokens_out
            for (label, source), (usd, n_in, n_out) in sums.items():
                last = self._last.get((dimension, label, source), (0.0, 0, 0))
                value = (max(last[0], usd), max(last[1], int(n_in)), max(last[2], int(n_out)))
                self._last[dimension, label, source] = value
            # A series shown today stays, though a read misses it (a rollup committing between
            # the report's queries).
            return [
                SpendSnapshot(d, label, source, *value)
                for (d, label, source), value in self._last.items()
                if d == dimension
            ]


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """What the gauges show, read once per scrape."""

    targets: Sequence[TargetSnapshot] = ()
    alerts: Sequence[AlertSnapshot] = ()
    slos: Sequence[SloSnapshot] = ()
    official: Mapping[str, Indicator] = dataclasses.field(default_factory=dict)  # by provider
    availability_window: str = "1h"  # label value only, e.g. "5m", "1h", "24h"
    # Spend by key and team since midnight UTC (the counters' start), from the store.
    spend: Sequence[SpendSnapshot] = ()
    spend_since: float = 0.0


class MetricsExporter:
    """One registry per instance: several apps (or tests) in one process never share series.

    Counts are kept in plain lists per label combination and turned into metric families at
    scrape time, rather than in prometheus_client's Counter/Histogram children: those hold a
    lock and an object per bucket, about 26 KB per target, which at 5,000 targets was more
    memory than the rest of the daemon.
    """

    def __init__(self, snapshot: Callable[[], Snapshot] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_CountsCollector(self))
        if snapshot is not None:
            self.registry.register(_SnapshotCollector(snapshot))
        self._series: dict[tuple[str, str, str, str, str, str, str], _Series] = {}
        self._served = ServedModels()

    def observe(self, result: CheckResult) -> None:
        """Count one check result. O(1): a dict lookup and a few list updates; a histogram of
        a label combination exists once it has a value, so no always-empty series appear (no
        TTFT for a models list, no tokens for a failure)."""
        error = error_type(result) or ""
        served = self._served.label(result.target, result.response_model)
        kind = result.kind.value
        key = (result.target, result.provider, result.model, result.check, kind, served, error)
        s = self._series.get(key)
        if s is None:
            s = self._series[key] = _Series(_genai(key), error)
        s.checks += 1
        if result.latency_ms is not None:
            s.duration = _observe(s.duration, DURATION_BUCKETS, result.latency_ms / 1000)
        if result.ttft_ms is not None:
            s.ttft = _observe(s.ttft, DURATION_BUCKETS, result.ttft_ms / 1000)
        if result.tokens_per_s is not None:
            s.tps = _observe(s.tps, TOKENS_PER_SECOND_BUCKETS, result.tokens_per_s)
        usage = result.usage
        # Estimated counts are not the provider's: the semconv says not to report them.
        if usage.input_tokens is not None and not usage.estimated:
            s.input_tokens = _observe(s.input_tokens, TOKEN_BUCKETS, usage.input_tokens)
        if usage.output_tokens is not None and not usage.estimated:
            s.output_tokens = _observe(s.output_tokens, TOKEN_BUCKETS, usage.output_tokens)
        if result.cost_usd is not None:
            s.cost = (s.cost or 0.0) + result.cost_usd
        context = result.context_utilization
        if context is not None:
            s.context = _observe(s.context, CONTEXT_UTILIZATION_BUCKETS, context)

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition and its content type: OpenMetrics when ``accept`` (the request's
        Accept header) asks for it, else the Prometheus text format. Reads the snapshot, so
        run it off the event loop if the snapshot does I/O."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

    def series(self) -> list[_Series]:
        """A copy of the series list, safe to read from the scraping thread (the event loop
        may add series meanwhile; copying a dict's values is atomic under the GIL)."""
        return list(self._series.values())


def _genai(
    key: tuple[str, str, str, str, str, str, str],
) -> tuple[str, str, str, str, str, str, str]:
    """Label values in _GENAI order for a series key. The check is its probe's name (bounded:
    the config names them), the operation and the kind label follow its kind."""
    target, provider, model, check, kind, served, _ = key
    operation = OPERATIONS[CheckKind(kind)]
    return (operation, provider_name(provider), model, served, target, check, kind)


# A histogram as one list: a count per bucket (the last one +Inf), then the sum.
_Hist = list[float]


def _observe(hist: _Hist | None, bounds: Sequence[float], value: float) -> _Hist:
    if hist is None:
        hist = [0] * (len(bounds) + 1) + [0.0]
    hist[bisect.bisect_left(bounds, value)] += 1  # the first bucket whose bound is >= value
    hist[-1] += value
    return hist


@dataclasses.dataclass(slots=True)
class _Series:
    """The counts of one label combination; histograms appear on their first value."""

    genai: tuple[str, str, str, str, str, str, str]  # label values in _GENAI order
    error: str
    checks: int = 0
    duration: _Hist | None = None
    ttft: _Hist | None = None
    tps: _Hist | None = None
    input_tokens: _Hist | None = None
    output_tokens: _Hist | None = None
    context: _Hist | None = None
    cost: float | None = None


class _CountsCollector(Collector):
    """Counters and histograms from the exporter's series, merged per exposed label set (a
    series key also carries labels some families leave out, e.g. the served model)."""

    def __init__(self, exporter: MetricsExporter) -> None:
        self._exporter = exporter

    def collect(self) -> Iterator[Metric]:
        checks: dict[tuple[str, ...], float] = {}
        cost: dict[tuple[str, ...], float] = {}
        hists: dict[_Family, dict[tuple[str, ...], _Hist]] = {f: {} for f in _FAMILIES}
        labels: tuple[str, ...]
        for s in self._exporter.series():
            _, provider, model, _, target, check, kind = s.genai
            outcome = (target, provider, model, check, kind, s.error)
            checks[outcome] = checks.get(outcome, 0) + s.checks
            if s.cost is not None:
                cost[outcome[:5]] = cost.get(outcome[:5], 0.0) + s.cost
            for family, labels, hist in (
                (DURATION, (*s.genai, s.error), s.duration),
                (TTFT, s.genai, s.ttft),
                (TPS, s.genai, s.tps),
                (TOKENS, (*s.genai, "input"), s.input_tokens),
                (TOKENS, (*s.genai, "output"), s.output_tokens),
                (CONTEXT, s.genai, s.context),
            ):
                if hist is None:
                    continue
                into = hists[family].get(labels)
                if into is None:
                    hists[family][labels] = list(hist)
                else:
                    for i, n in enumerate(hist):
                        into[i] += n
        checks_family = CounterMetricFamily(
            "llmpulse_checks",
            "Checks completed, by outcome (error_type is empty for a success; assertion is an "
            "answer that failed its probe's expectation).",
            labels=(*_TARGET, "llmpulse_check", "llmpulse_check_kind", "error_type"),
        )
        for labels, n in checks.items():
            checks_family.add_metric(labels, n)
        cost_family = CounterMetricFamily(
            "llmpulse_cost_usd",
            "Cost of the checks in US dollars since the process started.",
            labels=(*_TARGET, "llmpulse_check", "llmpulse_check_kind"),
        )
        for labels, usd in cost.items():
            cost_family.add_metric(labels, usd)
        yield from (checks_family, cost_family)
        for family, series in hists.items():
            metric = HistogramMetricFamily(
                family.name, family.documentation, labels=family.labels, unit=family.unit
            )
            for labels, hist in series.items():
                metric.add_metric(labels, _cumulative(hist, family.bounds), sum_value=hist[-1])
            yield metric


def _cumulative(hist: _Hist, bounds: Sequence[float]) -> list[tuple[str, float]]:
    out = []
    total = 0.0
    for bound, n in zip((*bounds, math.inf), hist, strict=False):
        total += n
        # prometheus_client leaves floatToGoString unannotated.
        out.append((floatToGoString(bound), total))  # type: ignore[no-untyped-call]
    return out


@dataclasses.dataclass(frozen=True, slots=True)
class _Family:
    name: str
    documentation: str
    labels: tuple[str, ...]
    bounds: tuple[float, ...]
    unit: str = ""


def _semconv(histogram: Histogram, labels: tuple[str, ...]) -> _Family:
    """A semconv histogram's family, named as the OTel Prometheus exporter names it: dots
    become underscores, unit "s" the "seconds" suffix, an annotation unit ({token}) nothing."""
    unit = {"s": "seconds"}.get(histogram.unit, "")
    name = histogram.name.replace(".", "_")
    return _Family(name, histogram.description, labels, histogram.buckets, unit)


DURATION = _semconv(OPERATION_DURATION, (*_GENAI, "error_type"))
TTFT = _semconv(TIME_TO_FIRST_CHUNK, _GENAI)
TPS = _Family(
    "llmpulse_tokens_per_second",
    "Visible output tokens per second of a streamed response, first to last text chunk.",
    _GENAI,
    TOKENS_PER_SECOND_BUCKETS,
)
TOKENS = _semconv(TOKEN_USAGE, (*_GENAI, "gen_ai_token_type"))
CONTEXT = _Family(
    "llmpulse_context_utilization",
    "Prompt tokens over the model's context window, per check that reported its input tokens "
    "and whose context window is known.",
    _GENAI,
    CONTEXT_UTILIZATION_BUCKETS,
    unit="ratio",
)
_FAMILIES = (DURATION, TTFT, TPS, TOKENS, CONTEXT)


class _SnapshotCollector(Collector):
    """The gauges, built from a fresh snapshot on every scrape."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def describe(self) -> Iterator[Metric]:
        # Names for the registry's duplicate check, without calling the snapshot.
        return iter(_families(Snapshot()))

    def collect(self) -> Iterator[Metric]:
        try:
            snapshot = self._snapshot()
        except Exception:
            # The counters are still worth scraping; the gauges are absent (no data) this time.
            log.exception("metrics snapshot failed; gauges left out of this scrape")
            return iter(())
        return iter(_families(snapshot))


def _families(snapshot: Snapshot) -> list[Metric]:
    status = GaugeMetricFamily(
        "llmpulse_target_status",
        "Target status as a state set: 1 for the current status, 0 for the others.",
        labels=(*_TARGET, "status"),
    )
    availability = GaugeMetricFamily(
        "llmpulse_target_availability",
        "Share of checks that were not an outage, over llmpulse_window.",
        labels=(*_TARGET, "llmpulse_window"),
        unit="ratio",
    )
    correct = GaugeMetricFamily(
        "llmpulse_target_correct",
        "Of the answered checks (ok, or failed with assertion), the share that were ok, over "
        "llmpulse_window.",
        labels=(*_TARGET, "llmpulse_window"),
        unit="ratio",
    )
    utilization = GaugeMetricFamily(
        "llmpulse_target_ratelimit_utilization",
        "Rate-limit use of the most used dimension (1 - remaining/limit), latest check.",
        labels=_TARGET,
        unit="ratio",
    )
    official = GaugeMetricFamily(
        "llmpulse_provider_official_status",
        "The provider's official status page indicator as a state set.",
        labels=("gen_ai_provider_name", "indicator"),
    )
    for t in snapshot.targets:
        labels = (t.name, provider_name(t.provider), t.model)
        for s in Status:
            status.add_metric((*labels, s.value), 1.0 if s is t.status else 0.0)
        if t.availability is not None:
            availability.add_metric((*labels, snapshot.availability_window), t.availability)
        if t.correct_rate is not None:
            correct.add_metric((*labels, snapshot.availability_window), t.correct_rate)
        if t.ratelimit_utilization is not None:
            utilization.add_metric(labels, t.ratelimit_utilization)
    for provider, indicator in snapshot.official.items():
        for i in INDICATORS:
            official.add_metric((provider_name(provider), i), 1.0 if i == indicator else 0.0)
    # As Prometheus's own ALERTS series: 1 per firing or pending alert, absent otherwise.
    alerts = GaugeMetricFamily(
        "llmpulse_alerts",
        "Firing and pending alerts, built-in and custom rules alike: 1 while the alert is in "
        "alertstate.",
        labels=("alertname", "alertstate", "severity", "scope", "llmpulse_target", "provider"),
    )
    for a in snapshot.alerts:
        alerts.add_metric((a.rule, a.state, a.severity, a.scope, a.target, a.provider), 1.0)
    slo_labels = ("slo", "sli")
    sli = GaugeMetricFamily(
        "llmpulse_slo_sli",
        "Share of an SLO's events that were good over its window.",
        labels=slo_labels,
    )
    objective = GaugeMetricFamily(
        "llmpulse_slo_objective", "An SLO's objective: the share to attain.", labels=slo_labels
    )
    budget = GaugeMetricFamily(
        "llmpulse_slo_budget_remaining",
        "Share of an SLO's error budget left over its window (negative once overspent).",
        labels=slo_labels,
    )
    for slo in snapshot.slos:
        values = (slo.name, slo.kind)
        objective.add_metric(values, slo.objective)
        if slo.sli is not None:
            sli.add_metric(values, slo.sli)
        if slo.budget_remaining is not None:
            budget.add_metric(values, slo.budget_remaining)
    return [
        status, availability, correct, utilization, official, alerts, sli, objective, budget,
        *_spend_families(snapshot),
    ]  # fmt: skip


def _spend_families(snapshot: Snapshot) -> list[Metric]:
    """Spend and tokens by key and by team: counters read from the store, counting from
    midnight UTC (their ``_created``), so they reset once a day as a restarted process's
    counters do; ``increase()`` and ``rate()`` handle that."""
    out: list[Metric] = []
    for dimension in ("key", "team"):
        label = f"llmpulse_{dimension}"
        usd = CounterMetricFamily(
            f"llmpulse_{dimension}_spend_usd",
            f"Spend per gateway {dimension} and source in US dollars since midnight UTC.",
            labels=(label, "source"),
        )
        tokens = CounterMetricFamily(
            f"llmpulse_{dimension}_tokens",
            f"Tokens per gateway {dimension}, source and type since midnight UTC.",
            labels=(label, "source", "gen_ai_token_type"),
        )
        for s in snapshot.spend:
            if s.dimension != dimension:
                continue
            created = snapshot.spend_since
            usd.add_metric((s.name, s.source), s.cost_usd, created=created)
            tokens.add_metric((s.name, s.source, "input"), s.input_tokens, created=created)
            tokens.add_metric((s.name, s.source, "output"), s.output_tokens, created=created)
        out += [usd, tokens]
    return out
