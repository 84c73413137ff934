"""Probes never hammer: counted at the simulator, over real sockets.

A deployment that answered 429 with a Retry-After gets no model call from the gateway's or the
daemon's probes until that ends, whoever met the 429 (traffic, a probe, another replica); an
open breaker is probed at its half-open pace only. Where the probes and the traffic must be told
apart at the simulator, they reach one deployment (``model_info.id``: one name) through two
simulated models.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import signal
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from conftest import sim_model, spawn_llmpulse
from llmpulse.probe.lock import held_elsewhere
from llmpulse.result import CheckKind
from llmpulse.sim.server import SimServer
from test_gateway_app import DaemonThread, wait_for_state, wait_until
from test_gateway_proxy import FAST, Served, ask, deployment, gateway_config, upstream
from test_gateway_shared import REDIS_URL, _redis_down

MODEL_CALLS = (CheckKind.INFERENCE, CheckKind.STREAM)


def fast_probes(config: Any, interval: float = 0.3) -> list[Any]:
    """The deployments' targets probed every ``interval``, model calls only (both kinds)."""
    return [dataclasses.replace(t, interval=interval, checks=MODEL_CALLS) for t in config.targets()]


def is_traffic(row: dict[str, Any]) -> bool:
    return "hello there" in json.dumps(row["body"])  # what ``ask`` sends; probes say otherwise


def probes_after(sim: SimServer, model: str, start: float) -> list[float]:
    """When the probes of ``model`` reached the simulator, in seconds after ``start``."""
    return [
        r["received_at"] - start
        for r in upstream(sim, model)
        if not is_traffic(r) and r["received_at"] > start
    ]


def shared_entry(sim: SimServer, model: str, **params: Any) -> dict[str, Any]:
    """The deployment ``chat/d1``, reached through simulated ``model``."""
    return {**deployment(sim, "chat", "openai", model, **params), "model_info": {"id": "d1"}}


def test_gateway_probes_wait_out_a_429_its_traffic_met_then_resume(sim: SimServer) -> None:
    model = sim_model(sim, **FAST)
    config = gateway_config([deployment(sim, "chat", "openai", model)], router={"num_retries": 0})
    with Served(config, probe_targets=fast_probes(config)) as served:
        wait_until(lambda: probes_after(sim, model, 0.0), "the gateway's probes")
        for _ in range(8):  # a loaded machine may let a probe in first several times
            mark = time.time()
            limited = {"errors": {"429": 1.0}, "retry_after": 2}
            httpx.patch(f"{sim.url}/_sim/models/{model}", json=limited, timeout=10)
            with contextlib.suppress(openai.RateLimitError):  # refused if a probe met it first
                ask(served.openai(), "chat")
            rows = upstream(sim, model)
            first = next(r for r in rows if r["status"] == 429 and r["received_at"] > mark)
            if is_traffic(first):
                break
            # A probe went out between the two: not the case under test, so start again.
            httpx.patch(f"{sim.url}/_sim/models/{model}", json={"errors": {}}, timeout=10)
            time.sleep(2.5)
        assert is_traffic(first)
        time.sleep(3.5)
    # A probe already on its way when the 429 came back may land just after it.
    after = [s for s in probes_after(sim, model, first["received_at"]) if s > 0.05]
    assert after and after[0] >= 1.95, after  # none inside the 2 s, at 0.15 s spacing before
    assert after[0] < 3.0  # resumed at its end (answered 429 again: one per cool-down since)
    assert all(b - a >= 1.9 for a, b in itertools.pairwise(after)), after


def test_gateway_probes_an_open_breaker_only_at_its_half_open_pace(sim: SimServer) -> None:
    down = sim_model(sim, errors={"503": 1.0}, **FAST)
    config = gateway_config(
        [deployment(sim, "chat", "openai", down)],
        router={"allowed_fails": 1, "cooldown_time": 1},
    )
    with Served(config, probe_targets=fast_probes(config, 0.2)) as served:
        wait_for_state(served, f"chat/openai/{down}", "open")
        opened = time.time()
        time.sleep(4)
    probes = probes_after(sim, down, opened)
    # Open 1 s, then 2 s after the half-open trial failed: trials at about 1 and 3 s, one
    # model call each (every 0.1 s, both kinds, without pacing).
    assert 1 <= len(probes) <= 3, probes
    assert all(b - a >= 0.9 for a, b in itertools.pairwise(probes)), probes


def test_a_daemon_pauses_its_probes_of_a_deployment_whose_gateway_traffic_met_a_429(
    sim: SimServer, tmp_path: Path
) -> None:
    probed = sim_model(sim, **FAST)
    limited = sim_model(sim, errors={"429": 1.0}, retry_after=5, **FAST)
    settings = {"probe_interval": "300ms"}
    db = tmp_path / "results.db"
    raw = {
        "model_list": [shared_entry(sim, probed)],
        "gateway": settings,
        "monitor": {"status_pages": False},
        "web": {"enabled": False},
    }
    gateway_yaml = tmp_path / "gateway.yaml"
    gateway_yaml.write_text(
        yaml.safe_dump(
            {
                "model_list": [shared_entry(sim, limited)],
                "router_settings": {"num_retries": 0},
                "gateway": settings,
            }
        )
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with DaemonThread(raw, db):
        wait_until(lambda: held_elsewhere(db), "the daemon's probe lock")
        wait_until(lambda: probes_after(sim, probed, 0.0), "the daemon's probes")
        args = ["gateway", "--config", str(gateway_yaml), "--db", str(db)]
        gateway = spawn_llmpulse([*args, "--listen", f"127.0.0.1:{port}"], tmp_path, "gw.log")
        try:
            client = openai.OpenAI(
                base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=10
            )
            deadline = time.monotonic() + 20
            while True:
                try:
                    ask(client, "chat")
                except openai.RateLimitError:
                    break
                except openai.APIConnectionError:
                    assert time.monotonic() < deadline and gateway.poll() is None
                    time.sleep(0.1)
            (traffic,) = [r for r in upstream(sim, limited) if is_traffic(r)]
            time.sleep(6)
        finally:
            gateway.send_signal(signal.SIGINT)
            gateway.wait(15)
    probes = probes_after(sim, probed, traffic["received_at"])
    # The gateway writes its traffic within a second, the leading daemon reads it within 0.25 s:
    # from then to the end of the 5 s, no probe (one every 0.15 s before).
    assert not [s for s in probes if 2.0 < s < 4.9], probes
    assert [s for s in probes if s >= 4.9]  # and they resume


@pytest.mark.skipif(
    not os.environ.get("CI") and _redis_down() is not None, reason="Redis unreachable"
)
def test_a_replicas_probes_wait_out_a_429_another_replicas_traffic_met(sim: SimServer) -> None:
    probed = sim_model(sim, **FAST)
    limited = sim_model(sim, errors={"429": 1.0}, retry_after=3, **FAST)
    shared = {"redis_url": REDIS_URL, "redis_prefix": f"llmpulse-test-{uuid.uuid4().hex[:8]}"}
    serving = gateway_config([shared_entry(sim, limited)], {"num_retries": 0}, shared)
    probing = gateway_config([shared_entry(sim, probed)], settings=shared)
    with contextlib.ExitStack() as stack:
        traffic_replica = stack.enter_context(Served(serving))
        stack.enter_context(Served(probing, probe_targets=fast_probes(probing)))
        wait_until(lambda: probes_after(sim, probed, 0.0), "the probing replica's probes")
        with pytest.raises(openai.RateLimitError):
            ask(traffic_replica.openai(), "chat")
        (traffic,) = [r for r in upstream(sim, limited) if is_traffic(r)]
        time.sleep(4)
    probes = probes_after(sim, probed, traffic["received_at"])
    # Through Redis in about 100 ms; then nothing until the 3 s are over.
    assert not [s for s in probes if 0.5 < s < 2.95], probes
    assert [s for s in probes if s >= 2.95]
