"""Data in (issue 12): customer identities and idempotent inbound events.

* ``customer_identities``: identities a customer is found by that have no
  column of their own (``member_no``, ``wecom``: the WeCom external userid),
  and the phone numbers, e-mails and external ids of customers merged into
  another one (aliases: a till that still knows the old phone finds the
  survivor). ``(kind, value)`` is unique, so one identity names one customer
  and two requests racing to claim it cannot both win.
* ``events.idempotency_key``: the key a client sent with a custom event
  (``POST /api/v1/events``) or the provider's event key of a callback; unique,
  so a repeated request stores nothing twice and answers the first result.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customer_identities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"],
                                name="fk_customer_identities_customer_id_customers", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_customer_identities"),
        sa.UniqueConstraint("kind", "value", name="uq_customer_identities_kind_value"),
    )
    op.create_index("ix_customer_identities_customer_id", "customer_identities", ["customer_id"], unique=False)
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(length=255), nullable=True))
    op.create_index("ix_events_idempotency_key", "events", ["idempotency_key"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_events_idempotency_key", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("idempotency_key")
    op.drop_index("ix_customer_identities_customer_id", table_name="customer_identities")
    op.drop_table("customer_identities")
