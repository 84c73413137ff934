"""PagerDuty's V3 webhooks back into llmpulse, over a real socket: signed events shaped as
PagerDuty sends them acknowledge (and take back) the alert whose fingerprint is the incident's
key, and nothing unsigned gets in."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import patch, sim_model
from llmpulse.alerts.state import AlertStateStore, state_paths
from llmpulse.config import Config
from llmpulse.config.notifiers import NotifierSettings, PagerDutyConfig
from llmpulse.sim.server import SimServer
from llmpulse.web.pagerduty import MAX_BODY
from test_daemon import served, wait_for
from test_oncall import oncall_config, receivers
from webserve import SECRET, ServedWeb, make_config, seed

WEBHOOK = "/api/v1/integrations/pagerduty"
ONCALL_SECRET = "pd-webhook-secret-oncall-0123456789abcdef"
DB_TEAM_SECRET = "pd-webhook-secret-dbteam-0123456789abcdef"
ENV = {
    "PD_KEY": "R0UTINGKEY0123456789abcdefghijkl",
    "PD_KEY_DB": "R0UTINGKEYdb23456789abcdefghijkl",
    "PD_KEY_PLAIN": "R0UTINGKEYpl23456789abcdefghijkl",
    "PD_WEBHOOK_SECRET": ONCALL_SECRET,
    "PD_WEBHOOK_SECRET_DB": DB_TEAM_SECRET,
}
NOTIFIERS = [
    {"type": "pagerduty", "name": "oncall", "routing_key": "${PD_KEY}",
     "webhook_secret": "${PD_WEBHOOK_SECRET}"},
    {"type": "pagerduty", "name": "db-team", "routing_key": "${PD_KEY_DB}",
     "webhook_secret": "os.environ/PD_WEBHOOK_SECRET_DB"},
    {"type": "pagerduty", "name": "no-webhook", "routing_key": "${PD_KEY_PLAIN}"},
]  # fmt: skip


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[httpx.Client, dict[str, Any]]]:
    db = tmp_path / "r.db"
    facts = seed(db, time.time())
    facts["db"] = db
    config = make_config(env=ENV, notifiers=NOTIFIERS)
    with ServedWeb(config, db) as web, httpx.Client(base_url=web.url, timeout=10) as client:
        yield client, facts


def incident_event(
    event_type: str, incident_key: str | None, agent: str | None = "Ben Ops"
) -> dict[str, Any]:
    """An incident event as PagerDuty's V3 webhooks deliver it (developer docs, "Webhooks
    overview": the envelope, and the incident data of an incident an Events API v2 trigger
    opened, whose incident_key is the trigger's dedup_key)."""
    incident = "Q" + uuid.uuid4().hex[:13].upper()
    status = {"incident.acknowledged": "acknowledged", "incident.resolved": "resolved"}
    user = {
        "html_url": "https://acme.pagerduty.com/users/PLH1HKV",
        "id": "PLH1HKV",
        "self": "https://api.pagerduty.com/users/PLH1HKV",
        "summary": agent,
        "type": "user_reference",
    }
    return {
        "event": {
            "id": str(uuid.uuid4()),
            "event_type": event_type,
            "resource_type": "incident",
            "occurred_at": datetime.now(UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "agent": user if agent is not None else None,
            "client": None,
            "data": {
                "id": incident,
                "type": "incident",
                "self": f"https://api.pagerduty.com/incidents/{incident}",
                "html_url": f"https://acme.pagerduty.com/incidents/{incident}",
                "number": 37,
                "status": status.get(event_type, "triggered"),
                "incident_key": incident_key,
                "created_at": "2026-03-02T18:41:07Z",
                "title": "[critical] consecutive_unavailable anthropic/claude-haiku",
                "service": {
                    "html_url": "https://acme.pagerduty.com/services/PF9KMXH",
                    "id": "PF9KMXH",
                    "self": "https://api.pagerduty.com/services/PF9KMXH",
                    "summary": "LLM APIs",
                    "type": "service_reference",
                },
                "assignees": [user],
                "escalation_policy": {
                    "html_url": "https://acme.pagerduty.com/escalation_policies/PUS0KTE",
                    "id": "PUS0KTE",
                    "self": "https://api.pagerduty.com/escalation_policies/PUS0KTE",
                    "summary": "Default",
                    "type": "escalation_policy_reference",
                },
                "teams": [],
                "priority": None,
                "urgency": "high",
                "conference_bridge": None,
                "resolve_reason": None,
                "incident_type": {"name": "incident_default"},
            },
        }
    }


def body_of(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def signature(body: bytes, secret: str) -> str:
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver(
    client: httpx.Client, payload: Any, *secrets: str, header: str | None = None
) -> httpx.Response:
    """POSTs ``payload`` as PagerDuty does: the raw body signed with each of ``secrets``."""
    body = payload if isinstance(payload, bytes) else body_of(payload)
    signed = header if header is not None else ",".join(signature(body, s) for s in secrets)
    headers = {"Content-Type": "application/json", "X-PagerDuty-Signature": signed}
    return client.post(WEBHOOK, content=body, headers=headers)


def acknowledgement_via(db: Path, fingerprint: str) -> str | None:
    state = AlertStateStore(state_paths(db)[0])
    try:
        return next(a.via for a in state.acknowledgements() if a.fingerprint == fingerprint)
    finally:
        state.close()


def test_acknowledged_in_pagerduty_acknowledges_the_alert(
    site: tuple[httpx.Client, dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    client, facts = site
    fp = facts["incident"].fingerprint
    caplog.set_level(logging.DEBUG)
    payload = incident_event("incident.acknowledged", fp)
    answer = deliver(client, payload, ONCALL_SECRET)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "result": "acknowledged",
        "reason": None,
        "fingerprint": fp,
        "acknowledged_by": "Ben Ops (PagerDuty)",
    }
    alert = client.get(f"/api/v1/alerts/{fp}").json()
    assert alert["acknowledged_by"] == "Ben Ops (PagerDuty)"
    incident_url = payload["event"]["data"]["html_url"]
    assert alert["acknowledged_comment"] == f"PagerDuty incident {incident_url}"
    # Through the notifier that signed: the leader sends no acknowledge back to it.
    assert acknowledgement_via(facts["db"], fp) == "oncall"
    # PagerDuty delivers at least once: the same event again changes nothing.
    assert deliver(client, payload, ONCALL_SECRET).json()["result"] == "acknowledged"
    assert client.get(f"/api/v1/alerts/{fp}").json() == alert
    assert "alert " + fp + " acknowledged by Ben Ops (PagerDuty)" in caplog.text
    for secret in (ONCALL_SECRET, DB_TEAM_SECRET):
        assert secret not in caplog.text


def test_an_event_older_than_the_alerts_firing_is_ignored(
    site: tuple[httpx.Client, dict[str, Any]],
) -> None:
    """A late retry, or a replayed body, of an acknowledgement of an earlier firing of the same
    alert (same fingerprint, so the same incident key) does not acknowledge this one."""
    client, facts = site
    fp = facts["incident"].fingerprint
    payload = incident_event("incident.acknowledged", fp)
    payload["event"]["occurred_at"] = "2020-01-01T00:00:00.000Z"
    answer = deliver(client, payload, ONCALL_SECRET).json()
    assert (answer["result"], answer["reason"]) == (
        "ignored",
        "the event is older than this firing of the alert",
    )
    assert client.get(f"/api/v1/alerts/{fp}").json()["acknowledged_by"] is None
    payload["event"]["data"]["incident_key"] = "k" * 65  # longer than any fingerprint
    assert deliver(client, payload, ONCALL_SECRET).json()["reason"] == "not an llmpulse alert"


def test_the_secret_that_signed_names_the_notifier_and_rotation_is_accepted(
    site: tuple[httpx.Client, dict[str, Any]],
) -> None:
    client, facts = site
    fp = facts["incident"].fingerprint
    payload = body_of(incident_event("incident.acknowledged", fp, agent="Dana"))
    # While a secret rotates PagerDuty signs with both, old and new, comma-separated.
    old = signature(payload, "the-old-secret-nobody-knows-any-more")
    rotating = f"{old},{signature(payload, DB_TEAM_SECRET)}"
    answer = deliver(client, payload, header=rotating)
    assert answer.status_code == 200 and answer.json()["acknowledged_by"] == "Dana (PagerDuty)"
    assert acknowledgement_via(facts["db"], fp) == "db-team"


@pytest.mark.parametrize(
    "header",
    [
        None,  # no signature at all
        "",
        "v1=" + "0" * 64,
        "v1=" + hmac.new(b"another subscription", b"x", hashlib.sha256).hexdigest(),
        "v0=__SIGNED__",  # right HMAC, unknown version
        "__SIGNED__",  # right HMAC without its version
    ],
)
def test_a_missing_or_wrong_signature_is_refused(
    site: tuple[httpx.Client, dict[str, Any]], header: str | None
) -> None:
    client, facts = site
    fp = facts["incident"].fingerprint
    body = body_of(incident_event("incident.acknowledged", fp))
    right = signature(body, ONCALL_SECRET).removeprefix("v1=")
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["X-PagerDuty-Signature"] = header.replace("__SIGNED__", right)
    refused = client.post(WEBHOOK, content=body, headers=headers)
    assert refused.status_code == 401, refused.text
    assert "X-PagerDuty-Signature" in refused.json()["detail"]
    assert client.get(f"/api/v1/alerts/{fp}").json()["acknowledged_by"] is None


def test_a_signature_of_another_body_is_refused(site: tuple[httpx.Client, dict[str, Any]]) -> None:
    client, facts = site
    fp = facts["incident"].fingerprint
    genuine = body_of(incident_event("incident.resolved", fp))
    forged = body_of(incident_event("incident.acknowledged", fp))
    header = signature(genuine, ONCALL_SECRET)
    assert deliver(client, forged, header=header).status_code == 401
    # Re-encoding the same JSON changes the bytes, and so the signature: the raw body counts.
    spaced = json.dumps(incident_event("incident.acknowledged", fp)).encode()
    assert deliver(client, spaced, header=signature(forged, ONCALL_SECRET)).status_code == 401


def test_unacknowledged_in_pagerduty_takes_back_only_its_own(
    site: tuple[httpx.Client, dict[str, Any]],
) -> None:
    client, facts = site
    fp = facts["incident"].fingerprint
    path = f"/api/v1/alerts/{fp}"
    deliver(client, incident_event("incident.acknowledged", fp), ONCALL_SECRET)
    # Another subscription did not acknowledge it, so it cannot take it back either.
    other = deliver(client, incident_event("incident.unacknowledged", fp), DB_TEAM_SECRET)
    assert other.json()["result"] == "ignored"
    assert client.get(path).json()["acknowledged_by"] == "Ben Ops (PagerDuty)"
    # The acknowledgement timed out in PagerDuty: escalation resumes here too.
    taken = deliver(
        client, incident_event("incident.unacknowledged", fp, agent=None), ONCALL_SECRET
    )
    assert taken.status_code == 200 and taken.json()["result"] == "unacknowledged"
    assert client.get(path).json()["acknowledged_by"] is None

    # One made in llmpulse stands whatever PagerDuty's timeout says.
    assert client.post(f"{path}/ack", json={"by": "ana"}).status_code == 200
    kept = deliver(client, incident_event("incident.unacknowledged", fp), ONCALL_SECRET)
    assert kept.status_code == 200
    assert kept.json() == {
        "result": "ignored",
        "reason": "not acknowledged through PagerDuty",
        "fingerprint": fp,
        "acknowledged_by": None,
    }
    assert client.get(path).json()["acknowledged_by"] == "ana"
    # And an acknowledgement from PagerDuty after it keeps the first.
    again = deliver(client, incident_event("incident.acknowledged", fp), ONCALL_SECRET)
    assert again.json()["acknowledged_by"] == "ana"


def test_events_it_does_not_act_on_get_a_2xx(site: tuple[httpx.Client, dict[str, Any]]) -> None:
    client, facts = site
    fp = facts["incident"].fingerprint
    ping = {
        "event": {
            "id": "01FKZOXA868SHYEE4DVNWB5P9W",
            "event_type": "pagey.ping",
            "resource_type": "pagey",
            "occurred_at": "2026-03-02T03:00:55.532Z",
            "agent": {"id": "PLH1HKV", "type": "user_reference"},
            "client": None,
            "data": {"message": "Hello from your friend Pagey!", "type": "ping"},
        }
    }
    note = incident_event("incident.annotated", fp)
    note["event"]["data"] = {
        "incident": {"id": "Q2CKYRLH85UNN4", "type": "incident_reference", "summary": "x"},
        "id": "PTSAIFZ",
        "content": "looking",
        "trimmed": False,
        "type": "incident_note",
    }
    not_ours = "not an llmpulse alert"
    cases = [
        ("pagey.ping: no action", ping),
        ("incident.triggered: no action", incident_event("incident.triggered", fp)),
        ("incident.resolved: no action", incident_event("incident.resolved", fp)),
        ("incident.annotated: no action", note),
        # Not every PagerDuty incident is ours.
        (not_ours, incident_event("incident.acknowledged", "d3640fbd41094207a1c11e58e46b1662")),
        (not_ours, incident_event("incident.acknowledged", None)),
        (not_ours, incident_event("incident.acknowledged", "k" * 300)),
        (
            "the alert is not firing",
            incident_event("incident.acknowledged", facts["ttft"].fingerprint),
        ),
    ]
    for reason, payload in cases:
        answer = deliver(client, payload, ONCALL_SECRET)
        assert answer.status_code == 200, (reason, answer.text)
        assert answer.json()["result"] == "ignored", reason
        assert answer.json()["reason"] == reason, reason
    assert client.get(f"/api/v1/alerts/{fp}").json()["acknowledged_by"] is None


def test_payload_text_is_untrusted(site: tuple[httpx.Client, dict[str, Any]]) -> None:
    client, facts = site
    fp = facts["incident"].fingerprint
    payload = incident_event(
        "incident.acknowledged", fp, agent=f"Eve\n\x1b[31m {SECRET} " + "x" * 500
    )
    payload["event"]["data"]["html_url"] = "javascript:alert(1)"
    answer = deliver(client, payload, ONCALL_SECRET)
    assert answer.status_code == 200, answer.text
    alert = client.get(f"/api/v1/alerts/{fp}").json()
    by = alert["acknowledged_by"]
    assert by.startswith("Eve [31m [redacted] xxx") and by.endswith(" (PagerDuty)")
    assert SECRET not in by and "\n" not in by and "\x1b" not in by
    assert len(by) <= 100 + len(" (PagerDuty)")
    assert alert["acknowledged_comment"] == ""  # only an https link to the incident


def test_malformed_and_oversized_bodies_are_refused(
    site: tuple[httpx.Client, dict[str, Any]],
) -> None:
    client, facts = site
    for body in (b"not json", b"[1, 2]", b'{"event": "x"}', b'{"event": {}}', b"[" * 100_000):
        refused = deliver(client, body, ONCALL_SECRET)
        assert refused.status_code == 400, (body[:20], refused.text)
    large = body_of({"event": {"event_type": "incident.acknowledged", "pad": "x" * MAX_BODY}})
    assert deliver(client, large, ONCALL_SECRET).status_code == 413

    # Sent in chunks, so without a Content-Length to refuse it by: read no further than the limit.
    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_BODY // 4096 + 2):
            yield b" " * 4096

    headers = {"X-PagerDuty-Signature": "v1=00", "Content-Type": "application/json"}
    assert client.post(WEBHOOK, content=chunks(), headers=headers).status_code == 413
    assert client.get(f"/api/v1/alerts/{facts['incident'].fingerprint}").status_code == 200


def test_without_a_webhook_secret_the_route_is_off(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    facts = seed(db, time.time())
    plain = [n for n in NOTIFIERS if "webhook_secret" not in n]
    with ServedWeb(make_config(env=ENV, notifiers=plain), db) as web:
        body = body_of(incident_event("incident.acknowledged", facts["incident"].fingerprint))
        off = httpx.post(
            web.url + WEBHOOK,
            content=body,
            headers={"X-PagerDuty-Signature": signature(body, ONCALL_SECRET)},
        )
        assert off.status_code == 404 and "webhook_secret" in off.json()["detail"]


def test_the_webhook_needs_no_dashboard_credentials_but_the_status_listener_has_none(
    tmp_path: Path,
) -> None:
    db = tmp_path / "r.db"
    facts = seed(db, time.time())
    fp = facts["incident"].fingerprint
    config = make_config(
        {"token": "${WEB_TOKEN}", "status_listen": "127.0.0.1:0"},
        {**ENV, "WEB_TOKEN": "t0ken-for-tests"},
        NOTIFIERS,
    )
    with ServedWeb(config, db) as web, httpx.Client(base_url=web.url, timeout=10) as anonymous:
        dashboard, status = web.server.urls
        assert anonymous.get(f"/api/v1/alerts/{fp}").status_code == 401
        unsigned = anonymous.post(WEBHOOK, json=incident_event("incident.acknowledged", fp))
        assert unsigned.status_code == 401 and "WWW-Authenticate" not in unsigned.headers
        answer = deliver(anonymous, incident_event("incident.acknowledged", fp), ONCALL_SECRET)
        assert answer.status_code == 200 and answer.json()["result"] == "acknowledged"
        # Only beside the API: the public status listener does not take it.
        public = status.removesuffix("status").rstrip("/")
        body = body_of(incident_event("incident.acknowledged", fp))
        elsewhere = httpx.post(
            public + WEBHOOK,
            content=body,
            headers={"X-PagerDuty-Signature": signature(body, ONCALL_SECRET)},
        )
        assert elsewhere.status_code == 404
    assert dashboard.startswith("http://127.0.0.1:")


# ---- end to end through a running daemon -----------------------------------------------------


def with_webhook_secret(config: Config, notifier: str, secret: str) -> Config:
    """``config`` with ``webhook_secret`` on the PagerDuty notifier ``notifier``."""

    def add(n: NotifierSettings) -> NotifierSettings:
        if n.name != notifier or not isinstance(n.config, PagerDutyConfig):
            return n
        return NotifierSettings(
            n.config.model_copy(update={"webhook_secret": secret}), (*n.secrets, secret)
        )

    return dataclasses.replace(config, notifiers=[add(n) for n in config.notifiers])


async def test_a_pagerduty_acknowledgement_reaches_the_leader_and_is_not_echoed_back(
    sim: SimServer, tmp_path: Path
) -> None:
    model = sim_model(sim, ttft="20ms", output_tokens=5, tokens_per_s=500)
    async with receivers() as (channels, url, smtp_port):
        config = oncall_config(sim, model, url, smtp_port, tmp_path / "r.db", "4s")
        config = with_webhook_secret(config, "pager", ONCALL_SECRET)
        async with (
            served(config, tmp_path / "r.db") as (_, web_server),
            httpx.AsyncClient(base_url=web_server.urls[0]) as api,
        ):
            await asyncio.sleep(1)
            patch(sim, model, errors={"529": 1.0})
            await wait_for(lambda: channels.got["pager"], timeout=30)
            fp = channels.got["pager"][0]["dedup_key"]

            async def pagerduty(event_type: str) -> dict[str, Any]:
                body = body_of(incident_event(event_type, fp))
                answer = await api.post(
                    WEBHOOK.lstrip("/"),
                    content=body,
                    headers={"X-PagerDuty-Signature": signature(body, ONCALL_SECRET)},
                )
                assert answer.status_code == 200, answer.text
                result: dict[str, Any] = answer.json()
                return result

            assert (await pagerduty("incident.acknowledged"))["result"] == "acknowledged"
            # The leader tells the others the alert paged, within a tick; not PagerDuty.
            await wait_for(lambda: len(channels.got["chat"]) == 2, timeout=10)
            await asyncio.sleep(5)  # past the escalation delay: nobody is called
            assert channels.got["phone"] == [] and len(channels.got["pager"]) == 1
            # PagerDuty's acknowledgement timed out: the escalation resumes, already due.
            assert (await pagerduty("incident.unacknowledged"))["result"] == "unacknowledged"
            await wait_for(lambda: channels.got["phone"], timeout=10)
            patch(sim, model, errors={})
            await wait_for(lambda: len(channels.got["pager"]) == 2, timeout=30)
            await wait_for(lambda: len(channels.got["phone"]) == 2, timeout=10)
    assert channels.seen() == {
        "pager": [f"trigger:{fp}", f"resolve:{fp}"],
        "chat": [
            "firing: consecutive_unavailable",
            "acknowledged: consecutive_unavailable",
            "resolved: consecutive_unavailable",
        ],
        "phone": ["firing:consecutive_unavailable:1", "resolved:consecutive_unavailable:1"],
        "mail": [],
    }
    assert "by Ben Ops (PagerDuty) at" in json.dumps(channels.got["chat"][1])
