"""Rolling metrics per target, per provider and overall, over windows from 5 minutes to 30 days.

Windows up to an hour have exact quantiles, from the raw values (a few thousand rows at most).
Longer windows merge rollups: daily, six-hour, hourly and per-minute rows with DDSketch bins
(1 % relative accuracy), plus the raw rows not rolled up yet, so a 30-day window never scans
raw results. Counts and sums come from the rollups in every window: they are exact there.

Quantiles use DDSketch's rank, the value at index ``floor(q·(n−1))`` of the sorted values,
in the exact path too, so that a window answered from raw rows and one answered from rollups
differ by the sketch's 1 % and nothing else.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from typing import Any, Literal

from llmpulse.store.base import RawGroupBy, ResultFilter, Store, Totals
from llmpulse.store.rollup import METRICS, NOT_FAILURES, Summary, quantiles

WINDOWS = {"5m": 300, "1h": 3600, "24h": 86400, "7d": 604800, "30d": 2592000}
# Windows up to this length have exact quantiles, from raw values.
EXACT_MAX_WINDOW_S = 3600
QUANTILES = (0.5, 0.95, 0.99)


@dataclasses.dataclass(slots=True)
class Aggregate:
    """The figures of one window. Rates and quantiles are None when there is nothing to rate."""

    count: int = 0
    ok: int = 0
    errors: dict[str, int] = dataclasses.field(default_factory=dict)
    # Failed checks other than rate_limited, quota and assertion, over all checks.
    error_rate: float | None = None
    error_rate_all: float | None = None
    # 1 − outages/checks, outages being the classes with ErrorClass.is_outage.
    availability: float | None = None
    # Of the answered checks (ok, or failed with assertion), the share that were ok:
    # ok / (ok + assertion); None when none answered. "It answers, but wrong" shows here alone.
    correct_rate: float | None = None
    ttft_p50: float | None = None
    ttft_p95: float | None = None
    ttft_p99: float | None = None
    latency_p50: float | None = None
    latency_p95: float | None = None
    latency_p99: float | None = None
    tps_p50: float | None = None
    tps_p95: float | None = None
    tps_p99: float | None = None
    # Prompt tokens over the context window (fractions), of the results that had both.
    context_utilization_p50: float | None = None
    context_utilization_p95: float | None = None
    context_utilization_max: float | None = None
    ratelimit_utilization_max: float | None = None
    ratelimit_utilization_latest: float | None = None
    # Per token-bearing request (inference and stream checks that reported usage / a cost).
    tokens_per_request: float | None = None
    cost_per_request: float | None = None
    cost_total: float | None = None
    # cost_total scaled from the window's length (not from the span the data covers).
    cost_per_hour: float | None = None
    cost_per_day: float | None = None
    first_ts: float | None = None
    last_ts: float | None = None

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: its deep copy costs more than a whole 30-day series query.
        d = {name: getattr(self, name) for name in _FIELDS}
        d["errors"] = dict(self.errors)
        return d


_FIELDS = tuple(f.name for f in dataclasses.fields(Aggregate))


def aggregate(
    store: Store,
    window_s: float,
    now: float | None = None,
    target: str | None = None,
    provider: str | None = None,
    check: str | None = None,
) -> Aggregate:
    """Figures of ``[now − window_s, now)``, optionally of one target, provider or check kind."""
    where = ResultFilter(target=target, provider=provider, check=check)
    groups = _grouped(store, window_s, now, None, where)
    return groups.get("", Aggregate())


def aggregate_by_target(
    store: Store, window_s: float, now: float | None = None, check: str | None = None
) -> dict[str, Aggregate]:
    """One ``Aggregate`` per target with results in the window, from one query."""
    return _grouped(store, window_s, now, "target", ResultFilter(check=check))


def aggregate_by_provider(
    store: Store, window_s: float, now: float | None = None, check: str | None = None
) -> dict[str, Aggregate]:
    """One ``Aggregate`` per provider with results in the window, from one query."""
    return _grouped(store, window_s, now, "provider", ResultFilter(check=check))


MIN_BASELINE_REQUESTS = 30


def tokens_per_request_baseline(
    store: Store, target: str, now: float | None = None, window_s: float = 86400
) -> float | None:
    """Mean tokens (input + output) per token-bearing request over the window: the level a
    spike is measured against. None until ``MIN_BASELINE_REQUESTS`` requests make it mean
    something: the first few checks of one kind would make the other kind's look like a spike."""
    now = time.time() if now is None else now
    where = ResultFilter(target=target)
    totals = store.totals(now - window_s, now, by=None, where=where).get((None, ""))
    if totals is None or totals.token_requests < MIN_BASELINE_REQUESTS:
        return None
    return (totals.input_tokens + totals.output_tokens) / totals.token_requests


SPEND_ALL = "*"  # the key of every provider's spend together


def hourly_spend(
    store: Store, now: float | None = None, window_s: float = 3600, baseline_s: float = 7 * 86400
) -> dict[str, tuple[float, float | None]]:
    """Per provider, and for all of them (``SPEND_ALL``): US dollars spent over the last
    ``window_s`` and the hourly average over the ``baseline_s`` before it (None without any
    result then). The average is over the span the results cover, so a store younger than
    ``baseline_s`` is not taken for one that spent nothing."""
    now = time.time() if now is None else now
    start = now - window_s
    recent = store.totals(start, now, by="provider")
    before = store.totals(start - baseline_s, start, by="provider")

    def baseline(totals: list[Totals]) -> float | None:
        firsts = [t.first_ts for t in totals if t.first_ts is not None]
        if not firsts:
            return None
        hours = max(start - min(firsts), 3600) / 3600
        return sum(t.cost_usd for t in totals) / hours

    providers = {k for _, k in recent} | {k for _, k in before}
    out = {
        p: (
            recent[(None, p)].cost_usd if (None, p) in recent else 0.0,
            baseline([before[(None, p)]] if (None, p) in before else []),
        )
        for p in providers
    }
    out[SPEND_ALL] = (sum(t.cost_usd for t in recent.values()), baseline(list(before.values())))
    return out


def series(
    store: Store,
    target: str | None,
    window_s: float,
    step_s: int,
    now: float | None = None,
    check: str | None = None,
) -> list[dict[str, Any]]:
    """Buckets of ``step_s`` (a multiple of 60, aligned to multiples of it) covering the
    window, oldest first: ``{"ts": bucket_start, **Aggregate fields}``. Empty buckets are
    included (count 0) so that a chart has an even time axis. From rollups, plus the raw rows
    not rolled up yet for the latest bucket; ``target=None`` is all targets together."""
    now = time.time() if now is None else now
    first = math.floor((now - window_s) / step_s) * step_s
    where = ResultFilter(target=target, check=check)
    summaries = store.summarize(first, now, group_by="bucket", step_s=step_s, where=where)
    return [
        {"ts": ts, **_from_summary(summaries.get(ts, Summary()), step_s).to_dict()}
        for ts in range(first, math.ceil(now), step_s)
    ]


@dataclasses.dataclass(slots=True)
class ValueSeries:
    """One group's figures of one metric per bucket: how many results had a value, p50 and
    p95 (DDSketch, 1 %) and the exact maximum; None where no result had one."""

    count: list[int]
    p50: list[float | None]
    p95: list[float | None]
    max: list[float | None]


def raw_series(
    store: Store,
    metric: str,
    target: str | None,
    window_s: float,
    step_s: int,
    now: float | None = None,
    group_by: RawGroupBy = "source",
) -> tuple[list[int], dict[str, ValueSeries]]:
    """The bucket starts of ``series`` (the same layout) and, per group of the raw results
    (source or region: what rollups do not keep), one metric's ``ValueSeries``: back as far as
    the raw results are kept. Groups without a value in the window are absent."""
    now = time.time() if now is None else now
    first = math.floor((now - window_s) / step_s) * step_s
    starts = list(range(first, math.ceil(now), step_s))
    bins = store.metric_bins(
        first, now, step_s, metric, group_by=group_by, where=ResultFilter(target=target)
    )
    out: dict[str, ValueSeries] = {}
    index = {ts: i for i, ts in enumerate(starts)}
    for (bucket, group), (b, largest) in bins.items():
        s = out.get(group)
        if s is None:
            n = len(starts)
            s = out[group] = ValueSeries([0] * n, [None] * n, [None] * n, [None] * n)
        i = index[bucket]
        s.count[i] = sum(b.values())
        s.p50[i], s.p95[i] = quantiles(b, (0.5, 0.95))
        s.max[i] = largest
    return starts, out


def _grouped(
    store: Store,
    window_s: float,
    now: float | None,
    group_by: Literal["target", "provider"] | None,
    where: ResultFilter,
) -> dict[str, Aggregate]:
    now = time.time() if now is None else now
    start = now - window_s
    if window_s <= EXACT_MAX_WINDOW_S:
        # Counts from the store's summaries (rollups are exact for them), quantiles from the
        # raw values: only three columns of each row reach Python.
        counts = store.summarize(start, now, group_by=group_by, where=where, sketches=False)
        values = store.metric_values(start, now, group_by=group_by, where=where)
        return _exact(counts, values, window_s)
    summaries = store.summarize(start, now, group_by=group_by, where=where)
    return {str(k): _from_summary(v, window_s) for k, v in summaries.items()}


def aggregate_raw(
    store: Store,
    window_s: float,
    now: float | None = None,
    group_by: RawGroupBy = None,
    target: str | None = None,
    region: str | None = None,
    source: str | None = None,
) -> dict[str, Aggregate]:
    """One ``Aggregate`` per group of ``[now − window_s, now)``, from the raw results alone:
    exact in any window the raw retention covers, and groupable by region and source, which
    rollups do not keep (``""`` is the results without a region)."""
    now = time.time() if now is None else now
    start = now - window_s
    where = ResultFilter(target=target, region=region, source=source)
    counts = store.summarize_raw(start, now, group_by=group_by, where=where)
    values = store.metric_values(start, now, group_by=group_by, where=where)
    return _exact(counts, values, window_s)


def _exact(
    counts: Mapping[str, Summary] | Mapping[str | int, Summary],
    values: dict[str, dict[str, list[float]]],
    window_s: float,
) -> dict[str, Aggregate]:
    """Aggregates of summaries without sketches, quantiles from the same groups' raw values."""
    out: dict[str, Aggregate] = {}
    for k, s in counts.items():
        v = values.get(str(k), {})
        exact = {m: [exact_quantile(v.get(m, []), q) for q in QUANTILES] for m in METRICS}
        context = v.get("context")
        out[str(k)] = _from_summary(s, window_s, exact, context[-1] if context else None)
    return out


def exact_quantile(values: list[float], q: float) -> float | None:
    """The value at index floor(q·(n−1)) of the sorted values: DDSketch's rank, exactly."""
    if not values:
        return None
    values.sort()
    return values[int(q * (len(values) - 1))]


def _from_summary(
    s: Summary,
    window_s: float,
    exact: dict[str, list[float | None]] | None = None,
    exact_context_max: float | None = None,
) -> Aggregate:
    """``exact``: quantiles from raw values, with the largest context utilization among them
    (``exact_context_max``), instead of the summary's sketches and maximum."""
    if not s.total:
        return Aggregate()
    q = exact or {m: quantiles(s.bins(m), QUANTILES) for m in METRICS}
    context_max = s.context_max if exact is None else exact_context_max
    failures = s.total - s.ok - sum(s.errors.get(c, 0) for c in NOT_FAILURES)
    answered = s.ok + s.assertions
    cost = s.cost_usd if s.cost_requests else None
    tokens = s.input_tokens + s.output_tokens
    return Aggregate(
        count=s.total,
        ok=s.ok,
        errors=dict(s.errors),
        error_rate=failures / s.total,
        error_rate_all=(s.total - s.ok) / s.total,
        availability=1 - s.outage / s.total,
        correct_rate=s.ok / answered if answered else None,
        ttft_p50=q["ttft"][0],
        ttft_p95=q["ttft"][1],
        ttft_p99=q["ttft"][2],
        latency_p50=q["latency"][0],
        latency_p95=q["latency"][1],
        latency_p99=q["latency"][2],
        tps_p50=q["tps"][0],
        tps_p95=q["tps"][1],
        tps_p99=q["tps"][2],
        context_utilization_p50=q["context"][0],
        context_utilization_p95=q["context"][1],
        context_utilization_max=context_max,
        ratelimit_utilization_max=s.rl_max,
        ratelimit_utilization_latest=s.rl_latest,
        tokens_per_request=tokens / s.token_requests if s.token_requests else None,
        cost_per_request=cost / s.cost_requests if cost is not None else None,
        cost_total=cost,
        cost_per_hour=cost * 3600 / window_s if cost is not None else None,
        cost_per_day=cost * 86400 / window_s if cost is not None else None,
        first_ts=s.first_ts,
        last_ts=s.last_ts,
    )
