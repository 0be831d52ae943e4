"""Coupon redemption storage: the coupon a code names, the counts the limits
read, the conditional state changes and the attempt log.

Core statements only (compiled once, cached by SQLAlchemy): a till redeems
one code per request and the statements are the whole cost. Times are naive
UTC (``engine.storage.times``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, DateTime, Numeric, Table, bindparam, event, func, insert, or_, select, text, update
from sqlalchemy.orm import Session

from engine.storage.models import Coupon, Customer, Event, Order, RedemptionAttempt
from engine.storage.workflows_repo import Db as DriverDb
from engine.storage.workflows_repo import Prepared

_c: Table = Coupon.__table__  # type: ignore[assignment]
_cu: Table = Customer.__table__  # type: ignore[assignment]
_o: Table = Order.__table__  # type: ignore[assignment]
_a: Table = RedemptionAttempt.__table__  # type: ignore[assignment]

#: What the hot-path functions accept: the caller's session, or the connection
#: it already holds (the redemption service looks it up once per request instead
#: of once per statement: each ``Session.connection()`` walks the session's
#: transaction state machine).
Db = Session | Connection


def _conn(db: Db) -> Connection:
    return db if isinstance(db, Connection) else db.connection()


def connection_of(db: Db) -> Connection:
    """The connection a session's statements run on (a connection is its own)."""
    return _conn(db)


def _driver(db: Db) -> DriverDb:
    """The driver connection under ``db``, in its transaction: the redemption's
    few statements run on it compiled once (:class:`Prepared`), without
    SQLAlchemy's per-execution work, which cost as much as the statements."""
    conn = _conn(db)
    return DriverDb(conn.connection.driver_connection, conn.dialect)


@dataclass(frozen=True)
class CouponRow:
    """A coupon with its owner's name and phone (as stored)."""

    id: int
    code: str
    pool_id: str
    customer_id: int | None
    customer_name: str | None
    customer_phone: str | None
    status: str
    value: Decimal
    issued_at: datetime
    expires_at: datetime | None
    redeemed_at: datetime | None
    redeemed_order: str | None
    redeemed_amount: Decimal | None
    redeemed_store: str | None
    redeemed_device: str | None
    #: another coupon is redeemed on the order asked about (None: not asked)
    other_on_order: bool | None = None


_COLS = (_c.c.id, _c.c.code, _c.c.pool_id, _c.c.customer_id, _cu.c.name, _cu.c.phone, _c.c.status, _c.c.value,
         _c.c.issued_at, _c.c.expires_at, _c.c.redeemed_at, _c.c.redeemed_order, _c.c.redeemed_amount,
         _c.c.redeemed_store, _c.c.redeemed_device)
_FROM = _c.outerjoin(_cu, _cu.c.id == _c.c.customer_id)
# The till's hot path runs these per request: built once, with bind parameters,
# so a redemption pays for executing statements, not for constructing them.
_FIND = select(*_COLS).select_from(_FROM).where(_c.c.code == bindparam("code"))
_other = _c.alias("other")
_FIND_WITH_ORDER = select(*_COLS, select(_other.c.id).where(
    _other.c.redeemed_order == bindparam("order_id"), _other.c.redeemed_at.is_not(None),
    _other.c.code != bindparam("code")).limit(1).scalar_subquery().label("other_on_order")
).select_from(_FROM).where(_c.c.code == bindparam("code"))


def _facts_query() -> Any:
    """The coupon and, in the same statement, every count a pool's redemption
    rules may need (one round trip on the till's hot path; each count is an
    index seek on the partial ``ix_coupons_redeemed_*`` indexes, cheap even for
    pools that declare no limit)."""
    o = _c.alias("o")
    redeemed_pool = (o.c.pool_id == _c.c.pool_id, o.c.redeemed_at.is_not(None))
    since = bindparam("since", type_=_c.c.redeemed_at.type)

    def count(*where: Any) -> Any:
        return select(func.count()).select_from(o).where(*redeemed_pool, *where).scalar_subquery()

    return select(
        *_COLS,
        select(o.c.id).where(o.c.redeemed_order == bindparam("order_id"), o.c.redeemed_at.is_not(None),
                             o.c.id != _c.c.id).limit(1).scalar_subquery().label("other_on_order"),
        count(o.c.customer_id == _c.c.customer_id).label("customer_redeemed"),
        count(o.c.redeemed_phone == bindparam("phone")).label("phone_redeemed"),
        count(o.c.redeemed_store == bindparam("store"), o.c.redeemed_at > since).label("store_last_hour"),
        count(o.c.redeemed_device == bindparam("device"), o.c.redeemed_at > since).label("device_last_hour"),
    ).select_from(_FROM).where(_c.c.code == bindparam("code"))


_FIND_WITH_FACTS = _facts_query()
_FIND_WITH_FACTS_PREPARED = Prepared(_FIND_WITH_FACTS)


@dataclass(frozen=True)
class RedemptionCounts:
    """Counts over the coupon's pool, read with the coupon (:func:`find_with_counts`)."""

    other_on_order: bool
    customer_redeemed: int
    phone_redeemed: int
    store_last_hour: int
    device_last_hour: int


def find_with_counts(session: Db, code: str, *, order_id: str | None, phone: str | None, store: str | None,
                     device: str | None, since: datetime) -> tuple[CouponRow, RedemptionCounts] | None:
    """The coupon issued with ``code`` and the counts of its pool's redemptions
    by its customer, by ``phone`` (as the request gave it, normalized), at ``store``
    and on ``device`` since ``since``, and whether another coupon is redeemed
    on ``order_id``: one statement."""
    params = {"code": code, "order_id": order_id, "phone": phone, "store": store, "device": device, "since": since}
    conn = _conn(session)
    if conn.dialect.name == "sqlite":  # psycopg's NUMERIC results need the column's type from the cursor: SQLAlchemy
        rows = _driver(conn).rows(_FIND_WITH_FACTS_PREPARED, params)
        row = rows[0] if rows else None
    else:
        row = conn.execute(_FIND_WITH_FACTS, params).first()
    if row is None:
        return None
    base, extra = row[:len(_COLS)], row[len(_COLS):]
    return CouponRow(*base), RedemptionCounts(extra[0] is not None, *(int(x or 0) for x in extra[1:]))


def find_coupon(session: Db, code: str, *, order_id: str | None = None) -> CouponRow | None:
    """The coupon issued with ``code`` (exact, as issued), or None. With
    ``order_id``, also whether another coupon is already redeemed on that
    order (``other_on_order``), in the same statement."""
    conn = _conn(session)
    if order_id is None:
        row = conn.execute(_FIND, {"code": code}).first()
        return CouponRow(*list(row)) if row is not None else None
    row = conn.execute(_FIND_WITH_ORDER, {"code": code, "order_id": order_id}).first()
    if row is None:
        return None
    values = list(row)
    values[-1] = values[-1] is not None  # the last column: another coupon's id on that order, or NULL
    return CouponRow(*values)


def coupons_of_customer(session: Session, customer_id: int, *, limit: int = 50) -> list[CouponRow]:
    """A customer's coupons, newest first (the till shows which are still usable)."""
    rows = session.execute(select(*_COLS).select_from(_FROM).where(_c.c.customer_id == customer_id)
                           .order_by(_c.c.issued_at.desc(), _c.c.id.desc()).limit(limit))
    return [CouponRow(*list(r)) for r in rows]


def _count(by: Any, since: bool) -> Any:
    where = [_c.c.pool_id == bindparam("pool_id"), _c.c.redeemed_at.is_not(None), by == bindparam("value")]
    if since:
        where.append(_c.c.redeemed_at > bindparam("since", type_=_c.c.redeemed_at.type))
    return select(func.count()).select_from(_c).where(*where)


_COUNTS = {("customer", False): _count(_c.c.customer_id, False), ("phone", False): _count(_c.c.redeemed_phone, False),
           ("store", True): _count(_c.c.redeemed_store, True), ("device", True): _count(_c.c.redeemed_device, True)}


def count_redeemed(session: Db, pool_id: str, *, by: str, value: Any, since: datetime | None = None) -> int:
    """Coupons of ``pool_id`` redeemed by a ``customer``, a ``phone``, at a
    ``store`` or a ``device`` (the latter two since a time): one count over the
    partial ``ix_coupons_redeemed_*`` indexes (or the customer/pool index)."""
    stmt = _COUNTS[(by, since is not None)]
    params = {"pool_id": pool_id, "value": value}
    if since is not None:
        params["since"] = since
    return int(_conn(session).execute(stmt, params).scalar_one())


def earlier_paid_orders(session: Db, customer_id: int, *, except_order: str | None) -> int:
    """The customer's paid orders other than ``except_order`` (its external id)."""
    where = [_o.c.customer_id == customer_id, _o.c.status == "paid"]
    if except_order is not None:
        where.append(or_(_o.c.external_id.is_(None), _o.c.external_id != except_order))
    return int(session.execute(select(func.count()).select_from(_o).where(*where)).scalar_one())


def pools_on_order(session: Db, order_id: str, *, except_coupon: int) -> list[str]:
    """Pools of the other coupons redeemed on an order (stacking)."""
    rows = session.execute(select(_c.c.pool_id).where(_c.c.redeemed_order == order_id,
                                                      _c.c.redeemed_at.is_not(None), _c.c.id != except_coupon))
    return [r[0] for r in rows]


_MARK = (update(_c).where(_c.c.id == bindparam("coupon_id"), _c.c.status == "issued")
         .values(status="redeemed", redeemed_at=bindparam("at", type_=_c.c.redeemed_at.type),
                 redeemed_order=bindparam("order_id"), redeemed_amount=bindparam("amount", type_=_c.c.value.type),
                 redeemed_store=bindparam("store"), redeemed_device=bindparam("device"),
                 redeemed_phone=bindparam("phone")))


def mark_redeemed(session: Db, coupon_id: int, *, order_id: str, amount: Decimal | None, store: str | None,
                  device: str | None, phone: str | None, at: datetime) -> bool:
    """``UPDATE coupons SET status='redeemed' … WHERE id=? AND status='issued'``:
    True when this call redeemed it. Two tills at once: one row changes, the
    other statement (waiting for the first's lock on PostgreSQL, or after it on
    SQLite) matches no row."""
    return _driver(session).rowcount(_MARK_PREPARED, {"coupon_id": coupon_id, "at": at, "order_id": order_id,
                                                       "amount": amount, "store": store, "device": device,
                                                       "phone": phone}) == 1


_MARK_PREPARED = Prepared(_MARK)
_EVENT_COLUMNS = ("name", "subject_type", "subject_id", "payload", "created_at")
_INSERT_EVENT = Prepared(insert(Event.__table__), column_keys=_EVENT_COLUMNS)

_PG_REDEEM = text("""
WITH u AS (
    UPDATE coupons SET status = 'redeemed', redeemed_at = :at, redeemed_order = :order_id,
           redeemed_amount = :amount, redeemed_store = :store, redeemed_device = :device, redeemed_phone = :phone
    WHERE id = :coupon_id AND status = 'issued' RETURNING id),
e AS (
    INSERT INTO events (name, subject_type, subject_id, payload, created_at)
    SELECT 'coupon.redeemed', :subject_type, :subject_id, CAST(:payload AS jsonb), :at FROM u RETURNING id),
a AS (
    INSERT INTO redemption_attempts (code, coupon_id, pool_id, customer_id, phone, order_id, order_amount, store,
                                     device, actor, result, reason, created_at)
    SELECT :code, :coupon_id, :pool_id, :attempt_customer, :attempt_phone, :order_id, :amount, :store, :device,
           :actor, 'redeemed', NULL, :at FROM u RETURNING id)
SELECT (SELECT count(*) FROM u)""").bindparams(
    bindparam("at", type_=DateTime()), bindparam("amount", type_=Numeric(14, 2)))
_PG_REDEEM_PREPARED = Prepared(_PG_REDEEM)


def redeem_logged(session: Db, *, coupon_id: int, code: str, pool_id: str, order_id: str,
                  amount: Decimal | None, store: str | None, device: str | None, phone: str | None,
                  attempt_customer: int | None, attempt_phone: str | None, actor: str | None,
                  subject_type: str, subject_id: int, payload: dict[str, Any], at: datetime) -> bool:
    """The conditional UPDATE (:func:`mark_redeemed`), and only if it changed the
    row, the ``coupon.redeemed`` event and the ``redeemed`` attempt: one
    statement on PostgreSQL (data-modifying CTEs: one round trip where a till
    waits), three on SQLite. True when this call redeemed the coupon; False
    (nothing written) when another till was first."""
    conn = _conn(session)
    if conn.dialect.name == "postgresql":
        return bool(_driver(conn).rows(_PG_REDEEM_PREPARED, {
            "at": at, "order_id": order_id, "amount": amount, "store": store, "device": device, "phone": phone,
            "coupon_id": coupon_id, "subject_type": subject_type, "subject_id": str(subject_id),
            "payload": json.dumps(payload, ensure_ascii=False), "code": code, "pool_id": pool_id,
            "attempt_customer": attempt_customer, "attempt_phone": attempt_phone, "actor": actor,
        })[0][0])
    if not mark_redeemed(conn, coupon_id, order_id=order_id, amount=amount, store=store, device=device,
                         phone=phone, at=at):
        return False
    # The event row as ``append_event`` writes it (the PostgreSQL statement above
    # writes the same row), without asking for its id back: nobody needs it here.
    _driver(conn).execute(_INSERT_EVENT, {"name": "coupon.redeemed", "subject_type": subject_type,
                                          "subject_id": str(subject_id), "payload": payload, "created_at": at})
    record_attempt(conn, code=code, coupon_id=coupon_id, pool_id=pool_id, customer_id=attempt_customer,
                   phone=attempt_phone, order_id=order_id, order_amount=amount, store=store, device=device,
                   actor=actor, result="redeemed", reason=None, at=at)
    return True


def unredeem(session: Session, coupon_id: int, *, order_id: str, cancel: bool) -> bool:
    """Undo the redemption of ``order_id`` (a refund): back to ``issued`` (usable
    again) or, with ``cancel``, ``void`` (never usable). True when this call changed it."""
    values: dict[str, Any] = {"status": "void" if cancel else "issued", "redeemed_at": None, "redeemed_order": None,
                              "redeemed_amount": None, "redeemed_store": None, "redeemed_device": None,
                              "redeemed_phone": None}
    result = session.connection().execute(
        update(_c).where(_c.c.id == coupon_id, _c.c.status == "redeemed", _c.c.redeemed_order == order_id)
        .values(**values))
    return result.rowcount == 1


_ATTEMPT_COLUMNS = ("code", "coupon_id", "pool_id", "customer_id", "phone", "order_id", "order_amount", "store",
                    "device", "actor", "result", "reason", "created_at")
_INSERT_ATTEMPT = Prepared(insert(_a), column_keys=_ATTEMPT_COLUMNS)


def record_attempt(session: Db, *, code: str, coupon_id: int | None, pool_id: str | None,
                   customer_id: int | None, phone: str | None, order_id: str | None, order_amount: Decimal | None,
                   store: str | None, device: str | None, actor: str | None, result: str, reason: str | None,
                   at: datetime) -> None:
    """Append one attempt (redeemed, refused, replayed or voided) to the log."""
    _driver(session).execute(_INSERT_ATTEMPT, {
        "code": code[:64], "coupon_id": coupon_id, "pool_id": pool_id, "customer_id": customer_id,
        "phone": phone, "order_id": order_id, "order_amount": order_amount, "store": store, "device": device,
        "actor": actor, "result": result, "reason": reason, "created_at": at})


def record_attempt_after_rollback(session: Session, session_factory: Any, **attempt: Any) -> None:
    """Log a refused attempt even though ``session``'s transaction is about to be
    rolled back (a form submission refused for its coupon stores nothing, yet
    the attempt belongs in the log): written in its own transaction once the
    rollback has released the caller's locks."""

    def write(_session: Session) -> None:
        from engine.storage.database import transaction

        with transaction(session_factory) as own:
            record_attempt(own, **attempt)

    event.listen(session, "after_rollback", write, once=True)


def attempts_for(session: Session, code: str, *, limit: int = 50) -> list[dict[str, Any]]:
    """The attempts on a code, newest first."""
    rows = session.execute(select(_a).where(_a.c.code == code).order_by(_a.c.id.desc()).limit(limit))
    return [dict(r._mapping) for r in rows]


@dataclass(frozen=True)
class CustomerHit:
    """A customer the till found."""

    id: int
    name: str | None
    phone: str | None


def find_customers(session: Session, *, phone: str | None = None, last4: str | None = None,
                   name: str | None = None, limit: int = 10) -> list[CustomerHit]:
    """Customers by full phone, or by the last four digits together with (part of) the name."""
    cols = (_cu.c.id, _cu.c.name, _cu.c.phone)
    if phone:
        query = select(*cols).where(_cu.c.phone == phone)
    elif last4 and name:
        query = select(*cols).where(_cu.c.phone.like(f"%{last4}"), _cu.c.name.contains(name, autoescape=True))
    else:
        return []
    return [CustomerHit(*r) for r in session.execute(query.order_by(_cu.c.id).limit(limit))]


def customer_by_id(session: Session, customer_id: int) -> CustomerHit | None:
    """One customer as the till shows them, or None."""
    row = session.execute(select(_cu.c.id, _cu.c.name, _cu.c.phone).where(_cu.c.id == customer_id)).first()
    return CustomerHit(*row) if row is not None else None


__all__ = ["CouponRow", "CustomerHit", "RedemptionCounts", "attempts_for", "count_redeemed", "coupons_of_customer", "customer_by_id",
           "earlier_paid_orders", "find_coupon", "find_customers", "find_with_counts", "mark_redeemed",
           "pools_on_order", "record_attempt", "record_attempt_after_rollback", "redeem_logged", "unredeem"]
