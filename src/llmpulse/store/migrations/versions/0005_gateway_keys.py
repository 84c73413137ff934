"""Gateway keys created at run time (``llmpulse keys create``, ``POST /api/v1/keys``).

One row per key name: the SHA-256 digest of the key (never its text), and the team, model
groups, limits and budget it was created with (``models`` and ``budget`` JSON text). A revoked
key keeps its row, so its name is never given to another key: spend is recorded by name.
``rotated_at``: when its digest was last replaced by ``keys rotate``.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_keys",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("digest", sa.Text, nullable=False, unique=True),
        sa.Column("team", sa.Text, nullable=True),
        sa.Column("models", sa.Text, nullable=False),
        sa.Column("rpm", sa.BigInteger, nullable=True),
        sa.Column("tpm", sa.BigInteger, nullable=True),
        sa.Column("budget", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("rotated_at", sa.Float, nullable=True),
        sa.Column("revoked_at", sa.Float, nullable=True),
    )
