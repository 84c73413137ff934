"""Gateway replicas sharing routing state through a real Redis server.

Two `llmpulse gateway` processes run on one config; the simulator is the provider. One replica
sees a deployment fail; the other must stop routing there without failing a request itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis
import yaml

from conftest import sim_model
from llmpulse.sim.server import SimServer
from test_gateway_proxy import FAST, Served, ask, deployment, gateway_config, upstream

REDIS_URL = os.environ.get("LLMPULSE_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _redis_down() -> str | None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        return f"Redis unreachable at {REDIS_URL}: {exc}"
    return None


pytestmark = pytest.mark.skipif(
    not os.environ.get("CI") and _redis_down() is not None,
    reason=f"Redis unreachable at {REDIS_URL} (CI runs it)",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Replica:
    def __init__(self, config: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llmpulse", "gateway", "--config", str(config),
             "--listen", f"127.0.0.1:{self.port}"],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "SIM_KEY": "sk-sim"},
        )  # fmt: skip
        self.client = openai.OpenAI(
            base_url=f"{self.url}/v1", api_key="x", max_retries=0, timeout=20
        )
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health/liveliness", timeout=2).status_code == 200:
                    break
            assert self.proc.poll() is None, self.proc.communicate()[1]
            assert time.monotonic() < deadline, "gateway did not start"
            time.sleep(0.1)

    def states(self) -> dict[str, str]:
        health = httpx.get(f"{self.url}/health", timeout=5).json()
        return {d["name"]: d["state"] for d in health["deployments"]}

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.communicate(timeout=20)[1]


@contextlib.contextmanager
def replicas(config: Path, n: int) -> Iterator[list[Replica]]:
    started: list[Replica] = []
    try:
        for _ in range(n):
            started.append(Replica(config))
        yield started
    finally:
        for replica in started:
            if replica.proc.poll() is None:
                replica.stop()


def _write_config(tmp_path: Path, sim: SimServer, primary: str, spare: str, **gateway: Any) -> Path:
    prefix = f"llmpulse-test-{uuid.uuid4().hex[:8]}"
    config = {
        "model_list": [
            deployment(sim, "chat", "openai", primary, order=1),
            deployment(sim, "chat", "anthropic", spare, order=2),
        ],
        "router_settings": {"allowed_fails": 2, "cooldown_time": 60, "num_retries": 2},
        "gateway": {"redis_url": REDIS_URL, "redis_prefix": prefix, "monitor": False, **gateway},
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _deployment(replica: Replica, name: str) -> dict[str, Any]:
    health = httpx.get(f"{replica.url}/health", timeout=5).json()
    return next(d for d in health["deployments"] if d["name"] == name)


def _wait(predicate, timeout: float = 5.0) -> float:
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, "timed out"
        time.sleep(0.02)
    return time.monotonic() - start


def test_a_deployment_failing_on_one_replica_is_avoided_by_the_others(
    sim: SimServer, tmp_path: Path
) -> None:
    primary = sim_model(sim, errors={"503": 1.0}, **FAST)
    spare = sim_model(sim, **FAST)
    config = _write_config(tmp_path, sim, primary, spare)
    with replicas(config, 2) as (a, b):
        name = f"chat/openai/{primary}"
        # Replica A's requests fail over to the spare and open the primary's breaker.
        for _ in range(2):
            assert ask(a.client, "chat").model == spare
        assert a.states()[name] == "open"
        tried = len(upstream(sim, primary))
        # B has not sent a single request, yet learns within a second and skips the primary.
        assert _wait(lambda: b.states()[name] == "open", timeout=1.0) < 1.0
        for _ in range(3):
            assert ask(b.client, "chat").model == spare
        assert len(upstream(sim, primary)) == tried
        # A replica that starts now adopts the open breaker from Redis at once.
        with replicas(config, 1) as (c,):
            assert c.states()[name] == "open"
            assert ask(c.client, "chat").model == spare
        assert len(upstream(sim, primary)) == tried


def test_cooldowns_and_closes_travel_between_replicas(sim: SimServer, tmp_path: Path) -> None:
    # A 429 with retry-after cools the primary down on A: B waits out the same deadline.
    primary = sim_model(sim, errors={"429": 1.0}, retry_after=30, **FAST)
    spare = sim_model(sim, **FAST)
    config = _write_config(tmp_path, sim, primary, spare)
    with replicas(config, 2) as (a, b):
        name = f"chat/openai/{primary}"
        assert ask(a.client, "chat").model == spare
        tried = len(upstream(sim, primary))
        assert tried == 1
        _wait(lambda: _deployment(b, name)["cooldown_reason"] == "rate_limited", timeout=1.0)
        assert not _deployment(b, name)["available"]
        assert ask(b.client, "chat").model == spare
        assert len(upstream(sim, primary)) == tried
        assert b.states()[name] == "closed"  # cooling down is not a failure


def test_a_gateway_routes_on_local_state_while_redis_is_unreachable(
    sim: SimServer, caplog: pytest.LogCaptureFixture
) -> None:
    primary = sim_model(sim, errors={"503": 1.0}, **FAST)
    spare = sim_model(sim, **FAST)
    config = gateway_config(
        [
            deployment(sim, "chat", "openai", primary, order=1),
            deployment(sim, "chat", "anthropic", spare, order=2),
        ],
        router={"allowed_fails": 2, "cooldown_time": 60},
        settings={"redis_url": "redis://127.0.0.1:1/0", "monitor": False},
    )
    with Served(config) as served:
        for _ in range(4):
            assert ask(served.openai(), "chat").model == spare
        # Its own breaker opened without Redis: two failures, then the primary is skipped.
        assert len(upstream(sim, primary)) == 2
    # Said once, not on every reconnection attempt.
    unreachable = [r for r in caplog.records if "Redis unreachable" in r.getMessage()]
    assert len(unreachable) == 1


@contextlib.contextmanager
def private_redis() -> Iterator[tuple[str, Callable[[], None], Callable[[], None]]]:
    """A Redis server of the test's own on a free port: (url, stop, start)."""
    port = _free_port()
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no"]
        procs.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
        _wait(lambda: _pings(port), timeout=10)

    def stop() -> None:
        procs[-1].terminate()
        procs[-1].wait(10)

    start()
    try:
        yield f"redis://127.0.0.1:{port}/0", stop, start
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _pings(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_connect_timeout=0.2).ping())
    except redis.RedisError:
        return False


def test_replicas_resynchronise_when_redis_returns(sim: SimServer, tmp_path: Path) -> None:
    primary = sim_model(sim, errors={"503": 1.0}, **FAST)
    spare = sim_model(sim, **FAST)
    with private_redis() as (url, stop_redis, start_redis):
        config = _write_config(tmp_path, sim, primary, spare, redis_url=url)
        with replicas(config, 2) as (a, b):
            name = f"chat/openai/{primary}"
            stop_redis()
            # Redis is away: A still routes (its own breaker opens), B hears nothing of it.
            for _ in range(2):
                assert ask(a.client, "chat").model == spare
            assert a.states()[name] == "open"
            time.sleep(0.5)
            assert b.states()[name] == "closed"
            start_redis()
            # Back: A republishes its open breaker and B adopts it without a failure of its own.
            _wait(lambda: b.states()[name] == "open", timeout=15)
            tried = len(upstream(sim, primary))
            assert ask(b.client, "chat").model == spare
            assert len(upstream(sim, primary)) == tried
