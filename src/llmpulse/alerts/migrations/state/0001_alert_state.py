"""Alert records, their event history, and silences: the legacy SQLite schema (user_version 1).

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


def upgrade() -> None:
    op.create_table(
        "alert_records",
        sa.Column("fingerprint", sa.Text, primary_key=True),
        sa.Column("record", sa.Text, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "alert_events",
        sa.Column("id", ID, primary_key=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("fingerprint", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("rule", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("notification", sa.Text, nullable=False),
    )
    op.create_index("alert_events_at", "alert_events", ["at"])
    op.create_table(
        "silences",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("starts_at", TS, nullable=False),
        sa.Column("ends_at", TS, nullable=False),
        sa.Column("silence", sa.Text, nullable=False),
    )
