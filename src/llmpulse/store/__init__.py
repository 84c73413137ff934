"""Storage: one interface, SQLite by default, PostgreSQL by URL."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg

from llmpulse.config.storage import (
    STORAGE_ENV,
    check_location,
    default_path,
    is_postgres,
    redact_url,
    results_location,
    sqlite_path,
)
from llmpulse.store.base import ModelChange, PruneStats, ResultFilter, Store, Totals
from llmpulse.store.rollup import Summary
from llmpulse.store.sqlite import SQLiteStore


class UnwritableError(Exception):
    """The results database refuses writes: said at start, in one line, not later on every
    write, rollup and prune."""


# What a failing database raises, whichever the backend.
DATABASE_ERRORS = (sqlite3.Error, psycopg.Error, UnwritableError)


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
        except (sqlite3.Error, psycopg.Error) as exc:
            store.close()
            where = redact_url(str(location or default_path()))
            raise UnwritableError(f"{where} refuses writes: {redact_url(str(exc))}") from None
    return store


__all__ = [
    "DATABASE_ERRORS",
    "STORAGE_ENV",
    "ModelChange",
    "PruneStats",
    "ResultFilter",
    "SQLiteStore",
    "Store",
    "Summary",
    "Totals",
    "UnwritableError",
    "check_location",
    "default_path",
    "is_postgres",
    "local_path",
    "open_store",
    "redact_url",
    "results_location",
]
