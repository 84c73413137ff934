"""Failover readiness (``gateway.readiness``): a real gateway served on loopback carries traffic
to simulated providers, its health loop probes every deployment (models checks, calls with the
simulator's rate-limit headers), the results go into a real database, and readiness is judged
from there: per fallback, per group, in ``GET /api/v1/failover``, the ``/failover`` page and
the ``failover_not_ready`` alert. Also: ``model_info`` capability flags take a deployment out
of routing exactly as readiness says."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from conftest import base_url, postgres_schema, sim_model
from llmpulse.alerts.engine import ALL, alert_scope, fingerprint
from llmpulse.alerts.inventory import rules_in_effect
from llmpulse.alerts.model import AlertState, Notification
from llmpulse.alerts.state import AlertStateStore
from llmpulse.config import Config, parse_config
from llmpulse.config.errors import ConfigError
from llmpulse.config.gateway import GatewayConfig
from llmpulse.config.litellm import parse_gateway
from llmpulse.errors import ErrorClass
from llmpulse.gateway import drill, proxy, readiness
from llmpulse.gateway.ir import Reasoning, ResponseFormat
from llmpulse.gateway.readiness import Status
from llmpulse.gateway.translate import params
from llmpulse.monitor.alerting import Alerting
from llmpulse.probe.runner import Prober
from llmpulse.result import CheckKind, CheckResult, RateLimit, Source, Usage
from llmpulse.rules import FAILOVER_NOT_READY
from llmpulse.sim.scenario import parse_scenario
from llmpulse.sim.server import SimServer
from llmpulse.store import SQLiteStore, open_store
from llmpulse.store.base import EntryTraffic
from test_gateway_proxy import FAST, Served, ask, deployment, gateway_config, upstream
from webserve import ServedWeb

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
    sim: SimServer,
    entries: list[dict[str, Any]],
    fallbacks: dict[str, str],
    db: Path,
    env: dict[str, str] | None = None,
    **load: Any,
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
        env={"SIM_KEY": "sk-sim"} if env is None else env,
        **load,
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


def judge_stored(
    tmp_path: Path, config: GatewayConfig, rows: list[CheckResult]
) -> dict[str, readiness.GroupReadiness]:
    """Readiness judged from ``rows``, written to a fresh SQLite store, by group."""
    with SQLiteStore(tmp_path / "r.db") as store:
        store.write_results(rows)
        return by_group(readiness.judge(readiness.read_facts(config, store)))


@pytest.fixture(scope="module")
def served(
    sim: SimServer, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Config, dict[str, str]]:
    """The three groups' traffic and probes, stored once for the tests that read them."""
    tmp_path = tmp_path_factory.mktemp("served")
    config, models = scenario(sim, tmp_path)
    with SQLiteStore(tmp_path / "r.db") as store:
        serve_and_probe(
            config, store, {"good": {"tools": [TOOL]}, "tight": {}, "tools": {"tools": [TOOL]}}
        )
    return config, models


def copy_db(config: Config, to: Path) -> Path:
    """The served scenario's database, for a test that adds to it."""
    db = to / "r.db"
    shutil.copy(str(config.storage), db)
    return db


def test_readiness_from_served_traffic_probes_and_headers(
    served: tuple[Config, dict[str, str]],
) -> None:
    config, models = served
    gateway = config.gateway
    assert gateway is not None
    with open_store(str(config.storage)) as store:
        groups = by_group(readiness.judge(readiness.read_facts(gateway, store)))

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
    assert fb.reasons == ("rate limit: room for 1 more requests/min, the group sends 2",)
    assert tight.status is Status.NOT_READY
    assert tight.reason == f"no fallback could take the traffic: {fb.name}: {fb.reasons[0]}"

    # Tools: the primary's traffic uses them, the fallback is declared without.
    [fb] = tools.fallbacks
    assert fb.status is Status.NOT_READY
    assert fb.reasons == (
        "cannot take tools, which the group's traffic uses "
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
        groups = by_group(readiness.judge(readiness.read_facts(gateway, store)))
    good = groups["good"]
    assert good.status is Status.AT_RISK and good.load.requests == 0
    [fb] = good.fallbacks
    assert fb.status is Status.AT_RISK and fb.breaker == "unknown"
    assert fb.reasons == (
        "key and model unchecked: no models check stored",
        "no traffic into the group in the last hour: its load is unknown",
        "rate-limit headroom unknown: no rate-limit headers in the last 15 min and no rpm/tpm set",
        "breaker unknown (inferred, no gateway.redis_url): no probe or traffic result yet",
    )
    # The tools fallback is not ready for what its model_info declares only once traffic shows
    # tools: with no traffic it is merely unknown.
    assert groups["tools"].status is Status.AT_RISK

    # A host serving only the web UI reads neither the gateway's keys nor its Redis: a key unset
    # there says nothing of the gateway's, and the breaker note says why it is inferred.
    entries = [entry(sim, d.group, d.model) for d in gateway.deployments]
    for e in entries:  # Anthropic's API needs a key (an OpenAI-compatible server may not)
        e["litellm_params"].update(model=f"anthropic/{e['litellm_params']['model'][7:]}",
                                   api_base=sim.anthropic_base)  # fmt: skip
    fallbacks = {g: f"{g}-fb" for g in ("good", "tight", "tools")}
    with_keys = make_config(sim, entries, fallbacks, tmp_path / "r.db", env={})
    web_only = make_config(
        sim, entries, fallbacks, tmp_path / "r.db", env={}, serve_only="dashboard"
    )
    assert with_keys.gateway and web_only.gateway and web_only.gateway.deployments[0].missing_key
    with SQLiteStore(tmp_path / "r.db") as store:
        [keyless] = readiness.judge(readiness.read_facts(with_keys.gateway, store))[0].fallbacks
        [web] = readiness.judge(readiness.read_facts(web_only.gateway, store))[0].fallbacks
    assert keyless.status is Status.NOT_READY and keyless.reasons[0].startswith(
        "no key: no API key"
    )
    assert web.status is Status.AT_RISK and not any(r.startswith("no key") for r in web.reasons)
    assert "gateway.redis_url is not read where only the web UI is served" in web.reasons[-1]


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
            [chat] = [g for g in readiness.judge(facts) if g.group == "chat"]
            [f] = chat.fallbacks
            assert f.reasons[0].startswith("key refused by the models check (")
            p99 = chat.load.prompt_p99
            assert p99 is not None and p99 > 2
            assert f"context window 2 tokens < the group's p99 prompt {p99}" in f.reasons
            assert (f.status, f.breaker, f.breaker_inferred) == (Status.NOT_READY, "closed", False)

            # Another replica opened the fallback's breaker: the shared hash says so.
            until = time.time() + 60
            r.hset(f"{prefix}:holds", fb.id, json.dumps({"open": until, "cool": 0, "why": None}))
            try:
                judged = readiness.judge(readiness.read_facts(gateway, store))
            finally:
                r.delete(f"{prefix}:holds")
    [f] = next(g for g in judged if g.group == "chat").fallbacks
    assert (f.breaker, f.breaker_inferred) == ("open", False)
    assert any(x.startswith("breaker open until ") and "(shared state)" in x for x in f.reasons)


def test_the_primarys_traffic_is_counted_by_where_it_entered_in_postgres_too() -> None:
    """``Store.traffic_by_entry`` in PostgreSQL: the route's first deployment, the rates of
    the recent window, the p99 prompt by DDSketch's rank and the features together."""
    now = time.time()

    def sent(ago: float, route: list[str], prompt: int, features: list[str]) -> CheckResult:
        return CheckResult(
            target=route[-1], provider="openai", model="m", check=CheckKind.INFERENCE,
            timestamp=datetime.fromtimestamp(now - ago, UTC), ok=True,
            usage=Usage(prompt, 10), source=Source.TRAFFIC, route=route, features=features,
        )  # fmt: skip

    rows = [sent(i * 30 + 1, ["g/a"] if i % 2 else ["g/a", "g/b"], i, []) for i in range(100)]
    rows += [sent(20, ["g/b"], 7, ["images"]), sent(4000, ["g/a"], 10**6, ["n"])]  # b; too old
    rows.append(dataclasses.replace(sent(5, ["g/a"], 5, ["seed"]), source=Source.DRILL))
    rows[3].features = ["tools", "tool_choice"]
    with postgres_schema() as url, open_store(url) as store:
        store.write_results(rows)
        found = store.traffic_by_entry(now - 3600, now + 1, now - 300)
    # 100 requests in the hour; those of the last 300 s are i = 0..9: 10, tokens sum(0..9)+100.
    assert found["g/a"] == EntryTraffic(100, 10, 145, 98, frozenset({"tools", "tool_choice"}))
    assert found["g/b"] == EntryTraffic(1, 1, 17, 7, frozenset({"images"}))


def test_capability_flags_take_a_deployment_out_of_routing_as_readiness_says(
    sim: SimServer,
) -> None:
    """``model_info.supports_function_calling: false``: a tools request passes the deployment
    over (even with drop_params: it would drop tools), a plain one goes to it; readiness asks
    the same question. ``supports_vision: false`` holds with drop_params too (images are the
    request's own content)."""
    declared, other = sim_model(sim, **FAST), sim_model(sim, **FAST)
    first = {
        **deployment(sim, "chat", "openai", declared, order=1),
        "model_info": {"supports_function_calling": False, "supports_vision": False},
    }
    config = gateway_config(
        [first, deployment(sim, "chat", "openai", other, order=2)],
        router={"routing_strategy": "priority"},
    )  # fmt: skip
    d = config.deployments[0]
    assert d.lacks == frozenset({"supports_function_calling", "supports_vision"})
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    with Served(config) as served:
        client = served.openai()
        ask(client, "chat", tools=[TOOL])
        ask(client, "chat")
        client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": [image]}]
        )
    assert [r.target for r in served.records] == [
        name("chat", other),
        name("chat", declared),
        name("chat", other),
    ]
    assert len(upstream(sim, declared)) == 1 and len(upstream(sim, other)) == 2
    model = d.to_target().model
    assert proxy.unsupported(d, params.example("tools"), model) == ["tools"]
    assert proxy.unsupported(d, params.example("tool_choice"), model) == ["tools", "tool_choice"]
    assert proxy.unsupported(d, params.example("images"), model) == ["images"]
    assert proxy.unsupported(d, params.example("seed"), model) == []
    # JSON mode is no response schema; reasoning turned off is any model's.
    schema = dataclasses.replace(
        d, lacks=frozenset({"supports_response_schema", "supports_reasoning"})
    )
    assert proxy.unsupported(schema, params.example("response_format"), model) == [
        "response_format"
    ]
    assert proxy.unsupported(schema, params.example("reasoning"), model) == ["reasoning"]
    mode = params.example("response_format")
    mode.response_format = ResponseFormat("json_object")
    assert proxy.unsupported(schema, mode, model) == []
    off = params.example("reasoning")
    off.reasoning = Reasoning(effort="none")
    assert proxy.unsupported(schema, off, model) == []

    # drop_params drops tools for such a deployment (at risk in readiness), never images.
    dropping = gateway_config(
        [{**first, "litellm_params": {**first["litellm_params"], "drop_params": True}}],
    )
    with Served(dropping) as served:
        client = served.openai()
        ask(client, "chat", tools=[TOOL])
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": [image]}]
            )
    assert "images" in str(refused.value)
    sent = upstream(sim, declared)[-1]
    assert "tools" not in sent["body"]


def test_the_api_the_page_and_the_alert(
    served: tuple[Config, dict[str, str]], tmp_path: Path, sim: SimServer
) -> None:
    """``GET /api/v1/failover`` and ``/failover`` over the served scenario; the alert leader
    raises ``failover_not_ready`` for the groups that lost their fallback (routed and silenced
    as any alert), and resolves it once the fallback's headers show room again."""
    base, models = served
    db = copy_db(base, tmp_path)
    raw = {
        "notifiers": [{"type": "slack", "name": "ops", "webhook_url": "https://hooks.slack.com/x"},
                      {"type": "slack", "name": "chat", "webhook_url": "https://hooks.slack.com/y"}],
        "rules": {"failover_not_ready": {"for": "0s"}},
        "alerting": {"resolve_after": "0s",
                     "routes": [{"match": {"rule": "failover_not_ready"}, "notify": ["ops"]},
                                {"notify": ["chat"]}]},
        "silences": [{"target": "group:tools", "ends": "2099-01-01T00:00:00Z"}],
    }  # fmt: skip
    gateway = base.gateway
    assert gateway is not None
    entries = [entry(sim, d.group, d.model, **({"supports_function_calling": False}
               if d.lacks else {})) for d in gateway.deployments]  # fmt: skip
    config = parse_config(
        {**raw, "model_list": entries, "storage": str(db), "web": {"listen": "127.0.0.1:0"},
         "router_settings": {"fallbacks": [{g: [f"{g}-fb"]} for g in ("good", "tight", "tools")]}},
        env={"SIM_KEY": "sk-sim"},
    )  # fmt: skip
    notices: list[tuple[Notification, tuple[str, ...]]] = []

    def notify(n: Notification, receivers: Sequence[str], *, resend: bool = False) -> None:
        notices.append((n, tuple(receivers)))

    state = AlertStateStore.open(db)  # where the dashboard reads it
    with SQLiteStore(db) as store:
        alerting = Alerting(config, store, state, notify, lambda p: None,
                            notifiers={"ops": None, "chat": None})  # fmt: skip
        now = time.time()
        alerting.load_silences(now)
        alerting.observe_failover(alerting.failover_readiness(now), now)
        state.save_records(alerting.tick(now), now)
        records = {
            r.target: r for r in alerting.engine.records.values() if r.rule == FAILOVER_NOT_READY
        }
        assert set(records) == {"group:tight", "group:tools"}  # good is ready; -fb have none
        assert all(r.state is AlertState.FIRING for r in records.values())
        tight = records["group:tight"]
        assert tight.summary == (
            f"model group tight: no fallback could take the traffic: {name('tight-fb', models['tight-fb'])}: "
            "rate limit: room for 1 more requests/min, the group sends 2"
        )
        # Routed as configured; the tools group is silenced: kept firing, paging no one.
        assert [(n.target, str(n.status), r) for n, r in notices] == [
            ("group:tight", "firing", ("ops",))
        ]
        assert (notices[0][0].provider, alert_scope(FAILOVER_NOT_READY, None, "group:tight")) == (
            ALL,
            "group",
        )

        with ServedWeb(config, db) as web, httpx.Client(base_url=web.url, timeout=10) as client:
            body = client.get("/api/v1/failover").json()
            alerts = client.get("/api/v1/alerts")
            spec = client.get("/openapi.json").json()
            page = client.get("/failover")
            script = client.get("/static/failover.js")
        assert "/api/v1/failover" in spec["paths"]
        # The alerts API lists the group's alert with its scope (a group, not a target).
        assert alerts.status_code == 200, alerts.text
        listed = {a["target"]: a for a in alerts.json()["firing"]}
        assert listed["group:tight"]["scope"] == "group"
        assert "GroupReadiness" in spec["components"]["schemas"]
        assert page.status_code == 200 and "/static/failover.js" in page.text
        assert script.status_code == 200 and "/api/v1/failover" in script.text
        groups = {g["group"]: g for g in body["groups"]}
        g = groups["tight"]
        assert (g["status"], g["alert"], g["primary"]) == (
            "not_ready",
            "firing",
            name("tight", models["tight"]),
        )
        assert g["load"]["requests"] == 10 and g["load"]["rpm"] == 2.0
        [fb] = g["fallbacks"]
        assert set(fb) == {
            "name", "group", "status", "reasons", "context_window", "headroom_rpm",
            "headroom_tpm", "own_rpm", "own_tpm", "breaker", "breaker_inferred",
        }  # fmt: skip
        assert (fb["status"], fb["headroom_rpm"], fb["breaker"]) == ("not_ready", 1.0, "closed")
        assert groups["good"]["status"] == "ready" and groups["good"]["alert"] is None
        assert groups["good"]["load"]["features"] == ["tools"]

        # The fallback's limit was raised: its next probe shows room, and the alert resolves.
        httpx.patch(f"{sim.url}/_sim/models/{models['tight-fb']}", json={"ratelimit": ROOMY},
                    timeout=10).raise_for_status()  # fmt: skip
        target = next(d for d in gateway.deployments if d.group == "tight-fb").to_target()

        async def probe() -> list[CheckResult]:
            async with Prober() as prober:
                return await prober.check_many([(target, CheckKind.INFERENCE)])

        store.write_results(asyncio.run(probe()))
        later = time.time()
        alerting.observe_failover(alerting.failover_readiness(later), later)
        state.save_records(alerting.tick(later), later)
        assert [(n.target, str(n.status), r) for n, r in notices[1:]] == [
            ("group:tight", "resolved", ("ops",))
        ]
        assert alerting.engine.records[fingerprint(FAILOVER_NOT_READY, "group:tools")].state is (
            AlertState.FIRING
        )
    state.close()
    # check-config lists the rule per model group.
    rows = [r for r in rules_in_effect(config) if r.rule == FAILOVER_NOT_READY]
    assert {r.subject for r in rows} == {f"group:{g.name}" for g in gateway.groups}


# --- review fixes: the order, the group's load, stale headers, unknown prompt sizes ----------


def stored(
    target: str,
    ago: float,
    *,
    check: CheckKind = CheckKind.INFERENCE,
    source: Source = Source.PROBE,
    route: list[str] | None = None,
    usage: Usage | None = None,
    **fields: Any,
) -> CheckResult:
    """A result as the gateway or its health loop stores it, ``ago`` seconds ago."""
    return CheckResult(
        target=target, provider="openai", model=target.rsplit("/", 1)[-1], check=check,
        timestamp=datetime.fromtimestamp(time.time() - ago, UTC), source=source,
        route=route or [], usage=usage or Usage(), **{"ok": True, **fields},
    )  # fmt: skip


def windowed(sim: SimServer, group: str, model: str, window: int = 100_000, **params: Any) -> Any:
    """A deployment whose ``model_info`` gives its context window (the simulator's models are
    not in the catalogue)."""
    return {**deployment(sim, group, "openai", model, **params),
            "model_info": {"max_input_tokens": window}}  # fmt: skip


def healthy(target: str, ratelimit: dict[str, Any] | None = None) -> list[CheckResult]:
    """A fallback's models check (listed) and a probe with rate-limit headers, a minute ago."""
    rl = RateLimit(**(ratelimit or ROOMY))
    return [
        stored(target, 60, check=CheckKind.MODELS, model_listed=True),
        stored(target, 60, ratelimit=rl),
    ]


def test_readiness_follows_the_gateways_failover_order_as_drills_do(sim: SimServer) -> None:
    """One definition of a group's failover order (``drill.failover_paths``): under a strategy
    other than priority ``order`` does not decide, and a fallback list naming the group itself
    spends one of ``max_fallbacks`` as the gateway does, so ``backup`` is never reached."""
    config = gateway_config(
        [deployment(sim, "chat", "openai", "a", order=2),
         deployment(sim, "chat", "openai", "b", order=1),
         deployment(sim, "backup", "openai", "c")],
        router={"routing_strategy": "simple-shuffle", "max_fallbacks": 1,
                "fallbacks": [{"chat": ["chat", "backup"]}]},
    )  # fmt: skip
    found = {p.group: (p.name, [f.name for f in fs]) for p, fs in readiness.paths(config)}
    assert found["chat"] == ("chat/openai/a", ["chat/openai/b"])
    plan = drill.failover_paths(config)
    for group, (primary, fallbacks) in found.items():
        assert [p.target.name for p in plan.paths if p.group == group] == [primary, *fallbacks]


def test_the_load_is_the_groups_wherever_it_entered(sim: SimServer, tmp_path: Path) -> None:
    """The primary's breaker is open: the group's traffic enters at its second deployment.
    The load is still known (not "no traffic"), the second deployment is asked only for what it
    does not carry already, and the fallback group's deployment for all of it."""
    config = gateway_config(
        [windowed(sim, "chat", "a", order=1),
         windowed(sim, "chat", "b", order=2),
         windowed(sim, "backup", "c")],
        router={"fallbacks": [{"chat": ["backup"]}]},
    )  # fmt: skip
    b, c = "chat/openai/b", "backup/openai/c"
    rows = [
        stored(b, 10 + i, source=Source.TRAFFIC, route=[b], usage=Usage(100, 10)) for i in range(10)
    ]
    # c's headers leave 1 request: the group sends 2 a minute.
    rows += healthy(b) + healthy(c, {**ROOMY, "requests_remaining": 1})
    chat = judge_stored(tmp_path, config, rows)["chat"]
    assert (chat.primary, chat.load.requests, chat.load.rpm) == ("chat/openai/a", 10, 2.0)
    fb_b, fb_c = chat.fallbacks
    assert (fb_b.name, fb_b.status, fb_b.reasons, fb_b.own_rpm) == (b, Status.READY, (), 2.0)
    assert fb_c.reasons == ("rate limit: room for 1 more requests/min, the group sends 2",)
    assert chat.status is Status.READY


def test_headers_past_their_reset_no_longer_limit_and_unknown_prompts_are_at_risk(
    sim: SimServer, tmp_path: Path
) -> None:
    """Headers that said nothing remained, 5 minutes ago, with a reset 10 s later: the window
    has refilled since, only the limits hold. The same headers still within their reset do
    limit. Traffic without token counts leaves the prompt size unknown: at risk, not green."""
    config = gateway_config(
        [windowed(sim, "chat", "a"), windowed(sim, "backup", "c"),
         windowed(sim, "spare", "d")],
        router={"fallbacks": [{"chat": ["backup", "spare"]}]},
    )  # fmt: skip
    a, c, d = "chat/openai/a", "backup/openai/c", "spare/openai/d"
    spent = {**ROOMY, "requests_remaining": 0}
    rows = [stored(a, 10 + i, source=Source.TRAFFIC, route=[a]) for i in range(10)]
    rows += [stored(c, 60, check=CheckKind.MODELS, model_listed=True),
             stored(c, 300, ratelimit=RateLimit(**spent, reset_s=10)),
             stored(d, 60, check=CheckKind.MODELS, model_listed=True),
             stored(d, 5, ratelimit=RateLimit(**spent, reset_s=120))]  # fmt: skip
    chat = judge_stored(tmp_path, config, rows)["chat"]
    fb_c, fb_d = chat.fallbacks
    assert fb_c.headroom_rpm == 1000
    assert fb_c.reasons == ("the group's prompt sizes are unknown: no token counts stored",)
    assert fb_c.status is Status.AT_RISK
    assert fb_d.headroom_rpm == 0 and fb_d.status is Status.NOT_READY
    assert chat.status is Status.AT_RISK


def test_a_groups_reason_names_a_few_fallbacks(sim: SimServer, tmp_path: Path) -> None:
    """The reason (also the alert's summary) stays short with many fallbacks: the API lists
    each."""
    groups = [f"fb{i}" for i in range(5)]
    config = gateway_config(
        [windowed(sim, "chat", "a"),
         *(windowed(sim, g, g, window=1) for g in groups)],
        router={"fallbacks": [{"chat": groups}], "max_fallbacks": 5},
    )  # fmt: skip
    rows = [
        stored("chat/openai/a", 10, source=Source.TRAFFIC, route=["chat/openai/a"],
               usage=Usage(50, 1))
    ]  # fmt: skip
    for g in groups:
        rows += healthy(f"{g}/openai/{g}")
    chat = judge_stored(tmp_path, config, rows)["chat"]
    assert chat.status is Status.NOT_READY and len(chat.fallbacks) == 5
    assert chat.reason.count("context window 1 tokens") == readiness.NAMED
    assert chat.reason.endswith("; and 2 more")


def test_an_inferred_cool_down_ends_when_the_breakers_would(sim: SimServer, tmp_path: Path) -> None:
    """Without Redis, a fallback whose latest call was rate limited is cooling down only until
    the answer's retry-after (else the breaker's default) has passed, as the gateway's breaker
    would be: a 429 of three minutes ago with a 10 s retry-after says nothing of now."""
    config = gateway_config(
        [windowed(sim, "chat", "a"), windowed(sim, "backup", "c"), windowed(sim, "spare", "d")],
        router={"fallbacks": [{"chat": ["backup", "spare"]}]},
    )  # fmt: skip
    a, c, d = "chat/openai/a", "backup/openai/c", "spare/openai/d"
    limited = {"ok": False, "error_class": ErrorClass.RATE_LIMITED, "retry_after_s": 10.0}
    rows = [stored(a, 10, source=Source.TRAFFIC, route=[a], usage=Usage(10, 1))]
    rows += [*healthy(c)[:1], stored(c, 180, ratelimit=RateLimit(**ROOMY), **limited)]
    rows += [*healthy(d)[:1], stored(d, 2, ratelimit=RateLimit(**ROOMY), **limited)]
    chat = judge_stored(tmp_path, config, rows)["chat"]
    fb_c, fb_d = chat.fallbacks
    assert (fb_c.status, fb_c.breaker, fb_c.reasons) == (Status.READY, "closed", ())
    assert (fb_d.status, fb_d.breaker) == (Status.NOT_READY, "cooling")
    assert fb_d.reasons[0].startswith("likely cooling down until ")


def test_the_alert_waits_for_its_for_and_resolves_with_the_group_gone(
    sim: SimServer, tmp_path: Path
) -> None:
    """``failover_not_ready`` fires once the group has had no ready fallback for the rule's
    ``for`` (a minute: two judgements), resolves when a fallback is ready again, and resolves
    when the group leaves the config. A group only at risk never raises it."""
    db = tmp_path / "r.db"
    config = parse_config(
        {"model_list": [entry(sim, "chat", "a"), entry(sim, "chat-fb", "b")],
         "router_settings": {"fallbacks": [{"chat": ["chat-fb"]}]}, "storage": str(db),
         "notifiers": [{"type": "slack", "name": "ops", "webhook_url": "https://hooks.slack.com/x"}]},
        env={"SIM_KEY": "sk-sim"},
    )  # fmt: skip
    notices: list[tuple[str, str]] = []

    def notify(n: Notification, receivers: Sequence[str], *, resend: bool = False) -> None:
        notices.append((n.target, str(n.status)))

    def judged(status: Status) -> list[readiness.GroupReadiness]:
        fb = readiness.Fallback("chat-fb/openai/b", "chat-fb", status, ("why",), None,
                                None, None, 0.0, 0.0, "closed", True)  # fmt: skip
        load = readiness.Load(10, 2.0, 20.0, 5, ())
        return [readiness.GroupReadiness("chat", status, "reason", "chat/openai/a", load, (fb,))]

    state = AlertStateStore.open(db)
    with SQLiteStore(db) as store:
        alerting = Alerting(config, store, state, notify, lambda p: None, notifiers={"ops": None})
        fp = fingerprint(FAILOVER_NOT_READY, "group:chat")
        t = time.time()
        alerting.observe_failover(judged(Status.AT_RISK), t)
        assert fp not in alerting.engine.records
        for step, expected in ((0, AlertState.PENDING), (30, AlertState.PENDING),
                               (60, AlertState.FIRING)):  # fmt: skip
            alerting.observe_failover(judged(Status.NOT_READY), t + step)
            alerting.tick(t + step)
            assert alerting.engine.records[fp].state is expected
        assert notices == [("group:chat", "firing")]
        # At risk keeps it (nothing is known ready); ready resolves it.
        alerting.observe_failover(judged(Status.AT_RISK), t + 90)
        assert alerting.engine.records[fp].state is AlertState.FIRING
        alerting.observe_failover(judged(Status.READY), t + 120)
        alerting.tick(t + 120)
        assert alerting.engine.records[fp].state is AlertState.RESOLVED
        # Not ready again, then the group is gone from the config: resolved.
        for step in (150, 210):
            alerting.observe_failover(judged(Status.NOT_READY), t + step)
        assert alerting.engine.records[fp].state is AlertState.FIRING
        alerting.observe_failover([], t + 240)
        alerting.tick(t + 240)
        assert alerting.engine.records[fp].state is AlertState.RESOLVED
        assert alerting.engine.records[fp].summary == "group:chat is no longer configured"
    state.close()


def test_a_litellm_model_info_with_every_usual_key_still_loads() -> None:
    """A ``model_info`` as LiteLLM's model map writes it (costs, limits, every ``supports_*``
    key, booleans in YAML's spellings) loads as before; only the four flags routing honours,
    when false, take the deployment out for what they name. A value that is no boolean is
    refused naming its key."""
    info = {
        "mode": "chat", "litellm_provider": "openai", "input_cost_per_token": 1e-6,
        "output_cost_per_token": 2e-6, "max_tokens": 4096, "max_input_tokens": 128_000,
        "max_output_tokens": 4096, "supports_function_calling": True,
        "supports_parallel_function_calling": True, "supports_vision": "false",
        "supports_response_schema": None, "supports_reasoning": 0, "supports_tool_choice": False,
        "supports_prompt_caching": True, "supports_system_messages": True,
        "supports_audio_input": False, "supports_pdf_input": True, "supports_web_search": False,
        "supported_openai_params": ["tools"], "db_model": False,
    }  # fmt: skip
    raw = {"model_list": [{"model_name": "g", "litellm_params": {"model": "openai/gpt-4o",
                                                                  "api_key": "k"},
                           "model_info": info}]}  # fmt: skip
    config = parse_gateway(raw, env={})
    assert config is not None
    assert config.deployments[0].lacks == frozenset({"supports_vision", "supports_reasoning"})
    raw["model_list"][0]["model_info"] = {"supports_vision": "sometimes"}
    with pytest.raises(ConfigError, match=r"model_list\[0\]\.model_info\.supports_vision: "):
        parse_gateway(raw, env={})
