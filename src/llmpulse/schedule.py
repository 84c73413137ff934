"""One definition of a recurring window: a cron expression in a time zone, and how long each
occurrence lasts. Used by the config's and the CLI's recurring silences (``alerts.silences``).

Occurrences follow Debian cron as ``cronsim`` does, in the schedule's time zone: a start that
a spring-forward change skips runs when the clock resumes (02:00 → 03:00), one that a
fall-back change repeats runs once, at the first of the two. A window lasts ``duration_s`` of
real time whatever the clock does meanwhile.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterator
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

CRON_FIELDS = "minute hour day-of-month month day-of-week"


class ScheduleError(ValueError):
    """A cron expression or a time zone that cannot be used."""


def parse_cron(expr: str) -> str:
    """``expr`` as five cron fields, or ``ScheduleError`` saying what is wrong."""
    fields = expr.split()
    # Five fields only: cronsim also reads a leading seconds field, which cron has not.
    if len(fields) != 5:
        raise ScheduleError(f"expected 5 fields ({CRON_FIELDS}), got {len(fields)}")
    cron = " ".join(fields)
    try:
        next(CronSim(cron, datetime.now(UTC)))
    except CronSimError as exc:
        raise ScheduleError(f"not a cron expression: {exc}") from None
    except StopIteration:
        raise ScheduleError("never occurs in the next 50 years") from None
    return cron


def parse_timezone(name: str) -> str:
    """``name`` if it is an IANA time zone (``Europe/Berlin``, ``UTC``), else ``ScheduleError``."""
    _zone(name)
    return name


@functools.lru_cache(maxsize=64)
def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):  # ValueError: a path-like or empty name
        raise ScheduleError(
            f"unknown time zone {name!r} (an IANA name such as 'Europe/Berlin')"
        ) from None


@dataclasses.dataclass(frozen=True, slots=True)
class Schedule:
    """Windows of ``duration_s`` seconds starting at each occurrence of ``cron`` in
    ``timezone``. Validate the parts with ``parse_cron`` / ``parse_timezone`` first."""

    cron: str
    duration_s: float
    timezone: str = "UTC"

    def window(self, now: float) -> tuple[float, float] | None:
        """The window ``now`` is in: the latest start at or before ``now``, if its window has
        not ended (a later window of the same length ends later, so the latest start decides)."""
        start = _occurrences(self.cron, self.timezone).last_start(now)
        return (start, start + self.duration_s) if now < start + self.duration_s else None

    def windows(self, now: float) -> Iterator[tuple[float, float]]:
        """The window ``now`` is in, if any, then every later one, in order."""
        current = self.window(now)
        if current is not None:
            yield current
        for start in _occurrences(self.cron, self.timezone).starts_after(now):
            yield start, start + self.duration_s

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Schedule:
        return cls(data["cron"], float(data["duration_s"]), data.get("timezone") or "UTC")


class _Occurrences:
    """The starts of one cron expression in one zone, remembering the last span between two
    starts it found: every page the engine sends and every alert row the dashboard lists asks
    about silences, almost always inside the span it asked about last."""

    def __init__(self, cron: str, zone: tzinfo) -> None:
        self.cron = cron
        self.zone = zone
        self._span = (math.inf, -math.inf)  # (latest start <= now, next start): none yet

    def last_start(self, now: float) -> float:
        before, after = self._span
        if before <= now < after:
            return before
        before = next(self._backwards(now), -math.inf)
        after = next(self.starts_after(now), math.inf)
        self._span = (before, after)  # one tuple: a racing thread reads the old or the new
        return before

    def starts_after(self, now: float) -> Iterator[float]:
        # CronSim yields the times after the one it is given, in whole seconds.
        for start in CronSim(self.cron, datetime.fromtimestamp(math.floor(now), self.zone)):
            if start.timestamp() > now:  # a clock change may hand back an earlier instant
                yield start.timestamp()

    def _backwards(self, now: float) -> Iterator[float]:
        # Reversed, from the second after ``now``: a start at ``now`` itself counts.
        after = datetime.fromtimestamp(math.floor(now) + 1, self.zone)
        for start in CronSim(self.cron, after, reverse=True):
            if start.timestamp() <= now:
                yield start.timestamp()


@functools.lru_cache(maxsize=256)
def _occurrences(cron: str, timezone: str) -> _Occurrences:
    # Shared by every silence with this cron and zone, across reloads of the silences.
    return _Occurrences(cron, _zone(timezone))
