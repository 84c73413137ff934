"""Rate-limit headroom and server-directed delays from response headers.

Covers OpenAI/Groq/xAI/Azure ``x-ratelimit-{limit,remaining,reset}-<dim>`` (resets as Go-style
durations), Mistral's ``x-ratelimit-limit-tokens-minute`` style, the bare ``x-ratelimit-*`` of
OpenRouter and others, Anthropic ``anthropic-ratelimit-<dim>-{limit,remaining,reset}`` (resets as
RFC 3339 times), and ``retry-after-ms`` / ``retry-after``. Never raises on malformed values:
a header that cannot be read is ignored.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime

from llmpulse.durations import DurationError, parse_duration
from llmpulse.result import RateLimit

# How long a rate limit or an exhausted quota sidelines a deployment when the answer named no
# delay (no retry-after): the gateway's breakers and the probes' schedule both wait this long.
RATE_LIMITED_COOLDOWN_S = 5.0
QUOTA_COOLDOWN_S = 60.0

_OPENAI_PREFIX = "x-ratelimit-"
_ANTHROPIC_PREFIX = "anthropic-ratelimit-"


class _Dim:
    __slots__ = ("limit", "remaining", "reset_s")

    def __init__(self) -> None:
        self.limit: float | None = None
        self.remaining: float | None = None
        self.reset_s: float | None = None

    @property
    def utilization(self) -> float | None:
        if self.limit is None or self.remaining is None or self.limit <= 0:
            return None
        return min(1.0, max(0.0, 1.0 - self.remaining / self.limit))


def parse_ratelimit(headers: Mapping[str, str], now: float | None = None) -> RateLimit | None:
    """Return the headroom the headers describe, or None when they carry no rate-limit data."""
    now = time.time() if now is None else now
    dims: dict[str, _Dim] = {}
    for raw_name, value in headers.items():
        name = raw_name.lower()
        if name.startswith(_ANTHROPIC_PREFIX):
            dim, _, field = name[len(_ANTHROPIC_PREFIX) :].rpartition("-")
        elif name.startswith(_OPENAI_PREFIX):
            field, _, dim = name[len(_OPENAI_PREFIX) :].partition("-")
        else:
            continue
        if field not in ("limit", "remaining", "reset"):
            continue
        entry = dims.setdefault(dim or "requests", _Dim())
        if field == "reset":
            entry.reset_s = parse_reset(value, now)
        else:
            number = _number(value)
            if number is not None:
                setattr(entry, field, number)
    if not dims:
        return None

    def pick(kind: str) -> _Dim | None:
        exact = dims.get(kind)
        if exact is not None and exact.limit is not None:
            return exact
        candidates = [d for k, d in dims.items() if kind[:3] in k and d.limit is not None]
        return max(candidates, key=lambda d: d.utilization or 0.0, default=None)

    requests, tokens = pick("requests"), pick("tokens")
    measured = [d for d in dims.values() if d.utilization is not None]
    worst = max(measured, key=lambda d: d.utilization or 0.0, default=None)
    result = RateLimit(
        requests_limit=_int(requests.limit) if requests else None,
        requests_remaining=_int(requests.remaining) if requests else None,
        tokens_limit=_int(tokens.limit) if tokens else None,
        tokens_remaining=_int(tokens.remaining) if tokens else None,
        utilization=round(worst.utilization, 4)
        if worst and worst.utilization is not None
        else None,
        reset_s=worst.reset_s if worst else None,
    )
    if result.requests_limit is None and result.tokens_limit is None and result.utilization is None:
        return None
    return result


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asked us to wait: ``retry-after-ms`` wins over ``retry-after``."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        number = _number(ms)
        if number is not None:
            return number / 1000.0
    value = headers.get("retry-after")
    if value is None:
        return None
    number = _number(value)
    if number is not None:
        return number
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def parse_reset(value: str, now: float) -> float | None:
    """Seconds until a limit resets, from a Go duration, an RFC 3339 time or an epoch."""
    text = value.strip()
    if not text:
        return None
    number = _number(text)
    if number is not None:
        # Bare numbers: epoch milliseconds (OpenRouter), epoch seconds, or seconds from now.
        if number > 1e12:
            return max(0.0, number / 1000.0 - now)
        if number > 1e9:
            return max(0.0, number - now)
        return number
    try:
        return parse_duration(text)
    except DurationError:
        pass
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def _number(value: str) -> float | None:
    try:
        number = float(value.strip())
    except (ValueError, AttributeError):
        return None
    if math.isnan(number) or math.isinf(number) or number < 0:
        return None
    return number


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)
