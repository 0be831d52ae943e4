"""Click tracking (issue 12, part 4): the short links put in messages and every click on them.

``click_links`` holds one row per (outbox message, URL) the dispatcher
rewrote into ``/c/<token>``: ``token`` is unique (the lookup of a click),
and so is ``(message_id, url)`` (a retried delivery makes no second link).
``first_clicked_at`` is set once by a conditional UPDATE, so the
``message.clicked`` event is written once per (message, link) however often
it is clicked; ``link_clicks`` keeps every click for counting.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "click_links",
        sa.Column("id", big_id, nullable=False),
        sa.Column("token", sa.String(length=16), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=True),
        sa.Column("rule_id", sa.String(length=128), nullable=True),
        sa.Column("template_id", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("first_clicked_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_click_links")),
        sa.UniqueConstraint("token", name=op.f("uq_click_links_token")),
        sa.UniqueConstraint("message_id", "url", name=op.f("uq_click_links_message_id_url")),
    )
    op.create_index("ix_click_links_customer_clicked", "click_links", ["customer_id", "first_clicked_at"],
                    unique=False)
    op.create_table(
        "link_clicks",
        sa.Column("id", big_id, nullable=False),
        sa.Column("link_id", big_id, nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("user_agent", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(["link_id"], ["click_links.id"], name=op.f("fk_link_clicks_link_id_click_links"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_clicks")),
    )
    op.create_index("ix_link_clicks_link_id", "link_clicks", ["link_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_link_clicks_link_id", table_name="link_clicks")
    op.drop_table("link_clicks")
    op.drop_index("ix_click_links_customer_clicked", table_name="click_links")
    op.drop_table("click_links")
