"""Microsoft Teams: an Adaptive Card in the message envelope that Workflows webhooks accept.

Teams' Workflows ("Post to a channel when a webhook request is received") take
``{"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
"content": <card>}]}``; the retired Office 365 connector MessageCard format is not used.

``webhook_url`` embeds a signature: reference it as ``os.environ/NAME``.
"""

from __future__ import annotations

from typing import Any

from llmpulse.alerts.model import AlertState, Notification
from llmpulse.alerts.notifiers.base import HttpNotifier, facts, headline, truncate

CARD_VERSION = "1.4"
_SUMMARY_MAX = 4000  # far below the ~28 KB a Teams message may hold
_STYLE = {"critical": "attention", "warning": "warning"}


class TeamsNotifier(HttpNotifier):
    type = "teams"

    def render(self, notification: Notification) -> dict[str, Any]:
        n = notification
        style = {AlertState.RESOLVED: "good", AlertState.ACKNOWLEDGED: "accent"}.get(
            n.status, _STYLE[str(n.severity)]
        )
        card = {
            "type": "AdaptiveCard",
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "version": CARD_VERSION,
            "msteams": {"width": "Full"},
            "fallbackText": headline(n),
            "body": [
                {
                    "type": "Container",
                    "style": style,
                    "bleed": True,
                    "items": [
                        {
                            "type": "TextBlock",
                            "text": f"{'[TEST] ' if n.test else ''}"
                            f"{str(n.status).upper()}: {n.rule} — {n.target}",
                            "weight": "Bolder",
                            "size": "Medium",
                            "wrap": True,
                        }
                    ],
                },
                {"type": "TextBlock", "text": truncate(n.summary, _SUMMARY_MAX), "wrap": True},
                {
                    "type": "FactSet",
                    "facts": [{"title": label, "value": value} for label, value in facts(n)],
                },
                {
                    "type": "TextBlock",
                    "text": f"llmpulse · {n.fingerprint}",
                    "isSubtle": True,
                    "size": "Small",
                    "wrap": True,
                },
            ],
        }
        return {
            "type": "message",
            "attachments": [
                {
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": None,
                    "content": card,
                }
            ],
        }
