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
from llmpulse.store import migrations, sqlitedb

_HERE = Path(__file__).parent

STATE = migrations.History(
    _HERE / "state", "0001", "alembic_version_alerts", legacy_sqlite.STATE_SCRIPTS, "0001"
)
OUTBOX = migrations.History(
    _HERE / "outbox", "0002", "alembic_version_outbox", legacy_sqlite.OUTBOX_SCRIPTS, "0001"
)


def resolve(location: str | Path) -> Path | sa.URL:
    """A SQLite file (a path or ``sqlite:///`` URL), or the psycopg URL of a PostgreSQL one."""
    if isinstance(location, Path) or "://" not in location:
        return Path(location).expanduser()
    url = sa.make_url(location)
    if url.get_backend_name() == "sqlite" and url.database:
        return Path(url.database)
    if url.get_backend_name() in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    raise ValueError(f"unsupported database URL {url!r}: expected postgresql:// or sqlite:///")


def open_engine(
    location: str | Path, history: migrations.History, *, synchronous: str = "NORMAL"
) -> sa.Engine:
    """An engine on ``location`` (see ``resolve``) with ``history`` applied.

    ``synchronous`` is SQLite's setting for the connections (PostgreSQL commits durably).
    """
    url = resolve(location)
    if isinstance(url, Path):
        with contextlib.closing(sqlitedb.connect(url, synchronous)) as db:  # WAL, parent dir
            migrations.migrate_sqlite(db, url, history)
        return sqlitedb.engine(url, synchronous)
    # pre_ping: a connection dropped by a server restart is replaced, not handed out.
    engine = sa.create_engine(url, pool_size=4, max_overflow=4, pool_pre_ping=True)
    try:
        current = revision(engine, history)
        migrations.migrate_postgres(
            url.render_as_string(hide_password=False), repr(url), current, history
        )
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
