"""Slack incoming webhook: a Block Kit message with a plain-text fallback.

The fallback ``text`` is what notifications and screen readers show; the blocks carry the
detail. The status is shown by emoji: a colour bar needs legacy attachments, which Slack may
collapse behind "show more".

``webhook_url`` embeds the channel's token: reference it as ``os.environ/NAME``.
"""

from __future__ import annotations

from typing import Any

from llmpulse.alerts.model import Notification
from llmpulse.alerts.notifiers.base import (
    HttpNotifier,
    facts,
    headline,
    status_emoji,
    truncate,
)

# Block Kit limits: header text 150 characters, section text 3000, a field 2000, 10 fields.
_HEADER_MAX = 150
_TEXT_MAX = 3000
_FIELD_MAX = 2000


class SlackNotifier(HttpNotifier):
    type = "slack"

    def render(self, notification: Notification) -> dict[str, Any]:
        n = notification
        emoji = status_emoji(n)
        title = f"{emoji} {'[TEST] ' if n.test else ''}{str(n.status).upper()}: {n.rule}"
        # At most 10 fields: the dashboard link goes in the context line, where it always fits.
        fields = [
            {"type": "mrkdwn", "text": truncate(f"*{label}*\n{value}", _FIELD_MAX)}
            for label, value in facts(n)
            if label != "Dashboard"
        ]
        context = f"llmpulse · fingerprint `{n.fingerprint}`"
        if n.url is not None:
            context += f" · <{n.url}|open on the dashboard>"
        return {
            "text": truncate(f"{emoji} {headline(n)}", _TEXT_MAX),
            "blocks": [
                {
                    "type": "header",
                    "text": {"type": "plain_text", "text": truncate(title, _HEADER_MAX)},
                },
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": truncate(n.summary, _TEXT_MAX)},
                },
                {"type": "section", "fields": fields[:10]},
                {
                    "type": "context",
                    "elements": [{"type": "mrkdwn", "text": context}],
                },
            ],
        }
