"""One Alembic migration history for the results store on SQLite and PostgreSQL.

Run on open, programmatically: no ``alembic.ini``. Revisions are numbered (``0001``, ...)
and ``schema_version`` is that number. A SQLite file from before Alembic (``PRAGMA
user_version`` 1 to 4) first runs the legacy scripts it lacks, then is stamped at ``0001``,
whose schema is the same. A database at a revision this code does not know is refused.
The runner serves other components' histories too (``History``: the alert state, the outbox),
each with its own revisions and version table, sharing this ``env.py``.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from llmpulse.store import sqlitedb
from llmpulse.store.migrations import legacy_sqlite

if TYPE_CHECKING:
    import sqlalchemy as sa
    from alembic.script import ScriptDirectory

_HERE = Path(__file__).parent
# The newest revision under versions/ (a test checks it): an up-to-date database opens
# without importing Alembic and SQLAlchemy, which cost half a second.
HEAD = "0009"
# The revision equal to the last legacy SQLite script's schema.
_LEGACY_REVISION = "0001"
CURRENT_REVISION_SQL = "SELECT version_num FROM alembic_version"
# Alembic's op and context are process-wide: one run at a time per process (across processes,
# the database serialises them).
_ALEMBIC = threading.Lock()


@dataclasses.dataclass(frozen=True, slots=True)
class History:
    """One component's migration history: its revisions, the table that records the applied one,
    and the SQLite scripts from before Alembic whose end state is ``legacy_revision``."""

    versions: Path
    head: str
    version_table: str = "alembic_version"
    legacy_scripts: tuple[str, ...] = ()
    legacy_revision: str = ""


RESULTS = History(
    _HERE / "versions", HEAD, "alembic_version", legacy_sqlite.SCRIPTS, _LEGACY_REVISION
)


def migrate_sqlite(db: sqlite3.Connection, path: Path, history: History = RESULTS) -> None:
    """Bring the file behind ``db`` (idle, not in a transaction) to the latest revision."""
    versioned = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (history.version_table,)
    ).fetchone()
    current_sql = f"SELECT version_num FROM {history.version_table}"
    if versioned and db.execute(current_sql).fetchall() == [(history.head,)]:
        return
    stamp = not versioned and sqlitedb.schema_version(db) > 0
    if stamp:
        sqlitedb.migrate(db, history.legacy_scripts, path)  # refuses a newer legacy version
    _run(sqlitedb.engine(path), str(path), stamp, history)


def migrate_postgres(
    sqlalchemy_url: str, where: str, current: str | None, history: History = RESULTS
) -> None:
    """Bring the database (the schema first on its search_path) at revision ``current`` to the
    latest; ``where`` names it in errors, without its password."""
    if current == history.head:
        return
    import sqlalchemy as sa

    _run(sa.create_engine(sqlalchemy_url, poolclass=sa.pool.NullPool), where, False, history)


def _run(engine: sa.Engine, where: str, stamp: bool, history: History) -> None:
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext

    script = script_directory(history)
    try:
        with _ALEMBIC, engine.connect() as conn:
            opts = {"version_table": history.version_table}
            current = MigrationContext.configure(conn, opts=opts).get_current_heads()
            known = {s.revision for s in script.walk_revisions()}
            newer = [r for r in current if r not in known]
            if newer:
                raise RuntimeError(
                    f"{where} has schema revision {', '.join(newer)}, newer than this llmpulse "
                    f"understands ({script.get_current_head()}); upgrade llmpulse"
                )
            config = Config()
            config.set_main_option("script_location", str(_HERE))
            config.set_main_option("version_locations", str(history.versions))
            config.set_main_option("path_separator", "os")
            config.attributes["connection"] = conn
            config.attributes["version_table"] = history.version_table
            if stamp:
                command.stamp(config, history.legacy_revision)
            command.upgrade(config, "head")
            conn.commit()
    finally:
        engine.dispose()


def script_directory(history: History = RESULTS) -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(_HERE), version_locations=[str(history.versions)])
