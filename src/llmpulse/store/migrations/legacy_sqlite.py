"""The SQLite schema scripts from before Alembic: ``PRAGMA user_version`` counted them.

Files made by those releases are brought to version 4 here, which Alembic's first revision
equals, and stamped; frozen: later changes are Alembic revisions for both backends.
"""

# Rollup columns after the key; errors and sketches are JSON objects ({class: n}, {key: n}).
_ROLLUP_COLUMNS_SQL = """
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        total INTEGER NOT NULL,
        ok INTEGER NOT NULL,
        outage INTEGER NOT NULL,
        errors TEXT,
        ttft_sketch TEXT,
        latency_sketch TEXT,
        tps_sketch TEXT,
        token_requests INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cost_requests INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        rl_max REAL,
        rl_latest REAL,
        rl_latest_ts REAL,
        first_ts REAL NOT NULL,
        last_ts REAL NOT NULL"""

# The same columns, scalars first: they stay on the row's own page when sketches overflow it.
_TIER_COLUMNS_SQL = """
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        total INTEGER NOT NULL,
        ok INTEGER NOT NULL,
        outage INTEGER NOT NULL,
        token_requests INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cost_requests INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        rl_max REAL,
        rl_latest REAL,
        rl_latest_ts REAL,
        first_ts REAL NOT NULL,
        last_ts REAL NOT NULL,
        errors TEXT,
        ttft_sketch TEXT,
        latency_sketch TEXT,
        tps_sketch TEXT"""

# Each entry moves the schema from version i to i+1; never edit a released entry, append one.
# Each entry moved the schema from version i to i+1.
SCRIPTS: tuple[str, ...] = (
    """
    CREATE TABLE results (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        target TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        check_kind TEXT NOT NULL,
        ok INTEGER NOT NULL,
        error_class TEXT,
        error_message TEXT,
        http_status INTEGER,
        latency_ms REAL,
        ttft_ms REAL,
        tokens_per_s REAL,
        itl_p50_ms REAL,
        itl_max_ms REAL,
        input_tokens INTEGER,
        output_tokens INTEGER,
        cached_tokens INTEGER,
        cache_write_tokens INTEGER,
        reasoning_tokens INTEGER,
        tokens_estimated INTEGER NOT NULL DEFAULT 0,
        cost_usd REAL,
        rl_requests_limit INTEGER,
        rl_requests_remaining INTEGER,
        rl_tokens_limit INTEGER,
        rl_tokens_remaining INTEGER,
        rl_utilization REAL,
        rl_reset_s REAL,
        retry_after_s REAL,
        response_model TEXT,
        system_fingerprint TEXT,
        request_id TEXT,
        finish_reason TEXT,
        model_listed INTEGER,
        context_window INTEGER,
        warnings TEXT
    );
    CREATE INDEX results_target_ts ON results (target, ts);
    CREATE INDEX results_ts ON results (ts);
    """,
    # Per-minute rollups (the primary key doubles as the index by minute), an hourly tier
    # merged from them so that 30-day windows read ~720 rows per target instead of 43,200,
    # and the rollup progress: the watermark below which minutes are complete, and the last
    # results id seen, which finds rows that arrived late for already rolled-up minutes.
    f"""
    CREATE TABLE rollups (
        minute_ts INTEGER NOT NULL,
        target TEXT NOT NULL,
        check_kind TEXT NOT NULL,
        {_ROLLUP_COLUMNS_SQL},
        PRIMARY KEY (minute_ts, target, check_kind)
    ) WITHOUT ROWID;
    CREATE INDEX rollups_target_minute ON rollups (target, minute_ts);
    CREATE TABLE rollups_hourly (
        hour_ts INTEGER NOT NULL,
        target TEXT NOT NULL,
        check_kind TEXT NOT NULL,
        {_ROLLUP_COLUMNS_SQL},
        PRIMARY KEY (hour_ts, target, check_kind)
    ) WITHOUT ROWID;
    CREATE INDEX rollups_hourly_target_hour ON rollups_hourly (target, hour_ts);
    CREATE TABLE rollup_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        watermark_ts REAL,
        last_id INTEGER NOT NULL DEFAULT 0,
        pruned_before REAL
    );
    INSERT INTO rollup_state (id) VALUES (1);
    """,
    # Six-hour and daily tiers, so that a 30-day chart in 6-hour points reads 120 rows per
    # target and 90 days of daily totals 90 rows, not 720 and 2,160 hourly ones. They hold
    # every whole period before coarse_watermark_ts, which stays NULL (and queries use hours)
    # until the first rollup after this migration has filled them from the hourly rows.
    # Their rows (a kilobyte or more) are too large for WITHOUT ROWID, which would move most
    # of each to an overflow page, and their scalars come first: totals never read sketches.
    # model_changes: each change of the model a target serves, kept beyond raw retention and
    # filled here from the raw rows there are; a target's first model has previous NULL.
    f"""
    CREATE TABLE rollups_6h (
        period_ts INTEGER NOT NULL,
        target TEXT NOT NULL,
        check_kind TEXT NOT NULL,
        {_TIER_COLUMNS_SQL},
        UNIQUE (period_ts, target, check_kind)
    );
    CREATE INDEX rollups_6h_target_period ON rollups_6h (target, period_ts);
    CREATE TABLE rollups_daily (
        day_ts INTEGER NOT NULL,
        target TEXT NOT NULL,
        check_kind TEXT NOT NULL,
        {_TIER_COLUMNS_SQL},
        UNIQUE (day_ts, target, check_kind)
    );
    CREATE INDEX rollups_daily_target_day ON rollups_daily (target, day_ts);
    ALTER TABLE rollup_state ADD COLUMN coarse_watermark_ts REAL;
    CREATE TABLE model_changes (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        target TEXT NOT NULL,
        previous TEXT,
        current TEXT NOT NULL
    );
    CREATE INDEX model_changes_target_ts ON model_changes (target, ts);
    INSERT INTO model_changes (ts, target, previous, current)
    SELECT ts, target, previous, response_model FROM (
        SELECT ts, target, response_model,
               lag(response_model) OVER (PARTITION BY target ORDER BY ts, id) AS previous
        FROM results WHERE response_model IS NOT NULL
    ) WHERE previous IS NULL OR previous != response_model ORDER BY ts
    """,
    # Results of real requests proxied by the gateway, beside the probes' (source 'traffic'),
    # with the attempts and fallbacks the request took.
    """
    ALTER TABLE results ADD COLUMN source TEXT NOT NULL DEFAULT 'probe';
    ALTER TABLE results ADD COLUMN attempts INTEGER;
    ALTER TABLE results ADD COLUMN fallbacks INTEGER
    """,
)
