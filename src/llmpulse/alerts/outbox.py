"""The delivery outbox: every notification is written down before any channel is tried.

A channel that is down delays nothing else and loses nothing; its alerts are delivered when it
comes back, in the order they were raised, also across a restart. One SQLite file (WAL) holds
one row per notification and notifier:

- Each notifier has its own worker. It delivers that notifier's rows strictly in id order
  (head of line), so a "resolved" never overtakes its "firing"; notifiers never wait for
  each other.
- A retryable failure backs off exponentially with jitter (1 s, 2 s, 4 s … at most 5 min),
  never sooner than the receiver's Retry-After. A permanent failure (a revoked webhook, a
  rejected recipient) marks the row failed, keeps it with its error, and moves on.
- ``enqueue`` wakes the workers at once; they also look every ``poll_interval_s`` for rows
  written by another process (``llmpulse notify test``).
- Delivery is at least once: a process killed after the receiver accepted an alert but before
  the row was marked delivered sends it again after the restart.
- Delivered and failed rows are history; they are pruned after 30 days.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import aiohttp

from llmpulse.alerts.model import Notification
from llmpulse.alerts.notifiers.base import DeliveryError, Notifier
from llmpulse.store import sqlitedb

log = logging.getLogger(__name__)

# Each entry moves the schema from version i to i+1; never edit a released entry, append one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        notifier TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        delivered_at REAL,
        failed_at REAL,
        last_error TEXT,
        answer TEXT
    );
    CREATE INDEX outbox_pending ON outbox (notifier, id)
        WHERE delivered_at IS NULL AND failed_at IS NULL;
    CREATE INDEX outbox_delivered_at ON outbox (delivered_at);
    CREATE INDEX outbox_failed_at ON outbox (failed_at);
    """,
)

RETENTION_S = 30 * 86400.0
_RETRY_AFTER_MAX_S = 3600.0  # a Retry-After beyond this is a receiver bug, not a plan
_PRUNE_EVERY_S = 3600.0
_PENDING = "delivered_at IS NULL AND failed_at IS NULL"
_COLUMNS = (
    "id, notifier, payload, created_at, attempts, next_attempt_at, delivered_at, failed_at, "
    "last_error, answer"
)


@dataclasses.dataclass(frozen=True, slots=True)
class OutboxItem:
    """One notification for one notifier, and what became of it."""

    id: int
    notifier: str
    notification: Notification
    created_at: float
    attempts: int
    next_attempt_at: float
    delivered_at: float | None
    failed_at: float | None
    last_error: str | None
    answer: str | None

    @property
    def status(self) -> Literal["pending", "delivered", "failed"]:
        if self.delivered_at is not None:
            return "delivered"
        return "failed" if self.failed_at is not None else "pending"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "notifier": self.notifier,
            "status": self.status,
            "notification": {**self.notification.to_json(), "test": self.notification.test},
            "created_at": _iso(self.created_at),
            "attempts": self.attempts,
            "next_attempt_at": _iso(self.next_attempt_at) if self.status == "pending" else None,
            "delivered_at": _iso(self.delivered_at),
            "failed_at": _iso(self.failed_at),
            "last_error": self.last_error,
            "answer": self.answer,
        }


class Outbox:
    def __init__(
        self,
        path: str | Path,
        *,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 300.0,
        poll_interval_s: float = 5.0,
        retention_s: float = RETENTION_S,
    ) -> None:
        self.path = Path(path)
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.poll_interval_s = poll_interval_s
        self.retention_s = retention_s
        self._lock = threading.Lock()
        # FULL: an enqueued alert must survive a power cut, and alerts are few.
        self._db = sqlitedb.connect(self.path, synchronous="FULL")
        with self._lock:
            sqlitedb.migrate(self._db, MIGRATIONS, self.path)
        # Set by run(); enqueue() uses them to wake the workers, drain() to deliver.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: dict[str, asyncio.Event] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._notifiers: Sequence[Notifier] = ()
        self._session: aiohttp.ClientSession | None = None

    # -- schema -------------------------------------------------------------------------------

    def schema_version(self) -> int:
        with self._lock:
            return sqlitedb.schema_version(self._db)

    # -- writing ------------------------------------------------------------------------------

    def enqueue(self, notification: Notification, notifier_names: Iterable[str]) -> list[int]:
        """Record one row per notifier, committed before returning; returns the row ids."""
        names = list(dict.fromkeys(notifier_names))
        payload = json.dumps({**notification.to_json(), "test": notification.test})
        now = time.time()
        ids = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for name in names:
                    cursor = self._db.execute(
                        "INSERT INTO outbox (notifier, payload, created_at, attempts, "
                        "next_attempt_at) VALUES (?, ?, ?, 0, ?)",
                        (name, payload, now, now),
                    )
                    ids.append(int(cursor.lastrowid or 0))
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # SQLite may have rolled back already
                    self._db.execute("ROLLBACK")
                raise
        self._wake_up(names)
        return ids

    def prune(self, now: float | None = None) -> int:
        """Delete delivered and failed rows older than the retention; returns how many."""
        cutoff = (time.time() if now is None else now) - self.retention_s
        with self._lock:
            cursor = self._db.execute(
                "DELETE FROM outbox WHERE delivered_at < ? OR failed_at < ?", (cutoff, cutoff)
            )
        return cursor.rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- reading ------------------------------------------------------------------------------

    def pending(self, notifier: str | None = None) -> list[OutboxItem]:
        """Rows still to deliver (including those waiting out a backoff), oldest first."""
        sql = f"SELECT {_COLUMNS} FROM outbox WHERE {_PENDING}"
        args: tuple[object, ...] = ()
        if notifier is not None:
            sql += " AND notifier = ?"
            args = (notifier,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY id", args).fetchall()
        return _readable(rows)

    def history(self, limit: int = 100) -> list[OutboxItem]:
        """The most recent rows of every status, newest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM outbox ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        return _readable(rows)

    # -- delivering ---------------------------------------------------------------------------

    async def run(
        self,
        notifiers: Sequence[Notifier],
        session: aiohttp.ClientSession,
        stop_event: asyncio.Event,
    ) -> None:
        """Deliver until ``stop_event`` is set; attempts in flight then finish, rows are kept."""
        self._loop = asyncio.get_running_loop()
        self._notifiers = list(notifiers)
        self._session = session
        self._wake = {n.name: asyncio.Event() for n in notifiers}
        self._report_orphans({n.name for n in notifiers})
        async with asyncio.TaskGroup() as tasks:
            for notifier in notifiers:
                tasks.create_task(
                    self._worker(notifier, stop_event), name=f"outbox:{notifier.name}"
                )
            tasks.create_task(self._pruner(stop_event), name="outbox:prune")
            await stop_event.wait()
            for event in self._wake.values():
                event.set()

    async def drain(self, timeout: float) -> int:
        """For shutdown: deliver what is due within ``timeout`` s; returns the rows left.

        Uses the notifiers and session of the last ``run`` (the session must still be open).
        Rows not delivered in time stay pending for the next start; none is lost.
        """
        if self._session is None:
            raise RuntimeError("Outbox.drain() delivers with run()'s notifiers: call run() first")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(self._deliver_due(n, None) for n in self._notifiers))
        return len(self.pending())

    async def _worker(self, notifier: Notifier, stop: asyncio.Event) -> None:
        wake = self._wake[notifier.name]
        while not stop.is_set():
            # Cleared before looking, so an enqueue during delivery is never missed.
            wake.clear()
            try:
                due_in = await self._deliver_due(notifier, stop)
            except Exception:
                # The queue's own storage failed (disk full, locked): this channel waits a poll
                # interval and tries again; the other channels and the rows are unaffected.
                log.exception("outbox for %s failed; retrying", notifier.name)
                due_in = None
            wait = self.poll_interval_s if due_in is None else min(due_in, self.poll_interval_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), wait)

    async def _deliver_due(self, notifier: Notifier, stop: asyncio.Event | None) -> float | None:
        """Deliver this notifier's due rows in order; returns seconds until the head is due."""
        # One attempt at a time per notifier, whether from its worker or from drain().
        lock = self._locks.setdefault(notifier.name, asyncio.Lock())
        while stop is None or not stop.is_set():
            async with lock:
                item = self._head(notifier.name)
                if item is None:
                    return None
                due_in = item.next_attempt_at - time.time()
                if due_in > 0:
                    return due_in
                await self._attempt(notifier, item)
        return None

    async def _attempt(self, notifier: Notifier, item: OutboxItem) -> None:
        assert self._session is not None
        attempts = item.attempts + 1
        try:
            answer = await notifier.send(item.notification, self._session)
        except DeliveryError as exc:
            error, retryable, retry_after = str(exc), exc.retryable, exc.retry_after_s
        except Exception as exc:  # a bug in one channel must not stop the outbox
            if attempts == 1:
                log.exception("notifier %r failed unexpectedly", notifier.name)
            error, retryable, retry_after = f"{type(exc).__name__}: {exc}", True, None
        else:
            self._update(item.id, attempts, delivered_at=time.time(), answer=answer)
            if attempts > 1:
                log.info(
                    "%s %r: delivered after %d attempts", notifier.type, notifier.name, attempts
                )
            return
        if not retryable:
            self._update(item.id, attempts, failed_at=time.time(), error=error)
            log.error("%s; not retried (kept in the outbox as failed)", error)
            return
        delay = self._backoff(attempts, retry_after)
        self._update(item.id, attempts, next_attempt_at=time.time() + delay, error=error)
        # Once per row: an outage of hours must not flood the log.
        if attempts == 1:
            log.warning("%s; retrying with backoff, alerts are kept until delivered", error)

    def _backoff(self, attempts: int, retry_after_s: float | None) -> float:
        exponential = self.backoff_base_s * 2.0 ** min(attempts - 1, 30)
        delay = min(self.backoff_max_s, exponential * random.uniform(0.8, 1.2))
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, _RETRY_AFTER_MAX_S))
        return delay

    async def _pruner(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            removed = self.prune()
            if removed:
                log.info(
                    "outbox: pruned %d rows older than %g days", removed, self.retention_s / 86400
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _PRUNE_EVERY_S)

    def _wake_up(self, names: Iterable[str]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # no run() in this process: its rows are found by polling
        try:
            same_thread = asyncio.get_running_loop() is loop
        except RuntimeError:
            same_thread = False
        for name in names:
            event = self._wake.get(name)
            if event is None:
                continue
            if same_thread:
                event.set()
            else:
                loop.call_soon_threadsafe(event.set)

    def _head(self, notifier: str) -> OutboxItem | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE notifier = ? AND {_PENDING} "
                "ORDER BY id LIMIT 1",
                (notifier,),
            ).fetchone()
        if row is None:
            return None
        try:
            return _item(row)
        except (ValueError, KeyError, TypeError) as exc:
            # A row this version cannot read must not block its channel forever.
            self._update_failed(row["id"], f"unreadable outbox row: {exc}")
            return self._head(notifier)

    def _update_failed(self, row_id: int, error: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET failed_at = ?, last_error = ? WHERE id = ?",
                (time.time(), error, row_id),
            )

    def _update(
        self,
        row_id: int,
        attempts: int,
        *,
        next_attempt_at: float | None = None,
        delivered_at: float | None = None,
        failed_at: float | None = None,
        error: str | None = None,
        answer: str | None = None,
    ) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET attempts = ?, "
                "next_attempt_at = COALESCE(?, next_attempt_at), delivered_at = ?, "
                "failed_at = ?, last_error = COALESCE(?, last_error), answer = ? WHERE id = ?",
                (attempts, next_attempt_at, delivered_at, failed_at, error, answer, row_id),
            )

    def _report_orphans(self, configured: set[str]) -> None:
        with self._lock:
            rows = self._db.execute(
                f"SELECT notifier, COUNT(*) FROM outbox WHERE {_PENDING} GROUP BY notifier"
            ).fetchall()
        for name, count in rows:
            if name not in configured:
                log.warning(
                    "outbox: %d undelivered alert(s) for notifier %r, which is not configured; "
                    "kept until it is",
                    count,
                    name,
                )


def _readable(rows: list[sqlite3.Row]) -> list[OutboxItem]:
    """Rows as items, leaving out (and logging) any this version cannot read."""
    items = []
    for row in rows:
        try:
            items.append(_item(row))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("outbox row %s is unreadable: %s", row["id"], exc)
    return items


def _item(row: sqlite3.Row) -> OutboxItem:
    return OutboxItem(
        id=row["id"],
        notifier=row["notifier"],
        notification=Notification.from_json(json.loads(row["payload"])),
        created_at=row["created_at"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        delivered_at=row["delivered_at"],
        failed_at=row["failed_at"],
        last_error=row["last_error"],
        answer=row["answer"],
    )


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
