"""``llmpulse notify test``: one test alert to every channel, answers reported, nothing queued."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import aiohttp

from llmpulse.alerts.model import AlertState, Notification
from llmpulse.alerts.notifiers import DeliveryError, Notifier
from llmpulse.rules import Severity


def sample_notification() -> Notification:
    return Notification(
        status=AlertState.FIRING,
        severity=Severity.WARNING,
        rule="test",
        target="llmpulse",
        provider="llmpulse",
        summary="Test alert from `llmpulse notify test`: this channel works.",
        value=None,
        threshold=None,
        starts_at=datetime.now(UTC),
        ends_at=None,
        fingerprint="test",
        test=True,
    )


async def send_test(notifiers: Sequence[Notifier]) -> list[tuple[str, bool, str]]:
    """(name, delivered, what the receiver answered) for every notifier, sent concurrently."""
    notification = sample_notification()
    async with aiohttp.ClientSession() as session:

        async def one(notifier: Notifier) -> tuple[str, bool, str]:
            try:
                return notifier.name, True, await notifier.send(notification, session)
            except DeliveryError as exc:
                return notifier.name, False, str(exc)

        return list(await asyncio.gather(*(one(n) for n in notifiers)))
