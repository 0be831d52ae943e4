"""Rule runs: less to maintain per outbox and coupon row written.

A win-back run writes one journey, one coupon and one outbox row per entered
customer; on PostgreSQL each row pays for every index it goes into and every
foreign key checked on insert (a lookup plus a row lock on the referenced row,
per row). Measured on 1M customers, these were most of the rule's time beyond
the bare entry statement. Changes:

* ``fk_outbox_journey_id_journeys`` and ``fk_coupons_journey_id_journeys``
  are dropped. Every writer of ``journey_id`` takes it from a journey that
  exists in its own transaction: the set-based entry
  (:mod:`engine.storage.entry_sql`) selects coupons from the journeys its own
  statement just inserted (``journeys j … j.id > mark``, under the rule's
  entry lock) and outbox rows from those coupons (or journeys); the
  per-journey path writes for the journey row it has claimed. Journeys are
  never deleted (no code path, no page, no cascade from customers: a journey's
  subject is not a foreign key), so ``ON DELETE SET NULL`` never fired; the
  constraint only cost a lookup and a ``FOR KEY SHARE`` lock of the journey per
  row. The foreign keys that protect against what users do are kept:
  ``coupons.customer_id`` (deleting a customer deletes their coupons) and
  everything on ``customers``.
* ``ix_outbox_journey_id``: no query looks outbox rows up by journey, and with
  the foreign key gone no cascade needs it either.
* ``ix_outbox_next_attempt_at``: every query on ``next_attempt_at`` (claim,
  log delivery, quiet-hours deferral) also tests ``status``, which
  ``ix_outbox_status_next_attempt`` serves.
* ``ix_outbox_recipient_claimed`` and ``ix_outbox_connector_provider_id``
  become partial: ``WHERE claimed_at IS NOT NULL`` and ``WHERE provider_id IS
  NOT NULL``. Their only queries (the per-recipient send limits:
  ``recipient … AND claimed_at > since``; receipts: ``connector = … AND
  provider_id = …``) imply those predicates, so both backends still use them,
  and a freshly queued row (no claim, no provider id yet) is not in them: it
  enters them when claimed or sent, an update that rewrites the row's index
  entries anyway.

Downgrade restores the full indexes and the foreign keys.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_outbox_journey_id", table_name="outbox")
    op.drop_index("ix_outbox_next_attempt_at", table_name="outbox")
    op.drop_index("ix_outbox_recipient_claimed", table_name="outbox")
    op.drop_index("ix_outbox_connector_provider_id", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_constraint("fk_outbox_journey_id_journeys", type_="foreignkey")
    with op.batch_alter_table("coupons") as batch:
        batch.drop_constraint("fk_coupons_journey_id_journeys", type_="foreignkey")
    op.create_index("ix_outbox_recipient_claimed", "outbox", ["recipient", "claimed_at"], unique=False,
                    sqlite_where=sa.text("claimed_at IS NOT NULL"),
                    postgresql_where=sa.text("claimed_at IS NOT NULL"))
    op.create_index("ix_outbox_connector_provider_id", "outbox", ["connector", "provider_id"], unique=False,
                    sqlite_where=sa.text("provider_id IS NOT NULL"),
                    postgresql_where=sa.text("provider_id IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_outbox_connector_provider_id", table_name="outbox")
    op.drop_index("ix_outbox_recipient_claimed", table_name="outbox")
    with op.batch_alter_table("coupons") as batch:
        batch.create_foreign_key("fk_coupons_journey_id_journeys", "journeys", ["journey_id"], ["id"],
                                 ondelete="SET NULL")
    with op.batch_alter_table("outbox") as batch:
        batch.create_foreign_key("fk_outbox_journey_id_journeys", "journeys", ["journey_id"], ["id"],
                                 ondelete="SET NULL")
    op.create_index("ix_outbox_connector_provider_id", "outbox", ["connector", "provider_id"], unique=False)
    op.create_index("ix_outbox_recipient_claimed", "outbox", ["recipient", "claimed_at"], unique=False)
    op.create_index("ix_outbox_next_attempt_at", "outbox", ["next_attempt_at"], unique=False)
    op.create_index("ix_outbox_journey_id", "outbox", ["journey_id"], unique=False)
