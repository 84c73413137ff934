"""Budget use per gateway key and team: what is spent, what is left, when it resets, and when
at the current rate it runs out. One definition, read by the alert leader (``budget_warning``,
``budget_exhausted``, ``spend_forecast``) and by ``GET /api/v1/budgets``.

Spend is the gateway traffic a key or team made over its budget's period (``Store.costs``, the
one spend query). The current rate is the higher of the last 24 hours' and the last 7 days'
average: a day's burst is not averaged away, a quiet day does not hide a costly week.

- ``1mo`` (the UTC calendar month): at the current rate the spend reaches the budget at
  ``now + remaining / rate``; forecast when that is before the month ends, when it resets.
- Rolling periods (``1d``, ``7d``, ``30d``) never reset as a whole: spend ages out as new spend
  comes in. The window's spend is projected as ``spent + (rate - spent / window) × t`` (what
  leaves taken as leaving at the window's average pace); it is forecast to exceed the budget
  only when the rate over a whole window would (``rate × window > max_usd``), and the date is
  where the projection crosses it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Literal

from llmpulse.config import Config
from llmpulse.config.keys import DAY_S, Budget
from llmpulse.rules import BUDGET_EXHAUSTED, BUDGET_RULES, BUDGET_WARNING, SPEND_FORECAST
from llmpulse.store import Store
from llmpulse.store.base import CostBy
from llmpulse.store.keys import StoredKey

Scope = Literal["key", "team"]
RATE_WINDOWS_S = (DAY_S, 7 * DAY_S)  # the rate is the higher of these two averages
# Near its boundary a forecast moves with each request: once firing, it resolves only after it
# stayed clear this long (at once when it came true: the budget is exhausted).
FORECAST_HOLD_S = 3600.0


@dataclasses.dataclass(frozen=True, slots=True)
class Holder:
    """A gateway key or a team with a budget."""

    scope: Scope
    name: str
    budget: Budget

    @property
    def subject(self) -> str:
        """What its alerts name (a key and a team may share a name): ``key:NAME``, ``team:NAME``."""
        return f"{self.scope}:{self.name}"


def holders(config: Config, stored: Iterable[StoredKey] = ()) -> list[Holder]:
    """Every key and team with a budget: the config's gateway keys (a policy written for a
    run-time key by name wins whole over what was stored, as the gateway has it, and goes with
    that key once it is revoked: a revoked name is never given again), the ``stored`` run-time
    keys not revoked, and the config's teams. The one place budgets are gathered."""
    gateway = config.gateway
    written = gateway.settings.keys if gateway is not None else ()
    revoked = {s.name for s in stored if s.revoked_at is not None}
    keys = {k.name: k.budget for k in written if k.digest or k.name not in revoked}
    for s in stored:
        if s.revoked_at is None:
            keys.setdefault(s.name, s.budget)
    teams = gateway.teams if gateway is not None else ()
    return [Holder("key", n, b) for n, b in keys.items() if b is not None] + [
        Holder("team", t.name, t.budget) for t in teams if t.budget is not None
    ]


@dataclasses.dataclass(frozen=True, slots=True)
class Spend:
    """A holder's traffic spend (USD): over its budget's period, the last day, the last 7 days."""

    period: float = 0.0
    day: float = 0.0
    week: float = 0.0


def read_spend(store: Store, chosen: Iterable[Holder], now: float) -> dict[str, Spend]:
    """Each holder's ``Spend`` by subject, at ``now``: one ``Store.costs`` query per scope and
    distinct range (at most four per scope: the last day, the last 7 days, 30 days and the month),
    whatever the number of holders."""
    sums: dict[tuple[Scope, float], dict[str, float]] = {}

    def spent(scope: Scope, start: float) -> Mapping[str, float]:
        if (scope, start) not in sums:
            by: CostBy = scope
            rows = store.costs(by, start, now, source="traffic")
            found: dict[str, float] = {}
            for row in rows:
                if row.name is not None:
                    found[row.name] = found.get(row.name, 0.0) + row.cost_usd
            sums[scope, start] = found
        return sums[scope, start]

    out = {}
    for h in chosen:
        day, week = (spent(h.scope, now - w).get(h.name, 0.0) for w in RATE_WINDOWS_S)
        period = spent(h.scope, h.budget.period.start(now)).get(h.name, 0.0)
        out[h.subject] = Spend(period, day, week)
    return out


@dataclasses.dataclass(frozen=True, slots=True)
class Reading:
    """Who has a budget and what each spent, read together (the run-time keys change)."""

    holders: list[Holder]
    spend: dict[str, Spend]


def read(store: Store, config: Config, now: float) -> Reading:
    """The holders (the config's, and the run-time keys the store has now) and their spend."""
    chosen = holders(config, store.stored_keys(revoked=True))
    return Reading(chosen, read_spend(store, chosen, now))


@dataclasses.dataclass(frozen=True, slots=True)
class Use:
    """A holder's budget at ``now``."""

    holder: Holder
    now: float
    spent: float
    rate_usd_per_day: float  # the higher of the last day's and the last 7 days' average

    @classmethod
    def of(cls, holder: Holder, spend: Spend, now: float) -> Use:
        rate = max(spend.day, spend.week / 7)
        return cls(holder, now, spend.period, rate)

    @property
    def budget(self) -> Budget:
        return self.holder.budget

    @property
    def remaining(self) -> float:
        return self.budget.max_usd - self.spent

    @property
    def fraction(self) -> float:
        return self.spent / self.budget.max_usd

    @property
    def resets_at(self) -> float | None:
        """When a calendar period starts anew; None for a rolling one (its spend ages out)."""
        period = self.budget.period
        return None if period.rolling else period.end(self.now)

    @property
    def exhausts_at(self) -> float | None:
        """When at the current rate the spend reaches the budget within its period (see the
        module's note); None when it does not, or has already."""
        rate = self.rate_usd_per_day / DAY_S
        if self.remaining <= 0 or rate <= 0:
            return None
        period = self.budget.period
        if period.rolling:
            window = period.seconds
            if rate * window <= self.budget.max_usd:
                return None  # a whole window at this rate stays within the budget
            return self.now + self.remaining / (rate - self.spent / window)
        at = self.now + self.remaining / rate
        return at if at < period.end(self.now) else None

    def holds(self, rule: str) -> bool:
        """Whether the condition of ``rule`` (one of ``BUDGET_RULES``) holds."""
        if rule == BUDGET_EXHAUSTED:
            return self.remaining <= 0
        if rule == BUDGET_WARNING:
            warn_at = self.budget.warn_at
            return warn_at is not None and self.spent >= warn_at * self.budget.max_usd
        if rule == SPEND_FORECAST:
            return self.exhausts_at is not None
        raise ValueError(f"not a budget rule: {rule!r} (one of {', '.join(BUDGET_RULES)})")

    def resolve_after(self, rule: str) -> float | None:
        """How long ``rule`` must stay clear before it resolves (None: ``alerting``'s own)."""
        if rule != SPEND_FORECAST:
            return None
        return 0.0 if self.remaining <= 0 else FORECAST_HOLD_S

    def threshold(self, rule: str) -> float:
        """The spend (USD) at which ``rule`` holds; for the forecast, the budget itself."""
        warn_at = self.budget.warn_at
        if rule == BUDGET_WARNING and warn_at is not None:
            return warn_at * self.budget.max_usd
        return self.budget.max_usd

    def summary(self, rule: str) -> str:
        h, b = self.holder, self.budget
        used = f"${self.spent:,.2f} of its ${b.max_usd:,.2f} {b.period} budget spent"
        used += f" ({self.fraction:.0%})"
        if self.resets_at is not None:
            ends = f"; it resets {_day(self.resets_at)}"
        else:
            ends = f"; spend older than {b.period} ages out"
        rate = f"${self.rate_usd_per_day:,.2f}/day"
        if rule == SPEND_FORECAST:
            at = self.exhausts_at
            if self.remaining <= 0:
                return f"{h.scope} {h.name}: the forecast came true, budget exhausted: {used}{ends}"
            if at is None:
                return f"{h.scope} {h.name}: at {rate} not forecast to exceed its budget; {used}"
            return (
                f"{h.scope} {h.name}: at {rate} (the higher of the last 24 h and 7 d) its "
                f"${b.max_usd:,.2f} {b.period} budget runs out on {_day(at)}; {used}{ends}"
            )
        if rule == BUDGET_EXHAUSTED:
            what = "budget exhausted" if self.remaining <= 0 else "within its budget"
            return f"{h.scope} {h.name}: {what}: {used}{ends}"
        warn = "" if b.warn_at is None else f", warns at {b.warn_at:.0%}"
        return f"{h.scope} {h.name}: {used}{warn}{ends}"


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")
