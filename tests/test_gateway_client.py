"""``llmpulse.Router``: the gateway's routing in-process, sync and async, against the simulator
playing the providers."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from conftest import base_url, sim_model
from llmpulse import Router, RouterError
from llmpulse.errors import ErrorClass
from llmpulse.gateway.client import AsyncStream, SyncStream
from llmpulse.result import CheckKind, Source
from llmpulse.sim.server import SimServer
from llmpulse.store import ResultFilter, open_store

FAST = {"ttft": 0.01, "tokens_per_s": 2000}
ENV = {"SIM_KEY": "sk-sim"}
HI = [{"role": "user", "content": "hello there"}]


def entry(sim: SimServer, group: str, provider: str, model: str) -> dict[str, Any]:
    return {
        "model_name": group,
        "litellm_params": {
            "model": f"{provider}/{model}",
            "api_base": base_url(sim, provider),
            "api_key": "os.environ/SIM_KEY",
        },
    }


def failover_list(sim: SimServer) -> tuple[list[dict[str, Any]], str]:
    """A group whose OpenAI deployment always answers 503 and whose Anthropic one works."""
    down = sim_model(sim, errors={"503": 1.0}, **FAST)
    claude = sim_model(sim, **FAST)
    return [entry(sim, "chat", "openai", down), entry(sim, "chat", "anthropic", claude)], claude


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def test_sync_completion_fails_over_across_providers(sim: SimServer) -> None:
    models, claude = failover_list(sim)
    with Router({"model_list": models}, env=ENV) as router:
        answer = router.completion(model="chat", messages=HI, max_tokens=50)
        assert isinstance(answer, dict)
        assert answer["object"] == "chat.completion" and answer["model"] == claude
        assert answer["choices"][0]["message"]["content"]
        assert answer["choices"][0]["finish_reason"] == "stop"
        assert answer["usage"]["completion_tokens"] == 16

        stream = router.completion(
            model="chat", messages=HI, stream=True, stream_options={"include_usage": True}
        )
        assert isinstance(stream, SyncStream)
        chunks = list(stream)
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["model"] for c in chunks} == {claude}
    assert text_of(chunks) == answer["choices"][0]["message"]["content"]
    assert chunks[-1]["usage"]["completion_tokens"] == 16


async def test_async_completion_and_messages(sim: SimServer) -> None:
    models, claude = failover_list(sim)
    async with Router({"model_list": models}, env=ENV) as router:
        answer = await router.acompletion(model="chat", messages=HI)
        assert isinstance(answer, dict) and answer["model"] == claude
        stream = await router.acompletion(model="chat", messages=HI, stream=True)
        assert isinstance(stream, AsyncStream)
        chunks = [c async for c in stream]
        assert text_of(chunks) == answer["choices"][0]["message"]["content"]

        message = await router.amessages(model="chat", messages=HI, max_tokens=64)
        assert isinstance(message, dict)
        assert message["type"] == "message" and message["model"] == claude
        assert message["content"][0]["type"] == "text" and message["content"][0]["text"]
        assert message["stop_reason"] == "end_turn"
        events = await router.amessages(model="chat", messages=HI, max_tokens=64, stream=True)
        assert isinstance(events, AsyncStream)
        kinds = [e["type"] async for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_delta" in kinds


def test_sync_messages_in_anthropic_shape_from_an_openai_deployment(sim: SimServer) -> None:
    model = sim_model(sim, **FAST)
    with Router({"model_list": [entry(sim, "m", "openai", model)]}, env=ENV) as router:
        message = router.messages(model="m", messages=HI, max_tokens=64)
        assert isinstance(message, dict) and message["model"] == model
        stream = router.messages(model="m", messages=HI, max_tokens=64, stream=True)
        assert isinstance(stream, SyncStream)
        with stream:
            events = list(stream)
    text = "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")
    assert text == message["content"][0]["text"]


def test_errors_raise_router_error_with_status_and_class(sim: SimServer) -> None:
    limited = sim_model(sim, errors={"429": 1.0}, retry_after=30, **FAST)
    with Router(model_list=[entry(sim, "g", "openai", limited)], env=ENV) as router:
        with pytest.raises(RouterError) as info:
            router.completion(model="g", messages=HI)
        assert info.value.status == 429 and info.value.error_class is ErrorClass.RATE_LIMITED
        assert info.value.retry_after_s == 30
        with pytest.raises(RouterError) as info:
            router.completion(model="g", messages=HI, stream=True)  # raised by the call
        assert info.value.status == 429
        with pytest.raises(RouterError) as info:
            router.completion(model="nope", messages=HI)
        assert info.value.status == 404 and "nope" in info.value.message
        with pytest.raises(RouterError) as info:
            router.completion(model="g", messages=[])
        assert info.value.status == 400 and info.value.error_class is ErrorClass.BAD_REQUEST


def test_a_stream_cut_midway_raises_from_the_iterator(sim: SimServer) -> None:
    cut = sim_model(sim, fault="cut", fault_after_tokens=3, **FAST)
    with Router(model_list=[entry(sim, "g", "openai", cut)], env=ENV) as router:
        stream = router.completion(model="g", messages=HI, stream=True)
        assert isinstance(stream, SyncStream)
        got = []
        with pytest.raises(RouterError) as info:
            for chunk in stream:
                got.append(chunk)
    assert got and info.value.status >= 500


def test_litellm_keyword_form(sim: SimServer) -> None:
    down = sim_model(sim, errors={"503": 1.0}, **FAST)
    backup = sim_model(sim, **FAST)
    router = Router(
        model_list=[entry(sim, "primary", "openai", down), entry(sim, "backup", "gemini", backup)],
        fallbacks=[{"primary": ["backup"]}],
        routing_strategy="simple-shuffle",
        num_retries=0,
        env=ENV,
    )
    try:
        assert router.config.router.fallbacks == {"primary": ("backup",)}
        answer = router.completion(model="primary", messages=HI)
        assert isinstance(answer, dict) and answer["model"] == backup
    finally:
        router.close()
    with pytest.raises(TypeError):
        Router({"model_list": []}, model_list=[])


def test_traffic_is_recorded_to_the_store(
    sim: SimServer, store_location: str | Path, elsewhere: Path
) -> None:
    """Written to the store a path or URL names (PostgreSQL's schema by its search_path
    option), never to a SQLite file named after the URL."""
    models, claude = failover_list(sim)
    with Router({"model_list": models}, store=store_location, env=ENV) as router:
        router.completion(model="chat", messages=HI)
        list(router.completion(model="chat", messages=HI, stream=True))  # type: ignore[arg-type]
    assert list(elsewhere.iterdir()) == []
    with open_store(store_location) as store:
        results = sorted(
            store.latest_results(limit=10, where=ResultFilter(target=f"chat/anthropic/{claude}")),
            key=lambda r: r.timestamp,
        )
    assert [r.check for r in results] == [CheckKind.INFERENCE, CheckKind.STREAM]
    assert all(r.source is Source.TRAFFIC and r.ok and r.attempts == 2 for r in results)
    assert results[1].ttft_ms is not None and results[0].usage.output_tokens == 16


def test_two_threads_share_one_router(sim: SimServer) -> None:
    model = sim_model(sim, **FAST)
    with Router({"model_list": [entry(sim, "g", "anthropic", model)]}, env=ENV) as router:

        def ask(i: int) -> str:
            if i % 2:
                chunks = list(router.completion(model="g", messages=HI, stream=True))  # type: ignore[arg-type]
                return text_of(chunks)
            answer = router.completion(model="g", messages=HI)
            assert isinstance(answer, dict)
            return str(answer["choices"][0]["message"]["content"])

        with ThreadPoolExecutor(2) as pool:
            texts = list(pool.map(ask, range(8)))
    assert all(texts) and len(set(texts)) == 1


def test_close_joins_the_loop_thread_and_closes_the_session(sim: SimServer) -> None:
    model = sim_model(sim, **FAST)
    before = {t for t in threading.enumerate() if t.name == "llmpulse-router"}
    router = Router({"model_list": [entry(sim, "g", "openai", model)]}, env=ENV)
    session = router._gateway.session
    abandoned = router.completion(model="g", messages=HI, stream=True)
    assert isinstance(abandoned, SyncStream) and next(abandoned)
    router.close()
    router.close()  # idempotent
    assert session.closed and router._loop.is_closed()
    assert {t for t in threading.enumerate() if t.name == "llmpulse-router"} == before
    with pytest.raises(RuntimeError):
        router.completion(model="g", messages=HI)
    with pytest.raises(RuntimeError):  # once what it had already received is read
        list(abandoned)


def test_async_calls_from_a_foreign_loop_and_closing_a_stream(sim: SimServer) -> None:
    model = sim_model(sim, **FAST)

    async def main(router: Router) -> None:
        stream = await router.acompletion(model="g", messages=HI, stream=True)
        assert isinstance(stream, AsyncStream)
        await anext(stream)
        await stream.aclose()
        with pytest.raises(StopAsyncIteration):
            await anext(stream)
        # The gateway's inner generators finish on the router's loop just after the close.
        selector = router._gateway.selector
        deadline = time.monotonic() + 5
        while any(selector.stats(d.id).in_flight for d in router.config.deployments):
            assert time.monotonic() < deadline, "the closed stream still holds its deployment"
            await asyncio.sleep(0.01)

    with Router({"model_list": [entry(sim, "g", "openai", model)]}, env=ENV) as router:
        asyncio.run(main(router))
        asyncio.run(main(router))  # a second loop: the router's own loop is unaffected


async def test_a_cancelled_async_call_releases_its_deployment(sim: SimServer) -> None:
    hanging = sim_model(sim, fault="hang", **FAST)
    async with Router({"model_list": [entry(sim, "g", "openai", hanging)]}, env=ENV) as router:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(router.acompletion(model="g", messages=HI), 0.3)
        selector = router._gateway.selector
        deadline = time.monotonic() + 5
        while any(selector.stats(d.id).in_flight for d in router.config.deployments):
            assert time.monotonic() < deadline, "the cancelled call still holds its deployment"
            await asyncio.sleep(0.01)
