"""One definition of a duration, used by the config, the rate-limit headers and the simulator.

Accepts Go-style durations as OpenAI and Groq send them in ``x-ratelimit-reset-*``
(``12ms``, ``6m0s``, ``2m59.56s``, ``1h2m3s``) and the config's ``30s``, ``5m``, ``250ms``, ``7d``.
"""

from __future__ import annotations

import re

_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d)")
_WHOLE = re.compile(r"(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h|d))+")


class DurationError(ValueError):
    """A string that is not a duration."""


def parse_duration(value: str | float | int) -> float:
    """Return ``value`` in seconds.

    Numbers are taken as seconds. Strings are one or more ``<number><unit>`` parts with
    units ns, us/µs, ms, s, m, h, d; a bare number string is seconds too.
    """
    if isinstance(value, bool):
        raise DurationError(f"expected a duration such as '30s', got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise DurationError(f"a duration cannot be negative, got {value!r}")
        return float(value)
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if seconds < 0 or seconds != seconds:
            raise DurationError(f"a duration cannot be negative, got {value!r}")
        return seconds
    if not text or not _WHOLE.fullmatch(text):
        raise DurationError(
            f"expected a duration such as '250ms', '30s', '5m' or '1h', got {value!r}"
        )
    return sum(float(num) * _UNIT_SECONDS[unit] for num, unit in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """Render seconds compactly for tables: ``850ms``, ``2.5s``, ``3m20s``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m" if minutes else f"{hours}h"
