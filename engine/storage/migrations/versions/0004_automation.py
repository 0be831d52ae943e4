"""Automation (issue 6): rule runs with their counters; outbox customer and template.

Additive only: two nullable columns and an index on ``outbox`` (frequency caps
count a customer's messages per channel and time) and the ``rule_runs`` table.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COUNTERS = ("entered", "advanced", "sent", "skipped_consent", "skipped_cap", "skipped_other",
             "deferred_quiet", "deferred_cap", "exited", "completed", "errors")


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("customer_id", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("template_id", sa.String(length=128), nullable=True))
    op.create_index("ix_outbox_customer_channel_created", "outbox", ["customer_id", "channel", "created_at"],
                    unique=False)
    json_type = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
    op.create_table(
        "rule_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("rule_id", sa.String(length=128), nullable=False),
        sa.Column("rule_version", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("scheduled_for", sa.DateTime(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        *(sa.Column(name, sa.Integer(), server_default=sa.text("0"), nullable=False) for name in _COUNTERS),
        sa.Column("detail", json_type, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rule_runs")),
        sa.UniqueConstraint("rule_id", "kind", "scheduled_for",
                            name=op.f("uq_rule_runs_rule_id_kind_scheduled_for")),
    )
    op.create_index("ix_rule_runs_rule_started", "rule_runs", ["rule_id", "started_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_rule_runs_rule_started", table_name="rule_runs")
    op.drop_table("rule_runs")
    op.drop_index("ix_outbox_customer_channel_created", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("template_id")
        batch.drop_column("customer_id")
