"""Per-key rpm/tpm limits and hard budgets, enforced by the gateway before any upstream call:
the official SDKs through a real gateway on loopback, the simulator as the provider (its request
log proves what reached it), real Redis shared by two replicas, a real SQLite store."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import redis

from conftest import postgres_schema, sim_model
from llmpulse.config.gateway import GatewayConfig
from llmpulse.config.keys import GatewayKey
from llmpulse.config.litellm import parse_gateway
from llmpulse.gateway.limits import Limits, _Window
from llmpulse.result import CheckKind, CheckResult, Source, Usage
from llmpulse.sim.server import SimServer
from llmpulse.store import open_store
from test_gateway_limits import sim_seq
from test_gateway_proxy import FAST, Served, deployment
from test_gateway_shared import private_redis

REDIS_URL = os.environ.get("LLMPULSE_TEST_REDIS", "redis://127.0.0.1:6379/0")
HI = [{"role": "user", "content": "hi"}]
# Each request: 10 tokens in, 10 out, at a cent a token: $0.20.
TOKENS = {"input_tokens": 10, "output_tokens": 10}
PRICES = {"input_cost_per_token": 0.01, "output_cost_per_token": 0.01}
COST = 0.20
KEYS = {"A": "sk-key-a-" + "a" * 24, "B": "sk-key-b-" + "b" * 24}


def config(
    sim: SimServer,
    model: str,
    keys: list[dict[str, Any]],
    teams: list[dict[str, Any]] | None = None,
    **gateway: Any,
) -> GatewayConfig:
    raw = {
        "model_list": [deployment(sim, "chat", "openai", model, **PRICES)],
        "gateway": {"keys": keys, "monitor": False, **gateway},
        "teams": teams or [],
    }
    env = {"SIM_KEY": "sk-sim", **{f"KEY_{n}": k for n, k in KEYS.items()}}
    parsed = parse_gateway(raw, env=env)
    assert parsed is not None
    return parsed


def key(name: str, **policy: Any) -> dict[str, Any]:
    return {"name": name, "key": f"os.environ/KEY_{name}", **policy}


def redis_or_skip() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"Redis unreachable at {REDIS_URL}: {exc}")
    return client


@pytest.fixture
def prefix() -> Iterator[str]:
    client = redis_or_skip()
    prefix = f"llmpulse-test-{uuid.uuid4().hex[:8]}"
    yield prefix
    for name in client.scan_iter(f"{prefix}:*"):
        client.delete(name)


def chat(served: Served, name: str) -> Any:
    return served.openai(KEYS[name]).chat.completions.create(model="chat", messages=HI)


def message(served: Served, name: str) -> Any:
    return served.anthropic(KEYS[name]).messages.create(model="chat", max_tokens=16, messages=HI)


def refused_openai(served: Served, name: str) -> openai.RateLimitError:
    with pytest.raises(openai.RateLimitError) as caught:
        chat(served, name)
    return caught.value


def refused_anthropic(served: Served, name: str) -> anthropic.RateLimitError:
    with pytest.raises(anthropic.RateLimitError) as caught:
        message(served, name)
    return caught.value


def retry_after(exc: openai.APIStatusError | anthropic.APIStatusError) -> int:
    value = int(exc.response.headers["retry-after"])
    assert 1 <= value <= 61
    return value


# --- rpm and tpm -------------------------------------------------------------------------------


def test_rpm_is_a_429_with_retry_after_in_each_protocols_shape(sim: SimServer) -> None:
    model = sim_model(sim, **FAST, **TOKENS)
    before = sim_seq(sim)
    with Served(config(sim, model, [key("A", rpm=2), key("B")])) as served:
        chat(served, "A")
        message(served, "A")
        exc = refused_openai(served, "A")
        assert exc.code == "rate_limit_exceeded" and exc.type == "rate_limit_error"
        assert "key 'A' is over its rpm limit (2 requests per minute)" in exc.message
        retry_after(exc)
        refused = refused_anthropic(served, "A")
        assert refused.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
        retry_after(refused)
        chat(served, "B")  # another key has its own window
    assert sim_seq(sim) == before + 3


def test_tpm_counts_each_requests_tokens_when_it_ends(sim: SimServer) -> None:
    model = sim_model(sim, **FAST, **TOKENS)
    before = sim_seq(sim)
    with Served(config(sim, model, [key("A", tpm=30)])) as served:
        chat(served, "A")  # 20 tokens: under 30, so the next is admitted
        message(served, "A")  # 40 tokens
        exc = refused_openai(served, "A")
        assert "over its tpm limit (30 tokens per minute)" in exc.message
        retry_after(exc)
        refused = refused_anthropic(served, "A")
        assert "tpm" in refused.body["error"]["message"]  # type: ignore[index]
    assert sim_seq(sim) == before + 2


def test_rpm_and_tpm_hold_across_two_replicas_sharing_redis(sim: SimServer, prefix: str) -> None:
    model = sim_model(sim, **FAST, **TOKENS)
    client = redis.Redis.from_url(REDIS_URL)
    gateway = {"redis_url": REDIS_URL, "redis_prefix": prefix}
    shared = config(sim, model, [key("A", rpm=3), key("B", tpm=30)], **gateway)
    before = sim_seq(sim)
    with Served(shared) as one, Served(shared) as two:
        chat(one, "A")
        message(two, "A")
        chat(one, "A")
        # Three requests in the window, on whichever replica: both refuse the fourth.
        assert "rpm" in refused_openai(two, "A").message
        assert "rpm" in refused_anthropic(one, "A").body["error"]["message"]  # type: ignore[index]

        chat(one, "B")
        chat(two, "B")  # 20 tokens counted so far (if both ended): under 30
        window = f"{prefix}:window:B"
        deadline = time.monotonic() + 5
        while sum(int(v) for f, v in client.hgetall(window).items() if f[:1] == b"t") < 40:
            assert time.monotonic() < deadline, "tokens never reached Redis"
            time.sleep(0.02)
        for served in (one, two):
            assert "tpm" in refused_openai(served, "B").message
    assert sim_seq(sim) == before + 5


def test_limits_are_enforced_per_replica_while_redis_is_unreachable(
    sim: SimServer, caplog: pytest.LogCaptureFixture
) -> None:
    model = sim_model(sim, **FAST, **TOKENS)
    redis_or_skip()  # redis-server is needed to bring one back
    with private_redis() as (url, stop_redis, start_redis):
        shared = config(sim, model, [key("A", rpm=3)], redis_url=url, redis_prefix="p")
        before = sim_seq(sim)
        with Served(shared) as one, Served(shared) as two:
            chat(one, "A")
            stop_redis()
            # Away: each replica counts its own requests (its windows kept Redis's too).
            chat(one, "A")
            chat(one, "A")
            retry_after(refused_openai(one, "A"))
            for _ in range(3):
                chat(two, "A")
            assert "rpm" in refused_openai(two, "A").message
            said = [r for r in caplog.records if "rate limits: Redis unreachable" in r.message]
            assert len(said) == 2  # once per replica, not per request
            start_redis()  # empty: the window starts again in Redis
            time.sleep(1.1)  # the request path tries Redis again after a second
            chat(one, "A")
            chat(two, "A")
            chat(one, "A")
            assert "rpm" in refused_openai(two, "A").message  # shared again: 3 in Redis
        assert sim_seq(sim) == before + 9
    assert any("Redis answers again" in r.message for r in caplog.records)


# --- budgets -----------------------------------------------------------------------------------


def test_a_key_over_its_budget_is_refused_without_an_upstream_call(sim: SimServer) -> None:
    model = sim_model(sim, **FAST, **TOKENS)
    budget = {"max_usd": 0.5, "period": "30d"}
    before = sim_seq(sim)
    with Served(config(sim, model, [key("A", budget=budget), key("B")])) as served:
        chat(served, "A")
        message(served, "A")
        chat(served, "A")  # $0.40 spent before it: admitted; $0.60 after
        assert [r.cost_usd for r in served.records] == pytest.approx([COST] * 3)
        seen = sim_seq(sim)
        exc = refused_openai(served, "A")
        assert exc.status_code == 429
        assert exc.code == "budget_exceeded" and exc.type == "budget_exceeded"
        assert "key 'A' has spent $0.6000 of its $0.5 budget for 30d" in exc.message
        assert "rolling 30d window" in exc.message
        assert exc.response.headers["x-should-retry"] == "false"
        refused = refused_anthropic(served, "A")
        assert refused.body["error"]["type"] == "budget_exceeded"  # type: ignore[index]
        assert "key 'A'" in refused.body["error"]["message"]  # type: ignore[index]
        with pytest.raises(openai.RateLimitError):  # streamed: refused before it starts
            served.openai(KEYS["A"]).chat.completions.create(model="chat", messages=HI, stream=True)
        assert sim_seq(sim) == seen  # no upstream call for any refused request
        chat(served, "B")  # other keys go on
    assert sim_seq(sim) == before + 4


def test_a_team_budget_covers_all_its_keys_and_says_when_it_resets(sim: SimServer) -> None:
    model = sim_model(sim, **FAST, **TOKENS)
    teams = [{"name": "search", "budget": {"max_usd": 0.5, "period": "1mo"}}]
    keys = [key("A", team="search"), key("B", team="search")]
    with Served(config(sim, model, keys, teams)) as served:
        chat(served, "A")
        chat(served, "B")
        message(served, "A")
        seen = sim_seq(sim)
        exc = refused_openai(served, "B")
        assert exc.code == "budget_exceeded"
        assert "team 'search' has spent $0.6000 of its $0.5 budget for 1mo" in exc.message
        now = datetime.now(UTC)
        reset = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
        assert f"the period resets at {reset:%Y-%m-%dT%H:%MZ}" in exc.message
        # Until the month ends (the SDKs are told not to retry: x-should-retry).
        wait = int(exc.response.headers["retry-after"])
        assert abs(wait - (reset - now).total_seconds()) < 5
        assert refused_anthropic(served, "A").body["error"]["type"] == "budget_exceeded"  # type: ignore[index]
        assert sim_seq(sim) == seen
    assert {r.team for r in served.records} == {"search"}


@pytest.fixture(params=["sqlite", "postgres"])
def results_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "results.db")
        return
    with postgres_schema() as url:
        yield url


def test_a_budget_counts_the_spend_already_in_the_store(sim: SimServer, results_db: str) -> None:
    model = sim_model(sim, **FAST, **TOKENS)
    store = open_store(results_db, for_writing=True)

    def spent(key_name: str | None, cost: float, days_ago: float, source: Source) -> CheckResult:
        at = datetime.fromtimestamp(time.time() - days_ago * 86_400, UTC)
        return CheckResult(
            target="chat", provider="openai", model=model, check=CheckKind.INFERENCE,
            timestamp=at, ok=True, usage=Usage(10, 10), cost_usd=cost, source=source,
            key_name=key_name,
        )  # fmt: skip

    store.write_results(
        [
            spent("A", 0.3, 2, Source.TRAFFIC),
            spent("A", 0.25, 6, Source.TRAFFIC),  # $0.55 in the last 7 days
            spent("A", 5.0, 8, Source.TRAFFIC),  # aged out of a 7-day window
            spent("B", 0.3, 1, Source.TRAFFIC),  # $0.30: under
            spent(None, 9.0, 1, Source.PROBE),  # probes are nobody's spend
        ]
    )
    store.close()
    budget = {"max_usd": 0.5, "period": "7d"}
    before = sim_seq(sim)
    keys = [key("A", budget=budget), key("B", budget=budget)]
    with Served(config(sim, model, keys), results_db=results_db) as served:
        exc = refused_openai(served, "A")  # its first request
        assert "key 'A' has spent $0.5500 of its $0.5 budget for 7d" in exc.message
        chat(served, "B")  # $0.30 + $0.20: spent
        assert refused_openai(served, "B").code == "budget_exceeded"
    assert sim_seq(sim) == before + 1


def test_a_key_created_at_run_time_is_limited_and_budgeted_by_its_own_policy(
    sim: SimServer, tmp_path: Path
) -> None:
    model = sim_model(sim, **FAST, **TOKENS)
    master = "sk-master-" + "m" * 24
    raw = {
        "model_list": [deployment(sim, "chat", "openai", model, **PRICES)],
        "gateway": {"monitor": False},
        "general_settings": {"master_key": master},
    }
    parsed = parse_gateway(raw, env={"SIM_KEY": "sk-sim"})
    assert parsed is not None
    with Served(parsed, results_db=tmp_path / "results.db") as served:

        def create(fields: dict[str, Any]) -> str:
            answer = httpx.post(f"{served.url}/api/v1/keys", json=fields, timeout=10,
                                headers={"authorization": f"Bearer {master}"})  # fmt: skip
            assert answer.status_code == 201, answer.text
            return str(answer.json()["key"])

        fast = create({"name": "fast", "rpm": 2})
        spender = create({"name": "spender", "budget": {"max_usd": 0.3, "period": "1d"}})
        before = sim_seq(sim)
        for _ in range(2):
            served.openai(fast).chat.completions.create(model="chat", messages=HI)
        with pytest.raises(openai.RateLimitError) as caught:
            served.openai(fast).chat.completions.create(model="chat", messages=HI)
        assert "key 'fast' is over its rpm limit" in caught.value.message
        for _ in range(2):  # $0.20, then $0.40
            served.openai(spender).chat.completions.create(model="chat", messages=HI)
        with pytest.raises(openai.RateLimitError) as caught:
            served.openai(spender).chat.completions.create(model="chat", messages=HI)
        assert caught.value.code == "budget_exceeded"
        assert sim_seq(sim) == before + 4


# --- how far a budget overshoots -------------------------------------------------------------


@pytest.mark.parametrize("replicas", [1, 2])
def test_a_budget_overshoots_by_at_most_the_requests_in_flight(
    sim: SimServer, replicas: int, request: pytest.FixtureRequest
) -> None:
    """Clients hammer one key until refused: what was spent past the budget is the cost of the
    requests in flight when it was reached (each was admitted while spend was under it), plus,
    across replicas, what the others admitted before their spend arrived through Redis."""
    clients_per_replica, max_usd = 8, 2.0
    # 50 ms a request: eight of them in flight per replica at any time.
    model = sim_model(sim, ttft=0.05, tokens_per_s=2000, **TOKENS)
    gateway: dict[str, Any] = {}
    if replicas == 2:
        gateway = {"redis_url": REDIS_URL, "redis_prefix": request.getfixturevalue("prefix")}
    budget = {"max_usd": max_usd, "period": "1d"}
    shared = config(sim, model, [key("A", budget=budget)], **gateway)
    servers = [Served(shared) for _ in range(replicas)]
    for served in servers:
        served.__enter__()
    try:

        def hammer(served: Served) -> int:
            done = 0
            client = served.openai(KEYS["A"])
            while True:
                try:
                    client.chat.completions.create(model="chat", messages=HI)
                except openai.RateLimitError as exc:
                    assert exc.code == "budget_exceeded"
                    return done
                done += 1

        workers = [s for s in servers for _ in range(clients_per_replica)]
        with ThreadPoolExecutor(len(workers)) as pool:
            answered = sum(pool.map(hammer, workers))
    finally:
        for served in servers:
            served.__exit__(None, None, None)
    spent = sum(r.cost_usd or 0 for s in servers for r in s.records)
    assert spent == pytest.approx(answered * COST)
    overshoot = spent - max_usd
    in_flight = len(workers) * COST
    print(f"\n{replicas} replica(s), {len(workers)} clients: spent ${spent:.2f} of ${max_usd:.2f}"
          f" (+{overshoot / max_usd:.0%}), in flight at most ${in_flight:.2f}")  # fmt: skip
    assert overshoot >= 0
    # One replica: strictly less than its requests in flight. Two: the other replica's spend
    # reaches it within a flush (0.1 s), when each of its clients may have had a couple more.
    assert overshoot < in_flight * (1 if replicas == 1 else 3)


# --- the window itself -------------------------------------------------------------------------


def test_retry_after_is_when_the_oldest_needed_second_leaves_the_window(prefix: str) -> None:
    """Local and in Redis alike: requests counted 30 s ago free their slots 31 s from now
    (a second counts for 60 to 61 s), seconds older than the window are pruned, and tokens
    free their share the same way."""

    window, now = _Window(), 1_000_000.5
    for _ in range(3):
        assert window.admit(now - 100, 3, None) is None  # long gone by now
    for _ in range(2):
        assert window.admit(now - 30, 3, None) is None
    window.count(now - 20, 50)
    assert window.admit(now, 3, None) is None  # 2 of 3 in the last 60 s: a third fits
    assert window.admit(now, 3, None) == ("rpm", pytest.approx(30.5))  # now - 30 leaves
    assert window.admit(now, 10, 50) == ("tpm", pytest.approx(40.5))

    client = redis.Redis.from_url(REDIS_URL)
    seconds = int(client.time()[0])
    name = f"{prefix}:window:A"
    old, recent = seconds - 70, seconds - 30
    client.hset(name, mapping={"P": old - 5, f"r{old}": 5, f"r{recent}": 2, "R": 7,
                               f"t{recent}": 50, "T": 50})  # fmt: skip
    limited = GatewayKey("A", "digest", rpm=3, tpm=60)
    limits = Limits([limited], [], redis_url=REDIS_URL, redis_prefix=prefix)

    async def check() -> None:
        assert await limits.admit(limited) is None  # the 5 old ones pruned: 2 + this one
        stored = {k.decode(): int(v) for k, v in client.hgetall(name).items()}
        assert f"r{old}" not in stored and stored["R"] == 3 and stored["P"] == seconds - 60
        refusal = await limits.admit(limited)
        assert refusal is not None and "rpm limit" in refusal.message
        assert refusal.retry_after_s in (30, 31)  # whole seconds up to recent + 61
        client.hset(name, "R", 0)
        assert await limits.admit(limited) is None  # 50 tokens: under 60
        client.hset(name, "T", 60)
        refusal = await limits.admit(limited)
        assert refusal is not None and "tpm limit (60 tokens per minute)" in refusal.message
        assert refusal.retry_after_s in (30, 31)

    asyncio.run(check())
