"""Messages and delivery receipts (issue 7): receipts, reconcile, resend.

Additive only: receipt/reconcile columns and two lookup indexes on ``outbox``
(a receipt finds its row by connector + provider id; per-recipient rate
limits count a recipient's recent claims), the append-only
``message_attempts`` history and the ``message_receipts`` inbox (unique per
connector + event key, so a retried callback is applied once).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("delivery_status", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("delivery_code", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("delivered_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("reconcile_checks", sa.Integer(), server_default=sa.text("0"), nullable=False))
        batch.add_column(sa.Column("reconciled_at", sa.DateTime(), nullable=True))
    op.create_index("ix_outbox_connector_provider_id", "outbox", ["connector", "provider_id"], unique=False)
    op.create_index("ix_outbox_recipient_claimed", "outbox", ["recipient", "claimed_at"], unique=False)
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    json_type = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
    op.create_table(
        "message_attempts",
        sa.Column("id", big_id, nullable=False),
        sa.Column("message_id", big_id, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("worker", sa.String(length=128), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("provider_id", sa.String(length=255), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["message_id"], ["outbox.id"], name=op.f("fk_message_attempts_message_id_outbox"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_attempts")),
    )
    op.create_index("ix_message_attempts_message_id", "message_attempts", ["message_id"], unique=False)
    op.create_table(
        "message_receipts",
        sa.Column("id", big_id, nullable=False),
        sa.Column("connector", sa.String(length=64), nullable=False),
        sa.Column("event_key", sa.String(length=255), nullable=False),
        sa.Column("provider_id", sa.String(length=255), nullable=True),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("code", sa.String(length=64), nullable=True),
        sa.Column("payload", json_type, nullable=True),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_receipts")),
        sa.UniqueConstraint("connector", "event_key", name=op.f("uq_message_receipts_connector_event_key")),
    )
    op.create_index("ix_message_receipts_message_id", "message_receipts", ["message_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_message_receipts_message_id", table_name="message_receipts")
    op.drop_table("message_receipts")
    op.drop_index("ix_message_attempts_message_id", table_name="message_attempts")
    op.drop_table("message_attempts")
    op.drop_index("ix_outbox_recipient_claimed", table_name="outbox")
    op.drop_index("ix_outbox_connector_provider_id", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("reconciled_at")
        batch.drop_column("reconcile_checks")
        batch.drop_column("delivered_at")
        batch.drop_column("delivery_code")
        batch.drop_column("delivery_status")
