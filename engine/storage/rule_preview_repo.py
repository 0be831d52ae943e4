"""The SQL of a rule's preview (``engine.automation.preview``): the audience
counted and sampled with the rule's own WHERE clause, and what the simulated
run wrote, read back before the preview's transaction is rolled back."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.conditions.ast import Condition
from engine.storage.condition_sql import customer_where
from engine.storage.models import Coupon, Customer, Journey, OutboxMessage
from engine.storage.times import from_db_time

__all__ = ["arm_counts", "audience_sample", "coupons_issued_after", "high_water", "next_due", "outbox_written_after"]

_cust = Customer.__table__
_out = OutboxMessage.__table__
_j = Journey.__table__
_coupons = Coupon.__table__


def audience_sample(session: Session, condition: Condition | None, *, now: datetime,
                    segments: Mapping[str, Condition], sample: int) -> tuple[int, list[dict[str, Any]]]:
    """How many customers ``condition`` holds for (all when None) at business
    time ``now``, and the first ``sample`` of them by id."""
    where = [customer_where(condition, now=now, segments=segments)] if condition is not None else []
    count = session.execute(select(func.count()).select_from(_cust).where(*where)).scalar_one()
    rows = session.execute(select(_cust.c.id, _cust.c.name, _cust.c.phone, _cust.c.email, _cust.c.city,
                                  _cust.c.last_purchase_at).where(*where).order_by(_cust.c.id).limit(sample))
    return int(count), [dict(r._mapping) for r in rows]


def high_water(session: Session) -> tuple[int, int, int]:
    """The highest outbox message, coupon and journey id now (0 when empty)."""
    out = session.execute(select(func.coalesce(func.max(_out.c.id), 0))).scalar_one()
    coupons = session.execute(select(func.coalesce(func.max(_coupons.c.id), 0))).scalar_one()
    journeys = session.execute(select(func.coalesce(func.max(_j.c.id), 0))).scalar_one()
    return int(out), int(coupons), int(journeys)


def arm_counts(session: Session, rule_id: str, *, first_journey: int, first_out: int,
               first_coupon: int) -> dict[str | None, list[int]]:
    """Per experiment arm of ``rule_id``: [journeys entered, messages, coupons]
    written by the simulation (ids above the high-water marks)."""
    out: dict[str | None, list[int]] = {}
    new = (_j.c.id > first_journey) & (_j.c.rule_id == rule_id)
    for key, n in session.execute(select(_j.c.arm, func.count()).where(new).group_by(_j.c.arm)):
        out.setdefault(key, [0, 0, 0])[0] = int(n)
    for key, n in session.execute(select(_j.c.arm, func.count()).select_from(_out.join(_j, _j.c.id == _out.c.journey_id))
                                  .where(_out.c.id > first_out, _out.c.rule_id == rule_id).group_by(_j.c.arm)):
        out.setdefault(key, [0, 0, 0])[1] = int(n)
    for key, n in session.execute(select(_j.c.arm, func.count()).select_from(
            _coupons.join(_j, _j.c.id == _coupons.c.journey_id))
            .where(_coupons.c.id > first_coupon, _j.c.rule_id == rule_id).group_by(_j.c.arm)):
        out.setdefault(key, [0, 0, 0])[2] = int(n)
    return out


def outbox_written_after(session: Session, after_id: int, rule_id: str) -> list[tuple[datetime, str]]:
    """(created at, aware UTC; channel) of the rule's outbox rows with id > ``after_id``."""
    rows = session.execute(select(_out.c.created_at, _out.c.channel).where(_out.c.id > after_id,
                                                                           _out.c.rule_id == rule_id))
    return [(from_db_time(created), channel) for created, channel in rows]


def coupons_issued_after(session: Session, after_id: int) -> list[datetime]:
    """When each coupon with id > ``after_id`` was issued (aware UTC)."""
    return [from_db_time(issued) for (issued,) in session.execute(select(_coupons.c.issued_at)
                                                                  .where(_coupons.c.id > after_id))]


def next_due(session: Session, rule_id: str) -> datetime | None:
    """The earliest due time (aware UTC) of the rule's active journeys, or None."""
    due = session.execute(select(func.min(_j.c.due_at)).where(_j.c.rule_id == rule_id,
                                                              _j.c.status == "active")).scalar()
    return from_db_time(due) if due is not None else None
