"""Breaker events: when a gateway's circuit breaker for a deployment opened, went half-open or
closed, and why (``gateway.breaker_log`` records them; the dashboard's gateway page marks them).

One row per transition: ``ts`` (epoch seconds), the gateway process (``agent``), the deployment
(its target name, as in ``results.route``), the state entered and the reason. The key makes a
batch written twice (a commit whose acknowledgement was lost) land once. Pruned with the raw
results.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "breaker_events",
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("agent", sa.Text, nullable=False),
        sa.Column("deployment", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("ts", "agent", "deployment", "state"),
    )
