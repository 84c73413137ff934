"""``llmpulse gateway`` as a process: where it listens, its traffic written through the one
writer, its deployments probed (``health``), OTLP export when configured; served until SIGTERM,
then in-flight requests finish (``gateway.shutdown_grace``) and what was recorded is flushed.
With ``--num_workers N`` each of the N processes (``gateway.workers``) is one of these, told its
``WorkerRole``.
"""

from __future__ import annotations

import asyncio
import dataclasses
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
from llmpulse.gateway.app import create_app
from llmpulse.result import CheckResult
from llmpulse.serving import Server, header_timeout_protocol
from llmpulse.store.writer import open_recording

if TYPE_CHECKING:
    from llmpulse.telemetry.otlp import Telemetry


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
    """Worker ``index`` of ``count`` serving one port (``--num_workers``)."""

    index: int
    count: int

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
    host, port = address
    shown = f"[{host}]" if ":" in host else host
    return (
        f"llmpulse gateway: serving http://{shown}:{port} ({workers}"
        f"{len(gateway.deployments)} deployments, {len(gateway.targets())} probed); "
        f"traffic recorded in {redact_url(str(location))}"
    )


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
            warnings=warnings,
            worker=None if worker is None else worker.index,
        )

    def record(self, result: CheckResult) -> None:
        result.agent, result.region = self.name, self.region
        self.recording.add(result)
        if self.telemetry is not None:
            self.telemetry.emit(result)

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
        try:
            await server.serve(sockets=list(sockets) if sockets is not None else None)
        finally:
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
