"""Billing days: each provider's own bill for a UTC day against what llmpulse measured, as the
alert leader's reconciliation job found it (``monitor.billing``); the dashboard and the API
read them, a new leader skips the days already reconciled.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "billing_days",
        sa.Column("provider", sa.Text, primary_key=True),
        sa.Column("day", sa.Text, primary_key=True),  # YYYY-MM-DD, UTC
        sa.Column("checked_at", sa.Float, nullable=False),
        # "ok", or the class of the error that kept the reports from being read.
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("reported_usd", sa.Float),
        sa.Column("measured_usd", sa.Float),
        sa.Column("drift", sa.Boolean, nullable=False, server_default=sa.false()),
        # JSON: the comparison per model and the threshold it was judged by.
        sa.Column("detail", sa.Text),
        sa.Column("error", sa.Text),  # redacted, one line
    )
