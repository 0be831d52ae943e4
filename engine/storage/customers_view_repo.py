"""Read-only SQL of the customer pages (``/customers``, ``/customers/<id>``).

Why a module of its own: the list must work on a million customers, so
search, filters, counting and paging all happen in SQL (one page of rows and
one ``count`` per request, never a scan in Python), and a segment filter is the
segment's own definition compiled by :func:`engine.storage.condition_sql.customer_where`
exactly as the automation compiles audiences, so the page and the rules can
never disagree about who is in a segment.

Matching stays collation-free on both backends: exact search is equality
(served by the ``phone``/``email``/``external_id`` indexes), prefix search is
``LIKE 'q%'`` with the wildcards in ``q`` escaped, both sides lower-cased by
the database's own ``lower`` (SQLite's ``LIKE`` ignores ASCII case,
PostgreSQL's does not; lower-casing the query in Python would disagree with
SQLite's ASCII-only ``lower`` on names like "Émile").
Exact e-mails are compared with the lower-cased query (the import stores
them lower-cased), exact external ids as written.
Everything takes and returns naive UTC times (``engine.storage.times``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, case, exists, false, func, literal, or_, select
from sqlalchemy.orm import Session

from engine.conditions.ast import Condition, SegmentRef
from engine.personal_data import CustomerScope
from engine.storage.condition_sql import customer_where
from engine.storage.models import (
    Consent,
    Coupon,
    Customer,
    CustomerTag,
    Feedback,
    Journey,
    Order,
    OutboxMessage,
    User,
)

_cust: Table = Customer.__table__  # type: ignore[assignment]
_tags: Table = CustomerTag.__table__  # type: ignore[assignment]
_consents: Table = Consent.__table__  # type: ignore[assignment]
_orders: Table = Order.__table__  # type: ignore[assignment]
_coupons: Table = Coupon.__table__  # type: ignore[assignment]
_journeys: Table = Journey.__table__  # type: ignore[assignment]
_outbox: Table = OutboxMessage.__table__  # type: ignore[assignment]
_feedback: Table = Feedback.__table__  # type: ignore[assignment]
_users: Table = User.__table__  # type: ignore[assignment]

#: Search fields, in the order the page offers them.
SEARCH_FIELDS = ("name", "phone", "email", "external_id")
#: Largest id a 64-bit column holds; larger ids cannot exist (and SQLite
#: refuses to bind them), so they are "not found" before any SQL runs.
MAX_ID = 2**63 - 1
_PHONE_LIKE = re.compile(r"\+?[\d\s\-]{3,}")

__all__ = [
    "MAX_ID", "SEARCH_FIELDS", "CustomerFilter", "CustomerPage", "customer_detail", "list_customers",
    "scope_where", "segments_of", "tag_choices",
]


@dataclass(frozen=True)
class CustomerFilter:
    """What the list asks for. ``by`` limits the search to one field (None:
    chosen from the shape of ``q``); ``exact`` asks for equality instead of
    a prefix; ``segment`` is a published segment id (its condition comes in
    ``segments``)."""

    q: str = ""
    by: str | None = None
    exact: bool = False
    tag: str | None = None
    segment: str | None = None


@dataclass
class CustomerPage:
    rows: list[dict[str, Any]]
    total: int
    page: int
    pages: int


def search_fields(q: str, by: str | None) -> tuple[str, ...]:
    """The columns a search looks in: the one asked for, else by the shape of
    ``q`` (an ``@`` is an e-mail, digits are a phone or an external id), so a
    phone search does not also scan every name."""
    if by in SEARCH_FIELDS:
        return (by,)
    if "@" in q:
        return ("email",)
    if _PHONE_LIKE.fullmatch(q):
        return ("phone", "external_id")
    return ("name", "email", "external_id") if q.isascii() else ("name", "external_id")


#: A phone search by its last four digits (also matched as a suffix; digits only, so no LIKE escaping).
_LAST4 = re.compile(r"[0-9]{4}")


def _like_prefix(value: str) -> str:
    """``value%`` with LIKE's wildcards (and the escape character) in ``value`` taken literally."""
    return re.sub(r"([/%_])", r"/\1", value) + "%"


def _search(q: str, by: str | None, exact: bool) -> ColumnElement[bool]:
    parts: list[ColumnElement[bool]] = []
    for name in search_fields(q, by):
        value = re.sub(r"[\s\-]", "", q) if name == "phone" else q
        if not value:
            continue
        col = _cust.c[name]
        if exact:
            if name == "email":  # equality on the column keeps the index usable
                parts.append(or_(col == value, col == value.lower()))
            elif name == "name":
                parts.append(func.lower(col) == func.lower(literal(value)))
            else:
                parts.append(col == value)
        else:
            parts.append(func.lower(col).like(func.lower(literal(_like_prefix(value))), escape="/"))
            if name == "phone" and _LAST4.fullmatch(value):  # staff ask "the one ending in 1234"
                parts.append(col.like("%" + value))
    return or_(false(), *parts)


def _where(flt: CustomerFilter, *, now: datetime, segments: Mapping[str, Condition]) -> list[ColumnElement[bool]]:
    """WHERE parts of ``flt``. ``now`` is aware (segments test relative dates).

    Raises:
        KeyError: ``flt.segment`` is not among ``segments``.
        engine.conditions.kinds.ConditionError: the segment does not compile.
    """
    where: list[ColumnElement[bool]] = []
    if flt.q:
        where.append(_search(flt.q, flt.by, flt.exact))
    if flt.tag:
        where.append(exists().where(_tags.c.tag == flt.tag, _tags.c.customer_id == _cust.c.id).correlate(_cust))
    if flt.segment:
        if flt.segment not in segments:
            raise KeyError(flt.segment)
        where.append(customer_where(SegmentRef(flt.segment), now=now, segments=segments))
    return where


def scope_where(scope: CustomerScope | None) -> ColumnElement[bool] | None:
    """The customers a scoped user may open (issue 16): their store's
    (``attrs.store``) or their accounts (``account_manager_id``); None when
    the scope is everyone."""
    if scope is None or scope.everyone:
        return None
    parts: list[ColumnElement[bool]] = []
    if scope.store is not None:
        parts.append(_cust.c.attrs["store"].as_string() == scope.store)
    if scope.account_manager_id is not None:
        parts.append(_cust.c.account_manager_id == scope.account_manager_id)
    return or_(false(), *parts)


LIST_COLUMNS = ("id", "external_id", "name", "phone", "email", "city", "level", "rfm_segment",
                "last_purchase_at", "order_count", "total_spent")


def list_customers(session: Session, flt: CustomerFilter, *, page: int, per_page: int, now: datetime,
                   segments: Mapping[str, Condition] = {}, scope: CustomerScope | None = None) -> CustomerPage:
    """One page of matching customers (newest first) with their tags, the
    total (a SQL ``count``) and the page count; a page past the end shows the
    last page, so a stale or hostile ``page`` never runs a huge ``OFFSET``.
    Only customers inside ``scope`` (None: everyone) are counted and listed."""
    where = _where(flt, now=now, segments=segments)
    scoped = scope_where(scope)
    if scoped is not None:
        where.append(scoped)
    conn = session.connection()
    total = int(conn.execute(select(func.count()).select_from(_cust).where(*where)).scalar_one())
    pages = max(1, -(-total // per_page))
    page = min(max(1, page), pages)
    stmt = (select(*(_cust.c[c] for c in LIST_COLUMNS)).where(*where)
            .order_by(_cust.c.id.desc()).limit(per_page).offset((page - 1) * per_page))
    rows = [dict(r._mapping) for r in conn.execute(stmt)]
    tags = _tags_of(session, [r["id"] for r in rows])
    for r in rows:
        r["tags"] = tags.get(r["id"], [])
    return CustomerPage(rows, total, page, pages)


def _tags_of(session: Session, ids: Sequence[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    if ids:
        stmt = select(_tags.c.customer_id, _tags.c.tag).where(_tags.c.customer_id.in_(ids)).order_by(_tags.c.tag)
        for cid, tag in session.connection().execute(stmt):
            out.setdefault(int(cid), []).append(str(tag))
    return out


def tag_choices(session: Session, limit: int = 200) -> list[str]:
    """Up to ``limit`` distinct tags for the filter's suggestions (read from the
    ``(tag, customer_id)`` index, not from every customer)."""
    stmt = select(_tags.c.tag).distinct().order_by(_tags.c.tag).limit(limit)
    return [str(t) for (t,) in session.connection().execute(stmt)]


def segments_of(session: Session, customer_id: int, *, now: datetime,
                segments: Mapping[str, Condition]) -> list[str]:
    """The segments ``customer_id`` is in now: one statement, each segment's
    compiled condition as a column. A segment that does not compile is left out."""
    from engine.conditions.kinds import ConditionError

    columns: list[Any] = []
    ids: list[str] = []
    for seg_id in sorted(segments):
        try:
            cond = customer_where(SegmentRef(seg_id), now=now, segments=segments)
        except ConditionError:
            continue
        columns.append(case((cond, 1), else_=0).label(f"s{len(columns)}"))
        ids.append(seg_id)
    if not columns:
        return []
    row = session.connection().execute(select(*columns).where(_cust.c.id == customer_id)).first()
    if row is None:
        return []
    return [seg_id for seg_id, hit in zip(ids, row, strict=True) if hit]


@dataclass
class CustomerDetail:
    """Everything the detail page shows; each list is the newest ``limit``
    rows, ``counts`` how many there are in all."""

    customer: dict[str, Any]
    account_manager: dict[str, Any] | None
    consents: dict[str, dict[str, Any]]
    tags: list[str]
    orders: list[dict[str, Any]]
    coupons: list[dict[str, Any]]
    journeys: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    feedback: list[dict[str, Any]]
    counts: dict[str, int] = field(default_factory=dict)
    order_total: Any = None
    coupons_redeemed: int = 0


def _rows(session: Session, stmt: Any) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in session.connection().execute(stmt)]


def _count(session: Session, table: Table, *where: ColumnElement[bool]) -> int:
    return int(session.connection().execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def customer_detail(session: Session, customer_id: int, *, limit: int = 20,
                    scope: CustomerScope | None = None) -> CustomerDetail | None:
    """One customer and what happened to them, or None (also when the
    customer is outside ``scope``). Every section is a bounded query on an
    index led by the customer id."""
    if not 1 <= customer_id <= MAX_ID:
        return None
    conn = session.connection()
    scoped = scope_where(scope)
    row = conn.execute(select(_cust).where(_cust.c.id == customer_id,
                                           *(() if scoped is None else (scoped,)))).first()
    if row is None:
        return None
    customer = dict(row._mapping)
    manager = None
    if customer.get("account_manager_id") is not None:
        found = conn.execute(select(_users.c.id, _users.c.username, _users.c.display_name, _users.c.email,
                                    _users.c.phone).where(_users.c.id == customer["account_manager_id"])).first()
        manager = dict(found._mapping) if found is not None else None
    consents = {str(r["channel"]): r for r in _rows(session, select(
        _consents.c.channel, _consents.c.granted, _consents.c.source, _consents.c.updated_at)
        .where(_consents.c.customer_id == customer_id))}
    tags = _tags_of(session, [customer_id]).get(customer_id, [])

    o_where = _orders.c.customer_id == customer_id
    orders = _rows(session, select(_orders.c.id, _orders.c.external_id, _orders.c.amount, _orders.c.placed_at,
                                   _orders.c.channel, _orders.c.campaign, _orders.c.status)
                   .where(o_where).order_by(_orders.c.placed_at.desc(), _orders.c.id.desc()).limit(limit))
    n_orders, order_total = conn.execute(select(func.count(), func.coalesce(func.sum(_orders.c.amount), 0))
                                         .where(o_where)).one()

    c_where = _coupons.c.customer_id == customer_id
    coupons = _rows(session, select(_coupons.c.id, _coupons.c.pool_id, _coupons.c.code, _coupons.c.value,
                                    _coupons.c.status, _coupons.c.issued_at, _coupons.c.expires_at,
                                    _coupons.c.redeemed_at)
                    .where(c_where).order_by(_coupons.c.issued_at.desc(), _coupons.c.id.desc()).limit(limit))
    n_coupons, n_redeemed = conn.execute(select(
        func.count(), func.coalesce(func.sum(case((_coupons.c.redeemed_at.is_not(None), 1), else_=0)), 0))
        .where(c_where)).one()

    j_where = and_(_journeys.c.subject_type == "customer", _journeys.c.subject_id == customer_id)
    journeys = _rows(session, select(_journeys.c.id, _journeys.c.rule_id, _journeys.c.rule_version,
                                     _journeys.c.step_index, _journeys.c.step_id, _journeys.c.status,
                                     _journeys.c.entered_at, _journeys.c.due_at, _journeys.c.arm)
                     .where(j_where).order_by(_journeys.c.entered_at.desc(), _journeys.c.id.desc()).limit(limit))

    m_where = _outbox.c.customer_id == customer_id
    messages = _rows(session, select(_outbox.c.id, _outbox.c.channel, _outbox.c.status, _outbox.c.delivery_status,
                                     _outbox.c.template_id, _outbox.c.rule_id, _outbox.c.created_at,
                                     _outbox.c.sent_at)
                     .where(m_where).order_by(_outbox.c.id.desc()).limit(limit))

    f_where = _feedback.c.customer_id == customer_id
    feedback = _rows(session, select(_feedback.c.id, _feedback.c.campaign, _feedback.c.score, _feedback.c.comment,
                                     _feedback.c.tags, _feedback.c.source, _feedback.c.received_at)
                     .where(f_where).order_by(_feedback.c.received_at.desc(), _feedback.c.id.desc()).limit(limit))
    for f in feedback:
        f["tags"] = [str(x) for x in f["tags"]] if isinstance(f["tags"], list) else []

    counts = {"orders": int(n_orders), "coupons": int(n_coupons),
              "journeys": _count(session, _journeys, j_where), "messages": _count(session, _outbox, m_where),
              "feedback": _count(session, _feedback, f_where)}
    return CustomerDetail(customer=customer, account_manager=manager, consents=consents, tags=tags, orders=orders,
                          coupons=coupons, journeys=journeys, messages=messages, feedback=feedback, counts=counts,
                          order_total=order_total, coupons_redeemed=int(n_redeemed))
