"""Retention: remove what a year of daily rules leaves behind (issue 17).

Three kinds of rows grow without bound and are not needed once old:

- ``events`` that were processed (an unprocessed event is still work: kept);
- the ``body`` of outbox rows that were sent or delivered (the row, its
  status and counters stay, so reports and caps still count it). Dead letters
  keep theirs: they can still be resent (``/messages/<id>/resend``), and a
  resend of a cleared row would send an empty message;
- ``message_attempts`` (a message's send history).

The audit log is never touched. Every step is a set-based statement over a
bounded batch of ids (``… WHERE id IN (SELECT id … LIMIT n)``), one
transaction per batch, so a large prune neither holds a long lock nor loops
over rows in Python.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Delete, Table, Update, delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from engine.storage.database import transaction
from engine.storage.results import affected
from engine.storage.models import Event, MessageAttempt, OutboxMessage
from engine.storage.times import to_db_time

_events: Table = Event.__table__  # type: ignore[assignment]
_outbox: Table = OutboxMessage.__table__  # type: ignore[assignment]
_attempts: Table = MessageAttempt.__table__  # type: ignore[assignment]

#: Outbox statuses whose body is no longer needed once old. Not ``dead`` nor
#: ``unknown``: those may be resent (engine.dispatch.RESENDABLE).
FINISHED_STATUSES = ("sent",)
#: Statuses a person may resend (the same as ``engine.dispatch.RESENDABLE``; a
#: test keeps them equal — storage does not import the dispatcher).
RESENDABLE = ("dead", "unknown")
BATCH = 5000


@dataclass(frozen=True)
class PruneStep:
    """What was (or, in a dry run, would be) pruned in one table."""

    name: str
    table: str
    action: str  # "deleted" | "cleared"
    rows: int
    cutoff: datetime


def _events_where(cutoff: datetime):  # type: ignore[no-untyped-def]
    return (_events.c.processed_at.is_not(None)) & (_events.c.created_at < cutoff)


def _bodies_where(cutoff: datetime):  # type: ignore[no-untyped-def]
    finished = _outbox.c.status.in_(FINISHED_STATUSES) | (
        (_outbox.c.delivery_status == "delivered") & _outbox.c.status.not_in(RESENDABLE))
    return finished & (_outbox.c.created_at < cutoff) & _outbox.c.body.is_not(None)


def _attempts_where(cutoff: datetime):  # type: ignore[no-untyped-def]
    return _attempts.c.at < cutoff


#: name → (table, action, where-builder)
_STEPS = {
    "events": (_events, "deleted", _events_where),
    "message_bodies": (_outbox, "cleared", _bodies_where),
    "attempts": (_attempts, "deleted", _attempts_where),
}


def prune(session_factory: sessionmaker[Session], cutoffs: dict[str, datetime], *, dry_run: bool = False,
          batch: int = BATCH, progress: Callable[[PruneStep], None] | None = None) -> list[PruneStep]:
    """Prune every table named in ``cutoffs`` (``events``, ``message_bodies``,
    ``attempts`` → aware UTC time before which rows go). ``dry_run`` only
    counts. ``progress`` is called once per table with its total."""
    done: list[PruneStep] = []
    for name, cutoff_at in cutoffs.items():
        table, action, where_of = _STEPS[name]
        cutoff = to_db_time(cutoff_at)
        where = where_of(cutoff)
        total = 0
        if dry_run:
            with transaction(session_factory) as session:
                total = int(session.execute(select(func.count()).select_from(table).where(where)).scalar_one())
        else:
            while True:
                ids = select(table.c.id).where(where).order_by(table.c.id).limit(batch).scalar_subquery()
                statement: Delete | Update
                if action == "deleted":
                    statement = delete(table).where(table.c.id.in_(ids))
                else:
                    statement = update(table).where(table.c.id.in_(ids)).values(body=None)
                with transaction(session_factory) as session:
                    count = affected(session.execute(statement.execution_options(synchronize_session=False)))
                total += count
                if count < batch:
                    break
        step = PruneStep(name, table.name, action, total, cutoff_at)
        done.append(step)
        if progress is not None:
            progress(step)
    return done


__all__ = ["BATCH", "FINISHED_STATUSES", "RESENDABLE", "PruneStep", "prune"]
