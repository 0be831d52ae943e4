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

import json as _json
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import DateTime, Float, String, Table, any_, bindparam, cast, func, insert, literal, select, true, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from engine.storage.bulk import dialect_name, dialect_insert
from engine.storage.models import Customer, Event, Order
from engine.storage.workflows_repo import Db, Prepared

_orders: Table = Order.__table__  # type: ignore[assignment]
_cust: Table = Customer.__table__  # type: ignore[assignment]
_events: Table = Event.__table__  # type: ignore[assignment]

OrderKey = tuple[str, str]

#: Columns an order is answered with (and compared on for idempotency).
ORDER_COLUMNS = ("id", "source", "external_id", "customer_id", "amount", "discount", "net_amount", "refunded_amount",
                 "lines", "placed_at", "channel", "store", "campaign", "coupon_code", "status", "body_hash", "refunds",
                 "created_at", "updated_at")

__all__ = ["ORDER_COLUMNS", "one_of", "InsertRaced", "OrderKey", "append_events", "append_order_events", "apply_change", "existing_customer_ids", "find_orders",
           "get_order", "insert_new_orders"]


def one_of(column: Any, values: Collection[Any], dialect: str) -> Any:
    """``column IN values`` for a batch's thousand keys, as one parameter
    whatever the number of values: on PostgreSQL an array (``= ANY(:values)``),
    which psycopg sends and the server plans far faster than a thousand
    separate parameters; on SQLite a JSON array read by ``json_each`` (``IN
    (SELECT value FROM json_each(:values))``, an index probe per value like
    the IN list). One parameter keeps the statement in SQLAlchemy's cache as
    is: an expanded IN list is re-rendered with a thousand placeholders on
    every execution, which cost more than the lookup itself."""
    values = list(values)
    if dialect == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    if all(type(v) is int or type(v) is str for v in values):
        each = func.json_each(bindparam(None, _json.dumps(values, ensure_ascii=False, separators=(",", ":")),
                                        type_=String())).table_valued("value")
        return column.in_(select(each.c.value).scalar_subquery())
    return column.in_(values)


def _each_order(values: Collection[Any], column: Any, columns: Sequence[Any], *where: Any) -> Any:
    """PostgreSQL: ``columns`` of the order with ``column = v`` (and ``where``)
    for each v of ``values``, as ``unnest(:values) CROSS JOIN LATERAL (… LIMIT
    1)``: one index probe per key whatever the planner knows. ``= ANY`` is
    planned from the table's statistics, and an orders table filled faster
    than autovacuum analyzes it (a back-fill, a new installation) has none:
    the planner then reads every order of the source (or the whole table)
    for each batch, a cost that grows with the table. The keys are unique
    ((source, external id), id), so LIMIT 1 changes nothing but the plan."""
    keys = func.unnest(bindparam(None, list(values), type_=ARRAY(column.type))).table_valued("v").render_derived(name="k")
    probe = select(*columns).where(column == keys.c.v, *where).limit(1).lateral("o")
    return select(*(probe.c[c.key] for c in columns)).select_from(keys.join(probe, true()))


def _select() -> Any:
    return select(*(_orders.c[c] for c in ORDER_COLUMNS))


def find_orders(session: Session, keys: Collection[OrderKey]) -> dict[OrderKey, dict[str, Any]]:
    """Stored orders by (source, external id): one SELECT per source (a batch
    usually comes from one)."""
    by_source: dict[str, list[str]] = defaultdict(list)
    for source, external_id in keys:
        by_source[source].append(external_id)
    out: dict[OrderKey, dict[str, Any]] = {}
    pg = dialect_name(session) == "postgresql"
    for source, ids in by_source.items():
        if pg:
            stmt = _each_order(sorted(set(ids)), _orders.c.external_id,
                               [_orders.c[c] for c in ORDER_COLUMNS], _orders.c.source == source)
        else:
            stmt = _select().where(_orders.c.source == source, one_of(_orders.c.external_id, sorted(set(ids)), "sqlite"))
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


class InsertRaced(Exception):
    """Some orders of the batch were stored by a concurrent request between
    our read and our insert; the caller retries the batch, which then sees them."""


#: The columns a new order is written with (``refunds`` and ``updated_at`` stay NULL).
INSERT_COLUMNS = ("source", "external_id", "customer_id", "amount", "discount", "net_amount", "refunded_amount",
                  "lines", "placed_at", "channel", "store", "campaign", "coupon_code", "status", "body_hash",
                  "created_at")

_INSERT_ORDERS = {dialect: Prepared(dialect_insert(dialect, _orders).on_conflict_do_nothing(
    index_elements=["source", "external_id"]), column_keys=INSERT_COLUMNS) for dialect in ("sqlite", "postgresql")}


def insert_new_orders(session: Session, rows: Sequence[Mapping[str, Any]]) -> dict[OrderKey, int]:
    """Insert ``rows`` (one executemany, skipping keys already stored) and
    return their ids by key (one SELECT).

    The executemany runs on the session's driver cursor with the statement
    compiled once and SQLAlchemy's own bind processors
    (:class:`engine.storage.workflows_repo.Prepared`): SQLAlchemy's
    per-row parameter construction cost about as much as the INSERT itself.
    RETURNING would make SQLAlchemy render and unpack multi-row VALUES.
    Which rows went in is then told by the count: all of them, or
    :class:`InsertRaced` (roll back and retry), so an order stored
    concurrently is never taken for one of ours.
    """
    if not rows:
        return {}
    db = Db.of(session)
    sql, defaults, procs, order, _ = _INSERT_ORDERS[db.dialect.name].plan(db.dialect)
    params: list[Any] = []
    for r in rows:
        values = {**defaults, **r}
        for name, proc in procs.items():
            values[name] = proc(values.get(name))
        params.append(tuple([values[n] for n in order]) if order is not None else values)
    cursor = db.raw.cursor()
    try:
        cursor.executemany(sql, params)
        inserted = cursor.rowcount
    finally:
        cursor.close()
    if inserted != len(rows):
        raise InsertRaced(f"{len(rows) - inserted} order(s) stored concurrently")
    if db.dialect.name == "sqlite":
        found = _ids_by_rowid(db, rows)
        if found is not None:
            return found
    by_source: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        by_source[r["source"]].append(r["external_id"])
    out: dict[OrderKey, int] = {}
    for source, ids in by_source.items():
        if db.dialect.name == "postgresql":
            stmt2 = _each_order(ids, _orders.c.external_id, [_orders.c.id, _orders.c.external_id],
                                _orders.c.source == source)
        else:
            stmt2 = select(_orders.c.id, _orders.c.external_id).where(_orders.c.source == source,
                                                                      one_of(_orders.c.external_id, ids, "sqlite"))
        out.update({(source, ext): int(oid) for oid, ext in session.execute(stmt2)})
    return out


def _ids_by_rowid(db: Db, rows: Sequence[Mapping[str, Any]]) -> dict[OrderKey, int] | None:
    """SQLite: the ids of the rows just inserted, read as the range of rowids
    ending at ``last_insert_rowid()``. This transaction holds SQLite's write
    lock and every row went in (the count was checked), so they are the
    ``len(rows)`` highest rowids, one index range instead of a thousand key
    probes. Checked: the range must hold exactly these keys, else None (the
    caller looks them up by key)."""
    last = db.raw.execute("SELECT last_insert_rowid()").fetchone()[0]
    got = db.raw.execute("SELECT id, source, external_id FROM orders WHERE id > ? AND id <= ?",
                         (last - len(rows), last)).fetchall()
    out = {(source, ext): int(oid) for oid, source, ext in got}
    if len(got) != len(rows) or any((r["source"], r["external_id"]) not in out for r in rows):
        return None
    return out


def append_events(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Append events (``name``, ``subject_type``, ``subject_id``, ``payload``,
    ``created_at``) in one multi-row INSERT; the rules pick them up as any other."""
    if rows:
        session.connection().execute(insert(_events), [dict(r) for r in rows])


def append_order_events(session: Session, name: str, order_ids: Collection[int], db_now: Any) -> None:
    """Append one ``name`` event per order in one INSERT … SELECT: the payload
    (customer, order, amounts, store, channel, coupon code) is built by the
    database from the stored rows, so a batch costs no per-order work here.
    The customer in the payload is whom rules triggered by the event enter."""
    if not order_ids:
        return
    pg = dialect_name(session) == "postgresql"
    keys = ("customer_id", "id", "source", "external_id", "amount", "net_amount", "status", "store", "channel",
            "coupon_code")
    o: Any = (_each_order(sorted(order_ids), _orders.c.id, [_orders.c[k] for k in keys]).subquery().c if pg
              else _orders.c)
    build = func.jsonb_build_object if pg else func.json_object
    payload = build("customer_id", o.customer_id, "order_id", o.id, "source", o.source,
                    "external_id", o.external_id, "amount", cast(o.amount, Float),
                    "net_amount", cast(o.net_amount, Float), "status", o.status, "store", o.store,
                    "channel", o.channel, "coupon_code", o.coupon_code)
    rows = select(literal(name), literal("order"), cast(o.id, String), payload, literal(db_now, DateTime()))
    if not pg:
        rows = rows.where(one_of(o.id, sorted(order_ids), "sqlite"))
    session.connection().execute(
        insert(_events).from_select(["name", "subject_type", "subject_id", "payload", "created_at"], rows))


def apply_change(session: Session, order_id: int, *, expect_status: str, expect_net: Any,
                 values: Mapping[str, Any]) -> bool:
    """Write a refund or cancellation only if the order is still as read
    (status and net amount): a concurrent change makes this return False and
    the caller reads again, so two refunds never both spend the same money."""
    stmt = (update(_orders).where(_orders.c.id == order_id, _orders.c.status == expect_status,
                                  _orders.c.net_amount == expect_net).values(**values))
    return session.connection().execute(stmt).rowcount == 1
