"""Failover you can see: the path a gateway request took, and failover drills.

``results.route`` is a JSON list of the deployments (target names) a traffic or drill request
went to, in order, the answering (or last failing) one last. ``fallback_reason`` is the error
class that moved it off its first deployment. ``features`` is a JSON list of the request
parameters a fallback must be able to take (tools, images, response_format, ...). ``drill``
labels drill requests: a live drill's header value, or a drill run's path. NULL on older rows.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for column in ("route", "fallback_reason", "features", "drill"):
        op.add_column("results", sa.Column(column, sa.Text, nullable=True))
