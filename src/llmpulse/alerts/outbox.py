"""The delivery outbox: every notification is written down before any channel is tried.

A channel that is down delays nothing else and loses nothing; its alerts are delivered when it
comes back, in the order they were raised, also across a restart and a change of leader. One
table holds one row per notification and notifier: in a SQLite file (WAL) beside SQLite
results, or in the PostgreSQL database the agents share, where the next leader takes over
what the last one left undelivered.

- Each notifier has its own worker. It delivers that notifier's rows strictly in id order
  (head of line), so a "resolved" never overtakes its "firing"; notifiers never wait for
  each other.
- A retryable failure backs off exponentially with jitter (1 s, 2 s, 4 s … at most 5 min),
  never sooner than the receiver's Retry-After. A permanent failure (a revoked webhook, a
  rejected recipient) marks the row failed, keeps it with its error, and moves on.
- ``enqueue`` wakes the workers at once; they also look every ``poll_interval_s`` for rows
  written by another process (``llmpulse notify test``).
- A row is claimed before it is sent: one statement sets ``claimed_by`` (this process) and
  ``claimed_until`` (now + ``lease_s``) on the notifier's head row, only if that row is due
  and unclaimed or its claim has expired; the outcome is recorded by the claim's holder
  only, and clears the claim. PostgreSQL re-checks those conditions on the locked row when
  two claims race, SQLite runs them one at a time (its single writer), so when two processes
  briefly both deliver (a leader handover) each row is sent by one of them, and a later row
  is never claimed while the head is in flight, so order holds across processes too.
- The boundary: no two live processes send a row at once, but delivery is at least once,
  not exactly once. A row is sent again when its outcome is unknown: the receiver accepted
  it but its answer was lost (a timeout is retried), or the process was killed after the
  receiver accepted it and before marking it delivered. Such a claim expires after
  ``lease_s`` and the next process (the next leader, or this one restarted) sends the row
  once more; ``close`` releases the claims of attempts cut short at shutdown at once. A
  holder slower than its lease (far beyond the notifiers' 10 s timeouts) can be overtaken
  likewise; it logs that it lost the claim. Leases compare the agents' wall clocks, which
  must agree to well within ``lease_s``.
- Delivered and failed rows are history; they are pruned after 30 days.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import aiohttp
import sqlalchemy as sa

from llmpulse.alerts import migrations
from llmpulse.alerts.model import Notification
from llmpulse.alerts.notifiers.base import DeliveryError, Notifier
from llmpulse.alerts.state import state_locations
from llmpulse.secrets import NO_SECRETS, Redactor

log = logging.getLogger(__name__)

RETENTION_S = 30 * 86400.0
# Far beyond the notifiers' timeouts: a live holder finishes (and marks) its attempt first.
LEASE_S = 120.0
_RETRY_AFTER_MAX_S = 3600.0  # a Retry-After beyond this is a receiver bug, not a plan
_PRUNE_EVERY_S = 3600.0
_PENDING = "delivered_at IS NULL AND failed_at IS NULL"
_COLUMNS = (
    "id, notifier, payload, created_at, attempts, next_attempt_at, delivered_at, failed_at, "
    "last_error, answer"
)
# The notifier's head row, if it is due and not claimed by a live holder (see the docstring).
_CLAIM = sa.text(
    f"UPDATE outbox SET claimed_by = :me, claimed_until = :until WHERE id = ("
    f"SELECT id FROM outbox WHERE notifier = :notifier AND {_PENDING} ORDER BY id LIMIT 1) "
    f"AND {_PENDING} AND next_attempt_at <= :now "
    f"AND (claimed_until IS NULL OR claimed_until <= :now OR claimed_by = :me) "
    f"RETURNING {_COLUMNS}"
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
    """Thread-safe: every call takes its own pooled connection and transaction."""

    def __init__(
        self,
        location: str | Path,
        *,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 300.0,
        poll_interval_s: float = 5.0,
        retention_s: float = RETENTION_S,
        lease_s: float = LEASE_S,
        redactor: Redactor = NO_SECRETS,
    ) -> None:
        """``location``: the SQLite file, or the PostgreSQL URL. What receivers answer (and
        errors quoting them) passes ``redactor`` before it is kept or logged."""
        self.location = location
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.poll_interval_s = poll_interval_s
        self.retention_s = retention_s
        self.lease_s = lease_s
        self.redact = redactor
        # Names this process's claims (and, in a log, its host and pid).
        self.claimant = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # FULL: an enqueued alert must survive a power cut, and alerts are few.
        self._engine = migrations.open_engine(location, migrations.OUTBOX, synchronous="FULL")
        # Set by run(); enqueue() uses them to wake the workers, drain() to deliver.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: dict[str, asyncio.Event] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._notifiers: Sequence[Notifier] = ()
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def open(cls, storage: str | Path, **options: Any) -> Outbox:
        """The outbox that belongs with the results ``storage`` (path or URL)."""
        return cls(state_locations(storage)[1], **options)

    # -- schema -------------------------------------------------------------------------------

    def schema_version(self) -> int:
        return int(migrations.revision(self._engine, migrations.OUTBOX) or 0)

    # -- writing ------------------------------------------------------------------------------

    def enqueue(self, notification: Notification, notifier_names: Iterable[str]) -> list[int]:
        """Record one row per notifier, committed before returning; returns the row ids."""
        names = list(dict.fromkeys(notifier_names))
        payload = json.dumps({**notification.to_json(), "test": notification.test})
        now = time.time()
        insert = sa.text(
            "INSERT INTO outbox (notifier, payload, created_at, attempts, next_attempt_at) "
            "VALUES (:notifier, :payload, :now, 0, :now) RETURNING id"
        )
        with self._engine.begin() as conn:
            ids = [
                conn.execute(insert, {"notifier": n, "payload": payload, "now": now}).scalar_one()
                for n in names
            ]
        self._wake_up(names)
        return ids

    def prune(self, now: float | None = None) -> int:
        """Delete delivered and failed rows older than the retention; returns how many."""
        cutoff = (time.time() if now is None else now) - self.retention_s
        with self._engine.begin() as conn:
            cursor = conn.execute(
                sa.text("DELETE FROM outbox WHERE delivered_at < :cutoff OR failed_at < :cutoff"),
                {"cutoff": cutoff},
            )
        return cursor.rowcount

    def close(self) -> None:
        """Releases the claims of attempts cut short (by ``drain``'s timeout): the next process
        sends those rows again, without waiting out the lease."""
        try:
            self._release_claims()
        except sa.exc.SQLAlchemyError as exc:
            log.warning("outbox: claims not released (they expire in %g s): %s", self.lease_s, exc)
        finally:
            self._engine.dispose()

    # -- reading ------------------------------------------------------------------------------

    def pending(self, notifier: str | None = None) -> list[OutboxItem]:
        """Rows still to deliver (including those waiting out a backoff), oldest first."""
        sql = f"SELECT {_COLUMNS} FROM outbox WHERE {_PENDING}"
        args: dict[str, object] = {}
        if notifier is not None:
            sql += " AND notifier = :notifier"
            args["notifier"] = notifier
        with self._engine.connect() as conn:
            rows = conn.execute(sa.text(sql + " ORDER BY id"), args).all()
        return _readable(rows)

    def history(self, limit: int = 100) -> list[OutboxItem]:
        """The most recent rows of every status, newest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.text(f"SELECT {_COLUMNS} FROM outbox ORDER BY id DESC LIMIT :limit"),
                {"limit": limit},
            ).all()
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
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(
                self._report_orphans({n.name for n in notifiers}), name="outbox:orphans"
            )
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
                # In a thread: a database that is slow to answer must not stall the event loop.
                item = await asyncio.to_thread(self._claim, notifier.name)
                if item is None:
                    due_in = await asyncio.to_thread(self._due_in, notifier.name)
                    if due_in is None or due_in > 0:
                        return due_in
                    continue  # the head became due or its claim expired meanwhile
                await self._attempt(notifier, item)
        return None

    async def _attempt(self, notifier: Notifier, item: OutboxItem) -> None:
        assert self._session is not None
        attempts = item.attempts + 1
        try:
            answer = self.redact.clipped(await notifier.send(item.notification, self._session))
        except DeliveryError as exc:
            error, retryable, retry_after = str(exc), exc.retryable, exc.retry_after_s
        except Exception as exc:  # a bug in one channel must not stop the outbox
            if attempts == 1:
                log.exception("notifier %r failed unexpectedly", notifier.name)
            error, retryable, retry_after = f"{type(exc).__name__}: {exc}", True, None
        else:
            await self._record(item.id, attempts, delivered_at=time.time(), answer=answer)
            if attempts > 1:
                log.info(
                    "%s %r: delivered after %d attempts", notifier.type, notifier.name, attempts
                )
            return
        error = self.redact.clipped(error)  # it quotes the receiver's answer
        if not retryable:
            await self._record(item.id, attempts, failed_at=time.time(), error=error)
            log.error("%s; not retried (kept in the outbox as failed)", error)
            return
        delay = self._backoff(attempts, retry_after)
        await self._record(item.id, attempts, next_attempt_at=time.time() + delay, error=error)
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
            try:
                removed = await asyncio.to_thread(self.prune)
            except sa.exc.SQLAlchemyError as exc:
                # The queue's storage failed (locked, disk full): pruning waits for its next
                # turn; it must not take delivery down with it.
                log.warning("outbox: pruning failed (%s); trying again later", type(exc).__name__)
                removed = 0
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

    def _claim(self, notifier: str) -> OutboxItem | None:
        """The notifier's head row, claimed for this process, if it is due and unclaimed."""
        now = time.time()
        args = {"me": self.claimant, "until": now + self.lease_s, "notifier": notifier, "now": now}
        with self._engine.begin() as conn:
            row = conn.execute(_CLAIM, args).one_or_none()
        if row is None:
            return None
        try:
            return _item(row)
        except (ValueError, KeyError, TypeError) as exc:
            # A row this version cannot read must not block its channel forever.
            self._finish(row.id, row.attempts, failed_at=now, error=f"unreadable outbox row: {exc}")
            return self._claim(notifier)

    def _due_in(self, notifier: str) -> float | None:
        """Seconds until the head row is due and unclaimed (None: nothing pending)."""
        with self._engine.connect() as conn:
            head = conn.execute(
                sa.text(
                    "SELECT next_attempt_at, claimed_by, claimed_until FROM outbox "
                    f"WHERE notifier = :notifier AND {_PENDING} ORDER BY id LIMIT 1"
                ),
                {"notifier": notifier},
            ).one_or_none()
        if head is None:
            return None
        free_at: float = head.next_attempt_at
        if head.claimed_until is not None and head.claimed_by != self.claimant:
            free_at = max(free_at, head.claimed_until)
        return free_at - time.time()

    async def _record(self, row_id: int, attempts: int, **outcome: Any) -> None:
        await asyncio.to_thread(self._finish, row_id, attempts, **outcome)

    def _finish(
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
        """Record an attempt's outcome and release the claim, if this process still holds it."""
        with self._engine.begin() as conn:
            cursor = conn.execute(
                sa.text(
                    "UPDATE outbox SET attempts = :attempts, "
                    "next_attempt_at = COALESCE(:next_attempt_at, next_attempt_at), "
                    "delivered_at = :delivered_at, failed_at = :failed_at, "
                    "last_error = COALESCE(:error, last_error), answer = :answer, "
                    "claimed_by = NULL, claimed_until = NULL WHERE id = :id AND claimed_by = :me"
                ),
                {"attempts": attempts, "next_attempt_at": next_attempt_at,
                 "delivered_at": delivered_at, "failed_at": failed_at, "error": error,
                 "answer": answer, "id": row_id, "me": self.claimant},
            )  # fmt: skip
        if cursor.rowcount == 0:
            log.warning(
                "outbox row %d: its claim expired during the attempt and another process took "
                "it over; that process records the outcome (the alert may arrive twice)",
                row_id,
            )

    def _release_claims(self) -> None:
        """Hand rows this process claimed but did not finish to the next process at once."""
        with self._engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE outbox SET claimed_by = NULL, claimed_until = NULL "
                    f"WHERE claimed_by = :me AND {_PENDING}"
                ),
                {"me": self.claimant},
            )

    async def _report_orphans(self, configured: set[str]) -> None:
        """Say which undelivered rows no configured notifier will take: beside delivery, off
        the loop, and only said (storage locked or away now must not stop delivery)."""

        def pending() -> list[tuple[str, int]]:
            with self._engine.connect() as conn:
                rows = conn.execute(
                    sa.text(
                        f"SELECT notifier, COUNT(*) FROM outbox WHERE {_PENDING} GROUP BY notifier"
                    )
                ).all()
            return [(row[0], row[1]) for row in rows]

        try:
            rows = await asyncio.to_thread(pending)
        except sa.exc.SQLAlchemyError as exc:
            log.warning(
                "outbox: could not look for alerts of unconfigured notifiers (%s)",
                type(exc).__name__,
            )
            return
        for name, count in rows:
            if name not in configured:
                log.warning(
                    "outbox: %d undelivered alert(s) for notifier %r, which is not configured; "
                    "kept until it is",
                    count,
                    name,
                )


def _readable(rows: Sequence[sa.Row[Any]]) -> list[OutboxItem]:
    """Rows as items, leaving out (and logging) any this version cannot read."""
    items = []
    for row in rows:
        try:
            items.append(_item(row))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("outbox row %s is unreadable: %s", row.id, exc)
    return items


def _item(row: sa.Row[Any]) -> OutboxItem:
    return OutboxItem(
        id=row.id,
        notifier=row.notifier,
        notification=Notification.from_json(json.loads(row.payload)),
        created_at=row.created_at,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        delivered_at=row.delivered_at,
        failed_at=row.failed_at,
        last_error=row.last_error,
        answer=row.answer,
    )


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
