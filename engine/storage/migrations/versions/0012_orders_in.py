"""Orders in: idempotent on (source, external order id), with lines, discount,
store, coupon code, refunds and a net amount.

* ``source`` names the system an order came from (a till, a shop, ``import``
  for the customer CSV); the external order id is unique per source, not
  globally, so two shops may both have an order ``1001``. Rows stored before
  get ``import``, which is what wrote them.
* ``net_amount`` is what the customer finally paid: ``amount`` less refunds,
  0 once refunded in full or cancelled. RFM totals and order windows in
  conditions sum it over the counted statuses (paid, partially_refunded), so
  nobody has to re-derive it from a refunds table. Existing paid orders get
  their amount.
* ``body_hash`` is the hash of the order as first accepted: a repeat with the
  same body answers the stored order, a different body is a conflict.
* ``ix_customers_rfm_f`` and ``ix_customers_rfm_m`` let the RFM quintile
  boundaries be read by index walks, so every order batch can score its
  customers against everyone without ranking the whole table again.
* ``refunds`` keeps the applied refunds (id, amount, time), so a retried
  refund with the same ``refund_id`` is applied once.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_MONEY = sa.Numeric(precision=14, scale=2)


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("source", sa.String(length=64), server_default="import", nullable=False))
        batch.add_column(sa.Column("lines", _JSON, nullable=True))
        batch.add_column(sa.Column("discount", _MONEY, server_default="0", nullable=False))
        batch.add_column(sa.Column("net_amount", _MONEY, server_default="0", nullable=False))
        batch.add_column(sa.Column("refunded_amount", _MONEY, server_default="0", nullable=False))
        batch.add_column(sa.Column("store", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("coupon_code", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("body_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("refunds", _JSON, nullable=True))
        batch.add_column(sa.Column("updated_at", sa.DateTime(), nullable=True))
        batch.drop_constraint("uq_orders_external_id", type_="unique")
        batch.create_unique_constraint("uq_orders_source_external_id", ["source", "external_id"])
    op.execute("UPDATE orders SET net_amount = amount WHERE status = 'paid'")
    op.create_index("ix_customers_rfm_f", "customers", ["order_count", "id"], unique=False)
    op.create_index("ix_customers_rfm_m", "customers", ["total_spent", "id", "order_count"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_customers_rfm_m", table_name="customers")
    op.drop_index("ix_customers_rfm_f", table_name="customers")
    with op.batch_alter_table("orders") as batch:
        batch.drop_constraint("uq_orders_source_external_id", type_="unique")
        batch.create_unique_constraint("uq_orders_external_id", ["external_id"])
        for name in ("updated_at", "refunds", "body_hash", "coupon_code", "store", "refunded_amount", "net_amount",
                     "discount", "lines", "source"):
            batch.drop_column(name)
