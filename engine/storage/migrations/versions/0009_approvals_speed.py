"""Approvals and records (issues 4, 5): fewer indexes to maintain.

Every submission and transition writes task and instance rows, and on SQLite
each index a row is in is one more page that every commit and checkpoint
writes. These indexes serve no query: ``ix_tasks_role_status`` (tasks are
assigned to people, the ``role`` column is always NULL),
``ix_tasks_assignee_status`` (the inbox looks tasks up by
``assignee_name``; users are deactivated, never deleted, so the foreign key
needs no index either), ``ix_tasks_status_due`` (the overdue count goes
through ``ix_tasks_assignee_name_status`` and the tick through
``ix_tasks_status_wake_at``), ``ix_tasks_instance_id`` (the unique
``(instance_id, seq)`` index answers every lookup by instance, including the
cascade from ``workflow_instances``) and ``ix_workflow_instances_status``
(instances are found by record, task or id). They are dropped; downgrade
restores them.

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
    op.drop_index("ix_tasks_assignee_status", table_name="tasks")
    op.drop_index("ix_workflow_instances_status", table_name="workflow_instances")


def downgrade() -> None:
    op.create_index("ix_workflow_instances_status", "workflow_instances", ["status"], unique=False)
    op.create_index("ix_tasks_assignee_status", "tasks", ["assignee_id", "status"], unique=False)
    op.create_index("ix_tasks_instance_id", "tasks", ["instance_id"], unique=False)
    op.create_index("ix_tasks_status_due", "tasks", ["status", "due_at"], unique=False)
    op.create_index("ix_tasks_role_status", "tasks", ["role", "status"], unique=False)
