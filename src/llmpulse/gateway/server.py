"""``llmpulse gateway`` as a process: where it listens, its traffic written through the one
writer, its deployments probed (``health``), OTLP export when configured, its own Prometheus
``/metrics`` on a second socket (``metrics_address``); served until SIGTERM, then in-flight
requests finish (``gateway.shutdown_grace``) and what was recorded is flushed. With
``--num_workers N`` each of the N processes (``gateway.workers``) is one of these, told its
``WorkerRole``: worker i serves its own ``/metrics`` on the metrics port + i.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn

from llmpulse import aio
from llmpulse.config import Config, ConfigError
from llmpulse.config.gateway import GatewayConfig
from llmpulse.config.storage import redact_url
from llmpulse.config.web import is_loopback, split_address
from llmpulse.gateway.app import create_app, master_key_guard
from llmpulse.gateway.metrics import GatewayMetrics, create_metrics_app
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
    """Worker ``index`` (from 0) of those serving one port (``--num_workers``)."""

    index: int

    @property
    def probes(self) -> bool:
        """Only the first worker probes (or follows a daemon's probes): the others learn its
        verdicts, through Redis when configured, else from the results store."""
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


def metrics_address(gateway: GatewayConfig, port: int) -> tuple[str, int] | None:
    """Where ``/metrics`` is served: ``gateway.metrics_listen``, else loopback on the gateway's
    ``port`` + 1 (an ephemeral port when the gateway's is one); None when it is off."""
    settings = gateway.settings
    if not settings.metrics:
        return None
    if settings.metrics_port is not None:
        return settings.metrics_host, settings.metrics_port
    return settings.metrics_host, port + 1 if 0 < port < 65535 else 0


def _bind(host: str, port: int) -> socket.socket:
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
        # Its results name it and the region it serves from, beside the probe agents'.
        self.name = config.monitor.agent or f"{socket.gethostname()}-gateway-{self.port}"
        self.worker = worker
        if worker is not None:  # each worker its own writer and spool
            self.name = f"{self.name}-w{worker.index}"
        # Unless gateway.monitor is off, the gateway probes its deployments itself: their
        # breakers learn of an outage before a user request fails on it.
        self.probed = gateway.targets()
        follow = worker is not None and not worker.probes
        # A worker that does not probe reads the first one's verdicts from the store, unless
        # Redis brings them (with its breaker decisions) already.
        health_targets = () if follow and gateway.settings.redis_url else self.probed
        self.telemetry: Telemetry | None = None
        if config.telemetry is not None:
            from llmpulse.telemetry.otlp import Telemetry  # the SDK loads only when configured

            targets = [d.to_target() for d in gateway.deployments]
            self.telemetry = Telemetry(config.telemetry, targets)
        # Traffic is stored within 250 ms (the database, else the local spool): neither a kill
        # nor a database outage loses it.
        self.recording = open_recording(location, self.name)
        self.metrics = GatewayMetrics(gateway, self._selector)
        self.metrics_socket, self.metrics_warnings = self._bind_metrics(gateway)
        # While `llmpulse run` probes into the same database, its probes are followed, not
        # repeated.
        self.app = create_app(
            gateway,
            record=self.record,
            probe_targets=health_targets,
            follow_probes=follow,
            results_db=location,
            redactor=config.redactor,
            accept_unenforced_auth=accept_unenforced_auth,
            warnings=[*warnings, *self.metrics_warnings],
            worker=None if worker is None else worker.index,
        )

    def _bind_metrics(self, gateway: GatewayConfig) -> tuple[socket.socket | None, list[str]]:
        """The metrics socket, bound now so a taken port is said before serving: ConfigError
        for a ``gateway.metrics_listen`` set; the default one taken is a warning (a second
        gateway on the next port keeps serving)."""
        address = metrics_address(gateway, self.port)
        if address is None:
            return None, []
        if self.worker is not None and address[1]:
            # Each worker counts its own requests: its own /metrics, on the next ports up.
            address = (address[0], address[1] + self.worker.index)
        if address[1] == self.port != 0:
            raise ConfigError(
                f"gateway.metrics_listen: port {self.port} is the gateway's own; /metrics needs "
                "a port of its own"
            )
        try:
            return _bind(*address), []
        except OSError as exc:
            host, port = address
            if gateway.settings.metrics_port is not None:
                raise ConfigError(
                    f"gateway.metrics_listen: cannot listen on {host}:{port} ({exc.strerror})"
                ) from None
            return None, [
                f"/metrics not served: {host}:{port} (the gateway's port + {port - self.port}) is "
                "taken; set "
                "gateway.metrics_listen"
            ]

    @property
    def metrics_url(self) -> str | None:
        """Where this process serves ``/metrics`` (None: it does not)."""
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
        ``on_ready`` is called once requests are being served."""
        host, port = self.host, self.port
        self.recording.start()  # a predecessor's spool is replayed at once
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
        if announce is not None:
            announce(serving_line(self.gateway, (host, port), self.location))
        side: asyncio.Task[None] | None = None
        metrics_server: SideServer | None = None
        if self.metrics_socket is not None:
            guard = master_key_guard(self.gateway, "/metrics")
            metrics_server = SideServer(
                uvicorn.Config(
                    create_metrics_app(self.metrics, guard),
                    log_level="warning",
                    log_config=None,
                    lifespan="off",
                    http=header_timeout_protocol(settings.header_timeout),
                )
            )
            side = asyncio.create_task(metrics_server.serve(sockets=[self.metrics_socket]))
            if announce is not None:  # a worker's parent says where all of them serve it
                behind = " (master key)" if any(k.master for k in settings.keys) else ""
                announce(f"llmpulse gateway: metrics at {self.metrics_url}{behind}")
        for line in self.metrics_warnings:
            if announce is not None:
                announce(f"warning: {line}")
            else:
                log.warning("%s", line)
        try:
            await server.serve(sockets=list(sockets) if sockets is not None else None)
        finally:
            if metrics_server is not None and side is not None:
                metrics_server.should_exit = True
                await side
            if self.metrics_socket is not None:
                self.metrics_socket.close()
            await asyncio.to_thread(self.recording.close)
            self.recording.writer.store.close()
            if self.telemetry is not None:
                await asyncio.to_thread(self.telemetry.shutdown)


class _Server(Server):
    """``Server`` telling ``on_ready`` once it serves (a worker tells its parent)."""

    on_ready: Callable[[], None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.on_ready is not None:
            self.on_ready()


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
