"""Storage: one interface, SQLite by default, PostgreSQL by URL."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

from llmpulse.config.storage import default_path, is_postgres, redact_url, sqlite_path
from llmpulse.store.base import ModelChange, PruneStats, ResultFilter, Store, Totals
from llmpulse.store.rollup import Summary
from llmpulse.store.sqlite import SQLiteStore


class UnwritableError(Exception):
    """The results database refuses writes: said at start, in one line, not later on every
    write, rollup and prune."""


def database_errors(*also: type[Exception]) -> tuple[type[Exception], ...]:
    """What a failing database raises, whichever the backend, and ``also``. Read as caught:
    psycopg's errors count once psycopg is loaded (a PostgreSQL store loads it; none of them
    can be raised before), so a process that only opens SQLite never imports the driver."""
    if "psycopg" not in sys.modules:
        return (sqlite3.Error, UnwritableError, *also)
    import psycopg  # loaded already: a lookup, not an import

    return (sqlite3.Error, psycopg.Error, UnwritableError, *also)


def local_path(location: str | Path) -> Path:
    """The SQLite file of ``location``, or for PostgreSQL the default file: the probe lock, local
    to the host, sits beside it."""
    return default_path() if is_postgres(location) else sqlite_path(location)


def open_store(location: str | Path | None = None, *, for_writing: bool = False) -> Store:
    """The store at ``location``: a ``postgresql://`` URL, a ``sqlite:///`` URL or a file path;
    None is the default SQLite file (``default_path``). ``for_writing``: raise
    ``UnwritableError`` now if the database refuses writes."""
    if location is None:
        store: Store = SQLiteStore()
    elif is_postgres(location):
        from llmpulse.store.postgres import PostgresStore  # its pool only when asked for

        store = PostgresStore(str(location))
    else:
        store = SQLiteStore(sqlite_path(location))
    if for_writing:
        try:
            store.check_writable()
        except database_errors() as exc:
            store.close()
            where = redact_url(str(location or default_path()))
            raise UnwritableError(f"{where} refuses writes: {redact_url(str(exc))}") from None
    return store


__all__ = [
    "ModelChange",
    "PruneStats",
    "ResultFilter",
    "SQLiteStore",
    "Store",
    "Summary",
    "Totals",
    "UnwritableError",
    "database_errors",
    "local_path",
    "open_store",
]
