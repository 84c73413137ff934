"""One Alembic migration history for the results store on SQLite and PostgreSQL.

Run on open, programmatically: no ``alembic.ini``. Revisions are numbered (``0001``, ...)
and ``schema_version`` is that number. A SQLite file from before Alembic (``PRAGMA
user_version`` 1 to 4) first runs the legacy scripts it lacks, then is stamped at ``0001``,
whose schema is the same. A database at a revision this code does not know is refused.
"""

from __future__ import annotations

import sqlite3
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
HEAD = "0001"
# The revision equal to the last legacy SQLite script's schema.
_LEGACY_REVISION = "0001"
CURRENT_REVISION_SQL = "SELECT version_num FROM alembic_version"


def migrate_sqlite(db: sqlite3.Connection, path: Path) -> None:
    """Bring the file behind ``db`` (idle, not in a transaction) to the latest revision."""
    versioned = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
    ).fetchone()
    if versioned and db.execute(CURRENT_REVISION_SQL).fetchall() == [(HEAD,)]:
        return
    stamp = not versioned and sqlitedb.schema_version(db) > 0
    if stamp:
        sqlitedb.migrate(db, legacy_sqlite.SCRIPTS, path)  # refuses a newer legacy version
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{path}", poolclass=sa.pool.NullPool)

    @sa.event.listens_for(engine, "connect")
    def _autocommit(conn: sqlite3.Connection, _: object) -> None:
        conn.isolation_level = None  # pysqlite's own BEGIN skips DDL: issue it ourselves

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    _run(engine, str(path), stamp)


def migrate_postgres(sqlalchemy_url: str, where: str, current: str | None) -> None:
    """Bring the database (the schema first on its search_path) at revision ``current`` to the
    latest; ``where`` names it in errors, without its password."""
    if current == HEAD:
        return
    import sqlalchemy as sa

    _run(sa.create_engine(sqlalchemy_url, poolclass=sa.pool.NullPool), where, stamp=False)


def _run(engine: sa.Engine, where: str, stamp: bool) -> None:
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext

    script = script_directory()
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_heads()
            known = {s.revision for s in script.walk_revisions()}
            newer = [r for r in current if r not in known]
            if newer:
                raise RuntimeError(
                    f"{where} has schema revision {', '.join(newer)}, newer than this llmpulse "
                    f"understands ({script.get_current_head()}); upgrade llmpulse"
                )
            config = Config()
            config.set_main_option("script_location", str(_HERE))
            config.attributes["connection"] = conn
            if stamp:
                command.stamp(config, _LEGACY_REVISION)
            command.upgrade(config, "head")
            conn.commit()
    finally:
        engine.dispose()


def script_directory() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(_HERE))
