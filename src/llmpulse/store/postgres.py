"""PostgreSQL store: the SQLite store's semantics on a server several processes can share.

Results sit in daily range partitions of ``ts`` (created a day ahead as results arrive), so
retention drops whole partitions; with TimescaleDB the migration made ``results`` a hypertable
instead and retention drops its chunks. Rollups are computed by the database, as in SQLite
(``postgres_rollup``). Connections come from a pool: the web layer reads from many threads.
Writers (results, rollups, pruning) take a transaction-scoped advisory lock, so that ids
grow in commit order (the rollup finds late rows by id) and partitions are created once.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import psycopg
from psycopg_pool import ConnectionPool

from llmpulse.config.storage import redact_url, sqlalchemy_url
from llmpulse.store import migrations
from llmpulse.store.postgres_rollup import PostgresDialect
from llmpulse.store.sqlstore import COLUMNS, DAY, Conn, SQLStore

_COPY = f"COPY results ({', '.join(COLUMNS)}) FROM STDIN"
# One writer at a time per schema (tests and deployments may share a database).
_LOCK = "SELECT pg_advisory_xact_lock(hashtext('llmpulse:' || current_schema()))"
_PARTITIONS = (
    "SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid "
    "WHERE i.inhparent = 'results'::regclass"
)


@functools.cache
def _sql(query: str) -> str:
    """The store's ``?`` placeholders in psycopg's style."""
    return query.replace("%", "%%").replace("?", "%s")


class _Conn:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.raw = conn

    def all(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return self.raw.execute(_sql(sql), args).fetchall()

    def run(self, sql: str, args: Sequence[object] = ()) -> int:
        return self.raw.execute(_sql(sql), args).rowcount

    def many(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        if rows:
            with self.raw.cursor() as cursor:
                cursor.executemany(_sql(sql), rows)


class PostgresStore(SQLStore[_Conn]):
    dialect = PostgresDialect()

    def __init__(self, url: str, pool_size: int = 4) -> None:
        super().__init__()
        self.shown = redact_url(url)
        conninfo = url.replace("postgresql+psycopg://", "postgresql://", 1)
        try:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                current = _revision(conn)
        except psycopg.OperationalError as exc:
            raise psycopg.OperationalError(
                f"cannot connect to {self.shown}: {redact_url(str(exc))}"
            ) from None
        migrations.migrate_postgres(sqlalchemy_url(url), self.shown, current)
        # While the server is away, callers fail within seconds (the writer spools, the web
        # answers 503) instead of queueing for the pool's default 30 s; a connection is checked
        # on checkout, so one broken by a server restart is replaced, never handed out.
        self._pool = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True, "connect_timeout": 5},
            timeout=5,
            check=ConnectionPool.check_connection,
            open=True,
        )
        with self._reading() as conn:
            partitioned = conn.all(
                "SELECT 1 FROM pg_partitioned_table WHERE partrelid = 'results'::regclass"
            )
            # Day starts of the existing partitions; None: a TimescaleDB hypertable.
            self._partitions: set[int] | None = (
                {_day(name) for (name,) in conn.all(_PARTITIONS)} if partitioned else None
            )

    @property
    def location(self) -> str:
        return self.shown

    def schema_version(self) -> int:
        with self._pool.connection() as conn:
            return int(_revision(conn) or 0)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[_Conn]:
        with self._pool.connection() as conn:
            yield _Conn(conn)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[_Conn]:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute(_LOCK)
            yield _Conn(conn)

    def _prepare(self, rows: list[tuple[object, ...]]) -> None:
        """Create the partitions the rows need (and the next day's), in their own transaction:
        the cache of them never holds one rolled back."""
        if self._partitions is None:
            return
        days = {math.floor(cast(float, row[0]) / DAY) * DAY for row in rows}  # ts first
        missing = sorted((days | {d + DAY for d in days}) - self._partitions)
        if not missing:
            return
        with self._writing() as conn:
            for day in missing:
                conn.run(
                    f"CREATE TABLE IF NOT EXISTS {_partition(day)} PARTITION OF results "
                    f"FOR VALUES FROM ({day}) TO ({day + DAY})"
                )
        self._partitions.update(missing)

    def _insert_results(self, conn: _Conn, rows: list[tuple[object, ...]]) -> None:
        with conn.raw.cursor() as cursor, cursor.copy(_COPY) as copy:
            for row in rows:
                copy.write_row(row)

    def _prune_results(self, conn: Conn, raw_cut: float) -> int:
        results = 0
        if self._partitions is None:
            # Untested here: no TimescaleDB where this was written.
            conn.run("SELECT drop_chunks('results', older_than => ?)", (math.floor(raw_cut),))
        else:
            for (name,) in conn.all(_PARTITIONS):
                if _day(name) + DAY <= raw_cut:
                    results += conn.all(f"SELECT count(*) FROM {name}")[0][0]
                    conn.run(f"DROP TABLE {name}")
                    # Forgotten before the commit: should it fail, the next write to that day
                    # creates the partition "IF NOT EXISTS", which does nothing.
                    self._partitions.discard(_day(name))
        # The rest of the partition holding the cut.
        results += conn.run("DELETE FROM results WHERE ts < ?", (raw_cut,))
        conn.run(
            "UPDATE rollup_state SET pruned_before = greatest(coalesce(pruned_before, ?), ?)",
            (raw_cut, raw_cut),
        )
        return results

    def close(self) -> None:
        self._pool.close()


def _revision(conn: psycopg.Connection[Any]) -> str | None:
    """The Alembic revision of the schema first on the search path, None before the first."""
    if conn.execute("SELECT to_regclass('alembic_version')").fetchone() == (None,):
        return None
    row = conn.execute(migrations.CURRENT_REVISION_SQL).fetchone()
    return None if row is None else str(row[0])


def _partition(day: int) -> str:
    return f"results_{datetime.fromtimestamp(day, UTC):%Y%m%d}"


def _day(partition: str) -> int:
    return int(datetime.strptime(partition[-8:], "%Y%m%d").replace(tzinfo=UTC).timestamp())
