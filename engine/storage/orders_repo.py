"""SQL of orders coming in: lookups by (source, external id), the batch
insert that skips orders already stored, the bulk append of their events and
the conditional update of a refund or cancellation.

One statement per table per batch: a batch of 1,000 orders is one SELECT of
the keys already stored, one multi-row INSERT … ON CONFLICT DO NOTHING, one
multi-row INSERT of events; the customers' aggregates are then recomputed by
:func:`engine.storage.customers_repo.recompute_aggregates` for the customers
the batch touched. Everything runs in the caller's transaction with naive UTC
times.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import Table, insert, select, update
from sqlalchemy.orm import Session

from engine.storage.bulk import _dialect_name, _insert
from engine.storage.models import Customer, Event, Order

_orders: Table = Order.__table__  # type: ignore[assignment]
_cust: Table = Customer.__table__  # type: ignore[assignment]
_events: Table = Event.__table__  # type: ignore[assignment]

OrderKey = tuple[str, str]

#: Columns an order is answered with (and compared on for idempotency).
ORDER_COLUMNS = ("id", "source", "external_id", "customer_id", "amount", "discount", "net_amount", "refunded_amount",
                 "lines", "placed_at", "channel", "store", "campaign", "coupon_code", "status", "body_hash", "refunds",
                 "created_at", "updated_at")

__all__ = ["ORDER_COLUMNS", "OrderKey", "append_events", "apply_change", "existing_customer_ids", "find_orders",
           "get_order", "insert_new_orders"]


def _select() -> Any:
    return select(*(_orders.c[c] for c in ORDER_COLUMNS))


def find_orders(session: Session, keys: Collection[OrderKey]) -> dict[OrderKey, dict[str, Any]]:
    """Stored orders by (source, external id): one SELECT per source (a batch
    usually comes from one)."""
    by_source: dict[str, list[str]] = defaultdict(list)
    for source, external_id in keys:
        by_source[source].append(external_id)
    out: dict[OrderKey, dict[str, Any]] = {}
    for source, ids in by_source.items():
        stmt = _select().where(_orders.c.source == source, _orders.c.external_id.in_(sorted(set(ids))))
        for row in session.execute(stmt).mappings():
            out[(row["source"], row["external_id"])] = dict(row)
    return out


def get_order(session: Session, source: str, external_id: str) -> dict[str, Any] | None:
    row = session.execute(_select().where(_orders.c.source == source,
                                          _orders.c.external_id == external_id)).mappings().first()
    return dict(row) if row is not None else None


def existing_customer_ids(session: Session, ids: Collection[int]) -> set[int]:
    """Which of ``ids`` are stored customers (one SELECT)."""
    if not ids:
        return set()
    return {int(i) for i in session.scalars(select(_cust.c.id).where(_cust.c.id.in_(sorted(set(ids)))))}


def insert_new_orders(session: Session, rows: Sequence[Mapping[str, Any]]) -> dict[OrderKey, int]:
    """Insert ``rows`` (one multi-row statement), skipping any whose (source,
    external id) is already stored, e.g. by a concurrent request; the ids of
    the rows really inserted, by key."""
    if not rows:
        return {}
    stmt = (_insert(_dialect_name(session), _orders)
            .on_conflict_do_nothing(index_elements=["source", "external_id"])
            .returning(_orders.c.id, _orders.c.source, _orders.c.external_id))
    result = session.connection().execute(stmt, [dict(r) for r in rows])
    return {(source, ext): int(oid) for oid, source, ext in result}


def append_events(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Append events (``name``, ``subject_type``, ``subject_id``, ``payload``,
    ``created_at``) in one multi-row INSERT; the rules pick them up as any other."""
    if rows:
        session.connection().execute(insert(_events), [dict(r) for r in rows])


def apply_change(session: Session, order_id: int, *, expect_status: str, expect_net: Any,
                 values: Mapping[str, Any]) -> bool:
    """Write a refund or cancellation only if the order is still as read
    (status and net amount): a concurrent change makes this return False and
    the caller reads again, so two refunds never both spend the same money."""
    stmt = (update(_orders).where(_orders.c.id == order_id, _orders.c.status == expect_status,
                                  _orders.c.net_amount == expect_net).values(**values))
    return session.connection().execute(stmt).rowcount == 1
