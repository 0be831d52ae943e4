"""Customer rights (issue 16): an erased customer is never entered again.

* ``customers.erased_at``: when the customer was erased (PIPL erasure, see
  :mod:`engine.customer_rights`). Every rule's entry SQL and the per-journey
  path skip a customer with it set; the row itself stays (anonymised) so
  orders, consent proof and aggregates keep their key.

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("erased_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("erased_at")
