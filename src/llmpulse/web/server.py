"""Serving the web app beside a daemon's probes (``serve_beside``), or on its own for
``llmpulse web``.

uvicorn runs as a task beside the scheduler. Its own signal handling is switched off: the
daemon owns SIGINT/SIGTERM and shuts the web listeners down after the last results are written.
Sockets are bound up front, so a taken port is a clear error before any probe starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn

from llmpulse import aio
from llmpulse.config import Config
from llmpulse.config.web import is_loopback
from llmpulse.serving import header_timeout_protocol
from llmpulse.store import queries
from llmpulse.telemetry.prometheus import (
    AlertSnapshot,
    MetricsExporter,
    SloSnapshot,
    Snapshot,
    SpendSeries,
    SpendSnapshot,
    TargetSnapshot,
)
from llmpulse.web.app import create_app
from llmpulse.web.view import CARD_WINDOW, DAY, IntervalSource, OfficialSource, TrafficSource, View

if TYPE_CHECKING:
    from llmpulse.monitor.daemon import Daemon

log = logging.getLogger(__name__)


class WebError(Exception):
    """The web server cannot start (address taken, unknown host); the message says which key."""


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the daemon's handlers stay in place


class WebServer:
    """The dashboard listener and, when configured, a status-page-only listener."""

    def __init__(
        self,
        config: Config,
        storage: str | Path,
        *,
        official: OfficialSource | None = None,
        checked_by_traffic: TrafficSource | None = None,
        check_interval: IntervalSource | None = None,
        status_only: bool = False,
    ) -> None:
        web = config.web
        self.view = View.open(config, storage, official, checked_by_traffic, check_interval)
        self.spend_series = SpendSeries()
        self.exporter = MetricsExporter(snapshot=self.snapshot)
        self.urls: list[str] = []
        self._servers: list[tuple[uvicorn.Server, socket.socket]] = []
        listeners = [(web.host, web.port, status_only, "web.listen")]
        if web.status_host is not None and web.status_port is not None:
            listeners.append((web.status_host, web.status_port, True, "web.status_listen"))
        try:
            for host, port, only_status, key in listeners:
                app = create_app(self.view, web, exporter=self.exporter, status_only=only_status)
                sock = bind(host, port, key)
                server = _EmbeddedServer(
                    uvicorn.Config(
                        app,
                        log_level="warning",
                        log_config=None,  # through our handlers, and so the redactor
                        access_log=False,
                        lifespan="off",
                        ws="none",
                        server_header=False,
                        timeout_graceful_shutdown=3,
                        http=header_timeout_protocol(),  # a slow client cannot hold a connection
                    )
                )
                self._servers.append((server, sock))
                self.urls.append(_url(sock, only_status))
        except BaseException:
            self.close()
            raise

    def snapshot(self) -> Snapshot:
        """The gauges of /metrics, read at scrape time."""
        records = self.view.alert_state.load_records()  # read once for both
        statuses = self.view.statuses(records=records)
        window = CARD_WINDOW
        aggregates = queries.aggregate_by_target(self.view.store, queries.WINDOWS[window])
        targets = self.view.known_targets()
        official = {}
        for target in targets:
            found = self.view.official(target.provider) if self.view.official else None
            if found is not None:
                official[target.provider] = found.indicator
        spend_since, spend = self._spend()
        return Snapshot(
            spend=spend,
            spend_since=spend_since,
            targets=[
                TargetSnapshot(
                    name=t.name,
                    provider=t.provider,
                    model=t.model,
                    status=statuses[t.name].status,
                    availability=aggregates[t.name].availability if t.name in aggregates else None,
                    correct_rate=aggregates[t.name].correct_rate if t.name in aggregates else None,
                    ratelimit_utilization=(
                        aggregates[t.name].ratelimit_utilization_latest
                        if t.name in aggregates
                        else None
                    ),
                )
                for t in targets
            ],
            official=official,
            availability_window=window,
            alerts=[
                AlertSnapshot(a.rule, a.scope, a.target, a.provider, a.severity, a.state)
                for a in self.view.live_alerts(records=records)
            ],
            slos=[
                SloSnapshot(s.name, s.kind, s.objective, s.sli, s.budget_remaining)
                for s in self.view.slos()
            ],
        )

    def _spend(self) -> tuple[float, list[SpendSnapshot]]:
        """Spend by key and by team since midnight UTC (bounded per source: ``SpendSeries``)."""
        now = time.time()
        since = now // DAY * DAY
        spend: list[SpendSnapshot] = []
        for dimension in ("key", "team"):
            rows = self.view.store.costs(dimension, since, now)
            spend += self.spend_series.bounded(
                dimension,
                ((r.name, r.source, r.cost_usd, r.input_tokens, r.output_tokens) for r in rows),
                since,
            )
        return since, spend

    async def serve(self, stop_event: asyncio.Event) -> None:
        """Serve until ``stop_event`` is set, then finish open requests briefly and close."""
        tasks = [asyncio.ensure_future(s.serve(sockets=[sock])) for s, sock in self._servers]
        try:
            await stop_event.wait()
        finally:
            for server, _ in self._servers:
                server.should_exit = True
            for outcome in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(outcome, Exception):
                    log.error("web server failed: %r", outcome)
            self.close()

    def close(self) -> None:
        for _, sock in self._servers:
            sock.close()
        self.view.close()


def serve_beside(daemon: Daemon, *, status_only: bool = False) -> WebServer | None:
    """The web server of a daemon (unless ``web.enabled`` is off), fed its results for
    /metrics and served beside its probes. Binds now: a taken port fails before any probe."""
    if not daemon.config.web.enabled:
        return None
    web = WebServer(
        daemon.config,
        daemon.location,
        official=daemon.status.current,
        checked_by_traffic=daemon.checked_by_traffic,
        check_interval=daemon.check_interval,
        status_only=status_only,
    )
    daemon.attach(sink=web.exporter.observe, service=web.serve)
    return web


def bind(host: str, port: int, key: str) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise WebError(f"{key}: cannot resolve {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        why = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise WebError(f"{key}: cannot listen on {host}:{port}: {why}") from None
    sock.setblocking(False)
    return sock


def _url(sock: socket.socket, status_only: bool) -> str:
    host, port = sock.getsockname()[:2]
    shown = host if is_loopback(host) or host not in ("0.0.0.0", "::") else socket.gethostname()
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/" + ("status" if status_only else "")


def serve_forever(
    config: Config,
    storage: str | Path,
    *,
    status_only: bool = False,
    announce: Callable[[list[str]], None] = lambda urls: None,
) -> None:
    """``llmpulse web``: serve an existing database without probing, until SIGINT/SIGTERM."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        server = WebServer(config, storage, status_only=status_only)
        announce(server.urls)
        await server.serve(stop)

    aio.run(main())
