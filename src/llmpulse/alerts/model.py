"""The alert vocabulary shared by the engine, the outbox and every notifier."""

from __future__ import annotations

import dataclasses
import enum
from datetime import UTC, datetime
from typing import Any

from llmpulse.rules import Severity


class AlertState(enum.StrEnum):
    """Alertmanager's lifecycle: a condition is pending until it has held long enough.

    ``ACKNOWLEDGED`` is only ever a notice's status (someone has the alert), never a record's
    state: an acknowledged alert is still firing.
    """

    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"
    ACKNOWLEDGED = "acknowledged"


@dataclasses.dataclass(frozen=True, slots=True)
class Notification:
    """One state change of one alert, as every channel receives it.

    ``to_json`` is the generic webhook contract; chat and paging channels render the same facts.
    ``status`` is "firing", "acknowledged" or "resolved": pending alerts are never sent.
    ``escalation_step`` is 0 for the route's own page (and its repeats), k for the k-th
    escalation step's page, and in later notices the step the alert had reached. ``url`` links
    to the alert on the dashboard when ``web.public_url`` is set.
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
    escalation_step: int = 0
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    url: str | None = None
    # model_changed: what the target served before and after the change; None for other rules.
    previous: str | None = None
    current: str | None = None

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
            "escalation_step": self.escalation_step,
            "acknowledged_by": self.acknowledged_by,
            "acknowledged_at": _iso(self.acknowledged_at) if self.acknowledged_at else None,
            "url": self.url,
            "previous": self.previous,
            "current": self.current,
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
            escalation_step=int(data.get("escalation_step") or 0),
            acknowledged_by=data.get("acknowledged_by"),
            acknowledged_at=(
                datetime.fromisoformat(data["acknowledged_at"])
                if data.get("acknowledged_at")
                else None
            ),
            url=data.get("url"),
            previous=data.get("previous"),
            current=data.get("current"),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Acknowledgement:
    """Someone has the alert ``fingerprint`` in hand, for its ``episode`` (one firing at one
    severity, ``AlertRecord.episode``): it holds until the alert resolves or escalates."""

    fingerprint: str
    episode: str
    by: str
    at: float
    comment: str = ""
    via: str | None = None  # the notifier it came back from (PagerDuty), if not llmpulse

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")
