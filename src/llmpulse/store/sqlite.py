"""SQLite store: one file, WAL journal, its schema migrated forward on open."""

from __future__ import annotations

import contextlib
import math
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from llmpulse.config.storage import default_path
from llmpulse.store import migrations, sqlitedb
from llmpulse.store.sqlite_rollup import SQLiteDialect
from llmpulse.store.sqlstore import COLUMNS, Conn, SQLStore

_INSERT = f"INSERT INTO results ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


class _Conn:
    """The one connection, behind the store's lock."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def all(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return self._db.execute(sql, args).fetchall()

    def run(self, sql: str, args: Sequence[object] = ()) -> int:
        return self._db.execute(sql, args).rowcount

    def many(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        self._db.executemany(sql, rows)


class SQLiteStore(SQLStore[_Conn]):
    dialect = SQLiteDialect()

    def __init__(self, path: str | Path | None = None) -> None:
        super().__init__()
        self.path = Path(path) if path is not None else default_path()
        self._lock = threading.Lock()
        self._db = sqlitedb.connect(self.path)
        self._db.row_factory = None  # plain tuples: several times faster than sqlite3.Row
        self._conn = _Conn(self._db)
        _ensure_math_functions(self._db)
        with self._lock:
            migrations.migrate_sqlite(self._db, self.path)

    @property
    def location(self) -> Path:
        return self.path

    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute(migrations.CURRENT_REVISION_SQL).fetchone()[0])

    @contextlib.contextmanager
    def _reading(self) -> Iterator[_Conn]:
        with self._lock:
            yield self._conn

    @contextlib.contextmanager
    def _writing(self) -> Iterator[_Conn]:
        with self._lock, sqlitedb.transaction(self._db):
            yield self._conn

    def _insert_results(self, conn: _Conn, rows: list[tuple[object, ...]]) -> None:
        conn.many(_INSERT, rows)

    def _prune_results(self, conn: Conn, raw_cut: float) -> int:
        results = conn.run("DELETE FROM results WHERE ts < ?", (raw_cut,))
        # Without AUTOINCREMENT, SQLite reuses ids above the largest one left: lower the
        # late-row marker to it, or rows written next would look already rolled up.
        conn.run(
            "UPDATE rollup_state SET last_id = min(last_id, "
            "(SELECT coalesce(max(id), 0) FROM results)), "
            "pruned_before = max(coalesce(pruned_before, ?), ?)",
            (raw_cut, raw_cut),
        )
        return results

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _ensure_math_functions(db: sqlite3.Connection) -> None:
    """Sketch keys need log2 and ceil, absent when SQLite was built without math functions."""
    try:
        db.execute("SELECT log2(2.0), ceil(0.5)").fetchone()
    except sqlite3.OperationalError:
        db.create_function("log2", 1, math.log2, deterministic=True)
        db.create_function("ceil", 1, math.ceil, deterministic=True)
