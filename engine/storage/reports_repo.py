"""Weekly campaign reports (issue 14, item 7): whether this week's report is queued."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.storage.models import OutboxMessage


def report_queued(session: Session, idempotency_key: str) -> bool:
    """True when a message with ``idempotency_key`` (``report:<campaign>:<week>``)
    is in the outbox: the report is not rendered again (its charts cost a few
    hundred milliseconds each)."""
    stmt = select(OutboxMessage.id).where(OutboxMessage.idempotency_key == idempotency_key)
    return session.execute(stmt).first() is not None
