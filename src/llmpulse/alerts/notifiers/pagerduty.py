"""PagerDuty Events API v2: ``trigger`` when an alert fires, ``acknowledge`` when someone
acknowledges it in llmpulse, ``resolve`` when it resolves.

All carry ``dedup_key`` = the alert fingerprint, so they act on the incident the trigger
opened (and a repeated trigger is folded into it). PagerDuty answers 202 when it has
accepted the event; 400 is an invalid event (permanent), 429 and 5xx are retried.

``routing_key`` is the integration key: it must be an environment reference.
"""

from __future__ import annotations

from typing import Any

from llmpulse.alerts.model import AlertState, Notification
from llmpulse.alerts.notifiers.base import HttpNotifier, headline, iso, truncate
from llmpulse.config.notifiers import PAGERDUTY_EVENTS_URL

SUMMARY_MAX = 1024
DEDUP_KEY_MAX = 255


class PagerDutyNotifier(HttpNotifier):
    type = "pagerduty"

    def __init__(
        self, routing_key: str, url: str = PAGERDUTY_EVENTS_URL, name: str | None = None
    ) -> None:
        super().__init__(url, name)
        self._routing_key = routing_key

    def render(self, notification: Notification) -> dict[str, Any]:
        n = notification
        event: dict[str, Any] = {
            "routing_key": self._routing_key,
            "dedup_key": n.fingerprint[:DEDUP_KEY_MAX],
        }
        if n.status is AlertState.RESOLVED:
            event["event_action"] = "resolve"
            return event
        if n.status is AlertState.ACKNOWLEDGED:
            event["event_action"] = "acknowledge"
            return event
        event["event_action"] = "trigger"
        event["client"] = "llmpulse"
        event["payload"] = {
            "summary": truncate(headline(n), SUMMARY_MAX),
            "source": n.target,
            "severity": str(n.severity),  # llmpulse's two severities are PagerDuty's names too
            "timestamp": iso(n.starts_at),
            "component": n.provider,
            "group": n.provider,
            "class": n.rule,
            "custom_details": {**n.to_json(), "test": n.test},
        }
        if n.url is not None:
            event["links"] = [{"href": n.url, "text": "The alert on the llmpulse dashboard"}]
        return event
