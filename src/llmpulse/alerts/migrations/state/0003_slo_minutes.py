"""SLO minutes: each SLO's events and good events per UTC minute, as the alert leader counted
them (``alerts.slo``); the dashboard, the API and /metrics read them, a new leader resumes
from them. Written with absolute counts, pruned to the SLO's window.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "slo_minutes",
        sa.Column("slo", sa.Text, primary_key=True),
        # Epoch seconds of the minute's start.
        sa.Column("minute", sa.BigInteger, primary_key=True),
        # What counted them (``Slo.definition``): counts of another definition are not read.
        sa.Column("definition", sa.Text, nullable=False),
        sa.Column("events", sa.Integer, nullable=False),
        sa.Column("good", sa.Integer, nullable=False),
        sqlite_with_rowid=False,  # small rows, read by their key
    )
