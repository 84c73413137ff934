"""Traffic results name who spent them, and spend is rolled up per day by owner.

``results`` gains the gateway key's name, its team, the end user, the tags (a JSON list of
strings) and the session id; all are NULL for probes and for every result from before.
``spend_daily`` holds one row per UTC day, source and owner (``dimension`` key, team, user,
tag, model or provider; ``name`` the owner, ``""`` for results naming none; ``other`` = 1 on the
one row per day summing the users or tags past the day's top N), so 30-day reports read a few
thousand rows instead of every request. ``rollup_state.spend_watermark_ts``: days before it
are in ``spend_daily``; ``spend_hourly`` holds the whole hours after it (up to
``spend_hour_watermark_ts``) with every name.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for column in ("key_name", "team", "end_user", "tags", "session_id"):
        op.add_column("results", sa.Column(column, sa.Text, nullable=True))
    # No index by owner: reports and budgets read a range of time (results_ts) grouped by
    # owner, or the spend rollups; another index would cost every insert and serve no query.
    op.create_table(
        "spend_daily",
        *_spend_columns("day"),
        sa.PrimaryKeyConstraint("dimension", "day", "source", "other", "name"),
    )
    # Per hour, every name: today's hours, so that a report reads at most an hour of raw
    # results, and the last 31 days' of keys, teams, models and providers, where rolling
    # budgets start.
    op.create_table(
        "spend_hourly",
        *_spend_columns("hour"),
        sa.PrimaryKeyConstraint("dimension", "hour", "source", "name"),
    )
    for column in ("spend_watermark_ts", "spend_hour_watermark_ts"):
        op.add_column("rollup_state", sa.Column(column, sa.Float, nullable=True))


def _spend_columns(period: str) -> list[sa.Column[object]]:
    """A spend rollup's columns: its period's start, then the owner and the sums."""
    return [
        sa.Column(period, sa.Float, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("dimension", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("other", sa.SmallInteger, nullable=False),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("cost_requests", sa.BigInteger, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("input_tokens", sa.BigInteger, nullable=False),
        sa.Column("output_tokens", sa.BigInteger, nullable=False),
    ]
