"""``llmpulse run``: the monitor daemon.

Data flows one way: scheduler → probe → result → (store, rule windows) → alert engine →
outbox → notifiers. Four times a second the loop flushes results to the store, ticks the engine
(grouping, repeats, silences) and saves changed alert state; every minute it rolls results up;
every hour it prunes. SIGINT/SIGTERM stop new checks, let in-flight ones finish and be written,
save alert state and give the outbox a moment to deliver: nothing measured is lost, and a
restart resumes with the alerts it had.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
from sqlalchemy.exc import SQLAlchemyError

from llmpulse import aio
from llmpulse.alerts.engine import AlertSettings, Engine
from llmpulse.alerts.model import Notification
from llmpulse.alerts.notifiers import Notifier
from llmpulse.alerts.outbox import Outbox
from llmpulse.alerts.silences import configured_silences
from llmpulse.alerts.state import AlertStateStore
from llmpulse.config import Config, Target
from llmpulse.monitor import metrics
from llmpulse.monitor.probelock import ProbeLock
from llmpulse.monitor.rules import RuleSpec, TargetWindow, resolve_rules
from llmpulse.monitor.scheduler import Scheduler
from llmpulse.monitor.statuspage import DEFAULT_SOURCES, StatusPoller
from llmpulse.probe import Prober
from llmpulse.result import CheckResult
from llmpulse.store import (
    DATABASE_ERRORS,
    local_path,
    open_store,
    redact_url,
    results_location,
)
from llmpulse.web.server import WebServer

log = logging.getLogger(__name__)
if TYPE_CHECKING:
    from llmpulse.telemetry.otlp import Telemetry


TICK_S = 0.25  # engine tick: group flushes and result writes; keeps detection tight
ROLLUP_EVERY_S = 60.0
PRUNE_EVERY_S = 3600.0
SILENCE_RELOAD_S = 5.0
BASELINE_EVERY_S = 600.0
DRAIN_OUTBOX_S = 5.0
# Results kept in memory while the database refuses writes (about an hour at 5,000 targets).
MAX_UNWRITTEN = 500_000


@contextlib.contextmanager
def _logged(what: str) -> Iterator[None]:
    """A failing background job is logged and retried on its next turn; the daemon goes on."""
    try:
        yield
    except Exception:
        log.exception("%s failed; will retry", what)


class Daemon:
    def __init__(
        self,
        config: Config,
        *,
        db_path: str | Path | None = None,
        status_only: bool = False,
    ) -> None:
        self.config = config
        self.location = results_location(db_path, config.storage)
        self.store = open_store(self.location)
        self.status_only = status_only
        self.state = AlertStateStore.open(self.location)
        self.outbox = Outbox.open(self.location)
        self.notifiers: list[Notifier] = config.notifiers
        self.rules: dict[str, dict[str, RuleSpec]] = {}
        self.windows: dict[str, TargetWindow] = {}
        by_provider: dict[str, list[str]] = {}
        for t in config.targets:
            provider_rules = config.providers.get(t.provider)
            self.rules[t.name] = resolve_rules(
                config.rules, provider_rules.rules if provider_rules else None, t.rules
            )
            horizon = max(r.window_s for r in self.rules[t.name].values())
            self.windows[t.name] = TargetWindow(horizon_s=horizon)
            by_provider.setdefault(t.provider, []).append(t.name)
        self.baselines: dict[str, float | None] = {}
        self.status = StatusPoller(self._status_sources(), config.monitor.status_interval)
        a = config.alerting
        self.engine = Engine(
            by_provider,
            self._notify,
            AlertSettings(
                repeat_interval_s=a.repeat_interval,
                resolve_after_s=a.resolve_after,
                group_wait_s=a.group_wait,
                flap_window_s=a.flap_window,
                flap_threshold=a.flap_threshold,
                flap_resolve_after_s=a.flap_resolve_after,
            ),
            self.state.load_records(),
            official_status=self._official_indicator,
        )
        self._pending: list[CheckResult] = []
        self.stop_event = asyncio.Event()
        self.web: WebServer | None = None
        self.telemetry: Telemetry | None = None
        if config.telemetry is not None:
            from llmpulse.telemetry.otlp import Telemetry  # the SDK loads only when configured

            self.telemetry = Telemetry(config.telemetry, config.targets)
        if config.web.enabled:
            # Binds now: a taken port fails `llmpulse run` before any probe goes out.
            self.web = WebServer(
                config, self.location, official=self.status.current, status_only=status_only
            )

    # --- wiring -------------------------------------------------------------------------

    def _status_sources(self) -> dict[str, tuple[str, str]]:
        if not self.config.monitor.status_pages:
            return {}
        sources = {}
        for provider in {t.provider for t in self.config.targets}:
            setting = self.config.providers.get(provider)
            page = setting.status_page if setting else None
            if page is False:
                continue
            if isinstance(page, str):
                sources[provider] = (
                    page,
                    "google" if page.endswith("incidents.json") else "statuspage",
                )
            elif provider in DEFAULT_SOURCES:
                sources[provider] = DEFAULT_SOURCES[provider]
        return sources

    def _official_indicator(self, provider: str) -> str | None:
        current = self.status.current(provider)
        return current.indicator if current is not None else None

    def _notify(self, notification: Notification) -> None:
        """Queue for delivery first (if this raises, the engine retries the page next tick);
        the history entry is best-effort."""
        if self.notifiers:
            self.outbox.enqueue(notification, [n.name for n in self.notifiers])
        with _logged("recording alert history"):
            self.state.add_event(notification, time.time())
        log.warning(
            "alert %s %s %s: %s",
            notification.status,
            notification.rule,
            notification.target,
            notification.summary,
        )

    def on_result(self, target: Target, result: CheckResult) -> None:
        self._pending.append(result)
        if self.web is not None:
            self.web.exporter.observe(result)
        window = self.windows[target.name]
        if self.telemetry is not None:
            self.telemetry.emit(result)
        window.add(result)
        now = time.time()
        evaluations = window.evaluate(
            self.rules[target.name], now, target.tps_floor, self.baselines.get(target.name)
        )
        self.engine.observe(target.name, target.provider, evaluations, now)

    def _load_silences(self, now: float) -> None:
        self.engine.silences = configured_silences(self.config.silences) + self.state.silences(now)

    def _prime_windows(self) -> None:
        """Refill rule windows from stored results, so a restart judges alerts on real data."""
        for target in self.config.targets:
            horizon = self.windows[target.name].horizon_s
            cutoff = time.time() - horizon
            recent = self.store.latest_results(limit=500, target=target.name)
            for result in reversed(recent):
                if result.timestamp.timestamp() >= cutoff:
                    self.windows[target.name].add(result)

    # --- the loop -----------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop_event.set)
        await asyncio.to_thread(self._prime_windows)
        self._load_silences(time.time())
        # While held, a gateway on this database follows these probes instead of repeating them.
        probing = ProbeLock(local_path(self.location))
        if not await asyncio.to_thread(probing.acquire):
            log.warning("another llmpulse run holds %s; probing anyway", probing.path)
        aio.quiet_gc()  # targets, windows and records built so far live as long as the daemon
        async with Prober() as prober, aiohttp.ClientSession() as session:
            scheduler = Scheduler(
                self.config.targets,
                prober.check,
                self.on_result,
                concurrency=self.config.monitor.concurrency,
                retry_interval=self.config.monitor.retry_interval,
                confirmations=self.config.monitor.confirmations,
            )
            self.scheduler = scheduler
            delivery = asyncio.ensure_future(
                self.outbox.run(self.notifiers, session, self.stop_event)
            )
            background = [
                asyncio.ensure_future(self.status.run(session, self.stop_event)),
                asyncio.ensure_future(self._official_changes()),
            ]
            if self.web is not None:
                background.append(asyncio.ensure_future(self.web.serve(self.stop_event)))
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
                    ticker, delivery, maintenance, *background, return_exceptions=True
                ):
                    if isinstance(outcome, Exception):
                        log.error("background task failed: %r", outcome)
                await self._shutdown()

    async def _ticker(self) -> None:
        """Engine tick and writes, four times a second; nothing here may stop the loop."""
        last_silences = 0.0
        while True:
            now = time.time()
            with _logged("tick"):
                if now - last_silences >= SILENCE_RELOAD_S:
                    self._load_silences(now)
                    last_silences = now
                self.engine.tick(now)
                await self._flush(now)
            if self.stop_event.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), TICK_S)

    async def _maintenance(self) -> None:
        """Rollups, baselines and pruning, apart from the ticker so they never delay a page."""
        m = self.config.monitor
        jobs = (
            ("rollup", ROLLUP_EVERY_S, self.store.rollup),
            ("baseline", BASELINE_EVERY_S, self._refresh_baselines),
            ("prune", PRUNE_EVERY_S,
             lambda now: self.store.prune(now, m.raw_retention, m.rollup_retention)),
        )  # fmt: skip
        last = dict.fromkeys((name for name, _, _ in jobs), 0.0)
        while True:
            for name, every, job in jobs:
                now = time.time()
                if now - last[name] >= every:
                    with _logged(name):
                        await asyncio.to_thread(job, now)
                    last[name] = now
            await asyncio.sleep(TICK_S * 4)

    async def _flush(self, now: float) -> None:
        """Write what was measured; if the database refuses, keep it and try again next tick."""
        results, self._pending = self._pending, []
        if results:
            try:
                await asyncio.to_thread(self.store.write_results, results)
            except (*DATABASE_ERRORS, OSError) as exc:
                self._pending[:0] = results
                if len(self._pending) > MAX_UNWRITTEN:
                    dropped = len(self._pending) - MAX_UNWRITTEN
                    del self._pending[:dropped]
                    log.error("results database unwritable: dropped the %d oldest results", dropped)
                log.warning("results not written yet (%d waiting): %s", len(self._pending), exc)
        changed = self.engine.take_dirty()
        if changed:
            try:
                await asyncio.to_thread(self.state.save_records, changed, now)
            except (SQLAlchemyError, OSError) as exc:
                self.engine.dirty.update(r.fingerprint for r in changed)
                log.warning("alert state not saved yet: %s", exc)

    def _refresh_baselines(self, now: float) -> None:
        for target in self.config.targets:
            self.baselines[target.name] = metrics.tokens_per_request_baseline(
                self.store, target.name, now=now
            )

    async def _official_changes(self) -> None:
        changes = self.status.changes()
        while True:
            _, new = await changes.get()
            with _logged("official status change"):
                self.engine.observe_official(
                    new.provider, new.indicator, new.description, time.time()
                )

    async def _shutdown(self) -> None:
        now = time.time()
        # In-flight checks have finished (scheduler drained); write everything they produced.
        self.engine.tick(now)
        await self._flush(now)
        await self.outbox.drain(DRAIN_OUTBOX_S)
        self.outbox.close()
        self.state.close()
        self.store.close()
        if self.telemetry is not None:
            # Off the loop: flushing waits on the collector (a few seconds at most).
            await asyncio.to_thread(self.telemetry.shutdown)


def run_daemon(config: Config, db_path: str | Path | None = None) -> None:
    log.info("results: %s", redact_url(str(results_location(db_path, config.storage))))
    aio.run(Daemon(config, db_path=db_path).run())
