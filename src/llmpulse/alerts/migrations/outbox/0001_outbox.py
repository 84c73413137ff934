"""The delivery outbox: the legacy SQLite schema (user_version 1).

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# An autoincrement id: SQLite's rowid alias (INTEGER PRIMARY KEY), PostgreSQL's bigserial.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Epoch seconds: REAL in SQLite, double precision in PostgreSQL.
TS = sa.Float
PENDING = sa.text("delivered_at IS NULL AND failed_at IS NULL")


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", ID, primary_key=True),
        sa.Column("notifier", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("delivered_at", TS),
        sa.Column("failed_at", TS),
        sa.Column("last_error", sa.Text),
        sa.Column("answer", sa.Text),
    )
    op.create_index(
        "outbox_pending",
        "outbox",
        ["notifier", "id"],
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    )
    op.create_index("outbox_delivered_at", "outbox", ["delivered_at"])
    op.create_index("outbox_failed_at", "outbox", ["failed_at"])
