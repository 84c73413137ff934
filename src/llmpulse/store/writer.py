"""The one way results are written: every llmpulse process that measures writes through here.

``llmpulse run`` and ``llmpulse agent`` (the daemon), ``llmpulse gateway``, ``instrument()``
and ``Router`` each open a ``Recording`` with ``open_recording``: what it is given is in the
store, or else in a local spool beside it (``store.spool``), within 250 ms, and the spool is
replayed into the store, oldest batch first. A process killed outright loses nothing it
measured before that bound; one whose database is unreachable, or restarting, goes on
measuring, and its batches wait in the spool until the database answers.
"""

from __future__ import annotations

import itertools
import logging
import sqlite3
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from llmpulse.config.storage import redact_url
from llmpulse.result import CheckResult
from llmpulse.store import UnwritableError, database_errors, open_store
from llmpulse.store.base import Store
from llmpulse.store.spool import Spool, spool_for

log = logging.getLogger(__name__)

# Pauses between attempts to reach a database that refused: it is not hammered while down.
RETRY_MIN_S, RETRY_MAX_S = 0.5, 8.0
# A batch is cut every SPOOL_EVERY_S; one the store has not confirmed by the next cut is
# committed locally in milliseconds: each result is stored within SPOOL_WITHIN_S of being
# measured (two cuts and a local commit; the README states this bound).
SPOOL_EVERY_S, SPOOL_WITHIN_S = 0.1, 0.25


def open_recording(store: Store | str | Path, writer: str) -> Recording:
    """The recording (not started) of ``writer`` (the process's name in batch ids and in its
    spool's file name) into ``store``.

    ``store``: where results live, as ``llmpulse run`` takes it (``results_location``: a
    ``postgresql://`` URL, whose ``options=-csearch_path=...`` picks the schema, a
    ``sqlite:///`` URL or a file path), opened here and checked to take writes
    (``UnwritableError`` now, in one line, rather than on every write); or a ``Store`` already
    open, written through as it is. Either way the store is the caller's to close
    (``recording.writer.store``), after the recording. The spool sits beside the store's file
    (for PostgreSQL, the default file).
    Raises one of ``database_errors()`` when the store or its spool cannot be opened.
    """
    if isinstance(store, Store):
        return Recording(ResultWriter(store, spool_for(store.location, writer), writer))
    opened = open_store(store, for_writing=True)
    try:
        spool = spool_for(store, writer)
    except UnwritableError:
        opened.close()
        raise
    return Recording(ResultWriter(opened, spool, writer))


class Trouble:
    """A database trouble said in the log once when it starts and once when it is over, never
    per attempt. Jobs (result writes, rollups, pruning...) report each outcome; the trouble is
    over once every job that met it has succeeded again."""

    def __init__(self, logger: logging.Logger, started: str, over: str) -> None:
        self._log, self._started, self._over = logger, started, over
        self._failing: set[str] = set()
        self._lock = threading.Lock()

    def failed(self, job: str, exc: BaseException) -> None:
        with self._lock:
            first = not self._failing
            self._failing.add(job)
        if first:
            self._log.warning(self._started, job, redact_url(str(exc)))

    def succeeded(self, job: str) -> None:
        with self._lock:
            if job not in self._failing:
                return
            self._failing.discard(job)
            over = not self._failing
        if over:
            self._log.warning(self._over)


class ResultWriter:
    """Writes batches to the store, or to the spool and from there to the store.

    ``write`` gives a batch to the store directly, ``keep`` commits one to the spool (local and
    fast), ``drain`` replays the spool into the store, oldest batch first. They may run in
    different threads, so a store that is slow or away never delays ``keep``. Drains are
    serialised (one abandoned by a cancelled task still runs in its thread while shutdown
    drains again). A store that refuses writes is said once in the log (``unwritable``, which
    the daemon's rollups and pruning report to as well), and once when it takes them again:
    not on every attempt.
    """

    def __init__(
        self, store: Store, spool: Spool, writer: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.spool = spool
        # Batch ids are unique per writer process and run.
        self._prefix = f"{writer}:{uuid.uuid4().hex[:12]}:"
        self._ids = itertools.count(1)
        self._clock = clock
        self._retry_at = 0.0
        self._backoff = RETRY_MIN_S
        self.unwritable = Trouble(
            log,
            "results database unwritable (%s: %s); spooling results locally until it takes them",
            "results database writable again",
        )
        self._lock = threading.Lock()

    def new_id(self) -> str:
        return f"{self._prefix}{next(self._ids)}"

    def keep(self, results: Sequence[CheckResult], batch_id: str | None = None) -> int | None:
        """Commit ``results`` to the spool as one batch (under ``batch_id``, else a new id):
        from here on a killed process loses none of them. Returns its spool sequence number."""
        if not results:
            return None
        return self.spool.push(batch_id or self.new_id(), results)

    @property
    def refusing(self) -> bool:
        """The store refused the last attempt, and its pause before the next is not over."""
        return self._clock() < self._retry_at

    def write(self, batch_id: str, results: Sequence[CheckResult]) -> bool:
        """Give one batch to the store directly; False if it refused (the caller keeps it)."""
        with self._lock:
            return self._try(batch_id, results)

    def drain(self, now: bool = False) -> bool:
        """Replay spooled batches in order; False if the store still refuses (it is tried
        again after a growing pause, not on every call, unless ``now``: a flush asks)."""
        with self._lock:
            if len(self.spool) and self.refusing and not now:
                return False
            while (head := self.spool.head()) is not None:
                seq, batch_id, results = head
                if not self._try(batch_id, results):
                    return False
                self.spool.pop(seq)
            return True

    def _try(self, batch_id: str, results: Sequence[CheckResult]) -> bool:
        try:
            self.store.write_results(results, batch_id=batch_id)
        except database_errors(OSError) as exc:
            self.unwritable.failed("results", exc)
            self._retry_at = self._clock() + self._backoff
            self._backoff = min(RETRY_MAX_S, self._backoff * 2)
            return False
        self.unwritable.succeeded("results")
        self._retry_at = 0.0
        self._backoff = RETRY_MIN_S
        return True


class _Handed:
    """A batch given to the store directly and not yet confirmed."""

    __slots__ = ("at", "batch_id", "results", "seq")

    def __init__(self, batch_id: str, results: list[CheckResult], at: float) -> None:
        self.batch_id, self.results, self.at = batch_id, results, at
        self.seq: int | None = None  # its spool copy, once it took too long


class Recording:
    """What a long-running process measures: stored within ``SPOOL_WITHIN_S`` of being added,
    in the store or else in the local spool.

    ``add`` is all the measuring side does (an append: no I/O, safe from the event loop or any
    thread). One thread (the keeper) cuts what was added into a batch every ``SPOOL_EVERY_S``.
    While the store keeps up, the batch goes to it directly: one transaction, nothing written
    twice. A batch the store has not confirmed by the keeper's next cut is committed to the
    spool as well (a committed SQLite transaction survives the process being killed), under its
    own id, so whichever copy the store takes first, the other is skipped; and while anything
    waits in the spool, or the store refuses, new batches go to the spool behind it, in order.
    Another thread (the writer) gives batches to the store and replays the spool, at start too,
    so a predecessor's spool is replayed before anything new. The bound holds whatever the store
    does: a slow or absent store only keeps the writer waiting. ``flush`` waits for what was
    added before it to be stored, for callers that read the store next.
    """

    def __init__(self, writer: ResultWriter, every: float = SPOOL_EVERY_S) -> None:
        self.writer = writer
        self._every = every
        self._added: deque[CheckResult] = deque()  # append and popleft are atomic
        self._lock = threading.Lock()  # _handed, and pushes to the spool, in order
        self._handed: _Handed | None = None
        self._stop = threading.Event()
        self._final = threading.Event()  # everything added is cut: the writer's last turn
        self._wake = threading.Event()
        self._tick = threading.Event()  # cut now: the stop, or a flush
        # Flushes waiting for the next cut (appended under _lock), then for the writer's turn
        # after it (the keeper moves them, with the batch they wait for).
        self._flushes: deque[threading.Event] = deque()
        self._asked: list[threading.Event] = []
        self._keeper = threading.Thread(
            target=self._keep_forever, name="llmpulse-spool", daemon=True
        )
        self._writer = threading.Thread(
            target=self._write_forever, name="llmpulse-store-writer", daemon=True
        )

    def start(self) -> None:
        self._keeper.start()
        self._writer.start()

    def add(self, result: CheckResult) -> None:
        self._added.append(result)

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Block until what was added so far is stored: cut now, given to the store and the
        spool replayed (tried at once, even while the store refuses), or, while it refuses, in
        the spool. False if that took over ``timeout`` s."""
        done = threading.Event()
        with self._lock:
            if self._stop.is_set():
                return True  # closed: everything added was cut and stored by close
            self._flushes.append(done)
        self._tick.set()
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Cut what was added, give it to the store (or the spool) and replay the spool for up
        to ``timeout`` s, then close the spool; what the store did not take by then waits in it
        for the next start."""
        with self._lock:  # no flush waits for a cut after the last one
            self._stop.set()
        self._tick.set()
        if self._keeper.is_alive():
            self._keeper.join()
        self._final.set()
        self._wake.set()
        if self._writer.is_alive():
            self._writer.join(timeout)
        with self._lock:
            # A batch the store still has not confirmed: on disk before the process goes.
            self._spool_handed()
        spool = self.writer.spool
        if len(spool):
            log.warning("%d results wait in %s for the next start", len(spool), spool.path)
        if not self._writer.is_alive():
            spool.close()  # else a write the store is slow to answer still needs it

    # --- the keeper ---------------------------------------------------------------------------

    def _keep_forever(self) -> None:
        # Cuts on a fixed cadence: a slow commit shortens the next wait, not the bound; a cut
        # asked for in between (a flush) does not move the cadence.
        due = time.monotonic() + self._every
        while not self._stop.is_set():
            if self._tick.wait(max(0.0, due - time.monotonic())):
                self._tick.clear()  # before cutting: a flush asked from here on is in this cut
            if time.monotonic() >= due:
                due += self._every
            try:
                self._cut()
            except Exception:  # a bug must not stop the recording: what was cut is logged lost
                log.exception("recording results failed")

    def _cut(self) -> None:
        # Flushes first: what was added before a flush was asked is in this batch.
        asked = [self._flushes.popleft() for _ in range(len(self._flushes))]
        batch = [self._added.popleft() for _ in range(len(self._added))]
        with self._lock:
            self._asked += asked
            handed = self._handed
            # The batch handed at the last cut and still unconfirmed goes to disk now, and
            # before any batch behind it, so the spool keeps their order.
            if handed is not None and (batch or time.monotonic() - handed.at >= self._every / 2):
                self._spool_handed()
            if batch:
                if handed is None and not len(self.writer.spool) and not self.writer.refusing:
                    self._handed = _Handed(self.writer.new_id(), batch, time.monotonic())
                else:
                    self._keep(batch)
        if batch or asked:
            self._wake.set()

    def _keep(self, batch: list[CheckResult], batch_id: str | None = None) -> int | None:
        try:
            return self.writer.keep(batch, batch_id)
        except (sqlite3.Error, OSError) as exc:  # a full or failing local disk
            log.error("%d results lost: the spool %s refused them: %s", len(batch),
                      self.writer.spool.path, exc)  # fmt: skip
            return None

    def _spool_handed(self) -> None:
        """Commit the handed batch to the spool too, unless it is there (the lock held)."""
        handed = self._handed
        if handed is not None and handed.seq is None:
            handed.seq = self._keep(handed.results, handed.batch_id)

    # --- the writer ---------------------------------------------------------------------------

    def _write_forever(self) -> None:
        while True:
            # Cleared before looking, so a batch cut meanwhile wakes the next turn at once.
            self._wake.clear()
            final = self._final.is_set()
            with self._lock:
                asked, self._asked = self._asked, []
            try:
                # A flush has the store asked at once, unless it refused this very turn.
                refused = not self._write_handed()
                self.writer.drain(now=bool(asked) and not refused)
            except Exception:  # a bug must not stop the recording: the spool keeps the results
                log.exception("writing results to the store failed")
            for flushed in asked:
                flushed.set()
            if final and self._handed is None:
                return
            # Woken by each batch cut; without traffic, a refusing store is retried anyway.
            self._wake.wait(RETRY_MIN_S)

    def _write_handed(self) -> bool:
        """Give the handed batch to the store; False if it refused it."""
        handed = self._handed
        if handed is None:
            return True
        try:
            written = self.writer.write(handed.batch_id, handed.results)
        except Exception:  # not a database error: the spool keeps the batch
            log.exception("writing %d results to the store failed", len(handed.results))
            written = False
        with self._lock:
            if written and handed.seq is not None:
                # Spooled while the store took its time: that copy would only be skipped.
                self.writer.spool.pop(handed.seq)
            elif not written:
                self._spool_handed()
            self._handed = None
        return written
