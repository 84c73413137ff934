"""The JSON API under /api/v1: thin routes over ``View``; the OpenAPI document comes from here.

Handlers are plain functions: FastAPI runs them in its thread pool, so a database read never
blocks the event loop the probes measure on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Response

from llmpulse.result import Source
from llmpulse.store.base import CostBy
from llmpulse.web import schemas
from llmpulse.web.budgets import budget_use
from llmpulse.web.view import Conflict, InvalidInput, NotFound, View

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": schemas.Problem, "description": "Unknown target, alert or silence"}
}
_ACK_ANSWERS: dict[int | str, dict[str, Any]] = {
    **_NOT_FOUND,
    409: {"model": schemas.Problem, "description": "The alert is not firing"},
}
Fingerprint = Annotated[str, Path(description="The alert's fingerprint", max_length=64)]
TargetName = Annotated[str, Path(description="Target name as configured (may contain '/')")]
TargetFilter = Annotated[str | None, Query(description="Only this target", max_length=500)]
CheckFilter = Annotated[
    str | None,
    Query(
        description="Only this check: a custom probe's name, or a built-in check's kind",
        min_length=1,
        max_length=200,
    ),
]
RegionFilter = Annotated[
    str | None,
    Query(description='Only this probe region ("" for results without one)', max_length=200),
]
SourceFilter = Annotated[Source | None, Query(description="Only probes or only gateway traffic")]


def private_routes(view: View) -> APIRouter:
    """Everything behind the dashboard's credentials."""
    router = APIRouter(prefix="/api/v1", tags=["dashboard"])

    @router.get("/targets", response_model=list[schemas.TargetInfo])
    def targets() -> list[schemas.TargetInfo]:
        """Configured targets: names, providers and models; never a URL, header or key."""
        return view.targets()

    @router.get("/overview", response_model=schemas.Overview)
    def overview() -> schemas.Overview:
        """One card per target, provider statuses and the alerts firing now."""
        return view.overview()

    @router.get("/targets/{name:path}", response_model=schemas.TargetDetail, responses=_NOT_FOUND)
    def target(name: TargetName) -> schemas.TargetDetail:
        """One target's card and its figures over every window."""
        with _found():
            return view.target_detail(name)

    @router.get("/results", response_model=schemas.Results, responses=_NOT_FOUND)
    def results(
        target: TargetFilter = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        region: RegionFilter = None,
        source: SourceFilter = None,
        check: CheckFilter = None,
    ) -> schemas.Results:
        """The latest raw checks, newest first, as ``llmpulse check --json`` reports them
        (``check``: the probe's name, ``kind``: its kind)."""
        with _found():
            return schemas.Results(results=view.results(target, limit, region, source, check))

    @router.get("/breakdown", response_model=schemas.Breakdown, responses=_NOT_FOUND)
    def breakdown(
        by: schemas.BreakdownBy,
        window: schemas.BreakdownWindow = "1h",
        target: TargetFilter = None,
        region: RegionFilter = None,
        source: SourceFilter = None,
    ) -> schemas.Breakdown:
        """Figures per region or per source (probe / traffic) over a window, exact from the raw
        results; all targets together without ``target``."""
        with _found():
            return view.breakdown(by, window, target, region, source)

    @router.get("/aggregates", response_model=schemas.Aggregates)
    def aggregates(
        window: schemas.Window = "1h",
        by: Literal["target", "provider", "overall"] = "target",
        check: CheckFilter = None,
    ) -> schemas.Aggregates:
        """Rolling figures per target, per provider or overall (key "")."""
        groups = view.aggregates(window, by, check)
        return schemas.Aggregates(window=window, by=by, groups=groups)

    @router.get("/series", response_model=schemas.Series, responses=_NOT_FOUND)
    def series(
        target: TargetFilter = None,
        range: schemas.Range = "24h",
        check: CheckFilter = None,
    ) -> schemas.Series:
        """Chart data in columns, one entry per bucket; all targets together without target."""
        with _found():
            return view.series(target, range, check)

    @router.get(
        "/context_utilization", response_model=schemas.ContextUtilization, responses=_NOT_FOUND
    )
    def context_utilization(
        target: TargetFilter = None, range: schemas.Range = "24h"
    ) -> schemas.ContextUtilization:
        """Context-window use (prompt tokens / context window) per bucket, probes and gateway
        traffic apart, from the raw results; all targets together without target."""
        with _found():
            return view.context_utilization(target, range)

    @router.get("/events", response_model=schemas.Events, responses=_NOT_FOUND)
    def events(target: TargetFilter = None, range: schemas.Range = "24h") -> schemas.Events:
        """Chart markers: alerts firing and resolving, served model version changes."""
        with _found():
            return view.events(target, range)

    @router.get("/gateway", response_model=schemas.Gateway)
    def gateway(window: schemas.GatewayWindow = "1h") -> schemas.Gateway:
        """The gateway's traffic share per deployment and fallbacks per minute by reason (per
        bucket), its breakers' opens and closes, the incidents in which traffic moved off its
        first choices (from, to, when, back when) and the latest drill of each failover path."""
        return view.gateway(window)

    @router.get("/alerts", response_model=schemas.Alerts)
    def alerts(
        target: TargetFilter = None,
        limit: Annotated[int, Query(ge=1, le=5000)] = 200,
    ) -> schemas.Alerts:
        """Firing and pending alerts, the notification history (newest first), and the
        maintenance the providers' status pages announce."""
        return view.alerts(target, limit)

    @router.get("/alerts/{fingerprint}", response_model=schemas.Alert, responses=_NOT_FOUND)
    def alert(fingerprint: Fingerprint) -> schemas.Alert:
        """One alert, firing or not."""
        with _found():
            return view.alert(fingerprint)

    @router.post("/alerts/{fingerprint}/ack", response_model=schemas.Alert, responses=_ACK_ANSWERS)
    def acknowledge(
        fingerprint: Fingerprint, body: schemas.Acknowledge | None = None
    ) -> schemas.Alert:
        """Acknowledge a firing alert: its escalation and repeats stop, and the notifiers it
        paged are told who has it. Acknowledging it again changes nothing."""
        body = body or schemas.Acknowledge()
        with _found():
            try:
                return view.acknowledge(fingerprint, body.by, body.comment)
            except Conflict as exc:
                raise HTTPException(409, str(exc)) from None

    @router.delete("/alerts/{fingerprint}/ack", response_model=schemas.Alert, responses=_NOT_FOUND)
    def unacknowledge(fingerprint: Fingerprint) -> schemas.Alert:
        """Take an acknowledgement back: escalation and repeats resume."""
        with _found():
            return view.unacknowledge(fingerprint)

    @router.get("/silences", response_model=schemas.Silences)
    def silences(all: bool = False) -> schemas.Silences:
        """Active and scheduled silences; ``all=true`` includes ended ones."""
        return schemas.Silences(silences=view.silences(include_ended=all))

    @router.post(
        "/silences",
        response_model=schemas.Silence,
        status_code=201,
        responses={
            400: {"model": schemas.Problem, "description": "Invalid duration, cron or timezone"}
        },
    )
    def add_silence(body: schemas.NewSilence) -> schemas.Silence:
        """Silence alerts matching the globs from now for ``duration``, or with ``cron`` in a
        window of ``duration`` at each of its times from now on."""
        try:
            return view.add_silence(body)
        except InvalidInput as exc:
            raise HTTPException(400, str(exc)) from None

    @router.delete("/silences/{silence_id}", response_model=schemas.Silence, responses=_NOT_FOUND)
    def end_silence(silence_id: str) -> schemas.Silence:
        """End a silence now."""
        with _found():
            return view.end_silence(silence_id)

    @router.get("/slos", response_model=list[schemas.Slo])
    def slos() -> list[schemas.Slo]:
        """Every SLO: its SLI, error budget and burn rates over its rolling window, as the alert
        leader counted them."""
        return view.slos()

    @router.get("/slos/{name:path}", response_model=schemas.SloDetail, responses=_NOT_FOUND)
    def slo(name: Annotated[str, Path(description="The SLO's name")]) -> schemas.SloDetail:
        """One SLO with its budget burn-down over the window and the incidents that spent it."""
        with _found():
            return view.slo_detail(name)

    @router.get("/budgets", response_model=schemas.Budgets)
    def budgets() -> schemas.Budgets:
        """Every gateway key and team with a budget: spend over its period, what is left, when
        it resets, the current rate and when at that rate it runs out, its budget alerts."""
        return budget_use(view)

    @router.get(
        "/costs",
        response_model=schemas.CostReport | schemas.Costs,
        response_model_by_alias=True,
        responses={400: {"model": schemas.Problem, "description": "from is not before to, "
                         "or the range is longer than 400 days"}},
    )  # fmt: skip
    def costs(
        by: Annotated[
            CostBy | None,
            Query(description="Spend per key, team, user, tag, model, provider or UTC day"),
        ] = None,
        from_: Annotated[
            datetime | None,
            Query(
                alias="from",
                description="ISO 8601 start (inclusive; UTC without an offset); default: "
                "midnight UTC 30 days before to",
            ),
        ] = None,
        to: Annotated[
            datetime | None,
            Query(description="ISO 8601 end (exclusive; UTC without an offset); default: now"),
        ] = None,
        source: Annotated[
            schemas.CostSource, Query(description="Probes, gateway traffic, or both apart")
        ] = "all",
        limit: Annotated[
            int, Query(ge=1, le=10_000, description="At most this many rows, largest first")
        ] = 1000,
        days: Annotated[
            int, Query(ge=1, le=400, description="Without by: the per-target report's days")
        ] = 30,
    ) -> schemas.CostReport | schemas.Costs:
        """With ``by``: exact spend per owner over a range, probes and traffic in rows apart,
        and the totals per source. Without it (the earlier report, kept for its clients):
        spend and tokens per target and UTC day, totals by provider and model."""
        if by is None:
            return view.costs(days)
        try:
            return view.cost_report(by, _ts(from_), _ts(to), source, limit)
        except InvalidInput as exc:
            raise HTTPException(400, str(exc)) from None

    @router.get("/failover", response_model=schemas.Failover)
    def failover() -> schemas.Failover:
        """Failover readiness per model group, judged without a token from stored data: could
        each fallback (in the gateway's order) take the primary's traffic now (key and model,
        parameters, context window, rate-limit headroom, breaker), and why not."""
        return view.failover()

    @router.get("/billing", response_model=schemas.Billing)
    def billing(days: Annotated[int, Query(ge=1, le=400)] = 30) -> schemas.Billing:
        """Each provider's own bill per UTC day against what llmpulse measured (traffic and
        probes), per model, as the alert leader's daily reconciliation found it."""
        return view.billing(days)

    return router


def public_routes(view: View) -> APIRouter:
    """What the public status page needs: statuses and history, nothing configured."""
    router = APIRouter(prefix="/api/v1", tags=["public"])

    @router.get("/status", response_model=schemas.StatusSummary)
    def status() -> schemas.StatusSummary:
        """Every target's status now."""
        return view.status_summary()

    @router.get("/statuspage", response_model=schemas.StatusPage)
    def statuspage(response: Response) -> schemas.StatusPage:
        """90 days of daily availability and the incidents, per target."""
        response.headers["Cache-Control"] = "public, max-age=10"
        return view.status_page()

    return router


def _ts(value: datetime | None) -> float | None:
    """A query's time as a timestamp; one without an offset is UTC."""
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


@contextlib.contextmanager
def _found() -> Iterator[None]:
    """Turns ``NotFound`` into a 404 with its message."""
    try:
        yield
    except NotFound as exc:
        raise HTTPException(404, str(exc.args[0])) from None
