"""``llmpulse gateway`` as a process: where it listens, its traffic written through the one
writer, its deployments probed (``health``), scheduled failover drills (``gateway.drills``),
OTLP export when configured, its own Prometheus ``/metrics`` (on the API's port, or a socket of
its own: ``gateway.metrics_listen``); served until SIGTERM, then in-flight requests finish
(``gateway.shutdown_grace``) and what was recorded is flushed. With ``--num_workers N`` each of
the N processes (``gateway.workers``) is one of these, told its ``WorkerRole``: only worker 0
probes and drills, and worker i serves its own ``/metrics`` on the metrics port + i only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import signal
import socket
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn

from llmpulse import aio
from llmpulse.config import Config, ConfigError
from llmpulse.config.gateway import GatewayConfig
from llmpulse.config.storage import redact_url
from llmpulse.config.web import is_loopback, split_address
from llmpulse.gateway.app import create_app, master_key_guard
from llmpulse.gateway.breaker_log import BreakerLog
from llmpulse.gateway.drill import scheduled_drills
from llmpulse.gateway.metrics import GatewayMetrics, create_metrics_app, metrics_endpoint
from llmpulse.gateway.selector import Selector
from llmpulse.result import CheckResult
from llmpulse.serving import Server, SideServer, header_timeout_protocol
from llmpulse.store.writer import open_recording

if TYPE_CHECKING:
    from llmpulse.telemetry.otlp import Telemetry

log = logging.getLogger(__name__)


def served(config: Config) -> GatewayConfig:
    """The config's gateway, or ConfigError saying why there is nothing to serve."""
    gateway = config.gateway
    if gateway is None or not gateway.deployments:
        where = f"{config.source}: " if config.source else ""
        if gateway is not None and gateway.skipped:
            raise ConfigError(where + gateway.nothing_to_serve)
        raise ConfigError("no model_list in the config: the gateway has nothing to serve")
    return gateway


def listen_address(
    gateway: GatewayConfig,
    *,
    listen: str | None = None,
    host: str | None = None,
    port: int | None = None,
) -> tuple[str, int]:
    """``gateway.listen``, unless ``--listen`` or LiteLLM's ``--host``/``--port`` say otherwise.
    Off loopback the gateway needs keys: ConfigError otherwise, naming the option."""
    bind_host, bind_port = gateway.settings.host, gateway.settings.port
    option = "gateway.listen"
    if listen is not None:
        if host is not None or port is not None:
            raise ConfigError("--listen: pass either --listen or --host/--port, not both")
        try:
            bind_host, bind_port = split_address(listen)
        except ValueError:
            raise ConfigError(f"--listen {listen!r}: expected HOST:PORT") from None
        option = f"--listen {listen}"
    if host is not None:
        bind_host, option = host.strip("[]"), f"--host {host}"
    if port is not None:
        bind_port = port
    if not any(k.digest for k in gateway.settings.keys) and not is_loopback(bind_host):
        raise ConfigError(
            f"{option}: not a loopback address, so the gateway needs keys: set "
            "general_settings.master_key or gateway.keys"
        )
    return bind_host, bind_port


@dataclasses.dataclass(frozen=True)
class WorkerRole:
    """Worker ``index`` (from 0) of those serving one port (``--num_workers``); with
    ``any_port``, that port was asked as 0, so its /metrics takes any free port as one
    process's would."""

    index: int
    any_port: bool = False

    @property
    def probes(self) -> bool:
        """Only the first worker probes (or follows a daemon's probes): the others learn its
        verdicts through Redis while it answers, else from the results store."""
        return self.index == 0


def serving_line(
    gateway: GatewayConfig, address: tuple[str, int], location: str | Path, workers: str = ""
) -> str:
    """The line announcing a gateway at ``address``; ``workers`` (who serves) is said first
    in the parentheses."""
    return (
        f"llmpulse gateway: serving {_url(*address)} ({workers}"
        f"{len(gateway.deployments)} deployments, {len(gateway.targets())} probed); "
        f"traffic recorded in {redact_url(str(location))}"
    )


def drills_line(gateway: GatewayConfig) -> str | None:
    """The start-up line saying when the scheduled failover drills run (None without them):
    a user who configured them sees they were taken."""
    drills = gateway.settings.drills
    if drills is None:
        return None
    return (
        f"llmpulse gateway: failover drills at '{drills.schedule}' ({drills.timezone}), each "
        "occurrence by one process on the results database"
    )


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port``, bound as uvicorn binds the API's (OSError if it
    cannot): the metrics port's, and the one port ``--num_workers`` workers share."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)  # uvicorn's backlog; from here on, the port is taken
    except OSError:
        sock.close()
        raise
    return sock


class GatewayProcess:
    """One gateway process, bound to nothing yet. Opening its recording may raise one of
    ``store.database_errors()`` (the caller says it in one line). As one of several workers
    (``worker``), its results and spool carry the worker's number in their name."""

    def __init__(
        self,
        config: Config,
        location: str | Path,
        address: tuple[str, int],
        *,
        accept_unenforced_auth: bool = False,
        warnings: Sequence[str] = (),
        worker: WorkerRole | None = None,
    ) -> None:
        self.gateway = gateway = served(config)
        self.location = location
        self.host, self.port = address
        self.region = config.monitor.region
        self.redactor = config.redactor
        # Its results name it and the region it serves from, beside the probe agents'.
        self.name = config.monitor.agent or f"{socket.gethostname()}-gateway-{self.port}"
        self.worker = worker
        # A worker that does not probe reads the first one's verdicts from the store (by its
        # name: not another gateway's sharing the database), except while Redis brings them
        # (with its breaker decisions).
        follow = None if worker is None or worker.probes else f"{self.name}-w0"
        if worker is not None:  # each worker its own writer and spool
            self.name = f"{self.name}-w{worker.index}"
        # Unless gateway.monitor is off, the gateway probes its deployments itself: their
        # breakers learn of an outage before a user request fails on it.
        self.probed = gateway.targets()
        self.telemetry: Telemetry | None = None
        if config.telemetry is not None:
            from llmpulse.telemetry.otlp import Telemetry  # the SDK loads only when configured

            targets = [d.to_target() for d in gateway.deployments]
            self.telemetry = Telemetry(config.telemetry, targets)
        # Traffic is stored within 250 ms (the database, else the local spool): neither a kill
        # nor a database outage loses it.
        self.recording = open_recording(location, self.name)
        self.metrics = GatewayMetrics(gateway, self._selector)
        self.metrics_warnings: list[str] = []
        self.metrics_socket = self._bind_metrics(gateway)
        # Breaker opens and closes, for the dashboard's gateway page.
        self.breakers = BreakerLog(location, self.name, {d.id: d.name for d in gateway.deployments})
        # While `llmpulse run` probes into the same database, its probes are followed, not
        # repeated.
        self.app = create_app(
            gateway,
            record=self.record,
            probe_targets=self.probed,
            follow_probes=follow,
            results_db=location,
            redactor=config.redactor,
            accept_unenforced_auth=accept_unenforced_auth,
            warnings=[*warnings, *self.metrics_warnings],
            breakers=self.breakers,
            worker=None if worker is None else worker.index,
        )
        guard = master_key_guard(gateway, "/metrics")
        self.metrics_endpoint = metrics_endpoint(self.metrics, guard)
        # On the API's port too, where LiteLLM serves them: its scrape configs work as they are.
        # Not for workers: a scrape there would reach one worker or another at random.
        if gateway.settings.metrics and worker is None:
            self.app.add_route("/metrics", self.metrics_endpoint, methods=["GET"])

    def _bind_metrics(self, gateway: GatewayConfig) -> socket.socket | None:
        """The metrics port's socket, bound now so a taken port is said before serving: a
        ConfigError for ``gateway.metrics_listen``'s; the default one (loopback, the gateway's
        port + 1) taken is a warning, and /metrics stays on the API's port (a worker's: on none).
        Worker i takes the port + i. None: off."""
        settings = gateway.settings
        if not settings.metrics:
            return None
        host, port = settings.metrics_host, settings.metrics_port
        # Each worker counts its own requests: its own /metrics, on the next ports up.
        offset = 0 if self.worker is None else self.worker.index
        if port is None:
            # An ephemeral API port: any free one (the ports after it may be anyone's).
            ephemeral = not self.port or (self.worker is not None and self.worker.any_port)
            port = 0 if ephemeral else self.port + 1 + offset
            try:
                return listening_socket(host, port)
            except OSError as exc:
                self.metrics_warnings.append(
                    f"/metrics has no port of its own: {host}:{port} (the gateway's port + "
                    f"{port - self.port}) is taken ({exc.strerror}); set gateway.metrics_listen"
                    + (", or scrape the API's port" if self.worker is None else "")
                )
                return None
        # Worker i's port is not the one written: say which it is.
        shifted = f" (its port + {offset}, worker {offset}'s)" if offset and port else ""
        port += offset if port else 0
        if port == self.port != 0:
            raise ConfigError(
                f"gateway.metrics_listen: port {port}{shifted} is the gateway's own; leave "
                "gateway.metrics_listen unset for a port of its own (the gateway's + 1)"
            )
        try:
            return listening_socket(host, port)
        except OSError as exc:
            raise ConfigError(
                f"gateway.metrics_listen: cannot listen on {host}:{port}{shifted} ({exc.strerror})"
            ) from None

    @property
    def metrics_url(self) -> str | None:
        """Where this process serves ``/metrics`` on a port of its own (None: it does not)."""
        if self.metrics_socket is None:
            return None
        return f"{_url(*self.metrics_socket.getsockname()[:2])}/metrics"

    def _selector(self) -> Selector | None:
        gateway = getattr(self.app.state, "gateway", None)  # set once the app's lifespan starts
        return None if gateway is None else gateway.selector

    def record(self, result: CheckResult) -> None:
        result.agent, result.region = self.name, self.region
        self.recording.add(result)
        if self.telemetry is not None:
            self.telemetry.emit(result)
        self.metrics.observe(result)

    async def _drills(self, stop: asyncio.Event) -> None:
        """Scheduled failover drills (``gateway.drills``). Each occurrence is claimed in the
        database, so that one process drills it: of gateway replicas and daemons, on this host
        or others. Results go through the recording, as traffic does."""
        settings = self.gateway.settings.drills
        if settings is None or (self.worker is not None and not self.worker.probes):
            return  # of several workers, the first tries for all
        await scheduled_drills(
            self.gateway, settings, stop, record=self.record,
            store=self.recording.writer.store, redactor=self.redactor,
        )  # fmt: skip

    async def serve(
        self,
        *,
        verbose: bool = False,
        announce: Callable[[str], None] | None,
        sockets: Sequence[socket.socket] | None = None,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        """Serve until SIGINT/SIGTERM, then flush the recording and close. ``sockets``: listen
        on these (bound by a parent, shared by its workers) instead of binding the address;
        ``on_ready`` is called once requests are being served. Without ``announce`` (a worker:
        its parent announces the gateway), warnings go to the log."""

        def say(line: str) -> None:
            if announce is not None:
                announce(line)
            else:
                log.warning("%s", line.removeprefix("warning: "))

        host, port = self.host, self.port
        self.recording.start()  # a predecessor's spool is replayed at once
        self.breakers.start()
        # What start-up built lives as long as the gateway: frozen out of collections, which
        # otherwise took about a sixth of each request's time (profiled under load).
        aio.quiet_gc()
        settings = self.gateway.settings
        server = _Server(
            uvicorn.Config(
                self.app,
                host=host,
                port=port,
                log_level="info" if verbose else "warning",
                log_config=None,  # its lines go through our handlers, and so the redactor
                http=header_timeout_protocol(settings.header_timeout),
                # In-flight requests may finish; then the rest are cancelled, their upstream
                # calls with them, and the traffic recorded so far is flushed below.
                # uvicorn types it int, and takes any number of seconds.
                timeout_graceful_shutdown=settings.shutdown_grace,  # type: ignore[arg-type]
            )
        )
        server.on_ready = on_ready
        server.worker = self.worker is not None
        if announce is not None:
            announce(serving_line(self.gateway, (host, port), self.location))
        side: asyncio.Task[None] | None = None
        metrics_server: SideServer | None = None
        metrics_at = f"{_url(host, port)}/metrics"
        if self.metrics_socket is not None:
            metrics_at = f"{_url(*self.metrics_socket.getsockname()[:2])}/metrics and {metrics_at}"
            metrics_server = SideServer(
                uvicorn.Config(
                    create_metrics_app(self.metrics_endpoint),
                    log_level="warning",
                    log_config=None,
                    lifespan="off",
                    http=header_timeout_protocol(settings.header_timeout),
                )
            )
            side = asyncio.create_task(metrics_server.serve(sockets=[self.metrics_socket]))
            side.add_done_callback(functools.partial(_metrics_ended, say))
        if settings.metrics and announce is not None:
            behind = "master key" if settings.has_master_key else "loopback clients"
            announce(f"llmpulse gateway: metrics at {metrics_at} ({behind})")
        for line in self.metrics_warnings:
            say(f"warning: {line}")
        drills_at = drills_line(self.gateway)
        if drills_at is not None and announce is not None:
            announce(drills_at)
        stop = asyncio.Event()
        drills = asyncio.ensure_future(self._drills(stop))
        try:
            await server.serve(sockets=list(sockets) if sockets is not None else None)
        finally:
            stop.set()
            drills.cancel()  # a drill under way is abandoned: it is not the clients' traffic
            with contextlib.suppress(asyncio.CancelledError):
                await drills
            if metrics_server is not None and side is not None:
                metrics_server.should_exit = True
                # A failure of its own was said when it happened: the flush below still runs.
                await asyncio.gather(side, return_exceptions=True)
            if self.metrics_socket is not None:
                self.metrics_socket.close()
            await asyncio.to_thread(self.recording.close)
            await asyncio.to_thread(self.breakers.close)
            self.recording.writer.store.close()
            if self.telemetry is not None:
                await asyncio.to_thread(self.telemetry.shutdown)


class _Server(Server):
    """``Server`` telling ``on_ready`` once it serves (a worker tells its parent).

    A worker stops gracefully on SIGINT and SIGTERM, however many and in whatever order, and
    without waiting on SIGQUIT (its parent's second signal, as gunicorn's quick shutdown). A
    terminal's Ctrl-C brings it both its own SIGINT and the parent's SIGTERM, in either order
    (signals that different threads take are noted in no set order): uvicorn's rule, SIGINT
    once stopping forces, would then cut the in-flight requests of one Ctrl-C."""

    on_ready: Callable[[], None] | None = None
    worker = False

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            if not self.worker:
                yield
                return
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGQUIT, self.handle_exit, signal.SIGQUIT, None)
            try:
                yield
            finally:
                loop.remove_signal_handler(signal.SIGQUIT)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.worker:
            super().handle_exit(sig, frame)
            return
        self.should_exit = True
        if sig == signal.SIGQUIT:
            self.force_exit = True

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.on_ready is not None:
            self.on_ready()


def _metrics_ended(announce: Callable[[str], None], side: asyncio.Task[None]) -> None:
    """Says the metrics server failed: the gateway serves on without its /metrics."""
    if side.cancelled() or side.exception() is None:
        return
    error = side.exception()
    announce(f"warning: /metrics stopped ({type(error).__name__}: {error}); the gateway serves on")


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
