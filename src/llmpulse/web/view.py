"""The read side of the dashboard: everything the API shows, assembled from the stores.

A ``View`` has its own connections to the results and alert-state databases (SQLite allows
readers beside the daemon's writer in WAL mode; PostgreSQL results come from a pool), so
serving a page never waits for a probe write, and the same view works inside ``llmpulse run``
or in a separate status-page process.
Alert state is read as the daemon persisted it (every tick), so the dashboard agrees with the
pages that went out.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from llmpulse.alerts import confirmation, slo
from llmpulse.alerts.engine import AlertRecord, alert_scope, fingerprint, listed
from llmpulse.alerts.metric_rules import scopes
from llmpulse.alerts.model import Acknowledgement, AlertState
from llmpulse.alerts.silences import (
    CONFIG_SILENCE_PREFIX,
    NO_END,
    Silence,
    configured_silences,
)
from llmpulse.alerts.state import AlertStateStore, NotFiring, UnknownAlert
from llmpulse.alerts.status import (
    TargetStatus,
    provider_status,
    says_health,
    target_status,
    worst,
)
from llmpulse.config import Config
from llmpulse.config.slos import Slo
from llmpulse.durations import parse_duration
from llmpulse.errors import ErrorClass
from llmpulse.gateway import readiness
from llmpulse.presets import PRESETS
from llmpulse.probe.official import (
    Maintenance,
    OfficialStatus,
    components_for,
    provider_scope,
    scoped,
)
from llmpulse.probe.scheduler import Check, checks_of, configured_interval
from llmpulse.result import CheckResult, Source
from llmpulse.rules import FAILOVER_NOT_READY, OFFICIAL_STATUS_RULE, SLO_BURN_RULE, group_subject
from llmpulse.schedule import Schedule, ScheduleError, parse_cron, parse_timezone
from llmpulse.store import ResultFilter, open_store, queries
from llmpulse.store.base import CostBy, Store
from llmpulse.target import Target
from llmpulse.web import gateway, schemas

DAY = 86400
# Chart ranges: window and bucket, a few hundred points at most per series.
RANGES: dict[str, tuple[int, int]] = {
    "1h": (3600, 60),
    "24h": (86400, 900),
    "7d": (7 * DAY, 3600),
    "30d": (30 * DAY, 6 * 3600),
}
# The gateway page: window and chart bucket (raw results only: 7 days at most).
GATEWAY_WINDOWS: dict[str, tuple[int, int]] = {
    "1h": (3600, 60),
    "6h": (6 * 3600, 300),
    "24h": (DAY, 900),
    "7d": (7 * DAY, 3600),
}
CARD_WINDOW = "1h"
# A target's checks one by one: a day, since custom probes may run every few minutes or less.
CHECK_WINDOW = "24h"
# Cost reports: the default range (UTC days back from now) and the longest one asked for.
COST_DAYS = 30
MAX_COST_RANGE_S = 400 * DAY
STATUS_PAGE_DAYS = 90
MAX_SILENCE_S = 365 * DAY
NEXT_WINDOWS = 3  # of each silence, in the API's next_occurrences

OfficialSource = Callable[[str], OfficialStatus | None]
# When a target's checks were last skipped because traffic checked it, by check name.
TrafficSource = Callable[[str], Mapping[str, float]]
# How often a target's check runs now, as the daemon that probes has it (the probe budget may
# stretch it).
IntervalSource = Callable[[Target, Check], float]


class NotFound(LookupError):
    """An unknown target or silence; the API answers 404 with this message."""


class InvalidInput(ValueError):
    """A request the API answers 400 to, with this message."""


class Conflict(ValueError):
    """A request the state does not allow now (acknowledging a resolved alert): 409."""


class View:
    def __init__(
        self,
        config: Config,
        store: Store,
        alerts: AlertStateStore,
        official: OfficialSource | None = None,
        checked_by_traffic: TrafficSource | None = None,
        check_interval: IntervalSource | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.alert_state = alerts
        self.official = official
        self.checked_by_traffic = checked_by_traffic
        self.check_interval = check_interval or configured_interval
        # Without configured targets (a status host given only the database), those recorded.
        targets = config.targets or recorded_targets(store)
        self._targets = {t.name: t for t in targets}
        self._scopes = scopes(config.custom_rules)  # what a custom rule's alerts name
        # Results are redacted as they are measured; this also cleans rows stored before that.
        self.redact = config.redactor
        self._confirmed: tuple[float, dict[str, schemas.Confirmation]] | None = None

    @classmethod
    def open(
        cls,
        config: Config,
        storage: str | Path,
        official: OfficialSource | None = None,
        checked_by_traffic: TrafficSource | None = None,
        check_interval: IntervalSource | None = None,
    ) -> View:
        """Over the results at ``storage`` (a SQLite path or a database URL)."""
        return cls(
            config, open_store(storage), AlertStateStore.open(storage), official,
            checked_by_traffic, check_interval,
        )  # fmt: skip

    def checked_every(self, t: Target) -> float:
        """How often a new result of ``t`` is due: its most frequent check's interval (a
        custom probe's own, a stretched one's where the daemon that probes serves this)."""
        return min((self.check_interval(t, c) for c in checks_of(t)), default=t.interval)

    def close(self) -> None:
        self.store.close()
        self.alert_state.close()

    # --- failover readiness -------------------------------------------------------------

    def failover(self, now: float | None = None) -> schemas.Failover:
        """Every model group's failover readiness (``gateway.readiness``), with the state of its
        ``failover_not_ready`` alert."""
        now = time.time() if now is None else now
        gateway = self.config.gateway
        groups = []
        if gateway is not None:
            judged = readiness.judge(readiness.read_facts(gateway, self.store, now))
            records = {r.fingerprint: r for r in self.alert_state.load_records()}
            for g in judged:
                record = records.get(fingerprint(FAILOVER_NOT_READY, group_subject(g.group)))
                groups.append(
                    schemas.GroupReadiness(
                        group=g.group,
                        status=g.status.value,
                        reason=g.reason,
                        primary=g.primary,
                        load=schemas.FailoverLoad(**dataclasses.asdict(g.load)),
                        fallbacks=[
                            schemas.FallbackReadiness(
                                **{**dataclasses.asdict(f), "status": f.status.value}
                            )
                            for f in g.fallbacks
                        ],
                        alert=str(record.state) if record and record.state else None,
                    )
                )
        return schemas.Failover(generated_at=datetime.fromtimestamp(now, UTC), groups=groups)

    # --- targets and cards --------------------------------------------------------------

    def targets(self) -> list[schemas.TargetInfo]:
        return [_info(t) for t in self._targets.values()]

    def known_targets(self) -> list[Target]:
        """The configured targets, or (with none configured) those the database recorded."""
        return list(self._targets.values())

    def target(self, name: str) -> Target:
        try:
            return self._targets[name]
        except KeyError:
            raise NotFound(f"unknown target {name!r}") from None

    def overview(self, now: float | None = None) -> schemas.Overview:
        now = time.time() if now is None else now
        records = self._records_by_subject()
        silences = self._silences(now)
        acks = self._acks()
        latest = self.store.latest_per_target()
        window_s = queries.WINDOWS[CARD_WINDOW]
        aggregates = queries.aggregate_by_target(self.store, window_s, now)
        costs = self._costs_today(None, now)
        served = self._served_models(None, now)
        cards = []
        for t in self._targets.values():
            cards.append(
                self._card(
                    t,
                    records.get(t.name, []),
                    latest.get(t.name),
                    aggregates.get(t.name),
                    costs.get(t.name),
                    served.get(t.name),
                    silences,
                    acks,
                    now,
                )
            )
        providers = []
        confirmations = self.confirmations(now)
        for provider in dict.fromkeys(t.provider for t in self._targets.values()):
            own = [c for c in cards if c.provider == provider]
            providers.append(
                schemas.ProviderRow(
                    provider=provider,
                    status=provider_status(records.get(provider, []), (c.status for c in own)),
                    targets=len(own),
                    official=self._official(provider),
                    confirmation=confirmations.get(provider),
                )
            )
        firing = [
            _alert(r, silences, acks, now, self._scopes)
            for rs in records.values()
            for r in rs
            if r.state is AlertState.FIRING and listed(r)
        ]
        firing.sort(key=lambda a: -(a.fired_at or 0))
        return schemas.Overview(
            generated_at=now,
            window=CARD_WINDOW,
            overall=worst(p.status for p in providers),
            cards=cards,
            providers=providers,
            firing=firing,
        )

    def target_detail(self, name: str, now: float | None = None) -> schemas.TargetDetail:
        now = time.time() if now is None else now
        t = self.target(name)
        windows = {
            w: queries.aggregate(self.store, s, now, target=name)
            for w, s in queries.WINDOWS.items()
        }
        latest = self.store.latest_results(limit=1, where=ResultFilter(target=name))
        card = self._card(
            t,
            self._records_by_subject().get(name, []),
            latest[0] if latest else None,
            windows[CARD_WINDOW],
            self._costs_today(name, now).get(name),
            self._served_models(name, now).get(name),
            self._silences(now),
            self._acks(),
            now,
        )
        return schemas.TargetDetail(
            target=_info(t), card=card, windows=windows, checks=self._checks(t, now)
        )

    def _checks(self, t: Target, now: float) -> list[schemas.CheckSummary]:
        """Each check of the target, the built-in ones by kind, then each custom probe."""
        named = [(str(c), c, False) for c in t.checks] + [(p.name, p.kind, True) for p in t.probes]
        window_s = queries.WINDOWS[CHECK_WINDOW]
        out = []
        for name, kind, custom in named:
            agg = queries.aggregate(self.store, window_s, now, target=t.name, check=name)
            where = ResultFilter(target=t.name, check=name)
            latest = next(iter(self.store.latest_results(limit=1, where=where)), None)
            wrong = None
            # Looked up only when the window has one: the search then stops inside it.
            if agg.errors.get(ErrorClass.ASSERTION.value):
                found = self.store.latest_results(
                    limit=1,
                    where=dataclasses.replace(where, error_class=ErrorClass.ASSERTION.value),
                )
                wrong = next(iter(found), None)
            out.append(
                schemas.CheckSummary(
                    name=name,
                    kind=kind,
                    custom=custom,
                    window=CHECK_WINDOW,
                    count=agg.count,
                    availability=agg.availability,
                    error_rate=agg.error_rate,
                    correct_rate=agg.correct_rate,
                    latency_p50_ms=agg.latency_p50,
                    ttft_p50_ms=agg.ttft_p50,
                    last_check_ts=latest.timestamp.timestamp() if latest else None,
                    last_ok=latest.ok if latest else None,
                    last_error=self._last_error(latest),
                    last_wrong_answer=None
                    if wrong is None
                    else schemas.WrongAnswer(
                        ts=wrong.timestamp.timestamp(),
                        message=self.redact(wrong.error_message),
                        answer_excerpt=self.redact(wrong.answer_excerpt),
                    ),
                )
            )
        return out

    def _last_error(self, latest: CheckResult | None) -> schemas.LastError | None:
        if latest is None or latest.ok:
            return None
        return schemas.LastError(
            class_=str(latest.error_class) if latest.error_class else None,
            message=self.redact(latest.error_message),
            ts=latest.timestamp.timestamp(),
        )

    def _card(
        self,
        t: Target,
        records: list[AlertRecord],
        latest: CheckResult | None,
        agg: queries.Aggregate | None,
        cost_today: float | None,
        served_model: str | None,
        silences: list[Silence],
        acks: Mapping[str, Acknowledgement],
        now: float,
    ) -> schemas.Card:
        status = target_status(records, latest, self.checked_every(t), now)
        agg = agg or queries.Aggregate()
        return schemas.Card(
            name=t.name,
            provider=t.provider,
            model=t.model,
            status=status.status,
            status_since=status.since,
            status_reason=self.redact(status.reason) or "",
            ttft_p50_ms=agg.ttft_p50,
            ttft_p95_ms=agg.ttft_p95,
            tps_p50=agg.tps_p50,
            error_rate=agg.error_rate,
            availability=agg.availability,
            correct_rate=agg.correct_rate,
            ratelimit_utilization=agg.ratelimit_utilization_latest,
            cost_today_usd=cost_today,
            checks_1h=agg.count,
            last_check_ts=latest.timestamp.timestamp() if latest is not None else None,
            last_error=self._last_error(latest),
            served_model=served_model,
            retires=t.retires.isoformat() if t.retires else None,
            official=self._official(t.provider, t),
            alerts=[
                _alert(r, silences, acks, now, self._scopes)
                for r in records
                if r.state in (AlertState.FIRING, AlertState.PENDING) and listed(r)
            ],
            checked_by_traffic=dict(self.checked_by_traffic(t.name))
            if self.checked_by_traffic is not None
            else {},
        )

    def _costs_today(self, target: str | None, now: float) -> dict[str, float]:
        """Spend since midnight UTC per target (absent when no check reported a cost)."""
        where = ResultFilter(target=target)
        totals = self.store.totals(_day_start(now), now, by="target", where=where)
        return {name: t.cost_usd for (_, name), t in totals.items() if t.cost_requests}

    def _served_models(self, target: str | None, now: float) -> dict[str, str]:
        """The model each target served last: the latest check may be a models-list check,
        which names none."""
        changes = self.store.model_changes(target, 0, now + 1)
        return {c.target: c.current for c in changes}

    def statuses(
        self, now: float | None = None, records: Iterable[AlertRecord] | None = None
    ) -> dict[str, TargetStatus]:
        """Every target's status: the badges', the public page's and ``/metrics``' source.
        ``records``: the alert records, when the caller has read them already."""
        now = time.time() if now is None else now
        by_subject = self._records_by_subject(records)
        latest = self.store.latest_per_target()
        return {
            t.name: target_status(
                by_subject.get(t.name, []), latest.get(t.name), self.checked_every(t), now
            )
            for t in self._targets.values()
        }

    def _official(self, provider: str, target: Target | None = None) -> schemas.Official | None:
        """The provider's status page as its targets' components see it (``target``'s alone
        when given)."""
        status = self.official(provider) if self.official is not None else None
        if status is None:
            return None
        if target is not None:
            status = scoped(status, components_for(target))
        return schemas.Official(
            indicator=status.indicator,
            description=(
                self.redact.clipped(status.description)
                if status.error is None
                else "status page unreadable"
            ),
            url=status.url,
            updated_ts=status.fetched_at.timestamp(),
            # Status pages are outside text: their incidents' names too.
            incidents=[self.redact.clipped(i) for i in status.incidents],
            maintenances=[self._maintenance(m) for m in status.maintenances],
        )

    def confirmations(self, now: float) -> dict[str, schemas.Confirmation]:
        """Per provider with a status page (polled now, or posts stored), how it confirmed our
        incidents over the last 30 days; computed at most once a minute."""
        if self._confirmed is not None and now - self._confirmed[0] < 60:
            return self._confirmed[1]
        since = now - confirmation.PERIOD_S
        events = self.alert_state.events_between(since, now + 1)
        posted = self.alert_state.official_incidents(since - confirmation.BEFORE_S)
        found = {}
        for provider in dict.fromkeys(t.provider for t in self._targets.values()):
            polled = self.official is not None and self.official(provider) is not None
            if not polled and not any(p.provider == provider for p in posted):
                continue
            scope = provider_scope(t for t in self._targets.values() if t.provider == provider)
            ours = confirmation.our_incidents(events, provider)
            found[provider] = _confirmation(confirmation.record(provider, ours, posted, scope, now))
        self._confirmed = (now, found)
        return found

    def _maintenance(self, m: Maintenance) -> schemas.Maintenance:
        return schemas.Maintenance(
            name=self.redact.clipped(m.name),
            status=m.status,
            starts_at=m.starts_at.timestamp() if m.starts_at else None,
            ends_at=m.ends_at.timestamp() if m.ends_at else None,
            url=m.url,
        )

    def _maintenances(self, providers: Iterable[str]) -> list[schemas.ProviderMaintenance]:
        """What the providers' status pages announce, under way first, then by start."""
        found = []
        for provider in dict.fromkeys(providers):
            status = self.official(provider) if self.official is not None else None
            for m in status.maintenances if status is not None else []:
                found.append(
                    schemas.ProviderMaintenance(
                        **self._maintenance(m).model_dump(), provider=provider
                    )
                )
        found.sort(key=lambda m: (m.status == "scheduled", m.starts_at or math.inf))
        return found

    # --- raw checks, aggregates, charts ---------------------------------------------------

    def results(
        self,
        target: str | None,
        limit: int,
        region: str | None = None,
        source: Source | None = None,
        check: str | None = None,
    ) -> list[dict[str, object]]:
        if target is not None:
            self.target(target)
        where = ResultFilter(
            target=target, check=check, region=region, source=source and str(source)
        )
        latest = self.store.latest_results(limit=limit, where=where)
        return [self.redact.result(r).to_json() for r in latest]

    def aggregates(
        self, window: str, by: str, check: str | None, now: float | None = None
    ) -> dict[str, queries.Aggregate]:
        now = time.time() if now is None else now
        window_s = queries.WINDOWS[window]
        if by == "target":
            return queries.aggregate_by_target(self.store, window_s, now, check=check)
        if by == "provider":
            return queries.aggregate_by_provider(self.store, window_s, now, check=check)
        return {"": queries.aggregate(self.store, window_s, now, check=check)}

    def breakdown(
        self,
        by: schemas.BreakdownBy,
        window: schemas.BreakdownWindow,
        target: str | None = None,
        region: str | None = None,
        source: Source | None = None,
        now: float | None = None,
    ) -> schemas.Breakdown:
        """Figures per region or per source ("Slow from eu-west only?", "probes or traffic?"),
        of one target or all, exact from the raw results."""
        if target is not None:
            self.target(target)
        groups = queries.aggregate_raw(
            self.store,
            queries.WINDOWS[window],
            now,
            group_by=by,
            target=target,
            region=region,
            source=source and str(source),
        )
        return schemas.Breakdown(
            window=window,
            by=by,
            target=target,
            region=region,
            source=source,
            groups=dict(sorted(groups.items())),
        )

    def series(
        self, target: str | None, range_: str, check: str | None, now: float | None = None
    ) -> schemas.Series:
        now = time.time() if now is None else now
        if target is not None:
            self.target(target)
        window_s, step_s = RANGES[range_]
        points = queries.series(self.store, target, window_s, step_s, now, check=check)
        classes = sorted({c for p in points for c in p["errors"]})
        return schemas.Series(
            target=target,
            range=range_,
            step_s=step_s,
            ts=[p["ts"] for p in points],
            count=[p["count"] for p in points],
            ttft_p50=[p["ttft_p50"] for p in points],
            ttft_p95=[p["ttft_p95"] for p in points],
            ttft_p99=[p["ttft_p99"] for p in points],
            latency_p50=[p["latency_p50"] for p in points],
            latency_p95=[p["latency_p95"] for p in points],
            latency_p99=[p["latency_p99"] for p in points],
            tps_p50=[p["tps_p50"] for p in points],
            context_utilization_p50=[p["context_utilization_p50"] for p in points],
            context_utilization_p95=[p["context_utilization_p95"] for p in points],
            context_utilization_max=[p["context_utilization_max"] for p in points],
            error_rate=[p["error_rate"] for p in points],
            availability=[p["availability"] for p in points],
            correct_rate=[p["correct_rate"] for p in points],
            errors={c: [p["errors"].get(c, 0) for p in points] for c in classes},
            ratelimit_utilization=[p["ratelimit_utilization_max"] for p in points],
            tokens_per_request=[p["tokens_per_request"] for p in points],
            cost=[p["cost_total"] for p in points],
        )

    def context_utilization(
        self, target: str | None, range_: str, now: float | None = None
    ) -> schemas.ContextUtilization:
        if target is not None:
            self.target(target)
        window_s, step_s = RANGES[range_]
        ts, groups = queries.raw_series(
            self.store, "context", target, window_s, step_s, now, group_by="source"
        )
        n = len(ts)
        empty = queries.ValueSeries([0] * n, [None] * n, [None] * n, [None] * n)
        return schemas.ContextUtilization(
            target=target,
            range=range_,
            step_s=step_s,
            ts=ts,
            # Drills send a few tokens on purpose: their prompts say nothing of the context.
            sources={s: groups.get(str(s), empty) for s in (Source.PROBE, Source.TRAFFIC)},
        )

    def events(self, target: str | None, range_: str, now: float | None = None) -> schemas.Events:
        now = time.time() if now is None else now
        if target is not None:
            self.target(target)
        start = now - RANGES[range_][0]
        out: list[schemas.Event] = []
        for ts, n in self.alert_state.events_between(start, now, target=target):
            if n.rule == OFFICIAL_STATUS_RULE or n.status is AlertState.ACKNOWLEDGED:
                continue  # an acknowledgement neither starts nor ends anything on a chart
            out.append(
                schemas.Event(
                    ts=ts,
                    kind="alert_firing" if n.status is AlertState.FIRING else "alert_resolved",
                    target=n.target,
                    rule=n.rule,
                    severity=str(n.severity),
                    summary=self.redact(n.summary) or "",
                )
            )
        for change in self.store.model_changes(target, start, now):
            if change.previous is None:
                continue  # the first model seen is not a change
            out.append(
                schemas.Event(
                    ts=change.ts,
                    kind="model_changed",
                    target=change.target,
                    summary=f"served model {change.previous} → {change.current}",
                    from_=change.previous,
                    to=change.current,
                )
            )
        out.sort(key=lambda e: e.ts)
        return schemas.Events(events=out)

    def gateway(self, window: schemas.GatewayWindow, now: float | None = None) -> schemas.Gateway:
        """The gateway page: traffic share, fallbacks, breaker events, incidents and drills."""
        now = time.time() if now is None else now
        window_s, step_s = GATEWAY_WINDOWS[window]
        groups = gateway.Groups.of_config(self.config.gateway)
        return gateway.page(self.store, groups, window, window_s, step_s, now, self.redact)

    # --- alerts and silences --------------------------------------------------------------

    def live_alerts(
        self,
        target: str | None = None,
        now: float | None = None,
        records: Iterable[AlertRecord] | None = None,
    ) -> list[schemas.Alert]:
        """Firing and pending alerts, newest first (of one target, or all); ``records`` as
        ``statuses``'."""
        now = time.time() if now is None else now
        silences, acks = self._silences(now), self._acks()
        live = [
            _alert(r, silences, acks, now, self._scopes)
            for r in (self.alert_state.load_records() if records is None else records)
            if r.state in (AlertState.FIRING, AlertState.PENDING)
            and listed(r)
            and (target is None or r.target == target)
        ]
        live.sort(key=lambda a: -(a.fired_at or a.active_since or 0))
        return live

    def alerts(self, target: str | None, limit: int, now: float | None = None) -> schemas.Alerts:
        now = time.time() if now is None else now
        live = self.live_alerts(target, now)
        history = [
            schemas.AlertEvent(
                ts=ts,
                scope=alert_scope(n.rule, self._scopes, n.target),
                **{**n.to_json(), "summary": self.redact(n.summary) or ""},
            )
            for ts, n in self.alert_state.events_between(0, math.inf, target=target, limit=limit)
        ]
        history.reverse()  # newest first
        shown = [t for t in self._targets.values() if target is None or t.name == target]
        return schemas.Alerts(
            firing=[a for a in live if a.state == AlertState.FIRING],
            pending=[a for a in live if a.state == AlertState.PENDING],
            history=history,
            maintenances=self._maintenances(t.provider for t in shown),
        )

    def silences(self, include_ended: bool, now: float | None = None) -> list[schemas.Silence]:
        now = time.time() if now is None else now
        stored = self.alert_state.silences(None if include_ended else now)
        every = configured_silences(self.config.silences) + stored
        return [_silence(s, now) for s in every if include_ended or s.ends_at > now]

    def add_silence(self, new: schemas.NewSilence, now: float | None = None) -> schemas.Silence:
        now = time.time() if now is None else now
        try:
            duration = parse_duration(new.duration)
        except ValueError as exc:
            raise InvalidInput(f"duration: {exc}") from None
        if not 0 < duration <= MAX_SILENCE_S:
            raise InvalidInput(
                f"duration: must be more than 0 and at most 365d, got {new.duration!r}"
            )
        schedule = _schedule(new, duration)
        silence = Silence(
            id=Silence.new_id(),
            starts_at=now,
            ends_at=NO_END if schedule else now + duration,
            target=new.target,
            provider=new.provider,
            rule=new.rule,
            comment=new.comment,
            created_by=new.created_by,
            schedule=schedule,
        )
        self.alert_state.add_silence(silence)
        return _silence(silence, now)

    def end_silence(self, silence_id: str, now: float | None = None) -> schemas.Silence:
        now = time.time() if now is None else now
        if not self.alert_state.end_silence(silence_id, now):
            raise NotFound(f"no active silence {silence_id!r} (config silences end in the config)")
        ended = next(s for s in self.alert_state.silences() if s.id == silence_id)
        return _silence(ended, now)

    def _silences(self, now: float) -> list[Silence]:
        """What holds back pages now: the silences, and with
        ``alerting.silence_official_maintenance`` a provider's announced maintenance in
        progress (as the engine holds them back), so the dashboard says what was paged."""
        held = configured_silences(self.config.silences) + self.alert_state.silences(now)
        if self.config.alerting.silence_official_maintenance and self.official is not None:
            for provider in dict.fromkeys(t.provider for t in self._targets.values()):
                status = self.official(provider)
                if status is not None and status.in_maintenance:
                    held.append(
                        Silence(f"official-maintenance-{provider}", now, now + 1, provider=provider,
                                comment=f"{provider} announced maintenance", created_by=provider)
                    )  # fmt: skip
        return held

    def _acks(self) -> dict[str, Acknowledgement]:
        return {a.fingerprint: a for a in self.alert_state.acknowledgements()}

    def alert(self, fingerprint: str, now: float | None = None) -> schemas.Alert:
        now = time.time() if now is None else now
        record = self.alert_state.record(fingerprint)
        if record is None:
            raise NotFound(f"no alert {fingerprint!r}")
        return _alert(record, self._silences(now), self._acks(), now, self._scopes)

    def acknowledge(
        self, fingerprint: str, by: str, comment: str, via: str | None = None
    ) -> schemas.Alert:
        try:
            self.alert_state.acknowledge(fingerprint, by, comment, time.time(), via=via)
        except UnknownAlert:
            raise NotFound(f"no alert {fingerprint!r}") from None
        except NotFiring as exc:
            raise Conflict(str(exc)) from None
        return self.alert(fingerprint)

    def unacknowledge(self, fingerprint: str) -> schemas.Alert:
        try:
            self.alert_state.unacknowledge(fingerprint)
        except UnknownAlert:
            raise NotFound(f"no alert {fingerprint!r}") from None
        return self.alert(fingerprint)

    def _records_by_subject(
        self, records: Iterable[AlertRecord] | None = None
    ) -> dict[str, list[AlertRecord]]:
        out: dict[str, list[AlertRecord]] = {}
        for r in self.alert_state.load_records() if records is None else records:
            out.setdefault(r.target, []).append(r)
        return out

    # --- SLOs ------------------------------------------------------------------------------

    def slos(self, now: float | None = None) -> list[schemas.Slo]:
        """Every SLO's figures, summed by the state store from the minutes the leader saved."""
        now = time.time() if now is None else now
        last = int(now // 60 * 60)
        out = []
        for s in self.config.slos:
            sums, first = self.alert_state.slo_sums(s.name, s.definition, last, slo.spans(s))
            out.append(self._slo(slo.report_from(s, now, sums), first))
        return out

    def slo_detail(self, name: str, now: float | None = None) -> schemas.SloDetail:
        """One SLO with its budget burn-down over the window and the incidents of the targets
        it selects that overlap the window, each with the SLO's bad events during it."""
        now = time.time() if now is None else now
        s = next((s for s in self.config.slos if s.name == name), None)
        if s is None:
            raise NotFound(f"unknown SLO {name!r}")
        rows = self.alert_state.slo_minutes(s.name, s.definition, now - s.window_s)
        counts = slo.fill(slo.MinuteCounts(int(s.window_s // 60)), rows)
        report = slo.report(s, counts, now)
        start = now - s.window_s
        incidents = []
        for i in self._incidents(start, now, s.selection.admits_target):
            end = now if i.end is None else i.end
            events, good = counts.sums(int(i.start // 60), int(end // 60))
            incidents.append(schemas.SloIncident(**i.model_dump(), bad_events=events - good))
        points = slo.burn_down(report, counts)
        return schemas.SloDetail(
            **self._slo(report, slo.since(counts)).model_dump(),
            burn_down_ts=[ts for ts, _ in points],
            burn_down=[v for _, v in points],
            incidents=sorted(incidents, key=lambda i: -i.start),
        )

    def _slo(self, r: slo.Report, since: float | None) -> schemas.Slo:
        s: Slo = r.slo
        record = self.alert_state.record(fingerprint(SLO_BURN_RULE, s.name))
        state = record.state if record is not None else None
        live = state in (AlertState.FIRING, AlertState.PENDING)
        return schemas.Slo(
            name=s.name,
            kind=s.sli,
            threshold_s=s.threshold_s,
            sli=r.sli,
            objective=s.objective,
            window=s.window_label,
            window_s=s.window_s,
            source=s.source,
            events=r.events,
            good=r.good,
            since=_dt(since),
            budget_remaining=r.budget_remaining,
            budget_remaining_events=r.budget_remaining_events,
            burn_rates=r.burn_rates,
            exhausted_at=_dt(r.exhausted_at),
            exact=True,  # counted by the leader from every result it read
            alert_state=str(state) if live and state is not None else "inactive",
            alert_severity=str(record.severity) if live and record is not None else None,
        )

    # --- cost and the public status page --------------------------------------------------

    def costs(self, days: int, now: float | None = None) -> schemas.Costs:
        now = time.time() if now is None else now
        first = _day_start(now) - (days - 1) * DAY
        totals = self.store.totals(first, now, step_s=DAY, by="target")
        rows: list[schemas.CostDay] = []
        trend: list[schemas.TokensPerRequest] = []
        by_provider: dict[str, float] = {}
        by_model: dict[str, float] = {}
        for (bucket, name), tot in sorted(totals.items(), key=lambda kv: (kv[0][0] or 0, kv[0][1])):
            t = self._targets.get(name)
            if t is None:
                continue
            day = _day(bucket or first)
            cost = tot.cost_usd if tot.cost_requests else None
            tokens = tot.input_tokens + tot.output_tokens
            rows.append(
                schemas.CostDay(
                    day=day,
                    target=name,
                    provider=t.provider,
                    model=t.model,
                    cost_usd=cost,
                    requests=tot.token_requests,
                    tokens=tokens,
                )
            )
            trend.append(
                schemas.TokensPerRequest(
                    day=day,
                    target=name,
                    value=tokens / tot.token_requests if tot.token_requests else None,
                )
            )
            if cost is not None:
                by_provider[t.provider] = by_provider.get(t.provider, 0.0) + cost
                by_model[t.model] = by_model.get(t.model, 0.0) + cost
        return schemas.Costs(
            days=rows,
            totals=schemas.CostTotals(by_provider=by_provider, by_model=by_model),
            tokens_per_request=trend,
        )

    def cost_report(
        self,
        by: CostBy,
        start: float | None,
        end: float | None,
        source: schemas.CostSource,
        limit: int,
        now: float | None = None,
    ) -> schemas.CostReport:
        """Spend per owner over ``[start, end)``: by default the last ``COST_DAYS`` UTC days
        up to now (whole days: the first starts at midnight UTC)."""
        now = time.time() if now is None else now
        end = now if end is None else end
        start = _day_start(end - COST_DAYS * DAY) if start is None else start
        if end <= start:
            raise InvalidInput("from: must be before to")
        if end - start > MAX_COST_RANGE_S:
            raise InvalidInput(f"from, to: a range of at most {MAX_COST_RANGE_S // DAY} days")
        only = None if source == "all" else source
        report = self.store.cost_report(by, start, end, source=only)
        rows = report.rows
        if by == "tag":
            # A result with several tags is under each: total each result once, over the
            # range the tags were read for (a pruned edge day is read whole for tags).
            whole = self.store.cost_report(
                "provider", report.start_ts, report.end_ts, source=only
            ).rows
        else:
            whole = rows
        totals: dict[str, list[float]] = {}
        for r in whole:
            t = totals.setdefault(r.source, [0.0, 0, 0, 0])
            t[0] += r.cost_usd
            t[1] += r.requests
            t[2] += r.input_tokens
            t[3] += r.output_tokens
        return schemas.CostReport(
            by=by,
            from_=datetime.fromtimestamp(report.start_ts, UTC),
            to=datetime.fromtimestamp(report.end_ts, UTC),
            source=source,
            exact=report.exact,
            rows=[
                schemas.CostRow(
                    name=r.name,
                    source=Source(r.source),
                    cost_usd=r.cost_usd,
                    requests=r.requests,
                    input_tokens=r.input_tokens,
                    output_tokens=r.output_tokens,
                    other=r.other,
                )
                for r in rows[:limit]
            ],
            truncated=max(0, len(rows) - limit),
            totals=[
                schemas.CostSourceTotal(
                    source=Source(src),
                    cost_usd=c,
                    requests=int(n),
                    input_tokens=int(i),
                    output_tokens=int(o),
                )
                for src, (c, n, i, o) in sorted(totals.items())
            ],
        )

    def billing(self, days: int, now: float | None = None) -> schemas.Billing:
        now = time.time() if now is None else now
        since = datetime.fromtimestamp(_day_start(now) - days * DAY, UTC).date()
        providers: dict[str, list[schemas.BillingDay]] = {}
        for d in self.alert_state.billing_days(since):
            r = d.reconciliation
            models = [
                schemas.BillingModel(**m.to_json(), difference_usd=m.difference_usd)
                for m in (r.models if r else ())
            ]
            providers.setdefault(d.provider, []).append(
                schemas.BillingDay(
                    day=d.day.isoformat(),
                    status=d.status,
                    checked_at=d.checked_at,
                    reported_usd=r.reported_usd if r else None,
                    measured_usd=r.measured_usd if r else None,
                    difference_usd=r.difference_usd if r else None,
                    difference=r.difference if r else None,
                    drift=bool(r and r.drift),
                    threshold=r.threshold if r else None,
                    error=self.redact(d.error),
                    models=models,
                )
            )
        return schemas.Billing(
            providers=[
                schemas.BillingProvider(provider=p, days=rows)
                for p, rows in sorted(providers.items())
            ]
        )

    def status_summary(self, now: float | None = None) -> schemas.StatusSummary:
        now = time.time() if now is None else now
        statuses = self.statuses(now)
        targets = [
            schemas.StatusTarget(
                name=t.name,
                provider=t.provider,
                model=t.model,
                status=statuses[t.name].status,
                status_since=statuses[t.name].since,
            )
            for t in self._targets.values()
        ]
        return schemas.StatusSummary(
            generated_at=now,
            overall=worst(t.status for t in targets),
            targets=targets,
            confirmations=list(self.confirmations(now).values()),
        )

    def status_page(self, now: float | None = None) -> schemas.StatusPage:
        """90 days of daily availability and incidents per target. Public: names, models and
        statuses only, never a URL, key or error message."""
        now = time.time() if now is None else now
        first = _day_start(now) - (STATUS_PAGE_DAYS - 1) * DAY
        totals = self.store.totals(first, now, step_s=DAY, by="target")
        incidents = self._incidents(first, now)
        summary = self.status_summary(now)
        targets = []
        for t in summary.targets:
            days = []
            checks = outages = 0
            for i in range(STATUS_PAGE_DAYS):
                start = first + i * DAY
                tot = totals.get((start, t.name))
                total = tot.total if tot is not None else 0
                checks += total
                outages += tot.outage if tot is not None else 0
                days.append(
                    schemas.StatusDay(
                        day=_day(start),
                        availability=1 - tot.outage / total if tot is not None and total else None,
                        checks=total,
                        incidents=[
                            i
                            for i in incidents
                            if i.target == t.name and _overlaps(i, start, start + DAY, now)
                        ],
                    )
                )
            targets.append(
                schemas.StatusPageTarget(
                    **t.model_dump(),
                    uptime_90d=1 - outages / checks if checks else None,
                    days=days,
                )
            )
        return schemas.StatusPage(
            generated_at=now,
            title=self.config.web.title,
            overall=summary.overall,
            targets=targets,
            incidents=sorted(
                (i for i in incidents if i.target in self._targets),
                key=lambda i: -i.start,
            ),
            confirmations=summary.confirmations,
        )

    def _incidents(
        self, start: float, now: float, of: Callable[[str], bool] | None = None
    ) -> list[schemas.Incident]:
        """Firing/resolved history paired per alert: what a status page calls incidents; of
        every target, or of those ``of`` admits."""
        open_: dict[str, schemas.Incident] = {}
        done: list[schemas.Incident] = []
        for _, n in self.alert_state.events_between(start - 30 * DAY, now):
            if not says_health(n.rule) or n.target not in self._targets:
                continue  # an official status, a notice, a custom rule: not an incident
            if of is not None and not of(n.target):
                continue
            if n.status is AlertState.FIRING:
                if n.fingerprint not in open_:
                    open_[n.fingerprint] = schemas.Incident(
                        target=n.target,
                        provider=n.provider,
                        rule=n.rule,
                        severity=str(n.severity),
                        summary=_public_summary(n.rule),
                        start=n.starts_at.timestamp(),
                        end=None,
                    )
            elif n.status is AlertState.ACKNOWLEDGED:
                continue  # someone has it: the incident goes on until it resolves
            elif (incident := open_.pop(n.fingerprint, None)) is not None:
                ended = n.ends_at.timestamp() if n.ends_at else None
                done.append(incident.model_copy(update={"end": ended}))
        every = done + list(open_.values())
        return [i for i in every if (i.end is None or i.end >= start)]


def _confirmation(r: confirmation.Record) -> schemas.Confirmation:
    return schemas.Confirmation(
        provider=r.provider,
        incidents=len(r.decided),
        confirmed=len(r.confirmed),
        pending=sum(v.pending for v in r.verdicts),
        median_lag_s=r.median_lag_s,
        missed=[
            schemas.MissedIncident(start=v.incident.start, end=v.incident.end) for v in r.missed
        ],
        sentence=r.sentence(),
    )


_PUBLIC_SUMMARIES = {
    "availability": "Requests failing",
    "consecutive_unavailable": "Requests failing",
    "error_rate_critical": "Elevated error rate",
    "error_rate_warning": "Elevated error rate",
    "auth_failure": "Requests rejected",
    "ttft_p95_high": "Slow responses",
    "tps_low": "Slow token generation",
    "rate_limit_headroom": "Close to rate limits",
    "tokens_per_request_spike": "Unusual token usage",
    "provider_down": "Provider outage",
    "all_providers_down": "All providers failing",
}


def _public_summary(rule: str) -> str:
    """The status page says what users felt, not our thresholds or error messages."""
    return _PUBLIC_SUMMARIES.get(rule, "Degraded service")


def _overlaps(i: schemas.Incident, start: float, end: float, now: float) -> bool:
    return i.start < end and (i.end if i.end is not None else now) >= start


def recorded_targets(store: Store) -> list[Target]:
    """The targets the database has results of, as far as results tell (name, provider,
    model): what a status host shows when it is given no config, and no provider key."""
    targets = []
    for name, latest in sorted(store.latest_per_target().items()):
        preset = PRESETS.get(latest.provider)
        targets.append(
            Target(
                name=name,
                provider=latest.provider,
                protocol=preset.protocol if preset else latest.provider,
                model=latest.model,
                base_url="",
            )
        )
    return targets


def _info(t: Target) -> schemas.TargetInfo:
    return schemas.TargetInfo(
        name=t.name,
        provider=t.provider,
        model=t.model,
        checks=[*(str(c) for c in t.checks), *(p.name for p in t.probes)],
        interval_s=t.interval,
    )


def _alert(
    r: AlertRecord,
    silences: Iterable[Silence],
    acks: Mapping[str, Acknowledgement],
    now: float,
    scopes: Mapping[str, str],
) -> schemas.Alert:
    rule = r.lead_rule or r.rule  # an incident shows as the rule it paged with, as the engine
    # While it fires, the stored acknowledgement is the truth: the leader applies it (or its
    # removal) within a tick. Once resolved, the record keeps who had it.
    ack = acks.get(r.fingerprint)
    if ack is not None and (ack.episode != r.episode or r.state is not AlertState.FIRING):
        ack = None
    by, at = (ack.by, ack.at) if ack else (None, None)
    if r.state is not AlertState.FIRING:
        by, at = r.acknowledged_by, r.acknowledged_at
    return schemas.Alert(
        fingerprint=r.fingerprint,
        rule=rule,
        scope=alert_scope(r.rule, scopes, r.target),
        target=r.target,
        provider=r.provider,
        severity=str(r.severity),
        state=str(r.state) if r.state else "inactive",
        active_since=r.active_since,
        fired_at=r.fired_at,
        resolved_at=r.resolved_at,
        value=r.value,
        threshold=r.threshold,
        summary=r.summary,
        silenced=any(s.matches(rule, r.target, r.provider, now) for s in silences),
        acknowledged_by=by,
        acknowledged_at=at,
        acknowledged_comment=ack.comment if ack else None,
        escalation_step=r.escalation_step,
        notified=list(r.paged),
    )


def _schedule(new: schemas.NewSilence, duration: float) -> Schedule | None:
    """The windows a new silence asks for with ``cron``, or None for one window from now."""
    if new.cron is None:
        if new.timezone is not None:
            raise InvalidInput("timezone: only with cron")
        return None
    key = "cron"
    try:
        cron = parse_cron(new.cron)
        key = "timezone"
        return Schedule(cron, duration, parse_timezone(new.timezone or "UTC"))
    except ScheduleError as exc:
        raise InvalidInput(f"{key}: {exc}") from None


def _silence(s: Silence, now: float) -> schemas.Silence:
    schedule = s.schedule
    return schemas.Silence(
        id=s.id,
        target=s.target,
        provider=s.provider,
        rule=s.rule,
        starts_at=s.starts_at,
        ends_at=None if s.ends_at == NO_END else s.ends_at,
        comment=s.comment,
        created_by=s.created_by,
        active=s.active(now),
        editable=not s.id.startswith(CONFIG_SILENCE_PREFIX),
        schedule=(
            schemas.SilenceSchedule(
                cron=schedule.cron, duration_s=schedule.duration_s, timezone=schedule.timezone
            )
            if schedule is not None
            else None
        ),
        next_occurrences=s.next_occurrences(now, NEXT_WINDOWS),
    )


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def _day_start(ts: float) -> int:
    return int(ts // DAY * DAY)


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).date().isoformat()
