"""One stream, three readers: a probe, the gateway and an instrumented SDK client read the same
recorded bytes, served over loopback with known pauses, and report the same timing, tokens and
cost (llmpulse.timing's one rule).

Each stream has reasoning before its first output and ends with a tool call: a reader that took
reasoning for output would report a TTFT 150 ms too early, one that left the tool call out would
see a shorter span, and one that counted reasoning tokens a higher rate; each would miss the
tolerances below by far. The three clients' clocks cannot agree to the microsecond, so times are
compared within ``SLACK_MS``, far below the pauses (50-150 ms) that tell the rules apart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from aiohttp import web

from llmpulse import catalog
from llmpulse.config import parse_config
from llmpulse.config.litellm import parse_gateway
from llmpulse.gateway.ir import ChatRequest, Message, TextPart
from llmpulse.gateway.proxy import Gateway
from llmpulse.instrumentation import instrument, recorder_for
from llmpulse.probe import Prober
from llmpulse.result import CheckKind, CheckResult, Usage
from llmpulse.target import preset_target
from llmpulse.timing import CHARS_PER_TOKEN

SLACK_MS = 15.0
REASONING_AT = 0.05  # seconds after the request arrived
# The four text chunks, then the tool call's name and its arguments: gaps of 50, 50, 120, 50, 50 ms.
OUTPUT_AT = (0.20, 0.25, 0.30, 0.42, 0.47, 0.52)
TEXT = ("Hello", " there,", " how", " are you?")
TOOL, ARGUMENTS = "lookup", '{"q": "weather"}'
TTFT_MS, ITL_P50_MS, ITL_MAX_MS = 200.0, 50.0, 120.0
SPAN_S = OUTPUT_AT[-1] - OUTPUT_AT[0]
OUTPUT_TOKENS, REASONING_TOKENS = 40, 12

Script = list[tuple[float, bytes]]  # (seconds after the request arrived, bytes sent then)


def _openai(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> bytes:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    chunk = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": choices,
        **extra,
    }
    return f"data: {json.dumps(chunk)}\n\n".encode()


def openai_script(usage: bool) -> Script:
    call = {"index": 0, "id": "call_1", "type": "function"}
    end = _openai({"tool_calls": [{"index": 0, "function": {"arguments": ARGUMENTS}}]})
    end += _openai({}, finish="tool_calls")
    if usage:
        details = {"reasoning_tokens": REASONING_TOKENS}
        counts = {"prompt_tokens": 11, "completion_tokens": OUTPUT_TOKENS}
        end += _openai(None, usage={**counts, "completion_tokens_details": details})
    return [
        (0.0, _openai({"role": "assistant", "content": ""})),
        (REASONING_AT, _openai({"reasoning_content": "Let me think."})),
        *((at, _openai({"content": text})) for at, text in zip(OUTPUT_AT, TEXT, strict=False)),
        (OUTPUT_AT[4], _openai({"tool_calls": [{**call, "function": {"name": TOOL}}]})),
        (OUTPUT_AT[5], end + b"data: [DONE]\n\n"),
    ]


def _anthropic(name: str, **fields: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps({'type': name, **fields})}\n\n".encode()


def _delta(index: int, **delta: Any) -> bytes:
    return _anthropic("content_block_delta", index=index, delta=delta)


def anthropic_script() -> Script:
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-haiku-4-5",
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": 11, "output_tokens": 1},
    }
    thinking = {"type": "thinking", "thinking": ""}
    tool = {"type": "tool_use", "id": "toolu_1", "name": TOOL, "input": {}}
    texts = [_delta(1, type="text_delta", text=text) for text in TEXT]
    texts[0] = _anthropic(
        "content_block_start", index=1, content_block={"type": "text", "text": ""}
    )
    texts[0] += _delta(1, type="text_delta", text=TEXT[0])
    texts[-1] += _anthropic("content_block_stop", index=1)
    return [
        (
            0.0,
            _anthropic("message_start", message=message)
            + _anthropic("content_block_start", index=0, content_block=thinking),
        ),
        (
            REASONING_AT,
            _delta(0, type="thinking_delta", thinking="Let me think.")
            + _delta(0, type="signature_delta", signature="c2ln")
            + _anthropic("content_block_stop", index=0),
        ),
        *zip(OUTPUT_AT, texts, strict=False),
        (OUTPUT_AT[4], _anthropic("content_block_start", index=2, content_block=tool)),
        (
            OUTPUT_AT[5],
            _delta(2, type="input_json_delta", partial_json=ARGUMENTS)
            + _anthropic("content_block_stop", index=2)
            + _anthropic(
                "message_delta",
                delta={"stop_reason": "tool_use", "stop_sequence": None},
                usage={"output_tokens": OUTPUT_TOKENS},
            )
            + _anthropic("message_stop"),
        ),
    ]


SCRIPTS = {
    "openai": openai_script(usage=True),
    "openai-no-usage": openai_script(usage=False),
    "anthropic": anthropic_script(),
}


async def _replay(request: web.Request) -> web.StreamResponse:
    await request.read()
    loop = asyncio.get_running_loop()
    start = loop.time()
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    for at, data in SCRIPTS[request.match_info["case"]]:
        await asyncio.sleep(max(0.0, start + at - loop.time()))  # on schedule, not drifting
        await response.write(data)
    await response.write_eof()
    return response


@pytest.fixture(scope="module")
def replay() -> Iterator[str]:
    """A loopback server in a thread of its own, so sync SDK clients can read from it too."""
    app = web.Application()
    app.router.add_post("/{case}/v1/chat/completions", _replay)
    app.router.add_post("/{case}/v1/messages", _replay)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner = web.AppRunner(app, access_log=None)
    asyncio.run_coroutine_threadsafe(runner.setup(), loop).result(10)
    site = web.TCPSite(runner, "127.0.0.1", 0)
    asyncio.run_coroutine_threadsafe(site.start(), loop).result(10)
    yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


async def probe(base: str, provider: str, model: str) -> CheckResult:
    raw = {"provider": provider, "model": model, "base_url": base, "api_key": "os.environ/K"}
    target = parse_config({"targets": [raw]}, env={"K": "k"}).targets[0]
    async with Prober() as prober:
        return await prober.check(target, CheckKind.STREAM)


def catalogue_prices(model: str) -> dict[str, float]:
    """An OpenAI model's catalogue prices a token. The gateway takes an ``openai/`` deployment
    with an ``api_base`` for an OpenAI-compatible server, priced only when told."""
    target, million = preset_target("openai", model), 1_000_000
    per_input, _ = catalog.cost_usd(target, Usage(input_tokens=million, output_tokens=0))
    per_output, _ = catalog.cost_usd(target, Usage(input_tokens=0, output_tokens=million))
    assert per_input is not None and per_output is not None
    return {
        "input_cost_per_token": per_input / million,
        "output_cost_per_token": per_output / million,
    }


async def gateway(base: str, provider: str, model: str) -> CheckResult:
    params: dict[str, Any] = {
        "model": f"{provider}/{model}",
        "api_base": base,
        "api_key": "os.environ/K",
    }
    if provider == "openai":
        params.update(catalogue_prices(model))
    config = parse_gateway(
        {"model_list": [{"model_name": "g", "litellm_params": params}]}, {"K": "k"}
    )
    assert config is not None
    records: list[CheckResult] = []
    gw = Gateway(config, record=records.append)
    try:
        request = ChatRequest("g", [Message("user", [TextPart("hi")])], max_tokens=64)
        async for _ in gw.stream(request):
            pass
    finally:
        await gw.aclose()
    (result,) = records
    return result


def instrumented(base: str, provider: str, model: str) -> CheckResult:
    results: list[CheckResult] = []
    messages: Any = [{"role": "user", "content": "hi"}]
    client: Any
    if provider == "openai":
        client = openai.OpenAI(api_key="k", base_url=base, max_retries=0)
        instrument(client, recorder=results.append)
        for _ in client.chat.completions.create(model=model, messages=messages, stream=True):
            pass
    else:
        client = anthropic.Anthropic(api_key="k", base_url=base, max_retries=0)
        instrument(client, recorder=results.append)
        stream = client.messages.create(model=model, max_tokens=64, messages=messages, stream=True)
        for _ in stream:
            pass
    assert recorder_for(client).flush()
    (result,) = results
    return result


@pytest.mark.parametrize("case", list(SCRIPTS))
def test_one_stream_gives_the_same_numbers_to_every_reader(replay: str, case: str) -> None:
    provider = case.split("-")[0]
    model = "gpt-4o-mini" if provider == "openai" else "claude-haiku-4-5"
    base = f"{replay}/{case}/v1" if provider == "openai" else f"{replay}/{case}"
    readers = {
        "probe": asyncio.run(probe(base, provider, model)),
        "gateway": asyncio.run(gateway(base, provider, model)),
        "instrument": instrumented(base, provider, model),
    }
    if case == "openai-no-usage":
        chars = sum(map(len, TEXT)) + len(TOOL) + len(ARGUMENTS)
        tokens: float = chars / CHARS_PER_TOKEN
    else:
        # OpenAI reports its hidden reasoning apart, and it is not output; Anthropic does not.
        tokens = OUTPUT_TOKENS - (REASONING_TOKENS if provider == "openai" else 0)
    for name, r in readers.items():
        assert r.ok, (name, r.error_message)
        assert r.ttft_ms is not None and r.itl_p50_ms is not None and r.itl_max_ms is not None
        assert TTFT_MS <= r.ttft_ms <= TTFT_MS + SLACK_MS, name
        assert r.itl_p50_ms == pytest.approx(ITL_P50_MS, abs=SLACK_MS), name
        assert r.itl_max_ms == pytest.approx(ITL_MAX_MS, abs=SLACK_MS), name
        assert r.tokens_per_s == pytest.approx(tokens / SPAN_S, rel=0.08), name
    ttfts = [r.ttft_ms or 0.0 for r in readers.values()]
    assert max(ttfts) - min(ttfts) <= SLACK_MS
    usages = {name: r.usage for name, r in readers.items()}
    if case == "openai-no-usage":
        # Nobody claims a count the provider did not give (the probe estimates its own).
        assert all(u.estimated or u.output_tokens is None for u in usages.values())
        return
    assert usages["probe"].output_tokens == OUTPUT_TOKENS and usages["probe"].input_tokens == 11
    assert len({dataclasses.astuple(u) for u in usages.values()}) == 1, usages
    cost = readers["probe"].cost_usd
    assert cost is not None
    for name, r in readers.items():
        assert r.cost_usd == pytest.approx(cost, rel=1e-9), (name, r.warnings)
