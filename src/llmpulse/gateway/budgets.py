"""Hard budgets: a key or team whose spend in the current period has reached its ``max_usd``
is refused (429 ``budget_exceeded``) before any upstream call.

Spend of a subject (a key, or a team) = what the store holds up to a cut + what this gateway
has learnt since. Every ``REFRESH_S`` the store is read (``Store.costs``, traffic only) over
``[period start, cut)``, the cut ``CUT_LAG_S`` behind the read, so results still being written
fall after it; the ledger holds the cost of every traffic result seen since, by its timestamp:
this replica's own (``observe``) and, with Redis, the other replicas' (``gateway.limits``).
Results stamped at or after the cut count from the ledger only, those before it from the store
only (or, seen after the read, from the ledger until the next one): nothing counts twice. While
the store cannot be read, the last figures stay and the ledger keeps growing, so spend is never
forgotten; without a store (``results_db`` None) spend counts from the gateway's start.

How far a budget can overshoot: requests already in flight when the budget is reached all
finish (their cost lands after the check admitted them), and a result is counted only once it
is recorded. The README and docs/benchmarks.md give the bound and its measure.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from llmpulse.config.keys import Budget, GatewayKey, Period, Team
from llmpulse.errors import ErrorClass
from llmpulse.gateway.proxy import GatewayError
from llmpulse.result import CheckResult, Source
from llmpulse.store import Store, open_store

log = logging.getLogger(__name__)

REFRESH_S = 5.0
# Results are stored within 250 ms of being recorded (store.writer): a cut this far behind the
# read leaves only requests that lasted longer and ended in those 250 ms to the next read.
CUT_LAG_S = 2.0
BUDGET_EXCEEDED = "budget_exceeded"
# Sums of float costs drift (ten $0.20 add up to $1.9999999999999998): a budget counts as
# reached within a billionth of a dollar of it.
SUM_ERROR_USD = 1e-9

Kind = Literal["key", "team"]


@dataclasses.dataclass(slots=True)
class _Ledger:
    """One subject's spend in one period."""

    kind: Kind
    name: str
    budget: Budget
    stored: float = 0.0  # the store's sum over [period_start, cut)
    period_start: float = 0.0  # of the last read
    cut: float = 0.0  # 0: never read
    # Costs of results stamped at or after the cut, by whole second of their timestamp.
    recent: dict[int, float] = dataclasses.field(default_factory=dict)
    late: float = 0.0  # results stamped before the cut, seen after the read
    total: float = 0.0  # stored + recent + late, kept current

    def add(self, ts: float, cost: float) -> None:
        if ts >= self.cut:
            second = math.floor(ts)
            self.recent[second] = self.recent.get(second, 0.0) + cost
        else:
            self.late += cost
        self.total += cost

    def load(self, stored: float, period_start: float, cut: float) -> None:
        """A read of the store over ``[period_start, cut)`` that started after every result in
        the ledger stamped before ``cut`` was recorded."""
        self.stored, self.period_start, self.cut, self.late = stored, period_start, cut, 0.0
        self.recent = {s: c for s, c in self.recent.items() if s >= cut}
        self.total = stored + sum(self.recent.values())

    def spent(self, now: float) -> float:
        start = self.budget.period.start(now)
        if self.budget.period.rolling or start <= self.period_start:
            return self.total
        # A new calendar month since the last read: only what is stamped in it counts.
        return sum(c for s, c in self.recent.items() if s >= start)


class Budgets:
    """The hard budgets of keys and teams, checked per request (no I/O: a few dict reads)."""

    def __init__(
        self,
        keys: Iterable[GatewayKey],
        teams: Iterable[Team],
        results_db: str | Path | None = None,
    ) -> None:
        self.results_db = results_db
        self._teams = {t.name: t.budget for t in teams if t.budget is not None}
        self._ledgers: dict[tuple[Kind, str], _Ledger] = {}
        for key in keys:
            if key.budget is not None:
                self._ledger("key", key.name, key.budget)
        for name, budget in self._teams.items():
            self._ledger("team", name, budget)
        self._store: Store | None = None
        self._failing = False
        # While a read of the store runs: what was seen meanwhile, which it cannot hold.
        self._during: list[tuple[_Ledger, float, float]] | None = None

    def __bool__(self) -> bool:
        return bool(self._ledgers)

    def _ledger(self, kind: Kind, name: str, budget: Budget) -> _Ledger:
        ledger = self._ledgers.get((kind, name))
        if ledger is None or ledger.budget != budget:
            # A run-time key seen for the first time, or its budget changed: counted from the
            # next read of the store on (until then, from what is seen from now).
            ledger = self._ledgers[(kind, name)] = _Ledger(kind, name, budget)
        return ledger

    # --- the request path -------------------------------------------------------------------

    def check(self, key: GatewayKey, now: float | None = None) -> GatewayError | None:
        """The refusal of a request by ``key`` when its or its team's budget is spent."""
        now = time.time() if now is None else now
        if key.budget is not None:
            refusal = self._over(self._ledger("key", key.name, key.budget), now)
            if refusal is not None:
                return refusal
        if key.team is not None and key.team in self._teams:
            return self._over(self._ledgers[("team", key.team)], now)
        return None

    def _over(self, ledger: _Ledger, now: float) -> GatewayError | None:
        spent, budget = ledger.spent(now), ledger.budget
        if spent < budget.max_usd - SUM_ERROR_USD:
            return None
        period = budget.period
        retry_after: float | None = None
        if period.rolling:
            resets = (
                f"its budget is over a rolling {period.value} window: spend counts again "
                f"{period.value} after it was made"
            )
        else:
            end = period.end(now)
            retry_after = math.ceil(end - now)
            resets = f"the period resets at {datetime.fromtimestamp(end, UTC):%Y-%m-%dT%H:%MZ}"
        message = (
            f"{ledger.kind} {ledger.name!r} has spent ${spent:.4f} of its "
            f"${budget.max_usd:g} budget for {period.value}; {resets}"
        )
        return GatewayError(
            429, ErrorClass.RATE_LIMITED, message, retry_after, code=BUDGET_EXCEEDED
        )

    # --- what is spent ----------------------------------------------------------------------

    def observe(self, result: CheckResult) -> None:
        """A traffic result of this replica or another: its cost counts for its key and team."""
        if result.source is not Source.TRAFFIC or not result.cost_usd:
            return
        self.spend(result.key_name, result.team, result.timestamp.timestamp(), result.cost_usd)

    def spend(self, key: str | None, team: str | None, ts: float, cost: float) -> None:
        for ledger in (
            self._ledgers.get(("key", key)) if key is not None else None,
            self._ledgers.get(("team", team)) if team is not None else None,
        ):
            if ledger is not None:
                ledger.add(ts, cost)
                if self._during is not None:
                    self._during.append((ledger, ts, cost))

    def read_store(self, now: float) -> dict[tuple[Kind, str], tuple[float, float, float]]:
        """(stored spend, period start, cut) per subject, read from the store. Blocking: run in
        a thread. Raises what the store raises."""
        if self.results_db is None or not self._ledgers:
            return {}
        if self._store is None:
            self._store = open_store(self.results_db)
        cut = math.floor(now - CUT_LAG_S)
        groups: dict[tuple[Kind, Period], list[str]] = {}
        for (kind, name), ledger in list(self._ledgers.items()):
            groups.setdefault((kind, ledger.budget.period), []).append(name)
        out: dict[tuple[Kind, str], tuple[float, float, float]] = {}
        for (kind, period), names in groups.items():
            start = period.start(now)
            rows = self._store.costs(kind, start, cut, source=Source.TRAFFIC.value)
            spent = {row.name: row.cost_usd for row in rows if row.name is not None}
            for name in names:
                out[(kind, name)] = (spent.get(name, 0.0), start, float(cut))
        return out

    async def refresh(self) -> None:
        """Read the store (in a thread) and apply it; on failure log once per outage and keep
        the last figures."""
        self._during = []
        try:
            read = await asyncio.to_thread(self._read)
            loaded = set()
            for subject, (stored, start, cut) in read.items():
                ledger = self._ledgers.get(subject)
                if ledger is not None:
                    ledger.load(stored, start, cut)
                    loaded.add(id(ledger))
            # Seen after the read began, so not in it, yet stamped before its cut: late.
            for ledger, ts, cost in self._during:
                if id(ledger) in loaded and ts < ledger.cut:
                    ledger.late += cost
                    ledger.total += cost
        finally:
            self._during = None

    def _read(self) -> dict[tuple[Kind, str], tuple[float, float, float]]:
        try:
            read = self.read_store(time.time())
        except Exception as exc:  # any store's error: the last figures stay, and the ledger
            if not self._failing:
                log.warning("budgets: cannot read spend from the store (%s); retrying", exc)
                self._failing = True
            return {}
        if self._failing:
            log.warning("budgets: spend read from the store again")
            self._failing = False
        return read

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
