"""The gateway's own /metrics: a served ``llmpulse gateway`` in front of the simulator, its
counters checked against the simulator's request log; where it listens and who may read it."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from amserver import free_port
from conftest import LiveGateway, llmpulse_env, sim_model
from llmpulse.config import ConfigError, load_config
from llmpulse.config.gateway import GatewayConfig
from llmpulse.errors import ErrorClass
from llmpulse.gateway.metrics import GatewayMetrics
from llmpulse.gateway.proxy import Drill, Gateway
from llmpulse.gateway.server import GatewayProcess
from llmpulse.result import CheckResult, Source
from llmpulse.sim.server import SimServer
from llmpulse.store import open_store
from test_gateway_proxy import FAST, deployment, gateway_config, upstream

MASTER = "sk-master-metrics-test"
APP_KEY = "sk-app-metrics-test"


def samples(text: str, family: str) -> list[tuple[dict[str, str], float]]:
    """The samples of one metric family in a Prometheus text exposition."""
    for f in text_string_to_metric_families(text):
        if f.name == family:
            return [(s.labels, s.value) for s in f.samples if not s.name.endswith("_created")]
    return []


def value(text: str, family: str, **labels: str) -> float:
    return sum(v for got, v in samples(text, family) if labels.items() <= got.items())


class Gateway_(LiveGateway):
    """``llmpulse gateway`` as a process, on free loopback ports, its stderr kept."""

    def __init__(
        self, tmp_path: Path, raw: dict[str, Any], port: int = 0, own_port: bool = True
    ) -> None:
        """``own_port``: /metrics on a socket of its own (gateway.metrics_listen), else on the
        API's port."""
        port = port or free_port()
        self.metrics_port = free_port() if own_port else port
        if own_port:
            raw.setdefault("gateway", {})["metrics_listen"] = f"127.0.0.1:{self.metrics_port}"
        config = tmp_path / "gateway.yaml"
        config.write_text(yaml.safe_dump(raw))
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        env = llmpulse_env(tmp_path) | {"MASTER_KEY": MASTER, "APP_KEY": APP_KEY}
        super().__init__(tmp_path, config, port=port, env=env)

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
            "cooldown_time": 60,  # open for the rest of the test
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
        tried = sent
        # The outage goes on with the breaker open: the primary is passed over, no longer called,
        # and each request the fallback group answers is still a fallback of group chat.
        for _ in range(3):
            reply = client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "hi"}]
            )
            assert reply.model == backup
            sent += 1
        text = gateway.scrape().text
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
    # The primary's attempts beyond the first of each request were retries; those it was
    # passed over for are neither attempts nor retries.
    assert len(went_first) > tried
    assert value(text, "llmpulse_gateway_retries", group="chat") == len(went_first) - tried
    assert value(text, "llmpulse_gateway_requests", deployment=answering, status="ok") == sent
    assert value(text, "litellm_proxy_total_requests_metric", status_code="200") == sent
    assert {labels["requested_model"] for labels, _ in
            samples(text, "litellm_proxy_total_requests_metric")} == {"chat"}  # fmt: skip
    assert value(text, "litellm_deployment_success_responses", litellm_model_name=backup) == sent
    # LiteLLM's labels: the group asked for, and the answering deployment's own.
    assert (
        value(
            text,
            "litellm_deployment_success_responses",
            requested_model="chat",
            model_group="backup",
        )
        == sent
    )
    stderr = gateway.log.read_text()
    announced = (
        f"metrics at http://127.0.0.1:{gateway.metrics_port}/metrics and {gateway.url}/metrics "
        "(master key)"
    )
    assert announced in stderr and MASTER not in stderr


def test_metrics_have_a_port_of_their_own_by_default_and_the_apis_too(
    sim: SimServer, tmp_path: Path
) -> None:
    """Unset, gateway.metrics_listen serves /metrics on loopback at the gateway's port + 1, and
    on the API's port as LiteLLM serves it; that default port taken is a warning, not a refusal:
    the API's port still serves them."""
    model = sim_model(sim, **FAST)
    raw = {"model_list": [deployment(sim, "chat", "openai", model)], "gateway": {"monitor": False}}

    def neighbours() -> int:  # two free neighbouring ports
        while True:
            port = free_port()
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port + 1))
                    return port
                except OSError:
                    continue

    port = neighbours()
    (tmp_path / "a").mkdir()
    with Gateway_(tmp_path / "a", dict(raw), port=port, own_port=False) as first:
        client = openai.OpenAI(base_url=f"{first.url}/v1", api_key="x", max_retries=0)
        client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
        # No master key: served to loopback clients, without a key; the same counts on both.
        own = httpx.get(f"http://127.0.0.1:{port + 1}/metrics", timeout=10).text
        assert value(own, "llmpulse_gateway_requests", group="chat", status="ok") == 1
        api = first.scrape(None).text
        assert value(api, "llmpulse_gateway_requests", group="chat", status="ok") == 1
    said = first.log.read_text()
    both = f"http://127.0.0.1:{port + 1}/metrics and http://127.0.0.1:{port}/metrics"
    assert f"metrics at {both} (loopback clients)" in said

    port = neighbours()
    (tmp_path / "b").mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port + 1))
        taken.listen()
        with Gateway_(tmp_path / "b", dict(raw), port=port, own_port=False) as second:
            assert value(second.scrape(None).text, "llmpulse_gateway_requests") == 0
    said = second.log.read_text()
    assert f"metrics at http://127.0.0.1:{port}/metrics (loopback clients)" in said
    assert f"/metrics has no port of its own: 127.0.0.1:{port + 1}" in said


def test_a_metrics_port_of_its_own_is_checked_before_serving(
    tmp_path: Path, sim: SimServer
) -> None:
    model = sim_model(sim, **FAST)
    path = tmp_path / "gateway.yaml"
    port, metrics_port = free_port(), free_port()

    def process(gateway: dict[str, Any]) -> GatewayProcess:
        raw = {"model_list": [deployment(sim, "chat", "openai", model)], "gateway": gateway}
        path.write_text(yaml.safe_dump(raw))
        config = load_config(path, env={"SIM_KEY": "sk-sim"})
        return GatewayProcess(config, tmp_path / "traffic.db", ("127.0.0.1", port))

    def close(p: GatewayProcess) -> None:
        if p.metrics_socket is not None:
            p.metrics_socket.close()
        p.recording.writer.store.close()

    own = process({"metrics_listen": f"127.0.0.1:{metrics_port}"})
    try:
        assert own.metrics_socket is not None
        assert own.metrics_socket.getsockname() == ("127.0.0.1", metrics_port)
        # A port set and taken is an error naming the key, before anything is served.
        with pytest.raises(ConfigError, match=r"^gateway\.metrics_listen: cannot listen on"):
            process({"metrics_listen": f"127.0.0.1:{metrics_port}"})
        with pytest.raises(ConfigError, match=r"^gateway\.metrics_listen: port \d+ is the gate"):
            process({"metrics_listen": f"127.0.0.1:{port}"})
    finally:
        close(own)
    off = process({"metrics_listen": False})
    assert off.metrics_socket is None
    assert all(getattr(r, "path", "") != "/metrics" for r in off.app.routes)
    close(off)


def test_without_a_master_key_only_loopback_clients_read_the_metrics(sim: SimServer) -> None:
    from starlette.requests import Request

    from llmpulse.gateway.app import master_key_guard

    guard = master_key_guard(gateway_config([deployment(sim, "chat", "openai", "m")]), "/metrics")

    def asked_by(host: str) -> Request:
        return Request({"type": "http", "method": "GET", "headers": [], "client": (host, 1)})

    assert guard(asked_by("127.0.0.1")) is None
    refused = guard(asked_by("10.1.2.3"))
    assert refused is not None and refused.status_code == 403
    assert b"loopback clients only" in bytes(refused.body)


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
    assert (config.settings.metrics_host, config.settings.metrics_port) == ("0.0.0.0", 4001)


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


def in_process(config: GatewayConfig, requests: list[str]) -> str:
    """``requests`` (model names) through an in-process gateway whose traffic feeds a
    ``GatewayMetrics``; its exposition after them."""
    from llmpulse.gateway.ir import ChatRequest, Message, TextPart

    async def main() -> str:
        gateway: Gateway | None = None
        metrics = GatewayMetrics(config, lambda: gateway.selector if gateway else None)
        gateway = Gateway(config, record=metrics.observe)
        try:
            for model in requests:
                await gateway.complete(ChatRequest(model, [Message("user", [TextPart("hi")])]))
            return metrics.render()[0].decode()
        finally:
            await gateway.aclose()

    return asyncio.run(main())


def test_wildcard_labels_are_the_config_group_whatever_model_clients_name(
    sim: SimServer,
) -> None:
    names = [f"fb-{sim_model(sim, **FAST)}" for _ in range(4)]
    for name in names:
        httpx.patch(f"{sim.url}/_sim/models/{name}", json=FAST, timeout=10).raise_for_status()
    config = gateway_config(
        [deployment(sim, "fb-*", "openai", "fb-*")], settings={"max_wildcard_targets": 2}
    )
    text = in_process(config, names)
    # The model names come from clients: the group label is the config's pattern, and the
    # deployment label holds at most max_wildcard_targets of them (then the pattern's name).
    groups = {labels["group"] for labels, _ in samples(text, "llmpulse_gateway_requests")}
    assert groups == {"fb-*"}
    deployments = {labels["deployment"] for labels, _ in samples(text, "llmpulse_gateway_requests")}
    assert len(deployments) == 3 and f"{names[0]}/openai-compatible/{names[0]}" in deployments
    requested = samples(text, "litellm_proxy_total_requests_metric")
    assert {labels["requested_model"] for labels, _ in requested} == {"fb-*"}
    assert value(text, "llmpulse_gateway_requests") == 4


def test_a_requested_model_naming_another_provider_maps_to_its_own_wildcard() -> None:
    from llmpulse.config.litellm import parse_gateway

    config = parse_gateway(
        {
            "model_list": [
                {"model_name": "openai/*", "litellm_params": {"model": "openai/*", "api_key": "k"}},
                {"model_name": "t/*", "litellm_params": {"model": "anthropic/*", "api_key": "k"}},
            ]
        },
        env={},
    )
    assert config is not None
    (served,) = config.resolve("t/openai/x")
    assert served.name == "t/openai/x/anthropic/openai/x"
    metrics = GatewayMetrics(config, lambda: None)
    result = CheckResult(
        served.name, "anthropic", "openai/x", "inference", datetime.now(UTC), True,
        source=Source.TRAFFIC, route=[served.name], attempts=1,
    )  # fmt: skip
    metrics.observe(result)
    text = metrics.render()[0].decode()
    ((labels, n),) = samples(text, "litellm_deployment_success_responses")
    pattern = config.deployments[1]
    assert n == 1 and labels["requested_model"] == labels["model_group"] == "t/*"
    assert (labels["model_id"], labels["api_provider"]) == (pattern.id, "anthropic")
    assert labels["litellm_model_name"] == "openai/x"


def test_a_move_within_the_group_is_a_fallback_but_not_a_litellm_one(sim: SimServer) -> None:
    """LiteLLM counts litellm_deployment_*_fallbacks for moves to a fallback model group only;
    issue 17's fallback is any move off the first deployment (llmpulse_gateway_fallbacks)."""
    first, second = sim_model(sim, errors={"503": 1.0}, **FAST), sim_model(sim, **FAST)
    config = gateway_config(
        [
            deployment(sim, "chat", "openai", first, order=1),
            deployment(sim, "chat", "anthropic", second, order=2),
        ],
        router={"routing_strategy": "priority"},
    )
    text = in_process(config, ["chat"])
    moved = {
        "group": "chat",
        "from": f"chat/openai/{first}",
        "to": f"chat/anthropic/{second}",
        "reason": str(ErrorClass.UNAVAILABLE),
    }
    assert samples(text, "llmpulse_gateway_fallbacks") == [(moved, 1)]
    assert samples(text, "litellm_deployment_successful_fallbacks") == []
    assert samples(text, "litellm_deployment_failed_fallbacks") == []


def test_a_cooling_deployment_is_a_complete_outage_as_in_litellm(sim: SimServer) -> None:
    """LiteLLM sets litellm_deployment_state to 2 when it cools a deployment down: a 429's
    cool-down skips the deployment here too, with its breaker closed."""
    limited, spare = sim_model(sim, errors={"429": 1.0}, **FAST), sim_model(sim, **FAST)
    config = gateway_config(
        [
            deployment(sim, "chat", "openai", limited, order=1),
            deployment(sim, "chat", "anthropic", spare, order=2),
        ],
        router={"routing_strategy": "priority", "cooldown_time": 60},
    )
    text = in_process(config, ["chat"])
    cooling = f"chat/openai/{limited}"
    assert value(text, "llmpulse_gateway_cooldown_active", deployment=cooling) == 1
    assert value(text, "litellm_deployment_state", deployment=cooling) == 2
    assert value(text, "litellm_deployment_state", deployment=f"chat/anthropic/{spare}") == 0


def test_a_failing_metrics_server_leaves_the_gateway_serving_and_flushing(
    sim: SimServer, tmp_path: Path
) -> None:
    model = sim_model(sim, **FAST)
    path = tmp_path / "gateway.yaml"
    raw = {
        "model_list": [deployment(sim, "chat", "openai", model)],
        "gateway": {"monitor": False, "metrics_listen": f"127.0.0.1:{free_port()}"},
    }
    path.write_text(yaml.safe_dump(raw))
    port = free_port()
    process = GatewayProcess(
        load_config(path, env={"SIM_KEY": "sk-sim"}), tmp_path / "traffic.db", ("127.0.0.1", port)
    )
    assert process.metrics_socket is not None
    process.metrics_socket.close()
    # A socket its server cannot start on (not a stream socket), where the bound one was.
    process.metrics_socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    process.metrics_socket.bind(("127.0.0.1", 0))
    said: list[str] = []

    async def main() -> None:
        serving = asyncio.create_task(process.serve(announce=said.append))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            for _ in range(200):
                try:
                    (await http.get("/health/liveliness")).raise_for_status()
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
            (await http.post("/v1/chat/completions", json=body)).raise_for_status()
        os.kill(os.getpid(), signal.SIGINT)  # the gateway's own stop
        await serving

    threshold = gc.get_threshold()
    try:
        asyncio.run(main())
    finally:
        gc.unfreeze()  # serve() tunes the collector for a long-lived process
        gc.set_threshold(*threshold)
    assert any(line.startswith("warning: /metrics stopped (ValueError") for line in said), said
    with open_store(tmp_path / "traffic.db") as store:
        traffic = [r for r in store.latest_results(limit=10) if r.source is Source.TRAFFIC]
    assert [r.target for r in traffic] == [f"chat/openai/{model}"]
