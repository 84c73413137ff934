"""The alert leader's daily reconciliation: each provider's own bill against what llmpulse
measured, per UTC day and model (``alerts.billing``), stored in the alert state and judged as
``billing_drift``.

A day is read once it is complete and ``settle`` has passed (providers publish their reports
with a delay), then never again once compared; the last ``days`` complete days are kept up to
date, so days missed while no leader ran (or while the provider failed) are caught up. A
provider that fails is retried with a backoff doubling from ``retry`` up to an hour; its error
is stored, classified and redacted, and said once in the log per failure. The reports are read
over the event loop's own session (async I/O) and the databases from threads: the job never
blocks the loop that probes and pages.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta

import aiohttp

from llmpulse.alerts.billing import BillingDay, Measured, Reconciliation, reconcile
from llmpulse.alerts.state import AlertStateStore
from llmpulse.config.billing import BillingSource
from llmpulse.providers.billing import ReportError, read_bill
from llmpulse.rules import Severity
from llmpulse.secrets import Redactor
from llmpulse.store import Store
from llmpulse.target import Target

log = logging.getLogger(__name__)

DAY_S = 86400
MAX_BACKOFF_S = 3600.0


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """What the engine is told of a provider after a run that compared new days."""

    provider: str
    severity: Severity | None  # None: no day of the run drifts
    summary: str
    # How far apart the day is, a share of the bill (the summary says which side is higher).
    value: float | None = None
    threshold: float | None = None


class Reconciler:
    def __init__(
        self,
        sources: Sequence[BillingSource],
        store: Store,
        state: AlertStateStore,
        targets: Iterable[Target],
        redactor: Redactor,
        retention_s: float = float("inf"),
    ) -> None:
        """``retention_s``: how far back the store keeps what ``Store.costs`` reads; a day
        starting earlier would compare the bill with nothing, so it is left alone."""
        self.sources = list(sources)
        self.retention_s = retention_s
        self.store, self.state, self.redact = store, state, redactor
        # The models measured for a provider: those its targets name (deployments included).
        self.models: dict[str, set[str]] = {}
        for t in targets:
            self.models.setdefault(t.provider, set()).add(t.model)
        self.retry_at: dict[str, float] = {}
        self.failures: dict[str, int] = {}

    def due(self, source: BillingSource, now: float, done: set[date]) -> list[date]:
        """The complete days of the last ``days`` not compared yet, oldest first."""
        last = datetime.fromtimestamp(now - source.settle_s, UTC).date() - timedelta(days=1)
        days = [last - timedelta(days=i) for i in range(source.days)]
        kept = now - self.retention_s
        return sorted(d for d in days if d not in done and _start(d) >= kept)

    async def run(self, session: aiohttp.ClientSession, now: float) -> list[Verdict]:
        """Compare every provider's due days; a verdict for each provider that had any."""
        out = []
        for source in self.sources:
            if now < self.retry_at.get(source.provider, 0.0):
                continue
            verdict = await self._provider(session, source, now)
            if verdict is not None:
                out.append(verdict)
        return out

    async def _provider(
        self, session: aiohttp.ClientSession, source: BillingSource, now: float
    ) -> Verdict | None:
        since = datetime.fromtimestamp(now, UTC).date() - timedelta(days=source.days + 2)
        stored = await asyncio.to_thread(self.state.billing_days, since, source.provider)
        due = self.due(source, now, {d.day for d in stored if d.ok})
        if not due:
            return None
        try:
            bills = await read_bill(
                session, source, due[0], due[-1] + timedelta(days=1), self.redact
            )
        except ReportError as exc:
            await self._failed(source, due, exc, now)
            return None
        self.failures.pop(source.provider, None)
        self.retry_at.pop(source.provider, None)
        compared = []
        for day in due:
            total, models = await asyncio.to_thread(self.measured, source.provider, day)
            r = reconcile(
                source.provider, bills[day], total, models,
                threshold=source.threshold, min_usd=source.min_usd,
            )  # fmt: skip
            entry = BillingDay(source.provider, day, now, "ok", r)
            await asyncio.to_thread(self.state.save_billing_day, entry)
            compared.append(r)
        return _verdict(source, compared)

    async def _failed(
        self, source: BillingSource, due: list[date], exc: ReportError, now: float
    ) -> None:
        failures = self.failures[source.provider] = self.failures.get(source.provider, 0) + 1
        wait = min(source.retry_s * 2 ** (failures - 1), MAX_BACKOFF_S)
        self.retry_at[source.provider] = now + wait
        message = self.redact.clipped(exc.message)
        log.warning(
            "%s billing reports not read (%s: %s); retrying in %.0f s",
            source.provider, exc.error_class, message, wait,
        )  # fmt: skip
        for day in due:
            entry = BillingDay(source.provider, day, now, str(exc.error_class), error=message)
            await asyncio.to_thread(self.state.save_billing_day, entry)

    def measured(self, provider: str, day: date) -> tuple[Measured, dict[str, Measured]]:
        """llmpulse's day of ``provider``: probes and traffic, in total and per model its
        targets name (a query each: run it off the loop)."""
        start = _start(day)
        end = start + DAY_S
        total = Measured()
        for row in self.store.costs("provider", start, end):
            if row.name == provider:
                total += _measured(row.cost_usd, row.requests, row.input_tokens, row.output_tokens)
        models: dict[str, Measured] = {}
        names = self.models.get(provider, set())
        for row in self.store.costs("model", start, end):
            if row.name in names:
                m = _measured(row.cost_usd, row.requests, row.input_tokens, row.output_tokens)
                models[row.name] = models.get(row.name, Measured()) + m
        return total, models


def _start(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def _measured(cost: float | None, requests: int, input_tokens: int, output: int) -> Measured:
    return Measured(cost or 0.0, requests or 0, input_tokens or 0, output or 0)


def _apart(r: Reconciliation) -> float | None:
    return None if r.difference is None else abs(r.difference)


def _verdict(source: BillingSource, compared: list[Reconciliation]) -> Verdict:
    drifting = [r for r in compared if r.drift]
    if not drifting:
        latest = compared[-1]
        return Verdict(source.provider, None, latest.summary(), _apart(latest))
    worst = drifting[-1]  # the latest day that drifts: what to look at first
    summary = worst.summary()
    if len(drifting) > 1:
        summary += f" ({len(drifting)} of the {len(compared)} days compared drift)"
    return Verdict(source.provider, Severity.WARNING, summary, _apart(worst), source.threshold)
