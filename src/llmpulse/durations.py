"""One definition of a duration, used by the config, the rate-limit headers and the simulator.

Accepts Go-style durations as OpenAI and Groq send them in ``x-ratelimit-reset-*``
(``12ms``, ``6m0s``, ``2m59.56s``, ``1h2m3s``) and the config's ``30s``, ``5m``, ``250ms``, ``7d``.

A duration is finite, not negative and at most ``MAX_SECONDS``: NaN compares false with every
bound, so an unchecked ``.nan`` slips through ``< 0`` and later divides or times out nothing;
infinity and huge values overflow sockets' timeouts and datetimes. ``Duration`` (more than 0:
intervals, timeouts, windows) and ``DurationOrZero`` (where 0 means "none", e.g. a wait) are the
pydantic types every config model uses.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Annotated

from pydantic import BeforeValidator

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
# 100 years: beyond any interval, timeout or retention, and within what a socket timeout
# (about 292 years of nanoseconds) and datetime arithmetic can hold.
MAX_SECONDS = 100 * 365 * 86400.0


class DurationError(ValueError):
    """A string that is not a duration."""


def parse_duration(value: str | float | int) -> float:
    """Return ``value`` in seconds: finite, not negative, at most ``MAX_SECONDS``.

    Numbers are taken as seconds. Strings are one or more ``<number><unit>`` parts with
    units ns, us/µs, ms, s, m, h, d; a bare number string is seconds too.
    """
    if isinstance(value, bool):
        raise DurationError(f"expected a duration such as '30s', got {value!r}")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int past float's range
            seconds = math.inf
    elif isinstance(value, str):
        seconds = _parse_text(value)
    else:
        raise DurationError(f"expected a duration such as '30s', got {type(value).__name__}")
    if not 0 <= seconds <= MAX_SECONDS:  # NaN fails both bounds
        if seconds < 0:
            raise DurationError(f"a duration cannot be negative, got {value!r}")
        raise DurationError(f"a duration must be finite and at most 100 years, got {value!r}")
    return seconds


@functools.lru_cache(maxsize=256)
def _parse_text(value: str) -> float:
    # Cached: a config repeats a few durations ("30s") over thousands of targets.
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    if not text or not _WHOLE.fullmatch(text):
        raise DurationError(
            f"expected a duration such as '250ms', '30s', '5m' or '1h', got {value!r}"
        )
    return sum(float(num) * _UNIT_SECONDS[unit] for num, unit in _PART.findall(text))


def positive_duration(value: str | float | int) -> float:
    """``parse_duration``, and more than 0: an interval or a timeout of 0 means nothing."""
    seconds = parse_duration(value)
    if seconds == 0:
        raise DurationError(f"a duration must be more than 0, got {value!r}")
    return seconds


Duration = Annotated[float, BeforeValidator(positive_duration)]
DurationOrZero = Annotated[float, BeforeValidator(parse_duration)]


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
