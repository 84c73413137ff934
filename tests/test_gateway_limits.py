"""What a client cannot make the gateway do: hold large bodies, recurse, fail after an upstream
answered, create targets at will, keep upstream calls running after it left, hold connections
without sending headers, or keep the process from stopping. Real sockets, the simulator as the
providers; the process-level bounds are measured on an ``llmpulse gateway`` process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anthropic
import httpx
import openai
import pytest
import yaml

from conftest import LiveGateway, sim_model
from llmpulse.sim.server import SimServer
from test_gateway_proxy import FAST, Served, ask, deployment, gateway_config, upstream

MIB = 1 << 20
HI = [{"role": "user", "content": "hi"}]


def sim_seq(sim: SimServer) -> int:
    """How many requests the simulator has seen."""
    return httpx.get(f"{sim.url}/_sim/requests", timeout=10).json()["last_seq"]


def named_model(sim: SimServer, name: str, **behavior: Any) -> str:
    httpx.patch(f"{sim.url}/_sim/models/{name}", json=behavior, timeout=10).raise_for_status()
    return name


def wait_until(predicate: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# --- request bodies ----------------------------------------------------------------------------


def test_a_body_over_the_limit_is_refused_in_each_protocols_shape(sim: SimServer) -> None:
    model = sim_model(sim, **FAST)
    config = gateway_config(
        [deployment(sim, "chat", "openai", model)], general={"max_request_size_mb": 0.5}
    )
    big = [{"role": "user", "content": "x" * MIB}]
    before = sim_seq(sim)
    with Served(config) as served:
        with pytest.raises(openai.APIStatusError) as caught:
            served.openai().chat.completions.create(model="chat", messages=big)
        assert caught.value.status_code == 413
        assert "0.5 MB" in caught.value.message
        assert caught.value.body["type"] == "invalid_request_error"  # type: ignore[index]
        with pytest.raises(anthropic.APIStatusError) as refused:
            served.anthropic().messages.create(model="chat", max_tokens=8, messages=big)
        assert refused.value.status_code == 413
        assert refused.value.body["error"]["type"] == "request_too_large"  # type: ignore[index]

        # Chunked: no Content-Length to refuse up front; cut once the bytes read pass the limit.
        def chunks() -> Iterator[bytes]:
            yield b'{"model": "chat", "messages": [{"role": "user", "content": "'
            for _ in range(4):
                yield b"x" * (256 << 10)
            yield b'"}]}'

        for path in ("/v1/chat/completions", "/v1/messages"):
            response = httpx.post(f"{served.url}{path}", content=chunks(), timeout=10)
            assert "content-length" not in response.request.headers
            assert response.status_code == 413
            body = response.json()
            assert (body["error"]["type"] == "request_too_large") == (path == "/v1/messages")
        # Just under the limit is served.
        reply = served.openai().chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "x" * (400 << 10)}]
        )
        assert reply.model == model
    assert sim_seq(sim) == before + 1


def test_deeply_nested_json_is_a_400_in_each_protocols_shape(sim: SimServer) -> None:
    model = sim_model(sim, **FAST)
    before = sim_seq(sim)
    with Served(gateway_config([deployment(sim, "chat", "openai", model)])) as served:
        for body in (
            b"[" * 100_000,  # past the parser's own recursion limit
            # Parses, but over gateway.max_json_depth (128): refused before anything recurses.
            b'{"model": "chat", "messages": [], "metadata": ' + b"[" * 200 + b"]" * 200 + b"}",
        ):
            answer = httpx.post(f"{served.url}/v1/chat/completions", content=body, timeout=10)
            assert answer.status_code == 400, answer.text
            assert "nests deeper than 128" in answer.json()["error"]["message"]
            answer = httpx.post(f"{served.url}/v1/messages", content=body, timeout=10)
            assert answer.status_code == 400
            assert answer.json()["error"]["type"] == "invalid_request_error"
        # Brackets inside strings are not nesting.
        reply = served.openai().chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "[" * 1000}]
        )
        assert reply.model == model
    assert sim_seq(sim) == before + 1


# --- names and headers -------------------------------------------------------------------------


def test_a_model_name_headers_cannot_carry_is_encoded_not_a_500(sim: SimServer) -> None:
    name = named_model(sim, f"wild-中-{sim_model(sim)}", **FAST)
    config = gateway_config([deployment(sim, "wild-*", "openai", "wild-*")])
    with Served(config) as served:
        raw = served.openai().chat.completions.with_raw_response.create(model=name, messages=HI)
        assert raw.parse().model == name
        # Percent-encoded as UTF-8; printable ASCII (the slashes) stays as it is.
        expected = f"{quote(name)}/openai-compatible/{quote(name)}"
        assert raw.headers["x-llmpulse-deployment"] == expected
        message = served.anthropic().messages.create(model=name, max_tokens=8, messages=HI)
        assert message.model == name
    assert [r.ok for r in served.records] == [True, True]
    assert served.records[0].target == f"{name}/openai-compatible/{name}"


def test_an_upstream_request_id_headers_cannot_carry_is_encoded(sim: SimServer) -> None:
    model = sim_model(sim, request_id_suffix="-中", **FAST)
    with Served(gateway_config([deployment(sim, "chat", "openai", model)])) as served:
        raw = served.openai().chat.completions.with_raw_response.create(model="chat", messages=HI)
        shown = raw.headers["x-llmpulse-upstream-request-id"]
        with served.openai().chat.completions.with_streaming_response.create(
            model="chat", messages=HI, stream=True
        ) as streamed:
            assert streamed.status_code == 200
            list(streamed.iter_lines())
            assert streamed.headers["x-llmpulse-upstream-request-id"].endswith("-%E4%B8%AD")
    assert shown.endswith("-%E4%B8%AD")
    # The recorded result keeps the provider's id as it sent it.
    assert [r.ok for r in served.records] == [True, True]
    assert served.records[0].request_id == shown.removesuffix("-%E4%B8%AD") + "-中"


def test_header_values_are_printable_ascii() -> None:
    from llmpulse.gateway.app import header_value

    assert header_value("chat/openai/gpt-4o") == "chat/openai/gpt-4o"
    assert header_value("100%") == "100%25"  # "%" marks what was encoded
    assert header_value("a\r\nb") == "a%0D%0Ab"
    assert header_value("wild-中") == "wild-%E4%B8%AD"
    # A header byte no UTF-8 (aiohttp keeps it as a surrogate): passed on as that byte.
    assert header_value(b"id-\xe9".decode("utf-8", "surrogateescape")) == "id-%E9"


def test_a_model_name_too_long_or_with_control_characters_is_a_400_without_an_upstream_call(
    sim: SimServer,
) -> None:
    config = gateway_config([deployment(sim, "wild-*", "openai", "wild-*")])
    before = sim_seq(sim)
    with Served(config) as served:
        with pytest.raises(openai.BadRequestError) as long:
            ask(served.openai(), "wild-" + "x" * 100_000)
        assert "100005 characters" in long.value.message and "at most 256" in long.value.message
        assert long.value.body["param"] == "model"  # type: ignore[index]
        with pytest.raises(anthropic.BadRequestError) as control:
            served.anthropic().messages.create(model="wild-a\nb", max_tokens=8, messages=HI)
        assert "non-printable" in control.value.message
    assert sim_seq(sim) == before
    assert served.records == []


def test_targets_created_through_wildcards_are_capped(sim: SimServer) -> None:
    base = sim_model(sim)
    names = [named_model(sim, f"wild-{base}-{i}", **FAST) for i in range(4)]
    config = gateway_config(
        [deployment(sim, "wild-*", "openai", "wild-*")], settings={"max_wildcard_targets": 2}
    )
    with Served(config) as served:
        for name in [*names, names[0]]:
            assert ask(served.openai(), name).model == name
    pattern = "wild-*/openai/wild-*"
    assert [r.target for r in served.records] == [
        f"{names[0]}/openai-compatible/{names[0]}",
        f"{names[1]}/openai-compatible/{names[1]}",
        pattern,
        pattern,
        f"{names[0]}/openai-compatible/{names[0]}",  # one of the first two: still its own
    ]
    assert [r.model for r in served.records] == [*names, names[0]]
    assert all(r.ok for r in served.records)


# --- clients that leave ------------------------------------------------------------------------


def send_and_leave(url: str, path: str, body: bytes, after: float) -> None:
    """POST ``body`` on a raw socket and close it ``after`` seconds, answer or not."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        time.sleep(after)


def test_a_non_streaming_client_that_leaves_cancels_its_upstream_call(sim: SimServer) -> None:
    slow = sim_model(sim, latency=30)
    with Served(gateway_config([deployment(sim, "chat", "openai", slow)])) as served:
        body = b'{"model": "chat", "messages": [{"role": "user", "content": "hi"}]}'
        clients = [
            threading.Thread(
                target=send_and_leave, args=(served.url, "/v1/chat/completions", body, 0.5)
            )
            for _ in range(5)
        ]
        for client in clients:
            client.start()
        for client in clients:
            client.join()

        def all_left() -> bool:
            rows = upstream(sim, slow)
            return len(rows) == 5 and all(r["client_left"] for r in rows)

        # The simulator saw each of the gateway's upstream connections close, long before the
        # 30 s answer (and the gateway's 600 s timeout).
        wait_until(all_left, "the upstream calls to be cancelled", timeout=5)
        assert served.gateway is not None
        stats = served.gateway.selector.stats(served.config.deployments[0].id)
        assert stats.in_flight == 0
        # Nothing recorded, and the breaker heard nothing: the client left, not the deployment.
        assert served.records == []
        assert httpx.get(f"{served.url}/health", timeout=10).json()["status"] == "ok"


def test_a_streaming_client_that_leaves_stops_the_upstream_read(
    sim: SimServer, caplog: pytest.LogCaptureFixture
) -> None:
    late = sim_model(sim, ttft=30)
    slow = sim_model(sim, ttft=0.01, tokens_per_s=5, output_tokens=200)
    config = gateway_config(
        [deployment(sim, "late", "openai", late), deployment(sim, "slow", "anthropic", slow)]
    )
    with Served(config) as served:
        # Before the first token: no response has started yet.
        body = b'{"model": "late", "stream": true, "messages": [{"role": "user", "content": "a"}]}'
        send_and_leave(served.url, "/v1/chat/completions", body, 0.5)
        # Mid-stream.
        stream = ask(served.openai(), "slow", stream=True)
        next(iter(stream))
        stream.close()
        wait_until(
            lambda: (
                [r["client_left"] for r in upstream(sim, late) + upstream(sim, slow)]
                == [True, True]
            ),
            "the upstream reads to stop",
            timeout=5,
        )
    assert served.records == []
    assert "shutting down" not in caplog.text


# --- the gateway process: memory, slow headers, shutdown ---------------------------------------


class GatewayProcess(LiveGateway):
    """``llmpulse gateway`` as its own process on a free port, serving ``entries``."""

    def __init__(self, sim: SimServer, workdir: Path, entries: list[dict[str, Any]], **gw: Any):
        config = workdir / "gateway.yaml"
        raw = {"model_list": entries, "gateway": {"monitor": False, **gw}}
        config.write_text(yaml.safe_dump(raw, allow_unicode=True))
        super().__init__(workdir, config)
        self.started()

    def status(self, field: str) -> int:
        """A /proc/PID/status field in KiB (VmRSS, VmHWM: the peak)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
        raise AssertionError(f"no {field}")


@pytest.fixture(scope="module")
def gateway_process(sim: SimServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    model = sim_model(sim, **FAST)
    workdir = tmp_path_factory.mktemp("limits")
    process = GatewayProcess(
        sim,
        workdir,
        [deployment(sim, "chat", "openai", model)],
        max_request_size_mb=1,
        header_timeout="1s",
    )
    process.model = model  # type: ignore[attr-defined]
    try:
        yield process
    finally:
        process.stop()


def test_large_bodies_cost_the_gateway_no_memory(gateway_process: GatewayProcess) -> None:
    url = f"{gateway_process.url}/v1/chat/completions"
    client = openai.OpenAI(base_url=f"{gateway_process.url}/v1", api_key="x", max_retries=0)
    assert ask(client, "chat").model == gateway_process.model  # type: ignore[attr-defined]
    peak = gateway_process.status("VmHWM")
    payload = b"x" * (40 * MIB)

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), MIB):
            yield payload[start : start + MIB]

    async def abuse() -> list[int]:
        async with httpx.AsyncClient(timeout=60) as http:
            sized = [http.post(url, content=payload) for _ in range(6)]
            streamed = [http.post(url, content=chunked()) for _ in range(6)]
            answers = await asyncio.gather(*sized, *streamed)
        return [a.status_code for a in answers]

    statuses = asyncio.run(abuse())
    # 480 MB sent: the gateway read at most the 1 MB limit of each chunked body.
    grown_mb = (gateway_process.status("VmHWM") - peak) / 1024
    assert grown_mb < 40, f"peak RSS grew {grown_mb:.0f} MB"
    assert statuses == [413] * 12


def test_a_client_slow_to_send_its_headers_is_cut_off_while_others_are_served(
    gateway_process: GatewayProcess,
) -> None:
    client = openai.OpenAI(base_url=f"{gateway_process.url}/v1", api_key="x", max_retries=0)
    with contextlib.ExitStack() as stack:
        silent = stack.enter_context(socket.create_connection(("127.0.0.1", gateway_process.port)))
        slow = stack.enter_context(socket.create_connection(("127.0.0.1", gateway_process.port)))
        started = time.monotonic()
        slow.sendall(b"POST /v1/chat/completions HTTP/1.1\r\n")
        for sock in (silent, slow):
            sock.settimeout(5)
        for header in (b"host: x\r\n", b"x-a: 1\r\n", b"x-b: 2\r\n"):
            # Meanwhile other requests are served.
            assert ask(client, "chat").model == gateway_process.model  # type: ignore[attr-defined]
            with contextlib.suppress(OSError):
                slow.sendall(header)
            time.sleep(0.3)
        # Closed (EOF, or a reset for what was sent after) about a second after it opened.
        for sock in (silent, slow):
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(1024) == b""
        assert time.monotonic() - started < 3
    # A request whose headers come in time is unaffected by the clock of an earlier one.
    with socket.create_connection(("127.0.0.1", gateway_process.port)) as kept:
        kept.sendall(b"GET /health/liveliness HTTP/1.1\r\nhost: x\r\n\r\n")
        time.sleep(1.5)
        kept.sendall(b"GET /health/liveliness HTTP/1.1\r\nhost: x\r\n\r\n")
        kept.settimeout(5)
        time.sleep(0.2)
        assert kept.recv(65536).count(b"200 OK") == 2
    # A later request on a kept connection whose headers trickle in is cut off too.
    with socket.create_connection(("127.0.0.1", gateway_process.port)) as kept:
        kept.settimeout(5)
        kept.sendall(b"GET /health/liveliness HTTP/1.1\r\nhost: x\r\n\r\n")
        time.sleep(0.2)
        assert b"200 OK" in kept.recv(65536)
        started = time.monotonic()
        kept.sendall(b"GET /health/liveliness HTTP/1.1\r\n")
        with contextlib.suppress(ConnectionResetError):
            assert kept.recv(1024) == b""
        assert 0.9 < time.monotonic() - started < 3


def test_a_body_trickled_in_is_a_408_in_protocol_shape(gateway_process: GatewayProcess) -> None:
    with socket.create_connection(("127.0.0.1", gateway_process.port)) as slow:
        slow.settimeout(5)
        started = time.monotonic()
        slow.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json"
            b"\r\ncontent-length: 1000\r\n\r\n{"
        )
        # A byte, then nothing: the 1 s header_timeout as idle limit. The answer's head and
        # body may come in separate segments: read until the body is whole.
        answer = slow.recv(65536)
        while b"\r\n\r\n" not in answer or not _whole(answer):
            more = slow.recv(65536)
            if not more:
                break
            answer += more
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert json.loads(body)["error"]["message"].startswith("the request body did not arrive")
    assert 0.9 < time.monotonic() - started < 3


def test_sigterm_drains_within_the_grace_then_cancels_and_flushes(
    sim: SimServer, tmp_path: Path
) -> None:
    fast = sim_model(sim, **FAST)
    hung = sim_model(sim, fault="hang")
    slow = sim_model(sim, ttft=0.01, tokens_per_s=4, output_tokens=200)
    entries = [
        deployment(sim, "chat", "openai", fast),
        deployment(sim, "hung", "openai", hung),
        deployment(sim, "slow", "openai", slow),
    ]
    process = GatewayProcess(sim, tmp_path, entries, shutdown_grace="1s")
    client = openai.OpenAI(base_url=f"{process.url}/v1", api_key="x", max_retries=0, timeout=30)
    failures: dict[str, BaseException] = {}

    def hang() -> None:
        try:
            ask(client, "hung")
        except openai.APIStatusError as exc:
            failures["hung"] = exc

    def stream() -> None:
        try:
            list(ask(client, "slow", stream=True))
        except openai.APIError as exc:
            failures["slow"] = exc

    try:
        assert ask(client, "chat").model == fast
        waiting = [threading.Thread(target=hang), threading.Thread(target=stream)]
        for thread in waiting:
            thread.start()
        wait_until(lambda: upstream(sim, hung) and upstream(sim, slow), "the upstream calls")
        time.sleep(0.3)  # the stream is under way
        stopping = time.monotonic()
        process.proc.send_signal(signal.SIGTERM)
        assert process.proc.wait(10) == 0
        took = time.monotonic() - stopping
        for thread in waiting:
            thread.join(10)
    finally:
        process.stop()
    log = process.log.read_text()
    assert took < 1 + 3, f"exited {took:.1f}s after SIGTERM\n{log}"
    assert "Traceback" not in log, log
    # Both were answered past the grace: a 503 to retry elsewhere, and the stream's error
    # event; their upstream calls ended.
    assert getattr(failures["hung"], "status_code", None) == 503
    assert "shutting down" in failures["slow"].message
    assert not isinstance(failures["slow"], openai.APIConnectionError)
    wait_until(
        lambda: upstream(sim, hung)[0]["client_left"] and upstream(sim, slow)[0]["client_left"],
        "the upstream calls to end",
    )
    # The traffic recorded before the signal was flushed.
    with sqlite3.connect(process.db) as conn:
        rows = conn.execute("SELECT model, ok FROM results WHERE source = 'traffic'").fetchall()
    assert rows == [(fast, 1)]


def _whole(answer: bytes) -> bool:
    """Whether an HTTP answer's body is complete by its content-length."""
    head, _, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False
