"""Feedback in (issue 7): surveys, inbound webhooks, WeCom callbacks, keyword tags.

Additive only: ``feedback`` gets ``dedupe_key`` (unique: the inbound item's
key, so retries and replays store nothing twice), ``body_hash`` (a replay with
a different body is a conflict) and ``data`` (the whole answer);
``feedback_cursors`` keeps where each pull connector stopped.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    json_type = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("dedupe_key", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("body_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("data", json_type, nullable=True))
        batch.create_unique_constraint(op.f("uq_feedback_dedupe_key"), ["dedupe_key"])
    op.create_table(
        "feedback_cursors",
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_feedback_cursors")),
    )


def downgrade() -> None:
    op.drop_table("feedback_cursors")
    with op.batch_alter_table("feedback") as batch:
        batch.drop_constraint(op.f("uq_feedback_dedupe_key"), type_="unique")
        batch.drop_column("data")
        batch.drop_column("body_hash")
        batch.drop_column("dedupe_key")
