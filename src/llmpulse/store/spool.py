"""Results the store could not take yet, kept on local disk until it can.

An agent or gateway whose database is unreachable, or restarting, goes on measuring: each batch
it could not write waits in a SQLite file beside it, oldest first, and is replayed in order once
the database answers. Every batch carries an id the store records with it (``write_results``'s
``batch_id``), so a batch whose commit went through while its acknowledgement was lost is
skipped on replay: nothing is lost, nothing is written twice.

The spool is bounded (``max_results``): beyond it the oldest batches are dropped, with an error
in the log, rather than filling the disk. It is a local queue, not a schema with a history: the
file holds the store's own row encoding (``sqlstore.encode``), and a file from an older version
that cannot be read is set aside, never replayed wrongly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from llmpulse.result import CheckResult
from llmpulse.store import DATABASE_ERRORS, local_path, redact_url, sqlitedb
from llmpulse.store.base import Store
from llmpulse.store.sqlstore import COLUMNS, decode, encode

log = logging.getLogger(__name__)

MAX_RESULTS = 1_000_000  # about 400 MB of rows: hours of a large fleet's probes
# Pauses between attempts to reach a database that refused: it is not hammered while down.
RETRY_MIN_S, RETRY_MAX_S = 0.5, 8.0
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

    def __len__(self) -> int:
        """Results waiting."""
        return self._count

    def push(self, batch_id: str, results: Sequence[CheckResult]) -> None:
        rows = json.dumps([encode(r) for r in results])
        with self._lock, sqlitedb.transaction(self._db):
            self._db.execute(
                "INSERT INTO spool (batch_id, columns, rows, count) VALUES (?, ?, ?, ?)",
                (batch_id, ",".join(COLUMNS), rows, len(results)),
            )
            self._count += len(results)
            dropped = 0
            while self._count > self.max_results:
                seq, count = self._db.execute(
                    "SELECT seq, count FROM spool ORDER BY seq LIMIT 1"
                ).fetchone()
                self._db.execute("DELETE FROM spool WHERE seq = ?", (seq,))
                self._count -= count
                dropped += count
        if dropped:
            log.error("result spool %s full: dropped the %d oldest results", self.path, dropped)

    def head(self) -> tuple[int, str, list[CheckResult]] | None:
        """The oldest batch: its sequence number, id and results."""
        with self._lock:
            row = self._db.execute(
                "SELECT seq, batch_id, columns, rows FROM spool ORDER BY seq LIMIT 1"
            ).fetchone()
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
    sharing a host each replay their own batches, and only into the database they were for."""
    local = local_path(location)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", writer)
    where = hashlib.sha256(redact_url(str(location)).encode()).hexdigest()[:8]
    return Spool(local.with_name(f"{local.stem}-spool-{name}-{where}.db"))


class ResultWriter:
    """Writes batches to the store, through the spool whenever the store refuses.

    Blocking, so call it from worker threads; calls are serialised (a flush abandoned by a
    cancelled task still runs in its thread while shutdown flushes again). Batches keep their
    order: while any wait in the spool, new ones queue behind them.
    """

    def __init__(
        self, store: Store, spool: Spool, writer: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.spool = spool
        # Batch ids are unique per writer process and run.
        self._prefix = f"{writer}:{uuid.uuid4().hex[:12]}:"
        self._next = 0
        self._clock = clock
        self._retry_at = 0.0
        self._backoff = RETRY_MIN_S
        self._lock = threading.RLock()

    def write(self, results: Sequence[CheckResult]) -> None:
        with self._lock:
            self._write(results)

    def _write(self, results: Sequence[CheckResult]) -> None:
        if results:
            self._next += 1
            batch_id = f"{self._prefix}{self._next}"
            if not len(self.spool) and self._try(batch_id, results):
                return
            self.spool.push(batch_id, results)
        self._drain()

    def drain(self) -> bool:
        """Replay spooled batches in order; False if the store still refuses (it is tried
        again after a growing pause, not on every call)."""
        with self._lock:
            return self._drain()

    def _drain(self) -> bool:
        if len(self.spool) and self._clock() < self._retry_at:
            return False
        replayed = 0
        while (head := self.spool.head()) is not None:
            seq, batch_id, results = head
            if not self._try(batch_id, results):
                return False
            self.spool.pop(seq)
            replayed += len(results)
        if replayed:
            log.warning("results database back: replayed %d spooled results", replayed)
        return True

    def _try(self, batch_id: str, results: Sequence[CheckResult]) -> bool:
        try:
            self.store.write_results(results, batch_id=batch_id)
        except (*DATABASE_ERRORS, OSError) as exc:
            if self._backoff == RETRY_MIN_S:
                log.warning("results database unwritable: %s; spooling results locally", exc)
            self._retry_at = self._clock() + self._backoff
            self._backoff = min(RETRY_MAX_S, self._backoff * 2)
            return False
        self._backoff = RETRY_MIN_S
        return True
