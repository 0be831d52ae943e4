"""Loyalty (issue 13, item 3): the points ledger and the customer's tier.

* ``points_ledger``: one row per movement of a customer's points (earned,
  spent, expired, adjusted). Earned rows (and positive adjustments) are
  *lots*: ``remaining`` is what is left of them, ``expires_on`` the local
  day they lapse. Spending and expiry consume lots oldest first, so the
  balance is both the sum of ``amount`` and the sum of open lots'
  ``remaining``. ``idempotency_key`` is unique: a repeated request or tick
  writes nothing.
* ``customers.points`` / ``customers.points_expire_on``: the balance and the
  day the oldest open lot lapses, kept by the ledger's one writer
  (``engine/storage/points_repo.py``) so that conditions and the
  date-relative trigger (积分即将过期提醒) read a column, set-based.
* ``customers.tier``: the tier level key (``silver``, ``gold`` …) the tier
  evaluation set last; NULL below the lowest level.

Revision ID: 0021
Revises: 0019
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "points_ledger",
        sa.Column("id", _BIG_ID, primary_key=True),
        sa.Column("customer_id", sa.Integer(), sa.ForeignKey("customers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("remaining", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("expires_on", sa.Date(), nullable=True),
        sa.Column("reason", sa.String(255), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("source_ref", sa.String(128), nullable=True),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_points_ledger"),
        sa.UniqueConstraint("idempotency_key", name="uq_points_ledger_idempotency_key"),
    )
    op.create_index("ix_points_ledger_customer_id", "points_ledger", ["customer_id", "id"])
    op.create_index("ix_points_ledger_source_ref", "points_ledger", ["source", "source_ref"])
    # Open lots only: what spending (per customer, oldest first) and the expiry tick (by day) read.
    op.create_index("ix_points_ledger_open_lots", "points_ledger", ["expires_on", "customer_id"],
                    sqlite_where=sa.text("remaining > 0"), postgresql_where=sa.text("remaining > 0"))
    # A customer's open lots, covering: balance and next lapse day in one index seek per customer.
    op.create_index("ix_points_ledger_customer_open", "points_ledger", ["customer_id", "expires_on", "remaining"],
                    sqlite_where=sa.text("remaining > 0"), postgresql_where=sa.text("remaining > 0"))
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("points", sa.BigInteger(), nullable=False, server_default=sa.text("0")))
        batch.add_column(sa.Column("points_expire_on", sa.Date(), nullable=True))
        batch.add_column(sa.Column("tier", sa.String(32), nullable=True))
        batch.create_index("ix_customers_points_expire_on", ["points_expire_on"])
        batch.create_index("ix_customers_tier", ["tier"])


def downgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.drop_index("ix_customers_tier")
        batch.drop_index("ix_customers_points_expire_on")
        batch.drop_column("tier")
        batch.drop_column("points_expire_on")
        batch.drop_column("points")
    op.drop_index("ix_points_ledger_customer_open", table_name="points_ledger")
    op.drop_index("ix_points_ledger_open_lots", table_name="points_ledger")
    op.drop_index("ix_points_ledger_source_ref", table_name="points_ledger")
    op.drop_index("ix_points_ledger_customer_id", table_name="points_ledger")
    op.drop_table("points_ledger")
