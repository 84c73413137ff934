"""Generic webhook: the ``Notification.to_json()`` contract, one alert per POST.

With a ``secret``, each request carries ``X-Llmpulse-Signature: sha256=<hex>``, the
HMAC-SHA256 of the exact request body bytes keyed with the secret. A receiver verifies it by
computing the same HMAC over the raw body it read (before any JSON parsing) and comparing with
``hmac.compare_digest``. Test notifications (``llmpulse notify test``) also carry
``X-Llmpulse-Test: true``; the body is the contract either way.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from llmpulse.alerts.model import Notification
from llmpulse.alerts.notifiers.base import HttpNotifier

SIGNATURE_HEADER = "X-Llmpulse-Signature"


def sign(secret: str, body: bytes) -> str:
    """The signature header value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookNotifier(HttpNotifier):
    type = "webhook"

    def __init__(
        self,
        url: str,
        name: str | None = None,
        secret: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(url, name)
        self._secret = secret
        self._headers = dict(headers or {})

    def render(self, notification: Notification) -> dict[str, Any]:
        return notification.to_json()

    async def send(self, notification: Notification, session: aiohttp.ClientSession) -> str:
        # Encode once so the signature covers exactly the bytes that are sent.
        body = json.dumps(self.render(notification), separators=(",", ":")).encode()
        headers = {"User-Agent": "llmpulse", **self._headers}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret, body)
        if notification.test:
            headers["X-Llmpulse-Test"] = "true"
        return await self.post(session, body, headers)
