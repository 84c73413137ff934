"""``llmpulse gateway --num_workers N``: N worker processes serving one port, supervised.

The parent binds the listening socket once (port 0 included: every worker serves the real
port) and forks the workers, each a whole ``GatewayProcess`` (its own recording, spool and
health loop) serving that inherited socket; the kernel hands each new connection to one of
them. The parent serves nothing itself and holds no database or network client, so it is what
a fork may safely copy.

- SIGTERM or SIGINT to the parent stops every worker gracefully: each finishes its in-flight
  requests within ``gateway.shutdown_grace`` and flushes its recording; a second signal stops
  them without waiting. A worker whose parent is gone (killed) stops itself the same way.
- A serving worker whose event loop stops running (stuck in a blocking call, a runaway
  computation, SIGSTOP) stops beating; after ``gateway.worker_timeout`` without a beat it is
  killed, as gunicorn's ``--timeout`` does, and restarted like any dead worker. A pause of the
  whole process group (Ctrl-Z, ``docker pause``) is no stall: every worker gets its turn first.
- A worker that dies is restarted, the others serving meanwhile: at once after a long life,
  with doubling backoff (``RESTART_FIRST_S`` up to ``RESTART_MAX_S``) while it keeps dying
  young; each death is logged as an error. A worker that dies before the gateway first served
  (a broken config or database) stops the gateway with exit code 1: restarting cannot help.
- Only worker 0 probes the deployments (``WorkerRole``); breaker and limit state are shared
  between workers only through ``gateway.redis_url`` (``shared_state_warning`` says what each
  worker keeps alone otherwise). Each worker serves its own ``/metrics`` (its own counts), on
  the metrics port + its number; the parent announces them all once every worker serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path

from llmpulse import aio
from llmpulse.config import Config, ConfigError
from llmpulse.config.gateway import GatewayConfig
from llmpulse.config.storage import redact_url
from llmpulse.gateway.budgets import REFRESH_S
from llmpulse.gateway.server import (
    GatewayProcess,
    WorkerRole,
    drills_line,
    served,
    serving_line,
)
from llmpulse.secrets import log_uncaught
from llmpulse.store import database_errors

log = logging.getLogger(__name__)

RESTART_FIRST_S = 0.5
RESTART_MAX_S = 30.0
LIVED_S = 60.0  # a worker dying after this long restarts at once: not a crash loop
PARENT_POLL_S = 1.0
HEARTBEAT_S = 1.0  # how often a serving worker's event loop says it runs
FROZEN_S = 2.0  # the parent waking this much later than it asked: it was paused too
_STOP = (signal.SIGINT, signal.SIGTERM)


def shared_state_warning(gateway: GatewayConfig, count: int) -> str | None:
    """What ``count`` workers keep apart without ``gateway.redis_url``, in one line (None with
    Redis, or one worker)."""
    if count < 2 or gateway.settings.redis_url:
        return None
    # Dividing each limit by the workers would refuse a client whose connection stays on one
    # worker at 1/N of its limit: not done, said instead.
    return (
        f"--num_workers {count} without gateway.redis_url: each worker keeps its own breaker, "
        f"cool-down, rate-limit and budget state, so a key's or deployment's rpm/tpm limit lets "
        f"up to {count}x through, a failing deployment is learnt by each worker from its own "
        f"requests (probe verdicts come from worker 0 through the database), and budgets count "
        f"the other workers' spend from the database every {REFRESH_S:g} s; set "
        f"gateway.redis_url to share them"
    )


@dataclasses.dataclass
class _Slot:
    """Worker ``index``: its current process, and how its recent ones fared."""

    index: int
    # When the worker's event loop last ran (time.monotonic(), one clock for every process):
    # shared memory the parent made before forking, written by the worker.
    beat: ctypes.c_double
    process: BaseProcess | None = None
    ready: Connection | None = None  # the worker sends its /metrics URL once it serves
    metrics_url: str | None = None
    serving: bool = False
    started_at: float = 0.0
    young_deaths: int = 0  # in a row, each sooner than LIVED_S after its start
    restart_at: float | None = None
    starts: int = 0
    killed_stalled: bool = False

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid


class Supervisor:
    """Runs ``count`` workers of ``config``'s gateway on ``sock`` (``server.listening_socket``,
    bound to ``address`` as asked: port 0 included) until a signal stops them; ``run`` returns
    the exit code."""

    def __init__(
        self,
        config: Config,
        location: str | Path,
        address: tuple[str, int],
        sock: socket.socket,
        count: int,
        *,
        accept_unenforced_auth: bool = False,
        warnings: Sequence[str] = (),
        verbose: bool = False,
    ) -> None:
        self.config = config
        self.gateway = served(config)
        self.location = location
        host, asked = address
        self.address = (host, sock.getsockname()[1])
        self.any_port = asked == 0
        self.sock = sock
        self.accept_unenforced_auth = accept_unenforced_auth
        self.warnings = tuple(warnings)
        self.verbose = verbose
        self._context = multiprocessing.get_context("fork")
        self.slots = [_Slot(i, self._context.RawValue(ctypes.c_double, 0.0)) for i in range(count)]
        self._signals: list[int] = []
        self._stopping = False
        self._announced = False  # every worker served once: from here on, a death restarts
        self._failed = False
        self._wake = (-1, -1)
        self._parent = os.getpid()  # the workers' parent, taken before any fork
        self._resumed_at = 0.0  # when the parent last woke from a pause of its own

    # --- the parent -------------------------------------------------------------------------

    def run(self, announce: Callable[[str], None]) -> int:
        """Start the workers, announce the gateway once every one serves, restart those that
        die, until a signal; the exit code (1: a worker failed at start, or stopping)."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        # A signal wakes the wait below at once (the handler itself only notes it).
        previous_fd = signal.set_wakeup_fd(wake_w)
        previous = {sig: signal.signal(sig, self._note) for sig in _STOP}
        self._wake = (wake_r, wake_w)
        try:
            for slot in self.slots:
                self._start(slot)
            while True:
                self._handle_signals()
                now = time.monotonic()
                for slot in self.slots:
                    self._check(slot, now)
                if self._stopping and all(s.process is None for s in self.slots):
                    break
                serving = all(s.serving for s in self.slots)
                if serving and not self._stopping and not self._announced:
                    self._announced = True
                    pids = ", ".join(str(s.pid) for s in self.slots)
                    workers = f"{len(self.slots)} worker processes, pids {pids}; "
                    announce(serving_line(self.gateway, self.address, self.location, workers))
                    self._announce_metrics(announce)
                    drills_at = drills_line(self.gateway)
                    if drills_at is not None:
                        announce(f"{drills_at} (worker 0 tries them)")
                self._wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_fd)
            os.close(wake_r)
            os.close(wake_w)
            self.sock.close()
        return 1 if self._failed else 0

    def _announce_metrics(self, announce: Callable[[str], None]) -> None:
        urls = [s.metrics_url for s in self.slots if s.metrics_url]
        if urls:
            settings = self.gateway.settings
            behind = "master key" if settings.has_master_key else "loopback clients"
            # Each worker counts its own requests: Prometheus scrapes each, sums over them.
            listed = ", ".join(urls)
            announce(f"llmpulse gateway: metrics at {listed}, one per worker ({behind})")

    def _note(self, signum: int, frame: object) -> None:
        self._signals.append(signum)

    def _handle_signals(self) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            if not self._stopping:
                log.info("gateway: %s, stopping the workers", signal.Signals(signum).name)
                self._stop()
            else:  # a second signal: no more waiting for in-flight requests
                name = signal.Signals(signum).name
                log.warning("gateway: %s again, stopping the workers without waiting", name)
                self._kill_all(signal.SIGQUIT)  # a worker's "now" (``server._Server``)

    def _stop(self) -> None:
        self._stopping = True
        # New connections are refused from here: the workers still hold the socket until they
        # stop accepting, the parent no longer keeps it open for restarts.
        self.sock.close()
        self._kill_all(signal.SIGTERM)

    def _kill_all(self, signum: int) -> None:
        for slot in self.slots:
            if slot.process is not None and slot.process.pid is not None:
                with contextlib.suppress(ProcessLookupError):  # died just now: _check reaps it
                    os.kill(slot.process.pid, signum)

    def _wait(self) -> None:
        waiting: list[Connection | int] = [self._wake[0]]
        for slot in self.slots:
            if slot.process is not None:
                waiting.append(slot.process.sentinel)
                if slot.ready is not None:
                    waiting.append(slot.ready)
        due = [s.restart_at for s in self.slots if s.restart_at is not None]
        if not self._stopping and any(s.serving for s in self.slots):
            due.append(time.monotonic() + HEARTBEAT_S)  # to look at the beats
        asked = time.monotonic()
        timeout = max(0.0, min(due) - asked) if due else None
        wait(waiting, timeout)
        if timeout is not None and time.monotonic() - asked > timeout + FROZEN_S:
            # The parent did not run either: the whole group was paused. The workers' beats
            # are as old as the pause; their loops get a turn before they are judged.
            self._resumed_at = time.monotonic()
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake[0], 512):
                pass

    def _check(self, slot: _Slot, now: float) -> None:
        """Note a worker now serving; reap a dead one, and restart it when due."""
        if slot.ready is not None and slot.ready.poll():
            try:
                slot.metrics_url = slot.ready.recv()
                slot.serving = True
                if slot.starts > 1:  # its /metrics may have moved (any free port): said again
                    at = f", metrics at {slot.metrics_url}" if slot.metrics_url else ""
                    log.warning(
                        "gateway worker %d (pid %s) serving again%s", slot.index, slot.pid, at
                    )
                else:
                    log.info("gateway worker %d (pid %s) serving", slot.index, slot.pid)
            except EOFError:
                pass  # died before it served: reaped below
            slot.ready.close()
            slot.ready = None
        process = slot.process
        if process is not None and process.exitcode is None:
            self._watch(slot, process, now)
        if process is not None and process.exitcode is not None:
            process.join()
            slot.process = None
            if slot.ready is not None:
                slot.ready.close()
                slot.ready = None
            code = process.exitcode
            if not self._stopping and not self._announced:
                log.error(
                    "gateway worker %d (pid %s) %s before the gateway served; stopping",
                    slot.index, process.pid, _how(code),
                )  # fmt: skip
                self._failed = True
                self._stop()
                return
            if self._stopping:
                if code > 0:
                    log.error("gateway worker %d (pid %s) %s", slot.index, process.pid, _how(code))
                    self._failed = True
                return
            lived = now - slot.started_at
            slot.young_deaths = 0 if lived >= LIVED_S else slot.young_deaths + 1
            delay = 0.0 if not slot.young_deaths else RESTART_FIRST_S * 2 ** (slot.young_deaths - 1)
            delay = min(RESTART_MAX_S, delay)
            slot.restart_at = now + delay
            log.error(
                "gateway worker %d (pid %s) %s after %.1f s; restarting it in %.1f s",
                slot.index, process.pid, _how(code), lived, delay,
            )  # fmt: skip
        if slot.restart_at is not None and not self._stopping and now >= slot.restart_at:
            self._start(slot)

    def _watch(self, slot: _Slot, process: BaseProcess, now: float) -> None:
        """Kill a serving worker whose event loop has not beaten for ``worker_timeout``: it
        holds connections it will never answer. Not while stopping: shutdown is bounded by
        the grace and a second signal. Nor while a worker is still starting: its loop runs,
        waiting on what it connects to."""
        timeout = self.gateway.settings.worker_timeout
        if self._stopping or not slot.serving or slot.killed_stalled or process.pid is None:
            return
        stalled = now - max(slot.beat.value, self._resumed_at)
        if stalled <= timeout:
            return
        log.error(
            "gateway worker %d (pid %s): its event loop has not run for %.1f s "
            "(gateway.worker_timeout %g s); killing it",
            slot.index, process.pid, stalled, timeout,
        )  # fmt: skip
        slot.killed_stalled = True
        with contextlib.suppress(ProcessLookupError):  # died just now: reaped as any death
            os.kill(process.pid, signal.SIGKILL)

    def _start(self, slot: _Slot) -> None:
        reader, writer = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=self._worker, args=(slot.index, writer), name=f"llmpulse-gateway-w{slot.index}"
        )
        # A stop signal arriving while the child is forked is held until the child's own
        # handling replaces the parent's (in the child it would only be noted, then lost).
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP)
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP)
        writer.close()
        slot.process, slot.ready, slot.serving = process, reader, False
        slot.killed_stalled = False
        slot.started_at, slot.restart_at = time.monotonic(), None
        slot.starts += 1
        if slot.starts > 1:
            log.warning("gateway worker %d restarted (pid %s)", slot.index, process.pid)

    # --- a worker ---------------------------------------------------------------------------

    def _worker(self, index: int, ready: Connection) -> None:
        """The worker's process: serve the parent's socket until a signal, or the parent's
        end."""
        signal.set_wakeup_fd(-1)
        for fd in self._wake:
            os.close(fd)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP)
        # The parent's pid as it forked: os.getppid() here would be init's already, were the
        # parent killed meanwhile, and the worker would then never see it gone.
        threading.Thread(target=_stop_with_parent, args=(self._parent,), daemon=True).start()
        try:
            self._serve(index, ready, self.slots[index].beat)
        except Exception as exc:  # multiprocessing would print it to stderr, past the redactor
            log_uncaught(type(exc), exc, exc.__traceback__)
            sys.exit(1)

    def _serve(self, index: int, ready: Connection, heartbeat: ctypes.c_double) -> None:
        try:
            process = GatewayProcess(
                self.config,
                self.location,
                self.address,
                accept_unenforced_auth=self.accept_unenforced_auth,
                warnings=self.warnings,
                worker=WorkerRole(index, any_port=self.any_port),
            )
        except database_errors() as exc:
            log.error("gateway worker %d: results database error: %s", index, redact_url(str(exc)))
            sys.exit(1)
        except ConfigError as exc:  # its gateway.metrics_listen port cannot be bound
            log.error("gateway worker %d: config error: %s", index, exc)
            sys.exit(1)

        def beat() -> None:
            heartbeat.value = time.monotonic()
            asyncio.get_running_loop().call_later(HEARTBEAT_S, beat)

        def serving() -> None:
            beat()  # before the parent hears it serves, and so starts watching its beats
            ready.send(process.metrics_url)
            ready.close()

        aio.run(
            process.serve(
                verbose=self.verbose, announce=None, sockets=[self.sock], on_ready=serving
            )
        )


def _stop_with_parent(parent: int) -> None:
    """Stop this worker as SIGTERM would once ``parent`` is gone (killed: it could not stop
    the worker itself). Polled: a pipe from the parent would be held open by later siblings."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os.kill(os.getpid(), signal.SIGTERM)


def _how(exitcode: int) -> str:
    if exitcode < 0:
        return f"was killed by {signal.Signals(-exitcode).name}"
    return f"exited with code {exitcode}"
