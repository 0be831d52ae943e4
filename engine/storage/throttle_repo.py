"""The ``login_throttle`` table: failed sign-ins per key and the locks they earned.

A table, not process memory, so every server process (and every host on one
PostgreSQL) sees the same counts. Each statement is a single indexed
primary-key read or upsert; the caller's transaction commits them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import case, delete, func, or_, select, update
from sqlalchemy.orm import Session

from engine.storage.bulk import dialect_name, dialect_insert
from engine.storage.models import LoginThrottle
from engine.storage.times import from_db_time, to_db_time

_t = LoginThrottle.__table__


def locked_until(session: Session, keys: Sequence[str], now: datetime) -> datetime | None:
    """The latest lock among ``keys`` that is still running at ``now`` (aware), or None."""
    if not keys:
        return None
    until = session.execute(
        select(func.max(_t.c.locked_until)).where(_t.c.key.in_(list(keys)), _t.c.locked_until > to_db_time(now))
    ).scalar()
    return None if until is None else from_db_time(until)


def record_failure(session: Session, key: str, now: datetime, forget_before: datetime) -> int:
    """Count one failure for ``key`` and return the count. A key whose last
    failure is older than ``forget_before`` starts again at 1 (its lock gone).
    One atomic upsert, so concurrent failures in other processes all count."""
    db_now, stale_at = to_db_time(now), to_db_time(forget_before)
    stale = _t.c.last_failure_at < stale_at
    stmt = dialect_insert(dialect_name(session), _t).values(key=key, failures=1, last_failure_at=db_now,
                                                      locked_until=None)
    upsert = stmt.on_conflict_do_update(
        index_elements=["key"],
        set_={"failures": case((stale, 1), else_=_t.c.failures + 1),
              "locked_until": case((stale, None), else_=_t.c.locked_until),
              "last_failure_at": db_now},
    ).returning(_t.c.failures)
    return int(session.connection().execute(upsert).scalar_one())


def lock(session: Session, key: str, until: datetime) -> None:
    """Lock ``key`` until ``until`` unless a longer lock already holds it."""
    db_until = to_db_time(until)
    session.connection().execute(
        update(_t).where(_t.c.key == key, or_(_t.c.locked_until.is_(None), _t.c.locked_until < db_until))
        .values(locked_until=db_until))


def clear(session: Session, key: str) -> None:
    """Forget the failures and lock of ``key`` (a successful sign-in, an admin reset)."""
    session.connection().execute(delete(_t).where(_t.c.key == key))
