"""Records: submitter name column and the unique-values table for ``unique`` fields.

Additive only: a nullable column and index on ``records`` and a new table.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("records") as batch:
        batch.add_column(sa.Column("created_by_name", sa.String(length=128), nullable=True))
    op.create_index("ix_records_form_creator", "records", ["form_id", "created_by_name"], unique=False)
    op.create_table(
        "record_unique_values",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("form_id", sa.String(length=128), nullable=False),
        sa.Column("field", sa.String(length=128), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"], ["records.id"], name=op.f("fk_record_unique_values_record_id_records"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_record_unique_values")),
        sa.UniqueConstraint("form_id", "field", "value", name=op.f("uq_record_unique_values_form_id_field_value")),
    )
    op.create_index(op.f("ix_record_unique_values_record_id"), "record_unique_values", ["record_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_record_unique_values_record_id"), table_name="record_unique_values")
    op.drop_table("record_unique_values")
    op.drop_index("ix_records_form_creator", table_name="records")
    with op.batch_alter_table("records") as batch:
        batch.drop_column("created_by_name")
