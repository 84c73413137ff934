"""The probe budget (``monitor.probe_budget_usd``, USD per UTC calendar month): what the probes
are expected to cost, and how far their intervals stretch to fit.

Each scheduled probe (a target's built-in check, or one of its custom probes) costs its price
per run (``probe.costs``) times its runs. What may be spent from now on is the budget less the
month's probe spend so far, over the seconds left in the month; when the probes at their
configured intervals would spend faster than that, a floor is raised: every probe that costs
something and runs more often than the floor runs at the floor instead, and the floor is the
shortest interval that fits. So the probes with the shortest intervals stretch first, those with
the longest last (only once the floor passes theirs), no probe runs less often than configured
says, and probes that cost nothing (a models list) or whose price is unknown keep their
interval. The floor goes no higher than ``MAX_STRETCHED_S``: a spent budget slows the probes
to once an hour, it never stops the monitoring.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from llmpulse.durations import format_duration
from llmpulse.probe.costs import probe_cost_per_run
from llmpulse.probe.scheduler import Check, check_name, checks_of, configured_interval
from llmpulse.result import CheckKind
from llmpulse.target import Target

MAX_STRETCHED_S = 3600.0
# The month of the figures printed before anything runs (check-config): 30 days.
MONTH_S = 30 * 86400.0
DAY_S = 86400.0


@dataclasses.dataclass(frozen=True, slots=True)
class PlannedProbe:
    """One probe of one target as scheduled: its configured interval and its cost per run
    (None: no price known)."""

    target: Target
    probe: Check
    interval: float
    cost_per_run: float | None

    @property
    def name(self) -> str:
        return check_name(self.probe)

    @property
    def kind(self) -> CheckKind:
        return self.probe if isinstance(self.probe, CheckKind) else self.probe.kind

    def usd_per_s(self, interval: float | None = None) -> float:
        return (self.cost_per_run or 0.0) / (interval or self.interval)


def scheduled(targets: Iterable[Target]) -> list[PlannedProbe]:
    return [
        PlannedProbe(t, p, configured_interval(t, p), probe_cost_per_run(t, p))
        for t in targets
        for p in checks_of(t)
    ]


def month_bounds(now: float) -> tuple[float, float]:
    """The UTC calendar month around ``now``: its start and its end."""
    at = datetime.fromtimestamp(now, UTC)
    start = datetime(at.year, at.month, 1, tzinfo=UTC)
    end = datetime(at.year + at.month // 12, at.month % 12 + 1, 1, tzinfo=UTC)
    return start.timestamp(), end.timestamp()


def allowance(budget_usd: float, spent_usd: float, now: float) -> float:
    """USD per second the probes may spend from ``now`` to the month's end."""
    _, end = month_bounds(now)
    return max(0.0, budget_usd - spent_usd) / max(1.0, end - now)


@dataclasses.dataclass(frozen=True, slots=True)
class Fit:
    """The probes' intervals within an allowance: ``floor`` (None: nothing stretched) and the
    stretched probes' intervals by (target name, probe name)."""

    floor: float | None
    intervals: dict[tuple[str, str], float]
    usd_per_s: float  # at the configured intervals
    fitted_usd_per_s: float  # at the stretched ones


def fit(probes: Sequence[PlannedProbe], usd_per_s: float) -> Fit:
    """Stretch the probes' intervals to spend at most ``usd_per_s`` (see the module's rule)."""
    paying = sorted((p for p in probes if p.cost_per_run), key=lambda p: p.interval)
    rate = sum(p.usd_per_s() for p in paying)
    if rate <= usd_per_s:
        return Fit(None, {}, rate, rate)
    # With the k shortest at the floor F: sum(cost of those)/F + rate of the rest <= allowance;
    # the smallest k whose F lies between the k-th interval and the next is the answer.
    floor = MAX_STRETCHED_S
    stretched_cost = 0.0
    rest = rate
    for k, p in enumerate(paying):
        stretched_cost += p.cost_per_run or 0.0
        rest -= p.usd_per_s()
        left = usd_per_s - rest
        if left <= 0:
            continue
        candidate = stretched_cost / left
        following = paying[k + 1].interval if k + 1 < len(paying) else math.inf
        if p.interval <= candidate <= following:
            floor = min(candidate, MAX_STRETCHED_S)
            break
    intervals = {(p.target.name, p.name): floor for p in paying if p.interval < floor}
    fitted = sum(p.usd_per_s(max(p.interval, floor)) for p in paying)
    return Fit(floor, intervals, rate, fitted)


def describe(result: Fit, budget_usd: float, spent_usd: float, now: float, agents: int = 1) -> str:
    """One line for the log: the budget, what is left (shared by ``agents``), and what was
    stretched."""
    _, end = month_bounds(now)
    shared = f", shared by {agents} agents" if agents > 1 else ""
    head = (
        f"probe budget ${budget_usd:.2f}/month: ${spent_usd:.2f} spent, "
        f"${max(0.0, budget_usd - spent_usd):.2f} left for {(end - now) / DAY_S:.1f} days"
        f"{shared}; the probes would spend ${result.usd_per_s * DAY_S:.2f}/day"
    )
    if result.floor is None:
        return f"{head}: no interval stretched"
    names = ", ".join(f"{t}/{p}" for t, p in sorted(result.intervals))
    return (
        f"{head}: {len(result.intervals)} probes stretched to every "
        f"{format_duration(result.floor)} (${result.fitted_usd_per_s * DAY_S:.2f}/day): {names}"
    )


def long_context_costs(probes: Iterable[PlannedProbe]) -> list[str]:
    """What each long-context probe costs a day at its configured interval, one line each:
    said before the daemon starts, as they are the dear ones."""
    lines = []
    for p in probes:
        if p.kind is not CheckKind.LONG_CONTEXT:
            continue
        cost = (
            f"about ${p.usd_per_s() * DAY_S:.2f} a day"
            if p.cost_per_run is not None
            else "cost unknown (no price for its model)"
        )
        lines.append(
            f"long_context probe {p.name} of {p.target.name}: every "
            f"{format_duration(p.interval)}, {cost}"
        )
    return lines
