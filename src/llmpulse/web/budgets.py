"""``GET /api/v1/budgets``: every gateway key and team with a budget, its use and forecast
(``alerts.budgets``, as the alert leader judges them) and its budget alerts as they stand; and
the probes' own month's spend against ``monitor.probe_budget_usd`` (``probe.budget``)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from llmpulse.alerts import budgets
from llmpulse.alerts.engine import fingerprint
from llmpulse.alerts.model import AlertState
from llmpulse.probe import budget as probe_budget
from llmpulse.rules import BUDGET_RULES
from llmpulse.web import schemas
from llmpulse.web.view import View


def budget_use(view: View, now: float | None = None) -> schemas.Budgets:
    now = time.time() if now is None else now
    reading = budgets.read(view.store, view.config, now)
    records = {r.fingerprint: r for r in view.alert_state.load_records()} if reading.holders else {}
    out = []
    for h in reading.holders:
        use = budgets.Use.of(h, reading.spend[h.subject], now)
        alerts = []
        for rule in BUDGET_RULES:
            r = records.get(fingerprint(rule, h.subject))
            if r is not None and r.state in (AlertState.FIRING, AlertState.PENDING):
                alerts.append(
                    schemas.BudgetAlert(
                        rule=rule,
                        state=str(r.state),
                        severity=str(r.severity),
                        fingerprint=r.fingerprint,
                        fired_at=r.fired_at,
                        summary=view.redact(r.summary) or "",
                    )
                )
        states = {a.state for a in alerts}
        b = h.budget
        out.append(
            schemas.BudgetUse(
                scope=h.scope,
                name=h.name,
                max_usd=b.max_usd,
                period=b.period.value,
                warn_at=b.warn_at,
                spent_usd=use.spent,
                remaining_usd=use.remaining,
                percent=use.fraction * 100,
                resets_at=_dt(use.resets_at),
                rate_usd_per_day=use.rate_usd_per_day,
                exhausts_at=_dt(use.exhausts_at),
                alert_state="firing" if "firing" in states else next(iter(states), "inactive"),
                alerts=alerts,
            )
        )
    return schemas.Budgets(
        generated_at=datetime.fromtimestamp(now, UTC), budgets=out, probes=_probes(view, now)
    )


def _probes(view: View, now: float) -> schemas.ProbeBudget | None:
    limit = view.config.monitor.probe_budget_usd
    if limit is None:
        return None
    start, end = probe_budget.month_bounds(now)
    spent = sum(r.cost_usd for r in view.store.costs("provider", start, now, source="probe"))
    rate = sum(p.usd_per_s() for p in probe_budget.scheduled(view.known_targets()))
    return schemas.ProbeBudget(
        max_usd=limit,
        spent_usd=spent,
        remaining_usd=limit - spent,
        percent=spent / limit * 100,
        resets_at=datetime.fromtimestamp(end, UTC),
        expected_usd_per_month=rate * probe_budget.MONTH_S,
    )


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)
