"""Custom probes: a result's check is the probe's name, so its kind is stored beside it.

``results.probe_kind`` is the check kind (models, inference, stream, responses, embeddings,
long_context); NULL on rows from before, whose ``check_kind`` is their kind. ``answer_excerpt``
keeps the first characters of the answer (redacted), for probes that assert on it.
``embedding_dimensions`` is the vector length an embeddings check was answered with.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for column in ("probe_kind", "answer_excerpt"):
        op.add_column("results", sa.Column(column, sa.Text, nullable=True))
    op.add_column("results", sa.Column("embedding_dimensions", sa.Integer, nullable=True))
