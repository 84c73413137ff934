"""OTLP export: a real OTLP/HTTP receiver on a loopback socket decodes what the daemon and the
gateway send (spans and metrics of real probes against the simulator, and of a request through
the official openai SDK), and a collector that is down leaves probing alone."""

from __future__ import annotations

import asyncio
import gzip
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from conftest import base_url, sim_model
from llmpulse.config import ConfigError, parse_config
from llmpulse.errors import ErrorClass
from llmpulse.monitor.daemon import Daemon
from llmpulse.result import CheckKind, CheckResult, Usage
from llmpulse.sim.server import SimServer
from llmpulse.store import SQLiteStore
from llmpulse.telemetry.otlp import SHUTDOWN_TIMEOUT_S, Telemetry
from llmpulse.telemetry.semconv import DURATION_BUCKETS, TOKEN_BUCKETS
from test_gateway_proxy import FAST, deployment

AUTH = "Bearer otlp-secret-token"


def attrs(items: Any) -> dict[str, Any]:
    """OTLP KeyValues as a plain dict (arrays as lists)."""
    out: dict[str, Any] = {}
    for kv in items:
        assert isinstance(kv, KeyValue)
        value = kv.value
        kind = value.WhichOneof("value")
        if kind == "array_value":
            out[kv.key] = [getattr(v, v.WhichOneof("value")) for v in value.array_value.values]
        else:
            out[kv.key] = getattr(value, kind)
    return out


class Collector:
    """An OTLP/HTTP (protobuf) receiver: keeps every span and histogram point it is sent."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict[str, Any], Span]] = []  # (resource attributes, span)
        # (metric name, unit, explicit bounds, point attributes, count, sum)
        self.points: list[tuple[str, str, list[float], dict[str, Any], int, float]] = []
        self.headers: list[str | None] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                assert self.headers["Content-Type"] == "application/x-protobuf"
                with collector.lock:
                    collector.headers.append(self.headers.get("Authorization"))
                    if self.path == "/v1/traces":
                        collector._traces(ExportTraceServiceRequest.FromString(body))
                    elif self.path == "/v1/metrics":
                        collector._metrics(ExportMetricsServiceRequest.FromString(body))
                    else:
                        self.send_response(404)
                        self.end_headers()
                        return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _traces(self, request: ExportTraceServiceRequest) -> None:
        for rs in request.resource_spans:
            resource = attrs(rs.resource.attributes)
            for ss in rs.scope_spans:
                assert ss.scope.name == "llmpulse"
                self.spans.extend((resource, span) for span in ss.spans)

    def _metrics(self, request: ExportMetricsServiceRequest) -> None:
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    assert metric.WhichOneof("data") == "histogram"
                    for p in metric.histogram.data_points:
                        self.points.append(
                            (
                                metric.name,
                                metric.unit,
                                list(p.explicit_bounds),
                                attrs(p.attributes),
                                p.count,
                                p.sum,
                            )
                        )

    def span_list(self) -> list[tuple[dict[str, Any], Span]]:
        with self.lock:
            return list(self.spans)


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    thread = threading.Thread(target=c.server.serve_forever, daemon=True)
    thread.start()
    yield c
    c.server.shutdown()
    c.server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def monitor_config(sim: SimServer, targets: list[dict[str, Any]], telemetry: dict[str, Any]):
    raw = {
        "monitor": {"retry_interval": "300ms", "status_pages": False},
        "web": {"enabled": False},
        "targets": [
            {"base_url": base_url(sim, t["provider"]), "api_key": "${K}", "timeout": "2s", **t}
            for t in targets
        ],
        "telemetry": telemetry,
    }
    return parse_config(raw, env={"K": "sk-test", "OTLP_AUTH": AUTH})


async def run_until(daemon: Daemon, predicate: Any, timeout: float = 20.0) -> float:
    """Run the daemon until ``predicate()`` holds, then stop it; returns how long stopping took."""
    task = asyncio.ensure_future(daemon.run())
    try:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert not task.done(), "daemon stopped"
            assert time.monotonic() < deadline, "timed out waiting"
            await asyncio.sleep(0.1)
    finally:
        stopping = time.monotonic()
        daemon.stop_event.set()
        await asyncio.wait_for(task, 30)
    return time.monotonic() - stopping


async def test_probes_export_genai_spans_and_metrics(
    sim: SimServer, collector: Collector, tmp_path: Path
) -> None:
    good = sim_model(sim, ttft="30ms", output_tokens=5, tokens_per_s=500)
    bad = sim_model(sim, ttft="30ms", output_tokens=5, errors={"503": 1.0})
    gem = sim_model(sim, ttft="30ms", output_tokens=5, tokens_per_s=500)
    config = monitor_config(
        sim,
        [
            {"name": "good", "provider": "openai", "model": good, "interval": "1s"},
            {
                "name": "bad",
                "provider": "openai",
                "model": bad,
                "interval": "1s",
                "checks": ["inference"],
            },
            {
                "name": "gem",
                "provider": "gemini",
                "model": gem,
                "interval": "1s",
                "checks": ["stream"],
            },
        ],
        {
            "endpoint": collector.url,
            "headers": {"Authorization": "${OTLP_AUTH}"},
            "service_name": "llmpulse-test",
            "export_interval": "200ms",
        },
    )
    db = tmp_path / "r.db"
    daemon = Daemon(config, db_path=db, agent="probe-1", region="eu-west")

    def spans_of(target: str) -> list[Span]:
        return [s for _, s in collector.span_list() if _attr(s, "llmpulse.target") == target]

    # Shutdown flushes, so what the store has, the collector has too.
    await run_until(daemon, lambda: all(len(spans_of(t)) >= 3 for t in ("good", "bad", "gem")))

    store = SQLiteStore(db)
    results = store.latest_results(limit=1000)
    store.close()
    assert {r.target for r in results} == {"good", "bad", "gem"}
    spans = [s for _, s in collector.spans]
    assert len(spans) == len(results)  # one span per result, none lost at shutdown
    assert set(collector.headers) == {AUTH}
    assert {r["service.name"] for r, _ in collector.spans} == {"llmpulse-test"}
    port = int(sim.openai_base.split(":")[2].split("/")[0])
    for r in results:
        # The stored timestamp is a float of seconds: equal to the span's start within 2 µs.
        start = round(r.timestamp.timestamp() * 1e9)
        matches = [
            s
            for s in spans
            if (_attr(s, "llmpulse.target"), _attr(s, "llmpulse.check")) == (r.target, r.check)
            and abs(s.start_time_unix_nano - start) < 2000
        ]
        assert len(matches) == 1, r
        span = matches[0]
        a = attrs(span.attributes)
        operation = "list_models" if r.kind is CheckKind.MODELS else "chat"
        assert span.name == f"{operation} {r.model}"
        assert span.kind == Span.SPAN_KIND_CLIENT
        assert span.parent_span_id == b""
        assert r.latency_ms is not None
        assert abs(span.end_time_unix_nano - span.start_time_unix_nano - r.latency_ms * 1e6) < 2000
        assert a["gen_ai.operation.name"] == operation
        assert a["gen_ai.provider.name"] == ("gcp.gemini" if r.target == "gem" else "openai")
        assert a["gen_ai.request.model"] == r.model
        assert a["server.address"] == "127.0.0.1" and a["server.port"] == port
        assert a["llmpulse.source"] == "probe" and a["llmpulse.check"] == str(r.check)
        assert a["llmpulse.check.kind"] == r.kind.value
        assert (a["llmpulse.agent"], a["llmpulse.region"]) == ("probe-1", "eu-west")
        assert "api_key" not in str(a) and "sk-test" not in str(span)
        if r.ok:
            assert span.status.code != Status.STATUS_CODE_ERROR
            assert "error.type" not in a
        else:
            assert span.status.code == Status.STATUS_CODE_ERROR
            assert a["error.type"] == r.error_class
        if r.ok and r.kind is not CheckKind.MODELS:
            assert a["gen_ai.response.model"] == r.response_model
            assert a["gen_ai.usage.output_tokens"] == r.usage.output_tokens
            assert a["gen_ai.usage.input_tokens"] == r.usage.input_tokens
            assert a["gen_ai.response.finish_reasons"] == [r.finish_reason]
        if r.kind is CheckKind.STREAM and r.ok:
            assert a["llmpulse.ttft_ms"] == pytest.approx(r.ttft_ms)
    assert any(not r.ok and r.error_class == "unavailable" for r in results)

    # Metrics: cumulative points, so the last export of each series carries every result.
    last: dict[tuple[str, frozenset[tuple[str, Any]]], tuple[str, list[float], int, float]] = {}
    for name, unit, bounds, a, count, total in collector.points:
        last[(name, frozenset(a.items()))] = (unit, bounds, count, total)
    names = {name for name, _ in last}
    assert names == {
        "gen_ai.client.operation.duration",
        "gen_ai.client.operation.time_to_first_chunk",
        "gen_ai.client.token.usage",
    }
    for (name, key), (unit, bounds, _, _) in last.items():
        a = dict(key)
        assert a["llmpulse.source"] == "probe"
        assert {"gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model"} <= set(a)
        if name == "gen_ai.client.token.usage":
            assert (unit, bounds) == ("{token}", list(TOKEN_BUCKETS))
            assert a["gen_ai.token.type"] in ("input", "output")
        else:
            assert (unit, bounds) == ("s", list(DURATION_BUCKETS))
    durations = {k: v for k, v in last.items() if k[0] == "gen_ai.client.operation.duration"}
    for r_target, r_check, ok in {(r.target, str(r.check), r.ok) for r in results}:
        want = [r for r in results if (r.target, str(r.check), r.ok) == (r_target, r_check, ok)]
        got = [
            v
            for (_, key), v in durations.items()
            if (dict(key)["llmpulse.target"], dict(key)["llmpulse.check"]) == (r_target, r_check)
            and ("error.type" not in dict(key)) == ok
        ]
        assert sum(count for _, _, count, _ in got) == len(want)
        total = sum(r.latency_ms or 0 for r in want) / 1000
        assert sum(s for _, _, _, s in got) == pytest.approx(total)
    failed = [dict(k) for (n, k) in durations if "error.type" in dict(k)]
    assert failed and {a["error.type"] for a in failed} == {"unavailable"}
    assert {a["llmpulse.target"] for a in failed} == {"bad"}
    ttft = [dict(k) for (n, k) in last if n == "gen_ai.client.operation.time_to_first_chunk"]
    assert {a["llmpulse.check"] for a in ttft} == {"stream"}
    assert {a["gen_ai.provider.name"] for a in ttft} == {"openai", "gcp.gemini"}


async def test_a_collector_that_is_down_does_not_fail_probes(sim: SimServer, tmp_path: Path):
    model = sim_model(sim, ttft="20ms", output_tokens=5, tokens_per_s=500)
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    config = monitor_config(
        sim,
        [{"name": "t", "provider": "openai", "model": model, "interval": "300ms"}],
        {"endpoint": down, "export_interval": "100ms"},
    )
    db = tmp_path / "r.db"
    daemon = Daemon(config, db_path=db)

    def written() -> int:
        if not db.exists():
            return 0
        with SQLiteStore(db) as store:
            return len(store.latest_results(limit=100))

    started = time.monotonic()
    stopping = await run_until(daemon, lambda: written() >= 9)
    running = time.monotonic() - started - stopping
    store = SQLiteStore(db)
    results = store.latest_results(limit=100)
    store.close()
    assert results and all(r.ok for r in results)
    # Three checks every 300 ms: nine results in about a second, unless exporting stalled them
    # (the exporter retries for 10 s against a refused connection).
    assert running < 8
    assert max(r.latency_ms or 0 for r in results) < 1000
    # A graceful stop waits for the collector only so long (SHUTDOWN_TIMEOUT_S).
    assert stopping < SHUTDOWN_TIMEOUT_S + 3


def test_gateway_traffic_is_exported_as_a_span(
    sim: SimServer, collector: Collector, tmp_path: Path
) -> None:
    model = sim_model(sim, **FAST)
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model_list": [deployment(sim, "chat", "openai", model)],
                "gateway": {"monitor": False},
                "telemetry": {"endpoint": collector.url, "metrics": False},
            }
        )
    )
    port = free_port()
    args = ["gateway", "--config", str(config), "--db", str(tmp_path / "t.db")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmpulse", *args, "--listen", f"127.0.0.1:{port}"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SIM_KEY": "sk-sim"},
    )
    try:
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=10
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                sent = time.time_ns()
                reply = client.chat.completions.create(
                    model="chat", messages=[{"role": "user", "content": "hi"}], stream=True
                )
                text = "".join(c.choices[0].delta.content or "" for c in reply if c.choices)
                received = time.time_ns()
                break
            except openai.APIConnectionError:
                assert time.monotonic() < deadline and proc.poll() is None, (
                    proc.stderr and proc.stderr.read()
                )
                time.sleep(0.1)
        assert text
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert collector.points == []  # metrics: false
    ((resource, span),) = collector.span_list()  # flushed at shutdown; gateway.monitor is off
    a = attrs(span.attributes)
    assert resource["service.name"] == "llmpulse"
    assert span.name == f"chat {model}"
    assert span.kind == Span.SPAN_KIND_CLIENT
    assert sent <= span.start_time_unix_nano <= span.end_time_unix_nano <= received
    assert a["llmpulse.source"] == "traffic"
    assert a["llmpulse.check"] == "stream"
    assert a["llmpulse.attempts"] == 1 and a["llmpulse.fallbacks"] == 0
    assert a["gen_ai.provider.name"] == "openai-compatible"  # a deployment with its own api_base
    assert a["gen_ai.request.model"] == model
    assert a["gen_ai.response.model"] == model
    assert a["gen_ai.usage.output_tokens"] > 0
    assert a["server.address"] == "127.0.0.1"
    assert "error.type" not in a and span.status.code != Status.STATUS_CODE_ERROR


def test_the_sdk_environment_variables_configure_an_empty_section(
    collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization={AUTH}")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    base = {"targets": [{"provider": "gemini", "model": "gemini-2.5-flash", "api_key": "${K}"}]}
    config = parse_config({**base, "telemetry": {}}, env={"K": "k"})
    assert config.telemetry is not None
    telemetry = Telemetry(config.telemetry, config.targets)
    started = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    result = CheckResult(
        "gemini/gemini-2.5-flash", "gemini", "gemini-2.5-flash", CheckKind.INFERENCE, started,
        ok=False, error_class=ErrorClass.TIMEOUT, error_message="no answer in 20 s",
        latency_ms=20000.0, usage=Usage(input_tokens=12, output_tokens=3, estimated=True),
    )  # fmt: skip
    telemetry.emit(result)
    telemetry.shutdown()
    ((resource, span),) = collector.spans
    assert resource["service.name"] == "from-env"
    assert set(collector.headers) == {AUTH}
    assert span.start_time_unix_nano == 1767323045678901000
    assert span.end_time_unix_nano == span.start_time_unix_nano + 20 * 10**9
    assert span.status.code == Status.STATUS_CODE_ERROR
    assert span.status.message == "no answer in 20 s"
    a = attrs(span.attributes)
    assert a["error.type"] == "timeout"
    assert a["gen_ai.provider.name"] == "gcp.gemini"
    assert a["server.address"] == "generativelanguage.googleapis.com"
    assert "gen_ai.usage.input_tokens" not in a  # estimated counts are not the provider's
    names = {(name, tuple(sorted(p))) for name, _, _, p, _, _ in collector.points}
    assert {n for n, _ in names} == {"gen_ai.client.operation.duration"}  # no tokens, no TTFT


def test_a_custom_probe_is_exported_under_its_name_with_its_kind(collector: Collector) -> None:
    base = {"targets": [{"provider": "openai", "model": "gpt-4o-mini", "api_key": "${K}"}]}
    config = parse_config({**base, "telemetry": {"endpoint": collector.url}}, env={"K": "k"})
    assert config.telemetry is not None
    telemetry = Telemetry(config.telemetry, config.targets)
    result = CheckResult(
        "openai/gpt-4o-mini", "openai", "gpt-4o-mini", "capital", datetime.now(UTC), ok=False,
        kind=CheckKind.INFERENCE, error_class=ErrorClass.ASSERTION, http_status=200,
        error_message="answer does not contain 'Paris'", latency_ms=400.0,
    )  # fmt: skip
    telemetry.emit(result)
    telemetry.shutdown()
    ((_, span),) = collector.spans
    a = attrs(span.attributes)
    assert (a["llmpulse.check"], a["llmpulse.check.kind"]) == ("capital", "inference")
    assert a["gen_ai.operation.name"] == "chat" and a["error.type"] == "assertion"
    points = [p for name, _, _, p, _, _ in collector.points if name.endswith("duration")]
    assert {(p["llmpulse.check"], p["llmpulse.check.kind"]) for p in points} == {
        ("capital", "inference")
    }


def test_telemetry_config_is_off_unless_present_and_never_holds_a_literal_secret() -> None:
    base = {"targets": [{"provider": "openai", "model": "m", "api_key": "${K}"}]}
    env = {"K": "sk", "OTLP_AUTH": AUTH}
    assert parse_config(base, env=env).telemetry is None
    config = parse_config(
        {**base, "telemetry": {"endpoint": "http://otel:4318/", "headers": {"x": "${OTLP_AUTH}"}}},
        env=env,
    )
    assert config.telemetry is not None
    assert config.telemetry.endpoint == "http://otel:4318"
    assert config.telemetry.headers == {"x": AUTH}
    assert AUTH not in repr(config.telemetry)
    with pytest.raises(ConfigError, match=r"telemetry\.headers: .*'Authorization'") as exc:
        parse_config({**base, "telemetry": {"headers": {"Authorization": AUTH}}}, env=env)
    assert "otlp-secret-token" not in str(exc.value)
    with pytest.raises(ConfigError, match=r"telemetry\.headers\.x: environment variable NOPE"):
        parse_config({**base, "telemetry": {"headers": {"x": "os.environ/NOPE"}}}, env=env)
    with pytest.raises(ConfigError, match=r"telemetry\.endpoint: expected an http"):
        parse_config({**base, "telemetry": {"endpoint": "otel:4317"}}, env=env)
    with pytest.raises(ConfigError, match=r"telemetry\.tracing: unknown key"):
        parse_config({**base, "telemetry": {"tracing": True}}, env=env)
    with pytest.raises(ConfigError, match=r"telemetry\.export_interval"):
        parse_config({**base, "telemetry": {"export_interval": "0s"}}, env=env)


def _attr(span: Span, key: str) -> Any:
    return attrs(span.attributes).get(key)
