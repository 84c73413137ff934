"""On-call end to end: routes, escalation and acknowledgement through a running daemon.

The simulator is the provider; the receivers are real: Slack, PagerDuty and a phone webhook
on a local HTTP server, email on a real SMTP server (aiosmtpd), SMS through a local fake of
Twilio's REST API, and a real Alertmanager. Delays are seconds here instead of minutes; the
logic is the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from amserver import AUTH, Alertmanager
from conftest import base_url, patch, serving, sim_model
from faketwilio import FakeTwilio
from llmpulse.alerts.state import AlertStateStore
from llmpulse.config import parse_config
from llmpulse.sim.server import SimServer
from test_daemon import FAST, served, wait_for

SID, TOKEN = "AC" + "0" * 31 + "1", "twilio-test-token"


class Channels:
    """What each channel received, as (status, rule, escalation step) in arrival order."""

    def __init__(self) -> None:
        self.got: dict[str, list[dict[str, Any]]] = {"chat": [], "pager": [], "phone": []}
        self.mails: list[email.message.Message] = []

    def handler(self, name: str) -> Any:
        async def handle(request: web.Request) -> web.Response:
            self.got[name].append(json.loads(await request.read()))
            return web.Response(status=202 if name == "pager" else 200, text="ok")

        return handle

    def seen(self) -> dict[str, list[str]]:
        """Per channel, each notice as ``status:rule[:step]``, in order."""
        out = {}
        for name, bodies in self.got.items():
            out[name] = [_describe(name, b) for b in bodies]
        out["mail"] = [str(m["Subject"]).split("]")[0].strip("[").lower() for m in self.mails]
        return out


def _describe(channel: str, body: dict[str, Any]) -> str:
    if channel == "pager":  # PagerDuty Events v2: the action, and the alert it acts on
        return f"{body['event_action']}:{body['dedup_key']}"
    if channel == "chat":  # Slack: the header block says the status and the rule
        return body["blocks"][0]["text"]["text"].split(" ", 1)[1].lower()
    return f"{body['status']}:{body['rule']}:{body['escalation_step']}"


@contextlib.contextmanager
def mailbox(channels: Channels) -> Iterator[int]:
    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            channels.mails.append(email.message_from_bytes(envelope.content))
            return "250 OK"

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    smtp = Controller(Handler(), hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        yield port
    finally:
        smtp.stop()


@contextlib.asynccontextmanager
async def receivers() -> AsyncIterator[tuple[Channels, str, int]]:
    channels = Channels()
    app = web.Application()
    for name in channels.got:
        app.router.add_post(f"/{name}", channels.handler(name))
    with mailbox(channels) as smtp_port:
        async with serving(app) as url:
            yield channels, url, smtp_port


def oncall_config(
    sim: SimServer, model: str, url: str, smtp_port: int, storage: str | Path, escalate: str
) -> Any:
    raw = oncall_raw(sim, model, url, smtp_port, storage, escalate)
    return parse_config(raw, env={"K": "sk-test", "PD": "pd-routing-key"})


def oncall_raw(
    sim: SimServer, model: str, url: str, smtp_port: int, storage: str | Path, escalate: str
) -> dict[str, Any]:
    return {
        **FAST,
        "storage": str(storage),
        "targets": [
            {
                "provider": "anthropic",
                "model": model,
                "name": "claude",
                "api_key": "${K}",
                "base_url": base_url(sim, "anthropic"),
                "interval": "700ms",
                "timeout": "2s",
            },
        ],
        "rules": {
            **FAST["rules"],
            "ttft_p95_high": {"threshold": "300ms", "window": "4s", "min_samples": 2},
        },
        "notifiers": [
            {"name": "chat", "type": "slack", "webhook_url": f"{url}/chat"},
            {"name": "pager", "type": "pagerduty", "routing_key": "${PD}", "url": f"{url}/pager"},
            {"name": "phone", "type": "webhook", "url": f"{url}/phone"},
            {
                "name": "mail",
                "type": "email",
                "host": "127.0.0.1",
                "port": smtp_port,
                "starttls": False,
                "sender": "llmpulse@example.com",
                "to": ["oncall@example.com"],
            },
        ],
        "alerting": {
            **FAST["alerting"],
            "routes": [
                {
                    "match": {"severity": "critical"},
                    "notify": ["pager", "chat"],
                    "escalate": [{"after": escalate, "notify": ["phone"]}],
                },
                {"notify": ["mail"]},
            ],
        },
        "web": {"listen": "127.0.0.1:0", "public_url": "https://pulse.example.com"},
    }


async def test_a_ttft_warning_reaches_only_the_warning_route(
    sim: SimServer, tmp_path: Path
) -> None:
    model = sim_model(sim, ttft="600ms", output_tokens=5, tokens_per_s=500)
    async with receivers() as (channels, url, smtp_port):
        config = oncall_config(sim, model, url, smtp_port, tmp_path / "r.db", "2s")
        async with served(config, tmp_path / "r.db"):
            await wait_for(lambda: channels.mails, timeout=30)
            patch(sim, model, ttft="20ms")
            await wait_for(lambda: len(channels.mails) == 2, timeout=30)
    assert channels.seen() == {
        "chat": [], "pager": [], "phone": [], "mail": ["firing warning", "resolved warning"],
    }  # fmt: skip
    assert "ttft_p95_high claude" in str(channels.mails[0]["Subject"])
    assert "https://pulse.example.com/alerts#alert-" in channels.mails[0].get_payload()


async def test_an_unacknowledged_outage_escalates_and_recovers_to_everyone_paged(
    sim: SimServer, tmp_path: Path
) -> None:
    model = sim_model(sim, ttft="20ms", output_tokens=5, tokens_per_s=500)
    async with receivers() as (channels, url, smtp_port):
        config = oncall_config(sim, model, url, smtp_port, tmp_path / "r.db", "2s")
        async with served(config, tmp_path / "r.db"):
            await asyncio.sleep(1)
            patch(sim, model, errors={"529": 1.0})
            await wait_for(lambda: channels.got["pager"], timeout=30)
            paged = time.monotonic()
            await wait_for(lambda: channels.got["phone"], timeout=30)
            escalated_after = time.monotonic() - paged
            patch(sim, model, errors={})
            await wait_for(lambda: len(channels.got["phone"]) == 2, timeout=30)
    assert 1.5 <= escalated_after <= 4, escalated_after
    fp = channels.got["phone"][0]["fingerprint"]
    assert channels.seen() == {
        "pager": [f"trigger:{fp}", f"resolve:{fp}"],
        "chat": ["firing: consecutive_unavailable", "resolved: consecutive_unavailable"],
        "phone": ["firing:consecutive_unavailable:1", "resolved:consecutive_unavailable:1"],
        "mail": [],
    }
    escalation = channels.got["phone"][0]
    assert escalation["url"] == f"https://pulse.example.com/alerts#alert-{fp}"
    assert escalation["acknowledged_by"] is None


async def test_an_acknowledgement_stops_the_escalation_and_tells_the_paged_once(
    sim: SimServer, tmp_path: Path
) -> None:
    model = sim_model(sim, ttft="20ms", output_tokens=5, tokens_per_s=500)
    async with receivers() as (channels, url, smtp_port):
        config = oncall_config(sim, model, url, smtp_port, tmp_path / "r.db", "4s")
        async with (
            served(config, tmp_path / "r.db") as (_, web_server),
            httpx.AsyncClient(base_url=web_server.urls[0]) as api,
        ):
            await asyncio.sleep(1)
            patch(sim, model, errors={"529": 1.0})
            await wait_for(lambda: channels.got["pager"], timeout=30)
            fp = channels.got["pager"][0]["dedup_key"]
            assert (await api.post("api/v1/alerts/0000/ack")).status_code == 404
            answer = await api.post(
                f"api/v1/alerts/{fp}/ack", json={"by": "ana", "comment": "on it"}
            )
            assert answer.status_code == 200
            alert = answer.json()
            assert (alert["acknowledged_by"], alert["acknowledged_comment"]) == ("ana", "on it")
            again = await api.post(f"api/v1/alerts/{fp}/ack", json={"by": "bob"})
            assert again.json()["acknowledged_by"] == "ana"  # idempotent: the first one holds
            await wait_for(lambda: len(channels.got["pager"]) == 2, timeout=10)
            await asyncio.sleep(5)  # past the escalation delay: nobody is called
            assert channels.got["phone"] == []
            listed = (await api.get(f"api/v1/alerts/{fp}")).json()
            assert listed["acknowledged_by"] == "ana" and listed["notified"] == ["pager", "chat"]
            patch(sim, model, errors={})
            await wait_for(lambda: len(channels.got["pager"]) == 3, timeout=30)
            await asyncio.sleep(1)
    assert channels.seen() == {
        "pager": [f"trigger:{fp}", f"acknowledge:{fp}", f"resolve:{fp}"],
        "chat": [
            "firing: consecutive_unavailable",
            "acknowledged: consecutive_unavailable",
            "resolved: consecutive_unavailable",
        ],
        "phone": [],
        "mail": [],
    }
    facts = json.dumps(channels.got["chat"][1])
    assert "by ana at" in facts and f"/alerts#alert-{fp}" in facts


@pytest.mark.parametrize("acknowledged", [False, True], ids=["escalated", "acknowledged"])
async def test_a_new_leader_neither_repeats_nor_loses_a_notice(
    sim: SimServer, db_location: str | Path, acknowledged: bool
) -> None:
    """A restart on SQLite, a handover to the next leader on PostgreSQL: the same records."""
    model = sim_model(sim, ttft="20ms", output_tokens=5, tokens_per_s=500)
    async with receivers() as (channels, url, smtp_port):
        config = oncall_config(sim, model, url, smtp_port, db_location, "3s")
        async with served(config, db_location):
            await asyncio.sleep(1)
            patch(sim, model, errors={"529": 1.0})
            await wait_for(lambda: channels.got["pager"], timeout=30)
            fp = channels.got["pager"][0]["dedup_key"]
            if acknowledged:
                state = AlertStateStore.open(db_location)
                # The page can arrive a moment before the leader's tick has saved its record.
                await wait_for(lambda: state.record(fp) is not None, timeout=5)
                state.acknowledge(fp, "ana", "", time.time())  # as `llmpulse ack` does
                state.close()
                await wait_for(lambda: len(channels.got["pager"]) == 2, timeout=10)
            else:
                await wait_for(lambda: channels.got["phone"], timeout=30)
        before = channels.seen()
        async with served(config, db_location):  # still down: the next leader resumes
            await asyncio.sleep(5)
            assert channels.seen() == before
            patch(sim, model, errors={})
            await wait_for(lambda: channels.got["pager"][-1]["event_action"] == "resolve", 30)
            await asyncio.sleep(1)
    seen = channels.seen()
    assert seen["pager"] == [f"trigger:{fp}"] + [f"acknowledge:{fp}"] * acknowledged + [
        f"resolve:{fp}"
    ]
    if acknowledged:
        assert seen["phone"] == []
        assert channels.got["pager"][-1]["event_action"] == "resolve"
    else:
        assert seen["phone"] == [
            "firing:consecutive_unavailable:1",
            "resolved:consecutive_unavailable:1",
        ]
    assert len(seen["chat"]) == 2 + acknowledged and seen["mail"] == []


async def test_sms_and_alertmanager_are_paged_kept_informed_and_resolved(
    sim: SimServer, tmp_path: Path, alertmanager: Alertmanager
) -> None:
    model = sim_model(sim, ttft="20ms", output_tokens=5, tokens_per_s=500)
    twilio = await FakeTwilio(SID, TOKEN).start()
    try:
        async with receivers() as (channels, url, smtp_port):
            raw = oncall_raw(sim, model, url, smtp_port, tmp_path / "r.db", "2s")
            raw["notifiers"] += [
                {"name": "sms", "type": "twilio", "account_sid": "${SID}", "auth_token": "${TOKEN}",
                 "from": "+15005550006", "to": "+14155550100", "api_url": twilio.url},
                {"name": "am", "type": "alertmanager", "url": alertmanager.url,
                 "resend_interval": "1s", "headers": {"Authorization": "${AM_AUTH}"}},
            ]  # fmt: skip
            raw["alerting"]["routes"][0]["notify"] = ["pager", "am"]
            raw["alerting"]["routes"][0]["escalate"] = [{"after": "2s", "notify": ["sms"]}]
            env = {"K": "sk-test", "PD": "pd-key", "SID": SID, "TOKEN": TOKEN, "AM_AUTH": AUTH}
            config = parse_config(raw, env=env)
            async with served(config, tmp_path / "r.db"):
                await asyncio.sleep(1)
                patch(sim, model, errors={"529": 1.0})
                await wait_for(lambda: twilio.accepted(), timeout=30)  # escalated by SMS
                [active] = await alertmanager.alerts("claude")
                # Past four resend intervals: still active, because llmpulse re-sends it.
                await asyncio.sleep(5)
                [still] = await alertmanager.alerts("claude")
                patch(sim, model, errors={})
                await wait_for(lambda: len(twilio.accepted()) == 2, timeout=30)
                for _ in range(50):
                    if not await alertmanager.alerts("claude"):
                        break
                    await asyncio.sleep(0.1)
                gone = await alertmanager.alerts("claude")
    finally:
        await twilio.stop()
    assert active["labels"] == {
        "alertname": "consecutive_unavailable", "severity": "critical", "provider": "anthropic",
        "target": "claude", "source": "llmpulse",
    }  # fmt: skip
    assert active["status"]["state"] == "active" and still["status"]["state"] == "active"
    assert still["endsAt"] > active["endsAt"]  # re-sent, each time four intervals ahead
    assert gone == []
    fired, resolved = twilio.accepted()
    assert fired["To"] == "+14155550100" and fired["From"] == "+15005550006"
    assert fired["Body"].startswith("[FIRING critical] consecutive_unavailable claude")
    assert resolved["Body"].startswith("[RESOLVED critical] consecutive_unavailable claude")
    assert twilio.segments == [1, 1]
    assert [e.split(":")[0] for e in channels.seen()["pager"]] == ["trigger", "resolve"]
    assert channels.seen()["chat"] == []  # not on this critical route
