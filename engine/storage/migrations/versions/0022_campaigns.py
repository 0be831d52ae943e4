"""Campaign evaluation (issue 14): campaigns, the rules/pools/forms they link,
hand-entered costs and KPI snapshots; an index of orders by coupon code
(attribution by code).

Revision ID: 0022
Revises: 0021
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_MONEY = sa.Numeric(14, 2)


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("title", sa.String(255), nullable=False),
        sa.Column("title_en", sa.String(255), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("record_id", sa.Integer(), nullable=True),
        sa.Column("owner", sa.String(128), nullable=True),
        sa.Column("channel", sa.String(32), nullable=True),
        sa.Column("budget", _MONEY, nullable=True),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("ends_on", sa.Date(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("attribution_days", sa.Integer(), server_default=sa.text("7"), nullable=False),
        sa.Column("targets", _JSON, nullable=True),
        sa.Column("materials", _JSON, nullable=True),
        sa.Column("materials_cost", _MONEY, server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
        sa.UniqueConstraint("record_id", name=op.f("uq_campaigns_record_id")),
    )
    op.create_table(
        "campaign_links",
        sa.Column("campaign_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ref", sa.String(128), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], name=op.f("fk_campaign_links_campaign_id_campaigns"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("campaign_id", "kind", "ref", name=op.f("pk_campaign_links")),
    )
    op.create_index("ix_campaign_links_kind_ref", "campaign_links", ["kind", "ref"])
    op.create_table(
        "campaign_costs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.String(128), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("amount", _MONEY, nullable=False),
        sa.Column("incurred_on", sa.Date(), nullable=False),
        sa.Column("note", sa.String(255), nullable=True),
        sa.Column("created_by", sa.String(128), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], name=op.f("fk_campaign_costs_campaign_id_campaigns"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_costs")),
    )
    op.create_index(op.f("ix_campaign_costs_campaign_id"), "campaign_costs", ["campaign_id"])
    op.create_table(
        "campaign_kpi_snapshots",
        sa.Column("campaign_id", sa.String(128), nullable=False),
        sa.Column("range_key", sa.String(64), nullable=False),
        sa.Column("watermark", sa.String(255), nullable=False),
        sa.Column("computed_at", sa.DateTime(), nullable=False),
        sa.Column("body", _JSON, nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"],
                                name=op.f("fk_campaign_kpi_snapshots_campaign_id_campaigns"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("campaign_id", "range_key", name=op.f("pk_campaign_kpi_snapshots")),
    )


    op.create_index("ix_orders_coupon_code", "orders", ["coupon_code"],
                    sqlite_where=sa.text("coupon_code IS NOT NULL"), postgresql_where=sa.text("coupon_code IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_orders_coupon_code", table_name="orders")
    op.drop_table("campaign_kpi_snapshots")
    op.drop_index(op.f("ix_campaign_costs_campaign_id"), table_name="campaign_costs")
    op.drop_table("campaign_costs")
    op.drop_index("ix_campaign_links_kind_ref", table_name="campaign_links")
    op.drop_table("campaign_links")
    op.drop_table("campaigns")
