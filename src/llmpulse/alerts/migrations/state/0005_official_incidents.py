"""Official incidents: what each provider's status page posted, stored the first time the
poller saw it open (the pages list only unresolved ones), so the acknowledgement record
(``alerts.confirmation``) can tell, for 30 days, which of our incidents the page confirmed and
how late.

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
        "official_incidents",
        sa.Column("provider", sa.Text, primary_key=True),
        sa.Column("incident_id", sa.Text, primary_key=True),  # the page's own id
        sa.Column("name", sa.Text, nullable=False),  # redacted, one line
        # The page's own creation time (epoch seconds), else when first seen.
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("first_seen", sa.Float, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False),
        sa.Column("components", sa.Text, nullable=False),  # JSON list of names
        sa.Column("url", sa.Text),
    )
    op.create_index("official_incidents_created", "official_incidents", ["created_at"])
