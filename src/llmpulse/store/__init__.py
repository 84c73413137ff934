"""Storage: one interface, SQLite by default, PostgreSQL by URL."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg

from llmpulse.store.base import ModelChange, PruneStats, Store, Totals
from llmpulse.store.rollup import Summary
from llmpulse.store.sqlite import SQLiteStore, default_path
from llmpulse.store.url import STORAGE_ENV, check_location, is_postgres, redact_url, sqlite_path

# What a failing database raises, whichever the backend.
DATABASE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error)


def results_location(db_path: str | Path | None, storage: str | None) -> str | Path:
    """Where results live: ``--db``, else the config's storage, else the default file."""
    return db_path or storage or default_path()


def local_path(location: str | Path) -> Path:
    """The SQLite file of ``location``, or for PostgreSQL the default file: the probe lock, local
    to the host, sits beside it."""
    return default_path() if is_postgres(location) else sqlite_path(location)


def open_store(location: str | Path | None = None) -> Store:
    """The store at ``location``: a ``postgresql://`` URL, a ``sqlite:///`` URL or a file path;
    None is the default SQLite file (``default_path``)."""
    if location is None:
        return SQLiteStore()
    if is_postgres(location):
        from llmpulse.store.postgres import PostgresStore  # its pool only when asked for

        return PostgresStore(str(location))
    return SQLiteStore(sqlite_path(location))


__all__ = [
    "DATABASE_ERRORS",
    "STORAGE_ENV",
    "ModelChange",
    "PruneStats",
    "SQLiteStore",
    "Store",
    "Summary",
    "Totals",
    "check_location",
    "default_path",
    "local_path",
    "open_store",
    "redact_url",
    "results_location",
]
