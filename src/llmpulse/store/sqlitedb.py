"""Opening and migrating an llmpulse SQLite file: one way for the results, alerts and outbox.

Each file's schema is an ordered tuple of SQL scripts; ``PRAGMA user_version`` records how many
have been applied. Never edit a released script: append one.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlalchemy as sa


def connect(path: Path, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """A WAL-mode connection usable from worker threads (callers serialise with a lock)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("PRAGMA busy_timeout=5000")
    return db


def engine(path: Path, synchronous: str = "NORMAL") -> sa.Engine:
    """A SQLAlchemy engine on the file whose every transaction is BEGIN IMMEDIATE: a writer
    waits for the lock (busy timeout 5 s) instead of failing to upgrade a read lock."""
    import sqlalchemy as sa

    created = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 5.0})

    @sa.event.listens_for(created, "connect")
    def _connect(conn: sqlite3.Connection, _: object) -> None:
        conn.isolation_level = None  # pysqlite's own BEGIN skips DDL: issue it ourselves
        conn.execute(f"PRAGMA synchronous={synchronous}")

    @sa.event.listens_for(created, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return created


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if db.in_transaction:  # SQLite may have rolled back itself (disk full, I/O error)
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def migrate(db: sqlite3.Connection, migrations: Sequence[str], path: Path) -> None:
    """Apply the scripts not yet applied, each in its own transaction; refuse a newer file."""
    version = schema_version(db)
    if version > len(migrations):
        raise RuntimeError(
            f"{path} has schema version {version}, newer than this llmpulse understands "
            f"({len(migrations)}); upgrade llmpulse"
        )
    for number in range(version, len(migrations)):
        with transaction(db):
            for statement in migrations[number].split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {number + 1}")


def schema_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])
