"""The notifier interface, its one error type, and what every channel shares.

A notifier turns one ``Notification`` into one delivery attempt. It never retries: the outbox
decides when to try again, from ``DeliveryError.retryable`` and ``retry_after_s``.
"""

from __future__ import annotations

import abc
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
from yarl import URL

from llmpulse.alerts.model import AlertState, Notification
from llmpulse.rules import Severity

HTTP_TIMEOUT = aiohttp.ClientTimeout(total=10)
ANSWER_MAX_BYTES = 4096  # of a receiver's answer, the most that is ever read
_RETRYABLE_STATUS = frozenset({408, 429})
_BODY_EXCERPT = 200


class DeliveryError(Exception):
    """A failed delivery. The message names the channel and what the receiver answered.

    ``retryable`` is False when trying again cannot help (a revoked webhook, a rejected
    recipient); ``retry_after_s`` is the receiver's own Retry-After, when it sent one.
    """

    def __init__(self, message: str, *, retryable: bool, retry_after_s: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s


class Notifier(abc.ABC):
    """One configured channel. ``name`` is unique across the config; it keys the outbox."""

    type: str
    # The credentials it holds (references resolved, tokens in its URLs), for the redactor.
    secrets: tuple[str, ...] = ()
    # A receiver that forgets a firing alert unless it hears of it again (Alertmanager) sets
    # this: the engine re-sends each firing alert it was paged with at this interval.
    resend_interval_s: float | None = None

    def __init__(self, name: str | None = None) -> None:
        self.name = name or self.type

    @abc.abstractmethod
    async def send(self, notification: Notification, session: aiohttp.ClientSession) -> str:
        """Deliver once; return what the receiver answered (e.g. "HTTP 202").

        Raises DeliveryError. ``session`` is shared by all HTTP channels; others ignore it.
        """

    def __repr__(self) -> str:
        # Deliberately only the name: every other attribute may hold a token.
        return f"{type(self).__name__}(name={self.name!r})"


class HttpNotifier(Notifier):
    """A channel that POSTs one JSON document per notification to a URL that may embed a token."""

    def __init__(self, url: str, name: str | None = None) -> None:
        super().__init__(name)
        self._url = url
        parsed = URL(url)
        # Webhook URLs carry their token in the path or query: errors show only this.
        self.origin = str(parsed.origin())

    @abc.abstractmethod
    def render(self, notification: Notification) -> dict[str, Any]:
        """The JSON document this channel's receiver expects."""

    async def send(self, notification: Notification, session: aiohttp.ClientSession) -> str:
        return await self.post(session, json.dumps(self.render(notification)).encode())

    async def post(
        self, session: aiohttp.ClientSession, body: bytes, headers: Mapping[str, str] | None = None
    ) -> str:
        """POST a JSON body once; classify whatever comes back."""
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        where = f"{self.type} {self.name!r}"
        try:
            async with session.post(
                self._url,
                data=body,
                headers=all_headers,
                timeout=HTTP_TIMEOUT,
                allow_redirects=False,
            ) as response:
                # Only a bounded excerpt of an answer is ever shown.
                text = (await response.content.read(ANSWER_MAX_BYTES)).decode(errors="replace")
                status = response.status
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
        except TimeoutError:
            raise DeliveryError(
                f"{where}: no answer from {self.origin} within 10s", retryable=True
            ) from None
        except aiohttp.ClientError as exc:
            detail = self._redact(str(exc) or type(exc).__name__)
            raise DeliveryError(f"{where}: {detail}", retryable=True) from None
        if 200 <= status < 300:
            return f"HTTP {status}"
        excerpt = " ".join(self._redact(text).split())[:_BODY_EXCERPT]
        message = f"{where}: HTTP {status} from {self.origin}" + (f": {excerpt}" if excerpt else "")
        raise DeliveryError(message, retryable=retryable_status(status), retry_after_s=retry_after)

    def _redact(self, text: str) -> str:
        parsed = URL(self._url)
        text = text.replace(self._url, self.origin)
        for secret in (parsed.raw_path if parsed.raw_path != "/" else "", parsed.raw_query_string):
            if secret:
                text = text.replace(secret, "…")
        return text


def retryable_status(status: int) -> bool:
    """Whether an HTTP error status is worth another try: a timeout, a rate limit, a 5xx."""
    return status in _RETRYABLE_STATUS or status >= 500


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: either a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - time.time())


# Rendering shared by the chat, paging and mail channels, so they all say the same thing.


def status_emoji(n: Notification) -> str:
    if n.status is AlertState.RESOLVED:
        return "✅"
    if n.status is AlertState.ACKNOWLEDGED:
        return "👀"
    return "🔴" if n.severity is Severity.CRITICAL else "🟠"


def status_color(n: Notification) -> int:
    """RGB: red for critical, amber for warning, blue once acknowledged, green once resolved."""
    if n.status is AlertState.RESOLVED:
        return 0x12B76A
    if n.status is AlertState.ACKNOWLEDGED:
        return 0x2E90FA
    return 0xD92D20 if n.severity is Severity.CRITICAL else 0xF79009


def headline(n: Notification) -> str:
    """``[FIRING critical] error_rate_critical openai/gpt-4o-mini: <summary>``"""
    test = "[TEST] " if n.test else ""
    return f"{test}[{str(n.status).upper()} {n.severity}] {n.rule} {n.target}: {n.summary}"


def fmt_number(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def fmt_time(when: datetime | None) -> str:
    return "—" if when is None else when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def facts(n: Notification) -> list[tuple[str, str]]:
    """The labelled facts every rich channel shows, in display order."""
    rows = [
        ("Status", f"{str(n.status).upper()} ({n.severity})"),
        ("Rule", n.rule),
        ("Target", n.target),
        ("Provider", n.provider),
        ("Value", f"{fmt_number(n.value)} (threshold {fmt_number(n.threshold)})"),
        ("Official status", n.official_status or "—"),
        ("Started", fmt_time(n.starts_at)),
    ]
    if n.ends_at is not None:
        rows.append(("Ended", fmt_time(n.ends_at)))
    if n.escalation_step:
        rows.append(("Escalation", f"step {n.escalation_step}: nobody has acknowledged it"))
    if n.acknowledged_by is not None:
        rows.append(("Acknowledged", f"by {n.acknowledged_by} at {fmt_time(n.acknowledged_at)}"))
    if n.url is not None:
        rows.append(("Dashboard", n.url))
    return rows


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
