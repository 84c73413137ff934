"""Which process evaluates alerts and sends notifications: exactly one at a time.

Several agents may probe into one shared store, but an incident must page once. Every agent runs
for leadership; the leader evaluates the rules over every agent's results and owns delivery.

- PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) held on a dedicated
  connection. The lock belongs to the session, so when the leader dies or its connection breaks
  PostgreSQL releases it and another agent takes over on its next try. Server-side TCP
  keepalives make PostgreSQL notice a vanished leader (killed host, cut network) in seconds
  rather than after the kernel's two hours. A leader that cannot reach the database steps down at
  once: it cannot know whether the server still counts its session.
- SQLite (one machine): an exclusive ``flock`` on a file beside the database, released by the
  kernel when the holder exits, however it exits.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import Callable
from pathlib import Path

import psycopg

from llmpulse.config.storage import is_postgres

log = logging.getLogger(__name__)

RETRY_S = 1.0  # how often a follower tries to take over, and a leader checks its session
# Server-side keepalives: a leader whose host vanished loses the lock within about 5 + 3 × 2 s.
_KEEPALIVE_SQL = (
    "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3"
)


class Leadership(abc.ABC):
    """Runs for leadership until stopped; ``is_leader`` says whether this process leads now."""

    def __init__(self, retry_s: float = RETRY_S) -> None:
        self.retry_s = retry_s
        self.is_leader = False
        self._changed: list[Callable[[bool], None]] = []

    def on_change(self, callback: Callable[[bool], None]) -> None:
        """``callback(is_leader)`` on every change, from the event loop."""
        self._changed.append(callback)

    def _set(self, leader: bool) -> None:
        if leader == self.is_leader:
            return
        self.is_leader = leader
        log.warning("%s alert leadership (%s)", "took" if leader else "lost", self.describe())
        for callback in self._changed:
            callback(leader)

    async def run(self, stop: asyncio.Event) -> None:
        """Take the lead when free, keep checking it, give it up when ``stop`` is set."""
        try:
            while not stop.is_set():
                try:
                    self._set(await self._hold())
                except Exception as exc:  # a broken connection or file: step down, try again
                    log.warning("leadership check failed: %s", exc)
                    self._set(False)
                    await self._reset()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.retry_s)
        finally:
            self._set(False)
            await self._reset()

    @abc.abstractmethod
    async def _hold(self) -> bool:
        """Take the lead if free, or confirm it is still held; True while this process leads."""

    @abc.abstractmethod
    async def _reset(self) -> None:
        """Drop whatever holds or tries for the lead (a lost lead is never kept by accident)."""

    @abc.abstractmethod
    def describe(self) -> str: ...


class PostgresLeadership(Leadership):
    def __init__(
        self,
        url: str,
        name: str = "llmpulse-alerts",
        retry_s: float = RETRY_S,
        holder: str = "llmpulse",
    ) -> None:
        super().__init__(retry_s)
        self.url = url.replace("postgresql+psycopg://", "postgresql://", 1)
        self.name = name
        # Shown in pg_stat_activity: which agent leads is one query away for an operator.
        self.application_name = f"llmpulse leader {holder}"[:63]
        self._conn: psycopg.AsyncConnection | None = None

    def describe(self) -> str:
        return f"PostgreSQL advisory lock {self.name!r}"

    async def _hold(self) -> bool:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self.url,
                autocommit=True,
                connect_timeout=max(2, int(self.retry_s * 2)),
                application_name=self.application_name,
            )
            await self._conn.execute(_KEEPALIVE_SQL)
        if self.is_leader:
            # Still ours while the session lives: a round trip proves that it does.
            await asyncio.wait_for(self._conn.execute("SELECT 1"), self.retry_s * 2)
            return True
        # Keyed by name and schema: deployments (and tests) sharing a database in separate
        # schemas elect separately.
        cursor = await self._conn.execute(
            "SELECT pg_try_advisory_lock(hashtext(%s || ':' || current_schema()))", (self.name,)
        )
        row = await cursor.fetchone()
        return bool(row and row[0])

    async def _reset(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()  # ends the session, which releases the lock


class FileLeadership(Leadership):
    def __init__(self, path: Path, retry_s: float = RETRY_S) -> None:
        super().__init__(retry_s)
        self.path = path
        self._fd: int | None = None

    def describe(self) -> str:
        return f"lock file {self.path}"

    async def _hold(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    async def _reset(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock


def leadership_for(
    location: str | Path, local: Path, holder: str, retry_s: float = RETRY_S
) -> Leadership:
    """The election that fits the store at ``location``: PostgreSQL's advisory lock, or a lock
    file beside ``local`` (the SQLite file). ``holder`` names this process."""
    if is_postgres(location):
        return PostgresLeadership(str(location), retry_s=retry_s, holder=holder)
    return FileLeadership(local.with_name(local.name + ".leader"), retry_s=retry_s)
