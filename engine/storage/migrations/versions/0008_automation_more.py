"""Automation (issue 6): the memory of ``segment_change`` rules.

``segment_memory`` holds, per rule, who was in its ``from`` and ``to``
segments at its last run; the next run enters the customers who moved.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "segment_memory",
        sa.Column("rule_id", sa.String(length=128), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("rule_id", "side", "customer_id", name=op.f("pk_segment_memory")),
    )


def downgrade() -> None:
    op.drop_table("segment_memory")
