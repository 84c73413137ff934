"""Results on their way to the store, kept on local disk until the store has them.

An agent or gateway has what it measured in the store, or else in a SQLite file beside it,
within 250 ms (``Recording``), and replays that spool into the store, oldest batch first. A
process killed outright loses nothing it measured before that bound; one whose database is
unreachable, or restarting, goes on measuring, and its batches wait in the spool until the
database answers.
Every batch carries an id the store records with it (``write_results``'s ``batch_id``), so a
batch whose commit went through while its acknowledgement was lost is skipped on replay:
nothing is lost, nothing is written twice.

The spool is bounded (``max_results``): beyond it the oldest batches are dropped, with an error
in the log, rather than filling the disk. It is a local queue, not a schema with a history: the
file holds the store's own row encoding (``sqlstore.encode``), and a file from an older version
that cannot be read is set aside, never replayed wrongly.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import re
import sqlite3
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from llmpulse.result import CheckResult
from llmpulse.store import DATABASE_ERRORS, UnwritableError, local_path, redact_url, sqlitedb
from llmpulse.store.base import Store
from llmpulse.store.sqlstore import COLUMNS, decode, encode

log = logging.getLogger(__name__)

MAX_RESULTS = 1_000_000  # about 400 MB of rows: hours of a large fleet's probes
# Pauses between attempts to reach a database that refused: it is not hammered while down.
RETRY_MIN_S, RETRY_MAX_S = 0.5, 8.0
# A batch is cut every SPOOL_EVERY_S; one the store has not confirmed by the next cut is
# committed locally in milliseconds: each result is stored within SPOOL_WITHIN_S of being
# measured (two cuts and a local commit; the README states this bound).
SPOOL_EVERY_S, SPOOL_WITHIN_S = 0.1, 0.25
RECENT_BATCHES = 64
_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY,
    batch_id TEXT NOT NULL,
    columns TEXT NOT NULL,
    rows TEXT NOT NULL,
    count INTEGER NOT NULL
)
"""


class Spool:
    def __init__(self, path: Path, max_results: int = MAX_RESULTS) -> None:
        self.path = path
        self.max_results = max_results
        self._lock = threading.Lock()
        self._db = sqlitedb.connect(path)
        self._db.execute(_SCHEMA)
        (count,) = self._db.execute("SELECT coalesce(sum(count), 0) FROM spool").fetchone()
        self._count = int(count)
        # Batches pushed here, still decoded while few: replayed moments after being pushed
        # (the usual case), they need no decoding. A long outage only costs the decoding.
        self._recent: dict[int, list[CheckResult]] = {}

    def __len__(self) -> int:
        """Results waiting."""
        return self._count

    def push(self, batch_id: str, results: Sequence[CheckResult]) -> int:
        """Commit a batch; returns its sequence number."""
        rows = json.dumps([encode(r) for r in results])
        with self._lock, sqlitedb.transaction(self._db):
            pushed = self._db.execute(
                "INSERT INTO spool (batch_id, columns, rows, count) VALUES (?, ?, ?, ?)",
                (batch_id, ",".join(COLUMNS), rows, len(results)),
            ).lastrowid
            assert pushed is not None
            if len(self._recent) < RECENT_BATCHES:
                self._recent[pushed] = list(results)
            self._count += len(results)
            dropped = 0
            while self._count > self.max_results:
                seq, count = self._db.execute(
                    "SELECT seq, count FROM spool ORDER BY seq LIMIT 1"
                ).fetchone()
                self._db.execute("DELETE FROM spool WHERE seq = ?", (seq,))
                self._recent.pop(seq, None)
                self._count -= count
                dropped += count
        if dropped:
            log.error("result spool %s full: dropped the %d oldest results", self.path, dropped)
        return pushed

    def head(self) -> tuple[int, str, list[CheckResult]] | None:
        """The oldest batch: its sequence number, id and results."""
        with self._lock:
            row = self._db.execute(
                "SELECT seq, batch_id, columns, rows FROM spool ORDER BY seq LIMIT 1"
            ).fetchone()
            if row is not None and row[0] in self._recent:
                return row[0], row[1], self._recent[row[0]]
        if row is None:
            return None
        seq, batch_id, columns, rows = row
        if columns != ",".join(COLUMNS):
            # Spooled by another version of llmpulse: keep it aside for a human, don't guess.
            log.error("result spool %s: batch %s has other columns; set aside", self.path, seq)
            self._set_aside(seq)
            return self.head()
        return seq, batch_id, [decode(values) for values in json.loads(rows)]

    def pop(self, seq: int) -> None:
        with self._lock, sqlitedb.transaction(self._db):
            row = self._db.execute("SELECT count FROM spool WHERE seq = ?", (seq,)).fetchone()
            if row is not None:
                self._db.execute("DELETE FROM spool WHERE seq = ?", (seq,))
                self._count -= row[0]
            self._recent.pop(seq, None)

    def _set_aside(self, seq: int) -> None:
        with self._lock, sqlitedb.transaction(self._db):
            self._db.execute("CREATE TABLE IF NOT EXISTS set_aside AS SELECT * FROM spool WHERE 0")
            self._db.execute("INSERT INTO set_aside SELECT * FROM spool WHERE seq = ?", (seq,))
            count = self._db.execute("SELECT count FROM spool WHERE seq = ?", (seq,)).fetchone()
            self._db.execute("DELETE FROM spool WHERE seq = ?", (seq,))
            self._count -= count[0] if count else 0

    def close(self) -> None:
        with self._lock:
            self._db.close()


def spool_for(location: str | Path, writer: str) -> Spool:
    """The spool of ``writer`` (an agent's or gateway's name) writing to ``location``: beside the
    local SQLite file (for PostgreSQL, the default one). One per writer and database: processes
    sharing a host each replay their own batches, and only into the database they were for.
    A spool that cannot be opened is ``UnwritableError``: without one, nothing is safe."""
    local = local_path(location)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", writer)
    where = hashlib.sha256(redact_url(str(location)).encode()).hexdigest()[:8]
    path = local.with_name(f"{local.stem}-spool-{name}-{where}.db")
    try:
        return Spool(path)
    except (sqlite3.Error, OSError) as exc:
        raise UnwritableError(f"the result spool {path} cannot be opened: {exc}") from None


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

    def drain(self) -> bool:
        """Replay spooled batches in order; False if the store still refuses (it is tried
        again after a growing pause, not on every call)."""
        with self._lock:
            if len(self.spool) and self.refusing:
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
        except (*DATABASE_ERRORS, OSError) as exc:
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
    does: a slow or absent store only keeps the writer waiting.
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

    def close(self, timeout: float = 10.0) -> None:
        """Cut what was added, give it to the store (or the spool) and replay the spool for up
        to ``timeout`` s, then close the spool; what the store did not take by then waits in it
        for the next start."""
        self._stop.set()
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
        # Cuts on a fixed cadence: a slow commit shortens the next wait, not the bound.
        due = time.monotonic()
        while not self._stop.is_set():
            due += self._every
            self._stop.wait(max(0.0, due - time.monotonic()))
            try:
                self._cut()
            except Exception:  # a bug must not stop the recording: what was cut is logged lost
                log.exception("recording results failed")

    def _cut(self) -> None:
        batch = [self._added.popleft() for _ in range(len(self._added))]
        with self._lock:
            handed = self._handed
            # The batch handed at the last cut and still unconfirmed goes to disk now, and
            # before any batch behind it, so the spool keeps their order.
            if handed is not None and (batch or time.monotonic() - handed.at >= self._every / 2):
                self._spool_handed()
            if not batch:
                return
            if handed is None and not len(self.writer.spool) and not self.writer.refusing:
                self._handed = _Handed(self.writer.new_id(), batch, time.monotonic())
            else:
                self._keep(batch)
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
            try:
                self._write_handed()
                self.writer.drain()
            except Exception:  # a bug must not stop the recording: the spool keeps the results
                log.exception("writing results to the store failed")
            if final and self._handed is None:
                return
            # Woken by each batch cut; without traffic, a refusing store is retried anyway.
            self._wake.wait(RETRY_MIN_S)

    def _write_handed(self) -> None:
        handed = self._handed
        if handed is None:
            return
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
