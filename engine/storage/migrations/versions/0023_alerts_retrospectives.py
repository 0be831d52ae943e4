"""Campaign alerts and retrospectives (issue 14, items 6 and 7).

* ``alert_firings``: one row per (alert, campaign, period) that fired; the
  unique key is the "at most once per period" guarantee.
* ``campaign_retrospectives``: the 复盘 record of an ended campaign, KPIs
  against targets frozen at the end plus the team's lessons.

Revision ID: 0023
Revises: 0022
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alert_firings",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("alert_id", sa.String(128), nullable=False),
        sa.Column("campaign_id", sa.String(128), nullable=False),
        sa.Column("period_key", sa.String(32), nullable=False),
        sa.Column("kpi", sa.String(64), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("fired_at", sa.DateTime(), nullable=False),
        sa.Column("notified", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_firings")),
        sa.UniqueConstraint("alert_id", "campaign_id", "period_key",
                            name=op.f("uq_alert_firings_alert_id_campaign_id_period_key")),
    )
    op.create_index("ix_alert_firings_fired_at", "alert_firings", ["fired_at"])
    op.create_table(
        "campaign_retrospectives",
        sa.Column("campaign_id", sa.String(128), nullable=False),
        sa.Column("title", sa.String(255), nullable=False),
        sa.Column("ended_on", sa.Date(), nullable=True),
        sa.Column("kpis", _JSON, nullable=False),
        sa.Column("lessons", _JSON, nullable=False),
        sa.Column("search_text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", name=op.f("pk_campaign_retrospectives")),
    )


def downgrade() -> None:
    op.drop_table("campaign_retrospectives")
    op.drop_index("ix_alert_firings_fired_at", table_name="alert_firings")
    op.drop_table("alert_firings")
