"""``llmpulse run`` and ``llmpulse agent``: the monitor daemon.

Data flows one way: scheduler → probe → result → store → rule windows → alert engine → outbox
→ notifiers. Every daemon probes its targets and writes what it measured, tagged with its agent
name and region, through ``store.writer.Recording``: each result is stored (in the store, else
in a local spool) within 250 ms of its check ending, so neither a kill nor a database that is
away loses it. Exactly one daemon at a time leads (``monitor.leader``): it reads every
agent's results (and the gateway's traffic) back from the store as they are committed
(``Store.tail``), evaluates the rules over them (``monitor.alerting``), ticks the alert engine,
saves alert state, delivers notifications and keeps the store (rollups every minute, pruning
every hour). A daemon that takes over resumes from the alert state the last leader saved; with
SQLite there is normally one daemon, leading from its start.

Four times a second the leader reads what was committed and ticks the engine (grouping,
repeats, silences). SIGINT/SIGTERM stop new checks, let in-flight ones finish and be written,
save alert state and give the outbox a moment to deliver before the lead is released: nothing
measured is lost, and a restart resumes with the alerts it had. A database that is away or
refuses writes is said once in the log when it starts and once when it is over.

The leader also pauses its probes of a target that another writer found rate-limited (its
results' Retry-After, ``Scheduler.note``), since it reads them anyway; other agents pause on
their own results only, rather than each reading every result back. Successful traffic (the
gateway's, ``instrument()``'s) stands in for a target's inference and stream probes: the leader
learns of it from what it reads back, other agents from one grouped query of the last seconds'
traffic every ``TRAFFIC_EVERY_S``.

With ``monitor.probe_budget_usd`` the probes' intervals stretch to fit the month's budget
(``probe.budget``): judged at start and every ``PROBE_BUDGET_EVERY_S`` against the month's probe
spend so far, as stored, each agent paying for probes taking an equal share of what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
from sqlalchemy.exc import SQLAlchemyError

from llmpulse import aio
from llmpulse.alerts.confirmation import PostedIncident
from llmpulse.alerts.model import Notification
from llmpulse.alerts.notifiers import Notifier, build_notifiers
from llmpulse.alerts.outbox import Outbox
from llmpulse.alerts.state import AlertStateStore
from llmpulse.config import Config
from llmpulse.config.storage import is_postgres, results_location
from llmpulse.gateway.drill import scheduled_drills
from llmpulse.monitor.alerting import Alerting
from llmpulse.monitor.billing import Reconciler
from llmpulse.monitor.leader import leadership_for
from llmpulse.probe import Prober, budget
from llmpulse.probe.lock import ProbeLock
from llmpulse.probe.official import (
    DEFAULT_SOURCES,
    SourceKind,
    StatusPoller,
    guess_format,
    provider_scope,
    source_urls,
)
from llmpulse.probe.scheduler import Check, Scheduler, configured_interval
from llmpulse.result import CheckResult, Source
from llmpulse.store import ResultFilter, database_errors, local_path
from llmpulse.store.writer import Trouble, open_recording
from llmpulse.target import Target

if TYPE_CHECKING:
    from llmpulse.telemetry.otlp import Telemetry

log = logging.getLogger(__name__)

TICK_S = 0.25  # read results back, tick the engine: keeps detection tight
ROLLUP_EVERY_S = 60.0
PRUNE_EVERY_S = 3600.0
SILENCE_RELOAD_S = 5.0
BASELINE_EVERY_S = 600.0
SPEND_EVERY_S = 60.0  # cost_spike: an hour's spend against 7 days, judged every minute
BUDGETS_EVERY_S = 60.0  # budget alerts and forecasts per key and team, judged every minute
FAILOVER_EVERY_S = 30.0  # failover readiness per gateway model group
DRAIN_OUTBOX_S = 5.0
SLO_SAVE_S = 5.0  # SLO minutes saved this often (a new leader recounts the last minutes anyway)
BILLING_EVERY_S = 60.0  # due billing days looked for this often (each is read once)
TRAFFIC_EVERY_S = 5.0  # a non-leader's look at recent traffic: a probe is skipped on evidence
PROBE_BUDGET_EVERY_S = 600.0  # the month's probe spend read back, the intervals fitted again


def _database_down(exc: Exception) -> bool:
    """A database that is away, or refuses: expected, unlike a bug."""
    return isinstance(exc, database_errors(SQLAlchemyError, OSError))


@contextlib.contextmanager
def _logged(what: str, trouble: Trouble | None = None) -> Iterator[None]:
    """A failing background job is logged and retried on its next turn; the daemon goes on.

    With a ``trouble``, a database error is expected: said once per change by it, without a
    traceback, instead of on every turn. Anything else is a bug, logged in full."""
    try:
        yield
    except Exception as exc:
        if trouble is not None and _database_down(exc):
            trouble.failed(what, exc)
        else:
            log.exception("%s failed; will retry", what)
    else:
        if trouble is not None:
            trouble.succeeded(what)


class Daemon:
    def __init__(
        self,
        config: Config,
        *,
        db_path: str | Path | None = None,
        agent: str | None = None,
        region: str | None = None,
    ) -> None:
        self.config = config
        # Before any database is opened: a channel the config names wrongly is a config error.
        where = f"{config.source}: " if config.source else ""
        self.notifiers: list[Notifier] = build_notifiers(config.notifiers, where)
        self.location = results_location(db_path, config.storage)
        self.agent = agent or config.monitor.agent or socket.gethostname()
        self.region = region or config.monitor.region
        # Results are stored within 250 ms (the store, else the local spool): see store.writer.
        self.recording = open_recording(self.location, self.agent)
        self.store = self.recording.writer.store
        self.state = AlertStateStore.open(self.location)
        self.outbox = Outbox.open(self.location, redactor=config.redactor)
        # Reading results back, alert state, silences and baselines: one database (or the files
        # beside SQLite results), so one trouble, named by the job that met it.
        self.unreadable = Trouble(
            log,
            "database unavailable to the alert leader (%s: %s); alerts wait for it",
            "database available to the alert leader again",
        )
        self.leadership = leadership_for(self.location, local_path(self.location), self.agent)
        self.alerting: Alerting | None = None  # while this daemon leads
        self._cursor = 0  # the store's results read so far (Store.tail)
        self._slo_saved_at = 0.0
        self._backfill: asyncio.Future[None] | None = None
        self._term: asyncio.Event | None = None  # set when this daemon's lead ends
        self._delivery: asyncio.Future[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        sources = self._status_sources()
        self.status = StatusPoller(
            {p: (urls[0], kind) for p, (urls, kind) in sources.items()},
            config.monitor.status_interval,
            also={p: urls[1:] for p, (urls, _) in sources.items() if len(urls) > 1},
            scopes={
                p: provider_scope(t for t in config.targets if t.provider == p)
                for p in {t.provider for t in config.targets}
            },
        )
        # Providers' own bills against what was measured, daily, while leading (monitor.billing).
        # Store.costs and Store.totals read the daily rollups: a day older than they are kept
        # is not compared.
        self.reconciler = (
            Reconciler(
                config.billing, self.store, self.state, config.targets, config.redactor,
                retention_s=config.monitor.rollup_retention,
            )
            if config.billing
            else None
        )  # fmt: skip
        self.stop_event = asyncio.Event()
        self.telemetry: Telemetry | None = None
        if config.telemetry is not None:
            from llmpulse.telemetry.otlp import Telemetry  # the SDK loads only when configured

            self.telemetry = Telemetry(config.telemetry, config.targets)
        # What composes the daemon with more (the web server, an exporter): fed every result,
        # run beside the scheduler until the stop event (see ``attach``).
        self._sinks: list[Callable[[CheckResult], None]] = []
        self._services: list[Callable[[asyncio.Event], Awaitable[None]]] = []
        self.scheduler: Scheduler | None = None
        self._fitted: dict[tuple[str, str], float] | None = None  # the budget's last fit
        # The month's probe spend as last read (its month's start, USD): kept while the
        # database is away.
        self._probe_spent = (0.0, 0.0)
        self._probe_agents = 1  # how many share the budget, as last read

    def attach(
        self,
        *,
        sink: Callable[[CheckResult], None] | None = None,
        service: Callable[[asyncio.Event], Awaitable[None]] | None = None,
    ) -> None:
        """Feed ``sink`` every result, and run ``service(stop_event)`` beside the probes."""
        if sink is not None:
            self._sinks.append(sink)
        if service is not None:
            self._services.append(service)

    # --- wiring -------------------------------------------------------------------------

    def _status_sources(self) -> dict[str, tuple[tuple[str, ...], SourceKind]]:
        """Each provider's status page: its URLs (several for a feed per region) and format."""
        if not self.config.monitor.status_pages:
            return {}
        sources: dict[str, tuple[tuple[str, ...], SourceKind]] = {}
        for provider in dict.fromkeys(t.provider for t in self.config.targets):
            setting = self.config.providers.get(provider)
            page = setting.status_page if setting else None
            if page is False:
                continue
            if isinstance(page, str):
                kind = setting.status_format if setting and setting.status_format else None
                url, kind = page, kind or guess_format(page)
            elif provider in DEFAULT_SOURCES:
                url, kind = DEFAULT_SOURCES[provider]
            else:
                continue
            targets = [t for t in self.config.targets if t.provider == provider]
            urls = source_urls(url, targets)
            if not urls:
                log.warning("no status page for %s: none of its endpoints names a region", provider)
                continue
            sources[provider] = (urls, kind)
        return sources

    def _official_indicator(self, provider: str) -> str | None:
        current = self.status.current(provider)
        return current.indicator if current is not None else None

    def _in_maintenance(self, provider: str) -> bool:
        current = self.status.current(provider)
        return current is not None and current.in_maintenance

    def _notify(
        self, notification: Notification, receivers: Sequence[str], *, resend: bool = False
    ) -> None:
        """Queue for delivery first (if this raises, the engine retries the page next tick);
        the history entry is best-effort."""
        if receivers:
            self.outbox.enqueue(notification, receivers)
        if resend:
            return
        with _logged("recording alert history"):
            self.state.add_event(notification, time.time())
        log.warning(
            "alert %s %s %s: %s",
            notification.status,
            notification.rule,
            notification.target,
            notification.summary,
        )

    @functools.cached_property
    def probes(self) -> list[budget.PlannedProbe]:
        """The probes as scheduled, with their price per run: what the budget stretches."""
        return budget.scheduled(self.config.targets)

    def check_interval(self, target: Target, check: Check) -> float:
        """How often ``check`` of ``target`` runs now: as configured, or as the probe budget
        stretched it."""
        if self.scheduler is None:
            return configured_interval(target, check)
        return self.scheduler.interval(target, check)

    def checked_by_traffic(self, name: str) -> Mapping[str, float]:
        """When each check of target ``name`` was last skipped because traffic checked it."""
        return self.scheduler.checked_by_traffic(name) if self.scheduler is not None else {}

    def on_result(self, target: Target, result: CheckResult) -> None:
        result.agent, result.region = self.agent, self.region
        self.recording.add(result)
        for sink in self._sinks:
            sink(result)
        if self.telemetry is not None:
            self.telemetry.emit(result)

    # --- the loop -----------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop_event.set)
        # While held, a gateway on this database follows these probes instead of repeating them.
        probing = ProbeLock(local_path(self.location))
        # Agents of a shared database may run side by side on one host: only the first holds it.
        shared = is_postgres(self.location)
        if not await asyncio.to_thread(probing.acquire, 0.0 if shared else 2.0) and not shared:
            log.warning("another llmpulse run holds %s; probing anyway", probing.path)
        aio.quiet_gc()  # targets and records built so far live as long as the daemon
        self.recording.start()  # replays what a predecessor left in the spool, at once
        # The lead is given up only after shutdown has saved and delivered what it must.
        release = asyncio.Event()
        leading = asyncio.ensure_future(self.leadership.run(release))
        prober = Prober(redactor=self.config.redactor)
        async with prober, aiohttp.ClientSession() as session:
            self._session = session
            scheduler = Scheduler(
                self.config.targets,
                prober.check,
                self.on_result,
                concurrency=self.config.monitor.concurrency,
                retry_interval=self.config.monitor.retry_interval,
                confirmations=self.config.monitor.confirmations,
                region=self.region,
            )
            self.scheduler = scheduler
            if self.config.monitor.probe_budget_usd is not None:
                await self._fit_budget(scheduler)  # the first turns already fit
            background = [
                asyncio.ensure_future(self.status.run(session, self.stop_event)),
                asyncio.ensure_future(self._official_changes()),
                asyncio.ensure_future(self._record_official()),
                asyncio.ensure_future(self._reconcile(session)),
                asyncio.ensure_future(self._traffic(scheduler)),
                asyncio.ensure_future(self._probe_budget(scheduler)),
                asyncio.ensure_future(self._drills()),
            ]
            background += [asyncio.ensure_future(s(self.stop_event)) for s in self._services]
            ticker = asyncio.ensure_future(self._ticker())
            maintenance = asyncio.ensure_future(self._maintenance())
            drain = max((t.timeout for t in self.config.targets), default=20.0) + 5
            try:
                await scheduler.run(self.stop_event, drain_timeout=drain)
            finally:
                probing.release()  # probes stopped: a gateway probes its deployments again
                self.stop_event.set()
                for task in (*background, maintenance):
                    task.cancel()
                # Whatever happened to these, shutdown below still writes and delivers.
                for outcome in await asyncio.gather(
                    ticker, maintenance, *background, return_exceptions=True
                ):
                    if isinstance(outcome, Exception):
                        log.error("background task failed: %r", outcome)
                try:
                    await self._shutdown()
                finally:
                    release.set()
                    await leading

    async def _ticker(self) -> None:
        """Reads and engine ticks, four times a second; nothing here may stop the loop."""
        last_silences = 0.0
        while True:
            now = time.time()
            with _logged("tick", self.unreadable):
                await self._follow_lead(now)
                if self.alerting is not None:
                    if now - last_silences >= SILENCE_RELOAD_S:
                        self.alerting.load_silences(now)
                        last_silences = now
                    await self._evaluate(now)
            if self.stop_event.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), TICK_S)

    async def _follow_lead(self, now: float) -> None:
        """Start or stop the leader's work when the election says so."""
        leader = self.leadership.is_leader and not self.stop_event.is_set()
        if leader and self.alerting is None:
            alerting = await asyncio.to_thread(
                functools.partial(
                    Alerting,
                    notifiers={n.name: n.resend_interval_s for n in self.notifiers},
                    in_maintenance=self._in_maintenance,
                ),
                self.config,
                self.store,
                self.state,
                self._notify,
                self._official_indicator,
            )
            # Rule windows refilled from what every agent stored, so a new leader (or a
            # restart) judges on real data; then follow what is committed after.
            recent, self._cursor = await asyncio.to_thread(
                self.store.tail_start, alerting.replay_start(now)
            )
            alerting.feed(recent, now)
            self._note_cooldowns(recent)
            if alerting.backfill:
                self._backfill = asyncio.ensure_future(self._count_backfill(alerting, self._cursor))
            alerting.load_silences(now)
            self.alerting = alerting  # its baselines come from the maintenance job, at once
            self._term = asyncio.Event()
            assert self._session is not None
            self._delivery = asyncio.ensure_future(
                self.outbox.run(self.notifiers, self._session, self._term)
            )
        elif not leader and self.alerting is not None and not self.stop_event.is_set():
            # Another daemon leads now: it owns the alert state and delivery from here.
            self.alerting = None
            await self._end_term()

    async def _count_backfill(self, alerting: Alerting, cursor: int) -> None:
        """A new SLO's minutes from the raw results stored before this term (off the loop);
        added only if this term still leads."""
        with _logged("counting SLO minutes from stored results", self.unreadable):
            found = await asyncio.to_thread(
                alerting.count_backfill,
                cursor,
                lambda: self.stop_event.is_set() or self.alerting is not alerting,
            )
            if self.alerting is alerting:
                alerting.merge_backfill(found)

    async def _end_term(self) -> None:
        if self._term is not None:
            self._term.set()
        if self._delivery is not None:
            with _logged("notification delivery"):
                await self._delivery
        self._term = self._delivery = None

    async def _evaluate(self, now: float) -> None:
        """Read what every agent committed since the last tick, judge it, save what changed."""
        alerting = self.alerting
        assert alerting is not None
        try:
            results, self._cursor = await asyncio.to_thread(self.store.tail, self._cursor)
        except database_errors(OSError) as exc:
            self.unreadable.failed("reading results", exc)
            results = []
        else:
            self.unreadable.succeeded("reading results")
        alerting.feed(results, now)
        self._note_cooldowns(results)
        await self._acknowledgements(alerting, now)
        changed = alerting.tick(now)
        if changed:
            try:
                await asyncio.to_thread(self.state.save_records, changed, now)
            except (SQLAlchemyError, OSError) as exc:
                alerting.unsaved(changed)
                log.warning("alert state not saved yet: %s", exc)
        if now - self._slo_saved_at >= SLO_SAVE_S or self.stop_event.is_set():
            await self._save_slo_minutes(alerting)
            self._slo_saved_at = now

    async def _save_slo_minutes(self, alerting: Alerting) -> None:
        rows = alerting.slo_minutes()
        if rows:
            try:
                await asyncio.to_thread(self.state.save_slo_minutes, rows)
            except (SQLAlchemyError, OSError) as exc:
                alerting.slos.unsaved(rows)
                self.unreadable.failed("saving SLO minutes", exc)
            else:
                self.unreadable.succeeded("saving SLO minutes")

    async def _acknowledgements(self, alerting: Alerting, now: float) -> None:
        """Read in a thread, applied here on the loop (the engine is single-threaded); a state
        database that is away delays acknowledgements, never the pages."""
        try:
            acks = await asyncio.to_thread(self.state.acknowledgements)
        except (SQLAlchemyError, OSError) as exc:
            self.unreadable.failed("reading acknowledgements", exc)
            return
        self.unreadable.succeeded("reading acknowledgements")
        stale = alerting.apply_acknowledgements(acks, now)
        if stale:
            with _logged("forgetting acknowledgements of resolved alerts", self.unreadable):
                await asyncio.to_thread(self.state.forget_acknowledgements, stale)

    def _note_cooldowns(self, results: list[CheckResult]) -> None:
        """A 429 met by another writer (an agent's probe, a gateway's traffic on a deployment
        this daemon also probes) pauses this daemon's probes of that target too; successful
        traffic stands in for its inference and stream probes."""
        if self.scheduler is None:
            return
        for result in results:
            self.scheduler.note(result)

    async def _traffic(self, scheduler: Scheduler) -> None:
        """While another daemon leads, the targets' recent successful traffic, read every
        ``TRAFFIC_EVERY_S``; the leader reads every result anyway."""
        since = time.time() - max((t.interval for t in self.config.targets), default=0.0)
        while True:
            await asyncio.sleep(TRAFFIC_EVERY_S)
            now = time.time()
            if self.alerting is None:
                with _logged("reading recent traffic", self.unreadable):
                    seen = await asyncio.to_thread(self.recent_traffic, since, now)
                    for name, at in seen.items():
                        scheduler.traffic_seen(name, at)
            since = now

    def recent_traffic(self, since: float, now: float) -> dict[str, float]:
        """When each target's successful traffic of its own model from this daemon's region
        (``Scheduler.note``) stored since ``since`` surely was: grouped in the database, one
        row per target and model however busy the gateway is."""
        seen: dict[str, float] = {}
        targets = {t.name: t for t in self.config.targets}
        models = {m for t in targets.values() for m in (t.model, t.deployment) if m}
        for model in sorted(models):
            # Traffic from this daemon's region only (Scheduler.note): "" is none.
            where = ResultFilter(source=Source.TRAFFIC.value, model=model, region=self.region or "")
            found = self.store.summarize_raw(since, now + 1, group_by="target", where=where)
            for name, s in found.items():
                target = targets.get(name)
                if not s.ok or target is None or model not in (target.model, target.deployment):
                    continue
                # The newest result is a success only if all were; else the range's start is
                # when one surely was.
                at = s.last_ts if s.ok == s.total and s.last_ts else since
                seen[name] = max(at, seen.get(name, at))
        return seen

    async def _probe_budget(self, scheduler: Scheduler) -> None:
        while self.config.monitor.probe_budget_usd is not None:
            await asyncio.sleep(PROBE_BUDGET_EVERY_S)
            await self._fit_budget(scheduler)

    async def _fit_budget(self, scheduler: Scheduler) -> None:
        """Stretch the probes' intervals to what is left of the month's budget; said in the
        log once per change."""
        limit = self.config.monitor.probe_budget_usd
        assert limit is not None
        now = time.time()
        start, _ = budget.month_bounds(now)
        with _logged("reading the month's probe spend", self.unreadable):
            rows = await asyncio.to_thread(
                self.store.costs, "provider", start, now, source=Source.PROBE.value
            )
            self._probe_spent = (start, sum(r.cost_usd for r in rows))
            self._probe_agents = await asyncio.to_thread(self.paying_agents, now)
        spent = self._probe_spent[1] if self._probe_spent[0] == start else 0.0
        # Every agent reads every agent's spend: each takes its share of what is left, or
        # together they would spend it as many times as there are agents.
        share = budget.allowance(limit, spent, now) / self._probe_agents
        fit = budget.fit(self.probes, share)
        scheduler.stretch(fit.intervals)
        if fit.intervals != self._fitted:
            log.warning("%s", budget.describe(fit, limit, spent, now, self._probe_agents))
            self._fitted = fit.intervals

    def paying_agents(self, now: float) -> int:
        """How many agents share the probe budget: those whose probes spent something in the
        last ``budget.MAX_STRETCHED_S`` (a stretched probe runs at least that often), this one
        included."""
        found = self.store.summarize_raw(
            now - budget.MAX_STRETCHED_S,
            now + 1,
            group_by="agent",
            where=ResultFilter(source=Source.PROBE.value),
        )
        return len({name for name, s in found.items() if s.cost_usd > 0} | {self.agent})

    async def _maintenance(self) -> None:
        """The leader's rollups, baselines and pruning, apart from the ticker so they never
        delay a page."""
        m = self.config.monitor
        unwritable = self.recording.writer.unwritable
        jobs = (
            ("rollup", ROLLUP_EVERY_S,
             lambda now: self.store.rollup(now, spend_top_n=m.spend_top_n)),
            ("prune", PRUNE_EVERY_S,
             lambda now: self.store.prune(
                 now, m.raw_retention, m.rollup_retention, spend_top_n=m.spend_top_n)),
        )  # fmt: skip
        last = dict.fromkeys((name for name, _, _ in jobs), 0.0)
        while True:
            alerting = self.alerting
            if alerting is not None:
                # Baselines belong to this term's Alerting: a new lead refreshes them at once.
                if time.time() - alerting.baselines_at >= BASELINE_EVERY_S:
                    with _logged("baseline", self.unreadable):
                        await asyncio.to_thread(alerting.refresh_baselines, time.time())
                if time.time() - alerting.slo_pruned_at >= PRUNE_EVERY_S:
                    with _logged("pruning SLO minutes", self.unreadable):
                        now = time.time()
                        await asyncio.to_thread(
                            self.state.prune_slo_minutes, alerting.slo_retention(now)
                        )
                        alerting.slo_pruned_at = now
                if time.time() - alerting.spend_at >= SPEND_EVERY_S:
                    with _logged("spend", self.unreadable):
                        now = time.time()
                        alerting.observe_spend(await asyncio.to_thread(alerting.spend, now), now)
                if time.time() - alerting.failover_at >= FAILOVER_EVERY_S:
                    with _logged("failover readiness", self.unreadable):
                        now = time.time()
                        groups = await asyncio.to_thread(alerting.failover_readiness, now)
                        alerting.observe_failover(groups, now)
                        alerting.retire_drill_paths(now)
                if time.time() - alerting.budgets_at >= BUDGETS_EVERY_S:
                    with _logged("budgets", self.unreadable):
                        now = time.time()
                        judged = await asyncio.to_thread(alerting.budget_spend, now)
                        alerting.observe_budgets(judged, now)
                for name, every, job in jobs:
                    now = time.time()
                    if now - last[name] >= every:
                        with _logged(name, unwritable):
                            await asyncio.to_thread(job, now)
                        last[name] = now
            await asyncio.sleep(TICK_S * 4)

    async def _reconcile(self, session: aiohttp.ClientSession) -> None:
        """The reconciliation job, apart from the ticker and maintenance: a provider's slow
        report never delays a page or a rollup."""
        while self.reconciler is not None:
            alerting = self.alerting
            if alerting is None:  # not leading (yet): look again soon
                await asyncio.sleep(TICK_S * 4)
                continue
            with _logged("billing reconciliation", self.unreadable):
                now = time.time()
                verdicts = await self.reconciler.run(session, now)
                if self.alerting is alerting:  # still this term's engine
                    alerting.observe_billing(verdicts, now)
            await asyncio.sleep(BILLING_EVERY_S)

    async def _drills(self) -> None:
        """Scheduled failover drills (``gateway.drills``), judged by the alert leader. Every
        agent tries each occurrence, and the one that claims it in the database drills it (not
        the leader only: a lead changing hands, or not yet taken at start, would lose it)."""
        gateway = self.config.gateway
        settings = gateway.settings.drills if gateway is not None else None
        if gateway is None or settings is None:
            return
        await scheduled_drills(
            gateway, settings, self.stop_event, record=self._record_drill,
            store=self.store, redactor=self.config.redactor,
        )  # fmt: skip

    def _record_drill(self, result: CheckResult) -> None:
        result.agent, result.region = self.agent, self.region
        self.recording.add(result)
        for sink in self._sinks:
            sink(result)

    async def _official_changes(self) -> None:
        changes = self.status.changes()
        while True:
            _, new = await changes.get()
            if self.alerting is not None:
                # The page's own words are outside text: they reach notifications redacted.
                description = self.config.redactor.clipped(new.description)
                with _logged("official status change"):
                    self.alerting.observe_official(new.provider, new.indicator, description)

    async def _record_official(self) -> None:
        """Store the incidents the status pages post, as the poller saw them open, for the
        acknowledgement record (``alerts.confirmation``): the pages keep only open ones."""
        if not self.status.sources:
            return
        redact = self.config.redactor
        while True:
            await asyncio.sleep(self.status.interval_s)
            now = time.time()
            posted = [
                PostedIncident(
                    provider,
                    redact(i.id),
                    redact(i.name),
                    i.created_at.timestamp() if i.created_at else now,
                    tuple(redact(c) for c in i.components),
                    redact(i.url),
                )
                for provider in self.status.sources
                if (status := self.status.current(provider)) is not None
                for i in status.open_incidents
            ]
            with _logged("recording official incidents", self.unreadable):
                await asyncio.to_thread(self.state.save_official_incidents, posted, now)
                await asyncio.to_thread(self.state.prune_official_incidents, now)

    async def _shutdown(self) -> None:
        now = time.time()
        if self._backfill is not None:
            await asyncio.gather(self._backfill, return_exceptions=True)  # its queries end first
        # In-flight checks have finished (scheduler drained); write everything they produced,
        # and as the leader judge it and save the alert state.
        await asyncio.to_thread(self.recording.close)
        if self.alerting is not None:
            with _logged("final evaluation"):
                await self._evaluate(now)
            await self._end_term()
            await self.outbox.drain(DRAIN_OUTBOX_S)
        self.outbox.close()
        self.state.close()
        self.store.close()
        if self.telemetry is not None:
            # Off the loop: flushing waits on the collector (a few seconds at most).
            await asyncio.to_thread(self.telemetry.shutdown)
