"""PagerDuty → llmpulse: acknowledgements made in PagerDuty come back through its V3 webhooks.

A webhook subscription in PagerDuty POSTs one event per request to ``/api/v1/integrations/
pagerduty``. PagerDuty cannot sign in, so the route is outside the dashboard's credentials: its
authentication is ``X-PagerDuty-Signature``, ``v1=<hex HMAC-SHA256 of the raw body>`` keyed by
the subscription's secret, one per secret while a secret rotates (comma-separated). Every
PagerDuty notifier with a ``webhook_secret`` is tried; the one that signed names the notifier.

``incident.acknowledged`` acknowledges the alert whose fingerprint is the incident's
``incident_key``: an incident our Events API trigger opened carries our ``dedup_key`` there.
The acknowledgement is ``via`` that notifier, so the leader tells everyone else the alert paged
but sends no acknowledge back to PagerDuty. ``incident.unacknowledged`` (an acknowledgement
timed out in PagerDuty) takes back an acknowledgement that came from there, never one made in
llmpulse. Anything else, and incidents that are not ours, are answered 200 and ignored:
PagerDuty retries what it does not get a 2xx for.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from llmpulse.config import Config
from llmpulse.config.notifiers import PagerDutyConfig
from llmpulse.secrets import Redactor, one_line
from llmpulse.web import schemas
from llmpulse.web.auth import PAGERDUTY_WEBHOOK, read_body
from llmpulse.web.view import Conflict, NotFound, View

log = logging.getLogger(__name__)

ROUTE = PAGERDUTY_WEBHOOK
MAX_BODY = 256 * 1024  # an incident event is a few KiB
SIGNATURE_HEADER = "X-PagerDuty-Signature"
MAX_SIGNATURES = 8  # one per secret: two while one rotates
ACKNOWLEDGED = "incident.acknowledged"
UNACKNOWLEDGED = "incident.unacknowledged"
NOT_OURS = "not an llmpulse alert"  # not every PagerDuty incident is
NAME_MAX = 100  # of the names and links taken from an event
URL_MAX = 500
KEY_MAX = 64  # our fingerprints are 16 hex digits; a longer incident key is not ours


@dataclasses.dataclass(frozen=True, slots=True)
class Subscription:
    """A PagerDuty notifier whose webhook subscription's secret llmpulse knows."""

    notifier: str
    secret: str = dataclasses.field(repr=False)


def subscriptions(config: Config) -> list[Subscription]:
    return [
        Subscription(n.name, n.config.webhook_secret)
        for n in config.notifiers
        if isinstance(n.config, PagerDutyConfig) and n.config.webhook_secret
    ]


def signed_by(
    body: bytes, header: str | None, candidates: list[Subscription]
) -> Subscription | None:
    """The subscription whose secret signed ``body``, if any signature in ``header`` is one."""
    given = [
        s.strip().removeprefix("v1=").lower().encode("ascii", "replace")
        for s in (header or "").split(",")
        if s.strip().startswith("v1=")
    ][:MAX_SIGNATURES]
    for sub in candidates:
        expected = hmac.new(sub.secret.encode(), body, hashlib.sha256).hexdigest().encode()
        # Every signature is compared, so the time taken says nothing of which one matched.
        if sum(hmac.compare_digest(expected, signature) for signature in given):
            return sub
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class IncidentEvent:
    """What llmpulse reads of a V3 webhook event; the text in it is PagerDuty's, untrusted."""

    type: str
    incident_key: str | None = None
    agent: str | None = None  # who did it, as PagerDuty names them
    url: str | None = None  # the incident's page in PagerDuty
    occurred_at: float | None = None  # when it happened in PagerDuty (unix seconds)


def parse_event(body: bytes) -> IncidentEvent:
    """Raises ValueError when ``body`` is not a V3 webhook event."""
    try:
        payload = json.loads(body)  # JSONDecodeError and UnicodeDecodeError are ValueErrors
    except RecursionError:  # nested deeper than the parser goes
        raise ValueError("not a V3 webhook event: nested too deep") from None
    event = payload.get("event") if isinstance(payload, dict) else None
    if not isinstance(event, dict) or not isinstance(event.get("event_type"), str):
        raise ValueError("expected a V3 webhook event: {'event': {'event_type': ...}}")
    data = _mapping(event.get("data"))
    if event.get("resource_type") != "incident" or data.get("type") != "incident":
        return IncidentEvent(type=event["event_type"])
    return IncidentEvent(
        type=event["event_type"],
        incident_key=_text(data.get("incident_key")),
        agent=_text(_mapping(event.get("agent")).get("summary")),
        url=_text(data.get("html_url")),
        occurred_at=_timestamp(event.get("occurred_at")),
    )


def apply(view: View, event: IncidentEvent, notifier: str) -> schemas.WebhookResult:
    """Acknowledge, or take back, the alert ``event`` is of (through ``notifier``)."""
    if event.type not in (ACKNOWLEDGED, UNACKNOWLEDGED):
        return _ignored(f"{_clean(event.type, view.redact)}: no action")
    key = event.incident_key
    if not key or len(key) > KEY_MAX:
        return _ignored(NOT_OURS)
    record = view.alert_state.record(key)
    if record is None:
        return _ignored(NOT_OURS)
    if event.occurred_at is not None and event.occurred_at < (record.fired_at or 0.0):
        # A late retry (or a replay) of an event of an earlier firing of the same alert: the
        # signature has no timestamp, the event has.
        return _ignored("the event is older than this firing of the alert", key)
    if event.type == ACKNOWLEDGED:
        agent = _clean(event.agent, view.redact)
        url = _clean(event.url, view.redact, URL_MAX)
        by = f"{agent} (PagerDuty)" if agent else "PagerDuty"
        comment = f"PagerDuty incident {url}" if url.startswith("https://") else ""
        try:
            alert = view.acknowledge(key, by, comment, via=notifier)
        except NotFound:
            return _ignored(NOT_OURS)
        except Conflict:
            return _ignored("the alert is not firing", key)
        log.info("PagerDuty (%s): alert %s acknowledged by %s", notifier, key, by)
        return schemas.WebhookResult(
            result="acknowledged", fingerprint=key, acknowledged_by=alert.acknowledged_by
        )
    ack = next((a for a in view.alert_state.acknowledgements() if a.fingerprint == key), None)
    if ack is None or ack.via != notifier:
        # Acknowledged in llmpulse (or not at all): PagerDuty's timeout does not undo that.
        return _ignored("not acknowledged through PagerDuty", key)
    try:
        view.unacknowledge(key)
    except NotFound:
        return _ignored(NOT_OURS)
    log.info("PagerDuty (%s): acknowledgement of alert %s taken back", notifier, key)
    return schemas.WebhookResult(result="unacknowledged", fingerprint=key)


def routes(view: View) -> APIRouter:
    router = APIRouter(tags=["integrations"])
    candidates = subscriptions(view.config)
    problem = {"model": schemas.Problem}

    @router.post(
        ROUTE,
        response_model=schemas.WebhookResult,
        responses={
            400: {**problem, "description": "Not a V3 webhook event"},
            401: {**problem, "description": f"Missing or wrong {SIGNATURE_HEADER}"},
            404: {**problem, "description": "No PagerDuty notifier has a webhook_secret"},
            413: {**problem, "description": f"Body over {MAX_BODY // 1024} KiB"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    )
    async def pagerduty_webhook(request: Request) -> schemas.WebhookResult:
        """PagerDuty's V3 webhooks (incident.acknowledged, incident.unacknowledged), signed with
        the subscription's secret in X-PagerDuty-Signature; no dashboard credentials."""
        if not candidates:
            raise HTTPException(404, "PagerDuty webhooks are off: no pagerduty notifier has a "
                                     "webhook_secret")  # fmt: skip
        body = await read_body(request.scope, request.receive, MAX_BODY)
        if body is None:
            raise HTTPException(413, f"the body is over {MAX_BODY // 1024} KiB")
        sub = signed_by(body, request.headers.get(SIGNATURE_HEADER), candidates)
        if sub is None:
            raise HTTPException(401, f"missing or wrong {SIGNATURE_HEADER}")
        try:
            event = parse_event(body)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        return await run_in_threadpool(apply, view, event, sub.notifier)

    return router


def _ignored(reason: str, fingerprint: str | None = None) -> schemas.WebhookResult:
    return schemas.WebhookResult(result="ignored", reason=reason, fingerprint=fingerprint)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _timestamp(value: Any) -> float | None:
    """An ISO 8601 time (PagerDuty's ``occurred_at``) as unix seconds; None if it is not one."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _clean(text: str | None, redact: Redactor, limit: int = NAME_MAX) -> str:
    """Untrusted text, fit to show and store: no secrets, no control characters, bounded."""
    return redact(one_line((text or "")[: limit * 4]))[:limit]
