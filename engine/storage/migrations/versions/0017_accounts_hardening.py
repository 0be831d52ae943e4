"""Accounts hardening (issue 16): session versions, forced password change,
and a login throttle that every process shares.

* ``users.session_version``: stored in the session cookie and compared on each
  request; logout, a password change and an admin reset increment it, which
  ends every session of the user in every process (a copied cookie included).
* ``users.must_change_password``: set by an admin reset (the one-time password
  works once to sign in, then only the change-password page opens).
* ``users.password_changed_at``: when the password was last set (audit, UI).
* ``login_throttle``: one row per throttled key (``account:<name>`` or
  ``address:<ip>``) with its failure count and lock; a table, not process
  memory, so all server processes see the same lock-out.

Revision ID: 0017
Revises: 0015
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("session_version", sa.Integer(), server_default=sa.text("0"), nullable=False))
        batch.add_column(sa.Column("must_change_password", sa.Boolean(), server_default=sa.false(),
                                   nullable=False))
        batch.add_column(sa.Column("password_changed_at", sa.DateTime(), nullable=True))
    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", sa.DateTime(), nullable=False),
        sa.Column("locked_until", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_throttle")),
    )


def downgrade() -> None:
    op.drop_table("login_throttle")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("password_changed_at")
        batch.drop_column("must_change_password")
        batch.drop_column("session_version")
