"""The simulator over real loopback sockets: wire shapes, errors, faults, timelines, control."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import httpx
import openai
import pytest

from llmpulse.probe.official import OfficialStatus, SourceKind, StatusPoller, fetch_status
from llmpulse.sim.common import go_duration
from llmpulse.sim.scenario import (
    ModelBehavior,
    Scenario,
    ScenarioError,
    load_scenario,
    parse_scenario,
)
from llmpulse.sim.server import SimServer

OA = {"Authorization": "Bearer sk-test"}
AN = {"x-api-key": "sk-test", "anthropic-version": "2023-06-01"}
GE = {"x-goog-api-key": "sk-test"}
MSG = [{"role": "user", "content": "ping the model please"}]
WEATHER = {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}
_PARAMS = {"type": "object", "properties": {"city": {"type": "string"}}}
OA_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": _PARAMS}}
AN_TOOL = {"name": "get_weather", "input_schema": _PARAMS}
GE_TOOLS = {"functionDeclarations": [{"name": "get_weather", "parameters": _PARAMS}]}


@pytest.fixture(scope="module")
def server() -> Iterator[SimServer]:
    with SimServer() as srv:
        yield srv


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


def use(server: SimServer, client: httpx.Client, **models: dict[str, Any]) -> None:
    """Replace the scenario with ``models`` (fast defaults) and restart the clock."""
    fast = {"ttft": "20ms", "tokens_per_s": 1000}
    scenario = {"api_keys": ["sk-test"], "models": {k: {**fast, **v} for k, v in models.items()}}
    assert client.post(f"{server.url}/_sim/reset", json=scenario).status_code == 200


def sse(text: str) -> list[tuple[str | None, str]]:
    """(event name, data) pairs from an SSE body; tolerates CRLF like real clients."""
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if data:
            out.append((name, "\n".join(data)))
    return out


def oa_chat(server: SimServer, client: httpx.Client, **body: Any) -> httpx.Response:
    payload = {"model": "m", "messages": MSG, **body}
    return client.post(f"{server.openai_base}/chat/completions", headers=OA, json=payload)


def truth(server: SimServer, client: httpx.Client) -> dict[str, Any]:
    return client.get(f"{server.url}/_sim/requests").json()["requests"][-1]


# --- OpenAI ----------------------------------------------------------------------------------


def test_openai_nonstream_shape_and_headers(server: SimServer, client: httpx.Client) -> None:
    rl = {"requests_limit": 3, "tokens_limit": 1000, "requests_reset": "1m", "tokens_reset": "6m"}
    use(server, client, m={"served_model": "m-2024", "cached_tokens": 2, "ratelimit": rl})
    r = oa_chat(server, client, max_completion_tokens=5)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == "m-2024"
    assert body["system_fingerprint"] == "fp_sim"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 5
    assert body["usage"]["prompt_tokens"] == 6  # ceil(21 characters / 4)
    assert body["usage"]["prompt_tokens_details"]["cached_tokens"] == 2
    assert r.headers["x-request-id"].startswith("req_")
    assert r.headers["x-ratelimit-limit-requests"] == "3"
    assert r.headers["x-ratelimit-remaining-requests"] == "2"
    assert r.headers["x-ratelimit-reset-tokens"] == "6m0s"
    # remaining counts down with real traffic inside the window
    assert oa_chat(server, client).headers["x-ratelimit-remaining-requests"] == "1"
    rid = oa_chat(server, client).headers["x-request-id"]
    assert truth(server, client)["request_id"] == rid


def test_openai_stream_shape_and_rate(server: SimServer, client: httpx.Client) -> None:
    use(server, client, m={"output_tokens": 20, "tokens_per_s": 200, "ttft": "100ms"})
    stamps: list[float] = []
    events: list[str] = []
    t0 = time.monotonic()
    with client.stream(
        "POST",
        f"{server.openai_base}/chat/completions",
        headers=OA,
        json={
            "model": "m",
            "messages": MSG,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(line[6:])
                chunk = json.loads(line[6:]) if line != "data: [DONE]" else None
                if chunk and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                    stamps.append(time.monotonic())
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 20
    assert len(stamps) == 20
    assert stamps[0] - t0 >= 0.095
    rate = 20 / (stamps[-1] - stamps[0])
    assert 150 < rate < 260


def test_groq_and_reasoning(server: SimServer, client: httpx.Client) -> None:
    use(server, client, m={"x_groq": True, "output_tokens": 3}, r={"reasoning_tokens": 10})
    r = oa_chat(server, client, stream=True)
    final = json.loads(sse(r.text)[-2][1])
    assert final["x_groq"]["usage"]["completion_tokens"] == 3 and "usage" not in final
    body = oa_chat(server, client, model="r", max_completion_tokens=1).json()
    assert body["choices"][0]["message"]["content"] == ""
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] == 1


def test_openai_errors(server: SimServer, client: httpx.Client) -> None:
    use(server, client, m={"errors": {429: 1.0}, "retry_after": "1500ms"})
    r = oa_chat(server, client)
    assert r.status_code == 429
    assert r.headers["retry-after"] == "2" and r.headers["retry-after-ms"] == "1500"
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert truth(server, client)["error_kind"] == "429"
    assert oa_chat(server, client, model="nope").json()["error"]["code"] == "model_not_found"
    r = client.post(
        f"{server.openai_base}/chat/completions",
        headers={"Authorization": "Bearer bad"},
        json={"model": "m", "messages": MSG},
    )
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    for kind, status, code in [
        ("insufficient_quota", 429, "insufficient_quota"),
        ("context_length", 400, "context_length_exceeded"),
        ("content_policy", 400, "content_policy_violation"),
        ("overloaded", 503, None),
    ]:
        client.patch(f"{server.url}/_sim/models/m", json={"errors": {kind: 1}})
        r = oa_chat(server, client)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code)
    client.patch(f"{server.url}/_sim/models/m", json={"errors": {"content_filter": 1}})
    assert oa_chat(server, client).json()["choices"][0]["finish_reason"] == "content_filter"


def test_azure(server: SimServer, client: httpx.Client) -> None:
    use(server, client, m={})
    url = f"{server.azure_base}/openai/deployments/m/chat/completions"
    r = client.post(url, headers={"api-key": "sk-test"}, json={"messages": MSG})
    assert r.status_code == 404 and r.json() == {
        "error": {"code": "404", "message": "Resource not found"}
    }
    r = client.post(
        url + "?api-version=2024-10-21", headers={"api-key": "sk-test"}, json={"messages": MSG}
    )
    assert r.status_code == 200 and r.json()["object"] == "chat.completion"
    models = client.get(
        f"{server.azure_base}/openai/models?api-version=1", headers={"api-key": "sk-test"}
    )
    assert models.json()["data"][0]["id"] == "m"


# --- Anthropic -------------------------------------------------------------------------------


def test_anthropic_shapes(server: SimServer, client: httpx.Client) -> None:
    rl = {"requests_limit": 50, "requests_remaining": 7, "tokens_limit": 100}
    use(server, client, m={"output_tokens": 4, "cached_tokens": 1, "ratelimit": rl})
    url = f"{server.anthropic_base}/v1/messages"
    r = client.post(url, headers=AN, json={"model": "m", "max_tokens": 100, "messages": MSG})
    body = r.json()
    assert body["type"] == "message" and body["stop_reason"] == "end_turn"
    assert body["content"] == [{"type": "text", "text": "Hello the quick brown"}]
    assert body["usage"]["input_tokens"] == 5 and body["usage"]["cache_read_input_tokens"] == 1
    assert r.headers["request-id"].startswith("req_")
    assert r.headers["anthropic-ratelimit-requests-remaining"] == "7"
    assert r.headers["anthropic-ratelimit-tokens-reset"].endswith("Z")
    payload = {"model": "m", "max_tokens": 100, "messages": MSG, "stream": True}
    events = sse(client.post(url, headers=AN, json=payload).text)
    names = [n for n, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 4,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    delta = json.loads(events[-2][1])
    assert delta["delta"]["stop_reason"] == "end_turn" and delta["usage"]["output_tokens"] == 4


def test_anthropic_errors(server: SimServer, client: httpx.Client) -> None:
    use(server, client, m={"errors": {529: 1.0}, "retry_after": "3s"})
    url = f"{server.anthropic_base}/v1/messages"
    body = {"model": "m", "max_tokens": 5, "messages": MSG}
    r = client.post(url, headers=AN, json=body)
    assert r.status_code == 529 and r.headers["retry-after"] == "3"
    err = r.json()
    assert err["type"] == "error" and err["error"]["type"] == "overloaded_error"
    assert err["request_id"] == r.headers["request-id"]
    r = client.post(url, headers={"x-api-key": "sk-test"}, json=body)
    assert r.status_code == 400 and "anthropic-version" in r.json()["error"]["message"]
    r = client.post(url, headers={**AN, "x-api-key": "x"}, json=body)
    assert r.json()["error"]["type"] == "authentication_error"
    r = client.post(url, headers=AN, json={**body, "model": "zz"})
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    client.patch(f"{server.url}/_sim/models/m", json={"errors": {"insufficient_quota": 1}})
    r = client.post(url, headers=AN, json=body)
    assert r.status_code == 400 and "credit balance is too low" in r.json()["error"]["message"]


# --- Gemini ----------------------------------------------------------------------------------


def test_gemini_shapes_and_errors(server: SimServer, client: httpx.Client) -> None:
    use(server, client, m={"output_tokens": 3, "reasoning_tokens": 2, "served_model": "m-001"})
    base = f"{server.gemini_base}/models/m"
    req = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    body = client.post(f"{base}:generateContent", headers=GE, json=req).json()
    assert body["candidates"][0]["content"]["parts"][0]["text"] == "Hello the quick"
    assert body["candidates"][0]["finishReason"] == "STOP" and body["modelVersion"] == "m-001"
    assert body["usageMetadata"]["thoughtsTokenCount"] == 2
    r = client.post(f"{base}:streamGenerateContent?alt=sse&key=sk-test", json=req)
    chunks = [json.loads(d) for _, d in sse(r.text)]
    assert len(chunks) == 3 and chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert "finishReason" not in chunks[0]["candidates"][0]
    assert chunks[-1]["usageMetadata"]["candidatesTokenCount"] == 3
    assert chunks[0]["responseId"] == r.headers["x-request-id"]
    lim = {**req, "generationConfig": {"maxOutputTokens": 1}}
    body = client.post(f"{base}:generateContent", headers=GE, json=lim).json()
    assert body["candidates"][0]["finishReason"] == "MAX_TOKENS"
    r = client.post(f"{base}:generateContent", headers={"x-goog-api-key": "bad"}, json=req)
    assert r.status_code == 400 and r.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    r = client.post(f"{server.gemini_base}/models/zz:generateContent", headers=GE, json=req)
    assert r.status_code == 404 and r.json()["error"]["status"] == "NOT_FOUND"
    client.patch(
        f"{server.url}/_sim/models/m", json={"errors": {"insufficient_quota": 1}, "retry_after": 7}
    )
    err = client.post(f"{base}:generateContent", headers=GE, json=req).json()["error"]
    assert err["status"] == "RESOURCE_EXHAUSTED"
    assert "PerDay" in err["details"][0]["violations"][0]["quotaId"]
    assert err["details"][-1]["retryDelay"] == "7s"


def test_models_endpoints(server: SimServer, client: httpx.Client) -> None:
    use(server, client, a={"context_window": 1000, "max_output_tokens": 10}, b={})
    oa = client.get(f"{server.openai_base}/models", headers=OA).json()
    assert oa["object"] == "list" and [m["id"] for m in oa["data"]] == ["a", "b"]
    an = client.get(f"{server.anthropic_base}/v1/models", headers=AN).json()
    assert an["data"][0]["max_input_tokens"] == 1000 and an["last_id"] == "b"
    ge = client.get(f"{server.gemini_base}/models", headers=GE).json()
    assert ge["models"][0]["name"] == "models/a" and ge["models"][0]["outputTokenLimit"] == 10
    assert client.get(f"{server.openai_base}/models").status_code == 401


# --- faults ----------------------------------------------------------------------------------


def _stream(server: SimServer, client: httpx.Client, protocol: str) -> httpx.Response:
    if protocol == "openai":
        return oa_chat(server, client, stream=True)
    if protocol == "anthropic":
        body = {"model": "m", "max_tokens": 99, "messages": MSG, "stream": True}
        return client.post(f"{server.anthropic_base}/v1/messages", headers=AN, json=body)
    url = f"{server.gemini_base}/models/m:streamGenerateContent?alt=sse"
    return client.post(url, headers=GE, json={"contents": [{"parts": [{"text": "x"}]}]})


@pytest.mark.parametrize("protocol", ["openai", "anthropic", "gemini"])
def test_stream_faults(server: SimServer, client: httpx.Client, protocol: str) -> None:
    use(server, client, m={"fault": "no_terminal", "fault_after_tokens": 2, "output_tokens": 5})
    text = _stream(server, client, protocol).text
    assert "[DONE]" not in text and "message_stop" not in text and "finishReason" not in text
    client.patch(f"{server.url}/_sim/models/m", json={"fault": "error_event"})
    last = json.loads(sse(_stream(server, client, protocol).text)[-1][1])
    assert "error" in last
    client.patch(f"{server.url}/_sim/models/m", json={"fault": "malformed"})
    events = sse(_stream(server, client, protocol).text)
    bad = [d for _, d in events if d != "[DONE]" and not _is_json(d)]
    assert len(bad) == 1
    client.patch(f"{server.url}/_sim/models/m", json={"fault": "cut"})
    with pytest.raises(httpx.RemoteProtocolError):
        _stream(server, client, protocol)
    client.patch(f"{server.url}/_sim/models/m", json={"fault": "stall"})
    seen = []
    with (
        httpx.Client(timeout=httpx.Timeout(5, read=0.3)) as c2,
        pytest.raises(httpx.ReadTimeout),
        _open_stream(server, c2, protocol) as r,
    ):
        seen.extend(r.iter_lines())
    assert seen  # some tokens arrived before the stall
    assert truth(server, client)["fault"] == "stall"


def _is_json(data: str) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


def _open_stream(
    server: SimServer, client: httpx.Client, protocol: str, tools: bool = False
) -> Any:
    assert protocol in ("openai", "anthropic", "gemini")
    if protocol == "openai":
        body: dict[str, Any] = {"model": "m", "messages": MSG, "stream": True}
        if tools:
            body["tools"] = [OA_TOOL]
        return client.stream(
            "POST", f"{server.openai_base}/chat/completions", headers=OA, json=body
        )
    if protocol == "anthropic":
        body = {"model": "m", "max_tokens": 99, "messages": MSG, "stream": True}
        if tools:
            body["tools"] = [AN_TOOL]
        return client.stream("POST", f"{server.anthropic_base}/v1/messages", headers=AN, json=body)
    url = f"{server.gemini_base}/models/m:streamGenerateContent?alt=sse"
    body = {"contents": [{"parts": [{"text": "x"}]}]}
    if tools:
        body["tools"] = [GE_TOOLS]
    return client.stream("POST", url, headers=GE, json=body)


def test_body_faults(server: SimServer, client: httpx.Client) -> None:
    use(server, client, m={"fault": "garbage_body"})
    r = oa_chat(server, client)
    assert r.status_code == 200 and not _is_json(r.text)
    client.patch(f"{server.url}/_sim/models/m", json={"fault": "truncated_body"})
    with pytest.raises(httpx.RemoteProtocolError):
        oa_chat(server, client)
    client.patch(f"{server.url}/_sim/models/m", json={"fault": "huge_body", "huge_body_mb": 3})
    size = 0
    with client.stream("POST", f"{server.openai_base}/chat/completions", headers=OA,
                       json={"model": "m", "messages": MSG}) as r:  # fmt: skip
        for chunk in r.iter_raw():
            size += len(chunk)
    assert size == 3 << 20
    client.patch(f"{server.url}/_sim/models/m", json={"fault": "hang"})
    t0 = time.monotonic()
    with httpx.Client(timeout=httpx.Timeout(5, read=0.3)) as c2, pytest.raises(httpx.ReadTimeout):
        oa_chat(server, c2)
    assert time.monotonic() - t0 < 2
    # fault_rate 0 disables it; stream-only faults do not touch non-stream calls
    client.patch(f"{server.url}/_sim/models/m", json={"fault_rate": 0})
    assert oa_chat(server, client).status_code == 200
    client.patch(f"{server.url}/_sim/models/m", json={"fault": "cut", "fault_rate": 1})
    assert oa_chat(server, client).json()["object"] == "chat.completion"


# --- timeline, control, scenario -------------------------------------------------------------


def test_timeline_with_speed(client: httpx.Client) -> None:
    scenario = Scenario.model_validate(
        {
            "models": {
                "m": {
                    "ttft": "10ms",
                    "timeline": [
                        {"at": "2s", "set": {"errors": {503: 1.0}}},
                        {"at": "1s", "set": {"ttft": "50ms"}},
                    ],
                }
            }
        }
    )
    with SimServer(scenario, speed=10) as srv:
        client.post(f"{srv.url}/_sim/reset")  # start the clock now, not at construction
        state = client.get(f"{srv.url}/_sim/state").json()
        assert state["speed"] == 10 and state["models"]["m"]["ttft"] == 0.01
        time.sleep(0.12)
        assert client.get(f"{srv.url}/_sim/state").json()["models"]["m"]["ttft"] == 0.05
        time.sleep(0.1)
        r = oa_chat(srv, client)
        assert r.status_code == 503
        assert client.post(f"{srv.url}/_sim/reset").status_code == 200  # clock restarts
        assert oa_chat(srv, client).status_code == 200
        assert client.get(f"{srv.url}/_sim/requests").json()["requests"][0]["seq"] > 1


def test_timeline_loop(client: httpx.Client) -> None:
    scenario = Scenario.model_validate(
        {
            "models": {
                "m": {
                    "ttft": "10ms",
                    "loop": "4s",
                    "timeline": [{"at": "2s", "set": {"errors": {503: 1.0}}}],
                }
            }
        }
    )
    assert [scenario.models["m"].timeline_step(t) for t in (1, 2.5, 4.5, 6.5)] == [0, 1, 0, 1]
    with SimServer(scenario, speed=10) as srv:  # periods of 0.4 s: healthy 0.2 s, failing 0.2 s
        client.post(f"{srv.url}/_sim/reset")
        seen: list[int] = []
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            seen.append(oa_chat(srv, client).status_code)
            time.sleep(0.02)
        # The outage comes back after the period wraps: healthy, failing, healthy, failing.
        runs = [code for i, code in enumerate(seen) if i == 0 or code != seen[i - 1]]
        assert runs[:4] == [200, 503, 200, 503], seen
        assert client.get(f"{srv.url}/_sim/state").json()["models"]["m"]["loop"] == 4.0


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"loop": "0s"}, r"models\.m\.loop"),
        ({"loop": "2s", "timeline": [{"at": "2s", "set": {}}]}, r"not before loop"),
        ({"timeline": [{"at": "1s", "set": {"loop": "5s"}}]}, r"cannot set 'loop'"),
    ],
)
def test_timeline_loop_is_validated(model: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        parse_scenario({"models": {"m": model}})


def test_control_endpoints(server: SimServer, client: httpx.Client) -> None:
    use(server, client, m={})
    r = client.patch(f"{server.url}/_sim/models/new-model", json={"ttft": "1s", "jitter": 0.5})
    assert r.status_code == 200 and r.json()["ttft"] == 1.0
    r = client.patch(f"{server.url}/_sim/models/m", json={"ttft": "soon"})
    assert r.status_code == 400 and "models.m.ttft" in r.json()["error"]
    r = client.patch(f"{server.url}/_sim/models/m", json={"errors": {418: 1}})
    assert r.status_code == 400 and "418" in r.json()["error"]
    client.delete(f"{server.url}/_sim/requests")
    oa_chat(server, client)
    first = client.get(f"{server.url}/_sim/requests").json()
    oa_chat(server, client, stream=True)
    rows = client.get(f"{server.url}/_sim/requests", params={"since_seq": first["last_seq"]}).json()
    [row] = rows["requests"]
    assert row["stream"] is True and row["protocol"] == "openai" and row["ttft_ms"] == 20.0
    assert row["output_tokens"] == 16 and row["status"] == 200
    assert set(row) >= {"received_at", "served_model", "input_tokens", "reasoning_tokens"}
    bad = client.post(f"{server.url}/_sim/reset", json={"models": {"m": {"tokens_per_s": -1}}})
    assert bad.status_code == 400 and "models.m.tokens_per_s" in bad.json()["error"]


# --- official status pages -------------------------------------------------------------------

PAGES = {
    "anthropic": {
        "components": ["Claude API (api.anthropic.com)"],
        "loop": "150s",
        "timeline": [
            {"at": "30s", "set": {"indicator": "major", "incident": "Elevated errors on Haiku"}},
            {"at": "55s", "set": {"incident_status": "monitoring"}},
            {"at": "80s", "set": {"indicator": "none", "incident": None}},
        ],
    },
    "gemini": {
        "components": ["Vertex Gemini API"],
        "timeline": [{"at": "30s", "set": {"indicator": "minor", "incident": "Slow responses"}}],
    },
    "openai": {"description": "We're fully operational"},
}


def at(srv: SimServer, scenario_time: float) -> None:
    """Set the simulator's script clock, so a check lands at an exact scripted time."""
    srv.state.started = time.monotonic() - scenario_time / srv.state.speed


async def test_status_pages_follow_the_script() -> None:
    """fetch_status, as the monitor runs it, reads the scripted indicator, words and incidents
    at the scripted times, on every period of the loop, in both wire formats."""
    speed = 4  # a fetch takes milliseconds: well under the 0.5 s margins in scenario time
    with SimServer(parse_scenario({"status_pages": PAGES}), speed=speed) as srv:
        async with aiohttp.ClientSession() as session:

            async def status(name: str, kind: SourceKind = "statuspage") -> OfficialStatus:
                url = srv.status_page_url(name, kind)
                return await fetch_status(session, name, url, kind, timeout_s=5)

            for period in (0, 150, 300):
                at(srv, period + 29.5)
                quiet = await status("anthropic")
                assert (quiet.indicator, quiet.description, quiet.incidents, quiet.error) == (
                    "none", "All Systems Operational", [], None,
                )  # fmt: skip
                at(srv, period + 30.5)
                major = await status("anthropic")
                assert major.summary() == (
                    "major: Partial System Outage — Elevated errors on Haiku "
                    "(major; Claude API (api.anthropic.com))"
                )
                assert major.url == f"{srv.url}/statuspage/anthropic"
                at(srv, period + 79.5)
                assert (await status("anthropic")).indicator == "major"
                at(srv, period + 80.5)
                assert (await status("anthropic")).summary() == "none: All Systems Operational"

            # The clock runs `speed` times faster than the wall clock.
            at(srv, 29.8)
            assert (await status("anthropic")).indicator == "none"
            await asyncio.sleep(0.1)  # 0.4 s of scenario time
            assert (await status("anthropic")).indicator == "major"

            # Without a loop the script plays once; Google's format for Gemini.
            at(srv, 29.5)
            assert (await status("gemini", "google")).summary() == "none: No active incidents"
            for t in (30.5, 180.5):
                at(srv, t)
                gemini = await status("gemini", "google")
                assert gemini.summary() == (
                    "minor: Service Disruption — Slow responses (minor; Vertex Gemini API)"
                )
            assert (await status("openai")).description == "We're fully operational"
            missing = await status("mistral")
            assert missing.indicator == "unknown" and missing.error == "HTTP 404 Not Found"

            # The raw payload is the real shape, with the incident's times on the script's.
            async with httpx.AsyncClient() as client:
                at(srv, 60)
                before = time.time()
                raw = (await client.get(srv.status_page_url("anthropic"))).json()
            assert set(raw) == {"page", "components", "incidents", "scheduled_maintenances",
                                "status"}  # fmt: skip
            assert raw["status"] == {"indicator": "major", "description": "Partial System Outage"}
            assert [c["status"] for c in raw["components"]] == ["partial_outage"]
            [incident] = raw["incidents"]
            assert (incident["status"], incident["impact"]) == ("monitoring", "major")
            started = datetime.fromisoformat(incident["started_at"]).timestamp()
            updated = datetime.fromisoformat(incident["updated_at"]).timestamp()
            assert started == pytest.approx(before - 30 / speed, abs=0.2)  # came due at 30 s
            assert updated == pytest.approx(before - 5 / speed, abs=0.2)  # ... updated at 55 s
            assert incident["incident_updates"][0]["body"].startswith("A fix has been implemented")


async def test_status_page_live_control_and_the_poller() -> None:
    """PATCH /_sim/status_pages changes a page at once; StatusPoller reports it as a change;
    a page that is itself down reads as unknown after the poller's tolerance."""
    with SimServer(parse_scenario({"status_pages": PAGES})) as srv:
        names = ("anthropic", "openai")
        poller = StatusPoller(
            {n: (srv.status_page_url(n), "statuspage") for n in names}, failures_before_unknown=2
        )
        async with aiohttp.ClientSession() as session, httpx.AsyncClient() as client:
            state = (await client.get(f"{srv.url}/_sim/state")).json()["status_pages"]
            assert state["anthropic"]["indicator"] == "none" and "timeline" not in state["openai"]
            await poller.poll_once(session)  # the baseline: not news
            assert poller.changes().empty()

            control = f"{srv.url}/_sim/status_pages"
            r = await client.patch(f"{control}/openai", json={"maintenance": "Database upgrade"})
            assert r.status_code == 200 and r.json()["maintenance"] == "Database upgrade"
            await poller.poll_once(session)
            old, new = poller.changes().get_nowait()
            assert old is not None and (old.indicator, new.indicator) == ("none", "maintenance")

            r = await client.patch(f"{control}/openai", json={"indicator": "down"})
            assert r.status_code == 400
            assert (
                "status_pages.openai.indicator" in r.json()["error"]
                and "'down'" in r.json()["error"]
            )

            await client.patch(f"{control}/anthropic", json={"unavailable": True})
            await poller.poll_once(session)
            assert poller.current("anthropic").error == "HTTP 503 Service Unavailable"
            assert poller.changes().empty()  # one failed fetch is a blip
            await poller.poll_once(session)
            _, down = poller.changes().get_nowait()
            assert (down.provider, down.indicator) == ("anthropic", "unknown")

            page = await client.get(f"{srv.url}/statuspage/openai")  # where status links point
            assert page.status_code == 200 and "Database upgrade" in page.text
            assert (await client.get(f"{srv.url}/statuspage/openai/")).status_code == 200


@pytest.mark.parametrize(
    ("page", "message"),
    [
        ({"indicator": "down"}, r"status_pages\.p\.indicator: got 'down'"),
        ({"timeline": [{"at": "1s", "set": {"impact": "huge"}}]}, r"timeline\.0\.set.*impact"),
        ({"timeline": [{"at": "1s", "set": {"loop": "5s"}}]}, r"cannot set 'loop'"),
        ({"loop": "2s", "timeline": [{"at": "2s", "set": {}}]}, r"not before loop"),
        ({"incidents": ["x"]}, r"status_pages\.p\.incidents: .*[Ee]xtra"),
    ],
)
def test_status_pages_are_validated(page: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        parse_scenario({"status_pages": {"p": page}})


def test_load_scenario(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "api_keys: [k]\nmodels:\n  gpt:\n    ttft: 400ms\n"
        "    ratelimit: {requests_limit: 5, requests_reset: 120ms}\n"
        "    timeline:\n      - {at: 60s, set: {errors: {503: 1.0}}}\n"
    )
    s = load_scenario(path)
    assert s.models["gpt"].ttft == 0.4 and s.models["gpt"].ratelimit is not None
    assert s.models["gpt"].timeline[0].set == {"errors": {503: 1.0}}
    path.write_text("models:\n  gpt:\n    timeline:\n      - {at: 1s, set: {ttft: fast}}\n")
    with pytest.raises(ScenarioError, match=r"models\.gpt\.timeline\.0\.set"):
        load_scenario(path)
    assert ModelBehavior().ttft == 0.3


def test_go_duration() -> None:
    cases = {0.012: "12ms", 1: "1s", 360: "6m0s", 179.56: "2m59.56s", 3723: "1h2m3s", 0: "0s"}
    assert {k: go_duration(k) for k in cases} == cases


# --- tool calls ------------------------------------------------------------------------------


def test_tool_call_openai_with_the_sdk(server: SimServer, client: httpx.Client) -> None:
    use(server, client, m={"tool_call": WEATHER})
    sdk = openai.OpenAI(base_url=server.openai_base, api_key="sk-test", max_retries=0)
    whole = sdk.chat.completions.create(model="m", messages=MSG, tools=[OA_TOOL])
    choice = whole.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = (choice.message.tool_calls or [])[0]
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == WEATHER["arguments"]
    chunks = list(
        sdk.chat.completions.create(
            model="m",
            messages=MSG,
            tools=[OA_TOOL],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    pieces = [
        d.function.arguments
        for ch in chunks
        for d in (ch.choices[0].delta.tool_calls or [] if ch.choices else [])
        if d.function and d.function.arguments
    ]
    assert len(pieces) > 3  # the arguments really arrive in parts
    state = openai.lib.streaming.chat.ChatCompletionStreamState()
    for chunk in chunks:
        state.handle_chunk(chunk)
    final = state.get_final_completion()
    assert final.choices[0].finish_reason == "tool_calls"
    streamed = (final.choices[0].message.tool_calls or [])[0]
    assert streamed.function.name == "get_weather"
    assert json.loads(streamed.function.arguments) == WEATHER["arguments"]
    assert final.usage is not None and final.usage.completion_tokens == len(pieces)
    # Without tools in the request the model answers in text as usual.
    text = sdk.chat.completions.create(model="m", messages=MSG)
    assert text.choices[0].message.content and not text.choices[0].message.tool_calls
    assert text.choices[0].finish_reason == "stop"


def test_tool_call_anthropic_with_the_sdk(server: SimServer, client: httpx.Client) -> None:
    use(server, client, m={"tool_call": WEATHER})
    sdk = anthropic.Anthropic(base_url=server.anthropic_base, api_key="sk-test", max_retries=0)
    args: dict[str, Any] = {"model": "m", "max_tokens": 99, "messages": MSG, "tools": [AN_TOOL]}
    whole = sdk.messages.create(**args)
    assert whole.stop_reason == "tool_use" and whole.content[0].type == "tool_use"
    assert whole.content[0].name == "get_weather"
    assert whole.content[0].input == WEATHER["arguments"]
    with sdk.messages.stream(**args) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_message()
    assert kinds.count("input_json") > 3  # the partial JSON arrives in parts
    block = final.content[0]
    assert final.stop_reason == "tool_use" and block.type == "tool_use"
    assert block.id.startswith("toolu_") and block.input == WEATHER["arguments"]


def test_tool_call_gemini(server: SimServer, client: httpx.Client) -> None:
    use(server, client, m={"tool_call": WEATHER})
    url = f"{server.gemini_base}/models/m:generateContent"
    body = {"contents": [{"parts": [{"text": "x"}]}], "tools": [GE_TOOLS]}
    cand = client.post(url, headers=GE, json=body).json()["candidates"][0]
    call = {"name": "get_weather", "args": WEATHER["arguments"]}
    assert cand["content"]["parts"] == [{"functionCall": call}]
    assert cand["finishReason"] == "STOP"
    with _open_stream(server, client, "gemini", tools=True) as r:
        events = [json.loads(d) for _, d in sse(r.read().decode())]
    assert len(events) == 1  # a function call comes whole, never in parts
    assert events[0]["candidates"][0]["content"]["parts"] == [{"functionCall": call}]
    assert events[0]["candidates"][0]["finishReason"] == "STOP"


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
def test_cut_inside_tool_arguments(server: SimServer, client: httpx.Client, protocol: str) -> None:
    use(server, client, m={"tool_call": WEATHER, "fault": "cut", "fault_after_tokens": 3})
    lines: list[str] = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        _open_stream(server, client, protocol, True) as r,
    ):
        lines.extend(r.iter_lines())
    deltas = [json.loads(line[5:]) for line in lines if line.startswith("data: {")]
    if protocol == "openai":
        pieces = [
            d["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] for d in deltas
        ]
    else:
        pieces = [d["delta"]["partial_json"] for d in deltas if d["type"] == "content_block_delta"]
    partial = "".join(pieces)
    assert partial and json.dumps(WEATHER["arguments"], separators=(",", ":")).startswith(partial)
    assert not _is_json(partial)  # cut inside the arguments


@pytest.mark.parametrize("protocol", ["openai", "anthropic", "gemini"])
def test_no_done_holds_the_finished_stream_open(
    server: SimServer, client: httpx.Client, protocol: str
) -> None:
    use(server, client, m={"fault": "no_done", "output_tokens": 5})
    lines: list[str] = []
    with (
        httpx.Client(timeout=httpx.Timeout(5, read=0.5)) as c2,
        pytest.raises(httpx.ReadTimeout),
        _open_stream(server, c2, protocol) as r,
    ):
        lines.extend(r.iter_lines())
    text = "\n".join(lines)
    assert "[DONE]" not in text and "message_stop" not in text
    finish = {"openai": '"finish_reason":"stop"', "anthropic": '"stop_reason":"end_turn"'}
    assert finish.get(protocol, '"finishReason":"STOP"') in text
    usage = {"anthropic": '"output_tokens":5', "gemini": '"candidatesTokenCount":5'}
    assert usage.get(protocol, "") in text  # OpenAI's usage chunk: the next test
    assert truth(server, client)["fault"] == "no_done"


def test_no_done_openai_usage_chunk(server: SimServer, client: httpx.Client) -> None:
    use(server, client, m={"fault": "no_done", "output_tokens": 5})
    body = {
        "model": "m",
        "messages": MSG,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    lines: list[str] = []
    with (
        httpx.Client(timeout=httpx.Timeout(5, read=0.5)) as c2,
        pytest.raises(httpx.ReadTimeout),
        c2.stream("POST", f"{server.openai_base}/chat/completions", headers=OA, json=body) as r,
    ):
        lines.extend(r.iter_lines())
    events = [json.loads(line[5:]) for line in lines if line.startswith("data: {")]
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == 5


@pytest.mark.parametrize(
    ("tool_call", "message"),
    [
        ({"name": "bad name"}, r"models\.m\.tool_call\.name"),
        ({"arguments": {}}, r"models\.m\.tool_call\.name"),
        ({"name": "f", "arguments": "{}"}, r"models\.m\.tool_call\.arguments"),
        ({"name": "f", "args": {}}, r"models\.m\.tool_call\.args"),
    ],
)
def test_tool_call_is_validated(tool_call: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        parse_scenario({"models": {"m": {"tool_call": tool_call}}})


def test_a_scripted_answer_in_every_protocol_read_by_the_official_sdks(
    server: SimServer, client: httpx.Client
) -> None:
    use(server, client, m={"answer": "The capital of France is Paris."})
    oa = openai.OpenAI(api_key="sk-test", base_url=server.openai_base)
    done = oa.chat.completions.create(model="m", messages=MSG)
    assert done.choices[0].message.content == "The capital of France is Paris."
    assert done.usage is not None and done.usage.completion_tokens == 6  # a token a word
    streamed = oa.chat.completions.create(model="m", messages=MSG, stream=True)
    pieces = [c.choices[0].delta.content for c in streamed if c.choices]
    assert "".join(p for p in pieces if p) == "The capital of France is Paris."
    # A token budget cuts it short, as it would a model's.
    short = oa.chat.completions.create(model="m", messages=MSG, max_tokens=2)
    assert short.choices[0].message.content == "The capital"
    assert short.choices[0].finish_reason == "length"
    an = anthropic.Anthropic(api_key="sk-test", base_url=server.anthropic_base)
    with an.messages.stream(model="m", max_tokens=100, messages=MSG) as stream:
        assert stream.get_final_text() == "The capital of France is Paris."
    base = f"{server.gemini_base}/models/m"
    req = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    body = client.post(f"{base}:generateContent", headers=GE, json=req).json()
    assert body["candidates"][0]["content"]["parts"][0]["text"] == "The capital of France is Paris."
    r = client.post(f"{base}:streamGenerateContent?alt=sse", headers=GE, json=req)
    chunks = [json.loads(d) for _, d in sse(r.text)]
    text = "".join(
        p.get("text", "") for c in chunks for p in c["candidates"][0]["content"]["parts"]
    )
    assert text == "The capital of France is Paris."


# --- Responses API, embeddings, long prompts -------------------------------------------------


def _oa_sdk(server: SimServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.openai_base, api_key="sk-test", max_retries=0)


def test_responses_stream_read_by_the_official_sdk(server: SimServer, client: httpx.Client) -> None:
    use(server, client, m={"output_tokens": 4, "reasoning_tokens": 3, "cached_tokens": 2})
    sdk = _oa_sdk(server)
    events = list(sdk.responses.create(model="m", input=MSG, max_output_tokens=50, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "Hello the quick brown"
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == "Hello the quick brown" and final.status == "completed"
    assert final.usage is not None
    assert (final.usage.output_tokens, final.usage.output_tokens_details.reasoning_tokens) == (7, 3)
    assert final.usage.input_tokens_details.cached_tokens == 2
    assert final.usage.input_tokens == truth(server, client)["input_tokens"]
    # Non-streamed: the same Response object, whole.
    whole = sdk.responses.create(model="m", input="ping the model please", max_output_tokens=50)
    assert whole.output_text == "Hello the quick brown" and whole.usage is not None
    assert whole.usage.input_tokens == 6  # ceil(21 characters / 4)


def test_responses_limits_filters_errors(server: SimServer, client: httpx.Client) -> None:
    use(server, client, m={"output_tokens": 40}, f={"errors": {"content_filter": 1}})
    sdk = _oa_sdk(server)
    cut = sdk.responses.create(model="m", input="hi", max_output_tokens=16)
    assert cut.status == "incomplete" and cut.incomplete_details is not None
    assert cut.incomplete_details.reason == "max_output_tokens"
    filtered = sdk.responses.create(model="f", input="hi", max_output_tokens=50)
    assert filtered.incomplete_details is not None
    assert filtered.incomplete_details.reason == "content_filter"
    with pytest.raises(openai.BadRequestError, match="max_output_tokens"):
        sdk.responses.create(model="m", input="hi", max_output_tokens=5)
    with pytest.raises(openai.BadRequestError, match="'input'"):
        sdk.responses.create(model="m", input=[], max_output_tokens=50)
    client.patch(f"{server.url}/_sim/models/m", json={"fault": "error_event"})
    events = list(sdk.responses.create(model="m", input="hi", max_output_tokens=50, stream=True))
    assert events[-1].type == "response.failed"
    assert events[-1].response.error is not None  # type: ignore[union-attr]
    assert events[-1].response.error.code == "server_error"  # type: ignore[union-attr]


def test_embeddings_openai_azure_and_gemini(server: SimServer, client: httpx.Client) -> None:
    use(server, client, e={"embedding_dimensions": 3072, "served_model": "e-v1"})
    sdk = _oa_sdk(server)
    # The SDK asks for base64 by default and decodes it: the floats must survive the trip.
    got = sdk.embeddings.create(model="e", input=["alpha beta", "gamma"])
    assert [len(d.embedding) for d in got.data] == [3072, 3072]
    assert got.model == "e-v1" and got.usage.prompt_tokens == 4  # ceil(15 characters / 4)
    floats = sdk.embeddings.create(model="e", input="alpha beta", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(got.data[0].embedding, abs=1e-6)
    assert sum(v * v for v in floats.data[0].embedding) == pytest.approx(1.0, abs=1e-5)
    short = sdk.embeddings.create(model="e", input="alpha", dimensions=256)
    assert len(short.data[0].embedding) == 256
    with pytest.raises(openai.BadRequestError, match="'input'"):
        sdk.embeddings.create(model="e", input="")
    url = f"{server.azure_base}/openai/deployments/e/embeddings?api-version=2024-10-21"
    azure = client.post(url, headers={"api-key": "sk-test"}, json={"input": "alpha"}).json()
    assert len(azure["data"][0]["embedding"]) == 3072
    gem = f"{server.gemini_base}/models/e:embedContent"
    req = {"model": "models/e", "content": {"parts": [{"text": "alpha"}]}}
    body = client.post(gem, headers=GE, json=req).json()
    assert list(body) == ["embedding"] and len(body["embedding"]["values"]) == 3072
    short_req = {**req, "outputDimensionality": 768}
    again = [client.post(gem, headers=GE, json=short_req).json() for _ in range(2)]
    assert len(again[0]["embedding"]["values"]) == 768 and again[0] == again[1]  # deterministic
    bad = client.post(gem, headers=GE, json={"content": {"parts": []}})
    assert bad.status_code == 400 and bad.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_long_prompts_are_counted_and_slow_the_first_token(
    server: SimServer, client: httpx.Client
) -> None:
    use(server, client, m={"prefill_ms_per_ktok": 40, "context_window": 20000})
    prompt = "abcd" * 10_000  # 40,000 characters: 10,000 tokens
    r = oa_chat(server, client, messages=[{"role": "user", "content": prompt}])
    assert r.json()["usage"]["prompt_tokens"] == 10_000
    assert truth(server, client)["ttft_ms"] == pytest.approx(20 + 10_000 * 40 / 1000)
    # Counted past the model's window: refused as a real API refuses it.
    r = oa_chat(server, client, messages=[{"role": "user", "content": prompt * 3}])
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
