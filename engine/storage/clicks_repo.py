"""Short links and their clicks (tables ``click_links``, ``link_clicks``).

Statements run in the caller's transaction; times are naive UTC.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.orm import Session

from engine.storage.bulk import insert_ignore
from engine.storage.models import ClickLink, LinkClick

_links: Table = ClickLink.__table__  # type: ignore[assignment]
_clicks: Table = LinkClick.__table__  # type: ignore[assignment]

__all__ = ["StoredLink", "add_links", "clicked_since", "find", "links_of", "record_click"]

_CHUNK = 500


@dataclass(frozen=True)
class StoredLink:
    """A short link as stored."""

    id: int
    token: str
    message_id: int
    url: str
    customer_id: int | None
    rule_id: str | None
    template_id: str | None
    first_clicked_at: datetime | None


def add_links(session: Session, rows: Sequence[Mapping[str, Any]]) -> int:
    """Store short links (``token, message_id, url, customer_id, rule_id,
    template_id, created_at``); a link already stored (a retried delivery)
    is kept as it is. Returns how many were new."""
    return insert_ignore(session, _links, rows)


def find(session: Session, token: str) -> StoredLink | None:
    """The link of ``token``, or None."""
    row = session.execute(select(_links).where(_links.c.token == token)).first()
    if row is None:
        return None
    m = row._mapping
    return StoredLink(int(m["id"]), m["token"], int(m["message_id"]), m["url"],
                      None if m["customer_id"] is None else int(m["customer_id"]), m["rule_id"],
                      m["template_id"], m["first_clicked_at"])


def record_click(session: Session, link_id: int, at: datetime, user_agent: str | None) -> bool:
    """Count one click; True when it is the link's first (then the caller
    writes the ``message.clicked`` event in the same transaction). The
    conditional UPDATE makes two simultaneous first clicks report one first."""
    session.connection().execute(insert(_clicks), {"link_id": link_id, "at": at,
                                                  "user_agent": (user_agent or "")[:255] or None})
    first = session.connection().execute(
        update(_links).where(_links.c.id == link_id, _links.c.first_clicked_at.is_(None))
        .values(first_clicked_at=at).execution_options(preserve_rowcount=True))
    return first.rowcount == 1


def clicked_since(session: Session, customer_ids: Collection[int],
                  since: datetime) -> dict[tuple[int, str | None], list[datetime]]:
    """First-click times of links per (customer, rule), clicked at or after ``since``."""
    out: dict[tuple[int, str | None], list[datetime]] = {}
    ids = sorted({int(c) for c in customer_ids})
    for start in range(0, len(ids), _CHUNK):
        stmt = (select(_links.c.customer_id, _links.c.rule_id, _links.c.first_clicked_at)
                .where(_links.c.customer_id.in_(ids[start:start + _CHUNK]),
                       _links.c.first_clicked_at >= since))
        for cid, rule_id, at in session.execute(stmt):
            out.setdefault((int(cid), rule_id), []).append(at)
    return out


def links_of(session: Session, message_id: int) -> list[dict[str, Any]]:
    """A message's short links with their clicks (``url, token,
    first_clicked_at, clicks``), in the order they were stored."""
    stmt = (select(_links.c.url, _links.c.token, _links.c.first_clicked_at, func.count(_clicks.c.id).label("clicks"))
            .outerjoin(_clicks, _clicks.c.link_id == _links.c.id).where(_links.c.message_id == message_id)
            .group_by(_links.c.id, _links.c.url, _links.c.token, _links.c.first_clicked_at).order_by(_links.c.id))
    return [dict(r._mapping) for r in session.execute(stmt)]
