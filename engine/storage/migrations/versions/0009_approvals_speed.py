"""Approvals and records (issues 4, 5): fewer task indexes to maintain.

Every transition writes task rows, and on SQLite each index a row is in is one
more page that every commit and checkpoint writes. Three of the task indexes
serve no query: ``ix_tasks_role_status`` (tasks are assigned to people, the
``role`` column is always NULL), ``ix_tasks_status_due`` (the overdue count
goes through ``ix_tasks_assignee_name_status`` and the tick through
``ix_tasks_status_wake_at``) and ``ix_tasks_instance_id`` (the unique
``(instance_id, seq)`` index answers every lookup by instance, including the
cascade from ``workflow_instances``). They are dropped; downgrade restores them.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_tasks_role_status", table_name="tasks")
    op.drop_index("ix_tasks_status_due", table_name="tasks")
    op.drop_index("ix_tasks_instance_id", table_name="tasks")


def downgrade() -> None:
    op.create_index("ix_tasks_instance_id", "tasks", ["instance_id"], unique=False)
    op.create_index("ix_tasks_status_due", "tasks", ["status", "due_at"], unique=False)
    op.create_index("ix_tasks_role_status", "tasks", ["role", "status"], unique=False)
