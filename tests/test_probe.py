"""Checks against the simulator over real loopback sockets: measurements and every error class."""

from __future__ import annotations

import socket
import tracemalloc

import pytest
from aiohttp import web

from conftest import ground_truth, make_target, serving, sim_model
from llmpulse.config import parse_config
from llmpulse.errors import ErrorClass
from llmpulse.probe import Prober
from llmpulse.providers.base import REFUSED
from llmpulse.result import CheckKind

PROTOCOL_PROVIDERS = ["openai", "anthropic", "gemini", "azure"]


async def check(target, kind=CheckKind.STREAM):
    async with Prober() as prober:
        return await prober.check(target, kind)


@pytest.mark.parametrize("provider", PROTOCOL_PROVIDERS)
async def test_stream_measures_ttft_tps_usage_and_version(sim, provider):
    model = sim_model(
        sim,
        ttft="250ms",
        tokens_per_s=100,
        output_tokens=20,
        served_model="snapshot-2026-01-01",
        ratelimit={"requests_limit": 100, "requests_remaining": 25, "tokens_limit": 1000,
                   "tokens_remaining": 900, "requests_reset": "30s", "tokens_reset": "1m"},
    )  # fmt: skip
    result = await check(make_target(sim, provider, model))
    assert result.ok, result.error_message
    assert result.error_class is None and result.http_status == 200
    truth = ground_truth(sim, result.request_id)
    assert truth["ttft_ms"] == 250.0
    # Loopback in one process: generous bounds here; bench/ measures accuracy under load.
    assert 250 <= result.ttft_ms < 250 + 60
    assert result.tokens_per_s == pytest.approx(100, rel=0.1)
    assert result.latency_ms > result.ttft_ms
    assert result.usage.output_tokens == 20 and not result.usage.estimated
    assert result.usage.input_tokens == truth["input_tokens"]
    assert result.response_model == "snapshot-2026-01-01"
    assert result.itl_p50_ms == pytest.approx(1000 / 100 * 20 / 19, rel=0.3)
    assert result.itl_max_ms >= result.itl_p50_ms
    if provider == "gemini":
        assert result.ratelimit is None  # Gemini sends no rate-limit headers
    else:
        assert result.ratelimit.utilization == pytest.approx(0.75)
        assert result.ratelimit.requests_remaining == 25


@pytest.mark.parametrize("provider", PROTOCOL_PROVIDERS)
async def test_inference_on_a_reasoning_model_with_empty_output_is_ok(sim, provider):
    model = sim_model(sim, ttft="20ms", reasoning_tokens=30)
    result = await check(make_target(sim, provider, model), CheckKind.INFERENCE)
    assert result.ok, result.error_message
    assert result.usage.output_tokens == 1
    assert result.finish_reason in ("length", "max_tokens", "MAX_TOKENS")
    assert result.ttft_ms is None and result.tokens_per_s is None


async def test_cost_uses_the_catalogue_and_cached_rate(sim):
    result = await check(make_target(sim, "openai", "gpt-4o-mini"), CheckKind.INFERENCE)
    assert result.ok
    u = result.usage
    fresh = u.input_tokens - (u.cached_tokens or 0)
    expected = (fresh * 0.15 + (u.cached_tokens or 0) * 0.075 + u.output_tokens * 0.6) / 1e6
    assert result.cost_usd == pytest.approx(expected)
    assert result.context_window == 128000


async def test_unknown_model_has_null_cost_and_a_warning(sim):
    model = sim_model(sim, ttft="10ms")
    result = await check(make_target(sim, "openai", model), CheckKind.INFERENCE)
    assert result.ok and result.cost_usd is None
    assert any("price catalogue" in w for w in result.warnings)


@pytest.mark.parametrize(
    ("provider", "window"), [("openai", None), ("anthropic", 99000), ("gemini", 99000)]
)
async def test_models_check_lists_and_reads_context_window(sim, provider, window):
    model = sim_model(sim, context_window=99000)
    target = make_target(sim, provider, model)
    result = await check(target, CheckKind.MODELS)
    assert result.ok and result.model_listed is True
    assert result.usage.input_tokens is None and result.cost_usd is None  # no tokens spent
    if window:
        assert result.context_window == window


async def test_models_check_reports_an_unlisted_model(sim):
    result = await check(make_target(sim, "anthropic", "claude-retired-1"), CheckKind.MODELS)
    assert result.ok and result.model_listed is False
    assert any("not in the provider's models list" in w for w in result.warnings)


# --- HTTP errors: each provider's real error body, classified -------------------------------

ERROR_CASES = [
    ("openai", "429", ErrorClass.RATE_LIMITED),
    ("anthropic", "429", ErrorClass.RATE_LIMITED),
    ("gemini", "429", ErrorClass.RATE_LIMITED),
    ("openai", "insufficient_quota", ErrorClass.QUOTA),
    ("anthropic", "insufficient_quota", ErrorClass.QUOTA),
    ("gemini", "insufficient_quota", ErrorClass.QUOTA),
    ("openai", "401", ErrorClass.AUTH),
    ("anthropic", "403", ErrorClass.AUTH),
    ("openai", "400", ErrorClass.BAD_REQUEST),
    ("gemini", "404", ErrorClass.BAD_REQUEST),
    ("anthropic", "413", ErrorClass.BAD_REQUEST),
    ("openai", "422", ErrorClass.BAD_REQUEST),
    ("openai", "context_length", ErrorClass.CONTEXT_LENGTH),
    ("anthropic", "context_length", ErrorClass.CONTEXT_LENGTH),
    ("gemini", "context_length", ErrorClass.CONTEXT_LENGTH),
    ("openai", "content_filter", ErrorClass.CONTENT_FILTER),
    ("anthropic", "content_filter", ErrorClass.CONTENT_FILTER),
    ("gemini", "content_filter", ErrorClass.CONTENT_FILTER),
    ("openai", "refusal", ErrorClass.CONTENT_FILTER),  # a refusal instead of content
    ("anthropic", "refusal", ErrorClass.CONTENT_FILTER),  # Claude's refusal stop reason
    ("openai", "502", ErrorClass.UNAVAILABLE),
    ("openai", "503", ErrorClass.UNAVAILABLE),
    ("gemini", "504", ErrorClass.UNAVAILABLE),
    ("anthropic", "529", ErrorClass.UNAVAILABLE),
    ("anthropic", "overloaded", ErrorClass.UNAVAILABLE),
    ("openai", "500", ErrorClass.SERVER_ERROR),
    ("gemini", "500", ErrorClass.SERVER_ERROR),
    ("openai", "408", ErrorClass.TIMEOUT),
]


@pytest.mark.parametrize(("provider", "kind", "expected"), ERROR_CASES)
@pytest.mark.parametrize("check_kind", [CheckKind.INFERENCE, CheckKind.STREAM])
async def test_error_responses_are_classified(sim, provider, kind, expected, check_kind):
    model = sim_model(sim, ttft="10ms", errors={kind: 1.0}, retry_after="7s")
    result = await check(make_target(sim, provider, model), check_kind)
    assert not result.ok
    assert result.error_class is expected, result.error_message
    assert result.error_message
    if (provider, kind) == ("openai", "refusal"):
        assert result.error_message == REFUSED
    if kind == "429":
        assert result.retry_after_s == pytest.approx(7)


async def test_wrong_key_is_auth_on_every_protocol(sim):
    await_results = []
    for provider in PROTOCOL_PROVIDERS:
        target = make_target(sim, provider, "gpt-4o-mini", api_key="os.environ/SIM_KEY")
        import dataclasses

        target = dataclasses.replace(target, api_key=None)
        await_results.append(await check(target, CheckKind.INFERENCE))
    assert [r.error_class for r in await_results] == [ErrorClass.AUTH] * 4


@pytest.mark.parametrize("kind", list(CheckKind))
async def test_a_target_without_a_key_is_auth_naming_what_to_set_without_a_call(sim, kind):
    import dataclasses

    from test_gateway_proxy import upstream

    model = sim_model(sim)
    hint = "no API key for openai: set OPENAI_API_KEY, or model_list[0].litellm_params.api_key"
    target = dataclasses.replace(make_target(sim, "openai", model), api_key=None, missing_key=hint)
    result = await check(target, kind)
    assert (result.ok, result.error_class, result.error_message) == (False, ErrorClass.AUTH, hint)
    assert upstream(sim, model) == []


# --- faults: hangs, stalls, cuts, garbage -----------------------------------------------------


async def test_hang_without_response_is_a_timeout(sim):
    model = sim_model(sim, fault="hang")
    result = await check(make_target(sim, "openai", model, timeout="1s"))
    assert result.error_class is ErrorClass.TIMEOUT
    assert "no first token within 1s" in result.error_message
    assert 1000 <= result.latency_ms < 1500


async def test_first_token_timeout(sim):
    model = sim_model(sim, ttft="3s")
    target = make_target(sim, "anthropic", model, timeout="10s", first_token_timeout="500ms")
    result = await check(target)
    assert result.error_class is ErrorClass.TIMEOUT
    assert "no first token within 0.5s" in result.error_message
    assert result.latency_ms < 1500


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
async def test_stall_mid_stream_is_an_idle_timeout(sim, provider):
    model = sim_model(sim, ttft="10ms", fault="stall", fault_after_tokens=3)
    result = await check(make_target(sim, provider, model, idle_timeout="500ms", timeout="5s"))
    assert result.error_class is ErrorClass.TIMEOUT
    assert "stream idle for 0.5s" in result.error_message
    assert result.ttft_ms is not None


async def test_total_timeout_on_a_slow_stream(sim):
    model = sim_model(sim, ttft="10ms", tokens_per_s=5, output_tokens=50)
    result = await check(make_target(sim, "openai", model, timeout="1s"))
    assert result.error_class is ErrorClass.TIMEOUT
    assert "total timeout of 1s" in result.error_message


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
@pytest.mark.parametrize(
    ("fault", "expected", "message"),
    [
        ("cut", ErrorClass.PROTOCOL, ""),
        ("malformed", ErrorClass.PROTOCOL, "malformed JSON"),
        ("no_terminal", ErrorClass.PROTOCOL, "stream ended without"),
    ],
)
async def test_broken_streams_are_protocol_errors(sim, provider, fault, expected, message):
    model = sim_model(sim, ttft="10ms", fault=fault, fault_after_tokens=3)
    result = await check(make_target(sim, provider, model))
    assert result.error_class is expected, result.error_message
    assert message in result.error_message
    assert result.http_status == 200


@pytest.mark.parametrize(
    ("provider", "expected"),
    [
        ("openai", ErrorClass.SERVER_ERROR),
        ("anthropic", ErrorClass.UNAVAILABLE),
        ("gemini", ErrorClass.UNAVAILABLE),
    ],
)
async def test_error_event_after_200(sim, provider, expected):
    model = sim_model(sim, ttft="10ms", fault="error_event", fault_after_tokens=2)
    result = await check(make_target(sim, provider, model))
    assert result.http_status == 200
    assert result.error_class is expected, result.error_message
    assert result.error_message.startswith("error event in stream")


@pytest.mark.parametrize("fault", ["garbage_body", "truncated_body"])
@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
async def test_garbage_and_truncated_bodies_are_protocol_errors(sim, provider, fault):
    model = sim_model(sim, ttft="10ms", fault=fault)
    result = await check(make_target(sim, provider, model), CheckKind.INFERENCE)
    assert result.error_class is ErrorClass.PROTOCOL, result.error_message


async def test_huge_body_is_refused_with_bounded_memory(sim):
    model = sim_model(sim, ttft="10ms", fault="huge_body", huge_body_mb=64)
    tracemalloc.start()
    try:
        result = await check(make_target(sim, "openai", model), CheckKind.INFERENCE)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.error_class is ErrorClass.PROTOCOL
    assert "exceeds 8 MiB" in result.error_message
    assert peak < 40 << 20


async def test_connection_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    from llmpulse.config import parse_config

    target = parse_config(
        {"targets": [{"provider": "vllm", "model": "m", "base_url": f"http://127.0.0.1:{port}/v1"}]}
    ).targets[0]
    result = await check(target, CheckKind.MODELS)
    assert result.error_class is ErrorClass.CONNECTION
    assert "refused" in result.error_message.lower() or "connect" in result.error_message.lower()


async def test_dns_failure_is_a_connection_error():
    from llmpulse.config import parse_config

    target = parse_config(
        {
            "targets": [
                {"provider": "vllm", "model": "m", "base_url": "http://no-such-host.invalid/v1"}
            ]
        }
    ).targets[0]
    result = await check(target, CheckKind.MODELS)
    assert result.error_class is ErrorClass.CONNECTION


async def test_check_many_keeps_order_and_runs_concurrently(sim):
    slow = sim_model(sim, ttft="400ms", output_tokens=4, tokens_per_s=100)
    targets = [make_target(sim, "openai", slow, name=f"t{i}") for i in range(10)]
    async with Prober() as prober:
        import time

        start = time.perf_counter()
        results = await prober.check_many([(t, CheckKind.STREAM) for t in targets], concurrency=10)
        elapsed = time.perf_counter() - start
    assert [r.target for r in results] == [f"t{i}" for i in range(10)]
    assert all(r.ok for r in results)
    assert elapsed < 2.0  # ten 0.45 s checks in parallel, not 4.5 s in sequence


@pytest.mark.parametrize("kind", [CheckKind.MODELS, CheckKind.INFERENCE, CheckKind.STREAM])
async def test_json_nested_deeper_than_the_parser_goes_is_a_protocol_error(kind):
    deep = "[" * 100_000  # well under the body cap; json's C scanner gives up with RecursionError

    async def body(request: web.Request) -> web.StreamResponse:
        if kind is CheckKind.STREAM:
            response = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await response.prepare(request)
            await response.write(f"data: {deep}\n\n".encode())
            return response
        return web.Response(text=deep, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/v1/{tail:.*}", body)
    async with serving(app) as base:
        target = parse_config(
            {"targets": [{"provider": "openai", "model": "m", "base_url": f"{base}/v1",
                          "api_key": "os.environ/K"}]},
            env={"K": "sk-test"},
        ).targets[0]  # fmt: skip
        async with Prober() as prober:
            result = await prober.check(target, kind)
    assert result.error_class is ErrorClass.PROTOCOL and result.http_status == 200
    assert "nested too deeply" in result.error_message
