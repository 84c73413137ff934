"""Prometheus Alertmanager's v2 API: its own routing, grouping and silences for llmpulse's alerts.

Each notice is POSTed to ``{url}/api/v2/alerts`` as an array of one ``postableAlert``.

Alertmanager identifies an alert by its label set. Like Prometheus, llmpulse posts a firing
alert with ``endsAt`` a few resend intervals ahead and keeps re-posting it (the engine re-sends
every ``resend_interval_s``): an alert that stops being re-posted, because llmpulse stopped,
resolves by itself. An acknowledged alert is still firing; a resolved notice ends it at the
time it resolved. Alertmanager answers 200 once it has taken the alert (silenced ones too);
400 is an invalid alert (permanent), 5xx is retried.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from llmpulse.alerts.model import AlertState, Notification
from llmpulse.alerts.notifiers.base import HttpNotifier, fmt_number, iso
from llmpulse.config.notifiers import ALERTMANAGER_ALERTS_PATH

# Prometheus posts alerts with endsAt = 4 × its resend delay ahead, for the same reason.
EXPIRY_RESENDS = 4
# Every alert carries it: an Alertmanager route or inhibit rule matches llmpulse's alerts by
# it, and they never merge with a Prometheus alert that happens to share the other labels.
SOURCE_LABEL = ("source", "llmpulse")


class AlertmanagerNotifier(HttpNotifier):
    type = "alertmanager"

    def __init__(
        self,
        url: str,
        name: str | None = None,
        headers: Mapping[str, str] | None = None,
        resend_interval_s: float = 60.0,
    ) -> None:
        super().__init__(url.rstrip("/") + ALERTMANAGER_ALERTS_PATH, name)
        self._headers = dict(headers or {})
        self.resend_interval_s = resend_interval_s
        self._expires_after = timedelta(seconds=EXPIRY_RESENDS * resend_interval_s)

    def render(self, notification: Notification, now: datetime | None = None) -> dict[str, Any]:
        """The one ``postableAlert``; ``now`` is the send time firing alerts expire after."""
        n = notification
        now = now or datetime.now(UTC)
        # Firing or acknowledged: active until it resolves or stops being re-sent.
        resolved = n.status is AlertState.RESOLVED
        ends_at = (n.ends_at or now) if resolved else now + self._expires_after
        annotations = {"summary": n.summary}
        optional = {
            "value": None if n.value is None else fmt_number(n.value),
            "threshold": None if n.threshold is None else fmt_number(n.threshold),
            "official_status": n.official_status,
            "dashboard": n.url,
            "acknowledged_by": n.acknowledged_by,
            "acknowledged_at": iso(n.acknowledged_at) if n.acknowledged_at else None,
            "escalation_step": str(n.escalation_step) if n.escalation_step else None,
        }
        annotations.update({k: v for k, v in optional.items() if v is not None})
        alert: dict[str, Any] = {
            "labels": {
                "alertname": n.rule,
                "severity": str(n.severity),
                "provider": n.provider,
                "target": n.target,
                SOURCE_LABEL[0]: SOURCE_LABEL[1],
            },
            "annotations": annotations,
            "startsAt": iso(n.starts_at),
            "endsAt": iso(ends_at),
        }
        if n.url is not None:
            alert["generatorURL"] = n.url
        return alert

    async def send(self, notification: Notification, session: aiohttp.ClientSession) -> str:
        body = json.dumps([self.render(notification)]).encode()
        return await self.post(session, body, {"User-Agent": "llmpulse", **self._headers})
