"""The Alertmanager notifier against a real Alertmanager (Debian's ``prometheus-alertmanager``;
``./dev test`` installs it) on loopback, and its rendering and config on their own."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from amserver import AUTH, Alertmanager, free_port
from llmpulse.alerts.model import AlertState, Notification
from llmpulse.alerts.notifiers import DeliveryError, build_notifiers
from llmpulse.alerts.notifiers.alertmanager import AlertmanagerNotifier
from llmpulse.config import ConfigError
from llmpulse.config.notifiers import resolve_notifiers
from llmpulse.rules import Severity

ENV = {"AM_AUTH": AUTH}
NOW = datetime(2025, 3, 1, 12, 10, 0, tzinfo=UTC)


def make_notification(status: AlertState = AlertState.FIRING, **changes: Any) -> Notification:
    now = datetime.now(UTC)
    base = Notification(
        status=status,
        severity=Severity.CRITICAL,
        rule="error_rate_critical",
        target="openai/gpt-4o-mini",
        provider="openai",
        summary="error rate 12% over 5m (threshold 5%)",
        value=0.12,
        threshold=0.05,
        starts_at=now - timedelta(minutes=5),
        ends_at=now if status is AlertState.RESOLVED else None,
        fingerprint="fp-4a7c9e",
    )
    return dataclasses.replace(base, **changes)


def notifier(url: str, **config: Any) -> Any:
    settings = {"type": "alertmanager", "url": url, **config}
    return build_notifiers(resolve_notifiers([settings], ENV))[0]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """The notifiers' session, as the outbox's: it authenticates nowhere by itself."""
    async with aiohttp.ClientSession() as client:
        yield client


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- against a real Alertmanager -----------------------------------------------------------------


async def test_a_firing_alert_is_active_with_its_labels_and_annotations(
    alertmanager: Alertmanager, session: aiohttp.ClientSession
) -> None:
    am = notifier(f"{alertmanager.url}/", headers={"Authorization": "os.environ/AM_AUTH"})
    sent = make_notification(url="https://llmpulse.example.com/alerts#alert-fp-4a7c9e")
    before = datetime.now(UTC)
    assert await am.send(sent, session) == "HTTP 200"

    [alert] = await alertmanager.alerts("openai/gpt-4o-mini")
    assert alert["labels"] == {
        "alertname": "error_rate_critical",
        "severity": "critical",
        "provider": "openai",
        "target": "openai/gpt-4o-mini",
        "source": "llmpulse",
    }
    assert alert["annotations"] == {
        "summary": "error rate 12% over 5m (threshold 5%)",
        "value": "0.12",
        "threshold": "0.05",
        "dashboard": "https://llmpulse.example.com/alerts#alert-fp-4a7c9e",
    }
    assert alert["status"] == {"state": "active", "silencedBy": [], "inhibitedBy": []}
    assert alert["generatorURL"] == "https://llmpulse.example.com/alerts#alert-fp-4a7c9e"
    # Alertmanager keeps milliseconds.
    assert abs(_at(alert["startsAt"]) - sent.starts_at) < timedelta(milliseconds=1)
    expires = _at(alert["endsAt"]) - before
    assert timedelta(minutes=4) - timedelta(seconds=1) < expires < timedelta(minutes=4, seconds=5)


async def test_acknowledged_stays_active_and_resolved_leaves_the_active_alerts(
    alertmanager: Alertmanager, session: aiohttp.ClientSession
) -> None:
    am = notifier(alertmanager.url, headers={"Authorization": "${AM_AUTH}"})
    firing = make_notification(target="anthropic/claude", provider="anthropic")
    await am.send(firing, session)
    acked = dataclasses.replace(
        firing,
        status=AlertState.ACKNOWLEDGED,
        acknowledged_by="alice",
        acknowledged_at=datetime(2025, 3, 1, 12, 3, tzinfo=UTC),
        escalation_step=1,
    )
    await am.send(acked, session)

    [alert] = await alertmanager.alerts("anthropic/claude")
    assert alert["status"]["state"] == "active"
    assert alert["annotations"]["acknowledged_by"] == "alice"
    assert alert["annotations"]["acknowledged_at"] == "2025-03-01T12:03:00Z"
    assert alert["annotations"]["escalation_step"] == "1"
    assert "generatorURL" not in alert and "dashboard" not in alert["annotations"]

    resolved = dataclasses.replace(
        firing, status=AlertState.RESOLVED, ends_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    assert await am.send(resolved, session) == "HTTP 200"
    # Alertmanager's v2 API lists no alert whose endsAt has passed.
    assert await alertmanager.alerts("anthropic/claude") == []


async def test_an_alert_silenced_in_alertmanager_is_still_accepted(
    alertmanager: Alertmanager, session: aiohttp.ClientSession
) -> None:
    am = notifier(alertmanager.url, headers={"Authorization": "os.environ/AM_AUTH"})
    silence_id = await alertmanager.silence("groq/llama")
    notice = make_notification(target="groq/llama", provider="groq")
    assert await am.send(notice, session) == "HTTP 200"

    [alert] = await alertmanager.alerts("groq/llama")
    assert alert["status"] == {"state": "suppressed", "silencedBy": [silence_id], "inhibitedBy": []}


async def test_an_invalid_alert_is_refused_for_good(
    alertmanager: Alertmanager, session: aiohttp.ClientSession
) -> None:
    am = notifier(alertmanager.url, headers={"Authorization": "os.environ/AM_AUTH"})
    starts_at = datetime.now(UTC)
    ends_before_it_started = make_notification(
        AlertState.RESOLVED, starts_at=starts_at, ends_at=starts_at - timedelta(minutes=1)
    )
    with pytest.raises(DeliveryError) as caught:
        await am.send(ends_before_it_started, session)
    assert caught.value.retryable is False
    assert "alertmanager 'alertmanager': HTTP 400" in str(caught.value)
    assert "start time must be before end time" in str(caught.value)


async def test_the_headers_are_sent(
    alertmanager: Alertmanager, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(DeliveryError) as caught:
        await notifier(alertmanager.url).send(make_notification(), session)
    assert "HTTP 401" in str(caught.value) and caught.value.retryable is False

    am = notifier(alertmanager.url, headers={"Authorization": "os.environ/AM_AUTH"})
    assert await am.send(make_notification(target="x/auth"), session) == "HTTP 200"
    assert len(await alertmanager.alerts("x/auth")) == 1


async def test_an_alertmanager_that_is_down_is_retried(session: aiohttp.ClientSession) -> None:
    am = notifier(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(DeliveryError) as caught:
        await am.send(make_notification(), session)
    assert caught.value.retryable is True


# -- rendering and config ------------------------------------------------------------------------


def test_a_firing_alert_expires_after_four_resend_intervals() -> None:
    am = notifier("http://am:9093", resend_interval="30s")
    assert am.resend_interval_s == 30.0
    started = NOW - timedelta(minutes=10)
    notice = make_notification(
        starts_at=started,
        official_status="degraded_performance",
        escalation_step=2,
        url="https://llmpulse.example.com/alerts#alert-fp",
    )
    assert am.render(notice, now=NOW) == {
        "labels": {
            "alertname": "error_rate_critical",
            "severity": "critical",
            "provider": "openai",
            "target": "openai/gpt-4o-mini",
            "source": "llmpulse",
        },
        "annotations": {
            "summary": "error rate 12% over 5m (threshold 5%)",
            "value": "0.12",
            "threshold": "0.05",
            "official_status": "degraded_performance",
            "dashboard": "https://llmpulse.example.com/alerts#alert-fp",
            "escalation_step": "2",
        },
        "startsAt": "2025-03-01T12:00:00Z",
        "endsAt": "2025-03-01T12:12:00Z",
        "generatorURL": "https://llmpulse.example.com/alerts#alert-fp",
    }


def test_acknowledged_renders_firing_and_resolved_ends_when_it_resolved() -> None:
    am = notifier("http://am:9093")
    assert am.resend_interval_s == 60.0
    started, ended = NOW - timedelta(minutes=10), NOW - timedelta(minutes=1)
    acked = make_notification(
        AlertState.ACKNOWLEDGED,
        starts_at=started,
        value=None,
        threshold=None,
        acknowledged_by="alice",
        acknowledged_at=NOW - timedelta(minutes=2),
    )
    rendered = am.render(acked, now=NOW)
    assert rendered["endsAt"] == "2025-03-01T12:14:00Z"
    assert rendered["annotations"] == {
        "summary": "error rate 12% over 5m (threshold 5%)",
        "acknowledged_by": "alice",
        "acknowledged_at": "2025-03-01T12:08:00Z",
    }
    assert "generatorURL" not in rendered
    resolved = make_notification(AlertState.RESOLVED, starts_at=started, ends_at=ended)
    rendered = am.render(resolved, now=NOW)
    assert (rendered["startsAt"], rendered["endsAt"]) == (
        "2025-03-01T12:00:00Z",
        "2025-03-01T12:09:00Z",
    )
    assert rendered["labels"] == am.render(acked, now=NOW)["labels"]  # the same alert


def test_config_references_credential_headers_and_resolves_them() -> None:
    settings = resolve_notifiers(
        [
            {
                "type": "alertmanager",
                "url": "http://am:9093/prefix",
                "headers": {"Authorization": "os.environ/AM_AUTH", "X-Scope-OrgID": "team-a"},
            }
        ],
        ENV,
    )
    assert ENV["AM_AUTH"] in settings[0].secrets
    am = build_notifiers(settings)[0]
    assert isinstance(am, AlertmanagerNotifier)
    assert am.origin == "http://am:9093"
    assert ENV["AM_AUTH"] not in repr(am) and ENV["AM_AUTH"] not in repr(settings)


@pytest.mark.parametrize(
    ("config", "error"),
    [
        (
            {"headers": {"Authorization": "Basic SECRET"}},
            "notifiers[0].headers: header 'Authorization' carries a credential: must reference",
        ),
        (
            {"url": "http://am:9093/api/v2/alerts"},
            "notifiers[0].url: expected Alertmanager's base URL",
        ),
        ({"url": "am:9093"}, "notifiers[0].url: expected an http"),
        ({"resend_interval": "0s"}, "notifiers[0].resend_interval: "),
        ({"resend_interval": "soon"}, "notifiers[0].resend_interval: "),
        ({"token": "SECRET"}, "notifiers[0].token: unknown key"),
    ],
)
def test_config_errors_name_the_key(config: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        notifier(**{"url": "http://am:9093", **config})
    assert error in str(caught.value)
    assert "SECRET" not in str(caught.value) and "\n" not in str(caught.value)
