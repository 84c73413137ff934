"""Opening the alert state and the outbox on SQLite or PostgreSQL, at their latest revisions.

Each is its own Alembic history (revisions in ``state/`` and ``outbox/``, its own version
table), run on open by the results store's runner (``llmpulse.store.migrations``). With a
PostgreSQL URL their tables sit in the schema first on its search_path, beside the results;
otherwise each has its SQLite file, where a file from before Alembic (``PRAGMA user_version``)
first runs the legacy scripts it lacks and is then stamped.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import sqlalchemy as sa

from llmpulse.alerts.migrations import legacy_sqlite
from llmpulse.config.storage import is_postgres, redact_url, sqlalchemy_url, sqlite_path
from llmpulse.store import migrations, sqlitedb

_HERE = Path(__file__).parent

STATE = migrations.History(
    _HERE / "state", "0005", "alembic_version_alerts", legacy_sqlite.STATE_SCRIPTS, "0001"
)
OUTBOX = migrations.History(
    _HERE / "outbox", "0002", "alembic_version_outbox", legacy_sqlite.OUTBOX_SCRIPTS, "0001"
)


def open_engine(
    location: str | Path, history: migrations.History, *, synchronous: str = "NORMAL"
) -> sa.Engine:
    """An engine on ``location`` (a path, ``sqlite:///`` or ``postgresql://`` URL) with
    ``history`` applied. ``synchronous`` is SQLite's (PostgreSQL commits durably)."""
    if not is_postgres(location):
        path = sqlite_path(location)
        with contextlib.closing(sqlitedb.connect(path, synchronous)) as db:  # WAL, parent dir
            migrations.migrate_sqlite(db, path, history)
        return sqlitedb.engine(path, synchronous)
    url = sqlalchemy_url(str(location))
    # A server away fails a call within seconds, not TCP's minutes (callers retry), unless the
    # URL says otherwise; pre_ping: a connection dropped by a server restart is not handed out.
    timeout = {} if "connect_timeout" in sa.make_url(url).query else {"connect_timeout": 10}
    engine = sa.create_engine(
        url, pool_size=4, max_overflow=4, pool_pre_ping=True, connect_args=timeout
    )
    try:
        migrations.migrate_postgres(url, redact_url(url), revision(engine, history), history)
    except BaseException:
        engine.dispose()
        raise
    return engine


def revision(engine: sa.Engine, history: migrations.History) -> str | None:
    """The revision the database is at (None before the first)."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(history.version_table):
            return None
        return conn.execute(sa.text(f"SELECT version_num FROM {history.version_table}")).scalar()
