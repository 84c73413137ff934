"""Live drills: whether a run-time gateway key may send ``x-llmpulse-drill`` (``keys create
--drill``, ``"drill": true`` in ``POST /api/v1/keys``). Keys stored before may not.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "gateway_keys",
        sa.Column("drill", sa.Boolean, nullable=False, server_default=sa.false()),
    )
