"""The probe budget's arithmetic (``probe.budget``) and the estimate of a run's cost
(``probe.costs``) it stands on; the daemon applying it is tested in test_daemon."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from llmpulse.config import parse_config
from llmpulse.probe import budget
from llmpulse.probe.costs import probe_cost_per_run
from llmpulse.result import CheckKind
from llmpulse.target import PriceOverride, Probe

# USD per million tokens: 1 in, 2 out, so costs are token counts read in millionths.
PRICES = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}


def target(name="t", interval="30s", **extra):
    raw = {"name": name, "provider": "openai-compatible", "base_url": "http://127.0.0.1:1/v1",
           "model": "m", "interval": interval, "prices": PRICES, **extra}  # fmt: skip
    (t,) = parse_config({"targets": [raw]}, env={}).targets
    return t


def test_a_runs_cost_is_its_prompt_and_its_whole_output_budget_at_the_targets_prices():
    t = target(max_tokens=64)
    assert probe_cost_per_run(t, CheckKind.MODELS) == 0.0
    # "ping": 1 token (4 characters a token, rounded up), 1 token out.
    assert probe_cost_per_run(t, CheckKind.INFERENCE) == pytest.approx(1e-6 + 2e-6)
    # The counting prompt (69 characters): 18 tokens, 64 out.
    assert probe_cost_per_run(t, CheckKind.STREAM) == pytest.approx(18e-6 + 128e-6)
    long = Probe(name="ttft-10k", kind=CheckKind.LONG_CONTEXT, input_tokens=10_000,
                 params={"max_tokens": 16})  # fmt: skip
    assert probe_cost_per_run(t, long) == pytest.approx(10_000e-6 + 32e-6)
    asks = Probe(
        name="city",
        kind=CheckKind.INFERENCE,
        messages=({"role": "user", "content": "Reply with only the capital of France."},),
    )
    # 38 characters: 10 tokens; no max_tokens: the target's 64.
    assert probe_cost_per_run(t, asks) == pytest.approx(10e-6 + 128e-6)
    embed = Probe(name="embed", kind=CheckKind.EMBEDDINGS)  # its built-in sentence: 20 tokens
    assert probe_cost_per_run(t, embed) == pytest.approx(20e-6)


def test_a_model_without_a_price_has_no_estimate():
    t = dataclasses.replace(target(), prices=None)
    assert probe_cost_per_run(t, CheckKind.INFERENCE) is None
    assert probe_cost_per_run(t, CheckKind.MODELS) == 0.0
    priced = dataclasses.replace(t, prices=PriceOverride(input_per_mtok=1, output_per_mtok=1))
    assert probe_cost_per_run(priced, CheckKind.INFERENCE) is not None


def planned(name, interval, cost, kind=CheckKind.INFERENCE):
    t = target(name, interval=interval)
    return budget.PlannedProbe(t, kind, t.interval, cost)


# A every 10 s, B every minute, C hourly; a models list every 10 s, free; D has no price.
PROBES = [
    planned("a", "10s", 0.001),
    planned("b", "60s", 0.001),
    planned("c", "1h", 0.01),
    planned("free", "10s", 0.0, CheckKind.MODELS),
    planned("d", "10s", None),
]
RATE = 0.001 / 10 + 0.001 / 60 + 0.01 / 3600


def test_within_the_allowance_nothing_stretches():
    fit = budget.fit(PROBES, RATE)
    assert fit.floor is None and fit.intervals == {}
    assert fit.usd_per_s == fit.fitted_usd_per_s == pytest.approx(RATE)


def test_the_shortest_intervals_stretch_first_to_a_floor_that_just_fits():
    fit = budget.fit(PROBES, 5e-5)
    # Only A runs more often than the floor: 0.001/F + B's and C's rate = 5e-5.
    floor = 0.001 / (5e-5 - 0.001 / 60 - 0.01 / 3600)
    assert fit.floor == pytest.approx(floor) and 10 < floor < 60
    assert fit.intervals == {("a", "inference"): pytest.approx(floor)}
    assert fit.fitted_usd_per_s == pytest.approx(5e-5)
    tighter = budget.fit(PROBES, 2e-5)  # B's turn too; C, the longest, still as configured
    assert set(tighter.intervals) == {("a", "inference"), ("b", "inference")}
    assert 60 < tighter.floor < 3600
    assert tighter.fitted_usd_per_s == pytest.approx(2e-5)


def test_a_spent_budget_slows_the_paying_probes_to_the_cap_never_stops_them():
    fit = budget.fit(PROBES, 0.0)
    assert fit.floor == budget.MAX_STRETCHED_S
    assert set(fit.intervals) == {("a", "inference"), ("b", "inference")}  # C is hourly already


def test_what_is_left_of_the_month_is_spread_over_what_is_left_of_it():
    start, end = budget.month_bounds(datetime(2026, 12, 31, 12, tzinfo=UTC).timestamp())
    assert (start, end) == (datetime(2026, 12, 1, tzinfo=UTC).timestamp(),
                            datetime(2027, 1, 1, tzinfo=UTC).timestamp())  # fmt: skip
    now = datetime(2026, 2, 15, tzinfo=UTC).timestamp()  # 14 days of February left
    assert budget.allowance(20.0, 6.0, now) == pytest.approx(14.0 / (14 * 86400))
    assert budget.allowance(20.0, 25.0, now) == 0.0


def test_the_log_line_names_what_was_stretched():
    now = datetime(2026, 2, 15, tzinfo=UTC).timestamp()
    line = budget.describe(budget.fit(PROBES, 5e-5), 20.0, 6.0, now)
    assert line.startswith("probe budget $20.00/month: $6.00 spent, $14.00 left for 14.0 days")
    assert "1 probes stretched to every 32.7s" in line and line.endswith(": a/inference")
    assert budget.describe(budget.fit(PROBES, 1.0), 20.0, 6.0, now).endswith(
        "no interval stretched"
    )
    shared = budget.describe(budget.fit(PROBES, 1.0), 20.0, 6.0, now, agents=3)
    assert "$14.00 left for 14.0 days, shared by 3 agents; the probes would" in shared


def test_long_context_probes_cost_per_day_is_told():
    t = target("ctx")
    long = Probe(name="ttft-10k", kind=CheckKind.LONG_CONTEXT, input_tokens=10_000,
                 interval=1800.0, params={"max_tokens": 16})  # fmt: skip
    probes = budget.scheduled([dataclasses.replace(t, probes=(long,))])
    assert [p.name for p in probes] == ["models", "inference", "stream", "ttft-10k"]
    # 48 runs a day at 0.010032.
    assert budget.long_context_costs(probes) == [
        "long_context probe ttft-10k of ctx: every 30m, about $0.48 a day"
    ]
