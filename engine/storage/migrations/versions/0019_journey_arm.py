"""Experiments (issue 13): the arm a journey was assigned to.

* ``journeys.arm``: NULL when the rule declares no experiment, ``"control"``
  for a holdout customer (entered and counted, sent nothing), otherwise the
  key of the weighted variant. Campaign evaluation (issue 14) reads it to
  compare arms, so it is a column, not a key inside ``state``.

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("journeys") as batch:
        batch.add_column(sa.Column("arm", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("journeys") as batch:
        batch.drop_column("arm")
