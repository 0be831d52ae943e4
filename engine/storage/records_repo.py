"""The SQL side of form records: rows, unique-value claims, filtered pages.

Record data is JSON. Money is stored as exact text (``"60000.00"``), so the
filter compiler here extends :func:`engine.storage.condition_sql.record_where`
to read a money field as a number whether it holds text or a JSON number;
every other field kind compiles exactly as there.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    bindparam,
    ColumnElement,
    Numeric,
    and_,
    delete,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session

from engine.conditions.ast import Condition
from engine.conditions.kinds import FieldKind
from engine.storage.condition_sql import (  # the record compiler and its JSON helpers
    json_fn_args,
    JsonFn,
    path_args,
    pg_value,
    RecordCompiler,
)
from engine.storage.models import Customer, Record, RecordUniqueValue, User
from engine.storage.times import to_db_time
from engine.storage.workflows_repo import Db, Prepared

SORT_COLUMNS = ("id", "created_at", "updated_at")
_MAX_UNIQUE_TEXT = 200

# Built once: constructing a statement costs more than running it on SQLite,
# and this one runs for every submitted form.
_records = Record.__table__
_INSERT_RECORD = (
    insert(_records)
    .values(
        form_id=bindparam("form_id"), form_version=bindparam("form_version"), data=bindparam("data"),
        created_by=select(User.id).where(User.username == bindparam("actor")).scalar_subquery(),
        created_by_name=bindparam("actor"), created_at=bindparam("at"), updated_at=bindparam("at"),
        version=1, status=bindparam("status"),
    )
    .returning(_records.c.id)
)
_P_INSERT_RECORD = Prepared(_INSERT_RECORD)


@dataclass(frozen=True)
class RecordRow:
    """A record row detached from its session (times still naive UTC)."""

    id: int
    form_id: str
    form_version: int
    data: dict[str, Any]
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    version: int
    status: str


def _row(r: Record) -> RecordRow:
    return RecordRow(r.id, r.form_id, r.form_version, dict(r.data or {}), r.created_by_name,
                     r.created_at, r.updated_at, r.version, r.status)


# --- writing -------------------------------------------------------------------


def insert_record(
    session: Session,
    *,
    form_id: str,
    form_version: int,
    data: dict[str, Any],
    actor: str | None,
    now: datetime,
    status: str = "submitted",
) -> RecordRow:
    """Insert a record (flushed). ``created_by`` is the actor's users.id if there is one.

    The insert is the transaction's first statement on purpose: on SQLite it
    takes the write lock at once, so a concurrent writer waits (busy timeout)
    instead of failing on a stale read snapshot.
    """
    at = to_db_time(now)
    params = {"form_id": form_id, "form_version": form_version, "data": data, "actor": actor, "at": at,
              "status": status}
    record_id = Db.of(session).execute(_P_INSERT_RECORD, params).fetchone()[0]
    return RecordRow(record_id, form_id, form_version, data, actor, at, at, 1, status)


def update_record_data(
    session: Session, record_id: int, *, expected_version: int, data: dict[str, Any], now: datetime,
    expected_status: str | None = None,
) -> bool:
    """Set ``data`` and bump ``version`` iff the row is still at ``expected_version``
    (and, when given, still in ``expected_status``: a workflow changes the
    status without bumping the version)."""
    stmt = update(Record).where(Record.id == record_id, Record.version == expected_version)
    if expected_status is not None:
        stmt = stmt.where(Record.status == expected_status)
    result = session.execute(
        stmt.values(data=data, version=expected_version + 1, updated_at=to_db_time(now))
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def unique_key(value: Any) -> str:
    """The text under which a unique value is claimed (long values by their hash)."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > _MAX_UNIQUE_TEXT:
        return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return text


def claim_unique(session: Session, form_id: str, field: str, value: Any, record_id: int) -> bool:
    """Claim ``value`` of ``field`` for a record; False if another record holds it.

    Runs in a SAVEPOINT so a lost race leaves the caller's transaction usable.
    On PostgreSQL a concurrent claimer blocks until the holder commits or rolls
    back, so exactly one of two racing submissions wins.
    """
    try:
        with session.begin_nested():
            session.execute(
                insert(RecordUniqueValue).values(
                    form_id=form_id, field=field, value=unique_key(value), record_id=record_id
                )
            )
    except IntegrityError:
        return False
    return True


def release_unique(session: Session, form_id: str, field: str, record_id: int) -> None:
    """Give up a record's claim on ``field`` (its value changed or was cleared)."""
    session.execute(
        delete(RecordUniqueValue).where(
            RecordUniqueValue.form_id == form_id,
            RecordUniqueValue.field == field,
            RecordUniqueValue.record_id == record_id,
        )
    )


def unique_taken(session: Session, form_id: str, field: str, value: Any, *, except_record: int | None = None) -> bool:
    """Whether another record already claims ``value`` (a friendly pre-check; the claim decides)."""
    stmt = select(RecordUniqueValue.record_id).where(
        RecordUniqueValue.form_id == form_id,
        RecordUniqueValue.field == field,
        RecordUniqueValue.value == unique_key(value),
    )
    holder = session.execute(stmt).scalar_one_or_none()
    return holder is not None and holder != except_record


# --- reading -------------------------------------------------------------------


def get_record(session: Session, record_id: int) -> RecordRow | None:
    row = session.get(Record, record_id)
    return None if row is None else _row(row)


def customer_exists(session: Session, customer_id: int) -> bool:
    return session.execute(select(Customer.id).where(Customer.id == customer_id)).first() is not None


def user_exists(session: Session, username: str) -> bool:
    return session.execute(select(User.id).where(User.username == username)).first() is not None


class _JsonMoney(JsonFn):
    """A money field as NUMERIC: a JSON number, or text shaped like a decimal."""

    inherit_cache = True
    type = Numeric(asdecimal=True)
    name = "pf_json_money"


@compiles(_JsonMoney, "sqlite")
def _sqlite_money(element: JsonFn, compiler: Any, **kw: Any) -> str:
    data, path, _ = json_fn_args(element, compiler, **kw)
    kind = f"json_type({data}, {path})"
    value = f"json_extract({data}, {path})"
    return (
        f"CASE WHEN {kind} IN ('integer', 'real') THEN {value} "
        f"WHEN {kind} = 'text' AND {value} GLOB '[0-9-]*' AND substr({value}, 2) NOT GLOB '*[^0-9.]*' "
        f"THEN CAST({value} AS NUMERIC) END"
    )


@compiles(_JsonMoney, "postgresql")
def _pg_money(element: JsonFn, compiler: Any, **kw: Any) -> str:
    data, _, path = json_fn_args(element, compiler, **kw)
    value = pg_value(data, path)
    text = f"({value} #>> '{{}}')"
    return (
        f"CASE WHEN jsonb_typeof({value}) = 'number' THEN CAST({text} AS NUMERIC) "
        f"WHEN jsonb_typeof({value}) = 'string' AND {text} ~ '^-?[0-9]+([.][0-9]+)?$' "
        f"THEN CAST({text} AS NUMERIC) END"
    )


class FormRecordCompiler(RecordCompiler):
    """``record_where`` semantics, with money fields read from their stored text."""

    def __init__(self, form_fields: Mapping[str, FieldKind], money_fields: Sequence[str], now: datetime):
        super().__init__(form_fields, now, {})
        self.money = frozenset(money_fields)

    def scalar(self, field: str, kind: FieldKind) -> ColumnElement[Any]:
        if field in self.money:
            return _JsonMoney(*path_args(field))
        return super().scalar(field, kind)


@dataclass(frozen=True)
class RecordQuery:
    """What to list: a form's records, filtered, sorted, one page (offset/limit)."""

    form_id: str
    form_fields: Mapping[str, FieldKind]
    money_fields: Sequence[str] = ()
    where: Condition | None = None
    created_by: str | None = None
    sort: str = "created_at"
    descending: bool = True
    now: datetime | None = None
    #: A keyword (``q``): records whose text fields in ``search_fields`` contain
    #: it, case-insensitively for ASCII, LIKE wildcards in it taken literally.
    search: str | None = None
    search_fields: Sequence[str] = ()


def _filtered(query: RecordQuery) -> tuple[list[ColumnElement[bool]], FormRecordCompiler]:
    now = query.now or datetime(1970, 1, 1, tzinfo=UTC)
    compiler = FormRecordCompiler(query.form_fields, query.money_fields, now)
    clauses: list[ColumnElement[bool]] = [Record.form_id == query.form_id]
    if query.where is not None:
        clauses.append(compiler.compile(query.where))
    if query.created_by is not None:
        clauses.append(Record.created_by_name == query.created_by)
    if query.search:
        # Both sides lower-cased by the database (as the customer search does), LIKE's wildcards escaped.
        pattern = func.lower(literal("%" + re.sub(r"([/%_])", r"/\1", query.search) + "%"))
        clauses.append(or_(false(), *(
            func.lower(compiler.scalar(key, FieldKind.TEXT)).like(pattern, escape="/")
            for key in query.search_fields)))
    return clauses, compiler


def _order(query: RecordQuery, compiler: FormRecordCompiler) -> list[Any]:
    if query.sort in SORT_COLUMNS:
        column: Any = getattr(Record, query.sort)
    else:
        column = compiler.scalar(query.sort, query.form_fields[query.sort])
    key = column.desc() if query.descending else column.asc()
    tie = Record.id.desc() if query.descending else Record.id.asc()
    return [key.nulls_last(), tie]


def list_records(session: Session, query: RecordQuery, *, offset: int, limit: int) -> tuple[list[RecordRow], int]:
    """One page of records and the total matching count.

    Raises:
        ConditionError: the filter names an unknown field or has a bad operand.
        KeyError: the sort names a field that is neither a column nor a form field.
    """
    clauses, compiler = _filtered(query)
    order = _order(query, compiler)
    total = session.execute(select(func.count()).select_from(Record).where(and_(*clauses))).scalar_one()
    rows = session.scalars(select(Record).where(and_(*clauses)).order_by(*order).offset(offset).limit(limit))
    return [_row(r) for r in rows], int(total)


def iter_records(session: Session, query: RecordQuery, *, batch: int = 500) -> Iterator[RecordRow]:
    """Every matching record in sort order, fetched in batches (for exports)."""
    clauses, compiler = _filtered(query)
    stmt = select(Record).where(and_(*clauses)).order_by(*_order(query, compiler))
    for r in session.scalars(stmt.execution_options(yield_per=batch)):
        yield _row(r)


__all__ = [
    "FormRecordCompiler",
    "RecordQuery",
    "RecordRow",
    "claim_unique",
    "customer_exists",
    "definitions_fingerprint",
    "get_record",
    "insert_record",
    "iter_records",
    "list_records",
    "release_unique",
    "unique_key",
    "unique_taken",
    "update_record_data",
    "user_exists",
]


def definitions_fingerprint(session: Session) -> tuple[int, int]:
    """(row count, highest id) of ``definitions``: changes whenever anything is published.

    Publishing only ever inserts rows, so this one cheap aggregate tells the
    definition registry whether its cached set is stale. (Lives here because
    the registry is the records' consumer; it belongs with definitions_repo.)
    """
    from engine.storage.models import Definition

    count, highest = session.execute(select(func.count(), func.coalesce(func.max(Definition.id), 0))).one()
    return int(count), int(highest)


def customer_by_phone(session: Session, phone: str) -> int | None:
    """The customer with this (normalised) phone; the oldest when several share it."""
    return session.execute(select(func.min(Customer.id)).where(Customer.phone == phone)).scalar_one_or_none()
