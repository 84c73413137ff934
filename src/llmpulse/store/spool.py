"""Results on their way to the store, kept on local disk until the store has them.

A process writing results (``store.writer.Recording``) commits to its spool what the store has
not confirmed within the bound, and replays it into the store, oldest batch first. Every batch
carries an id the store records with it (``write_results``'s ``batch_id``), so a batch whose
commit went through while its acknowledgement was lost is skipped on replay: nothing is lost,
nothing is written twice.

The spool is bounded (``max_results``): beyond it the oldest batches are dropped, with an error
in the log, rather than filling the disk. It is a local queue, not a schema with a history: the
file holds the store's own row encoding (``sqlstore.encode``), and a file from an older version
that cannot be read is set aside, never replayed wrongly. One process at a time writes through
a spool file (``spool_for``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from llmpulse.config.storage import redact_url
from llmpulse.result import CheckResult
from llmpulse.store import UnwritableError, local_path, sqlitedb
from llmpulse.store.sqlstore import COLUMNS, decode, encode

log = logging.getLogger(__name__)

MAX_RESULTS = 1_000_000  # about 400 MB of rows: hours of a large fleet's probes
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
    """``lock``: a descriptor holding the file's ``flock`` (``spool_for``), let go on close."""

    def __init__(
        self, path: Path, max_results: int = MAX_RESULTS, *, lock: int | None = None
    ) -> None:
        self.path = path
        self.max_results = max_results
        self._held = lock
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
        spooled = columns.split(",")
        if tuple(spooled) != COLUMNS[: len(spooled)]:
            # Spooled by another version of llmpulse: keep it aside for a human, don't guess.
            log.error("result spool %s: batch %s has other columns; set aside", self.path, seq)
            self._set_aside(seq)
            return self.head()
        # An earlier release's batch lacks the columns added since, which are all nullable.
        missing = [None] * (len(COLUMNS) - len(spooled))
        return seq, batch_id, [decode([*values, *missing]) for values in json.loads(rows)]

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
            if self._held is not None:
                os.close(self._held)  # closing the descriptor releases the lock
                self._held = None


def spool_for(location: str | Path, writer: str) -> Spool:
    """The spool of ``writer`` (an agent's, a gateway's or an SDK process's name) writing to
    ``location``: beside the local SQLite file (for PostgreSQL, the default one). One per writer
    and database: processes sharing a host each replay their own batches, and only into the
    database they were for. Each is held by one ``Spool`` at a time (an exclusive ``flock``,
    freed however the process ends): another process, or recording, of the same writer and
    database takes the next free one (``-2``, ``-3``...), so none replays batches another is
    writing, and what a killed one left is replayed by the next to take its place.
    A spool that cannot be opened is ``UnwritableError``: without one, nothing is safe."""
    local = local_path(location)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", writer)
    where = hashlib.sha256(redact_url(str(location)).encode()).hexdigest()[:8]
    stem = f"{local.stem}-spool-{name}-{where}"
    n = 1
    while True:
        path = local.with_name(f"{stem}.db" if n == 1 else f"{stem}-{n}.db")
        try:
            spool = _claim(path)
        except (sqlite3.Error, OSError) as exc:
            raise UnwritableError(f"the result spool {path} cannot be opened: {exc}") from None
        if spool is not None:
            return spool
        n += 1


def _claim(path: Path) -> Spool | None:
    """The spool at ``path``, held by the returned ``Spool`` alone; None while another holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    try:
        return Spool(path, lock=fd)
    except BaseException:
        os.close(fd)
        raise
