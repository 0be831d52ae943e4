"""SQL of merging one customer into another (:mod:`engine.customers_merge`).

Each statement moves every row of one kind at once (no loop over a
customer's orders or messages), in the caller's transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Integer, Table, and_, cast, delete, exists, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from engine.storage.bulk import insert_ignore_from_select
from engine.storage.results import affected
from engine.storage.models import (
    Base,
    Consent,
    Customer,
    CustomerTag,
    Event,
    Journey,
    SegmentMemory,
)

_cust: Table = Customer.__table__  # type: ignore[assignment]
_j: Table = Journey.__table__  # type: ignore[assignment]
_consents: Table = Consent.__table__  # type: ignore[assignment]
_tags: Table = CustomerTag.__table__  # type: ignore[assignment]
_seg: Table = SegmentMemory.__table__  # type: ignore[assignment]

__all__ = ["MoveConflict", "customer_columns", "delete_customer", "lock_customers", "move_consents", "move_journeys", "move_rows", "move_segment_memory", "move_tags"]


def lock_customers(session: Session, ids: list[int]) -> dict[int, dict[str, Any]]:
    """Both customers' rows, locked (``FOR UPDATE`` on PostgreSQL) in id order."""
    stmt = select(_cust).where(_cust.c.id.in_(sorted(ids))).order_by(_cust.c.id).with_for_update()
    return {int(r.id): dict(r._mapping) for r in session.execute(stmt)}


#: Tables moved by their own rules (per-channel consents, tag sets), not by a plain UPDATE.
_SPECIAL = frozenset({"consents", "customer_tags"})
#: Customer columns without a foreign key (high-volume tables skip it), moved like the others.
_UNCONSTRAINED = (("outbox", "customer_id"),)
#: Names in the merge report.
_NAMES = {"outbox": "messages", "customer_identities": "identities"}


class MoveConflict(Exception):
    """Moving a table's rows would break one of its unique keys (both
    customers hold a row the table allows once per customer)."""

    def __init__(self, table: str):
        super().__init__(table)
        self.table = table


def delete_customer(session: Session, customer_id: int) -> None:
    session.execute(delete(_cust).where(_cust.c.id == customer_id))


def customer_columns() -> list[tuple[Table, str]]:
    """Every (table, column) that points at a customer: the foreign keys to
    ``customers.id`` found in the schema (so tables added later — order lines,
    redemptions, tasks — move too, without editing this list) plus
    :data:`_UNCONSTRAINED`."""
    out: list[tuple[Table, str]] = []
    for table in Base.metadata.sorted_tables:
        if table.name in _SPECIAL or table is _cust:
            continue
        for fk in table.foreign_keys:
            if fk.column.table is _cust and fk.column.name == "id":
                out.append((table, fk.parent.name))
    for name, column in _UNCONSTRAINED:
        out.append((Base.metadata.tables[name], column))
    return out


def move_rows(session: Session, survivor: int, loser: int) -> dict[str, int]:
    """Every row pointing at the loser (orders, coupons, messages, feedback,
    identities, …, see :func:`customer_columns`) and the loser's events move
    to the survivor, one UPDATE per column."""
    moved: dict[str, int] = {}
    for table, column in customer_columns():
        name = _NAMES.get(table.name, table.name)
        try:
            with session.begin_nested():
                count = affected(session.execute(update(table).where(table.c[column] == loser)
                                                 .values({column: survivor})))
        except IntegrityError:
            raise MoveConflict(table.name) from None
        moved[name] = moved.get(name, 0) + count
    events: Table = Event.__table__  # type: ignore[assignment]
    moved["events"] = affected(session.execute(update(events).where(events.c.subject_type == "customer",
                                                                    events.c.subject_id == str(loser))
                                               .values(subject_id=str(survivor))))
    return moved


def move_journeys(session: Session, survivor: int, loser: int) -> tuple[int, int]:
    """Move the loser's journeys to the survivor, keeping the journey key
    (rule, subject, period) unique: a journey whose key the survivor already
    holds stays with the old id and, if still running, is exited; so is a
    running journey of a rule the survivor is already running. ``once_per``
    therefore holds: the survivor is inside every window either was in, and
    runs each rule at most once. Returns (moved, exited)."""
    other = aliased(_j)
    mine = and_(_j.c.subject_type == "customer", _j.c.subject_id == loser)
    survivor_has_key = exists().where(other.c.rule_id == _j.c.rule_id, other.c.subject_type == "customer",
                                      other.c.subject_id == survivor, other.c.period_key == _j.c.period_key)
    survivor_running = exists().where(other.c.rule_id == _j.c.rule_id, other.c.subject_type == "customer",
                                      other.c.subject_id == survivor, other.c.status == "active")
    exited = affected(session.execute(update(_j).where(mine, _j.c.status == "active", survivor_running | survivor_has_key)
                                      .values(status="exited", due_at=None, version=_j.c.version + 1)))
    moved = affected(session.execute(update(_j).where(mine, ~survivor_has_key).values(subject_id=survivor)))
    return moved, exited


def move_consents(session: Session, survivor: int, loser: int) -> int:
    """Per channel the later decision wins (an opt-out given to either record
    after the other's consent stands); channels only the loser has move.
    A customer has one row per channel, so this reads at most a few rows."""
    rows = {(int(r.customer_id), str(r.channel)): r for r in session.execute(
        select(_consents).where(_consents.c.customer_id.in_((survivor, loser))))}
    changed = 0
    for (cid, channel), theirs in rows.items():
        if cid != loser:
            continue
        ours = rows.get((survivor, channel))
        if ours is None:
            session.execute(update(_consents).where(_consents.c.id == theirs.id).values(customer_id=survivor))
            changed += 1
        elif theirs.updated_at > ours.updated_at:
            session.execute(update(_consents).where(_consents.c.id == ours.id).values(
                granted=theirs.granted, source=theirs.source, updated_at=theirs.updated_at))
            changed += 1
    session.execute(delete(_consents).where(_consents.c.customer_id == loser))
    return changed


def move_tags(session: Session, survivor: int, loser: int) -> int:
    """The survivor gets every tag of the loser (tags are a set)."""
    added = insert_ignore_from_select(session, _tags, ["customer_id", "tag"],
                                      select(cast(literal(survivor), Integer), _tags.c.tag)
                                      .where(_tags.c.customer_id == loser))
    session.execute(delete(_tags).where(_tags.c.customer_id == loser))
    return added


def move_segment_memory(session: Session, survivor: int, loser: int) -> None:
    insert_ignore_from_select(session, _seg, ["rule_id", "side", "customer_id"],
                              select(_seg.c.rule_id, _seg.c.side, cast(literal(survivor), BigInteger))
                              .where(_seg.c.customer_id == loser))
    session.execute(delete(_seg).where(_seg.c.customer_id == loser))
