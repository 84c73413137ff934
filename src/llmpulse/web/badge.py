"""A shields.io-style SVG status badge, for a README: ``![status](https://host/badge/NAME.svg)``.

Hand-written: a badge is two rectangles and two texts; a library for it would add more than it
saves. Text widths are estimated from Verdana 11 px advance widths, as shields.io does.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from llmpulse.alerts.status import Status

COLORS = {
    Status.UP: "#2e9d4f",
    Status.DEGRADED: "#d9a300",
    Status.RATE_LIMITED: "#e07b00",
    Status.DOWN: "#d1342f",
    Status.UNKNOWN: "#8a8a8a",
}
WORDS = {
    Status.UP: "up",
    Status.DEGRADED: "degraded",
    Status.RATE_LIMITED: "rate limited",
    Status.DOWN: "down",
    Status.UNKNOWN: "unknown",
}
_NARROW = set("fijlrt1 .,:;'|!()[]/")
_WIDE = set("mwMW@%")


def _width(text: str) -> int:
    """Approximate rendered width in px of ``text`` in 11 px Verdana."""
    width = 0.0
    for ch in text:
        width += 3.6 if ch in _NARROW else 10.0 if ch in _WIDE else 7.0 if ch.isupper() else 6.2
    return round(width) + 10


def render(label: str, status: Status) -> str:
    message = WORDS[status]
    left, right = _width(label), _width(message)
    total = left + right
    label_x, message_x = left / 2, left + right / 2
    lbl, msg = escape(label), escape(message)
    aria = escape(f"{label}: {message}", {'"': "&quot;"})
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" '
        f'aria-label="{aria}">'
        f"<title>{lbl}: {msg}</title>"
        '<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" '
        'stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>'
        f'<clipPath id="r"><rect width="{total}" height="20" rx="3" fill="#fff"/></clipPath>'
        f'<g clip-path="url(#r)"><rect width="{left}" height="20" fill="#555"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{COLORS[status]}"/>'
        f'<rect width="{total}" height="20" fill="url(#s)"/></g>'
        '<g fill="#fff" text-anchor="middle" '
        'font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">'
        f'<text x="{label_x}" y="15" fill="#010101" fill-opacity=".3">{lbl}</text>'
        f'<text x="{label_x}" y="14">{lbl}</text>'
        f'<text x="{message_x}" y="15" fill="#010101" fill-opacity=".3">{msg}</text>'
        f'<text x="{message_x}" y="14">{msg}</text></g></svg>'
    )
