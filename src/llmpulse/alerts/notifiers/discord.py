"""Discord webhook: a short ``content`` line and one embed with the facts as fields.

Discord refuses a message that exceeds its embed limits (HTTP 400), so every text is cut to
fit: title 256, description 4096, field name 256 and value 1024, 25 fields, footer 2048,
6000 for all of an embed's text together, 2000 for content.

``webhook_url`` embeds the webhook's token: reference it as ``os.environ/NAME``.
"""

from __future__ import annotations

from typing import Any

from llmpulse.alerts.model import AlertState, Notification
from llmpulse.alerts.notifiers.base import (
    HttpNotifier,
    facts,
    headline,
    iso,
    status_color,
    status_emoji,
    truncate,
)

TITLE_MAX = 256
DESCRIPTION_MAX = 4096
FIELDS_MAX = 25
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FOOTER_MAX = 2048
EMBED_TOTAL_MAX = 6000
CONTENT_MAX = 2000


class DiscordNotifier(HttpNotifier):
    type = "discord"

    def render(self, notification: Notification) -> dict[str, Any]:
        n = notification
        emoji = status_emoji(n)
        title = f"{'[TEST] ' if n.test else ''}{str(n.status).upper()}: {n.rule} — {n.target}"
        when = n.ends_at if n.status is AlertState.RESOLVED and n.ends_at else n.starts_at
        fields: list[dict[str, Any]] = [
            {
                "name": truncate(label, FIELD_NAME_MAX),
                "value": truncate(value, FIELD_VALUE_MAX),
                "inline": label not in ("Value", "Official status"),
            }
            for label, value in facts(n)
        ]
        fields = fields[:FIELDS_MAX]
        title = truncate(title, TITLE_MAX)
        footer = truncate(f"llmpulse · {n.fingerprint}", FOOTER_MAX)
        # The description (the summary) gives way when the total would exceed the embed limit.
        used = len(title) + len(footer) + sum(len(f["name"]) + len(f["value"]) for f in fields)
        room = max(1, min(DESCRIPTION_MAX, EMBED_TOTAL_MAX - used))
        return {
            "content": truncate(f"{emoji} {headline(n)}", CONTENT_MAX),
            "embeds": [
                {
                    "title": title,
                    "description": truncate(n.summary, room),
                    "color": status_color(n),
                    "fields": fields,
                    "timestamp": iso(when),
                    "footer": {"text": footer},
                }
            ],
            # No @everyone/@here pings from alert text.
            "allowed_mentions": {"parse": []},
        }
