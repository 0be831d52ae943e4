"""Coupon redemption (核销) at the till and through the API.

* ``coupons`` gains what a redemption records: the order (idempotency: the
  same order redeeming the same code again gets the first result), its amount,
  the store, the device and the phone. The anti-abuse limits of a coupon pool
  count these; their indexes are partial (``redeemed_at IS NOT NULL``) so a
  rule issuing a million coupons writes no entry in them.
* ``redemption_attempts``: every attempt, redeemed or refused, with the reason
  code, store, device, order and time.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_REDEEMED = sa.text("redeemed_at IS NOT NULL")
_INDEXES = (
    ("redeemed_order", ["redeemed_order"]),
    ("redeemed_store", ["pool_id", "redeemed_store", "redeemed_at"]),
    ("redeemed_device", ["pool_id", "redeemed_device", "redeemed_at"]),
    ("redeemed_phone", ["pool_id", "redeemed_phone"]),
)


def upgrade() -> None:
    with op.batch_alter_table("coupons") as batch:
        batch.add_column(sa.Column("redeemed_order", sa.String(128), nullable=True))
        batch.add_column(sa.Column("redeemed_amount", sa.Numeric(14, 2), nullable=True))
        batch.add_column(sa.Column("redeemed_store", sa.String(64), nullable=True))
        batch.add_column(sa.Column("redeemed_device", sa.String(128), nullable=True))
        batch.add_column(sa.Column("redeemed_phone", sa.String(32), nullable=True))
    for name, cols in _INDEXES:
        op.create_index(f"ix_coupons_{name}", "coupons", cols, unique=False,
                        sqlite_where=_REDEEMED, postgresql_where=_REDEEMED)
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "redemption_attempts",
        sa.Column("id", big_id, primary_key=True),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("coupon_id", sa.BigInteger(), nullable=True),
        sa.Column("pool_id", sa.String(128), nullable=True),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("phone", sa.String(32), nullable=True),
        sa.Column("order_id", sa.String(128), nullable=True),
        sa.Column("order_amount", sa.Numeric(14, 2), nullable=True),
        sa.Column("store", sa.String(64), nullable=True),
        sa.Column("device", sa.String(128), nullable=True),
        sa.Column("actor", sa.String(128), nullable=True),
        sa.Column("result", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_redemption_attempts")),
    )
    op.create_index("ix_redemption_attempts_code", "redemption_attempts", ["code"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_redemption_attempts_code", table_name="redemption_attempts")
    op.drop_table("redemption_attempts")
    for name, _ in reversed(_INDEXES):
        op.drop_index(f"ix_coupons_{name}", table_name="coupons")
    with op.batch_alter_table("coupons") as batch:
        for col in ("redeemed_phone", "redeemed_device", "redeemed_store", "redeemed_amount", "redeemed_order"):
            batch.drop_column(col)
