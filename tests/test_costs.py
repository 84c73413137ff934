"""A probe's expected spend per run and per day, from the catalogue or the target's prices."""

from __future__ import annotations

import pytest

from llmpulse.config import parse_config
from llmpulse.probe.costs import expected_usage, probe_cost_per_day, probe_cost_per_run
from llmpulse.result import CheckKind
from llmpulse.target import Probe, Target


def target(**extra: object) -> Target:
    raw = {"provider": "openai", "model": "gpt-4o-mini", "api_key": "os.environ/K", **extra}
    return parse_config({"targets": [raw]}, env={"K": "k"}).targets[0]


def test_long_context_costs_its_prompt_and_small_output():
    t = target()
    probe = Probe(name="ttft-10k", kind=CheckKind.LONG_CONTEXT, input_tokens=10_000, interval=1800)
    usage = expected_usage(t, probe)
    assert (usage.input_tokens, usage.output_tokens) == (10_000, 16)
    per_run = (10_000 * 0.15 + 16 * 0.6) / 1e6  # gpt-4o-mini, USD per MTok
    assert probe_cost_per_run(t, probe) == pytest.approx(per_run)
    assert probe_cost_per_day(t, probe) == pytest.approx(per_run * 48)


def test_built_in_kinds_at_the_target_interval():
    t = target(interval="60s", max_tokens=64)
    assert probe_cost_per_run(t, CheckKind.MODELS) == 0.0
    inference = expected_usage(t, CheckKind.INFERENCE)
    assert (inference.input_tokens, inference.output_tokens) == (1, 1)
    assert expected_usage(t, CheckKind.STREAM).output_tokens == 64
    assert expected_usage(t, CheckKind.LONG_CONTEXT).input_tokens == 10_000
    embeddings = expected_usage(t, CheckKind.EMBEDDINGS)
    assert embeddings.output_tokens == 0 and embeddings.input_tokens
    per_day = probe_cost_per_day(t, CheckKind.STREAM)
    run = probe_cost_per_run(t, CheckKind.STREAM)
    assert run is not None and per_day == pytest.approx(run * 1440)


def test_custom_messages_and_budget_and_price_overrides():
    t = target(prices={"input_per_mtok": 1.0, "output_per_mtok": 2.0})
    probe = Probe(
        name="city",
        kind=CheckKind.INFERENCE,
        messages=({"role": "user", "content": "x" * 400},),
        params={"max_completion_tokens": 5},
    )
    assert probe_cost_per_run(t, probe) == pytest.approx((100 * 1.0 + 5 * 2.0) / 1e6)


def test_unknown_price_is_none():
    t = target(model="no-such-model-anywhere")
    assert probe_cost_per_run(t, CheckKind.LONG_CONTEXT) is None
    assert probe_cost_per_day(t, CheckKind.LONG_CONTEXT) is None


def test_a_gemini_probe_is_priced_at_the_budget_its_generation_config_sets():
    raw = {"provider": "gemini", "model": "gemini-2.0-flash", "api_key": "os.environ/K"}
    t = parse_config({"targets": [{**raw, "max_tokens": 64}]}, env={"K": "k"}).targets[0]
    budget = {"generationConfig": {"maxOutputTokens": 4000, "temperature": 0}}
    for kind in (CheckKind.INFERENCE, CheckKind.STREAM, CheckKind.LONG_CONTEXT):
        probe = Probe(name="p", kind=kind, params=budget, input_tokens=1000)
        assert expected_usage(t, probe).output_tokens == 4000, kind


def test_a_bedrock_probe_is_priced_at_the_budget_its_inference_config_sets():
    raw = {"provider": "bedrock", "model": "amazon.nova-micro-v1:0", "region": "us-east-1"}
    t = parse_config({"targets": [{**raw, "max_tokens": 64}]}, env={}).targets[0]
    budget = {"inferenceConfig": {"maxTokens": 4000, "temperature": 0}}
    for kind in (CheckKind.INFERENCE, CheckKind.STREAM, CheckKind.LONG_CONTEXT):
        probe = Probe(name="p", kind=kind, params=budget, input_tokens=1000)
        assert expected_usage(t, probe).output_tokens == 4000, kind


def test_a_responses_check_is_priced_at_the_least_budget_the_api_takes():
    # The Responses API refuses max_output_tokens under 16: the request asks 16 at least.
    t = target(max_tokens=4)
    assert expected_usage(t, CheckKind.RESPONSES).output_tokens == 16
    assert expected_usage(t, CheckKind.STREAM).output_tokens == 4
