"""SQL of feedback in (issue 7): store an answer once, find who and what it
answers, keep pull cursors, list and score feedback for staff.

Everything runs in the caller's transaction and takes naive UTC times.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, and_, case, cast, exists, func, literal, or_, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from engine.storage.bulk import dialect_name, dialect_insert
from engine.storage.customers_repo import upsert_consents
from engine.storage.models import Customer, Feedback, FeedbackCursor, OutboxMessage

_feedback: Table = Feedback.__table__  # type: ignore[assignment]
_cursors: Table = FeedbackCursor.__table__  # type: ignore[assignment]
_cust: Table = Customer.__table__  # type: ignore[assignment]
_outbox: Table = OutboxMessage.__table__  # type: ignore[assignment]

__all__ = [
    "FeedbackRow", "campaigns", "customer_by_id", "customer_by_ref", "feedback_by_key", "get_cursor", "insert_feedback",
    "last_message_to", "list_feedback", "message_by_id", "nps_counts", "opt_out", "set_cursor",
]


@dataclass(frozen=True)
class FeedbackRow:
    id: int
    customer_id: int | None
    customer_name: str | None
    campaign: str | None
    message_id: int | None
    score: int | None
    comment: str | None
    tags: list[str]
    source: str | None
    received_at: datetime


def insert_feedback(session: Session, row: Mapping[str, Any]) -> int | None:
    """Insert one feedback row unless its ``dedupe_key`` is taken; its id, or
    None for a duplicate (the unique key decides, so two racing deliveries of
    one item store it once)."""
    stmt = dialect_insert(dialect_name(session), _feedback).on_conflict_do_nothing().returning(_feedback.c.id)
    found = session.connection().execute(stmt, dict(row)).scalar_one_or_none()
    return None if found is None else int(found)


def feedback_by_key(session: Session, dedupe_key: str) -> tuple[int, str | None, int | None] | None:
    """(id, body_hash, score) of the feedback stored under ``dedupe_key``."""
    row = session.execute(select(_feedback.c.id, _feedback.c.body_hash, _feedback.c.score)
                          .where(_feedback.c.dedupe_key == dedupe_key)).first()
    return None if row is None else (int(row[0]), row[1], row[2])


def customer_by_id(session: Session, customer_id: int) -> dict[str, Any] | None:
    row = session.execute(select(_cust.c.id, _cust.c.name, _cust.c.external_id)
                          .where(_cust.c.id == customer_id)).first()
    return None if row is None else {"id": int(row[0]), "name": row[1], "external_id": row[2]}


def customer_by_ref(session: Session, *, external_id: str | None = None, phone: str | None = None,
                    email: str | None = None, wecom_userid: str | None = None) -> int | None:
    """The id of the customer an inbound item names, trying the keys in that
    order (a WeCom sender is ``attrs.wecom_external_userid`` or the external id,
    the same addresses the automation sends to); None if nobody matches."""
    if external_id:
        found = session.execute(select(_cust.c.id).where(_cust.c.external_id == external_id)).scalar()
        if found is not None:
            return int(found)
    if phone:
        found = session.execute(select(_cust.c.id).where(_cust.c.phone == phone).order_by(_cust.c.id)).scalar()
        if found is not None:
            return int(found)
    if email:
        found = session.execute(select(_cust.c.id).where(func.lower(_cust.c.email) == email.lower())
                                .order_by(_cust.c.id)).scalar()
        if found is not None:
            return int(found)
    if wecom_userid:
        attr = _cust.c.attrs["wecom_external_userid"].as_string()
        found = session.execute(select(_cust.c.id).where(or_(attr == wecom_userid, _cust.c.external_id == wecom_userid))
                                .order_by(_cust.c.id)).scalar()
        if found is not None:
            return int(found)
    return None


def message_by_id(session: Session, message_id: int) -> dict[str, Any] | None:
    """The outbox row an answer names: its customer and rule."""
    row = session.execute(select(_outbox.c.id, _outbox.c.customer_id, _outbox.c.rule_id)
                          .where(_outbox.c.id == message_id)).first()
    return None if row is None else {"id": int(row[0]), "customer_id": row[1], "rule_id": row[2]}


def last_message_to(session: Session, *, customer_id: int | None, recipient: str | None,
                    channel: str | None = None) -> dict[str, Any] | None:
    """The latest message sent to a customer (or address) on ``channel``: what a
    free-text reply most likely answers."""
    conds = []
    if customer_id is not None:
        conds.append(_outbox.c.customer_id == customer_id)
    elif recipient:
        conds.append(_outbox.c.recipient == recipient)
    else:
        return None
    if channel:
        conds.append(_outbox.c.channel == channel)
    row = session.execute(select(_outbox.c.id, _outbox.c.customer_id, _outbox.c.rule_id)
                          .where(and_(*conds), _outbox.c.status.in_(("sent", "delivered", "unknown")))
                          .order_by(_outbox.c.id.desc()).limit(1)).first()
    return None if row is None else {"id": int(row[0]), "customer_id": row[1], "rule_id": row[2]}


def opt_out(session: Session, customer_id: int, channels: Sequence[str], *, source: str, db_now: datetime) -> None:
    """Withdraw the customer's consent on ``channels``: the consent rows the
    import writes, the rule audiences read and the dispatcher re-checks."""
    upsert_consents(session, [{"customer_id": customer_id, "channel": ch, "granted": False, "source": source[:64],
                               "updated_at": db_now} for ch in channels])


def get_cursor(session: Session, source: str) -> str | None:
    return session.execute(select(_cursors.c.cursor).where(_cursors.c.source == source)).scalar()


def set_cursor(session: Session, source: str, cursor: str | None, db_now: datetime) -> None:
    """Store where ``source`` stopped (insert or update)."""
    stmt = dialect_insert(dialect_name(session), _cursors).values(source=source, cursor=cursor, updated_at=db_now)
    stmt = stmt.on_conflict_do_update(index_elements=["source"], set_={"cursor": cursor, "updated_at": db_now})
    session.connection().execute(stmt)


def _filters(session: Session, campaign: str | None, tag: str | None, min_score: int | None,
             max_score: int | None) -> list[Any]:
    conds: list[Any] = []
    if campaign:
        conds.append(_feedback.c.campaign == campaign)
    if min_score is not None:
        conds.append(_feedback.c.score >= min_score)
    if max_score is not None:
        conds.append(_feedback.c.score <= max_score)
    if tag:
        # Tags are a JSON list: jsonb containment on PostgreSQL, json_each on SQLite
        # (whose JSON text escapes non-ASCII, so a text match would miss 物流慢).
        if dialect_name(session) == "postgresql":
            conds.append(cast(_feedback.c.tags, JSONB).contains([tag]))
        else:
            each = func.json_each(_feedback.c.tags).table_valued("value")
            conds.append(exists(select(literal(1)).select_from(each).where(each.c.value == tag)))
    return conds


def list_feedback(session: Session, *, campaign: str | None = None, tag: str | None = None,
                  min_score: int | None = None, max_score: int | None = None, limit: int = 100,
                  offset: int = 0) -> list[FeedbackRow]:
    """Feedback newest first, with the customer's name."""
    stmt = (select(_feedback.c.id, _feedback.c.customer_id, _cust.c.name, _feedback.c.campaign,
                   _feedback.c.message_id, _feedback.c.score, _feedback.c.comment, _feedback.c.tags,
                   _feedback.c.source, _feedback.c.received_at)
            .select_from(_feedback.outerjoin(_cust, _cust.c.id == _feedback.c.customer_id))
            .where(*_filters(session, campaign, tag, min_score, max_score))
            .order_by(_feedback.c.received_at.desc(), _feedback.c.id.desc()).limit(limit).offset(offset))
    return [FeedbackRow(int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], list(r[7] or []), r[8], r[9])
            for r in session.execute(stmt)]


def nps_counts(session: Session, *, campaign: str | None = None, tag: str | None = None) -> tuple[int, int, int]:
    """(promoters 9–10, passives 7–8, detractors 0–6) among scored answers."""
    score = _feedback.c.score
    row = session.execute(select(
        func.coalesce(func.sum(case((score >= 9, 1), else_=0)), 0),
        func.coalesce(func.sum(case((and_(score >= 7, score <= 8), 1), else_=0)), 0),
        func.coalesce(func.sum(case((score <= 6, 1), else_=0)), 0),
    ).where(score.is_not(None), *_filters(session, campaign, tag, None, None))).one()
    return int(row[0]), int(row[1]), int(row[2])


def campaigns(session: Session) -> list[str]:
    """Campaigns that have feedback, for the list filter."""
    return [c for (c,) in session.execute(select(_feedback.c.campaign).where(_feedback.c.campaign.is_not(None))
                                          .distinct().order_by(_feedback.c.campaign))]

