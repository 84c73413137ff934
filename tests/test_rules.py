from datetime import UTC, datetime

import pytest

from llmpulse.alerts.window import Evaluation, TargetWindow, agree_across_regions, quantile
from llmpulse.errors import ErrorClass
from llmpulse.result import CheckKind, CheckResult, RateLimit, Usage
from llmpulse.rules import DEFAULT_RULES, RuleOverride, resolve_rules

T0 = 1_800_000_000.0


def res(t, *, kind=CheckKind.STREAM, error=None, ttft=0.4, tps=80.0, tokens=(10, 20), util=None):
    return CheckResult(
        target="t", provider="openai", model="m", check=kind,
        timestamp=datetime.fromtimestamp(T0 + t, UTC), ok=error is None, error_class=error,
        ttft_ms=None if ttft is None else ttft * 1000, tokens_per_s=tps,
        usage=Usage(*tokens) if tokens else Usage(),
        ratelimit=RateLimit(utilization=util) if util is not None else None,
    )  # fmt: skip


def evaluate(results, now, **kw):
    window = TargetWindow(horizon_s=3600)
    for r in results:
        window.add(r)
    return {e.rule.id: e for e in window.evaluate(DEFAULT_RULES, T0 + now, **kw)}


def test_healthy_target_raises_nothing():
    ev = evaluate([res(i * 10) for i in range(10)], 100, tokens_baseline=30)
    assert not any(e.active for e in ev.values())


def test_ttft_p95():
    ev = evaluate([res(i, ttft=t) for i, t in enumerate([0.4, 0.5, 4.0, 5.0])], 10)
    assert ev["ttft_p95_high"].active and ev["ttft_p95_high"].value == 4.0  # rank floor(.95·3)
    assert evaluate([res(0, ttft=9.0)], 1)["ttft_p95_high"].active is None  # 1 < min samples
    old = evaluate([res(0, ttft=9), res(1, ttft=9), res(2, ttft=9)], 400)  # outside 5 m
    assert old["ttft_p95_high"].active is None


def test_error_rates_exclude_rate_limits_quota_and_wrong_answers():
    results = [res(i) for i in range(6)] + [
        res(10 + i, error=ErrorClass.RATE_LIMITED) for i in range(4)
    ]
    ev = evaluate(results, 20)
    assert ev["error_rate_warning"].value == 0 and not ev["error_rate_warning"].active
    # Answers that failed an expectation are correct_rate's signal, not an error rate's.
    wrong = [res(i) for i in range(4)] + [res(10 + i, error=ErrorClass.ASSERTION) for i in range(6)]
    ev = evaluate(wrong, 20)
    assert ev["error_rate_critical"].value == 0 and not ev["error_rate_critical"].active
    assert not ev["consecutive_unavailable"].active
    results = [res(i) for i in range(7)] + [
        res(10 + i, error=ErrorClass.SERVER_ERROR) for i in range(3)
    ]
    ev = evaluate(results, 20)
    assert ev["error_rate_warning"].active and ev["error_rate_critical"].active
    assert ev["error_rate_critical"].value == pytest.approx(0.3)
    assert "server_error×3" in ev["error_rate_critical"].summary


def test_consecutive_unavailable_counts_only_unavailable_and_timeouts():
    seq = [res(0), res(1, error=ErrorClass.UNAVAILABLE), res(2, error=ErrorClass.TIMEOUT)]
    assert not evaluate(seq, 3)["consecutive_unavailable"].active
    seq.append(res(3, error=ErrorClass.UNAVAILABLE))
    assert evaluate(seq, 4)["consecutive_unavailable"].active
    seq.append(res(4, error=ErrorClass.RATE_LIMITED))
    assert not evaluate(seq, 5)["consecutive_unavailable"].active


def test_consecutive_failures_are_counted_per_check_kind():
    # The models list keeps answering while inference fails: still three failures in a row.
    seq = []
    for i in range(3):
        seq.append(res(i * 10, kind=CheckKind.MODELS))
        seq.append(res(i * 10 + 1, kind=CheckKind.INFERENCE, error=ErrorClass.UNAVAILABLE))
    ev = evaluate(seq, 30)["consecutive_unavailable"]
    assert ev.active and ev.value == 3 and "inference" in ev.summary


def test_rate_limit_auth_tps_and_tokens_spike():
    ev = evaluate([res(0, util=0.5), res(1, util=0.8)], 2)
    assert ev["rate_limit_headroom"].active and ev["rate_limit_headroom"].value == 0.8
    ev = evaluate(
        [res(0, kind=CheckKind.MODELS), res(1, kind=CheckKind.INFERENCE, error=ErrorClass.QUOTA)], 2
    )
    assert ev["auth_failure"].active and "quota" in ev["auth_failure"].summary
    ev = evaluate(
        [res(0, kind=CheckKind.INFERENCE, error=ErrorClass.AUTH), res(5, kind=CheckKind.INFERENCE)],
        6,
    )
    assert not ev["auth_failure"].active  # the key works again
    slow = [res(i, tps=40) for i in range(5)]
    assert evaluate(slow, 6, tps_floor=100)["tps_low"].active
    assert evaluate(slow, 6)["tps_low"].active is False  # no floor configured
    big = [res(i, tokens=(10, 290)) for i in range(5)]
    ev = evaluate(big, 6, tokens_baseline=30)
    assert ev["tokens_per_request_spike"].active and ev["tokens_per_request_spike"].value == 10


def test_overrides_layer_in_order():
    rules = resolve_rules(
        {"ttft_p95_high": RuleOverride(threshold="5s")},
        {"ttft_p95_high": RuleOverride(min_samples=10)},
        {"error_rate_warning": RuleOverride(enabled=False)},
    )
    assert rules["ttft_p95_high"].threshold == 5.0 and rules["ttft_p95_high"].min_samples == 10
    assert not rules["error_rate_warning"].enabled
    assert DEFAULT_RULES["ttft_p95_high"].threshold == 3.0


def test_window_is_bounded():
    window = TargetWindow(horizon_s=60, keep_last=4)
    for i in range(1000):
        window.add(res(i))
    assert len(window.samples) <= 61


def test_quantile_is_the_sketch_rank():
    assert quantile([4, 3, 2, 1], 0.5) == 2
    assert quantile(list(range(1, 101)), 0.95) == 95
    assert quantile([7], 0.99) == 7


def _ev(rule_id: str, active: bool | None, value: float | None = None, holding=None) -> Evaluation:
    return Evaluation(DEFAULT_RULES[rule_id], active, value, f"{rule_id}={value}", holding)


def test_regions_must_agree_before_a_condition_holds() -> None:
    per_region = {
        "eu-west": [_ev("error_rate_critical", True, 1.0, True)],
        "us-east": [_ev("error_rate_critical", False, 0.0, False)],
        "ap-south": [_ev("error_rate_critical", False, 0.0, False)],
    }
    # One region's local network problem does not page with a quorum of two...
    [combined] = agree_across_regions(per_region, min_regions=2)
    assert combined.active is False and combined.holding is False
    # ...but does with a quorum of one, naming the region.
    [combined] = agree_across_regions(per_region, min_regions=1)
    assert combined.active is True and combined.value == 1.0
    assert combined.summary.endswith("[regions: eu-west]")
    # Two regions agree: it holds, with the worst region's value.
    per_region["us-east"] = [_ev("error_rate_critical", True, 0.6, True)]
    [combined] = agree_across_regions(per_region, min_regions=2)
    assert combined.active is True and combined.value == 1.0
    assert "[regions: eu-west, us-east]" in combined.summary


def test_regions_that_cannot_say_do_not_count() -> None:
    per_region = {
        "eu-west": [_ev("consecutive_unavailable", True, 3.0, True)],
        "us-east": [_ev("consecutive_unavailable", None)],  # not enough samples yet
    }
    [combined] = agree_across_regions(per_region, min_regions=2)
    assert combined.active is False  # one region alone, however sure, is not a quorum
    [combined] = agree_across_regions({"eu-west": per_region["eu-west"]}, min_regions=2)
    assert combined.active is False
    per_region["eu-west"] = [_ev("consecutive_unavailable", None)]
    [combined] = agree_across_regions(per_region, min_regions=2)
    assert combined.active is None and combined.holding is None
    # Low tokens/s: the worst region is the slowest one.
    per_region = {
        "a": [_ev("tps_low", True, 5.0, True)],
        "b": [_ev("tps_low", True, 2.0, True)],
    }
    [combined] = agree_across_regions(per_region, min_regions=2)
    assert combined.value == 2.0


def test_a_window_keeps_at_most_max_samples_under_heavy_traffic() -> None:
    window = TargetWindow(horizon_s=300)
    for i in range(TargetWindow.MAX_SAMPLES + 100):
        window.add(res(i * 0.001))  # a thousand a second, all inside the horizon
    assert len(window.samples) == TargetWindow.MAX_SAMPLES
    assert window.samples[0].ts == pytest.approx(T0 + 0.1)  # the oldest hundred went


def test_results_without_a_region_are_a_region_of_their_own() -> None:
    # A gateway started without a region beside an agent with one, on one database.
    per_region = {
        "eu-west": [_ev("consecutive_unavailable", True, 3.0, True)],
        None: [_ev("consecutive_unavailable", True, 5.0, True)],
    }
    [combined] = agree_across_regions(per_region, min_regions=1)
    assert combined.active is True and combined.value == 5.0
    assert combined.summary.endswith("[regions: no region, eu-west]")
    # It never completes a quorum: it may sit beside any named region.
    per_region["eu-west"] = [_ev("consecutive_unavailable", False, 0.0, False)]
    [combined] = agree_across_regions(per_region, min_regions=2)
    assert combined.active is False
    per_region["us-east"] = [_ev("consecutive_unavailable", True, 4.0, True)]
    per_region["eu-west"] = [_ev("consecutive_unavailable", True, 3.0, True)]
    [combined] = agree_across_regions(per_region, min_regions=2)
    assert combined.active is True
