"""Failover readiness (``gateway.readiness``): a real gateway served on loopback carries traffic
to simulated providers, its health loop probes every deployment (models checks, calls with the
simulator's rate-limit headers), the results go into a real database, and readiness is judged
from there: per fallback, per group, in ``GET /api/v1/failover``, the ``/failover`` page and
the ``failover_not_ready`` alert. Also: ``model_info`` capability flags take a deployment out
of routing exactly as readiness says."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from conftest import base_url, sim_model
from llmpulse.config import Config, parse_config
from llmpulse.errors import ErrorClass
from llmpulse.gateway import readiness
from llmpulse.gateway.readiness import Status
from llmpulse.probe.runner import Prober
from llmpulse.result import CheckKind, CheckResult, Source
from llmpulse.sim.scenario import parse_scenario
from llmpulse.sim.server import SimServer
from llmpulse.store import SQLiteStore
from test_gateway_proxy import FAST, Served, ask

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
ROOMY = {"requests_limit": 1000, "requests_remaining": 999,
         "tokens_limit": 1_000_000, "tokens_remaining": 999_000}  # fmt: skip


def entry(sim: SimServer, group: str, model: str, **info: Any) -> dict[str, Any]:
    return {
        "model_name": group,
        "litellm_params": {
            "model": f"openai/{model}",
            "api_base": base_url(sim, "openai"),
            "api_key": "os.environ/SIM_KEY",
        },
        "model_info": {"max_input_tokens": 100_000, **info},
    }


def make_config(
    sim: SimServer, entries: list[dict[str, Any]], fallbacks: dict[str, str], db: Path
) -> Config:
    return parse_config(
        {
            "model_list": entries,
            "router_settings": {"fallbacks": [{k: [v]} for k, v in fallbacks.items()]},
            "gateway": {"probe_interval": "1s"},
            "storage": str(db),
            "web": {"listen": "127.0.0.1:0"},
            "alerting": {"resolve_after": "0s"},
        },
        env={"SIM_KEY": "sk-sim"},
    )


def name(group: str, model: str) -> str:
    return f"{group}/openai/{model}"


def serve_and_probe(
    config: Config, store: SQLiteStore, traffic: dict[str, dict[str, Any]], n: int = 10
) -> None:
    """Serve the gateway with its health loop; send ``n`` requests per group of ``traffic``
    (with its extra parameters); store every traffic and probe result once each fallback has
    a models check and a call with rate-limit headers."""
    gateway = config.gateway
    assert gateway is not None
    wanted = {d.name for d in gateway.deployments if d.group.endswith("-fb")}
    with Served(gateway, probe_targets=gateway.targets()) as served:
        client = served.openai()
        for group, extra in traffic.items():
            for _ in range(n):
                ask(client, group, **extra)
        deadline = time.monotonic() + 20
        while True:
            probed = {
                r.target for r in served.records
                if r.source is Source.PROBE and r.kind is CheckKind.INFERENCE and r.ratelimit
            } & {r.target for r in served.records if r.kind is CheckKind.MODELS}  # fmt: skip
            if wanted <= probed:
                break
            assert time.monotonic() < deadline, f"health loop did not probe {wanted - probed}"
            time.sleep(0.1)
        records = list(served.records)
    store.write_results(records)


def scenario(sim: SimServer, tmp_path: Path) -> tuple[Config, dict[str, str]]:
    """Three groups, each failing over to a group of one deployment: ``good`` to one with room
    and tools, ``tight`` to one whose headers leave 1 request, ``tools`` to one declared without
    function calling."""
    models = {k: sim_model(sim, **FAST) for k in ("good", "tight", "tools")}
    models["good-fb"] = sim_model(sim, ratelimit=ROOMY, **FAST)
    models["tight-fb"] = sim_model(sim, ratelimit={**ROOMY, "requests_remaining": 1}, **FAST)
    models["tools-fb"] = sim_model(sim, ratelimit=ROOMY, **FAST)
    entries = [entry(sim, g, m) for g, m in models.items() if g != "tools-fb"]
    entries.append(entry(sim, "tools-fb", models["tools-fb"], supports_function_calling=False))
    fallbacks = {g: f"{g}-fb" for g in ("good", "tight", "tools")}
    return make_config(sim, entries, fallbacks, tmp_path / "r.db"), models


def by_group(groups: Sequence[readiness.GroupReadiness]) -> dict[str, readiness.GroupReadiness]:
    return {g.group: g for g in groups}


def test_readiness_from_served_traffic_probes_and_headers(sim: SimServer, tmp_path: Path) -> None:
    config, models = scenario(sim, tmp_path)
    gateway = config.gateway
    assert gateway is not None
    with SQLiteStore(tmp_path / "r.db") as store:
        serve_and_probe(
            config, store, {"good": {"tools": [TOOL]}, "tight": {}, "tools": {"tools": [TOOL]}}
        )
        groups = by_group(readiness.judge(gateway, readiness.read_facts(gateway, store)))

    good, tight, tools = groups["good"], groups["tight"], groups["tools"]
    # Each primary's traffic: 10 requests in the last 5 minutes, 2 a minute.
    assert good.primary == name("good", models["good"])
    assert (good.load.requests, good.load.rpm) == (10, 2.0)
    assert good.load.features == ("tools",) and tight.load.features == ()
    assert good.load.prompt_p99 is not None and good.load.tpm > 0

    [fb] = good.fallbacks
    assert fb.name == name("good-fb", models["good-fb"])
    assert (fb.status, fb.reasons) == (Status.READY, ())
    assert fb.headroom_rpm == 999 and fb.context_window == 100_000
    # No Redis: the breaker is inferred from the fallback's latest call (the health loop's).
    assert (fb.breaker, fb.breaker_inferred) == ("closed", True)
    assert good.status is Status.READY and "1 of 1 fallbacks ready" in good.reason

    # The headers leave room for 1 request a minute; the primary sends 2.
    [fb] = tight.fallbacks
    assert fb.status is Status.NOT_READY and fb.headroom_rpm == 1
    assert fb.reasons == ("rate limit: room for 1 more requests/min, the primary sends 2",)
    assert tight.status is Status.NOT_READY
    assert tight.reason == f"no fallback could take the traffic: {fb.name}: {fb.reasons[0]}"

    # Tools: the primary's traffic uses them, the fallback is declared without.
    [fb] = tools.fallbacks
    assert fb.status is Status.NOT_READY
    assert fb.reasons == (
        "cannot take tools, which the primary's traffic uses "
        "(model_info supports_function_calling: false)",
    )
    assert tools.status is Status.NOT_READY

    # Fallback groups' own groups have no fallback: not ready, by configuration.
    assert groups["good-fb"].status is Status.NOT_READY and not groups["good-fb"].fallbacks


def test_unknown_data_is_at_risk_never_green(sim: SimServer, tmp_path: Path) -> None:
    config, _ = scenario(sim, tmp_path)
    gateway = config.gateway
    assert gateway is not None
    with SQLiteStore(tmp_path / "r.db") as store:  # nothing stored: no traffic, no probe
        groups = by_group(readiness.judge(gateway, readiness.read_facts(gateway, store)))
    good = groups["good"]
    assert good.status is Status.AT_RISK and good.load.requests == 0
    [fb] = good.fallbacks
    assert fb.status is Status.AT_RISK and fb.breaker == "unknown"
    assert fb.reasons == (
        "key and model unchecked: no models check stored",
        "no traffic at the primary in the last hour: its load is unknown",
        "rate-limit headroom unknown: no rate-limit headers in the last 15 min and no rpm/tpm set",
        "breaker unknown (inferred, no gateway.redis_url): no probe or traffic result yet",
    )
    # The tools fallback is not ready for what its model_info declares only once traffic shows
    # tools: with no traffic it is merely unknown.
    assert groups["tools"].status is Status.AT_RISK


def test_a_refused_key_an_open_shared_breaker_and_a_small_window(
    sim: SimServer, tmp_path: Path
) -> None:
    """The other three questions: a key the provider refuses (its models check, on a simulator
    that takes one key only), the breaker decisions gateway replicas share in Redis, and a
    context window under the primary's p99 prompt."""
    import redis

    r = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        r.ping()
    except redis.ConnectionError:
        pytest.skip("Redis unreachable on 127.0.0.1:6379")
    primary = sim_model(sim, **FAST)
    prefix = f"llmpulse:test-readiness:{time.time_ns()}"
    db = tmp_path / "r.db"
    strict = SimServer(parse_scenario({"api_keys": ["sk-good"], "models": {"fb": FAST}}))
    with strict:
        fb_entry = entry(sim, "chat-fb", "fb", max_input_tokens=2)
        fb_entry["litellm_params"].update(api_base=strict.openai_base, api_key="os.environ/OLD")
        config = parse_config(
            {
                "model_list": [entry(sim, "chat", primary), fb_entry],
                "router_settings": {"fallbacks": [{"chat": ["chat-fb"]}]},
                "gateway": {"redis_url": "redis://127.0.0.1:6379/0", "redis_prefix": prefix},
                "storage": str(db),
            },
            env={"SIM_KEY": "sk-sim", "OLD": "sk-rotated-away"},
        )  # fmt: skip
        gateway = config.gateway
        assert gateway is not None
        fb = next(d for d in gateway.deployments if d.group == "chat-fb")

        async def probe() -> list[CheckResult]:
            async with Prober() as prober:
                return await prober.check_many([(fb.to_target(), CheckKind.MODELS)])

        with SQLiteStore(db) as store:
            with Served(gateway) as served:
                for _ in range(5):
                    ask(served.openai(), "chat")
            store.write_results(served.records)
            [models] = asyncio.run(probe())
            assert models.error_class is ErrorClass.AUTH
            store.write_results([models])

            facts = readiness.read_facts(gateway, store)
            assert facts.holds == {}  # Redis answered: nothing held
            [chat] = [g for g in readiness.judge(gateway, facts) if g.group == "chat"]
            [f] = chat.fallbacks
            assert f.reasons[0].startswith("key refused by the models check (")
            p99 = chat.load.prompt_p99
            assert p99 is not None and p99 > 2
            assert f"context window 2 tokens < the primary's p99 prompt {p99}" in f.reasons
            assert (f.status, f.breaker, f.breaker_inferred) == (Status.NOT_READY, "closed", False)

            # Another replica opened the fallback's breaker: the shared hash says so.
            until = time.time() + 60
            r.hset(f"{prefix}:holds", fb.id, json.dumps({"open": until, "cool": 0, "why": None}))
            try:
                judged = readiness.judge(gateway, readiness.read_facts(gateway, store))
            finally:
                r.delete(f"{prefix}:holds")
    [f] = next(g for g in judged if g.group == "chat").fallbacks
    assert (f.breaker, f.breaker_inferred) == ("open", False)
    assert any(x.startswith("breaker open until ") and "(shared state)" in x for x in f.reasons)
