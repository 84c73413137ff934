"""The gateway's own /metrics: a served ``llmpulse gateway`` in front of the simulator, its
counters checked against the simulator's request log; where it listens and who may read it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from conftest import sim_model
from llmpulse.config import ConfigError, load_config
from llmpulse.errors import ErrorClass
from llmpulse.gateway.metrics import GatewayMetrics
from llmpulse.gateway.proxy import Drill, Gateway
from llmpulse.gateway.server import GatewayProcess, metrics_address
from llmpulse.result import CheckResult, Source
from llmpulse.sim.server import SimServer
from test_gateway_proxy import FAST, deployment, gateway_config, upstream

MASTER = "sk-master-metrics-test"
APP_KEY = "sk-app-metrics-test"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def samples(text: str, family: str) -> list[tuple[dict[str, str], float]]:
    """The samples of one metric family in a Prometheus text exposition."""
    for f in text_string_to_metric_families(text):
        if f.name == family:
            return [(s.labels, s.value) for s in f.samples if not s.name.endswith("_created")]
    return []


def value(text: str, family: str, **labels: str) -> float:
    return sum(v for got, v in samples(text, family) if labels.items() <= got.items())


class Gateway_:
    """``llmpulse gateway`` as a process, on free loopback ports, its stderr kept."""

    def __init__(self, tmp_path: Path, raw: dict[str, Any]) -> None:
        self.port, self.metrics_port = free_port(), free_port()
        raw.setdefault("gateway", {})["metrics_listen"] = f"127.0.0.1:{self.metrics_port}"
        config = tmp_path / "gateway.yaml"
        config.write_text(yaml.safe_dump(raw))
        self.url = f"http://127.0.0.1:{self.port}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        self.log = tmp_path / "gateway.log"
        argv = ["gateway", "--config", str(config), "--port", str(self.port)]
        argv += ["--db", str(tmp_path / "traffic.db")]
        env = {**os.environ, "SIM_KEY": "sk-sim", "XDG_DATA_HOME": str(tmp_path / "data")}
        env |= {"MASTER_KEY": MASTER, "APP_KEY": APP_KEY}
        with self.log.open("w") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "llmpulse", *argv], stderr=stderr, env=env
            )

    def __enter__(self) -> Gateway_:
        deadline = time.monotonic() + 20
        while True:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.url}/health/liveliness", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=20)

    def scrape(self, key: str | None = MASTER) -> httpx.Response:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return httpx.get(self.metrics_url, headers=headers, timeout=10)


def test_after_an_outage_the_fallback_counter_matches_the_simulators_request_log(
    sim: SimServer, tmp_path: Path
) -> None:
    primary = sim_model(sim, errors={"503": 1.0}, **FAST)
    backup = sim_model(sim, **FAST)
    raw = {
        "model_list": [
            deployment(sim, "chat", "openai", primary),
            deployment(sim, "backup", "anthropic", backup),
        ],
        "router_settings": {
            "fallbacks": [{"chat": ["backup"]}],
            "num_retries": 1,
            "allowed_fails": 3,
        },
        "general_settings": {"master_key": "os.environ/MASTER_KEY"},
        "gateway": {"keys": [{"name": "app", "key": "os.environ/APP_KEY"}], "monitor": False},
    }
    first, answering = f"chat/openai/{primary}", f"backup/anthropic/{backup}"
    with Gateway_(tmp_path, raw) as gateway:
        client = openai.OpenAI(
            base_url=f"{gateway.url}/v1", api_key=APP_KEY, max_retries=0, timeout=20
        )
        sent = 0
        # Until the primary's breaker opens: every request so far went to it first.
        while True:
            reply = client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "hi"}]
            )
            assert reply.model == backup
            sent += 1
            text = gateway.scrape().text
            if value(text, "litellm_deployment_state", deployment=first) == 2 or sent == 10:
                break
        # Who may read them: the master key only.
        assert gateway.scrape(None).status_code == 401
        assert gateway.scrape("sk-wrong").status_code == 401
        refused = gateway.scrape(APP_KEY)
        assert refused.status_code == 403 and "master key only" in refused.text
    went_first, went_on = upstream(sim, primary), upstream(sim, backup)
    assert value(text, "litellm_deployment_state", deployment=first) == 2  # open
    assert value(text, "litellm_deployment_state", deployment=answering) == 0
    assert len(went_on) == sent
    fallbacks = samples(text, "llmpulse_gateway_fallbacks")
    reason = str(ErrorClass.UNAVAILABLE)
    assert fallbacks == [
        ({"group": "chat", "from": first, "to": answering, "reason": reason}, len(went_on))
    ]
    assert samples(text, "litellm_deployment_successful_fallbacks") == [
        (
            {
                "requested_model": "chat",
                "fallback_model": "backup",
                "exception_class": reason,
                "api_key_alias": "app",
                "team": "",
            },
            len(went_on),
        )
    ]
    # The primary's attempts beyond the first of each request were retries.
    assert len(went_first) > sent
    assert value(text, "llmpulse_gateway_retries", group="chat") == len(went_first) - sent
    assert value(text, "llmpulse_gateway_requests", deployment=answering, status="ok") == sent
    assert value(text, "litellm_proxy_total_requests_metric", status_code="200") == sent
    assert value(text, "litellm_deployment_success_responses", litellm_model_name=backup) == sent
    stderr = gateway.log.read_text()
    announced = f"metrics at http://127.0.0.1:{gateway.metrics_port}/metrics (master key)"
    assert announced in stderr and MASTER not in stderr


def test_the_metrics_port_binds_loopback_next_to_the_gateway_by_default(
    tmp_path: Path, sim: SimServer
) -> None:
    model = sim_model(sim, **FAST)
    path = tmp_path / "gateway.yaml"
    port = free_port()

    def process(gateway: dict[str, Any] | None = None) -> GatewayProcess:
        raw: dict[str, Any] = {"model_list": [deployment(sim, "chat", "openai", model)]}
        if gateway is not None:
            raw["gateway"] = gateway
        path.write_text(yaml.safe_dump(raw))
        config = load_config(path, env={"SIM_KEY": "sk-sim"})
        return GatewayProcess(config, tmp_path / "traffic.db", ("127.0.0.1", port))

    def close(p: GatewayProcess) -> None:
        if p.metrics_socket is not None:
            p.metrics_socket.close()
        p.recording.writer.store.close()

    default = process()
    try:
        assert default.metrics_socket is not None
        assert default.metrics_socket.getsockname() == ("127.0.0.1", port + 1)
        # The default port taken (by the first): said, and the gateway still serves.
        second = process()
        assert second.metrics_socket is None
        assert second.metrics_warnings == [
            f"/metrics not served: 127.0.0.1:{port + 1} (the gateway's port + 1) is taken; set "
            "gateway.metrics_listen"
        ]
        close(second)
        # Set explicitly, a taken port is an error naming the key.
        with pytest.raises(ConfigError, match=r"^gateway\.metrics_listen: cannot listen on"):
            process({"metrics_listen": f"127.0.0.1:{port + 1}"})
        with pytest.raises(ConfigError, match=r"^gateway\.metrics_listen: port \d+ is the gate"):
            process({"metrics_listen": f"127.0.0.1:{port}"})
    finally:
        close(default)
    off = process({"metrics_listen": False})
    assert off.metrics_socket is None and not off.metrics_warnings
    close(off)
    assert metrics_address(gateway_config([deployment(sim, "c", "openai", model)]), 0) == (
        "127.0.0.1",
        0,
    )


def test_off_loopback_metrics_need_the_master_key(sim: SimServer) -> None:
    entries = [deployment(sim, "chat", "openai", "m")]
    with pytest.raises(ConfigError) as refused:
        gateway_config(
            entries,
            settings={
                "metrics_listen": "0.0.0.0:4001",
                "keys": [{"name": "a", "key": "os.environ/SIM_KEY"}],
            },
        )
    assert str(refused.value) == (
        "gateway.metrics_listen: 0.0.0.0:4001 is not a loopback address, so /metrics needs the "
        "master key: set general_settings.master_key"
    )
    config = gateway_config(
        entries, settings={"metrics_listen": "0.0.0.0:4001"}, general={"master_key": MASTER}
    )
    assert metrics_address(config, 4000) == ("0.0.0.0", 4001)


def test_live_drills_count_as_drill_fallbacks_and_drill_runs_not_at_all(sim: SimServer) -> None:
    from llmpulse.gateway.ir import ChatRequest, Message, TextPart

    first, second = sim_model(sim, **FAST), sim_model(sim, **FAST)
    config = gateway_config(
        [
            deployment(sim, "chat", "openai", first, order=1),
            deployment(sim, "chat", "anthropic", second, order=2),
        ],
        router={"routing_strategy": "priority"},
    )
    records: list[CheckResult] = []

    async def main() -> str:
        gateway: Gateway | None = None
        metrics = GatewayMetrics(config, lambda: gateway.selector if gateway else None)

        def record(result: CheckResult) -> None:
            records.append(result)
            metrics.observe(result)

        gateway = Gateway(config, record=record)
        try:
            request = ChatRequest("chat", [Message("user", [TextPart("hi")])])
            await gateway.complete(request)
            await gateway.complete(request, drill=Drill("skip-primary", skip_primary=True))
            names = frozenset({f"chat/openai/{first}"})
            await gateway.complete(request, drill=Drill("run", skip=names, source=Source.DRILL))
            return metrics.render()[0].decode()
        finally:
            await gateway.aclose()

    text = asyncio.run(main())
    assert [r.source for r in records] == [Source.TRAFFIC, Source.TRAFFIC, Source.DRILL]
    answering = f"chat/anthropic/{second}"
    assert samples(text, "llmpulse_gateway_fallbacks") == [
        ({"group": "chat", "from": f"chat/openai/{first}", "to": answering, "reason": "drill"}, 1)
    ]
    assert samples(text, "litellm_deployment_successful_fallbacks") == []
    # Two traffic requests, one per deployment; the drill run is not traffic.
    assert value(text, "llmpulse_gateway_requests") == 2
    assert value(text, "llmpulse_gateway_requests", deployment=answering) == 1
    assert len(upstream(sim, second)) == 2  # the drill run did reach it
    assert value(text, "litellm_deployment_state") == 0  # both closed
