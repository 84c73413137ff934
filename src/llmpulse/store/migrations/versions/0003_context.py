"""Rollups keep context-window utilization: its sketch and its maximum, in every tier.

Utilization is prompt tokens over the model's context window (``CheckResult``'s
``context_utilization``). Rows rolled up before this revision keep NULL in both columns: they
have no context bins, and no maximum, which merges as nothing (never as zero).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Never import these from the store: a released revision must not change with the code.
JSON = sa.Text().with_variant(JSONB(), "postgresql")
TABLES = ("rollups", "rollups_hourly", "rollups_6h", "rollups_daily")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("context_sketch", JSON, nullable=True))
        op.add_column(table, sa.Column("context_max", sa.Float, nullable=True))
