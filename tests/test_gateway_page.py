"""The dashboard's gateway page: traffic share, fallbacks, breaker events, incidents and drills,
from results written through the store (SQLite and PostgreSQL), and end to end from a gateway
process in front of the simulator."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

import pgserver
from conftest import LiveGateway, sim_model
from llmpulse.config import parse_config
from llmpulse.config.load import Config
from llmpulse.errors import ErrorClass
from llmpulse.gateway.breaker import BreakerConfig, BreakerState
from llmpulse.gateway.breaker_log import BreakerLog
from llmpulse.gateway.metrics import GatewayMetrics
from llmpulse.gateway.selector import Selector
from llmpulse.result import CheckKind, CheckResult, Source
from llmpulse.sim.server import SimServer
from llmpulse.store import open_store, sqlstore
from llmpulse.store.base import BreakerEvent
from llmpulse.web import gateway as gateway_page
from llmpulse.web.view import View
from test_gateway_proxy import FAST, deployment, upstream
from webserve import ServedWeb

SECRET = "sk-sim-secret-0123456789abcdef"
MASTER_KEY = "sk-master-0123456789abcdef"
WEB_TOKEN = "web-t0ken-for-tests"
PRIMARY, BACKUP, ONLY = "chat/primary", "chat/backup", "fast/only"


def gateway_entries(base: str) -> list[dict[str, Any]]:
    def entry(group: str, ident: str, order: int) -> dict[str, Any]:
        return {
            "model_name": group,
            "litellm_params": {"model": f"openai/{ident}", "api_base": base,
                               "api_key": "os.environ/SIM_KEY", "order": order},
            "model_info": {"id": ident},
        }  # fmt: skip

    return [entry("chat", "primary", 1), entry("chat", "backup", 2), entry("fast", "only", 1)]


def page_config() -> Config:
    raw = {"model_list": gateway_entries("http://127.0.0.1:9/v1"), "web": {"listen": "127.0.0.1:0"}}
    return parse_config(raw, env={"SIM_KEY": SECRET})


def request(
    ts: float,
    route: list[str],
    reason: ErrorClass | None = None,
    *,
    drill: str | None = None,
    source: Source = Source.TRAFFIC,
    stream: bool = False,
    ok: bool = True,
    error: tuple[ErrorClass, str] | None = None,
) -> CheckResult:
    return CheckResult(
        target=route[-1],
        provider="openai",
        model=route[-1].split("/")[1],
        check=CheckKind.STREAM if stream else CheckKind.INFERENCE,
        timestamp=datetime.fromtimestamp(ts, UTC),
        ok=ok and error is None,
        error_class=error[0] if error else None,
        error_message=error[1] if error else None,
        source=source,
        attempts=len(route),
        route=route,
        fallback_reason=reason,
        drill=drill,
    )


def seed_gateway(location: str | Path, now: float) -> float:
    """A gateway's half hour before ``now`` (at 50 s past a minute): an outage of the primary
    from minute 5 to 9 (moved requests, some after a failed attempt, some sent straight to the
    backup: the breaker was open), a second one from minute 20 still going on, live drills,
    another group, drill runs and breaker events. Returns the first minute."""
    m0 = now - 50 - 30 * 60
    at = lambda minute, s: m0 + minute * 60 + s  # noqa: E731
    rows: list[CheckResult] = []
    for minute in range(5):
        rows += [request(at(minute, s), [PRIMARY]) for s in (5, 25, 45)]
    rows += [request(at(3, s), [ONLY]) for s in (1, 2, 3, 4)]
    rows += [
        request(at(5, 10), [PRIMARY, BACKUP], ErrorClass.SERVER_ERROR),
        request(at(5, 20), [PRIMARY, BACKUP], ErrorClass.SERVER_ERROR),
        request(at(5, 30), [BACKUP]),
        *(request(at(6, s), [BACKUP]) for s in (5, 25, 45)),
        request(at(8, 10), [PRIMARY, BACKUP], ErrorClass.TIMEOUT),
        request(at(8, 20), [PRIMARY, BACKUP], ErrorClass.TIMEOUT),
        request(at(9, 5), [BACKUP]),
        request(at(9, 40), [PRIMARY]),
        *(request(at(minute, s), [PRIMARY]) for minute in (10, 11) for s in (5, 25, 45)),
        request(at(12, 1), [PRIMARY, BACKUP], drill="skip-primary"),
        request(at(12, 2), [PRIMARY, BACKUP], drill="skip-primary"),
        request(at(20, 15), [PRIMARY, BACKUP], ErrorClass.RATE_LIMITED),
        request(at(20, 25), [PRIMARY, BACKUP], ErrorClass.RATE_LIMITED),
        # Drill runs: the older failure of the first path is superseded by its success.
        request(at(1, 50), [PRIMARY], source=Source.DRILL, error=(ErrorClass.TIMEOUT, "slow")),
        request(at(2, 0), [PRIMARY], source=Source.DRILL, drill="chat/primary"),
        request(
            at(2, 1),
            [PRIMARY, BACKUP],
            source=Source.DRILL,
            stream=True,
            drill="chat/primary > chat/backup",
            error=(ErrorClass.AUTH, f"invalid api key {SECRET}"),
        ),
    ]
    with open_store(location) as store:
        store.write_results(rows)
        store.write_breaker_events(
            [
                BreakerEvent(at(5, 21), "gw-1", PRIMARY, "open", "server_error"),
                BreakerEvent(at(7, 21), "gw-1", PRIMARY, "half_open", "cooldown elapsed"),
                BreakerEvent(at(9, 40), "gw-1", PRIMARY, "closed", "probe succeeded"),
            ]
        )
    return m0


@pytest.fixture
def seeded(db_location: str | Path) -> Iterator[tuple[View, float, float]]:
    """``seed_gateway``'s data; yields the view, the first minute and now."""
    now = float(int(time.time()) // 60 * 60 + 50)
    m0 = seed_gateway(db_location, now)
    view = View.open(page_config(), db_location)
    try:
        yield view, m0, now
    finally:
        view.close()


def test_share_fallbacks_and_live_drills_per_bucket(seeded: tuple[View, float, float]) -> None:
    view, m0, now = seeded
    page = view.gateway("1h", now=now)
    assert page.step_s == 60 and page.ts[-1] == now - 50 and len(page.ts) == 61
    assert page.requests == 15 + 4 + 3 + 3 + 2 + 2 + 6 + 2
    assert page.live_drills == 2  # and in no other figure
    groups = {g.group: g for g in page.groups}
    assert set(groups) == {"chat", "fast"}
    chat = groups["chat"]
    assert {d: sum(v) for d, v in chat.deployments.items()} == {PRIMARY: 22, BACKUP: 11}
    i5 = page.ts.index(int(m0) + 5 * 60)
    assert chat.requests[i5] == 3 and chat.deployments[BACKUP][i5] == 3
    assert chat.deployments[PRIMARY][i5] == 0
    assert sum(groups["fast"].requests) == 4
    # A fallback: route[0] is not route[-1]; those sent straight to the backup are not.
    assert page.fallbacks == 6 and sum(chat.fallbacks) == 6
    assert chat.fallbacks[i5] == 2
    per_minute = page.fallbacks_per_minute
    assert set(per_minute) == {"server_error", "timeout", "rate_limited"}
    assert per_minute["server_error"][i5] == 2.0
    assert per_minute["timeout"][page.ts.index(int(m0) + 8 * 60)] == 2.0
    assert sum(per_minute["rate_limited"]) == 2.0
    # In 15-minute buckets the rate is per minute all the same.
    day = view.gateway("24h", now=now)
    assert day.step_s == 900 and day.fallbacks == 6
    assert sum(sum(v) for v in day.fallbacks_per_minute.values()) == pytest.approx(6 / 15)


def test_the_page_counts_the_fallbacks_the_gateway_metrics_count(db_location: str | Path) -> None:
    # One definition (CheckResult.fell_back): a request answered by another deployment than
    # its first. One that failed over and failed there too is no fallback on either side; a
    # wildcard group's expansions belong to the pattern's group on both.
    raw = {
        "model_list": [
            *gateway_entries("http://127.0.0.1:9/v1"),
            {"model_name": "wild/*", "litellm_params": {"model": "openai/*",
             "api_base": "http://127.0.0.1:9/v1", "api_key": "os.environ/SIM_KEY"},
             "model_info": {"id": "wild"}},
        ],
        "web": {"listen": "127.0.0.1:0"},
    }  # fmt: skip
    config = parse_config(raw, env={"SIM_KEY": SECRET})
    assert config.gateway is not None
    (served,) = config.gateway.resolve("wild/gpt-x")
    expansion = served.name  # wild/gpt-x/<provider>/gpt-x
    now = float(int(time.time()) // 60 * 60 + 50)
    rows = [
        request(now - 40, [PRIMARY]),
        request(now - 35, [PRIMARY, BACKUP], ErrorClass.SERVER_ERROR),
        request(
            now - 30,
            [PRIMARY, BACKUP],
            ErrorClass.SERVER_ERROR,
            error=(ErrorClass.SERVER_ERROR, "down too"),
        ),
        request(now - 25, [expansion]),
        dataclasses.replace(request(now - 20, [expansion]), provider="openai", model="gpt-x"),
    ]
    metrics = GatewayMetrics(config.gateway, lambda: None)
    for row in rows:
        metrics.observe(row)
    with open_store(db_location) as store:
        store.write_results(rows)
    view = View.open(config, db_location)
    try:
        page = view.gateway("1h", now=now)
    finally:
        view.close()
    by_group = {g.group: sum(g.fallbacks) for g in page.groups}
    counted: dict[str, int] = {}
    for (group, *_), n in metrics.fallbacks.items():
        counted[group] = counted.get(group, 0) + n
    assert page.fallbacks == sum(metrics.fallbacks.values()) == 1
    assert by_group == {"chat": 1, "wild/*": 0} and counted == {"chat": 1}
    assert sum(page.fallbacks_per_minute["server_error"]) == 1.0
    wild = next(g for g in page.groups if g.group == "wild/*")
    assert {d: sum(v) for d, v in wild.deployments.items()} == {expansion: 2}


def test_incidents_say_from_where_to_where_when_and_back_when(
    seeded: tuple[View, float, float],
) -> None:
    view, m0, now = seeded
    first, second = view.gateway("1h", now=now).incidents
    assert (first.group, first.from_, first.to) == ("chat", PRIMARY, BACKUP)
    assert first.start_ts == m0 + 5 * 60 + 10  # the first moved request
    # Minute 7 had no requests: no first-choice answer until 9:40, more than a minute before
    # the next moved request (20:15).
    assert first.end_ts == m0 + 9 * 60 + 40 and not first.ongoing
    # The requests sent to the primary first: those the backup took first while the primary's
    # breaker was open are not the primary's.
    assert (first.requests, first.fallbacks) == (4, 4)
    assert first.reasons == {"server_error": 2, "timeout": 2}
    assert "traffic moved from chat/primary to chat/backup at" in first.summary
    assert "back at" in first.summary
    assert second.start_ts == m0 + 20 * 60 + 15
    assert second.end_ts is None and second.ongoing and "not back yet" in second.summary
    assert second.reasons == {"rate_limited": 2}
    # Outside the window, nothing.
    assert view.gateway("1h", now=now + 3 * 3600).incidents == []


def test_traffic_another_deployment_takes_first_is_no_incident(db_location: str | Path) -> None:
    # Requests with tools the primary cannot take go to the backup first, all day long (as
    # under load balancing): no move, no incident. Under every strategy, an incident ends when
    # its first choice answers again, not at the first request another deployment took first.
    now = float(int(time.time()) // 60 * 60 + 50)
    rows = [request(now - 1800 + i * 10, [PRIMARY]) for i in range(0, 60, 3)]
    rows += [request(now - 1800 + i * 10, [BACKUP]) for i in range(60) if i % 3]
    rows += [
        request(now - 600, [PRIMARY, BACKUP], ErrorClass.SERVER_ERROR),
        request(now - 590, [PRIMARY, BACKUP], ErrorClass.SERVER_ERROR),
        *(request(now - 580 + i, [BACKUP]) for i in range(10)),  # the primary's breaker open
        request(now - 400, [PRIMARY]),
    ]
    with open_store(db_location) as store:
        store.write_results(rows)
    view = View.open(page_config(), db_location)
    try:
        page = view.gateway("1h", now=now)
    finally:
        view.close()
    (incident,) = page.incidents
    assert (incident.from_, incident.to) == (PRIMARY, BACKUP)
    assert (incident.start_ts, incident.end_ts) == (now - 600, now - 400)
    assert (incident.fallbacks, incident.requests) == (2, 2)
    assert incident.reasons == {"server_error": 2}


def test_past_the_caps_the_newest_incidents_are_kept(
    db_location: str | Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = float(int(time.time()) // 60 * 60 + 50)
    outages = [now - 3000, now - 1800, now - 600]
    rows = [
        request(start + s, [PRIMARY, BACKUP], ErrorClass.TIMEOUT)
        for start in outages
        for s in (0, 5)
    ]
    rows += [request(start + 120, [PRIMARY]) for start in outages]
    with open_store(db_location) as store:
        store.write_results(rows)
    view = View.open(page_config(), db_location)
    try:
        assert [i.start_ts for i in view.gateway("1h", now=now).incidents] == outages
        with monkeypatch.context() as patch:
            patch.setattr(gateway_page, "MAX_SPANS", 2)
            assert [i.start_ts for i in view.gateway("1h", now=now).incidents] == outages[1:]
        monkeypatch.setattr(sqlstore, "MAX_FALLBACK_BUCKETS", 1)
        monkeypatch.setattr(sqlstore, "MAX_ISLANDS", 1)
        (newest,) = view.gateway("1h", now=now).incidents
    finally:
        view.close()
    assert (newest.start_ts, newest.end_ts) == (now - 600, now - 480)


def test_breaker_events_and_latest_drills(seeded: tuple[View, float, float]) -> None:
    view, m0, now = seeded
    page = view.gateway("1h", now=now)
    assert [(e.state, e.deployment, e.group) for e in page.breaker_events] == [
        ("open", PRIMARY, "chat"),
        ("half_open", PRIMARY, "chat"),
        ("closed", PRIMARY, "chat"),
    ]
    drills = [(d.path, d.stream, d.ok, d.error_class) for d in page.drills]
    assert drills == [([PRIMARY], False, True, None), ([PRIMARY, BACKUP], True, False, "auth")]
    assert page.drills[0].ts == m0 + 2 * 60
    failed = page.drills[1]
    assert failed.group == "chat" and failed.error_message is not None
    assert SECRET not in failed.error_message and "invalid api key" in failed.error_message


def test_breaker_events_round_trip_once_and_are_pruned(db_location: str | Path) -> None:
    now = time.time()
    events = [
        BreakerEvent(now - 30, "gw-1", PRIMARY, "open", "server_error"),
        BreakerEvent(now - 10, "gw-1", PRIMARY, "closed", "probe succeeded"),
        BreakerEvent(now - 10, "gw-2", PRIMARY, "closed", "monitor check succeeded"),
    ]
    with open_store(db_location) as store:
        store.write_breaker_events(events)
        store.write_breaker_events(events[:2])  # a batch whose acknowledgement was lost
        assert store.breaker_events(now - 60, now) == events
        assert store.breaker_events(now - 20, now) == events[1:]
        assert store.breaker_events(now - 60, now, limit=1)[0].agent == "gw-2"
        store.prune(now + 7 * 86400 - 20)
        assert store.breaker_events(0, now) == events[1:]


def test_the_api_serves_the_page_and_documents_it(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    now = time.time()
    with open_store(db) as store:
        store.write_results(
            [
                request(now - 120, [PRIMARY, BACKUP], ErrorClass.SERVER_ERROR),
                request(now - 60, [PRIMARY]),
            ]
        )
    with ServedWeb(page_config(), db) as web, httpx.Client(base_url=web.url, timeout=10) as c:
        body = c.get("/api/v1/gateway", params={"window": "6h"}).json()
        assert body["window"] == "6h" and body["step_s"] == 300 and body["fallbacks"] == 1
        incident = body["incidents"][0]
        assert incident["from"] == PRIMARY and incident["to"] == BACKUP
        assert incident["end_ts"] == pytest.approx(now - 60)
        assert c.get("/api/v1/gateway", params={"window": "30d"}).status_code == 422
        page = c.get("/gateway")
        assert page.status_code == 200 and "gateway.js" in page.text
        spec = c.get("/openapi.json").json()
        assert "/api/v1/gateway" in spec["paths"]
        assert "GatewayIncident" in spec["components"]["schemas"]


# --- the breaker log --------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def flap(selector: Selector, clock: Clock, times: int) -> None:
    """Open, half-open and close the breaker of ``d1`` ``times`` times, a second apart."""
    breaker = selector.breaker("d1")
    for _ in range(times):
        breaker.record_failure(ErrorClass.SERVER_ERROR)
        clock.now += 1
        assert breaker.state is BreakerState.HALF_OPEN
        breaker.record_success()
        clock.now += 1


def test_a_flapping_breaker_is_coalesced_and_its_last_state_written(tmp_path: Path) -> None:
    clock = Clock()
    config = BreakerConfig(failure_threshold=1, cooldown_s=0.5, cooldown_multiplier=1.0)
    selector = Selector(clock=clock, breaker_config=config)
    epoch = 1_800_000_000.0  # the wall clock, moving with the breakers' clock
    log = BreakerLog(
        tmp_path / "r.db",
        "gw-1",
        {"d1": PRIMARY},
        per_minute=4,
        every=0.05,
        wall=lambda: epoch + clock.now,
    )
    log.attach(selector)
    log.start()
    flap(selector, clock, 5)  # 15 transitions within 10 s
    assert log.flush()
    assert log.unwritten() == 1  # the coalesced one, held back until the minute has room
    log.close()
    with open_store(tmp_path / "r.db") as store:
        events = store.breaker_events(0, epoch * 2)
    assert [e.state for e in events] == ["open", "half_open", "closed", "open", "closed"]
    assert events[0].reason == "server_error" and events[1].reason == "cooldown elapsed"
    assert events[-1].reason == "probe succeeded (after 10 more transitions coalesced)"
    # Wall-clock times; half-open when the cool-down ended, not when someone looked.
    assert [e.ts - epoch for e in events] == [1000.0, 1000.5, 1001.0, 1002.0, 1009.0]
    assert {e.deployment for e in events} == {PRIMARY}


def test_unwritten_breaker_events_are_capped_the_oldest_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The database away for long (here: the writer not started yet): memory stays bounded.
    clock = Clock()
    selector = Selector(clock=clock, breaker_config=BreakerConfig(failure_threshold=1))
    names = {f"d{i}": f"chat/d{i}" for i in range(5)}
    log = BreakerLog(tmp_path / "r.db", "gw-1", names, max_pending=3, every=0.05)
    log.attach(selector)
    with caplog.at_level(logging.ERROR):
        for i in range(5):
            clock.now += 1
            selector.breaker(f"d{i}").record_failure(ErrorClass.TIMEOUT)
    assert log.unwritten() == 3
    assert caplog.text.count("dropping the oldest") == 1
    log.start()
    assert log.flush()
    log.close()
    with open_store(tmp_path / "r.db") as store:
        events = store.breaker_events(0, time.time() + 60)
    assert [e.deployment for e in events] == ["chat/d2", "chat/d3", "chat/d4"]


def test_transitions_adopted_from_another_replica_are_not_recorded(tmp_path: Path) -> None:
    clock = Clock()
    selector = Selector(clock=clock)
    log = BreakerLog(tmp_path / "r.db", "gw-1", {}, every=0.05)
    log.attach(selector)
    log.start()
    selector.breaker("d1").hold(open_for_s=5)
    clock.now += 6
    assert selector.breaker("d1").state is BreakerState.HALF_OPEN
    selector.breaker("d1").force_close()
    assert log.flush()
    log.close()
    with open_store(tmp_path / "r.db") as store:
        assert store.breaker_events(0, time.time() + 60) == []


def test_breaker_events_wait_while_the_database_is_down(
    private_postgres: pgserver.PrivateServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    selector = Selector(clock=clock, breaker_config=BreakerConfig(failure_threshold=1))
    with open_store(private_postgres.url):
        pass  # migrated
    log = BreakerLog(private_postgres.url, "gw-1", {"d1": PRIMARY}, every=0.05)
    log.attach(selector)
    log.start()
    private_postgres.stop()
    try:
        with caplog.at_level(logging.WARNING):
            selector.breaker("d1").record_failure(ErrorClass.TIMEOUT)
            assert not log.flush(timeout=1.0)
        assert "breaker events wait to be written" in caplog.text
    finally:
        private_postgres.start()
    assert log.flush(timeout=30.0)
    log.close()
    with open_store(private_postgres.url) as store:
        events = store.breaker_events(0, time.time() + 60)
    assert [(e.deployment, e.state, e.reason) for e in events] == [(PRIMARY, "open", "timeout")]


# --- end to end: a gateway process, an outage in the simulator, the page --------------------


def gateway_process(workdir: Path, raw: dict[str, Any]) -> LiveGateway:
    """``llmpulse gateway`` serving ``raw``, started."""
    config = workdir / "gateway.yaml"
    config.write_text(yaml.safe_dump(raw))
    return LiveGateway(workdir, config).started()


def scrape(url: str, key: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The gateway's ``/metrics`` (behind its master key): each sample by name and labels."""
    assert httpx.get(f"{url}/metrics", timeout=10).status_code == 401
    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    text.raise_for_status()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.text)
        for s in family.samples
    }


def test_a_forced_outage_shows_in_metrics_and_on_the_page_as_the_simulator_saw_it(
    sim: SimServer, tmp_path: Path
) -> None:
    # Issue 17's "done when": after a forced outage, the gateway's Prometheus fallback counter
    # and the dashboard's panel (its API, served over the gateway's database) agree with the
    # simulator's request log.
    primary, backup = sim_model(sim, **FAST), sim_model(sim, **FAST)
    entries = [
        {**deployment(sim, "chat", "openai", primary, order=1), "model_info": {"id": "primary"}},
        {**deployment(sim, "chat", "openai", backup, order=2), "model_info": {"id": "backup"}},
    ]
    raw = {
        "model_list": entries,
        "router_settings": {"allowed_fails": 2, "cooldown_time": 3},
        "general_settings": {"master_key": MASTER_KEY},
        "gateway": {"monitor": False},
    }
    gateway = gateway_process(tmp_path, raw)
    client = openai.OpenAI(
        base_url=f"{gateway.url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=20
    )

    def ask(n: int) -> None:
        for _ in range(n):
            client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=5
            )

    try:
        ask(3)
        httpx.patch(
            f"{sim.url}/_sim/models/{primary}", json={"errors": {"503": 1.0}}
        ).raise_for_status()
        ask(6)  # two fail over after a 503 and open the breaker; four go straight to the backup
        httpx.patch(f"{sim.url}/_sim/models/{primary}", json={"errors": {}}).raise_for_status()
        time.sleep(3.2)  # the cool-down (long enough for a loaded machine to send the six)
        ask(3)
        samples = scrape(gateway.url, MASTER_KEY)
    finally:
        gateway.stop()
    assert gateway.proc.returncode == 0, gateway.log.read_text()
    at_primary, at_backup = upstream(sim, primary), upstream(sim, backup)
    refused = [r for r in at_primary if r["status"] == 503]
    answered = [r for r in at_primary if r["status"] == 200]
    assert len(refused) == 2 and len(answered) == 6 and len(at_backup) == 6

    # The counter: each fallback is one refused primary attempt the backup then answered.
    fallbacks = {
        dict(labels)["reason"]: value
        for (name, labels), value in samples.items()
        if name == "llmpulse_gateway_fallbacks_total"
    }
    assert fallbacks == {"unavailable": len(refused)}
    assert samples["llmpulse_gateway_fallbacks_total", (("from", PRIMARY), ("group", "chat"),
                   ("reason", "unavailable"), ("to", BACKUP))] == len(refused)  # fmt: skip

    # The panel, through the dashboard's API (behind its token) over the gateway's database.
    web = parse_config(
        {**yaml.safe_load(gateway.config.read_text()),
         "web": {"listen": "127.0.0.1:0", "token": "${WEB_TOKEN}"}},
        env={"WEB_TOKEN": WEB_TOKEN},
    )  # fmt: skip
    with ServedWeb(web, gateway.db) as served, httpx.Client(base_url=served.url) as http:
        assert http.get("/api/v1/gateway").status_code == 401
        body = http.get("/api/v1/gateway", headers={"Authorization": f"Bearer {WEB_TOKEN}"})
        body.raise_for_status()
        panel = body.json()
    assert panel["fallbacks"] == sum(fallbacks.values()) == len(refused)
    assert {r: sum(v) for r, v in panel["fallbacks_per_minute"].items()} == pytest.approx(
        {"unavailable": float(len(refused))}
    )
    (chat,) = panel["groups"]
    assert sum(chat["fallbacks"]) == len(refused)
    assert {d: sum(v) for d, v in chat["deployments"].items()} == {
        PRIMARY: len(answered),
        BACKUP: len(at_backup),
    }
    answered_by = {
        dict(labels)["deployment"]: value
        for (name, labels), value in samples.items()
        if name == "llmpulse_gateway_requests_total" and dict(labels)["status"] == "ok"
    }
    assert answered_by == {PRIMARY: len(answered), BACKUP: len(at_backup)}

    # Incidents and breaker markers, read straight from the database.
    view = View.open(web, gateway.db)
    try:
        page = view.gateway("1h")
    finally:
        view.close()
    # The requests sent to the primary first moved after a refusal each; the four the backup
    # took first while the primary's breaker was open do not end the incident.
    (incident,) = page.incidents
    assert (incident.from_, incident.to) == (PRIMARY, BACKUP)
    assert incident.fallbacks == len(refused)
    assert incident.reasons == {"unavailable": len(refused)}
    assert incident.start_ts == pytest.approx(min(r["received_at"] for r in refused), abs=1.0)
    back = min(r["received_at"] for r in answered if r["received_at"] > incident.start_ts)
    assert incident.end_ts == pytest.approx(back, abs=1.0) and not incident.ongoing
    # The breaker opened on the second 503, went half-open after the cool-down and closed
    # on the primary's first answer since.
    states = [(e.deployment, e.state) for e in page.breaker_events]
    assert states == [
        ("chat/primary", "open"),
        ("chat/primary", "half_open"),
        ("chat/primary", "closed"),
    ]
    opened, half, closed = page.breaker_events
    assert opened.reason == "unavailable" and closed.reason == "probe succeeded"
    assert half.ts - opened.ts == pytest.approx(3.0, abs=0.05)
    assert closed.ts == pytest.approx(back, abs=1.0)
