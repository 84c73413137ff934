"""Several `llmpulse agent` processes sharing one PostgreSQL store, the simulator as provider.

One agent leads at a time: an incident pages once and recovers once even when the leader is
killed in the middle of it, and one agent's local network problem does not page when the
regions must agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psycopg
import yaml

from conftest import Receiver, base_url, patch, postgres_schema, sim_model, spawn_llmpulse
from llmpulse.sim.server import SimServer
from llmpulse.store import open_store
from test_daemon import FAST

AGENT_FAST = {**FAST, "web": {"enabled": False}}


def write_config(
    path: Path, storage: str, targets: list[dict[str, Any]], receiver: Receiver, **extra: Any
) -> Path:
    raw = {
        **AGENT_FAST,
        "storage": storage,
        "targets": [
            {"api_key": "${K}", "interval": "700ms", "timeout": "2s", **t} for t in targets
        ],
        "notifiers": [{"type": "webhook", "url": receiver.url}],
        **extra,
    }
    path.write_text(yaml.safe_dump(raw))
    return path


class Agent:
    def __init__(self, config: Path, name: str, region: str) -> None:
        self.name = name
        args = ["agent", "--config", str(config), "--name", name, "--region", region]
        self.proc = spawn_llmpulse(args, config.parent, f"{name}.log")


@contextlib.asynccontextmanager
async def agents(specs: list[tuple[Path, str, str]]) -> AsyncIterator[dict[str, Agent]]:
    started = {name: Agent(config, name, region) for config, name, region in specs}
    try:
        yield started
    finally:
        for agent in started.values():
            if agent.proc.poll() is None:
                agent.proc.send_signal(signal.SIGINT)
        for agent in started.values():
            try:
                agent.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                agent.proc.kill()


def leader(storage: str) -> str | None:
    """The agent holding this schema's lead, as PostgreSQL sees it."""
    with psycopg.connect(storage, autocommit=True) as conn:
        (key,) = conn.execute(
            "SELECT hashtext('llmpulse-alerts:' || current_schema())::bigint"
        ).fetchone()
        # A bigint advisory key shows in pg_locks as its high and low 32 bits.
        rows = conn.execute(
            "SELECT a.application_name FROM pg_locks AS l "
            "JOIN pg_stat_activity AS a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
            "AND l.classid::bigint = %s AND l.objid::bigint = %s",
            ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF),
        ).fetchall()
    names = [r[0].removeprefix("llmpulse leader ") for r in rows]
    assert len(names) <= 1, names
    return names[0] if names else None


async def until(predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)
    return value


async def test_killing_the_leader_mid_incident_neither_loses_nor_repeats_a_page(
    sim: SimServer, receiver: Receiver, tmp_path: Path
) -> None:
    model = sim_model(sim, ttft="20ms", output_tokens=5, tokens_per_s=500)
    with postgres_schema() as storage:
        target = {"provider": "openai", "model": model, "name": "chat",
                  "base_url": base_url(sim, "openai")}  # fmt: skip
        config = write_config(tmp_path / "c.yaml", storage, [target], receiver)
        specs = [(config, f"agent-{r}", r) for r in ("eu-west", "us-east", "ap-south")]
        async with agents(specs) as running:
            first = await until(lambda: leader(storage))
            # Probes from all three regions arrive in the shared store.
            with open_store(storage) as store:
                await until(
                    lambda: (
                        {r.region for r in store.latest_results(limit=60)}
                        >= {"eu-west", "us-east", "ap-south"}
                    )
                )
            patch(sim, model, errors={"503": 1.0})
            await until(lambda: receiver.events(), timeout=30)
            # The page is out: the leader dies without a goodbye, mid-incident.
            running[first].proc.kill()
            second = await until(lambda: (name := leader(storage)) not in (None, first) and name)
            await asyncio.sleep(3)  # the new leader judges the ongoing incident: no new page
            patch(sim, model, errors={})
            await until(lambda: any(e[0] == "resolved" for e in receiver.events()), timeout=40)
            await asyncio.sleep(2)
    assert second != first
    # Each agent wrote through the one writer: a spool of its own beside the default file.
    spools = (tmp_path / "data" / "llmpulse").glob("llmpulse-spool-*.db")
    assert {p.name.split("-spool-")[1].rsplit("-", 1)[0] for p in spools} == set(running)
    firing = [e for e in receiver.events() if e[0] == "firing"]
    resolved = [e for e in receiver.events() if e[0] == "resolved"]
    assert len(firing) == 1 and len(resolved) == 1, receiver.events()
    assert firing[0][1:] == resolved[0][1:]


async def test_one_regions_network_problem_does_not_page_when_regions_must_agree(
    sim: SimServer, receiver: Receiver, tmp_path: Path
) -> None:
    model = sim_model(sim, ttft="20ms", output_tokens=5, tokens_per_s=500)
    with postgres_schema() as storage:
        target = {"provider": "openai", "model": model, "name": "chat"}
        quorum = {"monitor": {**AGENT_FAST["monitor"], "min_regions": 2}}
        healthy = write_config(
            tmp_path / "a.yaml", storage,
            [{**target, "base_url": base_url(sim, "openai")}], receiver, **quorum,
        )  # fmt: skip
        # The other agent's network cannot reach the provider: its probes are refused.
        cut_off = write_config(
            tmp_path / "b.yaml", storage,
            [{**target, "base_url": "http://127.0.0.1:9/v1"}], receiver, **quorum,
        )  # fmt: skip
        async with agents([(healthy, "a", "eu-west"), (cut_off, "b", "us-east")]):
            with open_store(storage) as store:
                await until(
                    lambda: (
                        sum(
                            r.region == "us-east" and not r.ok
                            for r in store.latest_results(limit=50)
                        )
                        >= 8
                    )
                )
            assert receiver.events() == []  # us-east alone sees the provider down: no page
            patch(sim, model, errors={"503": 1.0})  # now it is down from eu-west too
            await until(lambda: receiver.events(), timeout=30)
            patch(sim, model, errors={})
    summary = receiver.received[0]["summary"]
    assert "eu-west" in summary and "us-east" in summary
