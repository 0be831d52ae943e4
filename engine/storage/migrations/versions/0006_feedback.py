"""Feedback in (issue 7): surveys, inbound webhooks, WeCom callbacks, keyword tags: schema changes, if any.

Reserved in advance so that work on several issues can add tables without
creating two Alembic heads; empty until that work needs it.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
