"""Rolling metrics: exact windows from raw rows, long windows from rollups with DDSketch bins."""

from __future__ import annotations

import dataclasses
import math
import random
from datetime import UTC, datetime

import pytest
from ddsketch import DDSketch
from hypothesis import given, settings
from hypothesis import strategies as st

from llmpulse.errors import ErrorClass
from llmpulse.result import CheckKind, CheckResult, RateLimit, Source, Usage
from llmpulse.store import SQLiteStore, queries
from llmpulse.store.queries import (
    QUANTILES,
    aggregate,
    aggregate_by_provider,
    aggregate_by_target,
    series,
    tokens_per_request_baseline,
)
from llmpulse.store.rollup import (
    MAPPING,
    RELATIVE_ACCURACY,
    ZERO_KEY,
    bins_from_values,
    key,
    quantiles,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC).timestamp()  # midnight: minute- and hour-aligned
DAY = 86400


def res(
    ts: float,
    *,
    target: str = "t1",
    provider: str = "openai",
    check: CheckKind = CheckKind.STREAM,
    error: ErrorClass | None = None,
    latency: float | None = 500.0,
    ttft: float | None = 200.0,
    tps: float | None = 50.0,
    tokens: tuple[int, int] | None = (10, 40),
    cost: float | None = 1e-5,
    util: float | None = None,
    window: int | None = None,
) -> CheckResult:
    return CheckResult(
        target=target,
        provider=provider,
        model="m",
        check=check,
        timestamp=datetime.fromtimestamp(ts, UTC),
        ok=error is None,
        error_class=error,
        latency_ms=latency,
        ttft_ms=ttft if error is None else None,
        tokens_per_s=tps if error is None else None,
        usage=Usage(*tokens) if tokens and error is None else Usage(),
        cost_usd=cost if error is None else None,
        ratelimit=RateLimit(utilization=util) if util is not None else None,
        context_window=window,
    )


def ref_quantile(values: list[float], q: float) -> float:
    """Exact reference (no numpy): DDSketch's rank, the value at floor(q·(n−1))."""
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


def close(a: float | None, b: float, rel: float = RELATIVE_ACCURACY) -> bool:
    return a is not None and abs(a - b) <= rel * abs(b) + 1e-12


def same(a: queries.Aggregate, b: queries.Aggregate) -> bool:
    """Equal but for float sums added in another order."""
    for field, x in a.to_dict().items():
        y = getattr(b, field)
        if isinstance(x, float) and isinstance(y, float):
            if not math.isclose(x, y, rel_tol=1e-9):
                return False
        elif x != y:
            return False
    return True


@pytest.fixture
def store(tmp_path):
    with SQLiteStore(tmp_path / "m.db") as s:
        yield s


def spread(n: int, start: float, span: float, seed: int = 1) -> list[CheckResult]:
    """n successful stream checks over [start, start+span) with widely spread values; a
    context window known for most (utilization from a few tokens to past the window)."""
    rng = random.Random(seed)
    return [
        res(
            start + span * i / n,
            latency=rng.lognormvariate(6.5, 0.6),
            ttft=rng.lognormvariate(5.5, 0.8),
            tps=rng.uniform(5, 400),
            tokens=(int(rng.lognormvariate(8, 2.5)), 40),
            window=rng.choice([8192, 128000, 200000, None]),
        )
        for i in range(n)
    ]


def test_sketch_keys_match_ddsketch_mapping():
    rng = random.Random(7)
    values = [rng.lognormvariate(0, 6) for _ in range(5000)]
    mismatches = sum(key(v) != MAPPING.key(v) for v in values)
    assert mismatches <= 2  # only a float rounding at a bin boundary may differ
    for v in values:
        assert abs(MAPPING.value(key(v)) - v) <= RELATIVE_ACCURACY * v * 1.0001


# Any key of a positive double (±35,500 at 1 %), crowded keys, and the zero bin.
_KEYS = st.integers(-35000, 35000) | st.integers(280, 340) | st.just(ZERO_KEY)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(_KEYS, st.integers(1, 10**6), min_size=1, max_size=150),
    st.lists(st.floats(0, 1) | st.sampled_from([0.0, 0.5, 0.95, 0.99, 1.0]), max_size=8),
)
def test_quantiles_equal_ddsketch(bins, qs):
    # The reference: a DDSketch holding each bin's count at its representative value.
    sketch = DDSketch(RELATIVE_ACCURACY)
    for k, n in bins.items():
        sketch.add(0.0 if k == ZERO_KEY else MAPPING.value(k), float(n))
    assert quantiles(bins, qs) == [sketch.get_quantile_value(q) for q in qs]


def test_quantiles_of_nothing_and_out_of_range():
    assert quantiles({}, QUANTILES) == [None, None, None]
    assert quantiles({5: 1}, (-0.1, 1.5)) == [None, None]
    assert quantiles({ZERO_KEY: 3, 100: 1}, (0.0, 0.5, 1.0)) == [0.0, 0.0, MAPPING.value(100)]


def test_sql_keys_equal_python_keys(store):
    results = spread(500, T0, 3000)
    store.write_results(results)
    store.rollup(T0 + 3600)
    got = store.summarize(T0, T0 + 3600)[""]
    assert got.latency == bins_from_values(r.latency_ms for r in results)
    assert got.tps == bins_from_values(r.tokens_per_s for r in results)


@pytest.mark.parametrize("window", ["1h", "24h", "7d", "30d"])
def test_quantiles_within_sketch_accuracy(store, window):
    # 2 days of data ending now: 1h is exact from raw rows, longer windows merge rollups.
    now = T0 + 2 * DAY + 17.5
    results = spread(6000, now - 2 * DAY, 2 * DAY)
    store.write_results(results)
    store.rollup(now - 600)  # leave a raw tail after the watermark
    window_s = queries.WINDOWS[window]
    inside = [r for r in results if now - window_s <= r.timestamp.timestamp() < now]
    agg = aggregate(store, window_s, now=now)
    assert agg.count == len(inside)
    for field, attr in (("latency", "latency_ms"), ("ttft", "ttft_ms"), ("tps", "tokens_per_s")):
        values = [getattr(r, attr) for r in inside]
        for q, name in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
            got = getattr(agg, f"{field}_{name}")
            want = ref_quantile(values, q)
            if window_s <= queries.EXACT_MAX_WINDOW_S:
                assert got == want  # exact path
            else:
                assert close(got, want), (field, name, got, want)
    # Context utilization: only results with a window count; its maximum is exact either way.
    used = [r.context_utilization for r in inside if r.context_utilization is not None]
    assert 0 < len(used) < len(inside)
    for q, name in ((0.5, "p50"), (0.95, "p95")):
        got, want = getattr(agg, f"context_utilization_{name}"), ref_quantile(used, q)
        assert got == want if window_s <= queries.EXACT_MAX_WINDOW_S else close(got, want)
    assert agg.context_utilization_max == max(used)


def test_error_rate_availability_and_errors(store):
    now = T0 + DAY
    start = now - 200
    classes = [
        None, None, None, None, None, None,
        ErrorClass.RATE_LIMITED, ErrorClass.QUOTA, ErrorClass.UNAVAILABLE, ErrorClass.AUTH,
    ]  # fmt: skip
    store.write_results([res(start + i, error=c) for i, c in enumerate(classes)])
    for window_s, rolled in ((300, False), (86400, False), (86400, True)):
        if rolled:
            store.rollup(now)
        agg = aggregate(store, window_s, now=now)
        assert agg.count == 10 and agg.ok == 6
        assert agg.errors == {"rate_limited": 1, "quota": 1, "unavailable": 1, "auth": 1}
        assert agg.error_rate == pytest.approx(0.2)  # unavailable + auth, not 429/quota
        assert agg.error_rate_all == pytest.approx(0.4)
        assert agg.availability == pytest.approx(0.9)  # only unavailable is an outage


def test_wrong_answers_count_in_the_correct_rate_alone(store):
    now = T0 + DAY
    start = now - 200
    classes = [None] * 6 + [ErrorClass.ASSERTION] * 2 + [ErrorClass.TIMEOUT, ErrorClass.QUOTA]
    store.write_results([res(start + i, error=c) for i, c in enumerate(classes)])
    for window_s, rolled in ((300, False), (86400, False), (86400, True)):
        if rolled:
            store.rollup(now)
        agg = aggregate(store, window_s, now=now)
        assert agg.correct_rate == pytest.approx(6 / 8)  # timeout and quota never answered
        assert agg.error_rate == pytest.approx(0.1)  # the timeout alone
        assert agg.error_rate_all == pytest.approx(0.4)
        assert agg.availability == pytest.approx(0.9)
        assert series(store, "t1", 3600, 3600, now=now)[-1]["correct_rate"] == pytest.approx(0.75)
    # Nothing answered: no rate, rather than 0 or 1.
    store.write_results([res(now + 10, error=ErrorClass.TIMEOUT)])
    assert aggregate(store, 5, now=now + 11).correct_rate is None


def test_empty_window(store):
    agg = aggregate(store, 86400, now=T0)
    assert agg.count == 0 and agg.availability is None and agg.error_rate is None
    assert agg.correct_rate is None
    assert agg.latency_p50 is None and agg.cost_total is None
    assert agg.context_utilization_p95 is None and agg.context_utilization_max is None
    assert aggregate_by_target(store, 300, now=T0) == {}


def test_context_utilization_only_of_results_with_a_window_and_input_tokens(store):
    now = T0 + DAY
    store.write_results(
        [
            res(now - 3000, tokens=(64000, 10), window=128000),  # 0.5
            res(now - 2000, tokens=(1000, 10), window=200000),  # 0.005
            res(now - 1500, tokens=(0, 10), window=8192),  # an empty prompt: 0, counted
            res(now - 1000, tokens=(90000, 10)),  # no window known: nothing, not 0
            res(now - 900, tokens=(90000, 10), window=0),  # nor with a window of 0
            res(now - 500, check=CheckKind.MODELS, tokens=None, window=128000),  # no tokens
            res(now - 400, error=ErrorClass.TIMEOUT, window=128000),  # a failure: no usage
        ]
    )
    exact = aggregate(store, 3600, now=now)
    # Sorted 0, 0.005, 0.5: ranks floor(0.5·2) = floor(0.95·2) = 1.
    assert exact.count == 7
    assert (exact.context_utilization_p50, exact.context_utilization_p95) == (0.005, 0.005)
    assert exact.context_utilization_max == 0.5
    for rolled in (False, True):
        if rolled:
            store.rollup(now)
        day = aggregate(store, DAY, now=now)
        assert close(day.context_utilization_p50, 0.005)
        assert close(day.context_utilization_p95, 0.005)
        assert day.context_utilization_max == 0.5
    # Nothing with a window: no figures at all.
    store.write_results([res(now + 10, tokens=(5, 5))])
    later = aggregate(store, 300, now=now + 60)
    assert later.count == 1 and later.context_utilization_p50 is None
    assert later.context_utilization_max is None


def test_raw_series_splits_a_metric_by_source(store):
    now = T0 + DAY + 30
    results = []
    for i in range(120):  # two hours: a probe a minute, ten requests of traffic a minute
        ts = now - 7200 + i * 60
        results.append(res(ts, tokens=(12, 5), window=128000))
        for j in range(10):
            traffic = res(ts + j, tokens=(1000 * (i % 60) + 100 * j + 1, 5), window=100000)
            traffic.source = Source.TRAFFIC
            results.append(traffic)
    results.append(res(now - 100, tokens=(12, 5)))  # no window: in no series
    store.write_results(results)
    ts, groups = queries.raw_series(store, "context", "t1", 3600, 900, now=now)
    assert ts == list(range(int(now - 3600) // 900 * 900, int(now), 900))
    assert set(groups) == {"probe", "traffic"}
    for group, source in (("probe", Source.PROBE), ("traffic", Source.TRAFFIC)):
        series_ = groups[group]
        for i, start in enumerate(ts):
            values = [
                r.context_utilization
                for r in results
                if r.source is source
                and start <= r.timestamp.timestamp() < min(start + 900, now)
                and r.context_utilization is not None
            ]
            assert series_.count[i] == len(values)
            if not values:
                assert series_.p95[i] is None and series_.max[i] is None
                continue
            assert close(series_.p50[i], ref_quantile(values, 0.5))
            assert close(series_.p95[i], ref_quantile(values, 0.95))
            assert series_.max[i] == max(values)
    assert {m for m in groups["probe"].max if m is not None} == {12 / 128000}  # tiny
    # A target without results: no group at all.
    assert queries.raw_series(store, "context", "nope", 3600, 900, now=now)[1] == {}


def test_tokens_cost_and_ratelimit(store):
    now = T0 + DAY
    results = [
        res(now - 3000, tokens=(10, 30), cost=0.002, util=0.5),
        res(now - 2000, tokens=(20, 40), cost=0.004, util=0.9),
        res(now - 1000, tokens=(30, 50), cost=None, util=0.3),  # unknown price
        res(now - 500, check=CheckKind.MODELS, tokens=None, cost=None, ttft=None, tps=None),
        res(now - 400, error=ErrorClass.RATE_LIMITED, util=1.0),
        res(now - 300, error=ErrorClass.TIMEOUT),
    ]
    results[4].ratelimit = RateLimit(utilization=1.0)
    store.write_results(results)
    for window_s, rolled in ((3600, False), (86400, True)):
        if rolled:
            store.rollup(now)
        agg = aggregate(store, window_s, now=now)
        assert agg.tokens_per_request == pytest.approx((40 + 60 + 80) / 3)
        assert agg.cost_total == pytest.approx(0.006)
        assert agg.cost_per_request == pytest.approx(0.003)
        assert agg.cost_per_hour == pytest.approx(0.006 * 3600 / window_s)
        assert agg.cost_per_day == pytest.approx(0.006 * 86400 / window_s)
        assert agg.ratelimit_utilization_max == 1.0
        assert agg.ratelimit_utilization_latest == 1.0
        assert agg.first_ts == pytest.approx(now - 3000)
        assert agg.last_ts == pytest.approx(now - 300)
    # Latest means latest in time, across minutes and hours of rollups.
    store.write_results([res(now + 10, util=0.2)])
    store.rollup(now + 120)
    assert aggregate(store, 86400, now=now + 120).ratelimit_utilization_latest == 0.2


def test_rollup_is_idempotent(store):
    now = T0 + DAY
    store.write_results(spread(2000, T0, DAY))
    first = store.rollup(now)
    assert first > 0
    before = store.summarize(T0, now)
    assert store.rollup(now) == 0
    assert store.rollup(now - 3600) == 0  # an older call changes nothing either
    assert store.summarize(T0, now) == before
    assert store.rollup_watermark() == now


def test_late_rows_recompute_their_minute(store):
    now = T0 + DAY
    store.write_results([res(T0 + 3600 + i, latency=100.0) for i in range(5)])
    store.rollup(now)
    # Results for an already rolled-up minute, arriving after its rollup.
    late = [res(T0 + 3630 + i, latency=1000.0, error=ErrorClass.SERVER_ERROR) for i in range(5)]
    store.write_results(late)
    stale = aggregate(store, DAY, now=now)
    assert stale.count == 5  # not visible until the next rollup
    assert store.rollup(now) == 1  # only that minute is recomputed
    agg = aggregate(store, DAY, now=now)
    assert agg.count == 10 and agg.errors == {"server_error": 5}
    assert close(agg.latency_p50, 100.0) and close(agg.latency_p99, 1000.0)
    # The hourly tier saw them too (a 30-day window reads whole hours from it).
    assert aggregate(store, 30 * DAY, now=now).count == 10


def test_raw_and_rollup_windows_agree(tmp_path):
    now = T0 + 3 * DAY + 1234.5
    results = spread(5000, now - 3 * DAY, 3 * DAY, seed=3)
    results += [res(now - i * 997, error=ErrorClass.TIMEOUT) for i in range(40)]
    with SQLiteStore(tmp_path / "raw.db") as raw, SQLiteStore(tmp_path / "rolled.db") as rolled:
        raw.write_results(results)
        rolled.write_results(results)
        rolled.rollup(now - 90)
        for window_s in (7200, DAY, 3 * DAY, 30 * DAY):
            a, b = aggregate(raw, window_s, now=now), aggregate(rolled, window_s, now=now)
            # Same sketch bins whether merged from rollups or built from raw rows.
            assert same(a, b)
        buckets = series(rolled, "t1", 2 * DAY, 3600, now=now)
        assert len(buckets) == 49
        assert (
            sum(b["count"] for b in buckets)
            == aggregate(raw, now - buckets[0]["ts"], now=now).count
        )


def test_prune_keeps_rollups(store):
    now = T0 + 10 * DAY
    store.write_results([res(T0 + i * 600) for i in range(10 * 144)])  # every 10 min, 10 days
    stats = store.prune(now, raw_retention_s=7 * DAY, rollup_retention_s=9 * DAY)
    assert stats.results == 3 * 144  # the first 3 days of raw rows
    assert stats.rollups == 144  # the first day of minute rollups
    assert len(store.results_between(T0, now)) == 7 * 144
    assert aggregate(store, 9 * DAY, now=now).count == 9 * 144
    # Late rows older than the raw retention are not rolled into a pruned minute.
    store.write_results([res(T0 + 2 * DAY + 30)])
    store.rollup(now)
    assert aggregate(store, 9 * DAY, now=now).count == 9 * 144


def test_rows_after_pruning_everything_are_rolled_up(store):
    now = T0 + DAY
    store.write_results([res(T0 + i) for i in range(10)])
    store.prune(now, raw_retention_s=7200)
    assert store.results_between(0, now + 1) == []
    # SQLite reuses ids of an emptied table; these must not look already rolled up.
    store.write_results([res(now - 3600 + i, target="t2") for i in range(3)])
    store.rollup(now)
    assert aggregate_by_target(store, 2 * DAY, now=now)["t2"].count == 3


@pytest.mark.parametrize("window_s", [300, 3600, DAY, 30 * DAY])
def test_grouping_by_target_and_provider(store, window_s):
    now = T0 + 2 * DAY
    layout = {"a": "openai", "b": "openai", "c": "anthropic"}
    results = []
    for n, (target, provider) in enumerate(layout.items(), start=1):
        for i in range(30 * n):
            results.append(
                res(
                    now - 280 + i * (9 / n),
                    target=target,
                    provider=provider,
                    latency=100.0 * n + i,
                    error=ErrorClass.UNAVAILABLE if i % 10 == 0 else None,
                )
            )
    store.write_results(results)
    store.rollup(now - 120)
    by_target = aggregate_by_target(store, window_s, now=now)
    by_provider = aggregate_by_provider(store, window_s, now=now)
    overall = aggregate(store, window_s, now=now)
    assert {k: v.count for k, v in by_target.items()} == {"a": 30, "b": 60, "c": 90}
    assert {k: v.count for k, v in by_provider.items()} == {"openai": 90, "anthropic": 90}
    assert overall.count == 180
    assert by_target["c"].availability == pytest.approx(0.9)
    for target, agg in by_target.items():
        assert same(agg, aggregate(store, window_s, now=now, target=target))
    assert same(by_provider["openai"], aggregate(store, window_s, now=now, provider="openai"))
    exact_c = [100.0 * 3 + i for i in range(90)]  # failed checks have a latency too
    assert close(by_target["c"].latency_p50, ref_quantile(exact_c, 0.5))


def test_check_kind_filter(store):
    now = T0 + DAY
    store.write_results(
        [res(now - 100, check=CheckKind.MODELS, latency=10.0), res(now - 50, latency=900.0)]
    )
    assert aggregate(store, 300, now=now, check="models").latency_p50 == 10.0
    store.rollup(now)
    assert close(aggregate(store, DAY, now=now, check="stream").latency_p50, 900.0)


def test_tokens_per_request_baseline(store):
    now = T0 + 2 * DAY
    store.write_results([res(now - DAY + i * 600, tokens=(10, 90)) for i in range(144)])
    store.write_results([res(now - DAY - 10, tokens=(1000, 9000))])  # outside the window
    store.rollup(now)
    assert tokens_per_request_baseline(store, "t1", now=now) == pytest.approx(100)
    assert tokens_per_request_baseline(store, "nope", now=now) is None
    # Too few requests to say what normal is: no baseline, so no spike can be judged yet.
    few = now + 2 * DAY
    store.write_results([res(few - 60 * i, tokens=(10, 90)) for i in range(1, 30)])
    assert tokens_per_request_baseline(store, "t1", now=few) is None
    store.write_results([res(few - 1, tokens=(10, 90))])
    assert tokens_per_request_baseline(store, "t1", now=few) == pytest.approx(100)


def test_series_buckets(store):
    now = T0 + DAY + 90
    store.write_results([res(T0 + i * 60, latency=float(i % 7 + 1)) for i in range(24 * 60 + 1)])
    store.rollup(now - 60)
    buckets = series(store, "t1", DAY, 3600, now=now)
    assert [b["ts"] for b in buckets] == [T0 + h * 3600 for h in range(25)]
    assert all(b["count"] == 60 for b in buckets[:-1])
    assert buckets[-1]["count"] == 1  # the raw tail after the watermark
    assert buckets[0]["cost_per_hour"] == pytest.approx(60 * 1e-5)
    minutes = series(store, "t1", 600, 120, now=now)
    assert len(minutes) == 6 and sum(b["count"] for b in minutes) == 11
    with pytest.raises(ValueError):
        series(store, "t1", 600, 90, now=now)
    assert math.isclose(sum(b["count"] for b in buckets), 24 * 60 + 1)


@pytest.fixture(scope="module")
def raw_and_rolled(tmp_path_factory):
    """Nine days of three targets, in a store never rolled up and in one rolled up to a
    watermark mid-day, mid-six-hours and mid-hour."""
    now = T0 + 9 * DAY + 7 * 3600 + 1234.5
    results = []
    for n, target in enumerate(("a", "b", "c")):
        results += [
            res(
                r.timestamp.timestamp() + n,
                target=target,
                latency=r.latency_ms,
                ttft=r.ttft_ms,
                tps=r.tokens_per_s,
                tokens=(r.usage.input_tokens, 40),
                window=r.context_window,
                util=(i % 10) / 10,
                error=ErrorClass.UNAVAILABLE if i % 37 == 0 else None,
            )
            for i, r in enumerate(spread(3000, now - 9 * DAY, 9 * DAY + 200, seed=n))
        ]
    tmp = tmp_path_factory.mktemp("tiers")
    with SQLiteStore(tmp / "raw.db") as raw, SQLiteStore(tmp / "rolled.db") as rolled:
        raw.write_results(results)
        rolled.write_results(results)
        rolled.rollup(now - 500)
        yield raw, rolled, now


@pytest.mark.parametrize(
    ("window_s", "step_s"),
    [(3600, 60), (DAY, 900), (7 * DAY, 3600), (9 * DAY, 21600), (9 * DAY, DAY), (2 * DAY, 7200)],
)
@pytest.mark.parametrize("target", ["b", None])
def test_series_from_tiers_equal_series_from_raw_rows(raw_and_rolled, window_s, step_s, target):
    # Sketch bins merge exactly, so every tier gives the very bins the raw rows give.
    raw, rolled, now = raw_and_rolled
    want = series(raw, target, window_s, step_s, now=now)
    got = series(rolled, target, window_s, step_s, now=now)
    assert [b["ts"] for b in got] == [b["ts"] for b in want]
    assert sum(b["count"] for b in got) > 0
    for g, w in zip(got, want, strict=True):
        assert same(bucket_aggregate(g), bucket_aggregate(w)), g["ts"]


def bucket_aggregate(bucket: dict) -> queries.Aggregate:
    return queries.Aggregate(**{k: v for k, v in bucket.items() if k != "ts"})


@pytest.mark.parametrize("window", ["5m", "1h", "24h", "7d", "30d"])
def test_aggregates_from_tiers_equal_aggregates_from_raw_rows(raw_and_rolled, window):
    raw, rolled, now = raw_and_rolled
    window_s = queries.WINDOWS[window]
    want, got = (
        aggregate_by_target(raw, window_s, now=now),
        aggregate_by_target(rolled, window_s, now=now),
    )
    assert got.keys() == want.keys() == {"a", "b", "c"}
    for t in want:
        assert same(got[t], want[t]), t


def test_to_dict_is_asdict():
    agg = queries.Aggregate(count=3, errors={"timeout": 1}, latency_p50=1.5)
    d = agg.to_dict()
    assert d == dataclasses.asdict(agg)
    d["errors"]["timeout"] = 9
    assert agg.errors == {"timeout": 1}
