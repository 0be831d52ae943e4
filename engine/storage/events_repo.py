"""Domain events, appended in the transaction of the change that caused them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from engine.storage.models import Event
from engine.storage.times import to_db_time


_INSERT = insert(Event.__table__).returning(Event.__table__.c.id)


def append_event(
    session: Session,
    name: str,
    subject_type: str | None,
    subject_id: str | int | None,
    payload: dict[str, Any] | None,
    now: datetime,
) -> int:
    """Add one event (``record.created`` …) to the caller's transaction; returns its id.

    ``now`` is aware; ``subject_id`` is stored as text so any key fits.
    """
    params = {"name": name, "subject_type": subject_type,
              "subject_id": None if subject_id is None else str(subject_id), "payload": payload,
              "created_at": to_db_time(now)}
    return int(session.connection().execute(_INSERT, params).scalar_one())


__all__ = ["append_event"]
