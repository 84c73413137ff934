"""Silences (maintenance windows): they hold back notifications, never the data or the state."""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmpulse.config.alerting import SilenceConfig


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

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, rule: str, target: str, provider: str, now: float) -> bool:
        return (
            self.active(now)
            and fnmatch.fnmatchcase(rule, self.rule)
            and fnmatch.fnmatchcase(target, self.target)
            and fnmatch.fnmatchcase(provider, self.provider)
        )

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex[:12]

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("starts_at", "ends_at"):
            data[key] = datetime.fromtimestamp(data[key], UTC).isoformat().replace("+00:00", "Z")
        return data


CONFIG_SILENCE_PREFIX = "config-"


def configured_silences(configured: Iterable[SilenceConfig]) -> list[Silence]:
    """The config's maintenance windows, with ids stable across restarts."""
    return [
        Silence(
            id=CONFIG_SILENCE_PREFIX + hashlib.sha256(repr(s).encode()).hexdigest()[:8],
            starts_at=s.starts.timestamp() if s.starts else 0.0,
            ends_at=s.ends.timestamp(),
            target=s.target,
            provider=s.provider,
            rule=s.rule,
            comment=s.comment,
            created_by="config",
        )
        for s in configured
    ]
