"""SQL of the rules runtime: audience entry, due-journey claims, facts, step writes.

Everything runs in the caller's transaction and takes naive UTC times (see
``engine.storage.times``). Entry is one ``INSERT … SELECT … ON CONFLICT DO
NOTHING`` per run; journey batches are claimed with one ``UPDATE … RETURNING``
(``FOR UPDATE SKIP LOCKED`` inside on PostgreSQL, so several workers share the
work; on SQLite the UPDATE takes the write lock first, so two processes never
claim the same rows); writes of a batch are executemany statements.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Integer,
    String,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    extract,
    func,
    literal,
    select,
    true,
    update,
)
from sqlalchemy.orm import Session

from engine.conditions.ast import Condition
from engine.experiments import Assignment
from engine.storage.bulk import (
    dialect_name,
    dialect_insert,
    insert_ignore,
    insert_ignore_from_select,
)
from engine.storage.condition_sql import customer_rows, customer_where
from engine.storage.experiment_sql import arm_column
from engine.storage.models import (
    COUNTED_ORDER_STATUSES,
    Coupon,
    Customer,
    CustomerTag,
    Event,
    Feedback,
    Journey,
    Order,
    Record,
    RuleRun,
    User,
    UserRole,
)

_j: Table = Journey.__table__  # type: ignore[assignment]
_cust: Table = Customer.__table__  # type: ignore[assignment]
_coupons: Table = Coupon.__table__  # type: ignore[assignment]
_tags: Table = CustomerTag.__table__  # type: ignore[assignment]
_orders: Table = Order.__table__  # type: ignore[assignment]
_events: Table = Event.__table__  # type: ignore[assignment]
_feedback: Table = Feedback.__table__  # type: ignore[assignment]
_runs: Table = RuleRun.__table__  # type: ignore[assignment]
_users: Table = User.__table__  # type: ignore[assignment]
_roles: Table = UserRole.__table__  # type: ignore[assignment]
_records: Table = Record.__table__  # type: ignore[assignment]

CHUNK = 900  # ids per IN list: under SQLite's old 999-variable limit

__all__ = [
    "DateFilter",
    "JourneyRow",
    "add_tags",
    "claim_due",
    "claim_occurrence",
    "replies_since",
    "coupons_of_journeys",
    "customers_with_zone",
    "enter_customers",
    "enter_records",
    "enter_segment_movers",
    "enter_subjects",
    "entry_where",
    "feedback_since",
    "fetch_events",
    "insert_coupons",
    "insert_record",
    "journeys_of",
    "last_occurrence",
    "latest_orders",
    "mark_events_processed",
    "occurrence_claimed",
    "pool_issued",
    "recent_entries",
    "records_data",
    "record_run",
    "remove_tags",
    "set_customer_fields",
    "update_journey_rows",
    "users_by_id",
    "users_in_role",
]


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# --- entry -------------------------------------------------------------------------


@dataclass(frozen=True)
class DateFilter:
    """Customers whose date ``field`` is ``on`` (``yearly``: whose month and day
    are; a Feb 29 date counts on Feb 28 when ``on`` is Feb 28 of a common year)."""

    field: str
    on: date
    yearly: bool = False


def _date_clause(session: Session, f: DateFilter) -> ColumnElement[bool]:
    column = _cust.c[f.field]
    if not f.yearly:
        if isinstance(column.type, DateTime):
            lo = datetime.combine(f.on, datetime.min.time())
            return and_(column >= lo, column < lo + timedelta(days=1))
        return column == f.on
    month: ColumnElement[Any]
    day: ColumnElement[Any]
    if dialect_name(session) == "sqlite":
        month = func.cast(func.strftime("%m", column), Integer)
        day = func.cast(func.strftime("%d", column), Integer)
    else:
        month = extract("month", column)
        day = extract("day", column)
    match = and_(month == f.on.month, day == f.on.day)
    leap_day_in_common_year = f.on.month == 2 and f.on.day == 28 and not _is_leap(f.on.year)
    if leap_day_in_common_year:
        match = match | and_(month == 2, day == 29)
    return and_(column.is_not(None), match)


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def entry_where(session: Session, *, rule_id: str, audience: Condition | None,
                segments: Mapping[str, Condition], now: datetime, rolling_since: datetime | None = None,
                date_filter: DateFilter | None = None) -> list[ColumnElement[bool]]:
    """The WHERE clauses over ``customers`` of a rule's entry (see :func:`enter_customers`)."""
    where: list[ColumnElement[bool]] = [_cust.c.erased_at.is_(None)]  # an erased customer never enters
    if audience is not None:
        where.append(customer_where(audience, now=now, segments=segments))
    if date_filter is not None:
        where.append(_date_clause(session, date_filter))
    if rolling_since is not None:
        where.append(~exists().where(
            _j.c.rule_id == rule_id, _j.c.subject_type == "customer", _j.c.subject_id == _cust.c.id,
            _j.c.entered_at > rolling_since,
        ).correlate(_cust))
    return where


def enter_customers(
    session: Session, *, rule_id: str, rule_version: int, audience: Condition | None,
    segments: Mapping[str, Condition], now: datetime, db_now: datetime, period_key: str, start_pc: int,
    start_step: str | None, rolling_since: datetime | None = None, date_filter: DateFilter | None = None,
    limit: int | None = None, state: Mapping[str, Any] | None = None,
    extra: Sequence[ColumnElement[bool]] = (), assignment: Assignment | None = None,
) -> int:
    """Enter every customer matching ``audience`` (and ``date_filter``) into the
    rule's journeys: one ``INSERT … SELECT … ON CONFLICT DO NOTHING``.

    ``now`` (aware) fixes relative date tests; ``db_now`` (naive UTC) is the
    entry and due time. ``rolling_since``: skip customers with a journey of the
    rule that began after it (the ``once_per`` rolling window). ``extra``:
    more WHERE clauses over ``customers``. ``assignment``: the rule's
    experiment, whose arm each journey is written with. Returns rows inserted.
    """
    where = entry_where(session, rule_id=rule_id, audience=audience, segments=segments, now=now,
                        rolling_since=rolling_since, date_filter=date_filter)
    where += list(extra)
    sel = select(
        literal(rule_id, String), literal(rule_version, Integer), literal("customer", String), _cust.c.id,
        literal(period_key, String), literal(start_pc, Integer), literal(start_step, String),
        literal("active", String), literal(db_now, DateTime), literal(db_now, DateTime),
        literal(1, Integer), arm_column(assignment, "customers.id"),
    ).where(*where)
    columns = ["rule_id", "rule_version", "subject_type", "subject_id", "period_key", "step_index", "step_id",
               "status", "due_at", "entered_at", "version", "arm"]
    if limit is not None:
        sel = sel.order_by(_cust.c.id).limit(limit)
    return insert_ignore_from_select(session, _j, columns, sel)


def enter_segment_movers(
    session: Session, *, rule_id: str, to_segment: str, from_segment: str | None,
    segments: Mapping[str, Condition], now: datetime, **entry: Any,
) -> int:
    """Enter the customers who moved into ``to_segment`` (from ``from_segment``,
    when given) since the rule's last run, then remember who is in each
    segment now; returns rows inserted.

    Set-based both ways: entry is :func:`enter_customers` with "in ``to``
    now, not in ``to`` last time (and in ``from`` last time)" against
    ``segment_memory``; the memory is rewritten with one ``INSERT … SELECT``
    per segment. The first run only remembers (nobody "moved" before the rule
    looked), which a ``seen`` row marks. ``entry``: the other arguments of
    :func:`enter_customers`.
    """
    from engine.conditions.ast import SegmentRef
    from engine.storage.models import SegmentMemory

    mem: Table = SegmentMemory.__table__  # type: ignore[assignment]

    def now_in(segment: str) -> ColumnElement[bool]:
        return customer_where(SegmentRef(segment), now=now, segments=segments)

    def was_in(side: str) -> ColumnElement[bool]:
        return exists().where(mem.c.rule_id == rule_id, mem.c.side == side,
                              mem.c.customer_id == _cust.c.id).correlate(_cust)

    seen = session.execute(select(mem.c.customer_id).where(mem.c.rule_id == rule_id, mem.c.side == "seen")).first()
    entered = 0
    if seen is not None:
        moved = [now_in(to_segment), ~was_in("to")]
        if from_segment is not None:
            moved.append(was_in("from"))
        entered = enter_customers(session, rule_id=rule_id, audience=entry.pop("audience", None), segments=segments,
                                  now=now, extra=moved, **entry)
    session.execute(delete(mem).where(mem.c.rule_id == rule_id))
    for side, segment in (("to", to_segment), ("from", from_segment)):
        if segment is not None:
            insert_ignore_from_select(session, mem, ["rule_id", "side", "customer_id"], select(
                literal(rule_id, String), literal(side, String), _cust.c.id).where(now_in(segment)))
    session.execute(mem.insert().values(rule_id=rule_id, side="seen", customer_id=0))
    return entered


def enter_records(
    session: Session, *, rule_id: str, rule_version: int, form_id: str, where: Condition | None,
    form_fields: Mapping[str, Any], segments: Mapping[str, Condition], now: datetime, db_now: datetime,
    period_key: str, start_pc: int, start_step: str | None, rolling_since: datetime | None = None,
    limit: int | None = None, assignment: Assignment | None = None,
) -> int:
    """Enter every record of ``form_id`` whose data matches ``where`` (compiled
    by :func:`condition_sql.record_where`) into the rule's journeys as subject
    ``record``: one ``INSERT … SELECT … ON CONFLICT DO NOTHING``, as for
    customers (``rolling_since``: the ``once_per`` window). Returns rows inserted."""
    from engine.storage.condition_sql import record_where

    clauses: list[ColumnElement[bool]] = [_records.c.form_id == form_id]
    if where is not None:
        clauses.append(record_where(where, form_fields=form_fields, now=now, segments=segments))
    if rolling_since is not None:
        clauses.append(~exists().where(
            _j.c.rule_id == rule_id, _j.c.subject_type == "record", _j.c.subject_id == _records.c.id,
            _j.c.entered_at > rolling_since,
        ).correlate(_records))
    sel = select(
        literal(rule_id, String), literal(rule_version, Integer), literal("record", String), _records.c.id,
        literal(period_key, String), literal(start_pc, Integer), literal(start_step, String),
        literal("active", String), literal(db_now, DateTime), literal(db_now, DateTime), literal(1, Integer),
        arm_column(assignment, "records.id"),
    ).where(*clauses)
    if limit is not None:
        sel = sel.order_by(_records.c.id).limit(limit)
    columns = ["rule_id", "rule_version", "subject_type", "subject_id", "period_key", "step_index", "step_id",
               "status", "due_at", "entered_at", "version", "arm"]
    return insert_ignore_from_select(session, _j, columns, sel)


def records_data(session: Session, ids: Collection[int]) -> dict[int, dict[str, Any]]:
    """The data of records ``ids`` (journeys whose subject is a record), with ``id`` and ``form_id``."""
    out: dict[int, dict[str, Any]] = {}
    for chunk in _chunks(sorted(ids)):
        stmt = select(_records.c.id, _records.c.form_id, _records.c.data).where(_records.c.id.in_(chunk))
        for rid, form_id, data in session.execute(stmt):
            out[int(rid)] = {**(data if isinstance(data, dict) else {}), "id": int(rid), "form_id": form_id}
    return out


def enter_subjects(session: Session, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert journeys for explicit subjects (event-triggered entry), skipping
    existing (rule, subject, period) keys. Returns rows inserted."""
    return insert_ignore(session, _j, rows)


def recent_entries(session: Session, rule_id: str, subject_type: str, subject_ids: Collection[int],
                   since: datetime) -> dict[int, int]:
    """How many journeys of ``rule_id`` each subject entered after ``since``."""
    out: dict[int, int] = {}
    for chunk in _chunks(list(subject_ids)):
        stmt = (select(_j.c.subject_id, func.count()).where(
            _j.c.rule_id == rule_id, _j.c.subject_type == subject_type, _j.c.subject_id.in_(chunk),
            _j.c.entered_at > since).group_by(_j.c.subject_id))
        out.update({int(s): int(n) for s, n in session.execute(stmt)})
    return out


# --- journeys ------------------------------------------------------------------------


@dataclass
class JourneyRow:
    id: int
    rule_id: str
    rule_version: int
    subject_type: str
    subject_id: int
    period_key: str
    step_index: int
    step_id: str | None
    status: str
    due_at: datetime | None
    entered_at: datetime
    state: dict[str, Any] | None
    arm: str | None = None              # the experiment arm (engine/experiments.py)


_JCOLS = (_j.c.id, _j.c.rule_id, _j.c.rule_version, _j.c.subject_type, _j.c.subject_id, _j.c.period_key,
          _j.c.step_index, _j.c.step_id, _j.c.status, _j.c.due_at, _j.c.entered_at, _j.c.state, _j.c.arm)


def claim_due(session: Session, *, db_now: datetime, batch: int,
              rule_ids: Collection[str] | None = None) -> list[JourneyRow]:
    """Claim up to ``batch`` active journeys due by ``db_now``, oldest due first.

    One ``UPDATE journeys SET version = version + 1 WHERE id IN (SELECT …)
    RETURNING …``: on PostgreSQL the inner SELECT is ``FOR UPDATE SKIP LOCKED``,
    so concurrent workers take disjoint batches; on SQLite the statement takes
    the write lock before reading. The claim holds until the transaction ends.
    """
    pick = select(_j.c.id).where(_j.c.status == "active", _j.c.due_at <= db_now)
    if rule_ids is not None:
        pick = pick.where(_j.c.rule_id.in_(list(rule_ids)))
    pick = pick.order_by(_j.c.due_at, _j.c.id).limit(batch)
    if dialect_name(session) == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    stmt = update(_j).where(_j.c.id.in_(pick.scalar_subquery())).values(version=_j.c.version + 1).returning(*_JCOLS)
    rows = [JourneyRow(*r) for r in session.execute(stmt)]
    rows.sort(key=lambda r: r.id)
    return rows


def journeys_of(session: Session, rule_id: str) -> list[JourneyRow]:
    """All journeys of a rule (for tests and ``journeys show``), by id."""
    return [JourneyRow(*tuple(r)) for r in session.execute(select(*_JCOLS).where(_j.c.rule_id == rule_id).order_by(_j.c.id))]


# --- subjects and facts -----------------------------------------------------------


def customers_with_zone(session: Session, ids: Collection[int], *,
                        orders_since: datetime | None = None) -> dict[int, dict[str, Any]]:
    """Customers in the predicate row shape (fields, ``tags``, ``consent``,
    and ``orders`` placed since ``orders_since`` when given) plus
    ``timezone``, ``external_id`` and ``attrs``."""
    rows = customer_rows(session, ids, orders_since=orders_since)
    for chunk in _chunks(list(rows)):
        stmt = select(_cust.c.id, _cust.c.timezone, _cust.c.external_id, _cust.c.attrs,
                      _cust.c.erased_at).where(_cust.c.id.in_(chunk))
        for cid, tz, ext, attrs, erased_at in session.execute(stmt):
            if erased_at is not None:  # erased: as if gone (no event entry; a journey exits)
                del rows[cid]
                continue
            rows[cid].update(timezone=tz, external_id=ext, attrs=attrs)
    return rows


def coupons_of_journeys(session: Session, journey_ids: Collection[int]) -> dict[int, list[dict[str, Any]]]:
    """Coupons issued in each journey, oldest first."""
    out: dict[int, list[dict[str, Any]]] = {}
    cols = (_coupons.c.journey_id, _coupons.c.pool_id, _coupons.c.code, _coupons.c.value, _coupons.c.issued_at,
            _coupons.c.expires_at, _coupons.c.redeemed_at, _coupons.c.status)
    for chunk in _chunks(list(journey_ids)):
        for row in session.execute(select(*cols).where(_coupons.c.journey_id.in_(chunk)).order_by(_coupons.c.id)):
            out.setdefault(int(row.journey_id), []).append(dict(row._mapping))
    return out


def latest_orders(session: Session, customer_ids: Collection[int]) -> dict[int, datetime]:
    """Each customer's latest order time, of the orders that count (paid and
    partially refunded: :data:`COUNTED_ORDER_STATUSES`, as the aggregates and
    order windows count them; a partial refund does not undo the purchase)."""
    out: dict[int, datetime] = {}
    for chunk in _chunks(list(customer_ids)):
        stmt = (select(_orders.c.customer_id, func.max(_orders.c.placed_at))
                .where(_orders.c.customer_id.in_(chunk), _orders.c.status.in_(COUNTED_ORDER_STATUSES))
                .group_by(_orders.c.customer_id))
        out.update({int(c): t for c, t in session.execute(stmt) if t is not None})
    return out


def feedback_since(session: Session, customer_ids: Collection[int], since: datetime) -> dict[int, list[tuple[datetime, int | None]]]:
    """Feedback per customer received at or after ``since``: (received_at, score), oldest first."""
    out: dict[int, list[tuple[datetime, int | None]]] = {}
    for chunk in _chunks(list(customer_ids)):
        stmt = (select(_feedback.c.customer_id, _feedback.c.received_at, _feedback.c.score)
                .where(_feedback.c.customer_id.in_(chunk), _feedback.c.received_at >= since)
                .order_by(_feedback.c.received_at))
        for cid, at, score in session.execute(stmt):
            out.setdefault(int(cid), []).append((at, score))
    return out


def replies_since(session: Session, customer_ids: Collection[int], since: datetime) -> dict[int, list[datetime]]:
    """Times of ``message.replied`` events per customer since ``since`` (clicks
    are counted from the short links: ``clicks_repo.clicked_since``)."""
    out: dict[int, list[datetime]] = {}
    keys = [str(c) for c in customer_ids]
    for chunk in _chunks(keys):
        stmt = (select(_events.c.subject_id, _events.c.created_at)
                .where(_events.c.name == "message.replied",
                       _events.c.subject_type == "customer", _events.c.subject_id.in_(chunk),
                       _events.c.created_at >= since))
        for sid, at in session.execute(stmt):
            out.setdefault(int(sid), []).append(at)
    return out


def pool_issued(session: Session, pool_id: str) -> tuple[int, Any]:
    """(count, total value) of coupons issued from a pool, for its limits."""
    row = session.execute(select(func.count(), func.coalesce(func.sum(_coupons.c.value), 0))
                          .where(_coupons.c.pool_id == pool_id)).one()
    return int(row[0]), row[1]


def users_by_id(session: Session, ids: Collection[int]) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for chunk in _chunks(list(ids)):
        stmt = select(_users.c.id, _users.c.username, _users.c.email, _users.c.phone, _users.c.display_name).where(
            _users.c.id.in_(chunk), _users.c.active == true())
        out.update({int(r.id): dict(r._mapping) for r in session.execute(stmt)})
    return out


def users_in_role(session: Session, role: str) -> list[dict[str, Any]]:
    stmt = (select(_users.c.id, _users.c.username, _users.c.email, _users.c.phone, _users.c.display_name)
            .join(_roles, _roles.c.user_id == _users.c.id).where(_roles.c.role == role, _users.c.active == true())
            .order_by(_users.c.id))
    return [dict(r._mapping) for r in session.execute(stmt)]


# --- step writes ---------------------------------------------------------------


def insert_coupons(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert issued coupons (one executemany; a clashing code is skipped)."""
    if rows:
        session.connection().execute(dialect_insert(dialect_name(session), _coupons).on_conflict_do_nothing(), list(rows))


def set_customer_fields(session: Session, customer_id: int, values: Mapping[str, Any], db_now: datetime) -> None:
    session.connection().execute(
        update(_cust).where(_cust.c.id == customer_id).values(**dict(values), updated_at=db_now))


def insert_record(session: Session, *, form_id: str, form_version: int, data: Mapping[str, Any], by: str,
                  db_now: datetime) -> int:
    stmt = _records.insert().values(form_id=form_id, form_version=form_version, data=dict(data), created_at=db_now,
                                    updated_at=db_now, created_by_name=by).returning(_records.c.id)
    return int(session.execute(stmt).scalar_one())


# --- events ----------------------------------------------------------------------


def fetch_events(session: Session, *, names: Collection[str], batch: int) -> list[dict[str, Any]]:
    """Unprocessed events, oldest first (``FOR UPDATE SKIP LOCKED`` on PostgreSQL).
    Only ``names`` are returned; call :func:`mark_events_processed` for all seen."""
    stmt = (select(_events.c.id, _events.c.name, _events.c.subject_type, _events.c.subject_id, _events.c.payload,
                   _events.c.created_at)
            .where(_events.c.processed_at.is_(None)).order_by(_events.c.id).limit(batch))
    if dialect_name(session) == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return [dict(r._mapping) for r in session.execute(stmt)]


def mark_events_processed(session: Session, ids: Collection[int], db_now: datetime) -> None:
    for chunk in _chunks(sorted(ids)):
        session.connection().execute(update(_events).where(_events.c.id.in_(chunk)).values(processed_at=db_now))


# --- runs ------------------------------------------------------------------------


def last_occurrence(session: Session, rule_id: str) -> datetime | None:
    """The latest schedule occurrence a rule was run for (naive UTC), if any."""
    return session.execute(select(func.max(_runs.c.scheduled_for))
                           .where(_runs.c.rule_id == rule_id, _runs.c.kind == "schedule")).scalar()


def occurrence_claimed(session: Session, rule_id: str, scheduled_for: datetime) -> bool:
    """Whether a schedule occurrence already has its run row (it ran, or is running elsewhere)."""
    return session.execute(select(_runs.c.id).where(_runs.c.rule_id == rule_id, _runs.c.kind == "schedule",
                                                    _runs.c.scheduled_for == scheduled_for)).first() is not None


def claim_occurrence(session: Session, *, rule_id: str, rule_version: int, scheduled_for: datetime,
                     db_now: datetime) -> int | None:
    """Insert the run row of a schedule occurrence; its id, or None when
    another scheduler (or an earlier attempt that committed) already has it."""
    stmt = (dialect_insert(dialect_name(session), _runs)
            .values(rule_id=rule_id, rule_version=rule_version, kind="schedule", scheduled_for=scheduled_for,
                    started_at=db_now)
            .on_conflict_do_nothing().returning(_runs.c.id))
    found = session.execute(stmt).scalar_one_or_none()
    return None if found is None else int(found)


def record_run(session: Session, *, run_id: int | None = None, rule_id: str, rule_version: int | None, kind: str,
               db_now: datetime, counters: Mapping[str, int], detail: Mapping[str, Any] | None = None) -> int:
    """Write a run's counters: update row ``run_id``, or insert a new row."""
    values = {k: int(v) for k, v in counters.items()}
    if run_id is not None:
        session.execute(update(_runs).where(_runs.c.id == run_id).values(**values, detail=dict(detail or {}) or None))
        return run_id
    stmt = _runs.insert().values(rule_id=rule_id, rule_version=rule_version, kind=kind, started_at=db_now,
                                 detail=dict(detail or {}) or None, **values).returning(_runs.c.id)
    return int(session.execute(stmt).scalar_one())



# --- set-based batch writes (a claimed batch of journeys) ------------------------
#
# A batch's per-row values travel as ONE JSON document (an array of arrays)
# bound to ``:doc`` and unpacked by the database (``json_each`` on SQLite,
# ``jsonb_array_elements`` on PostgreSQL), so every write of a batch is one
# ``INSERT … SELECT`` / ``UPDATE … FROM`` with no per-row driver round trip and
# no per-row parameter processing.

#: How a JSON row column is read: (SQLite expression, PostgreSQL expression) of element ``{i}``.
_JSON_KINDS = {
    "int": ("json_extract(value, '$[{i}]')", "(e->>{i})::bigint"),
    "text": ("json_extract(value, '$[{i}]')", "(e->>{i})"),
    "time": ("json_extract(value, '$[{i}]')", "(e->>{i})::timestamp"),
    "json": ("json_extract(value, '$[{i}]')", "NULLIF(e->{i}, 'null'::jsonb)"),
}


def json_rows(dialect: str, columns: Sequence[tuple[str, str]]) -> str:
    """A FROM item ``v`` with ``columns`` ((name, kind) pairs, kinds of
    ``_JSON_KINDS``) over the JSON array of arrays bound as ``:doc``."""
    pick = 0 if dialect == "sqlite" else 1
    parts = ", ".join(f"{_JSON_KINDS[kind][pick].format(i=i)} AS {name}" for i, (name, kind) in enumerate(columns))
    if dialect == "sqlite":
        return f"(SELECT {parts} FROM json_each(:doc)) AS v"
    return f"(SELECT {parts} FROM jsonb_array_elements(CAST(:doc AS jsonb)) AS e) AS v"


def db_time_text(value: datetime | None) -> str | None:
    """A naive UTC time as text in a JSON row, in the form SQLAlchemy stores
    SQLite datetimes (so text comparisons keep working); PostgreSQL parses it."""
    return None if value is None else value.strftime("%Y-%m-%d %H:%M:%S.%f")


def _dumps(rows: Sequence[Any]) -> str:
    import json

    return json.dumps(rows, ensure_ascii=False, separators=(",", ":"), default=str)


def _ids_clause(session: Session, column: Any, ids: Sequence[int]) -> tuple[ColumnElement[bool], dict[str, Any]]:
    """``column IN ids`` with the ids as one bound value."""
    from sqlalchemy import Select, any_, literal_column
    from sqlalchemy.dialects.postgresql import ARRAY
    from sqlalchemy.types import BigInteger

    if dialect_name(session) == "postgresql":
        return column == any_(bindparam("ids", type_=ARRAY(BigInteger))), {"ids": list(ids)}
    sub: Select[Any] = select(literal_column("value")).select_from(func.json_each(bindparam("ids", type_=String)))
    return column.in_(sub.scalar_subquery()), {"ids": _dumps(list(ids))}


def customer_columns() -> list[str]:
    from engine.conditions.customer_fields import CUSTOMER_FIELDS
    from engine.conditions.kinds import FieldKind

    """Customer columns a template may name, the predicate row's scalar fields first."""
    names = ["id"] + [f for f, k in CUSTOMER_FIELDS.items() if k is not FieldKind.LIST and "." not in f]
    return names + ["timezone", "external_id", "attrs"]


def add_tags(session: Session, pairs: Collection[tuple[int, str]]) -> None:
    """Add (customer_id, tag) pairs in one ``INSERT … SELECT``, skipping existing ones."""
    if pairs:
        from sqlalchemy import text

        dialect = dialect_name(session)
        src = json_rows(dialect, [("cid", "int"), ("tag", "text")])
        where = " WHERE true" if dialect == "sqlite" else ""
        session.connection().execute(
            text(f"INSERT INTO customer_tags (customer_id, tag) SELECT v.cid, v.tag FROM {src}{where} "
                 f"ON CONFLICT DO NOTHING"), {"doc": _dumps(sorted(pairs))})


def remove_tags(session: Session, pairs: Collection[tuple[int, str]]) -> None:
    """Remove (customer_id, tag) pairs in one ``DELETE``."""
    if pairs:
        from sqlalchemy import text

        src = json_rows(dialect_name(session), [("cid", "int"), ("tag", "text")])
        session.connection().execute(
            text(f"DELETE FROM customer_tags WHERE (customer_id, tag) IN (SELECT v.cid, v.tag FROM {src})"),
            {"doc": _dumps(sorted(pairs))})


def update_journey_rows(session: Session, rows: Sequence[Sequence[Any]]) -> None:
    """Write back journeys: rows [id, step_index, step_id, status, due_at
    (text, :func:`db_time_text`), state (a dict or None)], one ``UPDATE … FROM``."""
    if rows:
        from sqlalchemy import text

        src = json_rows(dialect_name(session), [("jid", "int"), ("pc", "int"), ("sid", "text"), ("st", "text"),
                                                 ("due", "time"), ("state", "json")])
        session.connection().execute(
            text(f"UPDATE journeys SET step_index = v.pc, step_id = v.sid, status = v.st, due_at = v.due, "
                 f"state = v.state FROM {src} WHERE journeys.id = v.jid"), {"doc": _dumps(rows)})
