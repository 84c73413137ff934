"""Acknowledgements: who has which alert in hand, for which episode of it.

Written by whoever acknowledges (the API, the CLI, PagerDuty's webhook), read by the alert
leader every tick, deleted once the episode is over.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_acks",
        sa.Column("fingerprint", sa.Text, primary_key=True),
        sa.Column("episode", sa.Text, nullable=False),
        sa.Column("acknowledged_by", sa.Text, nullable=False),
        sa.Column("acknowledged_at", sa.Float, nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("via", sa.Text),
    )
