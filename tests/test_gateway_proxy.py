"""The failover engine, fault by fault: the official SDKs call the gateway served on a loopback
socket, the simulator plays the providers, and its ground truth (``/_sim/requests``) says how
many upstream attempts went where."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import uvicorn

from conftest import base_url, sim_model
from llmpulse.aio import new_event_loop
from llmpulse.config.gateway import GatewayConfig
from llmpulse.config.litellm import parse_gateway
from llmpulse.errors import ErrorClass
from llmpulse.gateway.app import DEPLOYMENT_HEADER, create_app
from llmpulse.gateway.proxy import Gateway, GatewayError
from llmpulse.gateway.retry import RetryPolicy
from llmpulse.providers.base import REFUSED
from llmpulse.result import CheckKind, CheckResult, Source
from llmpulse.sim.common import text_of
from llmpulse.sim.server import SimServer
from llmpulse.target import Target

PREFIX = {"openai": "openai", "anthropic": "anthropic", "gemini": "gemini"}
FAST = {"ttft": 0.01, "tokens_per_s": 2000}


class Served:
    """The gateway app on a real loopback socket, in its own thread and event loop."""

    def __init__(
        self,
        config: GatewayConfig,
        policy: RetryPolicy | None = None,
        probe_targets: Sequence[Target] = (),
        results_db: Path | None = None,
        accept_unenforced_auth: bool = False,
    ) -> None:
        self.config = config
        self.records: list[CheckResult] = []
        self.gateway: Gateway | None = None

        def make() -> Gateway:
            self.gateway = Gateway(config, record=self.records.append, policy=policy)
            return self.gateway

        app = create_app(
            config,
            record=self.records.append,
            make_gateway=make,
            probe_targets=probe_targets,
            results_db=results_db,
            accept_unenforced_auth=accept_unenforced_auth,
        )
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        loop = new_event_loop()
        loop.run_until_complete(self._server.serve(sockets=[self._sock]))
        loop.close()

    def __enter__(self) -> Served:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, "gateway did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()

    def openai(self, key: str = "none") -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, timeout=20)

    def anthropic(self, key: str = "none") -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.url, api_key=key, max_retries=0, timeout=20)


def deployment(
    sim: SimServer, group: str, provider: str, model: str, **params: Any
) -> dict[str, Any]:
    return {
        "model_name": group,
        "litellm_params": {
            "model": f"{PREFIX[provider]}/{model}",
            "api_base": base_url(sim, provider),
            "api_key": "os.environ/SIM_KEY",
            **params,
        },
    }


def gateway_config(
    entries: list[dict[str, Any]],
    router: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
    general: dict[str, Any] | None = None,
) -> GatewayConfig:
    raw: dict[str, Any] = {"model_list": entries, "router_settings": router or {}}
    if settings:
        raw["gateway"] = settings
    if general:
        raw["general_settings"] = general
    config = parse_gateway(raw, env={"SIM_KEY": "sk-sim"})
    assert config is not None
    return config


def upstream(sim: SimServer, model: str) -> list[dict[str, Any]]:
    """The simulator's record of every request that reached ``model``."""
    rows = httpx.get(f"{sim.url}/_sim/requests", timeout=10).json()["requests"]
    return [r for r in rows if r["model"] == model]


def recover_soon(sim: SimServer, model: str, seconds: float = 0.25) -> None:
    """Clear ``model``'s errors ``seconds`` from now, on the simulator's timeline clock.

    Called once the gateway is up, so a slow start cannot eat the failing window.
    """
    now = httpx.get(f"{sim.url}/_sim/state", timeout=10).json()["scenario_time_s"]
    timeline = [{"at": float(now) + seconds, "set": {"errors": {}}}]
    httpx.patch(f"{sim.url}/_sim/models/{model}", json={"timeline": timeline}, timeout=10)


def ask(client: openai.OpenAI, model: str, **extra: Any) -> Any:
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hello there"}], **extra
    )


def test_a_non_streaming_answer_is_judged_a_success(sim: SimServer) -> None:
    """The client takes the answer and the attempt ends there: its success still reaches the
    selector (breaker, latency, minute usage), as a streamed one's does."""
    model = sim_model(sim, **FAST)
    config = gateway_config([deployment(sim, "chat", "openai", model)])
    with Served(config) as served:
        served.openai().chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}]
        )
        assert served.gateway is not None
        selector = served.gateway.selector
        deployment_id = config.deployments[0].id
        assert selector.breaker(deployment_id).snapshot().window_requests == 1
        assert selector.stats(deployment_id).latency_s is not None
        assert selector.stats(deployment_id).in_flight == 0


def test_cross_provider_failover_reports_the_deployment_that_answered(sim: SimServer) -> None:
    down = sim_model(sim, errors={"503": 1.0}, **FAST)
    claude = sim_model(sim, **FAST)
    config = gateway_config(
        [deployment(sim, "chat", "openai", down), deployment(sim, "chat", "anthropic", claude)]
    )
    with Served(config) as served:
        raw = served.openai().chat.completions.with_raw_response.create(
            model="chat", messages=[{"role": "user", "content": "hi"}]
        )
        answer = raw.parse()
        assert raw.headers[DEPLOYMENT_HEADER] == f"chat/anthropic/{claude}"
        assert answer.model == claude
        assert answer.choices[0].message.content
        assert answer.choices[0].finish_reason == "stop"
        assert answer.usage is not None and answer.usage.completion_tokens == 16

        chunks = list(ask(served.openai(), "chat", stream=True))
        assert {c.model for c in chunks} == {claude}
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == answer.choices[0].message.content
    assert len(upstream(sim, down)) == 2 and len(upstream(sim, claude)) == 2
    first, second = served.records
    assert first.source is Source.TRAFFIC and first.ok and first.kind is CheckKind.INFERENCE
    assert first.target == f"chat/anthropic/{claude}" and first.model == claude
    assert (first.attempts, first.fallbacks) == (2, 0)
    assert first.usage.output_tokens == 16 and first.latency_ms is not None
    assert second.kind is CheckKind.STREAM and second.ttft_ms is not None
    assert second.tokens_per_s is not None and second.attempts == 2


def test_anthropic_endpoint_served_by_openai_deployment(sim: SimServer) -> None:
    gpt = sim_model(sim, **FAST)
    with Served(gateway_config([deployment(sim, "claude-ish", "openai", gpt)])) as served:
        client = served.anthropic()
        message = client.messages.create(
            model="claude-ish", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        )
        assert message.model == gpt and message.stop_reason == "end_turn"
        assert message.usage.output_tokens == 16
        with client.messages.stream(
            model="claude-ish", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert text == message.content[0].text  # type: ignore[union-attr]
        assert final.model == gpt and final.usage.output_tokens == 16


def test_429_retry_after_is_honoured_on_the_same_deployment(sim: SimServer) -> None:
    limited = sim_model(sim, errors={"429": 1.0}, retry_after=0.4, **FAST)
    spare = sim_model(sim, **FAST)
    config = gateway_config(
        [deployment(sim, "chat", "openai", limited), deployment(sim, "chat", "openai", spare)]
    )
    with Served(config) as served:
        recover_soon(sim, limited)
        started = time.monotonic()
        answer = ask(served.openai(), "chat")
        assert time.monotonic() - started >= 0.4
    assert answer.model == limited
    assert [r["status"] for r in upstream(sim, limited)] == [429, 200]
    assert upstream(sim, spare) == []
    assert served.records[0].attempts == 2


def test_429_with_a_wait_over_budget_fails_over_at_once(sim: SimServer) -> None:
    limited = sim_model(sim, errors={"429": 1.0}, retry_after=30, **FAST)
    spare = sim_model(sim, **FAST)
    config = gateway_config(
        [deployment(sim, "chat", "openai", limited), deployment(sim, "chat", "openai", spare)],
        settings={"max_retry_wait": "5s"},
    )
    with Served(config) as served:
        started = time.monotonic()
        assert ask(served.openai(), "chat").model == spare
        assert time.monotonic() - started < 2
        # The limited one cools down for its retry-after: the next request skips it.
        assert ask(served.openai(), "chat").model == spare
    assert len(upstream(sim, limited)) == 1 and len(upstream(sim, spare)) == 2


def test_500_once_is_retried_on_the_same_deployment(sim: SimServer) -> None:
    flaky = sim_model(sim, errors={"500": 1.0}, **FAST)
    spare = sim_model(sim, **FAST)
    config = gateway_config(
        [deployment(sim, "chat", "openai", flaky), deployment(sim, "chat", "openai", spare)]
    )
    # random.Random(0)'s first draw makes the jittered backoff 0.42 s: past the 500s (0.25 s).
    with Served(config, policy=RetryPolicy(rng=random.Random(0))) as served:
        recover_soon(sim, flaky)
        assert ask(served.openai(), "chat").model == flaky
    assert [r["status"] for r in upstream(sim, flaky)] == [500, 200]
    assert upstream(sim, spare) == []


def test_persistent_500_is_retried_once_then_fails_over(sim: SimServer) -> None:
    broken = sim_model(sim, errors={"500": 1.0}, **FAST)
    spare = sim_model(sim, **FAST)
    config = gateway_config(
        [deployment(sim, "chat", "openai", broken), deployment(sim, "chat", "openai", spare)]
    )
    with Served(config, policy=RetryPolicy(backoff_base_s=0.05)) as served:
        assert ask(served.openai(), "chat").model == spare
    assert len(upstream(sim, broken)) == 2 and len(upstream(sim, spare)) == 1
    assert served.records[0].attempts == 3


def test_hang_ends_at_the_deployment_timeout_and_fails_over(sim: SimServer) -> None:
    silent = sim_model(sim, fault="hang", **FAST)
    spare = sim_model(sim, **FAST)
    config = gateway_config(
        [
            deployment(sim, "chat", "openai", silent, timeout=0.5),
            deployment(sim, "chat", "anthropic", spare),
        ]
    )
    with Served(config) as served:
        started = time.monotonic()
        assert ask(served.openai(), "chat").model == spare
        assert 0.5 <= time.monotonic() - started < 3
    assert len(upstream(sim, silent)) == 1 and len(upstream(sim, spare)) == 1


def test_slow_first_token_fails_over_before_any_byte(sim: SimServer) -> None:
    slow = sim_model(sim, ttft=3.0, tokens_per_s=2000)
    quick = sim_model(sim, **FAST)
    config = gateway_config(
        [deployment(sim, "chat", "openai", slow), deployment(sim, "chat", "openai", quick)],
        settings={"ttft_limit": "300ms"},
    )
    with Served(config) as served:
        started = time.monotonic()
        chunks = list(ask(served.openai(), "chat", stream=True))
        assert time.monotonic() - started < 2
    # The slow one's role chunk was held back: every chunk the client got is the quick one's.
    assert {c.model for c in chunks} == {quick}
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert len(upstream(sim, slow)) == 1 and len(upstream(sim, quick)) == 1
    assert served.records[0].error_class is None and served.records[0].attempts == 2


def test_stream_cut_mid_answer_is_completed_by_prefill_on_anthropic(sim: SimServer) -> None:
    cut = sim_model(sim, fault="cut", fault_after_tokens=3, **FAST)
    claude = sim_model(sim, **FAST)
    config = gateway_config(
        [deployment(sim, "chat", "openai", cut), deployment(sim, "chat", "anthropic", claude)]
    )
    with Served(config) as served:
        chunks = list(ask(served.openai(), "chat", stream=True))
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and finishes.count("stop") == 1
    assert len(upstream(sim, cut)) == 1 and len(upstream(sim, claude)) == 1
    record = served.records[0]
    assert record.ok and record.attempts == 2 and record.target == f"chat/anthropic/{claude}"


def test_stream_cut_without_a_prefill_deployment_ends_with_an_error_event(
    sim: SimServer,
) -> None:
    cut = sim_model(sim, fault="cut", fault_after_tokens=3, **FAST)
    other = sim_model(sim, **FAST)
    config = gateway_config(
        [deployment(sim, "chat", "openai", cut), deployment(sim, "chat", "openai", other)]
    )
    with Served(config) as served:
        received: list[str] = []
        with pytest.raises(openai.APIError):
            for chunk in ask(served.openai(), "chat", stream=True):
                if chunk.choices:
                    received.append(chunk.choices[0].delta.content or "")
                    assert chunk.choices[0].finish_reason is None  # never a clean finish
        assert "".join(received)  # output had reached the client before the cut

        with (
            pytest.raises(anthropic.APIError),
            served.anthropic().messages.stream(
                model="chat", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
            ) as stream,
        ):
            "".join(stream.text_stream)
    assert upstream(sim, other) == []  # restarting would duplicate what the client has
    assert [r.ok for r in served.records] == [False, False]
    assert served.records[0].error_class in (ErrorClass.CONNECTION, ErrorClass.PROTOCOL)


def test_context_length_goes_to_the_context_window_fallback(sim: SimServer) -> None:
    small = sim_model(sim, errors={"context_length": 1.0}, **FAST)
    small_twin = sim_model(sim, **FAST)
    big = sim_model(sim, **FAST)
    config = gateway_config(
        [
            deployment(sim, "small", "openai", small),
            deployment(sim, "small", "openai", small_twin),
            deployment(sim, "big", "anthropic", big),
        ],
        router={"context_window_fallbacks": [{"small": ["big"]}]},
    )
    with Served(config) as served:
        assert ask(served.openai(), "small").model == big
    assert len(upstream(sim, small)) == 1
    assert upstream(sim, small_twin) == []  # the same model elsewhere has the same window
    assert (served.records[0].attempts, served.records[0].fallbacks) == (2, 1)


def windowed(entry: dict[str, Any], max_input_tokens: int) -> dict[str, Any]:
    return {**entry, "model_info": {"max_input_tokens": max_input_tokens}}


def test_pre_call_check_skips_deployments_whose_window_cannot_hold_the_prompt(
    sim: SimServer,
) -> None:
    tiny = sim_model(sim, **FAST)
    roomy = sim_model(sim, **FAST)
    big = sim_model(sim, **FAST)
    config = gateway_config(
        [
            windowed(deployment(sim, "small", "openai", tiny), 100),
            windowed(deployment(sim, "small", "openai", roomy), 1000),
            windowed(deployment(sim, "big", "anthropic", big), 100_000),
        ],
        router={"enable_pre_call_checks": True, "context_window_fallbacks": [{"small": ["big"]}]},
    )
    with Served(config) as served:
        client = served.openai()
        assert ask(client, "small").model == tiny  # "hello there" fits everywhere
        medium = [{"role": "user", "content": "word " * 400}]  # about 500 tokens
        assert client.chat.completions.create(model="small", messages=medium).model == roomy
        long = [{"role": "user", "content": "word " * 2000}]  # about 2500 tokens
        answer = client.chat.completions.create(model="small", messages=long, stream=True)
        assert {c.model for c in answer} == {big}
        with pytest.raises(openai.BadRequestError, match="estimated"):
            client.chat.completions.create(model="big", messages=long * 200)
    assert len(upstream(sim, tiny)) == 1 and len(upstream(sim, roomy)) == 1
    assert len(upstream(sim, big)) == 1  # the prompt that fits nowhere never left the gateway
    assert (served.records[2].attempts, served.records[2].fallbacks) == (1, 1)


def test_prompt_token_estimate() -> None:
    from llmpulse.gateway.ir import ChatRequest, Message, TextPart, Tool, ToolResultPart
    from llmpulse.gateway.proxy import estimate_prompt_tokens

    request = ChatRequest(
        "m",
        [Message("user", [TextPart("a" * 400)]), Message("user", [ToolResultPart("c", "b" * 40)])],
        system="s" * 40,
        tools=[Tool("t", parameters={})],
    )
    # (400 + 40 + 40 + 1 + 2) chars / 4, plus 4 per message and 4 for the system prompt.
    assert estimate_prompt_tokens(request) == 120 + 12


def test_content_filter_is_not_retried_and_its_reason_reaches_the_client(
    sim: SimServer,
) -> None:
    filtered = sim_model(sim, errors={"content_filter": 1.0}, **FAST)
    spare = sim_model(sim, **FAST)
    config = gateway_config(
        [deployment(sim, "chat", "openai", filtered), deployment(sim, "chat", "openai", spare)]
    )
    with Served(config) as served:
        answer = ask(served.openai(), "chat")
    assert answer.choices[0].finish_reason == "content_filter"
    assert len(upstream(sim, filtered)) == 1 and upstream(sim, spare) == []
    assert served.records[0].error_class is ErrorClass.CONTENT_FILTER


def test_malformed_chunk_is_skipped_and_the_answer_completes(sim: SimServer) -> None:
    garbled = sim_model(sim, fault="malformed", **FAST)
    with Served(gateway_config([deployment(sim, "chat", "openai", garbled)])) as served:
        chunks = list(ask(served.openai(), "chat", stream=True))
        assert chunks[-1].choices[0].finish_reason == "stop"
        assert ask(served.openai(), "chat").choices[0].message.content  # still healthy
    assert served.records[0].ok and served.records[0].warnings


def test_errors_surface_as_the_sdks_own_exceptions(sim: SimServer) -> None:
    limited = sim_model(sim, errors={"429": 1.0}, retry_after=30, **FAST)
    down = sim_model(sim, errors={"503": 1.0}, **FAST)
    config = gateway_config(
        [deployment(sim, "limited", "openai", limited), deployment(sim, "down", "openai", down)],
        router={"num_retries": 1},
    )
    with Served(config, policy=RetryPolicy(num_retries=1, backoff_base_s=0.05)) as served:
        with pytest.raises(openai.RateLimitError):
            ask(served.openai(), "limited")
        with pytest.raises(openai.InternalServerError) as info:
            ask(served.openai(), "down")
        assert info.value.status_code == 503
        with pytest.raises(openai.NotFoundError):
            ask(served.openai(), "no-such-model")
        with pytest.raises(anthropic.RateLimitError):
            served.anthropic().messages.create(
                model="limited", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
            )
        with pytest.raises(anthropic.BadRequestError):
            served.anthropic().messages.create(
                model="down", max_tokens=8, messages=[{"role": "robot", "content": "hi"}]
            )
    assert len(upstream(sim, down)) == 2  # num_retries 1: one backoff retry, alone in its group


def test_a_client_leaving_mid_stream_releases_its_deployment(sim: SimServer) -> None:
    slow = sim_model(sim, ttft=0.01, tokens_per_s=20, output_tokens=200)
    with Served(gateway_config([deployment(sim, "chat", "openai", slow)])) as served:
        stream = ask(served.openai(), "chat", stream=True)
        next(iter(stream))
        stream.close()
        assert served.gateway is not None
        selector = served.gateway.selector
        deployment_id = served.config.deployments[0].id
        deadline = time.monotonic() + 5
        while selector.stats(deployment_id).in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
        assert selector.stats(deployment_id).in_flight == 0


def test_gateway_in_process_without_http(sim: SimServer) -> None:
    from llmpulse.gateway.ir import ChatRequest, Message, TextPart

    model = sim_model(sim, **FAST)
    config = gateway_config([deployment(sim, "g", "gemini", model)])

    async def main() -> str:
        gateway = Gateway(config)
        try:
            request = ChatRequest("g", [Message("user", [TextPart("hi")])])
            answer, used = await gateway.complete(request)
            assert used.model == model
            return answer.text
        finally:
            await gateway.aclose()

    assert asyncio.run(main())


def test_connection_refused_or_reset_fails_over(sim: SimServer) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens here once the socket is closed
    refused = deployment(sim, "chat", "openai", "gone")
    refused["litellm_params"]["api_base"] = f"http://127.0.0.1:{port}/v1"
    reset = sim_model(sim, fault="cut", fault_after_tokens=0, **FAST)  # dropped before content
    spare = sim_model(sim, **FAST)
    # LiteLLM's example: three deployments, num_retries 2, i.e. three attempts per request.
    config = gateway_config(
        [
            refused,
            deployment(sim, "chat", "openai", reset),
            deployment(sim, "chat", "openai", spare),
        ],
        router={"num_retries": 2},
    )
    with Served(config) as served:
        # Refused, then the next one answers (the simulator's cut only affects streams).
        assert ask(served.openai(), "chat").model == reset
        # Refused, then reset before any content, then the spare answers in full.
        chunks = list(ask(served.openai(), "chat", stream=True))
    assert {c.model for c in chunks} == {spare}
    assert chunks[-1].choices[0].finish_reason == "stop"
    # Each failed connection failed over at once: no second try on a broken route.
    assert len(upstream(sim, reset)) == 2 and len(upstream(sim, spare)) == 1
    assert [r.attempts for r in served.records] == [2, 3]
    assert all(r.ok for r in served.records)


def test_a_refused_deployment_alone_is_retried_after_a_backoff_not_in_a_loop(
    sim: SimServer,
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    refused = deployment(sim, "chat", "openai", "gone")
    refused["litellm_params"]["api_base"] = f"http://127.0.0.1:{port}/v1"
    config = gateway_config([refused], router={"num_retries": 2, "allowed_fails": 10})
    policy = RetryPolicy(num_retries=2, backoff_base_s=0.2)
    with Served(config, policy=policy) as served:
        started = time.monotonic()
        with pytest.raises(openai.APIError):
            ask(served.openai(), "chat")
        waited = time.monotonic() - started
    record = served.records[0]
    assert record.attempts == 3 and record.error_class is ErrorClass.CONNECTION
    assert waited >= 0.4  # two retries, each after at least the base backoff


def test_stream_without_a_terminal_event_ends_promptly_and_is_not_a_success(
    sim: SimServer,
) -> None:
    unfinished = sim_model(sim, fault="no_terminal", fault_after_tokens=3, **FAST)
    with Served(gateway_config([deployment(sim, "chat", "openai", unfinished)])) as served:
        started = time.monotonic()
        received: list[str] = []
        with pytest.raises(openai.APIError):
            for chunk in ask(served.openai(), "chat", stream=True):
                if chunk.choices:
                    received.append(chunk.choices[0].delta.content or "")
                    assert chunk.choices[0].finish_reason is None
        assert time.monotonic() - started < 3  # not the 30 s idle timeout
    assert "".join(received)
    assert not served.records[0].ok and served.records[0].error_class is ErrorClass.PROTOCOL


def test_prefill_rejected_at_the_fallback_reports_the_original_error(sim: SimServer) -> None:
    cut = sim_model(sim, fault="cut", fault_after_tokens=3, **FAST)
    refuses = sim_model(sim, errors={"400": 1.0}, **FAST)  # rejects the continuation
    config = gateway_config(
        [deployment(sim, "chat", "openai", cut), deployment(sim, "chat", "anthropic", refuses)]
    )
    with Served(config) as served, pytest.raises(openai.APIError) as info:
        for _ in ask(served.openai(), "chat", stream=True):
            pass
    assert "simulated" not in str(info.value)  # the fallback's rejection is not what failed
    assert len(upstream(sim, refuses)) == 1
    assert served.records[0].error_class in (ErrorClass.CONNECTION, ErrorClass.PROTOCOL)


def test_default_fallbacks_and_content_policy_fallbacks(sim: SimServer) -> None:
    down = sim_model(sim, errors={"503": 1.0}, **FAST)
    strict = sim_model(sim, errors={"content_policy": 1.0}, **FAST)
    lenient = sim_model(sim, **FAST)
    rescue = sim_model(sim, **FAST)
    config = gateway_config(
        [
            deployment(sim, "down", "openai", down),
            deployment(sim, "strict", "openai", strict),
            deployment(sim, "lenient", "anthropic", lenient),
            deployment(sim, "rescue", "gemini", rescue),
        ],
        router={
            "default_fallbacks": ["rescue"],
            "content_policy_fallbacks": [{"strict": ["lenient"]}],
        },
    )
    with Served(config, policy=RetryPolicy(backoff_base_s=0.05)) as served:
        assert ask(served.openai(), "down").model == rescue
        assert ask(served.openai(), "strict").model == lenient
    assert len(upstream(sim, strict)) == 1  # a content refusal is not retried
    assert [(r.fallbacks, r.ok) for r in served.records] == [(1, True), (1, True)]


def test_content_policy_refusal_without_a_fallback_reaches_the_client(sim: SimServer) -> None:
    strict = sim_model(sim, errors={"content_policy": 1.0}, **FAST)
    spare = sim_model(sim, **FAST)
    config = gateway_config(
        [deployment(sim, "chat", "openai", strict), deployment(sim, "chat", "openai", spare)]
    )
    with Served(config) as served, pytest.raises(openai.BadRequestError, match="safety system"):
        ask(served.openai(), "chat")
    assert len(upstream(sim, strict)) == 1 and upstream(sim, spare) == []
    assert served.records[0].error_class is ErrorClass.CONTENT_FILTER


WEATHER = {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def openai_tool_calls(stream: Any) -> tuple[list[str], list[str], list[str | None]]:
    """The tool-call names, argument deltas and finish reasons an openai SDK stream delivered."""
    names: list[str] = []
    arguments: list[str] = []
    finishes: list[str | None] = []
    for chunk in stream:
        if not chunk.choices:
            continue
        finishes.append(chunk.choices[0].finish_reason)
        for call in chunk.choices[0].delta.tool_calls or []:
            if call.function and call.function.name:
                names.append(call.function.name)
            if call.function and call.function.arguments:
                arguments.append(call.function.arguments)
    return names, arguments, finishes


@pytest.mark.parametrize("fallback", ["openai", "gemini"])  # neither accepts a prefill
def test_tool_call_cut_mid_arguments_restarts_cleanly_on_a_fallback(
    sim: SimServer, fallback: str
) -> None:
    cut = sim_model(sim, tool_call=WEATHER, fault="cut", fault_after_tokens=3, **FAST)
    spare = sim_model(sim, tool_call=WEATHER, **FAST)
    config = gateway_config(
        [deployment(sim, "chat", "openai", cut), deployment(sim, "chat", fallback, spare)],
        router={"num_retries": 2},
    )
    with Served(config) as served:
        stream = ask(served.openai(), "chat", stream=True, tools=[WEATHER_TOOL])
        names, arguments, finishes = openai_tool_calls(stream)
    # The cut call never reached the client: one whole call, its arguments once, then finished.
    assert names == ["get_weather"]
    assert json.loads("".join(arguments)) == WEATHER["arguments"]
    assert [f for f in finishes if f] == ["tool_calls"]
    assert upstream(sim, cut)[0]["fault"] == "cut" and len(upstream(sim, spare)) == 1
    record = served.records[0]
    assert record.ok and record.attempts == 2 and record.finish_reason == "tool_calls"


def test_tool_call_cut_mid_arguments_reaches_an_anthropic_client_whole(sim: SimServer) -> None:
    cut = sim_model(sim, tool_call=WEATHER, fault="cut", fault_after_tokens=3, **FAST)
    spare = sim_model(sim, tool_call=WEATHER, **FAST)
    config = gateway_config(
        [deployment(sim, "chat", "anthropic", cut), deployment(sim, "chat", "openai", spare)],
        router={"num_retries": 2},
    )
    tool = {"name": "get_weather", "input_schema": WEATHER_TOOL["function"]["parameters"]}
    with Served(config) as served:
        partials: list[str] = []
        with served.anthropic().messages.stream(
            model="chat",
            max_tokens=100,
            tools=[tool],
            messages=[{"role": "user", "content": "weather in Paris?"}],
        ) as stream:
            for event in stream:
                if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                    partials.append(event.delta.partial_json)
            message = stream.get_final_message()
    uses = [b for b in message.content if b.type == "tool_use"]
    assert [(u.name, u.input) for u in uses] == [("get_weather", WEATHER["arguments"])]
    assert json.loads("".join(partials)) == WEATHER["arguments"]  # no delta twice
    assert message.stop_reason == "tool_use"
    assert len(upstream(sim, cut)) == 1 and len(upstream(sim, spare)) == 1


def test_tool_call_cut_with_nowhere_else_to_go_is_an_explicit_error(sim: SimServer) -> None:
    cut = sim_model(sim, tool_call=WEATHER, fault="cut", fault_after_tokens=3, **FAST)
    config = gateway_config([deployment(sim, "chat", "openai", cut)], router={"num_retries": 1})
    with Served(config, policy=RetryPolicy(num_retries=1, backoff_base_s=0.05)) as served:
        names: list[str] = []
        with pytest.raises(openai.APIError):
            names = openai_tool_calls(
                ask(served.openai(), "chat", stream=True, tools=[WEATHER_TOOL])
            )[0]
    assert names == []  # not a partial call: the error came before any of it
    assert len(upstream(sim, cut)) == 2  # one backoff retry, then the error
    record = served.records[0]
    assert not record.ok and record.error_class is ErrorClass.CONNECTION


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_stream_without_done_is_finalised_promptly_with_its_usage(
    sim: SimServer, provider: str
) -> None:
    # Finish and usage arrive, then the upstream holds the stream open without [DONE] /
    # message_stop (Gemini: without closing it): the gateway ends the answer at once, not at
    # the 30 s idle timeout.
    unended = sim_model(sim, fault="no_done", output_tokens=7, input_tokens=11, **FAST)
    with Served(gateway_config([deployment(sim, "chat", provider, unended)])) as served:
        started = time.monotonic()
        stream = ask(served.openai(), "chat", stream=True, stream_options={"include_usage": True})
        state = openai.lib.streaming.chat.ChatCompletionStreamState()
        for chunk in stream:
            state.handle_chunk(chunk)
        elapsed = time.monotonic() - started
    assert elapsed < 3
    final = state.get_final_completion()
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content == text_of(7)
    assert final.usage is not None
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (11, 7)
    record = served.records[0]
    assert record.ok and record.error_class is None
    assert (record.usage.input_tokens, record.usage.output_tokens) == (11, 7)
    assert upstream(sim, unended)[0]["fault"] == "no_done"


class ErrorFinishUpstream:
    """An OpenAI-compatible server that starts an answer and ends it with finish_reason
    "error", as Mistral and OpenRouter do when generation fails midway (the simulator does not
    speak this), on a real loopback socket in its own thread."""

    def __init__(self) -> None:
        from aiohttp import web

        async def chat(request: web.Request) -> web.StreamResponse:
            body = await request.json()
            chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0,
                     "model": body["model"]}  # fmt: skip
            if not body.get("stream"):
                return web.json_response({
                    **chunk, "object": "chat.completion",
                    "choices": [{"index": 0, "finish_reason": "error",
                                 "message": {"role": "assistant", "content": "Partial"}}],
                })  # fmt: skip
            response = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await response.prepare(request)
            for delta, finish in (
                ({"role": "assistant", "content": "Partial"}, None),
                ({}, "error"),
            ):
                choice = {"index": 0, "delta": delta, "finish_reason": finish}
                await response.write(
                    f"data: {json.dumps({**chunk, 'choices': [choice]})}\n\n".encode()
                )
                await asyncio.sleep(0.2)  # the text reaches the client before the failure
            await response.write(b"data: [DONE]\n\n")
            return response

        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop = new_event_loop()
        self._loop.run_until_complete(self._runner.setup())
        site = web.SockSite(self._runner, socket.create_server(("127.0.0.1", 0)))
        self._loop.run_until_complete(site.start())
        self.url = f"http://127.0.0.1:{site._sock.getsockname()[1]}/v1"  # type: ignore[union-attr]
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> ErrorFinishUpstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()


def test_finish_reason_error_is_a_failed_attempt_never_an_answer(sim: SimServer) -> None:
    healthy = sim_model(sim, **FAST)
    with ErrorFinishUpstream() as bad:
        failing = deployment(sim, "chat", "openai", "mistral-small")
        failing["litellm_params"]["api_base"] = bad.url
        config = gateway_config([failing, deployment(sim, "chat", "openai", healthy)])
        with Served(config) as gw:
            client = gw.openai()
            # Nothing reached the client yet: fail over and answer from the healthy one.
            reply = ask(client, "chat")
            assert reply.model == healthy and reply.choices[0].finish_reason == "stop"
            # Mid-stream, after "Partial" went out: an explicit error, never a finished answer.
            finishes = []
            with pytest.raises(openai.APIError):
                for chunk in ask(client, "chat", stream=True):
                    finishes += [c.finish_reason for c in chunk.choices if c.finish_reason]
            assert finishes == []
    failed = [r for r in gw.records if r.kind is CheckKind.STREAM]
    assert failed and not failed[-1].ok and failed[-1].error_class is ErrorClass.SERVER_ERROR


@pytest.mark.parametrize("stream", [False, True])
def test_a_refusal_reaches_each_client_as_its_protocol_says_it_and_is_content_filter(
    sim: SimServer, stream: bool
) -> None:
    refusing = sim_model(sim, errors={"refusal": 1.0}, output_tokens=6, **FAST)
    spare = sim_model(sim, **FAST)
    config = gateway_config(
        [deployment(sim, "chat", "openai", refusing), deployment(sim, "chat", "openai", spare)]
    )
    with Served(config) as served:
        # An OpenAI client gets it as OpenAI sends it: refusal, no content, finish reason stop.
        if stream:
            state = openai.lib.streaming.chat.ChatCompletionStreamState()
            for chunk in ask(served.openai(), "chat", stream=True):
                state.handle_chunk(chunk)
            choice = state.get_final_completion().choices[0]
        else:
            choice = ask(served.openai(), "chat").choices[0]
        assert (choice.message.refusal, choice.message.content) == (text_of(6), None)
        assert choice.finish_reason == "stop"
        # An Anthropic client gets what Claude sends when it refuses: text, stop reason refusal.
        messages = served.anthropic().messages
        kwargs: dict[str, Any] = {
            "model": "chat", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]
        }  # fmt: skip
        if stream:
            with messages.stream(**kwargs) as events:
                message = events.get_final_message()
        else:
            message = messages.create(**kwargs)
        assert [b.text for b in message.content if b.type == "text"] == [text_of(6)]
        assert message.stop_reason == "refusal"
    assert len(upstream(sim, refusing)) == 2 and upstream(sim, spare) == []  # not retried
    assert [(r.ok, r.error_class, r.error_message) for r in served.records] == [
        (False, ErrorClass.CONTENT_FILTER, REFUSED)
    ] * 2


def test_the_route_and_what_moved_the_request_are_recorded(sim: SimServer) -> None:
    down = sim_model(sim, errors={"503": 1.0}, **FAST)
    claude = sim_model(sim, **FAST)
    rescue = sim_model(sim, **FAST)
    config = gateway_config(
        [
            deployment(sim, "chat", "openai", down, order=1),
            deployment(sim, "chat", "anthropic", claude, order=2),
            deployment(sim, "rescue", "gemini", rescue),
        ],
        router={"fallbacks": [{"chat": ["rescue"]}]},
    )
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    with Served(config, policy=RetryPolicy(backoff_base_s=0.01)) as served:
        ask(served.openai(), "chat", tools=[tool], tool_choice="auto")
        ask(served.openai(), "rescue")
    moved, direct = served.records
    assert moved.route == [f"chat/openai/{down}", f"chat/anthropic/{claude}"]
    assert moved.fallback_reason is ErrorClass.UNAVAILABLE and moved.attempts == 2
    assert moved.features == ["tools", "tool_choice"] and moved.drill is None
    assert direct.route == [f"rescue/gemini/{rescue}"] and direct.fallback_reason is None
    assert direct.features == []
    assert moved.to_json()["route"] == moved.route
    assert moved.to_json()["fallback_reason"] == "unavailable"


def two_and_a_rescue(sim: SimServer) -> tuple[GatewayConfig, list[str], list[str]]:
    """A group of two deployments by priority (OpenAI's, then Anthropic's) falling back to a
    Gemini group of one: the config, the three simulated models and deployment names."""
    models = [sim_model(sim, **FAST) for _ in range(3)]
    first, second, rescue = models
    config = gateway_config(
        [
            deployment(sim, "chat", "openai", first, order=1),
            deployment(sim, "chat", "anthropic", second, order=2),
            deployment(sim, "rescue", "gemini", rescue),
        ],
        router={"fallbacks": [{"chat": ["rescue"]}], "routing_strategy": "priority"},
    )
    names = [f"chat/openai/{first}", f"chat/anthropic/{second}", f"rescue/gemini/{rescue}"]
    return config, models, names


def test_a_drill_passes_over_the_deployments_it_skips_without_calling_them(
    sim: SimServer,
) -> None:
    from llmpulse.gateway.ir import ChatRequest, Message, TextPart
    from llmpulse.gateway.proxy import Drill

    config, (first, second, rescue), names = two_and_a_rescue(sim)
    records: list[CheckResult] = []

    async def main() -> list[str]:
        gateway = Gateway(config, record=records.append)
        try:
            request = ChatRequest("chat", [Message("user", [TextPart("hi")])])
            used = []
            for drill in (
                Drill("skip-primary", skip_primary=True),
                Drill("path", skip=frozenset(names[:2]), source=Source.DRILL),
            ):
                _, deployment_used = await gateway.complete(request, drill=drill)
                used.append(deployment_used.name)
            events = [e async for e in gateway.stream(request, drill=Drill("s", skip_primary=True))]
            assert events
            with pytest.raises(GatewayError) as refused:  # nothing left to answer
                await gateway.complete(request, drill=Drill("all", skip=frozenset(names)))
            assert refused.value.status == 503 and "skipped" in refused.value.message
            return used
        finally:
            await gateway.aclose()

    assert asyncio.run(main()) == names[1:]
    assert not upstream(sim, first)  # never called
    assert len(upstream(sim, second)) == 2 and len(upstream(sim, rescue)) == 1
    skip_primary, path, streamed = records  # the refused one went nowhere: no record
    assert skip_primary.route == names[:2] and skip_primary.drill == "skip-primary"
    assert skip_primary.source is Source.TRAFFIC and skip_primary.fallback_reason is None
    assert path.route == names and path.source is Source.DRILL and path.fallbacks == 1
    assert streamed.route == names[:2] and streamed.kind is CheckKind.STREAM


def test_a_drill_skipping_named_deployments_and_the_primary_passes_over_both(
    sim: SimServer,
) -> None:
    """``skip`` and ``skip_primary`` together: the named ones go first, then the first choice
    among the rest is passed over too (not called because the route is no longer empty)."""
    from llmpulse.gateway.ir import ChatRequest, Message, TextPart
    from llmpulse.gateway.proxy import Drill

    config, (first, second, _), names = two_and_a_rescue(sim)
    records: list[CheckResult] = []

    async def main() -> str:
        gateway = Gateway(config, record=records.append)
        try:
            request = ChatRequest("chat", [Message("user", [TextPart("hi")])])
            drill = Drill("both", skip=frozenset(names[:1]), skip_primary=True)
            _, answering = await gateway.complete(request, drill=drill)
            assert [gateway.selector.stats(d.id).in_flight for d in config.deployments] == [0] * 3
            return answering.name
        finally:
            await gateway.aclose()

    assert asyncio.run(main()) == names[2]
    assert not upstream(sim, first) and not upstream(sim, second)
    (result,) = records
    assert result.route == names and result.fallbacks == 1 and result.drill == "both"


def test_a_whole_answer_settles_its_attempt_with_the_selector_before_it_returns(
    sim: SimServer,
) -> None:
    """``complete`` must not return from inside the failover loop: the attempt's success (the
    breaker's verdict, latency for routing, the in-flight count least-busy reads) is noted
    after the answer is handed up, and an abandoned generator would only release it."""
    from llmpulse.gateway.ir import ChatRequest, Message, TextPart

    model = sim_model(sim, **FAST)
    config = gateway_config([deployment(sim, "chat", "openai", model)])

    async def main() -> None:
        gateway = Gateway(config)
        try:
            request = ChatRequest("chat", [Message("user", [TextPart("hi")])])
            _, answering = await gateway.complete(request)
            stats = gateway.selector.stats(answering.id)
            assert stats.in_flight == 0 and stats.latency_s is not None
            assert gateway.selector.breaker(answering.id).snapshot().window_requests == 1
        finally:
            await gateway.aclose()

    asyncio.run(main())


def test_a_drill_on_a_group_already_down_says_the_group_is_down(sim: SimServer) -> None:
    """The drill skipped nothing (no deployment was there to select): the answer is the
    outage's own, not "drill: after skipping <nothing>"."""
    from llmpulse.gateway.ir import ChatRequest, Message, TextPart
    from llmpulse.gateway.proxy import Drill

    limited = sim_model(sim, errors={"429": 1.0}, retry_after=30, **FAST)
    config = gateway_config([deployment(sim, "alone", "openai", limited)])

    async def main() -> GatewayError:
        gateway = Gateway(config)
        try:
            request = ChatRequest("alone", [Message("user", [TextPart("hi")])])
            with pytest.raises(GatewayError):  # cools the deployment down for 30s
                await gateway.complete(request)
            with pytest.raises(GatewayError) as refused:
                await gateway.complete(request, drill=Drill("d", skip_primary=True))
            return refused.value
        finally:
            await gateway.aclose()

    refused = asyncio.run(main())
    assert refused.status == 429 and refused.message.startswith("no deployment of 'alone'")
    assert len(upstream(sim, limited)) == 1  # the drill called nothing
