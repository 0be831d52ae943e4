"""Conditions compiled to SQL WHERE clauses: the only place conditions become SQL.

Semantics match :func:`engine.conditions.predicate.compile_predicate` exactly.
Every leaf is NULL-free (a test on NULL yields false, never NULL), so ``NOT``,
``AND`` and ``OR`` stay two-valued on every backend. Text is only ever tested
for equality, so results never depend on a database collation.

Two sources:

* :func:`customer_where` over ``customers``; ``tags`` through ``customer_tags``
  and ``consent.<channel>`` through ``consents`` (no row = not granted);
* :func:`record_where` over ``records.data`` (JSON). Each value is read only
  when its JSON type fits the field (a number field holding text reads as
  missing, never as a database error). Dates are ISO text and compare as text,
  so datetimes must be stored in one canonical form:
  :func:`engine.conditions.values.iso_datetime` (naive UTC ``isoformat()``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from typing import cast as cast_to  # sqlalchemy's cast is the SQL one

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Numeric,
    String,
    and_,
    bindparam,
    cast,
    exists,
    false,
    func,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from engine.conditions.ast import All, Compare, Condition, Not, OrderWindow, SegmentRef
from engine.conditions.ast import Any as AnyCond
from engine.conditions.customer_fields import CONSENT_CHANNELS, CUSTOMER_FIELDS
from engine.conditions.kinds import DURATION_OPS, NEGATED, ConditionError, FieldKind
from engine.conditions.order_windows import PURCHASE_STATUSES, compare_measure, window_bounds
from engine.conditions.resolve import SegmentResolver
from engine.conditions.values import duration_bounds, iso_datetime, to_operand
from engine.storage.models import Consent, Customer, CustomerTag, Order, Record

__all__ = ["customer_row", "customer_rows", "customer_where", "record_where"]

_customers = Customer.__table__
_tags = CustomerTag.__table__
_consents = Consent.__table__
_records = Record.__table__
_orders = Order.__table__


def customer_where(
    cond: Condition, *, now: datetime, segments: Mapping[str, Condition] = {}
) -> ColumnElement[bool]:
    """A WHERE clause over ``customers`` selecting the customers ``cond`` holds for.

    ``now`` is an aware datetime (relative date tests are fixed at build time);
    ``segments`` resolves ``{segment: id}`` references.

    Raises:
        ConditionError: unknown field or segment, segment cycle, bad operand.
    """
    return _CustomerCompiler(now, segments).compile(cond)


def record_where(
    cond: Condition,
    *,
    form_fields: Mapping[str, FieldKind],
    now: datetime,
    segments: Mapping[str, Condition] = {},
) -> ColumnElement[bool]:
    """A WHERE clause over ``records`` testing ``records.data`` against ``cond``.

    ``form_fields`` gives the kind of each data key (dotted names address
    nested objects). Combine with a ``form_id`` filter; the clause is safe on
    other forms' rows too (mismatched JSON types read as missing).

    Raises:
        ConditionError: unknown field or segment, segment cycle, bad operand.
    """
    return RecordCompiler(form_fields, now, segments).compile(cond)


# --- the shared compiler -----------------------------------------------------


class _Compiler:
    fields: Mapping[str, FieldKind]

    def __init__(self, fields: Mapping[str, FieldKind], now: datetime, segments: Mapping[str, Condition]):
        self.fields = fields
        self.now = now
        self.resolver: SegmentResolver[ColumnElement[bool]] = SegmentResolver(segments, self.compile)

    def compile(self, node: Condition) -> ColumnElement[bool]:
        if isinstance(node, Compare):
            return self.leaf(node)
        if isinstance(node, All):
            return and_(true(), *(self.compile(i) for i in node.items))
        if isinstance(node, AnyCond):
            return or_(false(), *(self.compile(i) for i in node.items))
        if isinstance(node, Not):
            return not_(self.compile(node.item))
        if isinstance(node, SegmentRef):
            return self.resolver.get(node.segment_id)
        if isinstance(node, OrderWindow):
            return self.order_window(node)
        raise ConditionError(f"not a condition: {node!r}")

    def order_window(self, node: OrderWindow) -> ColumnElement[bool]:
        raise ConditionError("`orders` tests a customer's purchases; this condition is not about a customer")

    def kind(self, node: Compare) -> FieldKind:
        try:
            return self.fields[node.field]
        except KeyError:
            raise ConditionError(f"unknown field `{node.field}`") from None

    def operand(self, node: Compare, kind: FieldKind, value: object) -> Any:
        try:
            return self.sql_value(kind, to_operand(kind, value))
        except (ValueError, TypeError):
            raise ConditionError(f"bad value {value!r} for {kind.value} field `{node.field}`") from None

    def sql_value(self, kind: FieldKind, value: Any) -> Any:
        if kind is FieldKind.NUMBER:
            # Exact decimals, whatever the column type (integers, money, JSON numbers).
            return bindparam(None, value, type_=Numeric(asdecimal=True))
        return value

    # Sources implement these three.
    def scalar(self, field: str, kind: FieldKind) -> ColumnElement[Any]:
        raise NotImplementedError

    def is_empty(self, field: str, kind: FieldKind) -> ColumnElement[bool]:
        raise NotImplementedError

    def list_contains(self, field: str, item: str) -> ColumnElement[bool]:
        raise NotImplementedError

    def leaf(self, node: Compare) -> ColumnElement[bool]:
        kind = self.kind(node)
        op = node.op
        if op in NEGATED:
            return not_(self.leaf(Compare(node.field, NEGATED[op], node.value)))
        if op == "is_empty":
            empty = self.is_empty(node.field, kind)
            return empty if node.value else not_(empty)
        if op == "contains":
            return self.list_contains(node.field, self.operand(node, FieldKind.LIST, node.value))
        x = self.scalar(node.field, kind)
        present = x.is_not(None)
        if op in DURATION_OPS:
            lo, hi, strict = duration_bounds(kind, op, node.value, self.now)  # type: ignore[arg-type]
            tests = [present, x < self.sql_value(kind, hi) if strict else x <= self.sql_value(kind, hi)]
            if lo is not None:
                tests.append(x >= self.sql_value(kind, lo))
            return and_(*tests)
        if op == "in":
            values = [self.operand(node, kind, v) for v in _items(node.value)]
            return and_(present, x.in_(values)) if values else false()
        if op == "between":
            lo, hi = (self.operand(node, kind, v) for v in _items(node.value))
            return and_(present, x >= lo, x <= hi)
        value = self.operand(node, kind, node.value)
        if op == "eq":
            return and_(present, x == value)
        if op == "gt":
            return and_(present, x > value)
        if op == "gte":
            return and_(present, x >= value)
        if op == "lt":
            return and_(present, x < value)
        if op == "lte":
            return and_(present, x <= value)
        raise ConditionError(f"unknown operator `{op}`")


def _items(value: object) -> tuple[object, ...]:
    if not isinstance(value, tuple):
        raise ConditionError(f"a list of values expected, not {value!r}")
    return value


# --- customers -------------------------------------------------------------


class _CustomerCompiler(_Compiler):
    def __init__(self, now: datetime, segments: Mapping[str, Condition]):
        super().__init__(CUSTOMER_FIELDS, now, segments)

    def scalar(self, field: str, kind: FieldKind) -> ColumnElement[Any]:
        return _customers.c[field]

    def is_empty(self, field: str, kind: FieldKind) -> ColumnElement[bool]:
        if kind is FieldKind.LIST:
            return not_(exists().where(_tags.c.customer_id == _customers.c.id).correlate(_customers))
        if field.startswith("consent."):
            return false()  # no consent row reads as "not granted", never as missing
        column = _customers.c[field]
        if kind is FieldKind.TEXT:
            return or_(column.is_(None), column == "")
        return column.is_(None)

    def list_contains(self, field: str, item: str) -> ColumnElement[bool]:
        return exists().where(_tags.c.customer_id == _customers.c.id, _tags.c.tag == item).correlate(_customers)

    def leaf(self, node: Compare) -> ColumnElement[bool]:
        if node.field.startswith("consent.") and node.op in ("eq", "ne") and self.kind(node):
            wanted = self.operand(node, FieldKind.BOOL, node.value)
            granted = exists().where(
                _consents.c.customer_id == _customers.c.id,
                _consents.c.channel == node.field.removeprefix("consent."),
                _consents.c.granted == true(),
            ).correlate(_customers)
            return granted if wanted == (node.op == "eq") else not_(granted)
        return super().leaf(node)

    def order_window(self, node: OrderWindow) -> ColumnElement[bool]:
        """One grouped subquery over the window's orders (``placed_at`` index),
        not a probe per customer: ``id IN (customers whose figure passes)``,
        or, when a customer without orders passes too (``count: 0``,
        ``amount: {lt: 100}``), ``id NOT IN (customers with orders whose
        figure fails)``. Either is computed once per statement (PostgreSQL:
        a hashed subplan; SQLite: a temporary index), so an audience over a
        million customers stays one set-based statement. Amounts are summed in
        whole cents (exact on SQLite, whose NUMERIC is a float)."""
        low, high, strict = window_bounds(node.period, self.now)
        where = [
            _orders.c.customer_id.is_not(None),
            _orders.c.placed_at >= low,
            _orders.c.placed_at < high if strict else _orders.c.placed_at <= high,
            _orders.c.status.in_(PURCHASE_STATUSES),
        ]
        zero_passes = compare_measure(node, Decimal(0))
        buyers = select(_orders.c.customer_id).where(*where)
        if node.measure == "count" and not zero_passes and node.op in ("gte", "gt") \
                and compare_measure(node, Decimal(1)):
            return _customers.c.id.in_(buyers)  # any purchase will do: no counting
        if node.measure == "count":
            figure: ColumnElement[Any] = func.count()
            scale = 1
        else:
            # What the customer kept: the amount less refunds (``net_amount``, kept by engine.orders).
            figure = func.sum(cast(func.round(_orders.c.net_amount * 100), BigInteger))
            scale = 100

        def bound(v: Any) -> Any:
            return bindparam(None, v * scale, type_=Numeric(asdecimal=True))

        op, value = node.op, node.value
        if op == "between":
            lo, hi = cast_to("tuple[Any, Any]", value)
            passes = and_(figure >= bound(lo), figure <= bound(hi))
        else:
            passes = {"eq": figure.__eq__, "ne": figure.__ne__, "gt": figure.__gt__, "gte": figure.__ge__,
                      "lt": figure.__lt__, "lte": figure.__le__}[op](bound(value))
        grouped = buyers.group_by(_orders.c.customer_id)
        if zero_passes:
            # NOT EXISTS over the grouped rows, not NOT IN: PostgreSQL plans it as
            # a hash anti join (NOT IN is hashed only while it fits in work_mem).
            failing = grouped.having(not_(passes)).subquery()
            return not_(exists().where(failing.c.customer_id == _customers.c.id).correlate(_customers))
        return _customers.c.id.in_(grouped.having(passes))


def customer_rows(session: Session, customer_ids: Iterable[int], *,
                  orders_since: datetime | None = None) -> dict[int, dict[str, object]]:
    """Load customers in the row shape predicates expect, keyed by id.

    Each row has the scalar fields, ``tags`` (a list) and ``consent`` (a dict
    with every channel in ``CONSENT_CHANNELS``; no row means ``False``). With
    ``orders_since`` (naive UTC; ``datetime.min`` for all), also ``orders``:
    the customer's orders placed since then (``placed_at``, ``amount``,
    ``status``, whatever the status: the predicate picks the purchases), for
    order windows (see :func:`engine.conditions.order_windows.earliest_order_needed`).
    """
    ids = list(customer_ids)
    if not ids:
        return {}
    names = ["id"] + [f for f, k in CUSTOMER_FIELDS.items() if k is not FieldKind.LIST and "." not in f]
    rows: dict[int, dict[str, object]] = {}
    tags: dict[int, list[str]] = {}
    consents: dict[int, dict[str, bool]] = {}
    columns = [_customers.c[n] for n in names]
    for chunk in _chunks(ids, 500):
        for record in session.execute(select(*columns).where(_customers.c.id.in_(chunk))).mappings():
            cid = record["id"]
            rows[cid] = dict(record)
            rows[cid]["tags"] = tags[cid] = []
            rows[cid]["consent"] = consents[cid] = {channel: False for channel in CONSENT_CHANNELS}
        for cid, tag in session.execute(select(_tags.c.customer_id, _tags.c.tag).where(_tags.c.customer_id.in_(chunk))):
            tags[cid].append(tag)
        granted_rows = select(_consents.c.customer_id, _consents.c.channel, _consents.c.granted).where(
            _consents.c.customer_id.in_(chunk)
        )
        for cid, channel, granted in session.execute(granted_rows):
            consents[cid][channel] = bool(granted) or consents[cid].get(channel, False)
        if orders_since is not None:
            for cid in chunk:
                if cid in rows:
                    rows[cid]["orders"] = []
            placed = select(_orders.c.customer_id, _orders.c.placed_at, _orders.c.net_amount, _orders.c.status).where(
                _orders.c.customer_id.in_(chunk), _orders.c.placed_at >= orders_since)
            for cid, at, amount, status in session.execute(placed):
                cast_to("list[dict[str, Any]]", rows[cid]["orders"]).append(
                    {"placed_at": at, "amount": amount, "status": status})
    return rows


def customer_row(session: Session, customer_id: int, *, orders_since: datetime | None = None) -> dict[str, object]:
    """One customer in the row shape predicates expect (see :func:`customer_rows`).

    Raises:
        LookupError: no customer has this id.
    """
    rows = customer_rows(session, [customer_id], orders_since=orders_since)
    if customer_id not in rows:
        raise LookupError(f"no customer with id {customer_id}")
    return rows[customer_id]


def _chunks(items: list[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- records (JSON) -----------------------------------------------------------


class RecordCompiler(_Compiler):
    def sql_value(self, kind: FieldKind, value: Any) -> Any:
        # JSON holds dates as ISO text; compare text with text.
        if kind is FieldKind.DATETIME and isinstance(value, datetime):
            return iso_datetime(value)
        if kind is FieldKind.DATE and isinstance(value, date):
            return value.isoformat()
        return super().sql_value(kind, value)

    def scalar(self, field: str, kind: FieldKind) -> ColumnElement[Any]:
        if kind is FieldKind.NUMBER:
            return _JsonNumber(*path_args(field))
        if kind is FieldKind.BOOL:
            return _JsonBool(*path_args(field))
        if kind is FieldKind.DATE:
            return _JsonIsoDate(*path_args(field))
        if kind is FieldKind.DATETIME:
            return _JsonIsoDateTime(*path_args(field))
        return _JsonText(*path_args(field))

    def is_empty(self, field: str, kind: FieldKind) -> ColumnElement[bool]:
        if kind is FieldKind.LIST:
            return not_(_JsonListNonEmpty(*path_args(field)))
        value = self.scalar(field, kind)
        if kind in (FieldKind.TEXT, FieldKind.DATE, FieldKind.DATETIME):
            return or_(value.is_(None), value == "")
        return value.is_(None)

    def list_contains(self, field: str, item: str) -> ColumnElement[bool]:
        return _JsonListContains(*path_args(field), bindparam(None, item, type_=String()))


def path_args(field: str) -> tuple[Any, ...]:
    """``records.data`` plus the key path in each backend's spelling, as binds."""
    keys = field.split(".")
    sqlite_path = "$" + "".join('."' + k.replace('"', '\\"') + '"' for k in keys)
    pg_path = "{" + ",".join('"' + k.replace("\\", "\\\\").replace('"', '\\"') + '"' for k in keys) + "}"
    return (
        _records.c.data,
        bindparam(None, sqlite_path, type_=String()),
        bindparam(None, pg_path, type_=String()),
    )


class JsonFn(FunctionElement[Any]):
    """``fn(data, sqlite_path, pg_path[, item])``, compiled per backend below."""

    inherit_cache = True


class _JsonText(JsonFn):
    inherit_cache = True
    type = String()
    name = "pf_json_text"


class _JsonIsoDate(JsonFn):
    """ISO date text of the stored shape, ordered byte-wise (``COLLATE "C"``)."""

    inherit_cache = True
    type = String()
    name = "pf_json_iso_date"


class _JsonIsoDateTime(JsonFn):
    """Canonical datetime text, ordered byte-wise (``COLLATE "C"``)."""

    inherit_cache = True
    type = String()
    name = "pf_json_iso_datetime"


class _JsonNumber(JsonFn):
    inherit_cache = True
    type = Numeric(asdecimal=True)
    name = "pf_json_number"


class _JsonBool(JsonFn):
    inherit_cache = True
    type = Boolean()
    name = "pf_json_bool"


class _JsonListNonEmpty(JsonFn):
    inherit_cache = True
    type = Boolean()
    name = "pf_json_list_nonempty"


class _JsonListContains(JsonFn):
    inherit_cache = True
    type = Boolean()
    name = "pf_json_list_contains"


def json_fn_args(element: JsonFn, compiler: Any, **kw: Any) -> list[str]:
    return [compiler.process(c, **kw) for c in element.clauses]


_SQLITE_TYPES = {
    _JsonText: "('text')",
    _JsonNumber: "('integer', 'real')",
    _JsonBool: "('true', 'false')",
}


@compiles(_JsonText, "sqlite")
@compiles(_JsonNumber, "sqlite")
@compiles(_JsonBool, "sqlite")
def _sqlite_scalar(element: JsonFn, compiler: Any, **kw: Any) -> str:
    data, path, _ = json_fn_args(element, compiler, **kw)
    return (
        f"CASE WHEN json_type({data}, {path}) IN {_SQLITE_TYPES[type(element)]} "
        f"THEN json_extract({data}, {path}) END"
    )


@compiles(_JsonListNonEmpty, "sqlite")
def _sqlite_nonempty(element: JsonFn, compiler: Any, **kw: Any) -> str:
    data, path, _ = json_fn_args(element, compiler, **kw)
    return f"(coalesce(json_type({data}, {path}) = 'array' AND json_array_length({data}, {path}) > 0, 0) = 1)"


@compiles(_JsonListContains, "sqlite")
def _sqlite_contains(element: JsonFn, compiler: Any, **kw: Any) -> str:
    data, path, _, item = json_fn_args(element, compiler, **kw)
    return (
        f"(coalesce(json_type({data}, {path}) = 'array', 0) = 1 AND EXISTS "
        f"(SELECT 1 FROM json_each({data}, {path}) AS pf_je "
        f"WHERE pf_je.type = 'text' AND pf_je.value = {item}))"
    )


_PG_SCALAR = {
    _JsonText: ("string", "{v}"),
    _JsonNumber: ("number", "CAST({v} AS NUMERIC)"),
    _JsonBool: ("boolean", "CAST({v} AS BOOLEAN)"),
}


def pg_value(data: str, path: str) -> str:
    return f"({data} #> CAST({path} AS TEXT[]))"


@compiles(_JsonText, "postgresql")
@compiles(_JsonNumber, "postgresql")
@compiles(_JsonBool, "postgresql")
def _pg_scalar(element: JsonFn, compiler: Any, **kw: Any) -> str:
    data, _, path = json_fn_args(element, compiler, **kw)
    json_type, cast = _PG_SCALAR[type(element)]
    value = pg_value(data, path)
    text = f"({value} #>> '{{}}')"
    # CASE guards the cast: it only runs on values of the right JSON type.
    return f"CASE WHEN jsonb_typeof({value}) = '{json_type}' THEN {cast.format(v=text)} END"


# Shapes of engine.conditions.values.ISO_DATE_SHAPE / ISO_DATETIME_SHAPE.
_D = "[0-9]"
_SQLITE_GLOBS = {
    _JsonIsoDate: [f"{_D*4}-{_D*2}-{_D*2}"],
    _JsonIsoDateTime: [
        f"{_D*4}-{_D*2}-{_D*2}T{_D*2}:{_D*2}:{_D*2}",
        f"{_D*4}-{_D*2}-{_D*2}T{_D*2}:{_D*2}:{_D*2}.{_D*6}",
    ],
}
_PG_REGEX = {
    _JsonIsoDate: "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
    _JsonIsoDateTime: "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]{6})?$",
}


@compiles(_JsonIsoDate, "sqlite")
@compiles(_JsonIsoDateTime, "sqlite")
def _sqlite_iso(element: JsonFn, compiler: Any, **kw: Any) -> str:
    data, path, _ = json_fn_args(element, compiler, **kw)
    value = f"json_extract({data}, {path})"
    shape = " OR ".join(f"{value} GLOB '{glob}'" for glob in _SQLITE_GLOBS[type(element)])
    return f"CASE WHEN json_type({data}, {path}) = 'text' AND ({shape}) THEN {value} END"


@compiles(_JsonIsoDate, "postgresql")
@compiles(_JsonIsoDateTime, "postgresql")
def _pg_iso(element: JsonFn, compiler: Any, **kw: Any) -> str:
    data, _, path = json_fn_args(element, compiler, **kw)
    value = pg_value(data, path)
    text = f"({value} #>> '{{}}')"
    # Only values of the stored shape count; they compare as text in byte order,
    # whatever the database's collation.
    return (
        f"(CASE WHEN jsonb_typeof({value}) = 'string' AND {text} ~ '{_PG_REGEX[type(element)]}' "
        f'THEN {text} END) COLLATE "C"'
    )


@compiles(_JsonListNonEmpty, "postgresql")
def _pg_nonempty(element: JsonFn, compiler: Any, **kw: Any) -> str:
    data, _, path = json_fn_args(element, compiler, **kw)
    value = pg_value(data, path)
    return f"coalesce(jsonb_typeof({value}) = 'array' AND {value} <> '[]'::jsonb, false)"


@compiles(_JsonListContains, "postgresql")
def _pg_contains(element: JsonFn, compiler: Any, **kw: Any) -> str:
    data, _, path, item = json_fn_args(element, compiler, **kw)
    value = pg_value(data, path)
    return (
        f"coalesce(jsonb_typeof({value}) = 'array' AND "
        f"{value} @> jsonb_build_array(CAST({item} AS TEXT)), false)"
    )
