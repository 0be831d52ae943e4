"""Tasks from rules: a rule's ``create_task`` step writes a real inbox task.

Rule tasks live in the ``tasks`` table beside approval tasks, so one id
space serves ``/tasks/<id>``, the inbox counts and the tick's
``(status, wake_at)`` index. A rule task has no workflow instance
(``instance_id`` becomes nullable, ``kind`` is ``rule``) and carries:

* ``title``: the step's title; ``customer_id``: the customer it is about
  (NULL for a record audience); ``rule_id`` and ``journey_id``: where it
  came from;
* ``outcome`` (contacted, resolved, no_answer, declined or one the step
  declares) and ``response_seconds`` (created → done), set when it is done;
* ``detail``: the step's policy at creation (outcomes, reminder interval,
  escalation) and the reminder state (next reminder, count, escalated), so
  the tick needs no rule version lookup.

``uq_tasks_journey_id_step_id_assignee_name`` makes creation idempotent: a
journey batch repeated after a crash inserts nothing twice (approval tasks
have no journey: NULLs never conflict).

``users.store``: the store a staff member works at. A customer's store is
the customer attribute ``store``; a role assignee (``to: {role:
store_manager}``) of a task about a customer with a store goes to the role's
holders at that store when there are any.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    json_type = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
    with op.batch_alter_table("tasks") as batch:
        batch.alter_column("instance_id", existing_type=sa.Integer(), nullable=True)
        batch.add_column(sa.Column("title", sa.String(255), nullable=True))
        batch.add_column(sa.Column("customer_id", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("rule_id", sa.String(128), nullable=True))
        batch.add_column(sa.Column("journey_id", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("outcome", sa.String(32), nullable=True))
        batch.add_column(sa.Column("response_seconds", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("detail", json_type, nullable=True))
        batch.create_unique_constraint(op.f("uq_tasks_journey_id_step_id_assignee_name"),
                                       ["journey_id", "step_id", "assignee_name"])
        batch.create_index(op.f("ix_tasks_customer_id"), ["customer_id"])
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("store", sa.String(64), nullable=True))
        batch.create_index(op.f("ix_users_store"), ["store"])


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_index(op.f("ix_users_store"))
        batch.drop_column("store")
    op.execute("DELETE FROM tasks WHERE instance_id IS NULL")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_index(op.f("ix_tasks_customer_id"))
        batch.drop_constraint(op.f("uq_tasks_journey_id_step_id_assignee_name"), type_="unique")
        for column in ("detail", "response_seconds", "outcome", "journey_id", "rule_id", "customer_id", "title"):
            batch.drop_column(column)
        batch.alter_column("instance_id", existing_type=sa.Integer(), nullable=False)
