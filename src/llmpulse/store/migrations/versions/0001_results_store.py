"""The results store: raw results, rollup tiers, rollup progress and model changes.

The end state of the SQLite schema scripts that came before Alembic (user_version 4), so a
file at version 4 is stamped here unchanged. PostgreSQL keeps results in daily range
partitions of ``ts`` (created by the store as results arrive; retention drops them whole),
or in a TimescaleDB hypertable when that extension can be created.

Revision ID: 0001
Revises:
"""

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Never import these from the store: a released revision must not change with the code.
TEXT, INT, BIG, REAL = sa.Text, sa.Integer, sa.BigInteger, sa.Float
# Errors and sketches: JSON text in SQLite, jsonb in PostgreSQL.
JSON = sa.Text().with_variant(JSONB(), "postgresql")

RESULT_COLUMNS = (
    ("ts", REAL, False), ("target", TEXT, False), ("provider", TEXT, False),
    ("model", TEXT, False), ("check_kind", TEXT, False), ("ok", INT, False),
    ("error_class", TEXT, True), ("error_message", TEXT, True), ("http_status", INT, True),
    ("latency_ms", REAL, True), ("ttft_ms", REAL, True), ("tokens_per_s", REAL, True),
    ("itl_p50_ms", REAL, True), ("itl_max_ms", REAL, True), ("input_tokens", INT, True),
    ("output_tokens", INT, True), ("cached_tokens", INT, True),
    ("cache_write_tokens", INT, True), ("reasoning_tokens", INT, True),
    ("tokens_estimated", INT, False), ("cost_usd", REAL, True),
    ("rl_requests_limit", BIG, True), ("rl_requests_remaining", BIG, True),
    ("rl_tokens_limit", BIG, True), ("rl_tokens_remaining", BIG, True),
    ("rl_utilization", REAL, True), ("rl_reset_s", REAL, True), ("retry_after_s", REAL, True),
    ("response_model", TEXT, True), ("system_fingerprint", TEXT, True),
    ("request_id", TEXT, True), ("finish_reason", TEXT, True), ("model_listed", INT, True),
    ("context_window", INT, True), ("warnings", TEXT, True), ("source", TEXT, False),
    ("attempts", INT, True), ("fallbacks", INT, True),
)  # fmt: skip


def _summary_columns(sketches_last: bool) -> list[sa.Column[Any]]:
    """Rollup columns after the key. With ``sketches_last`` the scalars come first: in SQLite
    they stay on the row's own page when the sketches of a coarse period overflow it."""
    scalars: list[sa.Column[Any]] = [
        sa.Column("provider", TEXT, nullable=False),
        sa.Column("model", TEXT, nullable=False),
        sa.Column("total", BIG, nullable=False),
        sa.Column("ok", BIG, nullable=False),
        sa.Column("outage", BIG, nullable=False),
    ]
    json: list[sa.Column[Any]] = [
        sa.Column("errors", JSON),
        sa.Column("ttft_sketch", JSON),
        sa.Column("latency_sketch", JSON),
        sa.Column("tps_sketch", JSON),
    ]
    rest: list[sa.Column[Any]] = [
        sa.Column("token_requests", BIG, nullable=False),
        sa.Column("input_tokens", BIG, nullable=False),
        sa.Column("output_tokens", BIG, nullable=False),
        sa.Column("cost_requests", BIG, nullable=False),
        sa.Column("cost_usd", REAL, nullable=False),
        sa.Column("rl_max", REAL),
        sa.Column("rl_latest", REAL),
        sa.Column("rl_latest_ts", REAL),
        sa.Column("first_ts", REAL, nullable=False),
        sa.Column("last_ts", REAL, nullable=False),
    ]
    return scalars + rest + json if sketches_last else scalars + json + rest


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    timescale = postgres and _create_timescale(bind)
    defaults = {"tokens_estimated": sa.text("0"), "source": sa.text("'probe'")}
    result_columns = [
        sa.Column(name, kind, nullable=nullable, server_default=defaults.get(name))
        for name, kind, nullable in RESULT_COLUMNS
    ]
    if postgres:
        # A sequence, not an identity: PostgreSQL 15 refuses identities on partitioned tables.
        op.execute("CREATE SEQUENCE results_id_seq AS bigint")
        partitioning: dict[str, Any] = (
            {} if timescale else {"postgresql_partition_by": "RANGE (ts)"}
        )
        op.create_table(
            "results",
            sa.Column("id", BIG, server_default=sa.text("nextval('results_id_seq')")),
            *result_columns,
            **partitioning,
        )
        if timescale:
            # Untested here: no TimescaleDB on the machines this was written on. Chunks of a
            # day of the float epoch seconds, via an integer partitioning function.
            op.execute(
                "CREATE FUNCTION llmpulse_epoch_s(ts double precision) RETURNS bigint "
                "LANGUAGE sql IMMUTABLE AS 'SELECT floor(ts)::bigint'"
            )
            op.execute(
                "SELECT create_hypertable('results', 'ts', chunk_time_interval => 86400, "
                "time_partitioning_func => 'llmpulse_epoch_s')"
            )
    else:
        op.create_table(
            "results",
            sa.Column("id", INT, primary_key=True),  # the rowid
            *result_columns,
        )
    op.create_index("results_target_ts", "results", ["target", "ts"])
    op.create_index("results_ts", "results", ["ts"])
    if postgres:
        # The rollup finds late rows by id: SQLite's is the rowid, indexed already.
        op.create_index("results_id", "results", ["id"])

    # Per-minute rollups (the key doubles as the index by minute), then hourly, six-hour and
    # daily tiers merged from the tier below, so that long windows read few rows.
    for table, col in (("rollups", "minute_ts"), ("rollups_hourly", "hour_ts")):
        op.create_table(
            table,
            sa.Column(col, BIG, nullable=False),
            sa.Column("target", TEXT, nullable=False),
            sa.Column("check_kind", TEXT, nullable=False),
            *_summary_columns(sketches_last=False),
            sa.PrimaryKeyConstraint(col, "target", "check_kind"),
            sqlite_with_rowid=False,
        )
        op.create_index(f"{table}_target_{col.removesuffix('_ts')}", table, ["target", col])
    # Their rows (a kilobyte or more) are too large for WITHOUT ROWID in SQLite.
    for table, col in (("rollups_6h", "period_ts"), ("rollups_daily", "day_ts")):
        op.create_table(
            table,
            sa.Column(col, BIG, nullable=False),
            sa.Column("target", TEXT, nullable=False),
            sa.Column("check_kind", TEXT, nullable=False),
            *_summary_columns(sketches_last=True),
            sa.UniqueConstraint(col, "target", "check_kind"),
        )
        op.create_index(f"{table}_target_{col.removesuffix('_ts')}", table, ["target", col])

    # Rollup progress: minutes before watermark_ts are complete (the coarse tiers up to
    # coarse_watermark_ts); last_id finds results that arrived late for rolled-up minutes.
    op.create_table(
        "rollup_state",
        sa.Column("id", INT, sa.CheckConstraint("id = 1"), primary_key=True, autoincrement=False),
        sa.Column("watermark_ts", REAL),
        sa.Column("last_id", BIG, nullable=False, server_default=sa.text("0")),
        sa.Column("pruned_before", REAL),
        sa.Column("coarse_watermark_ts", REAL),
    )
    op.execute("INSERT INTO rollup_state (id) VALUES (1)")
    # Each change of the model a target serves, kept beyond raw retention.
    op.create_table(
        "model_changes",
        sa.Column("id", BIG if postgres else INT, primary_key=True, autoincrement=True),
        sa.Column("ts", REAL, nullable=False),
        sa.Column("target", TEXT, nullable=False),
        sa.Column("previous", TEXT),
        sa.Column("current", TEXT, nullable=False),
    )
    op.create_index("model_changes_target_ts", "model_changes", ["target", "ts"])
    if not postgres:
        # The legacy version of this schema: a release from before Alembic opens the file.
        op.execute("PRAGMA user_version = 4")


def _create_timescale(bind: sa.Connection) -> bool:
    """Whether TimescaleDB is (or could be made) installed in this database; never required."""
    if not bind.exec_driver_sql(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).first():
        return False
    try:
        with bind.begin_nested():  # no privilege, or not preloaded: plain partitions instead
            bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except sa.exc.DBAPIError:
        return False
    return True
