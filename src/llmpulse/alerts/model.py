"""The alert vocabulary shared by the engine, the outbox and every notifier."""

from __future__ import annotations

import dataclasses
import enum
from datetime import UTC, datetime
from typing import Any

from llmpulse.rules import Severity


class AlertState(enum.StrEnum):
    """Alertmanager's lifecycle: a condition is pending until it has held long enough."""

    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclasses.dataclass(frozen=True, slots=True)
class Notification:
    """One state change of one alert, as every channel receives it.

    ``to_json`` is the generic webhook contract; chat and paging channels render the same facts.
    ``status`` is only ever "firing" or "resolved": pending alerts are never sent.
    """

    status: AlertState
    severity: Severity
    rule: str
    target: str  # target name, or the provider name for a provider-level alert
    provider: str
    summary: str
    value: float | None
    threshold: float | None
    starts_at: datetime
    ends_at: datetime | None
    fingerprint: str
    official_status: str | None = None
    test: bool = False  # sent by `llmpulse notify test`

    def to_json(self) -> dict[str, Any]:
        return {
            "status": str(self.status),
            "severity": str(self.severity),
            "rule": self.rule,
            "target": self.target,
            "provider": self.provider,
            "summary": self.summary,
            "value": self.value,
            "threshold": self.threshold,
            "starts_at": _iso(self.starts_at),
            "ends_at": _iso(self.ends_at) if self.ends_at else None,
            "fingerprint": self.fingerprint,
            "official_status": self.official_status,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Notification:
        return cls(
            status=AlertState(data["status"]),
            severity=Severity(data["severity"]),
            rule=data["rule"],
            target=data["target"],
            provider=data["provider"],
            summary=data["summary"],
            value=data.get("value"),
            threshold=data.get("threshold"),
            starts_at=datetime.fromisoformat(data["starts_at"]),
            ends_at=datetime.fromisoformat(data["ends_at"]) if data.get("ends_at") else None,
            fingerprint=data["fingerprint"],
            official_status=data.get("official_status"),
            test=bool(data.get("test", False)),
        )


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")
