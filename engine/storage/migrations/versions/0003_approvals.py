"""Approval flows (issue 5): task columns for the inbox and the tick.

Additive only: ``tasks`` gets the instance-local task number (``seq``, unique
per instance), the assignee's user name, the task kind (approval or cc) and
``wake_at`` (when the scheduler's tick next has work for the task), with the
indexes of the inbox query and the tick's due query.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("seq", sa.Integer(), server_default=sa.text("0"), nullable=False))
        batch.add_column(sa.Column("assignee_name", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("kind", sa.String(length=16), server_default="approval", nullable=False))
        batch.add_column(sa.Column("wake_at", sa.DateTime(), nullable=True))
        batch.create_unique_constraint(op.f("uq_tasks_instance_id_seq"), ["instance_id", "seq"])
    op.create_index("ix_tasks_assignee_name_status", "tasks", ["assignee_name", "status"], unique=False)
    op.create_index("ix_tasks_status_wake_at", "tasks", ["status", "wake_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_tasks_status_wake_at", table_name="tasks")
    op.drop_index("ix_tasks_assignee_name_status", table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_constraint(op.f("uq_tasks_instance_id_seq"), type_="unique")
        batch.drop_column("wake_at")
        batch.drop_column("kind")
        batch.drop_column("assignee_name")
        batch.drop_column("seq")
