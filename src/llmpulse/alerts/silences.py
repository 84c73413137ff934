"""Silences (maintenance windows): they hold back notifications, never the data or the state.

A silence is one window (``starts_at`` to ``ends_at``), or recurring: the windows of its
``schedule`` (``llmpulse.schedule``), within ``starts_at`` and ``ends_at`` when it has an end,
else from ``starts_at`` on (``ends_at`` is then ``NO_END``).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from llmpulse.schedule import Schedule

if TYPE_CHECKING:
    from llmpulse.config.alerting import SilenceConfig

# The end a recurring silence without one has, in the state store's ``ends_at`` column too
# (where ``ends_at > now`` selects the silences not yet ended): 9999-12-31T23:59:59Z, the last
# second a datetime holds.
NO_END = 253402300799.0


@dataclasses.dataclass(frozen=True, slots=True)
class Silence:
    """Matches alerts whose rule, target and provider fit the given glob patterns."""

    id: str
    starts_at: float
    ends_at: float
    target: str = "*"
    provider: str = "*"
    rule: str = "*"
    comment: str = ""
    created_by: str = ""
    schedule: Schedule | None = None

    def active(self, now: float) -> bool:
        if not self.starts_at <= now < self.ends_at:
            return False
        return self.schedule is None or self.schedule.window(now) is not None

    def matches(self, rule: str, target: str, provider: str, now: float) -> bool:
        return (
            self.active(now)
            and fnmatch.fnmatchcase(rule, self.rule)
            and fnmatch.fnmatchcase(target, self.target)
            and fnmatch.fnmatchcase(provider, self.provider)
        )

    def next_occurrences(self, now: float, n: int) -> list[tuple[float, float]]:
        """The next ``n`` windows not ended at ``now`` (the one in progress first), as
        ``(start, end)`` cut to the silence's own start and end."""
        if self.schedule is None:
            windows: Iterator[tuple[float, float]] = iter([(self.starts_at, self.ends_at)])
        else:
            windows = self.schedule.windows(max(now, self.starts_at))
        out: list[tuple[float, float]] = []
        for start, end in windows:
            if start >= self.ends_at or len(out) == n:
                break
            if min(end, self.ends_at) > now:
                out.append((max(start, self.starts_at), min(end, self.ends_at)))
        return out

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex[:12]

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("starts_at", "ends_at"):
            data[key] = datetime.fromtimestamp(data[key], UTC).isoformat().replace("+00:00", "Z")
        if self.ends_at == NO_END:
            data["ends_at"] = None
        return data


CONFIG_SILENCE_PREFIX = "config-"


def configured_silences(configured: Iterable[SilenceConfig]) -> list[Silence]:
    """The config's maintenance windows, with ids stable across restarts."""
    return [
        Silence(
            id=CONFIG_SILENCE_PREFIX + hashlib.sha256(repr(s).encode()).hexdigest()[:8],
            starts_at=s.starts.timestamp() if s.starts else 0.0,
            ends_at=s.ends.timestamp() if s.ends else NO_END,
            target=s.target,
            provider=s.provider,
            rule=s.rule,
            comment=s.comment,
            created_by="config",
            schedule=(
                Schedule(s.schedule.cron, s.schedule.duration, s.schedule.timezone)
                if s.schedule
                else None
            ),
        )
        for s in configured
    ]
