"""The alert state's and the outbox's SQLite scripts from before Alembic (``PRAGMA user_version``
counted them); frozen: later changes are Alembic revisions for both backends."""

STATE_SCRIPTS: tuple[str, ...] = (
    """
    CREATE TABLE alert_records (
        fingerprint TEXT PRIMARY KEY,
        record TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE alert_events (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        fingerprint TEXT NOT NULL,
        status TEXT NOT NULL,
        rule TEXT NOT NULL,
        target TEXT NOT NULL,
        provider TEXT NOT NULL,
        notification TEXT NOT NULL
    );
    CREATE INDEX alert_events_at ON alert_events (at);
    CREATE TABLE silences (
        id TEXT PRIMARY KEY,
        starts_at REAL NOT NULL,
        ends_at REAL NOT NULL,
        silence TEXT NOT NULL
    );
    """,
)

OUTBOX_SCRIPTS: tuple[str, ...] = (
    """
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        notifier TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        delivered_at REAL,
        failed_at REAL,
        last_error TEXT,
        answer TEXT
    );
    CREATE INDEX outbox_pending ON outbox (notifier, id)
        WHERE delivered_at IS NULL AND failed_at IS NULL;
    CREATE INDEX outbox_delivered_at ON outbox (delivered_at);
    CREATE INDEX outbox_failed_at ON outbox (failed_at);
    """,
)
