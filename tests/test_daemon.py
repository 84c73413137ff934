"""The daemon end to end: simulator timelines in, real HTTP receivers out.

Intervals are shortened (checks every few hundred ms) so incidents play out in seconds; the
logic is the same as at the defaults.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import signal
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import openai
import pytest
import yaml
from aiohttp import web

from conftest import base_url, patch, serving, sim_model, spawn_llmpulse
from llmpulse.config import parse_config
from llmpulse.errors import ErrorClass
from llmpulse.monitor import daemon as daemon_module
from llmpulse.monitor.daemon import Daemon
from llmpulse.probe import budget
from llmpulse.probe.scheduler import Scheduler
from llmpulse.result import CheckKind, CheckResult, Source
from llmpulse.store import SQLiteStore
from llmpulse.web.server import serve_beside
from test_gateway_proxy import deployment

FAST = {
    "monitor": {"retry_interval": "300ms", "status_pages": False},
    "web": {"listen": "127.0.0.1:0"},
    "alerting": {"resolve_after": "1500ms", "group_wait": "300ms"},
    "rules": {
        "error_rate_warning": {"window": "10s", "clear_window": "2s"},
        "error_rate_critical": {"window": "10s", "clear_window": "2s"},
    },
}


def make_config(sim, receiver, targets, **extra):
    raw = {
        **FAST,
        "targets": [
            {
                "base_url": base_url(sim, t["provider"]),
                "api_key": "${K}",
                "interval": "900ms",
                "timeout": "2s",
                **t,
            }
            for t in targets
        ],
        "notifiers": [{"type": "webhook", "url": receiver.url}],
        **extra,
    }
    return parse_config(raw, env={"K": "sk-test"})


@contextlib.asynccontextmanager
async def served(config, db: Path, **options):
    """A daemon as `llmpulse run` composes it (its web server beside it), running."""
    daemon = Daemon(config, db_path=db, **options)
    web = serve_beside(daemon)
    task = asyncio.ensure_future(daemon.run())
    try:
        yield daemon, web
    finally:
        daemon.stop_event.set()
        await asyncio.wait_for(task, 30)


@contextlib.asynccontextmanager
async def running(config, db: Path, **options):
    async with served(config, db, **options) as (daemon, _):
        yield daemon


@contextlib.contextmanager
def gateway_beside(raw, db: Path, tmp_path: Path):
    """`llmpulse gateway` serving the config ``raw`` and recording into ``db``, as its own
    process beside a daemon; yields an OpenAI client of it (its key: SIM_KEY)."""
    (tmp_path / "llmpulse.yaml").write_text(yaml.safe_dump(raw))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gateway = spawn_llmpulse(
        ["gateway", "--config", str(tmp_path / "llmpulse.yaml"), "--db", str(db),
         "--listen", f"127.0.0.1:{port}"],
        tmp_path, "gateway.log",
    )  # fmt: skip
    try:
        yield openai.AsyncOpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=10
        )
    finally:
        gateway.send_signal(signal.SIGINT)
        gateway.wait(timeout=30)


async def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.1)


async def test_outage_pages_once_and_recovers_once(sim, receiver, tmp_path):
    model = sim_model(sim, ttft="20ms", output_tokens=5, tokens_per_s=500)
    config = make_config(
        sim, receiver, [{"provider": "anthropic", "model": model, "name": "claude"}]
    )
    async with running(config, tmp_path / "r.db"):
        await asyncio.sleep(2)
        assert receiver.received == []  # healthy: silence
        patch(sim, model, errors={"529": 1.0})
        await wait_for(lambda: receiver.events("consecutive_unavailable"))
        await asyncio.sleep(3)  # the storm goes on: still one page
        patch(sim, model, errors={})
        await wait_for(lambda: len(receiver.events("consecutive_unavailable")) == 2)
        await asyncio.sleep(1)
    down = receiver.events("consecutive_unavailable")
    assert down == [
        ("firing", "consecutive_unavailable", "claude"),
        ("resolved", "consecutive_unavailable", "claude"),
    ]
    firing = next(r for r in receiver.received if r["rule"] == "consecutive_unavailable")
    assert firing["severity"] == "critical" and firing["provider"] == "anthropic"
    assert "unavailable" in firing["summary"]
    with SQLiteStore(tmp_path / "r.db") as store:
        stored = store.latest_results(limit=1000)
    assert any(r.error_class == "unavailable" for r in stored)


async def test_provider_wide_outage_is_one_provider_page(sim, receiver, tmp_path):
    a = sim_model(sim, ttft="20ms", output_tokens=5, tokens_per_s=500)
    b = sim_model(sim, ttft="20ms", output_tokens=5, tokens_per_s=500)
    targets = [
        {"provider": "openai", "model": a, "name": "oa-a"},
        {"provider": "openai", "model": b, "name": "oa-b"},
    ]
    async with running(make_config(sim, receiver, targets), tmp_path / "r.db"):
        await asyncio.sleep(1.5)
        patch(sim, a, errors={"503": 1.0})
        patch(sim, b, errors={"503": 1.0})
        await wait_for(lambda: receiver.received)
        await asyncio.sleep(3)
        patch(sim, a, errors={})
        patch(sim, b, errors={})
        await wait_for(lambda: any(r["status"] == "resolved" for r in receiver.received))
        await asyncio.sleep(1)
    outage = [e for e in receiver.events() if e[1] in ("provider_down", "consecutive_unavailable")]
    assert outage == [
        ("firing", "provider_down", "openai"),
        ("resolved", "provider_down", "openai"),
    ]


async def test_ttft_degradation_rate_limit_climb_and_revoked_key(sim, receiver, tmp_path):
    model = sim_model(sim, ttft="20ms", output_tokens=5, tokens_per_s=500,
                      ratelimit={"requests_limit": 1000, "requests_remaining": 900})  # fmt: skip
    target = {
        "provider": "openai", "model": model, "name": "gpt",
        "rules": {"ttft_p95_high": {"threshold": "300ms", "window": "5s", "min_samples": 2}},
    }  # fmt: skip
    async with running(make_config(sim, receiver, [target]), tmp_path / "r.db"):
        await asyncio.sleep(1.5)
        patch(sim, model, ttft="600ms")
        await wait_for(lambda: receiver.events("ttft_p95_high"))
        patch(
            sim, model, ttft="20ms", ratelimit={"requests_limit": 1000, "requests_remaining": 100}
        )
        await wait_for(lambda: receiver.events("rate_limit_headroom"))
        patch(sim, model, errors={"401": 1.0})
        await wait_for(lambda: receiver.events("auth_failure"))
        patch(sim, model, errors={}, ratelimit={"requests_limit": 1000, "requests_remaining": 900})
        await wait_for(lambda: len(receiver.events("auth_failure")) == 2)
        await wait_for(lambda: len(receiver.events("rate_limit_headroom")) == 2)
        await wait_for(lambda: len(receiver.events("ttft_p95_high")) == 2, timeout=30)
    for rule in ("ttft_p95_high", "rate_limit_headroom", "auth_failure"):
        assert [s for s, *_ in receiver.events(rule)] == ["firing", "resolved"], rule
    assert all(e[1] != "consecutive_unavailable" for e in receiver.events())  # 401 isn't an outage


async def test_receiver_down_delays_but_loses_nothing(sim, receiver, db_location):
    model = sim_model(sim, ttft="20ms", output_tokens=5, tokens_per_s=500)
    # Delivery is under test, not which availability rule leads the page: with the error-rate
    # rules off, the timing of the first failures cannot change the page's rule.
    rules = {r: {"enabled": False} for r in FAST["rules"]}
    config = make_config(
        sim, receiver, [{"provider": "gemini", "model": model, "name": "gem"}], rules=rules
    )
    receiver.down = True
    async with running(config, db_location):
        await asyncio.sleep(1)
        patch(sim, model, errors={"503": 1.0})
        await wait_for(lambda: receiver.refused >= 2)
        patch(sim, model, errors={})
        await asyncio.sleep(3)  # resolved while the receiver is still down
        receiver.down = False
        await wait_for(lambda: len(receiver.received) == 2, timeout=30)
    assert receiver.events() == [
        ("firing", "consecutive_unavailable", "gem"),
        ("resolved", "consecutive_unavailable", "gem"),
    ]


async def test_restart_mid_incident_does_not_page_twice(sim, receiver, db_location):
    """The next leader (on PostgreSQL, another agent) resumes the same alert records."""
    model = sim_model(sim, ttft="20ms", output_tokens=5, tokens_per_s=500)
    config = make_config(sim, receiver, [{"provider": "anthropic", "model": model, "name": "c"}])
    db = db_location
    async with running(config, db):
        await asyncio.sleep(1)
        patch(sim, model, errors={"529": 1.0})
        await wait_for(lambda: receiver.received)
    assert receiver.events() == [("firing", "consecutive_unavailable", "c")]
    async with running(config, db):  # still down after the restart
        await asyncio.sleep(3)
        assert receiver.events() == [("firing", "consecutive_unavailable", "c")]
        patch(sim, model, errors={})
        await wait_for(lambda: len(receiver.received) == 2)
    assert receiver.events()[-1] == ("resolved", "consecutive_unavailable", "c")


async def test_silence_from_config_holds_back_the_page(sim, receiver, tmp_path):
    model = sim_model(sim, ttft="20ms", output_tokens=5, tokens_per_s=500, errors={"503": 1.0})
    config = make_config(
        sim, receiver, [{"provider": "openai", "model": model, "name": "quiet"}],
        silences=[{"target": "qui*", "ends": "2999-01-01T00:00:00Z", "comment": "maintenance"}],
    )  # fmt: skip
    async with running(config, tmp_path / "r.db") as daemon:
        await asyncio.sleep(3)
        assert daemon.alerting is not None  # the only daemon on this file leads
        states = {r.rule: r.state for r in daemon.alerting.engine.records.values()}
    assert receiver.received == []
    assert states["consecutive_unavailable"] == "firing"  # the state is real, only the page waits


async def test_a_silence_holds_back_what_a_new_leader_replays(sim, receiver, tmp_path):
    """The leader's first act refills its windows from the store and evaluates them: an alert
    that replay fires (here, failures another agent stored) is silenced as any other."""
    model = sim_model(sim, ttft="20ms", output_tokens=5, tokens_per_s=500)
    config = make_config(
        sim, receiver, [{"provider": "openai", "model": model, "name": "quiet"}],
        silences=[{"target": "qui*", "ends": "2999-01-01T00:00:00Z", "comment": "maintenance"}],
    )  # fmt: skip
    start = datetime.now(UTC) - timedelta(seconds=20)
    failed = [
        CheckResult("quiet", "openai", model, kind, start + timedelta(seconds=i), False,
                    error_class=ErrorClass.UNAVAILABLE, agent="elsewhere")
        for i in range(6) for kind in (CheckKind.INFERENCE, CheckKind.STREAM)
    ]  # fmt: skip
    with SQLiteStore(tmp_path / "r.db") as store:
        store.write_results(failed)
    async with running(config, tmp_path / "r.db") as daemon:
        await wait_for(lambda: daemon.alerting is not None)
        alerting = daemon.alerting
        assert alerting is not None
        await asyncio.sleep(1)
        states = {r.rule: r.state for r in alerting.engine.records.values()}
    assert states.get("consecutive_unavailable") is not None  # the replay fired it
    assert receiver.received == []


async def test_every_channel_gets_one_page_and_one_recovery(sim, receiver, tmp_path):
    """Slack, PagerDuty and Discord payloads on a local server; email on a real SMTP server."""
    import email
    import socket as socket_module

    from aiosmtpd.controller import Controller

    mails: list[email.message.Message] = []

    class Mailbox:
        async def handle_DATA(self, server, session, envelope):
            mails.append(email.message_from_bytes(envelope.content))
            return "250 OK"

    with socket_module.socket() as s:
        s.bind(("127.0.0.1", 0))
        smtp_port = s.getsockname()[1]
    smtp = Controller(Mailbox(), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    calls: dict[str, list[dict]] = {"slack": [], "pagerduty": [], "discord": []}

    def recorder(name):
        async def handle(request: web.Request) -> web.Response:
            calls[name].append(json.loads(await request.read()))
            return web.Response(status=202 if name == "pagerduty" else 200, text="ok")

        return handle

    app = web.Application()
    for name in calls:
        app.router.add_post(f"/{name}", recorder(name))
    try:
        async with serving(app) as base:
            model = sim_model(sim, ttft="20ms", output_tokens=5, tokens_per_s=500)
            config = parse_config(
                {
                    **FAST,
                    "targets": [{"provider": "groq", "model": model, "name": "groq-fast",
                                 "base_url": sim.openai_base, "api_key": "${K}", "interval": "900ms"}],
                    "notifiers": [
                        {"type": "slack", "webhook_url": f"{base}/slack"},
                        {"type": "pagerduty", "routing_key": "${PD}", "url": f"{base}/pagerduty"},
                        {"type": "discord", "webhook_url": f"{base}/discord"},
                        {"type": "email", "host": "127.0.0.1", "port": smtp_port, "starttls": False,
                         "sender": "llmpulse@example.com", "to": ["oncall@example.com"]},
                    ],
                },
                env={"K": "sk", "PD": "routing-key-123"},
            )  # fmt: skip
            async with running(config, tmp_path / "r.db"):
                await asyncio.sleep(1)
                patch(sim, model, errors={"503": 1.0})
                await wait_for(lambda: calls["pagerduty"] and len(mails) == 1)
                await asyncio.sleep(2)
                patch(sim, model, errors={})
                await wait_for(lambda: len(calls["pagerduty"]) == 2 and len(mails) == 2)
                await asyncio.sleep(1)
    finally:
        smtp.stop()
    trigger, resolve = calls["pagerduty"]
    assert (trigger["event_action"], resolve["event_action"]) == ("trigger", "resolve")
    assert trigger["dedup_key"] == resolve["dedup_key"]
    assert trigger["routing_key"] == "routing-key-123"
    assert (
        trigger["payload"]["severity"] == "critical" and trigger["payload"]["source"] == "groq-fast"
    )
    assert len(calls["slack"]) == 2 and len(calls["discord"]) == 2
    assert "groq-fast" in json.dumps(calls["slack"][0])
    subjects = [m["Subject"] for m in mails]
    assert "FIRING" in subjects[0] and "RESOLVED" in subjects[1]


async def test_a_429_storm_is_not_an_outage(sim, receiver, tmp_path):
    model = sim_model(sim, ttft="20ms", output_tokens=5, tokens_per_s=500)
    config = make_config(sim, receiver, [{"provider": "openai", "model": model, "name": "busy"}])
    async with running(config, tmp_path / "r.db") as daemon:
        await asyncio.sleep(1)
        # Probes wait each Retry-After out: a short one keeps them coming in numbers.
        patch(sim, model, errors={"429": 1.0}, retry_after="500ms")
        await asyncio.sleep(4)
        assert daemon.alerting is not None
        windows = list(daemon.alerting.windows["busy"][None].samples)
        patch(sim, model, errors={})
    assert sum(s.error_class == "rate_limited" for s in windows) >= 5
    assert receiver.received == []  # 429s are the caller's limit: no page, no outage


PASTED = "sk-proj-" + "Q7x" * 16  # key-shaped: the redactor knows it by its form


async def test_official_status_change_is_alerted_and_carried(sim, receiver, tmp_path):
    page = {"indicator": "none", "description": "All Systems Operational"}

    async def summary(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "page": {"name": "OpenAI", "url": "https://status.openai.com"},
                "status": page,
                "components": [],
                "incidents": [],
                "scheduled_maintenances": [],
            }
        )

    app = web.Application()
    app.router.add_get("/api/v2/summary.json", summary)
    async with serving(app) as base:
        status_url = f"{base}/api/v2/summary.json"
        model = sim_model(sim, ttft="20ms", output_tokens=5, tokens_per_s=500)
        config = make_config(
            sim, receiver, [{"provider": "openai", "model": model, "name": "gpt"}],
            monitor={"retry_interval": "300ms", "status_pages": True, "status_interval": "300ms"},
            providers={"openai": {"status_page": status_url}},
        )  # fmt: skip
        async with running(config, tmp_path / "r.db"):
            await asyncio.sleep(1.5)
            # The page's words are outside text: a key pasted into them reaches nobody.
            page.update(indicator="major", description=f"Partial System Outage {PASTED}")
            await wait_for(lambda: receiver.events("official_status"))
            patch(sim, model, errors={"503": 1.0})  # our own measurement agrees
            await wait_for(lambda: receiver.events("consecutive_unavailable"))
            patch(sim, model, errors={})
            page.update(indicator="none", description="All Systems Operational")
            await wait_for(lambda: len(receiver.events("official_status")) == 2)
            await wait_for(lambda: len(receiver.events("consecutive_unavailable")) == 2)
    official = [r for r in receiver.received if r["rule"] == "official_status"]
    assert [r["status"] for r in official] == ["firing", "resolved"]
    assert (
        official[0]["severity"] == "critical" and "Partial System Outage" in official[0]["summary"]
    )
    assert PASTED not in json.dumps(receiver.received) and "[redacted]" in official[0]["summary"]
    outage = next(r for r in receiver.received if r["rule"] == "consecutive_unavailable")
    assert outage["official_status"] == "major"  # the provider's own word, beside ours


async def test_a_locked_database_delays_writes_but_loses_no_result(
    sim, receiver, tmp_path, caplog, monkeypatch
):
    import sqlite3

    monkeypatch.setattr(daemon_module, "ROLLUP_EVERY_S", 1.0)  # rollups meet the lock too
    model = sim_model(sim, ttft="20ms", output_tokens=5, tokens_per_s=500)
    config = make_config(sim, receiver, [{"provider": "openai", "model": model, "name": "w"}])
    db = tmp_path / "r.db"
    async with running(config, db):
        await asyncio.sleep(1)
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # every write now fails after the 5 s busy timeout
        await asyncio.sleep(7)
        blocker.execute("COMMIT")
        blocker.close()
        await asyncio.sleep(2)
    with SQLiteStore(db) as store:
        stored = [
            r
            for r in store.latest_results(limit=10_000)
            if r.model == model and r.check != "models"
        ]
    sent = [  # the simulator logs completions per model (a models list names no model)
        r
        for r in httpx.get(f"{sim.url}/_sim/requests", timeout=10).json()["requests"]
        if r["model"] == model
    ]
    assert len(stored) == len(sent) > 10
    assert len({r.request_id for r in stored}) == len(stored)  # nothing written twice
    # Said once when writes (results, rollups) started failing, once when they worked again;
    # never a traceback for it.
    said = [r.getMessage() for r in caplog.records if "results database" in r.getMessage()]
    assert len(said) == 2, said
    assert said[0].startswith("results database unwritable (") and "locked" in said[0]
    assert said[1] == "results database writable again"
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


@pytest.mark.parametrize("region", [None, "eu-west"])  # the gateway's: none
async def test_a_daemon_and_a_gateway_on_one_database_page_once_per_incident(
    sim, receiver, tmp_path, region
):
    model = sim_model(sim, ttft="20ms", output_tokens=5, tokens_per_s=500)
    db = tmp_path / "r.db"
    raw = {
        **FAST,
        "model_list": [deployment(sim, "chat", "openai", model)],
        "gateway": {"probe_interval": "900ms"},
        "notifiers": [{"type": "webhook", "url": receiver.url}],
    }
    config = parse_config(raw, env={"SIM_KEY": "sk-sim"})
    target = f"chat/openai/{model}"

    async def ask() -> None:
        with contextlib.suppress(openai.APIError):
            await client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "hi"}]
            )

    async def firing() -> list[dict]:
        async with httpx.AsyncClient() as http:  # the daemon serves on this event loop
            alerts = (await http.get(f"{web.urls[0]}api/v1/alerts", timeout=10)).json()
        return [a for a in alerts["firing"] if a["target"] == target]

    with gateway_beside(raw, db, tmp_path) as client:
        async with served(config, db, region=region) as (_, web):
            for _ in range(20):
                await ask()  # healthy traffic, once the gateway is up
                await asyncio.sleep(0.1)
            patch(sim, model, errors={"503": 1.0})
            for _ in range(30):
                await ask()
                await asyncio.sleep(0.1)
            await wait_for(lambda: receiver.events())
            listed = await firing()
            assert [a["rule"] for a in listed] == ["consecutive_unavailable"], listed
            patch(sim, model, errors={})
            for _ in range(20):
                await ask()
                await asyncio.sleep(0.1)
            await wait_for(lambda: any(e[0] == "resolved" for e in receiver.events()))
            await asyncio.sleep(1)
    assert receiver.events() == [
        ("firing", "consecutive_unavailable", target),
        ("resolved", "consecutive_unavailable", target),
    ]


async def test_a_switched_model_is_announced_once_and_resolves_by_itself(sim, receiver, tmp_path):
    model = sim_model(sim, ttft="20ms", output_tokens=5, tokens_per_s=500)
    config = make_config(
        sim, receiver, [{"provider": "openai", "model": model, "name": "gpt"}],
        rules={**FAST["rules"], "model_changed": {"window": "2s"}},
    )  # fmt: skip
    async with running(config, tmp_path / "r.db"):
        await asyncio.sleep(2)
        assert receiver.received == []  # the model served at start is no change
        patch(sim, model, served_model=f"{model}-2026-12-01", system_fingerprint="fp_new")
        await wait_for(lambda: len(receiver.events("model_changed")) == 2)
        await asyncio.sleep(2)  # still serving the new model: nothing more
    assert receiver.events("model_changed") == [
        ("firing", "model_changed", "gpt"),
        ("resolved", "model_changed", "gpt"),
    ]
    assert len(receiver.received) == 2
    firing = receiver.received[0]
    assert firing["severity"] == "warning"
    assert firing["previous"] == f"{model} (fp_sim)"
    assert firing["current"] == f"{model}-2026-12-01 (fp_new)"
    assert (
        firing["summary"] == f"served model changed: {model} (fp_sim) → {model}-2026-12-01 (fp_new)"
    )


async def test_a_model_gone_from_the_models_list_pages_once_until_listed_again(
    sim, receiver, tmp_path
):
    model = sim_model(sim, ttft="20ms", output_tokens=5, tokens_per_s=500)
    config = make_config(sim, receiver, [{"provider": "openai", "model": model, "name": "gpt"}])
    async with running(config, tmp_path / "r.db"):
        await asyncio.sleep(2)
        assert receiver.received == []
        patch(sim, model, listed=False)  # still served: only the list says it is going
        await wait_for(lambda: receiver.events("model_unlisted"))
        await asyncio.sleep(2)
        patch(sim, model, listed=True)
        await wait_for(lambda: len(receiver.events("model_unlisted")) == 2)
    assert receiver.events() == [
        ("firing", "model_unlisted", "gpt"),
        ("resolved", "model_unlisted", "gpt"),
    ]
    firing = receiver.received[0]
    assert firing["severity"] == "critical"
    assert firing["summary"] == f"{model} is missing from the provider's models list"


async def test_a_model_retiring_within_the_notice_pages_once(sim, receiver, tmp_path):
    model = sim_model(sim, ttft="20ms", output_tokens=5, tokens_per_s=500)
    retires = (datetime.now(UTC) + timedelta(days=10)).date()
    config = make_config(
        sim, receiver, [{"provider": "openai", "model": model, "name": "gpt",
                         "retires": retires.isoformat()}],
    )  # fmt: skip
    async with running(config, tmp_path / "r.db"):
        await wait_for(lambda: receiver.events("model_deprecated"))
        await asyncio.sleep(3)  # every check judges it again: still one notice
    assert receiver.events() == [("firing", "model_deprecated", "gpt")]
    firing = receiver.received[0]
    assert firing["severity"] == "warning" and firing["threshold"] == 30 * 86400
    assert 9 * 86400 < firing["value"] <= 10 * 86400  # seconds left
    assert firing["summary"].startswith(f"{model} retires on {retires.isoformat()} (in ")


def probe_calls(sim, model, start, end):
    """When the daemon's model calls of ``model`` reached the simulator within the range."""
    rows = httpx.get(f"{sim.url}/_sim/requests", timeout=10).json()["requests"]
    return [
        r["received_at"] for r in rows
        if r["model"] == model and start < r["received_at"] < end
        and "traffic here" not in json.dumps(r["body"])
    ]  # fmt: skip


async def test_successful_traffic_stands_in_for_inference_and_stream_probes_not_the_models_list(
    sim, receiver, tmp_path
):
    model = sim_model(sim, ttft="10ms", output_tokens=5, tokens_per_s=500)
    db = tmp_path / "r.db"
    raw = {
        **FAST,
        "model_list": [deployment(sim, "chat", "openai", model)],
        "gateway": {"probe_interval": "900ms"},
        "notifiers": [{"type": "webhook", "url": receiver.url}],
    }
    config = parse_config(raw, env={"SIM_KEY": "sk-sim"})
    target = f"chat/openai/{model}"

    async def traffic(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            await client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "traffic here"}]
            )
            if time.monotonic() >= deadline:
                return
            await asyncio.sleep(0.1)

    async def gateway_up() -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                return await traffic(0.0)
            except openai.APIConnectionError:
                assert time.monotonic() < deadline, "the gateway did not start"
                await asyncio.sleep(0.2)

    with gateway_beside(raw, db, tmp_path) as client:
        async with served(config, db) as (daemon, web):
            await wait_for(lambda: probe_calls(sim, model, 0, time.time() + 1))  # probing
            await gateway_up()
            await traffic(2.0)  # the daemon reads it back from the store (it leads)
            start = time.time()
            await traffic(4.0)
            end = time.time()
            async with httpx.AsyncClient() as http:
                detail = (await http.get(f"{web.urls[0]}api/v1/targets/{target}")).json()
            assert probe_calls(sim, model, start, end) == []  # no model call from a probe
            assert set(detail["card"]["checked_by_traffic"]) == {"inference", "stream"}
            # Traffic stops: the probes call the model again within an interval or two.
            await wait_for(lambda: daemon.checked_by_traffic(target) == {}, timeout=5)
            assert len(probe_calls(sim, model, end, time.time() + 1)) >= 2
    with SQLiteStore(db) as store:
        stored = store.results_between(start, end)
    probes = [r.check for r in stored if r.source == "probe"]
    assert probes.count("models") >= 3 and set(probes) == {"models"}  # still listed
    assert sum(r.source == "traffic" and r.ok for r in stored) >= 20


async def test_a_spent_probe_budget_stretches_the_model_calls_and_the_cost_page_says_so(
    sim, receiver, tmp_path, caplog
):
    model = sim_model(sim, ttft="10ms", output_tokens=5, tokens_per_s=500)
    prices = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}
    config = make_config(
        sim, receiver, [{"provider": "openai", "model": model, "name": "paid", "prices": prices}],
        monitor={**FAST["monitor"], "probe_budget_usd": 20},
    )  # fmt: skip
    db = tmp_path / "r.db"
    with SQLiteStore(db) as store:  # this month's probes spent the budget already
        store.write_results([CheckResult(
            target="paid", provider="openai", model=model, check="stream", ok=True,
            timestamp=datetime.now(UTC) - timedelta(seconds=5), cost_usd=20.0,
        )])  # fmt: skip
    start = time.time()
    async with served(config, db) as (_, web):
        await asyncio.sleep(4)
        async with httpx.AsyncClient() as http:
            budgets = (await http.get(f"{web.urls[0]}api/v1/budgets")).json()
    end = time.time()
    # Each model call ran its first turn, then waits an hour; the models list, free, did not.
    assert len(probe_calls(sim, model, start, end)) <= 2
    with SQLiteStore(db) as store:
        models = [r for r in store.results_between(start, end) if r.check == "models"]
    assert len(models) >= 3
    line = next(r.message for r in caplog.records if r.message.startswith("probe budget"))
    assert "$20.00/month: $20.00 spent, $0.00 left" in line
    assert "2 probes stretched to every 1h" in line and "paid/inference, paid/stream" in line
    probes = budgets["probes"]
    assert (probes["max_usd"], probes["percent"]) == (20.0, pytest.approx(100.0, abs=0.1))
    assert probes["spent_usd"] == pytest.approx(20.0, abs=0.01)
    # Every 900 ms: 2.88 M runs of each check a month, 3 and 146 millionths of a dollar each
    # ("ping" is 1 token in and 1 out; the counting prompt 18 in, the target's 64 out).
    assert probes["expected_usd_per_month"] == pytest.approx(2_880_000 * 149e-6)


async def test_agents_spending_probes_share_the_budget_instead_of_each_spending_it_all(
    sim, receiver, tmp_path
):
    # The probes at their configured interval spend 3/4 of the month's allowance: alone they
    # fit, but two agents probing so would spend 1.5 times the budget.
    prices = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}
    allowance = budget.allowance(20.0, 0.0, time.time())
    interval = round(149e-6 / (0.75 * allowance))  # inference and stream: 149 millionths a turn
    target = {"provider": "openai", "model": "m", "name": "paid", "prices": prices,
              "interval": f"{interval}s", "checks": ["inference", "stream"]}  # fmt: skip
    config = make_config(sim, receiver, [target],
                         monitor={**FAST["monitor"], "probe_budget_usd": 20})  # fmt: skip
    daemon = Daemon(config, db_path=tmp_path / "r.db", agent="us-east-1")
    scheduler = Scheduler(config.targets, lambda *_: None, lambda *_: None)  # never run
    (paid,) = config.targets

    def probe(agent, cost, ago):
        return CheckResult(
            target="paid", provider="openai", model="m", check="stream", ok=True, agent=agent,
            timestamp=datetime.fromtimestamp(time.time() - ago, UTC), cost_usd=cost,
        )  # fmt: skip

    try:
        daemon.store.write_results([probe("us-east-1", 1e-4, 60), probe("listing", 0.0, 60),
                                    probe("gone", 1e-4, 4000)])  # fmt: skip
        await daemon._fit_budget(scheduler)
        assert scheduler.interval(paid, CheckKind.INFERENCE) == interval  # alone, it fits
        daemon.store.write_results([probe("eu-west-1", 1e-4, 600)])
        await daemon._fit_budget(scheduler)
    finally:
        daemon.store.close()
        daemon.state.close()
        daemon.outbox.close()
    # Half the allowance each: both checks at the interval that spends it.
    assert scheduler.interval(paid, CheckKind.INFERENCE) == pytest.approx(
        149e-6 / (allowance / 2), rel=0.01
    )
    assert scheduler.interval(paid, CheckKind.STREAM) == scheduler.interval(
        paid, CheckKind.INFERENCE
    )


def test_a_daemon_not_leading_learns_each_targets_newest_successful_traffic_from_the_store(
    sim, receiver, tmp_path
):
    config = make_config(sim, receiver, [{"provider": "openai", "model": "m", "name": "a"},
                                         {"provider": "openai", "model": "m", "name": "b"}])  # fmt: skip
    daemon = Daemon(config, db_path=tmp_path / "r.db")
    now = time.time()

    def traffic(target, ago, ok=True):
        return CheckResult(
            target=target, provider="openai", model="m", check="stream", ok=ok,
            timestamp=datetime.fromtimestamp(now - ago, UTC), source=Source.TRAFFIC,
        )  # fmt: skip

    probe = dataclasses.replace(traffic("b", 1), source=Source.PROBE)
    try:
        daemon.store.write_results([
            traffic("a", 3), traffic("a", 2),  # all successes: the newest is when
            traffic("b", 3), traffic("b", 2, ok=False),  # a failure after: since the range began
            probe, traffic("c", 20),  # a probe is no traffic; c is older than the range
            # a's client asking another model under a's name: it says nothing of a's model
            dataclasses.replace(traffic("a", 1), model="another-model"),
        ])  # fmt: skip
        seen = daemon.recent_traffic(now - 10, now)
        # An agent of a region: the gateway's traffic (no region) is not its region's view.
        daemon.region = "eu-west"
        assert daemon.recent_traffic(now - 10, now) == {}
        daemon.store.write_results([dataclasses.replace(traffic("a", 1), region="eu-west")])
        assert daemon.recent_traffic(now - 10, now) == {"a": pytest.approx(now - 1, abs=0.01)}
    finally:
        daemon.store.close()
        daemon.state.close()
        daemon.outbox.close()
    assert seen == {"a": pytest.approx(now - 2, abs=0.01), "b": now - 10}


async def test_a_custom_probe_runs_at_its_own_interval_beside_the_targets_checks(
    sim, receiver, tmp_path
):
    model = sim_model(sim, ttft="10ms", answer="Paris")
    probe = {"name": "city", "messages": [{"role": "user", "content": "Capital of France?"}],
             "expect": {"contains": "Paris"}, "interval": "300ms"}  # fmt: skip
    config = make_config(sim, receiver, [{"provider": "openai", "model": model, "name": "t",
                                          "interval": "2s", "checks": ["models"],
                                          "probes": [probe]}])  # fmt: skip
    db = tmp_path / "r.db"
    start = time.time()
    async with running(config, db):
        await asyncio.sleep(2.5)
    with SQLiteStore(db) as store:
        stored = store.results_between(start, time.time())
    city = [r for r in stored if r.check == "city"]
    assert 6 <= len(city) <= 10 and all(r.ok and r.kind == "inference" for r in city)
    # Every 2 s from a random offset within the first 2 s: once or twice in 2.5 s.
    others = [r.check for r in stored if r.check != "city"]
    assert others in (["models"], ["models", "models"])
