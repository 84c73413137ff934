"""The responses, embeddings and long_context checks against the simulator over loopback:
measurements, provider errors, broken streams and bodies, and the prompt-size warning."""

from __future__ import annotations

import pytest

from conftest import ground_truth, make_target, sim_model
from llmpulse.config import parse_config
from llmpulse.config.errors import ConfigError
from llmpulse.errors import ErrorClass
from llmpulse.presets import PRESETS
from llmpulse.probe import Prober
from llmpulse.providers.base import REFUSED
from llmpulse.result import CheckKind, CheckResult
from llmpulse.target import LONG_CONTEXT_TOKENS, Probe, Target


async def check(target: Target, kind: CheckKind | Probe) -> CheckResult:
    async with Prober() as prober:
        if isinstance(kind, Probe):
            return await prober.check(target, kind)
        return await prober.check(target, kind)


# --- Responses API ---------------------------------------------------------------------------


async def test_responses_stream_measures_ttft_tps_and_usage(sim):
    model = sim_model(
        sim,
        ttft="200ms",
        tokens_per_s=100,
        output_tokens=20,
        reasoning_tokens=5,
        cached_tokens=3,
        served_model="snap-2026",
    )
    result = await check(make_target(sim, "openai", model), CheckKind.RESPONSES)
    assert result.ok, result.error_message
    assert (result.check, result.kind) == ("responses", CheckKind.RESPONSES)
    truth = ground_truth(sim, result.request_id)
    assert truth["protocol"] == "responses" and truth["stream"]
    assert 200 <= result.ttft_ms < 200 + 60
    # Reasoning tokens are not output: the rate is of the 20 answer tokens over their span.
    assert result.tokens_per_s == pytest.approx(100, rel=0.1)
    u = result.usage
    assert (u.output_tokens, u.reasoning_tokens, u.cached_tokens) == (25, 5, 3)
    assert u.input_tokens == truth["input_tokens"] and not u.estimated
    assert result.response_model == "snap-2026" and result.finish_reason == "completed"
    assert truth["body"]["max_output_tokens"] >= 16 and truth["body"]["stream"] is True


async def test_responses_probe_sends_its_messages_and_params_unstreamed(sim):
    model = sim_model(sim, ttft="20ms", output_tokens=6)
    probe = Probe(
        name="resp-plain",
        kind=CheckKind.RESPONSES,
        messages=({"role": "user", "content": "Say hello."},),
        params={"stream": False, "temperature": 0},
    )
    result = await check(make_target(sim, "openai", model), probe)
    assert result.ok, result.error_message
    assert (result.check, result.kind) == ("resp-plain", CheckKind.RESPONSES)
    assert result.ttft_ms is None and result.latency_ms >= 20
    assert result.usage.output_tokens == 6
    body = ground_truth(sim, result.request_id)["body"]
    assert body["input"] == [{"role": "user", "content": "Say hello."}]
    assert body["temperature"] == 0 and body["stream"] is False


@pytest.mark.parametrize(
    ("errors", "expected"),
    [
        ({"429": 1}, ErrorClass.RATE_LIMITED),
        ({"insufficient_quota": 1}, ErrorClass.QUOTA),
        ({"401": 1}, ErrorClass.AUTH),
        ({"503": 1}, ErrorClass.UNAVAILABLE),
        ({"content_filter": 1}, ErrorClass.CONTENT_FILTER),
    ],
)
async def test_responses_provider_errors_are_classified(sim, errors, expected):
    model = sim_model(sim, ttft="10ms", errors=errors)
    result = await check(make_target(sim, "openai", model), CheckKind.RESPONSES)
    assert not result.ok and result.error_class is expected, result.error_message


async def test_responses_refusal_is_content_filter(sim):
    model = sim_model(sim, ttft="10ms", errors={"refusal": 1})
    result = await check(make_target(sim, "openai", model), CheckKind.RESPONSES)
    assert result.error_class is ErrorClass.CONTENT_FILTER and result.error_message == REFUSED


@pytest.mark.parametrize(
    ("fault", "expected", "message"),
    [
        ("error_event", ErrorClass.SERVER_ERROR, "error event in stream"),
        ("malformed", ErrorClass.PROTOCOL, "malformed JSON"),
        ("no_terminal", ErrorClass.PROTOCOL, "stream ended without response.completed"),
        ("cut", ErrorClass.PROTOCOL, ""),
    ],
)
async def test_responses_broken_streams(sim, fault, expected, message):
    model = sim_model(sim, ttft="10ms", output_tokens=10, fault=fault, fault_after_tokens=3)
    result = await check(make_target(sim, "openai", model), CheckKind.RESPONSES)
    assert not result.ok and result.error_class is expected, result.error_message
    assert message in (result.error_message or "")
    assert result.ttft_ms is not None  # what arrived before the break was timed


async def test_responses_budget_cut_is_an_answer(sim):
    # The answer ran into max_output_tokens: incomplete, but answered.
    model = sim_model(sim, ttft="10ms", output_tokens=200)
    result = await check(make_target(sim, "openai", model), CheckKind.RESPONSES)
    assert result.ok and result.finish_reason == "max_output_tokens"


@pytest.mark.parametrize("provider", ["anthropic", "gemini", "azure"])
async def test_responses_where_there_is_no_responses_api(sim, provider):
    result = await check(make_target(sim, provider, "gpt-4o-mini"), CheckKind.RESPONSES)
    assert result.error_class is ErrorClass.BAD_REQUEST
    assert result.error_message == (
        f"the {provider} API offers no responses check (it has no such endpoint)"
    )
    assert result.http_status is None  # nothing was sent


# --- embeddings ------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "azure"])
async def test_embeddings_dimensions_usage_and_cost(sim, provider):
    result = await check(make_target(sim, provider, "text-embedding-3-small"), CheckKind.EMBEDDINGS)
    assert result.ok, result.error_message
    assert result.embedding_dimensions == 1536
    assert result.to_json()["embedding_dimensions"] == 1536
    truth = ground_truth(sim, result.request_id)
    assert result.usage.input_tokens == truth["input_tokens"] and not result.usage.estimated
    assert result.usage.output_tokens == 0
    assert result.ttft_ms is None and result.latency_ms >= 80
    if provider == "openai":  # the catalogue prices OpenAI's embeddings
        assert result.cost_usd == pytest.approx(result.usage.input_tokens * 0.02 / 1e6)


async def test_gemini_embeddings_estimate_the_tokens_it_does_not_report(sim):
    probe = Probe(
        name="embed-short",
        kind=CheckKind.EMBEDDINGS,
        messages=({"role": "user", "content": "twelve chars"},),
        params={"outputDimensionality": 256},
    )
    result = await check(make_target(sim, "gemini", "gemini-embedding-001"), probe)
    assert result.ok, result.error_message
    assert result.embedding_dimensions == 256
    assert result.usage.input_tokens == 3 and result.usage.estimated
    assert "the provider reported no token usage; tokens are estimated" in result.warnings
    body = ground_truth(sim, result.request_id)["body"]
    assert body["content"] == {"parts": [{"text": "twelve chars"}]}


async def test_embeddings_in_base64_are_measured_too(sim):
    model = sim_model(sim, ttft="10ms", embedding_dimensions=3072)
    probe = Probe("b64", CheckKind.EMBEDDINGS, params={"encoding_format": "base64"})
    result = await check(make_target(sim, "openai", model), probe)
    assert result.ok and result.embedding_dimensions == 3072


@pytest.mark.parametrize(
    ("behavior", "expected", "message"),
    [
        ({"errors": {"429": 1}}, ErrorClass.RATE_LIMITED, "HTTP 429"),
        ({"errors": {"500": 1}}, ErrorClass.SERVER_ERROR, "HTTP 500"),
        ({"fault": "garbage_body"}, ErrorClass.PROTOCOL, "malformed JSON"),
        ({"fault": "truncated_body"}, ErrorClass.PROTOCOL, ""),
        # Past the embeddings cap (1 MiB), refused unread: it says it is larger.
        ({"fault": "huge_body", "huge_body_mb": 2}, ErrorClass.PROTOCOL, "exceeds 1 MiB"),
    ],
)
@pytest.mark.parametrize("provider", ["openai", "gemini"])
async def test_embeddings_failures_are_classified(sim, provider, behavior, expected, message):
    model = sim_model(sim, ttft="10ms", **behavior)
    result = await check(make_target(sim, provider, model), CheckKind.EMBEDDINGS)
    assert not result.ok and result.error_class is expected, result.error_message
    assert message in (result.error_message or "")


async def test_anthropic_has_no_embeddings(sim):
    result = await check(make_target(sim, "anthropic", "claude-haiku-4-5"), CheckKind.EMBEDDINGS)
    assert result.error_class is ErrorClass.BAD_REQUEST
    assert result.error_message == (
        "the anthropic API offers no embeddings check (it has no such endpoint)"
    )


# --- long_context ----------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini", "azure"])
async def test_long_context_sends_the_size_asked_and_measures_its_ttft(sim, provider):
    model = sim_model(sim, ttft="50ms", prefill_ms_per_ktok=20, output_tokens=8, tokens_per_s=400)
    result = await check(make_target(sim, provider, model), CheckKind.LONG_CONTEXT)
    assert result.ok, result.error_message
    assert result.kind is CheckKind.LONG_CONTEXT
    truth = ground_truth(sim, result.request_id)
    counted = result.usage.input_tokens
    assert counted == truth["input_tokens"]
    assert abs(counted - LONG_CONTEXT_TOKENS) <= LONG_CONTEXT_TOKENS * 0.01
    assert not any("input tokens" in w for w in result.warnings)
    # Prefill is part of the first token's wait: 50 ms + 10k tokens at 20 ms per 1k.
    assert truth["ttft_ms"] == pytest.approx(50 + counted * 20 / 1000)
    assert truth["ttft_ms"] <= result.ttft_ms < truth["ttft_ms"] + 60
    assert result.usage.output_tokens == 8  # the small output budget allowed them all


async def test_long_context_probe_of_a_given_size_with_a_fresh_prefix_each_run(sim):
    model = sim_model(sim, ttft="10ms", output_tokens=2, context_window=200_000)
    probe = Probe(name="ttft-100k", kind=CheckKind.LONG_CONTEXT, input_tokens=100_000)
    target = make_target(sim, "openai", model)
    first, second = await check(target, probe), await check(target, probe)
    assert first.ok and second.ok, (first.error_message, second.error_message)
    assert first.check == "ttft-100k"
    assert abs(first.usage.input_tokens - 100_000) <= 1000
    bodies = [ground_truth(sim, r.request_id)["body"] for r in (first, second)]
    texts = [b["messages"][0]["content"] for b in bodies]
    # A prompt cache keys on the prefix: each run's prompt starts differently, then agrees.
    assert texts[0][:8] != texts[1][:8] and texts[0][9:] == texts[1][9:]
    assert bodies[0]["max_completion_tokens"] == 16  # TTFT needs a token, not an essay


async def test_long_context_warns_when_the_provider_counts_otherwise(sim):
    # The provider reports 6,000 input tokens for a prompt built for 10,000.
    model = sim_model(sim, ttft="10ms", output_tokens=2, input_tokens=6000)
    result = await check(make_target(sim, "openai", model), CheckKind.LONG_CONTEXT)
    assert result.ok and result.usage.input_tokens == 6000
    assert (
        "the provider counted 6000 input tokens for a prompt built for 10000 (more than 20% apart)"
    ) in result.warnings


async def test_long_context_past_the_window_is_context_length(sim):
    model = sim_model(sim, ttft="10ms", context_window=8000)
    result = await check(make_target(sim, "openai", model), CheckKind.LONG_CONTEXT)
    assert result.error_class is ErrorClass.CONTEXT_LENGTH, result.error_message


@pytest.mark.parametrize(
    ("fault", "expected"),
    [("cut", ErrorClass.PROTOCOL), ("error_event", ErrorClass.UNAVAILABLE)],  # "Overloaded"
)
async def test_long_context_broken_streams(sim, fault, expected):
    model = sim_model(sim, ttft="10ms", output_tokens=8, fault=fault, fault_after_tokens=2)
    result = await check(make_target(sim, "anthropic", model), CheckKind.LONG_CONTEXT)
    assert not result.ok and result.error_class is expected, result.error_message


async def test_a_long_context_size_out_of_bounds_is_refused_before_sending(sim):
    probe = Probe(name="huge", kind=CheckKind.LONG_CONTEXT, input_tokens=10**9)
    result = await check(make_target(sim, "openai", "gpt-4o-mini"), probe)
    assert result.error_class is ErrorClass.BAD_REQUEST and result.http_status is None
    assert "input_tokens must be 1..2000000" in (result.error_message or "")


# --- what the config accepts -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "kind"),
    [("anthropic", "embeddings"), ("anthropic", "responses"), ("gemini", "responses"),
     ("azure", "responses")],
)  # fmt: skip
def test_the_config_refuses_a_check_the_provider_cannot_answer(provider, kind):
    raw = {"provider": provider, "model": "m", "api_key": "os.environ/K", "checks": [kind]}
    if provider == "azure":
        raw |= {"base_url": "https://x.openai.azure.com", "api_version": "2024-10-21"}
    with pytest.raises(ConfigError) as err:
        parse_config({"targets": [raw]}, env={"K": "k"})
    assert str(err.value) == (
        f"targets[0]: 'checks': {kind} is not offered by provider {provider} (its "
        f"{PRESETS[provider].protocol} API has no such endpoint); remove it from 'checks'"
    )


def test_the_config_accepts_the_new_kinds_where_they_exist():
    raw = {"provider": "openai", "model": "m", "api_key": "os.environ/K",
           "checks": ["responses", "embeddings", "long_context"]}  # fmt: skip
    (target,) = parse_config({"targets": [raw]}, env={"K": "k"}).targets
    assert target.checks == (CheckKind.RESPONSES, CheckKind.EMBEDDINGS, CheckKind.LONG_CONTEXT)


async def test_responses_tool_call_ttft_is_the_calls_first_output(sim):
    model = sim_model(
        sim, ttft="200ms", tokens_per_s=100, tool_call={"name": "get_weather", "arguments": {}}
    )
    probe = Probe(
        name="tool",
        kind=CheckKind.RESPONSES,
        messages=({"role": "user", "content": "Weather?"},),
        params={"tools": [{"type": "function", "name": "get_weather", "parameters": {}}]},
    )
    result = await check(make_target(sim, "openai", model), probe)
    assert result.ok, result.error_message
    assert 200 <= result.ttft_ms < 200 + 60
