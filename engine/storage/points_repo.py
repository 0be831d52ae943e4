"""The points ledger's one writer (``points_ledger``, and the ``points`` /
``points_expire_on`` columns of ``customers`` that mirror it).

Why one writer: the balance is kept three ways (the sum of ``amount``, the sum
of open lots' ``remaining``, the customer's ``points`` column) and they agree
only if every movement goes through here, in the caller's transaction:

* :func:`add_lots` writes earned points (or a positive adjustment) as lots;
* :func:`consume` takes points from a customer's lots, oldest first (the lot
  that lapses first, then the lot written first), for a spend, a reversal or a
  negative adjustment, whose entry :func:`append_entry` writes;
* :func:`expire_due` lapses every lot due by a day for all customers at once:
  three set-based statements, whatever the number of customers;
* :func:`refresh_customers` recomputes the mirrored columns of the customers
  a movement touched.

Every entry has a unique ``idempotency_key``: a repeated request, order or
tick inserts nothing (ON CONFLICT DO NOTHING) and the caller answers the
first result. Times are naive UTC; ``expires_on`` is a local business day.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    DateTime,
    String,
    Table,
    and_,
    cast,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.orm import Session

from engine.storage.bulk import dialect_name, dialect_insert
from engine.storage.models import Customer, PointsEntry

_ledger: Table = PointsEntry.__table__  # type: ignore[assignment]
_cust: Table = Customer.__table__  # type: ignore[assignment]

#: Columns an entry is answered with.
ENTRY_COLUMNS = ("id", "customer_id", "kind", "amount", "remaining", "expires_on", "reason", "source", "source_ref",
                 "idempotency_key", "created_at")

__all__ = ["ENTRY_COLUMNS", "ConsumeRaced", "Lot", "add_lots", "append_entry", "available", "consume",
           "entries_for", "entry_by_key", "expire_due", "history", "lock_customer", "next_lapse", "refresh_customers", "tiers_of"]


class ConsumeRaced(Exception):
    """A lot changed between our read and our update (a concurrent spend):
    the caller rolls back and tries again."""


@dataclass(frozen=True)
class Lot:
    id: int
    remaining: int
    expires_on: date | None


def _open(today: date) -> Any:
    c = _ledger.c
    return and_(c.remaining > 0, (c.expires_on.is_(None)) | (c.expires_on > today))


def add_lots(session: Session, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Insert lots (``customer_id``, ``kind``, ``amount`` > 0, ``expires_on``,
    ``reason``, ``source``, ``source_ref``, ``idempotency_key``,
    ``created_at``) in one multi-row INSERT, skipping keys already stored.
    Returns the keys that went in. ``remaining`` starts at ``amount``."""
    if not rows:
        return []
    keys = [str(r["idempotency_key"]) for r in rows]
    stored = set(session.scalars(select(_ledger.c.idempotency_key).where(_ledger.c.idempotency_key.in_(keys))))
    fresh = [{**r, "remaining": r["amount"]} for r in rows if r["idempotency_key"] not in stored]
    if fresh:
        stmt = dialect_insert(dialect_name(session), _ledger).on_conflict_do_nothing(index_elements=["idempotency_key"])
        session.connection().execute(stmt, fresh)
    return [r["idempotency_key"] for r in fresh]


def append_entry(session: Session, row: Mapping[str, Any]) -> bool:
    """Insert one consuming entry (spend, reverse, negative adjust; ``amount``
    < 0, ``remaining`` 0). False when its idempotency key is already stored."""
    stmt = dialect_insert(dialect_name(session), _ledger).values(**{**row, "remaining": 0}).on_conflict_do_nothing(
        index_elements=["idempotency_key"]).returning(_ledger.c.id)
    return session.connection().execute(stmt).scalar_one_or_none() is not None


def entry_by_key(session: Session, key: str) -> dict[str, Any] | None:
    row = session.execute(select(*(_ledger.c[c] for c in ENTRY_COLUMNS)).where(
        _ledger.c.idempotency_key == key)).mappings().first()
    return dict(row) if row is not None else None


def entries_for(session: Session, source: str, source_ref: str) -> list[dict[str, Any]]:
    """The entries of one source object (an order's earn and reversals), oldest first."""
    stmt = select(*(_ledger.c[c] for c in ENTRY_COLUMNS)).where(
        _ledger.c.source == source, _ledger.c.source_ref == source_ref).order_by(_ledger.c.id)
    return [dict(r) for r in session.execute(stmt).mappings()]


def tiers_of(session: Session, customer_ids: Collection[int]) -> dict[int, str | None]:
    """The stored customers among ``customer_ids`` and their tier (the order points multiplier reads it)."""
    rows = session.execute(select(_cust.c.id, _cust.c.tier).where(_cust.c.id.in_(sorted(set(customer_ids)))))
    return {int(cid): tier for cid, tier in rows}


def lock_customer(session: Session, customer_id: int) -> bool:
    """Lock the customer's row for this transaction (PostgreSQL; SQLite writers are serial):
    every writer of a customer's points takes the customer first, then the lots. False: no such customer."""
    stmt = select(_cust.c.id).where(_cust.c.id == customer_id)
    if dialect_name(session) == "postgresql":
        stmt = stmt.with_for_update()
    return session.execute(stmt).first() is not None


def available(session: Session, customer_id: int, today: date) -> int:
    """Points the customer may spend on local day ``today``: open lots not yet lapsed
    (the expiry tick may not have run yet today)."""
    total = session.scalar(select(func.coalesce(func.sum(_ledger.c.remaining), 0)).where(
        _ledger.c.customer_id == customer_id, _open(today)))
    return int(total or 0)


def next_lapse(session: Session, customer_id: int, today: date) -> tuple[date | None, int]:
    """(the earliest day an open lot lapses, how many points lapse that day); (None, 0) without any."""
    c = _ledger.c
    first = session.scalar(select(func.min(c.expires_on)).where(c.customer_id == customer_id, _open(today)))
    if first is None:
        return None, 0
    total = session.scalar(select(func.coalesce(func.sum(c.remaining), 0)).where(
        c.customer_id == customer_id, c.remaining > 0, c.expires_on == first))
    return first, int(total or 0)


def consume(session: Session, customer_id: int, points: int, today: date, *,
            first_lot: int | None = None) -> int:
    """Take up to ``points`` from the customer's open lots, oldest first
    (``first_lot``, when given, first: a refund takes back the order's own
    lot before any other). Returns how many were taken (less than ``points``
    only when the customer has less).

    Per customer, so a Python walk over at most a few hundred lots. Each lot
    is updated only if it still holds what was read; otherwise
    :class:`ConsumeRaced` (the caller retries), so two concurrent spends never
    take the same points. On PostgreSQL the lots are also locked FOR UPDATE.

    Raises:
        ConsumeRaced
    """
    if points <= 0:
        return 0
    c = _ledger.c
    stmt = (select(c.id, c.remaining, c.expires_on).where(c.customer_id == customer_id, _open(today))
            .order_by((c.id != (first_lot or 0)), c.expires_on.is_(None), c.expires_on, c.id))
    if dialect_name(session) == "postgresql":
        stmt = stmt.with_for_update()
    left = points
    takes: list[tuple[int, int, int]] = []
    for lot_id, remaining, _ in session.execute(stmt):
        if left <= 0:
            break
        take = min(int(remaining), left)
        takes.append((int(lot_id), int(remaining), take))
        left -= take
    for lot_id, remaining, take in takes:
        done = session.connection().execute(update(_ledger).where(c.id == lot_id, c.remaining == remaining)
                                            .values(remaining=remaining - take))
        if done.rowcount != 1:
            raise ConsumeRaced(f"lot {lot_id} changed")
    return points - left


def refresh_customers(session: Session, customer_ids: Collection[int], db_now: datetime) -> None:
    """Recompute ``points`` (the sum of open lots) and ``points_expire_on``
    (the earliest lapse day of an open lot) of ``customer_ids``: one UPDATE
    with correlated subqueries over the ledger's (customer, id) index."""
    if not customer_ids:
        return
    session.connection().execute(
        update(_cust).where(_cust.c.id.in_(sorted(set(customer_ids)))).values(**_mirrors(), updated_at=db_now))


def _mirrors(today: date | None = None) -> dict[str, Any]:
    """``points`` and ``points_expire_on`` from the customer's open lots (those
    still open after ``today``'s lapse, when given)."""
    lots = _ledger.c
    mine = and_(lots.customer_id == _cust.c.id, lots.remaining > 0)
    if today is not None:
        mine = and_(mine, _open(today))
    return {
        "points": select(func.coalesce(func.sum(lots.remaining), 0)).where(mine).scalar_subquery(),
        "points_expire_on": select(func.min(lots.expires_on)).where(mine).scalar_subquery(),
    }


def expire_due(session: Session, today: date, db_now: datetime, *, reason: str) -> int:
    """Lapse every open lot whose ``expires_on`` is ``today`` or earlier, for
    every customer, set-based:

    1. one INSERT … SELECT … GROUP BY customer writes one ``expire`` entry per
       customer (amount: minus what was left of their due lots; key
       ``expire:<customer>:<day>:<last lot>``, so a second run writes nothing);
    2. one UPDATE recomputes the balance and next lapse day of the customers
       that had an entry today, from their lots still open after today;
    3. one UPDATE zeroes the due lots (only what remained lapses: what was spent
       of a lot was spent).

    Returns how many customers lost points today. The partial index on open lots
    (``expires_on``, ``customer_id``) makes each statement read only due lots.
    """
    c = _ledger.c
    due = and_(c.remaining > 0, c.expires_on <= today)
    day = today.isoformat()
    # The last due lot's id in the key: a lot written later the same day (a back-filled order
    # already past its validity) lapses under a new key instead of colliding with the first.
    key = literal("expire:") + cast(c.customer_id, String) + literal(f":{day}:") + cast(func.max(c.id), String)
    rows = (select(c.customer_id, literal("expire"), -func.sum(c.remaining), literal(0), literal(reason),
                   literal("expiry"), literal(day), key, literal(db_now, DateTime()))
            .where(due).group_by(c.customer_id))
    stmt = dialect_insert(dialect_name(session), _ledger).from_select(
        ["customer_id", "kind", "amount", "remaining", "reason", "source", "source_ref", "idempotency_key",
         "created_at"], rows).on_conflict_do_nothing(index_elements=["idempotency_key"])
    session.connection().execute(stmt)
    # Customers before lots, the order every writer takes its locks in (a redemption locks the
    # customer, then their lots), so the tick and a till at midnight never deadlock.
    expired_today = select(c.customer_id).where(c.kind == "expire", c.source == "expiry", c.source_ref == day)
    session.connection().execute(update(_cust).where(_cust.c.id.in_(expired_today)).values(**_mirrors(today),
                                                                                          updated_at=db_now))
    session.connection().execute(update(_ledger).where(due).values(remaining=0))
    # Counted, not taken from the INSERT's rowcount (which psycopg leaves at -1 for INSERT … SELECT here).
    return int(session.scalar(select(func.count()).select_from(expired_today.subquery())) or 0)


def history(session: Session, customer_id: int, *, page: int, per_page: int) -> tuple[int, list[dict[str, Any]]]:
    """(total entries, one page of them newest first)."""
    total = int(session.scalar(select(func.count()).select_from(_ledger).where(
        _ledger.c.customer_id == customer_id)) or 0)
    stmt = (select(*(_ledger.c[c] for c in ENTRY_COLUMNS)).where(_ledger.c.customer_id == customer_id)
            .order_by(_ledger.c.id.desc()).limit(per_page).offset((page - 1) * per_page))
    return total, [dict(r) for r in session.execute(stmt).mappings()]
