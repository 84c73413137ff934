"""Results name the agent and region that measured them; batches are written once.

``agent`` and ``region`` are NULL for results of a single-agent setup (and for every result
from before). ``ingested_batches`` holds the id of each batch written with one, in the same
transaction as its rows, so a batch replayed from an agent's local spool after an ambiguous
failure (the commit went through, its acknowledgement did not) is skipped, not written twice.

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
    op.add_column("results", sa.Column("agent", sa.Text, nullable=True))
    op.add_column("results", sa.Column("region", sa.Text, nullable=True))
    op.create_table(
        "ingested_batches",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("ts", sa.Float, nullable=False),
    )
    op.create_index("ingested_batches_ts", "ingested_batches", ["ts"])
