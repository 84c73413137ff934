"""Any other service through Apprise (``urls``: Telegram, Opsgenie, ntfy, Matrix, ...).

Apprise is synchronous, so each send runs in a worker thread. It reports only success or
failure, so every failure is treated as retryable. All ``urls`` of one notifier are retried
together; give a service its own notifier to retry it on its own.
Apprise URLs hold credentials: reference them as ``os.environ/NAME``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import aiohttp
import apprise

from llmpulse.alerts.model import AlertState, Notification
from llmpulse.alerts.notifiers.base import DeliveryError, Notifier, facts, headline


class AppriseNotifier(Notifier):
    type = "apprise"

    def __init__(self, urls: Sequence[str], name: str | None = None) -> None:
        super().__init__(name)
        self._apprise = apprise.Apprise()
        log = logging.getLogger("apprise")
        for index, url in enumerate(urls):
            # Apprise logs a URL it cannot parse verbatim, credential included: mute it here
            # and name the index instead.
            log.disabled, was_disabled = True, log.disabled
            try:
                added = self._apprise.add(url)
            finally:
                log.disabled = was_disabled
            if not added:
                raise ValueError(f"urls[{index}]: not a URL Apprise understands")

    async def send(self, notification: Notification, session: aiohttp.ClientSession) -> str:
        n = notification
        body = "\n".join([n.summary, "", *(f"{label}: {value}" for label, value in facts(n))])
        kind = apprise.NotifyType.SUCCESS
        if n.status is AlertState.ACKNOWLEDGED:
            kind = apprise.NotifyType.INFO
        elif n.status is AlertState.FIRING:
            critical = n.severity == "critical"
            kind = apprise.NotifyType.FAILURE if critical else apprise.NotifyType.WARNING
        ok = await asyncio.to_thread(
            self._apprise.notify, body=body, title=headline(n), notify_type=kind
        )
        if not ok:
            raise DeliveryError(
                f"apprise {self.name!r}: at least one of {len(self._apprise)} service(s) failed",
                retryable=True,
            )
        return f"delivered to {len(self._apprise)} service(s)"
