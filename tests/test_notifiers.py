"""Notifiers against real receivers: an aiohttp server and an aiosmtpd SMTP server on loopback."""

from __future__ import annotations

import contextlib
import dataclasses
import email
import email.policy
import hashlib
import hmac
import json
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from llmpulse.alerts.model import AlertState, Notification
from llmpulse.alerts.notifiers import (
    DeliveryError,
    build_notifiers,
)
from llmpulse.alerts.notifiers.base import parse_retry_after
from llmpulse.alerts.notifiers.webhook import WebhookNotifier
from llmpulse.config import ConfigError
from llmpulse.config.notifiers import PagerDutyConfig, resolve_notifiers
from llmpulse.rules import Severity

STARTED = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
ENDED = datetime(2025, 3, 1, 12, 7, 30, tzinfo=UTC)


def make_notification(status: AlertState = AlertState.FIRING, **changes: Any) -> Notification:
    base = Notification(
        status=status,
        severity=Severity.CRITICAL,
        rule="error_rate_critical",
        target="openai/gpt-4o-mini",
        provider="openai",
        summary="error rate 12% over 5m (threshold 5%)",
        value=0.12,
        threshold=0.05,
        starts_at=STARTED,
        ends_at=ENDED if status is AlertState.RESOLVED else None,
        fingerprint="fp-4a7c9e",
        official_status="degraded_performance",
    )
    return dataclasses.replace(base, **changes)


@dataclasses.dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A real HTTP server that records every request and answers from a script (default 200)."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.answers: list[tuple[int, dict[str, str], str]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(Received(request.path_qs, dict(request.headers), body))
        status, headers, text = self.answers.pop(0) if self.answers else (200, {}, "ok")
        return web.Response(status=status, headers=headers, text=text)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def one(config: dict[str, Any], env: dict[str, str] | None = None) -> Any:
    return build_notifiers(resolve_notifiers([config], env or {}))[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- generic webhook -----------------------------------------------------------------------------


async def test_webhook_posts_the_contract_signed(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    notifier = one(
        {
            "type": "webhook",
            "url": f"{receiver.url}/hook",
            "secret": "os.environ/HOOK_SECRET",
            "headers": {"X-Team": "sre", "Authorization": "${HOOK_AUTH}"},
        },
        {"HOOK_SECRET": "s3cret", "HOOK_AUTH": "Bearer abc"},
    )
    notification = make_notification()
    answer = await notifier.send(notification, session)

    assert answer == "HTTP 200"
    [request] = receiver.requests
    assert request.path == "/hook"
    assert request.json() == notification.to_json()
    assert set(request.json()) == {
        "status", "severity", "rule", "target", "provider", "summary", "value", "threshold",
        "starts_at", "ends_at", "fingerprint", "official_status", "escalation_step",
        "acknowledged_by", "acknowledged_at", "url", "previous", "current",
    }  # fmt: skip
    expected = hmac.new(b"s3cret", request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Llmpulse-Signature"] == f"sha256={expected}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Team"] == "sre"
    assert request.headers["Authorization"] == "Bearer abc"
    assert "X-Llmpulse-Test" not in request.headers


async def test_webhook_unsigned_and_test_flag(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    notifier = one({"type": "webhook", "url": receiver.url})
    await notifier.send(make_notification(AlertState.RESOLVED, test=True), session)
    [request] = receiver.requests
    assert "X-Llmpulse-Signature" not in request.headers
    assert request.headers["X-Llmpulse-Test"] == "true"
    body = request.json()
    assert body["status"] == "resolved"
    assert body["ends_at"] == "2025-03-01T12:07:30Z"


# -- chat channels -------------------------------------------------------------------------------


async def test_slack_message_has_fallback_text_and_blocks(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    notifier = one(
        {"type": "slack", "webhook_url": "os.environ/SLACK_URL"}, {"SLACK_URL": receiver.url}
    )
    await notifier.send(make_notification(), session)
    message = receiver.requests[0].json()

    assert message["text"].startswith("🔴 [FIRING critical] error_rate_critical openai/gpt-4o-mini")
    assert [b["type"] for b in message["blocks"]] == ["header", "section", "section", "context"]
    header, summary, facts, context = message["blocks"]
    assert header["text"] == {"type": "plain_text", "text": "🔴 FIRING: error_rate_critical"}
    assert summary["text"]["text"] == "error rate 12% over 5m (threshold 5%)"
    fields = [f["text"] for f in facts["fields"]]
    assert all(f["type"] == "mrkdwn" for f in facts["fields"]) and len(fields) <= 10
    assert "*Target*\nopenai/gpt-4o-mini" in fields
    assert "*Provider*\nopenai" in fields
    assert "*Value*\n0.12 (threshold 0.05)" in fields
    assert "*Official status*\ndegraded_performance" in fields
    assert "*Started*\n2025-03-01 12:00:00 UTC" in fields
    assert "fp-4a7c9e" in context["elements"][0]["text"]

    await notifier.send(make_notification(AlertState.RESOLVED), session)
    resolved = receiver.requests[1].json()
    assert resolved["blocks"][0]["text"]["text"] == "✅ RESOLVED: error_rate_critical"
    assert "*Ended*\n2025-03-01 12:07:30 UTC" in [
        f["text"] for f in resolved["blocks"][2]["fields"]
    ]

    # Every fact at once is more than Slack's 10 fields: the link still gets through.
    url = "https://pulse.example.com/alerts#alert-fp-4a7c9e"
    crowded = make_notification(
        AlertState.RESOLVED, escalation_step=2, acknowledged_by="ana", acknowledged_at=ENDED,
        url=url,
    )  # fmt: skip
    await notifier.send(crowded, session)
    last = receiver.requests[2].json()
    fields = [f["text"] for f in last["blocks"][2]["fields"]]
    assert len(fields) == 10 and "*Acknowledged*\nby ana at 2025-03-01 12:07:30 UTC" in fields
    assert f"<{url}|open on the dashboard>" in last["blocks"][3]["elements"][0]["text"]

    await notifier.send(make_notification(AlertState.ACKNOWLEDGED, acknowledged_by="ana"), session)
    acknowledged = receiver.requests[3].json()
    assert acknowledged["blocks"][0]["text"]["text"] == "👀 ACKNOWLEDGED: error_rate_critical"


async def test_discord_embed_within_limits(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    receiver.answers.append((204, {}, ""))
    notifier = one({"type": "discord", "webhook_url": f"{receiver.url}/api/webhooks/1/tok"})
    answer = await notifier.send(make_notification(), session)
    assert answer == "HTTP 204"
    message = receiver.requests[0].json()
    assert message["content"].startswith("🔴 [FIRING critical]")
    assert message["allowed_mentions"] == {"parse": []}
    [embed] = message["embeds"]
    assert embed["title"] == "FIRING: error_rate_critical — openai/gpt-4o-mini"
    assert embed["description"] == "error rate 12% over 5m (threshold 5%)"
    assert embed["color"] == 0xD92D20
    assert embed["timestamp"] == "2025-03-01T12:00:00Z"
    assert {"name": "Provider", "value": "openai", "inline": True} in embed["fields"]

    huge = make_notification(AlertState.RESOLVED, summary="x" * 10_000, rule="r" * 500)
    await notifier.send(huge, session)
    [embed] = receiver.requests[1].json()["embeds"]
    assert len(embed["title"]) <= 256
    assert len(embed["description"]) <= 4096
    assert len(embed["fields"]) <= 25
    assert all(len(f["value"]) <= 1024 for f in embed["fields"])
    total = len(embed["title"]) + len(embed["description"]) + len(embed["footer"]["text"])
    total += sum(len(f["name"]) + len(f["value"]) for f in embed["fields"])
    assert total <= 6000
    assert embed["color"] == 0x12B76A
    assert embed["timestamp"] == "2025-03-01T12:07:30Z"


async def test_teams_adaptive_card_envelope(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    receiver.answers.append((202, {}, ""))
    notifier = one({"type": "teams", "webhook_url": receiver.url, "name": "ops-teams"})
    assert notifier.name == "ops-teams"
    assert await notifier.send(make_notification(severity=Severity.WARNING), session) == "HTTP 202"
    message = receiver.requests[0].json()
    assert message["type"] == "message"
    [attachment] = message["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    assert card["version"] == "1.4"
    title_box, summary, factset, _footer = card["body"]
    assert title_box["style"] == "warning"
    assert title_box["items"][0]["text"] == "FIRING: error_rate_critical — openai/gpt-4o-mini"
    assert summary == {
        "type": "TextBlock",
        "text": "error rate 12% over 5m (threshold 5%)",
        "wrap": True,
    }
    assert factset["type"] == "FactSet"
    assert {"title": "Rule", "value": "error_rate_critical"} in factset["facts"]


# -- PagerDuty -----------------------------------------------------------------------------------


async def test_pagerduty_trigger_then_resolve_same_dedup_key(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    accepted = '{"status":"success","message":"Event processed","dedup_key":"fp-4a7c9e"}'
    receiver.answers += [(202, {}, accepted), (202, {}, accepted)]
    notifier = one(
        {
            "type": "pagerduty",
            "routing_key": "os.environ/PD_KEY",
            "url": f"{receiver.url}/v2/enqueue",
        },
        {"PD_KEY": "R0UT1NGKEY"},
    )
    long_summary = "s" * 2000
    assert await notifier.send(make_notification(summary=long_summary), session) == "HTTP 202"
    assert await notifier.send(make_notification(AlertState.RESOLVED), session) == "HTTP 202"

    trigger, resolve = (r.json() for r in receiver.requests)
    assert receiver.requests[0].path == "/v2/enqueue"
    assert trigger["routing_key"] == "R0UT1NGKEY"
    assert trigger["event_action"] == "trigger"
    assert trigger["dedup_key"] == "fp-4a7c9e"
    payload = trigger["payload"]
    assert len(payload["summary"]) <= 1024
    assert payload["summary"].startswith("[FIRING critical] error_rate_critical openai/gpt-4o-mini")
    assert payload["source"] == "openai/gpt-4o-mini"
    assert payload["severity"] == "critical"
    assert payload["timestamp"] == "2025-03-01T12:00:00Z"
    assert payload["class"] == "error_rate_critical"
    assert payload["component"] == "openai"
    assert payload["group"] == "openai"
    assert payload["custom_details"]["value"] == 0.12

    assert resolve == {
        "routing_key": "R0UT1NGKEY",
        "dedup_key": "fp-4a7c9e",
        "event_action": "resolve",
    }


def test_pagerduty_warning_severity() -> None:
    notifier = one({"type": "pagerduty", "routing_key": "${PD}"}, {"PD": "k"})
    event = notifier.render(make_notification(severity=Severity.WARNING))
    assert event["payload"]["severity"] == "warning"
    assert notifier._url == "https://events.pagerduty.com/v2/enqueue"


def test_pagerduty_acknowledge_and_the_dashboard_link() -> None:
    notifier = one({"type": "pagerduty", "routing_key": "${PD}"}, {"PD": "k"})
    url = "https://pulse.example.com/alerts#alert-fp-4a7c9e"
    assert notifier.render(make_notification(AlertState.ACKNOWLEDGED, url=url)) == {
        "routing_key": "k",
        "dedup_key": "fp-4a7c9e",
        "event_action": "acknowledge",
    }
    trigger = notifier.render(make_notification(url=url))
    assert trigger["links"] == [{"href": url, "text": "The alert on the llmpulse dashboard"}]
    assert "links" not in notifier.render(make_notification())


# -- failure classification ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "retryable", "retry_after"),
    [
        (500, {}, True, None),
        (503, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, True, 0.0),
        (429, {"Retry-After": "7"}, True, 7.0),
        (408, {}, True, None),
        (404, {}, False, None),
        (410, {}, False, None),
        (400, {}, False, None),
    ],
)
async def test_http_failures_are_classified(
    receiver: Receiver,
    session: aiohttp.ClientSession,
    status: int,
    headers: dict[str, str],
    retryable: bool,
    retry_after: float | None,
) -> None:
    token = "T000/B000/XXXXSECRETXXXX"
    receiver.answers.append((status, headers, f"no_service for /services/{token}"))
    notifier = one(
        {"type": "slack", "webhook_url": f"{receiver.url}/services/{token}", "name": "s1"}
    )
    with pytest.raises(DeliveryError) as caught:
        await notifier.send(make_notification(), session)
    error = caught.value
    assert error.retryable is retryable
    assert error.retry_after_s == retry_after
    assert str(error).startswith(f"slack 's1': HTTP {status} from {receiver.url}: no_service")
    assert "SECRET" not in str(error)


async def test_connection_refused_is_retryable_and_redacted(
    session: aiohttp.ClientSession,
) -> None:
    notifier = WebhookNotifier(f"http://127.0.0.1:{free_port()}/hook/SECRETTOKEN", name="w")
    with pytest.raises(DeliveryError) as caught:
        await notifier.send(make_notification(), session)
    assert caught.value.retryable
    assert str(caught.value).startswith("webhook 'w': ")
    assert "SECRETTOKEN" not in str(caught.value)


def test_parse_retry_after() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


# -- config --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("configs", "error"),
    [
        (
            [
                {"type": "slack", "webhook_url": "https://a"},
                {"type": "pagerduty", "routing_key": "R0123SECRET"},
            ],
            "notifiers[1].routing_key: must reference an environment variable",
        ),
        (
            [{"type": "webhook", "url": "https://a", "secret": "hunter2SECRET"}],
            "notifiers[0].secret: must reference an environment variable",
        ),
        (
            [
                {
                    "type": "email",
                    "host": "h",
                    "sender": "a@b",
                    "to": ["c@d"],
                    "username": "u",
                    "password": "pwSECRET",
                }
            ],
            "notifiers[0].password: must reference an environment variable",
        ),
        ([{"type": "sms", "to": "+1SECRET"}], "notifiers[0].type: unknown notifier type"),
        ([{"webhook_url": "https://aSECRET"}], "notifiers[0].type: required key is missing"),
        (
            [{"type": "discord", "webhook_url": "https://aSECRET", "token": "SECRET"}],
            "notifiers[0].token: unknown key",
        ),
        (  # a key with a line break is quoted: the error stays one line
            [{"type": "slack", "webhook_url": "https://a", "to\nken": "SECRET"}],
            "notifiers[0].'to\\nken': unknown key",
        ),
        (
            [{"type": "teams", "webhook_url": "ftp://hostSECRET"}],
            "notifiers[0].webhook_url: expected an http",
        ),
        (
            [{"type": "slack", "webhook_url": "os.environ/NOT_SET"}],
            "notifiers[0].webhook_url: environment variable NOT_SET is not set",
        ),
        (
            [{"type": "slack", "webhook_url": "os.environ/NOT_A_URL"}],
            "notifiers[0].webhook_url: expected an http:// or https:// URL",
        ),
        (
            [
                {"type": "slack", "webhook_url": "https://a"},
                {"type": "slack", "webhook_url": "https://b"},
            ],
            "notifiers[1].name: duplicate notifier name 'slack'",
        ),
        (
            [
                {"type": "webhook", "url": "https://a", "name": "x"},
                {"type": "teams", "webhook_url": "https://b", "name": "x"},
            ],
            "notifiers[1].name: duplicate notifier name 'x'",
        ),
        (
            [{"type": "apprise", "urls": ["os.environ/BAD_APPRISE"]}],
            "notifiers[0].urls[0]: not a URL Apprise",
        ),
        (
            [
                {
                    "type": "email",
                    "host": "h",
                    "sender": "a@b",
                    "to": ["c@d"],
                    "ssl": True,
                    "starttls": True,
                }
            ],
            "'ssl' (implicit TLS) and 'starttls' exclude each other",
        ),
    ],
)
def test_config_errors_name_the_key_and_hide_values(configs: list[Any], error: str) -> None:
    env = {"NOT_A_URL": "hooks.example.com/SECRET", "BAD_APPRISE": "nonsense-SECRET"}
    with pytest.raises(ConfigError) as caught:
        build_notifiers(resolve_notifiers(configs, env))
    assert error in str(caught.value)
    assert "SECRET" not in str(caught.value)


def test_config_models_and_reprs_hide_secrets() -> None:
    env = {"PD": "pd-SECRET", "HOOK": "https://hooks.slack.com/services/SECRET"}
    notifiers = build_notifiers(
        resolve_notifiers(
            [
                PagerDutyConfig(type="pagerduty", routing_key="os.environ/PD", name="pager"),
                {"type": "slack", "webhook_url": "${HOOK}"},
                {"type": "email", "host": "smtp.example.com", "sender": "a@b", "to": ["c@d"]},
            ],
            env,
        )
    )
    assert [(n.type, n.name) for n in notifiers] == [
        ("pagerduty", "pager"),
        ("slack", "slack"),
        ("email", "email"),
    ]
    assert notifiers[2].port == 587
    assert "SECRET" not in repr(notifiers)
    settings = resolve_notifiers([{"type": "pagerduty", "routing_key": "os.environ/PD"}], env)
    assert settings[0].secrets == ("pd-SECRET", "/v2/enqueue") and "SECRET" not in repr(settings)
    assert "os.environ" not in repr(PagerDutyConfig(type="pagerduty", routing_key="os.environ/PD"))
    ssl_mail = one({"type": "email", "host": "h", "sender": "a@b", "to": ["c@d"], "ssl": True})
    assert ssl_mail.port == 465


# -- email ---------------------------------------------------------------------------------------


class Mailbox:
    """aiosmtpd handler: records accepted messages; ``rcpt_reply`` refuses recipients."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.rcpt_reply: str | None = None

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            {
                "from": envelope.mail_from,
                "to": list(envelope.rcpt_tos),
                "message": email.message_from_bytes(envelope.content, policy=email.policy.default),
                "tls": server.transport.get_extra_info("ssl_object") is not None,
                "login": session.auth_data if session.authenticated else None,
            }
        )
        return "250 2.0.0 queued"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"alerts", b"pw")
    return AuthResult(success=ok, handled=False, auth_data=data.login if ok else None)


@contextlib.contextmanager
def smtp_server(mailbox: Mailbox, **kwargs: Any) -> Iterator[int]:
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def mail_config(port: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": "email",
        "name": "ops-mail",
        "host": "127.0.0.1",
        "port": port,
        "sender": "llmpulse@example.com",
        "to": ["oncall@example.com", "sre@example.com"],
        **extra,
    }


async def test_email_plain(session: aiohttp.ClientSession) -> None:
    mailbox = Mailbox()
    with smtp_server(mailbox) as port:
        notifier = one(mail_config(port, starttls=False))
        answer = await notifier.send(make_notification(), session)
    assert answer == "SMTP accepted: 2.0.0 queued"
    [mail] = mailbox.messages
    assert mail["from"] == "llmpulse@example.com"
    assert mail["to"] == ["oncall@example.com", "sre@example.com"]
    assert not mail["tls"]
    message = mail["message"]
    assert message["Subject"] == (
        "[FIRING critical] error_rate_critical openai/gpt-4o-mini: error rate 12% over 5m (threshold 5%)"
    )
    assert message["To"] == "oncall@example.com, sre@example.com"
    body = message.get_content()
    for line in (
        "error rate 12% over 5m (threshold 5%)",
        "Rule:            error_rate_critical",
        "Target:          openai/gpt-4o-mini",
        "Provider:        openai",
        "Value:           0.12 (threshold 0.05)",
        "Official status: degraded_performance",
        "Started:         2025-03-01 12:00:00 UTC",
        "Fingerprint:     fp-4a7c9e",
    ):
        assert line in body


async def test_email_starttls_with_auth(
    ca: trustme.CA, ca_file: Path, session: aiohttp.ClientSession
) -> None:
    mailbox = Mailbox()
    with smtp_server(
        mailbox, tls_context=server_tls(ca), require_starttls=True, authenticator=authenticate
    ) as port:
        notifier = one(
            mail_config(
                port, username="alerts", password="os.environ/SMTP_PW", ca_file=str(ca_file)
            ),
            {"SMTP_PW": "pw"},
        )
        await notifier.send(make_notification(AlertState.RESOLVED, test=True), session)
    [mail] = mailbox.messages
    assert mail["tls"]
    assert mail["login"] == b"alerts"
    assert mail["message"]["Subject"].startswith("[TEST] [RESOLVED critical] error_rate_critical")
    assert "Ended:           2025-03-01 12:07:30 UTC" in mail["message"].get_content()


async def test_email_starttls_untrusted_certificate_fails(
    ca: trustme.CA, session: aiohttp.ClientSession
) -> None:
    with smtp_server(Mailbox(), tls_context=server_tls(ca), require_starttls=True) as port:
        notifier = one(mail_config(port))
        with pytest.raises(DeliveryError) as caught:
            await notifier.send(make_notification(), session)
    assert caught.value.retryable
    assert "email 'ops-mail': 127.0.0.1" in str(caught.value)


async def test_email_implicit_tls(
    ca: trustme.CA, ca_file: Path, session: aiohttp.ClientSession
) -> None:
    mailbox = Mailbox()
    with smtp_server(mailbox, ssl_context=server_tls(ca)) as port:
        notifier = one(mail_config(port, ssl=True, ca_file=str(ca_file)))
        await notifier.send(make_notification(), session)
    assert mailbox.messages[0]["tls"]
    assert mailbox.messages[0]["message"]["From"] == "llmpulse@example.com"


@pytest.mark.parametrize(
    ("reply", "retryable"),
    [("550 5.1.1 mailbox unavailable", False), ("451 4.3.0 try again later", True)],
)
async def test_email_refusals_are_classified(
    session: aiohttp.ClientSession, reply: str, retryable: bool
) -> None:
    mailbox = Mailbox()
    mailbox.rcpt_reply = reply
    with smtp_server(mailbox) as port:
        notifier = one(mail_config(port, starttls=False))
        with pytest.raises(DeliveryError) as caught:
            await notifier.send(make_notification(), session)
    assert caught.value.retryable is retryable
    assert reply.split()[0] in str(caught.value)
    assert mailbox.messages == []


async def test_email_starttls_not_offered_is_permanent(session: aiohttp.ClientSession) -> None:
    with smtp_server(Mailbox()) as port:
        notifier = one(mail_config(port))  # starttls defaults to true; this server has no TLS
        with pytest.raises(DeliveryError) as caught:
            await notifier.send(make_notification(), session)
    assert not caught.value.retryable
    assert "STARTTLS" in str(caught.value)


async def test_email_connection_refused_is_retryable(session: aiohttp.ClientSession) -> None:
    notifier = one(mail_config(free_port()))
    with pytest.raises(DeliveryError) as caught:
        await notifier.send(make_notification(), session)
    assert caught.value.retryable


# -- apprise -------------------------------------------------------------------------------------


async def test_apprise_delivers_through_its_json_plugin(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    port = receiver.url.rsplit(":", 1)[1]
    notifier = one(
        {"type": "apprise", "urls": ["os.environ/APPRISE_URL"]},
        {"APPRISE_URL": f"json://127.0.0.1:{port}/apprise"},
    )
    assert await notifier.send(make_notification(), session) == "delivered to 1 service(s)"
    [request] = receiver.requests
    assert request.path == "/apprise"
    body = request.json()
    assert body["title"].startswith("[FIRING critical] error_rate_critical")
    assert "Target: openai/gpt-4o-mini" in body["message"]
    assert body["type"] == "failure"

    receiver.answers.append((500, {}, "down"))
    with pytest.raises(DeliveryError) as caught:
        await notifier.send(make_notification(), session)
    assert caught.value.retryable
