import dataclasses
import random
from collections import Counter
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmpulse.config.gateway import Strategy
from llmpulse.errors import ErrorClass
from llmpulse.gateway.breaker import BreakerConfig, BreakerState
from llmpulse.gateway.selector import DeploymentStats, Selector, catalog_price
from llmpulse.result import CheckKind, CheckResult, RateLimit


@dataclasses.dataclass(frozen=True)
class Dep:
    id: str
    order: int | None = None
    weight: float | None = None
    rpm: int | None = None
    tpm: int | None = None
    provider: str = "openai"
    model: str = "gpt-4o-mini"


class FakeClock:
    def __init__(self, now: float = 6000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


BREAKER = BreakerConfig(failure_threshold=2, cooldown_s=10.0, rate_limited_cooldown_s=5.0)
A, B, C = Dep("a"), Dep("b"), Dep("c")


def selector(strategy=Strategy.PRIORITY, seed=1, **kw) -> tuple[Selector, FakeClock]:
    clock = FakeClock()
    sel = Selector(strategy, clock=clock, rng=random.Random(seed), breaker_config=BREAKER, **kw)
    return sel, clock


def pick(sel: Selector, deps, exclude=()) -> str | None:
    """Select and end the attempt at once, so in-flight counts stay at zero."""
    d = sel.select(deps, exclude)
    if d is None:
        return None
    sel.release(d.id)
    return d.id


def trip(sel: Selector, dep_id: str) -> None:
    for _ in range(BREAKER.failure_threshold):
        sel.finish(dep_id, error_class=ErrorClass.UNAVAILABLE)


def probe(ok: bool, error_class=None, **kw) -> CheckResult:
    return CheckResult(
        target="t",
        provider="openai",
        model="m",
        check=CheckKind.STREAM,
        timestamp=datetime.now(UTC),
        ok=ok,
        error_class=error_class,
        **kw,
    )


def chi_square(counts: Counter, expected: dict[str, float]) -> float:
    return sum((counts[k] - e) ** 2 / e for k, e in expected.items())


# --- strategy names ---------------------------------------------------------------------------


def test_strategy_names_litellm_and_aliases():
    assert Strategy.parse("latency-based-routing") is Strategy.LATENCY
    assert Strategy.parse("simple-shuffle") is Strategy.WEIGHTED
    assert Strategy.parse("usage-based-routing") is Strategy.RATE_LIMIT_AWARE
    assert Strategy.parse(" Least-Busy ") is Strategy.LEAST_BUSY
    assert Strategy.parse("cost-based-routing") is Strategy.COST
    assert Strategy.parse("order") is Strategy.PRIORITY
    with pytest.raises(ValueError, match="expected one of"):
        Strategy.parse("round-robin-ish")


# --- priority and exclusion -------------------------------------------------------------------


def test_priority_by_order_then_config_position():
    sel, _ = selector()
    deps = [Dep("x"), Dep("y", order=2), Dep("z", order=1), Dep("w", order=1)]
    assert [pick(sel, deps, exclude=ex) for ex in ((), {"z"}, {"z", "w"}, {"z", "w", "y"})] == [
        "z",
        "w",
        "y",
        "x",
    ]


def test_open_breaker_is_skipped_and_traffic_returns_after_recovery():
    sel, clock = selector()
    trip(sel, "a")
    assert pick(sel, [A, B]) == "b"
    clock.now += 10  # cool-down over: half-open, the primary gets exactly one probe
    probe_dep = sel.select([A, B])
    assert probe_dep is A
    assert pick(sel, [A, B]) == "b"  # the probe is still out
    sel.finish("a", latency_s=0.2)
    assert sel.breaker("a").state is BreakerState.CLOSED
    assert pick(sel, [A, B]) == "a"


def test_rate_limited_deployment_cools_down_and_comes_back():
    sel, clock = selector()
    assert sel.select([A, B]) is A
    sel.finish("a", error_class=ErrorClass.RATE_LIMITED, retry_after_s=3.0)
    assert sel.breaker("a").state is BreakerState.CLOSED
    assert pick(sel, [A, B]) == "b"
    clock.now += 3
    assert pick(sel, [A, B]) == "a"


def test_monitor_found_down_is_skipped_before_any_user_request_fails():
    sel, _ = selector()
    for _ in range(BREAKER.failure_threshold):
        sel.record_check("a", probe(False, ErrorClass.UNAVAILABLE, http_status=503))
    assert pick(sel, [A, B]) == "b"
    sel.record_check("a", probe(True, ttft_ms=300, latency_ms=900))
    assert pick(sel, [A, B]) == "a"
    assert sel.stats("a").ttft_s == pytest.approx(0.3)


def test_all_unavailable_fails_fast_with_a_wait_hint():
    sel, clock = selector()
    trip(sel, "a")
    clock.now += 4
    sel.finish("b", error_class=ErrorClass.RATE_LIMITED, retry_after_s=2.0)
    assert sel.select([A, B]) is None
    assert sel.wait_hint([A, B]) == pytest.approx(2.0)
    assert sel.wait_hint([A, B], exclude={"b"}) == pytest.approx(6.0)
    assert sel.wait_hint([A, B], exclude={"a", "b"}) == float("inf")
    assert sel.select([A, B], exclude={"a", "b"}) is None


def test_request_faults_never_exclude():
    sel, _ = selector()
    for _ in range(5):
        sel.finish("a", error_class=ErrorClass.BAD_REQUEST)
        sel.finish("a", error_class=ErrorClass.CONTEXT_LENGTH)
    assert pick(sel, [A, B]) == "a"


# --- weighted -----------------------------------------------------------------------------------


def test_weighted_follows_weights():
    sel, _ = selector(Strategy.WEIGHTED, seed=42)
    deps = [Dep("a", weight=1), Dep("b", weight=2), Dep("c", weight=7)]
    n = 10_000
    counts = Counter(pick(sel, deps) for _ in range(n))
    expected = {"a": 0.1 * n, "b": 0.2 * n, "c": 0.7 * n}
    assert chi_square(counts, expected) < 13.8  # chi-square, 2 d.o.f., p = 0.001


def test_weighted_uses_rpm_then_tpm_when_no_weight():
    sel, _ = selector(Strategy.WEIGHTED, seed=3)
    deps = [Dep("a", rpm=100, tpm=1), Dep("b", rpm=300, tpm=1)]
    n = 8000
    counts = Counter(pick(sel, deps) for _ in range(n))
    assert chi_square(counts, {"a": n / 4, "b": 3 * n / 4}) < 10.8  # 1 d.o.f.
    by_tpm = [Dep("a", tpm=1000), Dep("b", tpm=1000)]
    counts = Counter(pick(sel, by_tpm) for _ in range(n))
    assert chi_square(counts, {"a": n / 2, "b": n / 2}) < 10.8


def test_weighted_unset_weight_is_zero_but_still_a_last_resort():
    sel, _ = selector(Strategy.WEIGHTED)
    deps = [Dep("a", weight=5), Dep("b")]
    assert {pick(sel, deps) for _ in range(200)} == {"a"}
    trip(sel, "a")
    assert pick(sel, deps) == "b"


def test_weighted_all_zero_is_uniform():
    sel, _ = selector(Strategy.WEIGHTED, seed=5)
    deps = [Dep("a", weight=0), Dep("b", weight=0)]
    counts = Counter(pick(sel, deps) for _ in range(4000))
    assert chi_square(counts, {"a": 2000, "b": 2000}) < 10.8


def test_weighted_skips_open_deployment():
    sel, _ = selector(Strategy.WEIGHTED)
    deps = [Dep("a", weight=9), Dep("b", weight=1)]
    trip(sel, "a")
    assert {pick(sel, deps) for _ in range(100)} == {"b"}


# --- latency ------------------------------------------------------------------------------------


def test_latency_picks_lowest_ttft_from_traffic_and_probes():
    sel, _ = selector(Strategy.LATENCY)
    sel.finish("a", ttft_s=0.9, latency_s=2.0)
    sel.record_check("b", probe(True, ttft_ms=200, latency_ms=800))
    sel.finish("c", latency_s=0.5)  # no TTFT: its latency stands in
    assert pick(sel, [A, B, C]) == "b"
    for _ in range(10):  # b degrades; the EWMA follows
        sel.finish("b", ttft_s=3.0)
    assert pick(sel, [A, B, C]) == "c"


def test_latency_explores_unmeasured_deployments():
    sel, _ = selector(Strategy.LATENCY)
    sel.finish("a", ttft_s=0.1)
    assert pick(sel, [A, B]) == "b"


def test_latency_buffer_spreads_among_near_fastest():
    sel, _ = selector(Strategy.LATENCY, seed=9, latency_buffer=0.5)
    sel.finish("a", ttft_s=1.0)
    sel.finish("b", ttft_s=1.4)
    sel.finish("c", ttft_s=1.6)
    counts = Counter(pick(sel, [A, B, C]) for _ in range(4000))
    assert set(counts) == {"a", "b"}
    assert chi_square(counts, {"a": 2000, "b": 2000}) < 10.8


def test_latency_timeouts_penalise():
    sel, _ = selector(Strategy.LATENCY)
    sel.finish("a", latency_s=0.3)
    sel.finish("b", latency_s=0.5)
    sel.finish("a", error_class=ErrorClass.TIMEOUT, latency_s=30.0)
    assert pick(sel, [A, B]) == "b"
    sel.record_check("b", probe(False, ErrorClass.TIMEOUT, latency_ms=60_000))
    assert sel.stats("b").latency_s > 10


# --- least busy ---------------------------------------------------------------------------------


def test_least_busy_counts_in_flight():
    sel, _ = selector(Strategy.LEAST_BUSY, seed=2)
    first = sel.select([A, B, C])
    second = sel.select([A, B, C])
    third = sel.select([A, B, C])
    assert first and second and third
    assert {first.id, second.id, third.id} == {"a", "b", "c"}
    sel.finish(second.id)
    assert sel.select([A, B, C]) is second
    assert [sel.stats(d).in_flight for d in "abc"] == [1, 1, 1]
    sel.release("a")
    assert sel.stats("a").in_flight == 0
    sel.release("a")  # never negative
    assert sel.stats("a").in_flight == 0


# --- rate-limit aware ---------------------------------------------------------------------------


def test_rate_limit_aware_skips_hot_deployments_unless_all_are():
    sel, clock = selector(Strategy.RATE_LIMIT_AWARE, utilization_threshold=0.9)
    sel.finish("a", ratelimit=RateLimit(utilization=0.95, reset_s=20))
    sel.finish("b", ratelimit=RateLimit(utilization=0.5, reset_s=20))
    assert pick(sel, [A, B]) == "b"
    sel.finish("b", ratelimit=RateLimit(utilization=0.97, reset_s=20))
    assert pick(sel, [A, B]) == "a"  # all hot: the least used
    clock.now += 20  # the limits reset: the headers no longer say anything
    assert sel.stats("a").utilization(clock.now) is None
    assert pick(sel, [A, B]) == "a"  # ties by priority


def test_rate_limit_aware_prefers_least_used():
    sel, _ = selector(Strategy.RATE_LIMIT_AWARE)
    sel.finish("a", ratelimit=RateLimit(utilization=0.6))
    sel.finish("b", ratelimit=RateLimit(utilization=0.2))
    assert pick(sel, [A, B]) == "b"


def test_rate_limit_aware_counts_own_rpm_and_tpm_per_minute():
    sel, clock = selector(Strategy.RATE_LIMIT_AWARE)
    a, b = Dep("a", rpm=2), Dep("b", tpm=1000)
    for _ in range(2):
        assert sel.select([a], ()) is a
        sel.finish("a")
    assert sel.stats("a").minute_usage(clock.now) == (2, 0)
    assert pick(sel, [a, b]) == "b"
    sel.finish("b", tokens=1000)
    assert pick(sel, [a, b]) == "a"  # both used up: equally, so by priority
    clock.now += 60
    assert sel.stats("a").minute_usage(clock.now) == (0, 0)


# --- cost ---------------------------------------------------------------------------------------


def test_cost_picks_cheapest_and_unknown_prices_last():
    prices = {"a": 5.0, "b": 1.0, "c": None}
    sel, _ = selector(Strategy.COST, price_of=lambda d: prices[d.id])
    assert pick(sel, [C, A, B]) == "b"
    trip(sel, "b")
    assert pick(sel, [C, A, B]) == "a"
    assert pick(sel, [C, A, B], exclude={"a"}) == "c"


def test_catalog_price_from_the_catalogue():
    mini = catalog_price(Dep("m", model="gpt-4o-mini"))
    big = catalog_price(Dep("g", model="gpt-4o"))
    assert mini is not None and big is not None and mini < big
    assert catalog_price(Dep("x", model="no-such-model-anywhere")) is None
    assert catalog_price(Dep("y", provider="no-such-provider")) is None
    sel, _ = selector(Strategy.COST)
    assert pick(sel, [Dep("g", model="gpt-4o"), Dep("m", model="gpt-4o-mini")]) == "m"


# --- stats --------------------------------------------------------------------------------------


def test_stats_ewma():
    stats = DeploymentStats(alpha=0.5)
    stats.observe(0.0, ttft_s=1.0)
    stats.observe(0.0, ttft_s=3.0)
    assert stats.ttft_s == pytest.approx(2.0)
    with pytest.raises(ValueError):
        DeploymentStats(alpha=0)


def test_utilization_without_reset_expires_after_a_minute():
    stats = DeploymentStats()
    stats.observe(100.0, ratelimit=RateLimit(utilization=0.8))
    assert stats.utilization(159.0) == 0.8
    assert stats.utilization(160.0) is None


def test_selector_validation():
    with pytest.raises(ValueError):
        Selector(latency_buffer=-1)
    with pytest.raises(ValueError):
        Selector(utilization_threshold=0)


# --- properties ---------------------------------------------------------------------------------

_IDS = [f"d{i}" for i in range(6)]
_EVENT = st.one_of(
    st.tuples(st.just("fail"), st.sampled_from(_IDS), st.sampled_from(list(ErrorClass))),
    st.tuples(st.just("ok"), st.sampled_from(_IDS), st.floats(0.01, 5)),
    st.tuples(st.just("wait"), st.just(""), st.floats(0, 20)),
    st.tuples(st.just("util"), st.sampled_from(_IDS), st.floats(0, 1)),
)


@settings(max_examples=200, deadline=None)
@given(
    strategy=st.sampled_from(list(Strategy)),
    events=st.lists(_EVENT, max_size=40),
    exclude=st.sets(st.sampled_from(_IDS)),
    seed=st.integers(0, 1000),
)
def test_selection_never_returns_an_excluded_or_unavailable_deployment(
    strategy, events, exclude, seed
):
    deps = [Dep(i, order=n % 3, weight=n, rpm=10 * n or None) for n, i in enumerate(_IDS)]
    prices = {d.id: float(n) for n, d in enumerate(deps)}
    sel, clock = selector(strategy, seed=seed, price_of=lambda d: prices[d.id])
    for kind, dep_id, arg in events:
        if kind == "fail":
            sel.finish(dep_id, error_class=arg, retry_after_s=1.0)
        elif kind == "ok":
            sel.finish(dep_id, ttft_s=arg, latency_s=arg)
        elif kind == "wait":
            clock.now += arg
        else:
            sel.finish(dep_id, ratelimit=RateLimit(utilization=arg, reset_s=5))
    usable = {d.id for d in deps if d.id not in exclude and sel.breaker(d.id).available()}
    chosen = sel.select(deps, exclude)
    if chosen is None:
        assert not usable and sel.wait_hint(deps, exclude) > 0
    else:
        assert chosen.id in usable
