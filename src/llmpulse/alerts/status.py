"""A target's status in one word, from its alerts and its latest check.

One definition, used by the dashboard cards, the public status page, badges and ``/metrics``.
It reads the alert engine's records rather than recomputing rules, so the dashboard never
disagrees with the pages that went out.

A target whose latest check answered wrong (``assertion``: a 200 whose answer failed a probe's
expectation) is ``degraded``, never ``down``: it answers, so it counts as available; how often
it answers right is its correctness rate (``correct_rate``), beside availability.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable

from llmpulse.alerts.engine import AlertRecord
from llmpulse.alerts.model import AlertState
from llmpulse.errors import ErrorClass
from llmpulse.result import CheckResult
from llmpulse.rules import (
    AVAILABILITY_RULES,
    DEFAULT_RULES,
    INCIDENT,
    INFORMATIONAL_RULES,
    PROVIDER_RULE,
)

# Rules whose firing means the target cannot serve requests.
DOWN_RULES = frozenset({INCIDENT, *AVAILABILITY_RULES, "auth_failure"})
RATE_LIMIT_RULES = frozenset({"rate_limit_headroom"})
# No check for this many intervals: we cannot say anything about the target.
STALE_INTERVALS = 3


class Status(enum.StrEnum):
    UP = "up"
    DEGRADED = "degraded"
    RATE_LIMITED = "rate_limited"
    DOWN = "down"
    UNKNOWN = "unknown"

    @property
    def rank(self) -> int:
        """Worse is larger: the overall status of several targets is the worst one."""
        return _RANK[self]


_RANK = {
    Status.UP: 0,
    Status.UNKNOWN: 1,
    Status.RATE_LIMITED: 2,
    Status.DEGRADED: 3,
    Status.DOWN: 4,
}
_CALLER_LIMITS = frozenset(c for c in ErrorClass if c.is_caller_limit)


@dataclasses.dataclass(frozen=True, slots=True)
class TargetStatus:
    status: Status
    since: float | None  # when the current status began, where known
    reason: str  # the alert summary or the latest error; "" when up


def target_status(
    records: Iterable[AlertRecord],
    latest: CheckResult | None,
    interval_s: float,
    now: float,
) -> TargetStatus:
    """``records`` are the engine's records of this target (any state); ``latest`` its newest
    check."""
    firing: list[AlertRecord] = []
    last_resolved: float | None = None
    for r in records:
        if not says_health(r.rule):
            continue
        if r.state is AlertState.FIRING:
            firing.append(r)
        elif r.resolved_at is not None and (last_resolved is None or r.resolved_at > last_resolved):
            last_resolved = r.resolved_at

    def strongest(rules: frozenset[str] | None) -> TargetStatus | None:
        chosen = [r for r in firing if rules is None or r.rule in rules]
        if not chosen:
            return None
        # The incident record carries the lead rule's summary; prefer it over its members.
        chosen.sort(key=lambda r: (r.rule != INCIDENT, r.fired_at or now))
        first = chosen[0]
        since = min((r.fired_at for r in chosen if r.fired_at is not None), default=None)
        return TargetStatus(Status.DOWN, since, first.summary)

    down = strongest(DOWN_RULES)
    if down is not None:
        return down
    if latest is None or now - latest.timestamp.timestamp() > STALE_INTERVALS * interval_s:
        since = latest.timestamp.timestamp() if latest is not None else None
        return TargetStatus(Status.UNKNOWN, since, "no recent checks")
    others = [r for r in firing if r.rule not in RATE_LIMIT_RULES]
    if others:
        found = strongest(frozenset(r.rule for r in others))
        assert found is not None
        return dataclasses.replace(found, status=Status.DEGRADED)
    if latest.error_class is ErrorClass.ASSERTION:
        reason = f"wrong answer ({latest.check}): {latest.error_message or 'expectation failed'}"
        return TargetStatus(Status.DEGRADED, latest.timestamp.timestamp(), reason)
    limited = strongest(RATE_LIMIT_RULES)
    if limited is not None:
        return dataclasses.replace(limited, status=Status.RATE_LIMITED)
    if latest.error_class in _CALLER_LIMITS:
        return TargetStatus(
            Status.RATE_LIMITED, latest.timestamp.timestamp(), latest.error_message or ""
        )
    return TargetStatus(Status.UP, last_resolved, "")


def says_health(rule: str) -> bool:
    """Whether an alert of ``rule`` is about how the service answers (``INFORMATIONAL_RULES``
    and custom rules are not)."""
    return rule in _HEALTH_RULES


_HEALTH_RULES = frozenset(
    {INCIDENT, PROVIDER_RULE, *(r for r in DEFAULT_RULES if r not in INFORMATIONAL_RULES)}
)


def provider_status(records: Iterable[AlertRecord], targets: Iterable[Status]) -> Status:
    """A provider is down when its provider-wide alert fires, else its worst target."""
    if any(r.rule == PROVIDER_RULE and r.state is AlertState.FIRING for r in records):
        return Status.DOWN
    return worst(targets)


def worst(statuses: Iterable[Status]) -> Status:
    return max(statuses, key=lambda s: s.rank, default=Status.UNKNOWN)
