"""PostgreSQL restarting under a running agent and a running gateway, a gateway killed outright:
no result lost or doubled.

The simulator records every request it answered, so what was measured is known exactly: each
request must be in the store once, whatever the database or the process went through meanwhile.
"""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import psycopg
import yaml

import pgserver
from conftest import base_url, sim_model, spawn_llmpulse
from llmpulse.sim.server import SimServer
from llmpulse.store.writer import SPOOL_WITHIN_S
from test_gateway_proxy import FAST, deployment


def requests_to(sim: SimServer, model: str) -> set[str]:
    rows = httpx.get(f"{sim.url}/_sim/requests", timeout=10).json()["requests"]
    return {r["request_id"] for r in rows if r["model"] == model}


def stored(server: pgserver.PrivateServer, target: str) -> list[str]:
    with psycopg.connect(server.url) as conn:
        if conn.execute("SELECT to_regclass('results')").fetchone() == (None,):
            return []  # not created yet: the process is still starting
        rows = conn.execute("SELECT request_id FROM results WHERE target = %s", (target,))
        return [r[0] for r in rows]


def wait_until(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0


def test_an_agent_loses_and_doubles_nothing_across_a_database_restart(
    sim: SimServer, private_postgres: pgserver.PrivateServer, tmp_path: Path
) -> None:
    model = sim_model(sim, ttft="10ms", output_tokens=5, tokens_per_s=1000)
    config = tmp_path / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "storage": private_postgres.url,
                "monitor": {"status_pages": False},
                "web": {"enabled": False},
                "targets": [
                    {
                        "provider": "openai",
                        "model": model,
                        "name": "chat",
                        "api_key": "${K}",
                        "base_url": base_url(sim, "openai"),
                        "interval": "300ms",
                        "checks": ["inference"],
                    }
                ],
            }
        )
    )
    agent = spawn_llmpulse(
        ["agent", "--config", str(config), "--region", "eu-west"], tmp_path, "a.log"
    )
    try:
        wait_until(lambda: len(stored(private_postgres, "chat")) >= 5)
        private_postgres.stop()
        # A tick may spend the pool's 5 s wait on reading results back before it writes, then 5 s
        # on the write: past 10 s a write is sure to fail and go to the spool.
        time.sleep(12)
        private_postgres.start()
        time.sleep(2)
    finally:
        stop(agent)
    assert "spooling results locally" in (tmp_path / "a.log").read_text()
    ids = stored(private_postgres, "chat")
    assert len(ids) == len(set(ids)), "a result was written twice"
    assert set(ids) == requests_to(sim, model), "a measured result is missing"
    assert len(ids) >= 30


def test_a_gateway_loses_and_doubles_no_traffic_across_a_database_restart(
    sim: SimServer, private_postgres: pgserver.PrivateServer, tmp_path: Path
) -> None:
    model = sim_model(sim, **FAST)
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "storage": private_postgres.url,
                "model_list": [deployment(sim, "chat", "openai", model)],
                "gateway": {"monitor": False},
            }
        )
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gateway = spawn_llmpulse(
        ["gateway", "--config", str(config), "--listen", f"127.0.0.1:{port}"], tmp_path, "g.log"
    )
    client = openai.OpenAI(
        base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=5, timeout=20
    )
    target = f"chat/openai/{model}"
    try:

        def ask() -> None:
            client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "hi"}]
            )

        wait_until(lambda: gateway.poll() is None and _answers(ask))
        for _ in range(5):
            ask()
        wait_until(lambda: len(stored(private_postgres, target)) >= 6)
        private_postgres.stop()
        for _ in range(10):  # served while the database is down: recorded in the spool
            ask()
        time.sleep(7)  # past the pool's 5 s wait: the writes fail and are spooled
        private_postgres.start()
        for _ in range(5):
            ask()
    finally:
        stop(gateway)
    assert "spooling results locally" in (tmp_path / "g.log").read_text()
    ids = stored(private_postgres, target)
    assert len(ids) == len(set(ids)), "a request was recorded twice"
    assert set(ids) == requests_to(sim, model), "a request is missing"
    assert len(ids) == 21


def test_a_gateway_killed_outright_loses_no_traffic_it_answered(
    sim: SimServer, tmp_path: Path
) -> None:
    model, db, config, port = _sqlite_gateway(sim, tmp_path)
    args = ["gateway", "--config", str(config), "--listen", f"127.0.0.1:{port}"]
    client = openai.OpenAI(
        base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=20
    )
    target = f"chat/openai/{model}"

    def ask(_: object = None) -> None:
        client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])

    def traffic() -> list[str]:
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT request_id FROM results WHERE target = ?", (target,))
            return [r[0] for r in rows]

    gateway = spawn_llmpulse(args, tmp_path, "g1.log")
    try:
        wait_until(lambda: gateway.poll() is None and _answers(ask))
        # The database is locked throughout: only the local spool can hold what is answered.
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(ask, range(299)))
        time.sleep(SPOOL_WITHIN_S)  # the bound the README promises, and not a moment more
        gateway.send_signal(signal.SIGKILL)
        gateway.wait(timeout=10)
        blocker.execute("COMMIT")
        blocker.close()
        assert traffic() == []
    finally:
        gateway.kill()
    # The restarted gateway (same name: same spool) replays it at start, before any request.
    gateway = spawn_llmpulse(args, tmp_path, "g2.log")
    try:
        wait_until(lambda: len(traffic()) >= 300)
        wait_until(lambda: _serving(port))  # a SIGINT before that would abort its start
    finally:
        stop(gateway)
    ids = traffic()
    assert len(ids) == len(set(ids)) == 300, "a request was recorded twice"
    assert set(ids) == requests_to(sim, model)


def test_a_gateway_stopped_by_sigterm_writes_all_its_traffic_first(
    sim: SimServer, tmp_path: Path
) -> None:
    model, db, config, port = _sqlite_gateway(sim, tmp_path)
    gateway = spawn_llmpulse(
        ["gateway", "--config", str(config), "--listen", f"127.0.0.1:{port}"], tmp_path, "g.log"
    )
    client = openai.OpenAI(
        base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=20
    )

    def ask(_: object = None) -> None:
        client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])

    try:
        wait_until(lambda: gateway.poll() is None and _answers(ask))
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(ask, range(49)))
        gateway.send_signal(signal.SIGTERM)  # at once: the last results are not kept yet
        assert gateway.wait(timeout=60) == 0
    finally:
        gateway.kill()
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT request_id FROM results WHERE target = ?", (f"chat/openai/{model}",)
        )
        ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids)) == 50
    assert set(ids) == requests_to(sim, model)


def _sqlite_gateway(sim: SimServer, tmp_path: Path) -> tuple[str, Path, Path, int]:
    """A simulated model, and a gateway config serving it into a SQLite file: the model, the
    database, the config file and a free port for the gateway."""
    model = sim_model(sim, **FAST)
    db = tmp_path / "results.db"
    config = tmp_path / "gateway.yaml"
    entries = [deployment(sim, "chat", "openai", model)]
    raw = {"storage": str(db), "model_list": entries, "gateway": {"monitor": False}}
    config.write_text(yaml.safe_dump(raw))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return model, db, config, port


def _serving(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health/liveliness", timeout=5).is_success
    except httpx.TransportError:
        return False


def _answers(ask: Any) -> bool:
    try:
        ask()
    except openai.APIConnectionError:
        return False
    return True
