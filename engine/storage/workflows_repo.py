"""The SQL side of approval flows: instance rows, task rows (the inbox), the
tick's due query, and the directory lookups the state machine needs.

Transitions are compare-and-set: ``update_instance`` and ``close_task`` only
change a row still at the version the caller read, so of two concurrent
transitions exactly one commits its change and the other sees ``False``.
Times cross the boundary through ``engine.storage.times`` (aware in, aware out).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
import datetime as _dt
from datetime import datetime
from typing import Any

import json as _json
import sqlite3 as _sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import JSON, DateTime, Table, bindparam, case, func, insert, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, aliased

from engine.storage.models import (
    Customer,
    Record,
    Task,
    User,
    UserRole,
    WorkflowInstance,
)
from engine.storage.times import from_db_time, to_db_time

#: Errors after which the whole transaction may simply be tried again
#: (SQLite: another process held the write lock or the snapshot went stale).
RETRYABLE: tuple[type[BaseException], ...] = (OperationalError, _sqlite3.OperationalError)
try:  # the fast path raises the driver's own errors, not SQLAlchemy's wrappers
    import psycopg as _psycopg

    RETRYABLE += (_psycopg.OperationalError, _psycopg.errors.SerializationFailure,
                  _psycopg.errors.DeadlockDetected)
except ImportError:  # pragma: no cover - PostgreSQL support not installed
    pass

_instances = WorkflowInstance.__table__
_tasks = Task.__table__


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None else from_db_time(value)


def _naive(value: datetime | None) -> datetime | None:
    return None if value is None else to_db_time(value)


@dataclass(frozen=True)
class InstanceRow:
    id: int
    workflow_id: str
    workflow_version: int
    record_id: int
    state: dict[str, Any]
    status: str
    version: int
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class TaskRow:
    id: int
    instance_id: int
    seq: int
    step_id: str
    assignee: str | None
    kind: str
    status: str
    due_at: datetime | None
    acted_at: datetime | None
    action: str | None
    comment: str | None
    version: int
    created_at: datetime
    wake_at: datetime | None
    record_id: int | None = None
    form_id: str | None = None
    workflow_id: str | None = None
    workflow_version: int | None = None


def _instance(r: Any) -> InstanceRow:
    return InstanceRow(r.id, r.workflow_id, r.workflow_version, r.record_id, dict(r.state or {}), r.status,
                       r.version, from_db_time(r.started_at), _aware(r.finished_at))


_TASK_COLUMNS = (_tasks.c.id, _tasks.c.instance_id, _tasks.c.seq, _tasks.c.step_id, _tasks.c.assignee_name,
                 _tasks.c.kind, _tasks.c.status, _tasks.c.due_at, _tasks.c.acted_at, _tasks.c.action,
                 _tasks.c.comment, _tasks.c.version, _tasks.c.created_at, _tasks.c.wake_at)


def _task(r: Any, joined: bool = False) -> TaskRow:
    extra = (r.record_id, r.form_id, r.workflow_id, r.workflow_version) if joined else (None, None, None, None)
    return TaskRow(r.id, r.instance_id, r.seq, r.step_id, r.assignee_name, r.kind, r.status, _aware(r.due_at),
                   _aware(r.acted_at), r.action, r.comment, r.version, from_db_time(r.created_at),
                   _aware(r.wake_at), *extra)


# --- instances ------------------------------------------------------------------

_INSERT_INSTANCE = insert(_instances).returning(_instances.c.id)


def insert_instance(
    session: Session, *, workflow_id: str, workflow_version: int, record_id: int, state: dict[str, Any],
    status: str, now: datetime, finished: bool,
) -> int:
    """Insert an instance at version 1; returns its id."""
    params = {"workflow_id": workflow_id, "workflow_version": workflow_version, "record_id": record_id,
              "state": state, "status": status, "version": 1, "started_at": to_db_time(now),
              "finished_at": to_db_time(now) if finished else None}
    return int(session.connection().execute(_INSERT_INSTANCE, params).scalar_one())


# Statements are built once (with bind parameters): building one costs more
# than running it on SQLite, and these run on every transition.
_GET_INSTANCE = select(_instances).where(_instances.c.id == bindparam("id"))
_INSTANCE_FOR_RECORD = (select(_instances).where(_instances.c.record_id == bindparam("record_id"))
                        .order_by(_instances.c.id.desc()).limit(1))
_UPDATE_INSTANCE = (
    update(_instances)
    .where(_instances.c.id == bindparam("iid"), _instances.c.version == bindparam("expected"))
    .values(state=bindparam("state"), status=bindparam("status"), version=bindparam("new_version"),
            finished_at=bindparam("finished_at"))
)


def get_instance(session: Session, instance_id: int) -> InstanceRow | None:
    r = session.connection().execute(_GET_INSTANCE, {"id": instance_id}).first()
    return None if r is None else _instance(r)


def instance_for_record(session: Session, record_id: int) -> InstanceRow | None:
    """The record's latest instance, or None."""
    r = session.connection().execute(_INSTANCE_FOR_RECORD, {"record_id": record_id}).first()
    return None if r is None else _instance(r)


def update_instance(
    session: Session, instance_id: int, *, expected_version: int, state: dict[str, Any], status: str,
    finished_at: datetime | None,
) -> bool:
    """Store a new state iff the row is still at ``expected_version`` (then bump it)."""
    result = session.connection().execute(_UPDATE_INSTANCE, {
        "iid": instance_id, "expected": expected_version, "state": state, "status": status,
        "new_version": expected_version + 1, "finished_at": _naive(finished_at)})
    return bool(result.rowcount == 1)


# --- tasks ---------------------------------------------------------------------------

_INSERT_TASK = (
    insert(_tasks)
    .values(
        instance_id=bindparam("instance_id"), seq=bindparam("seq"), step_id=bindparam("step_id"),
        assignee_id=select(User.id).where(User.username == bindparam("assignee")).scalar_subquery(),
        assignee_name=bindparam("assignee"), role=None, kind=bindparam("kind"), status=bindparam("status"),
        due_at=bindparam("due_at"), wake_at=bindparam("wake_at"), created_at=bindparam("created_at"), version=1,
    )
    .returning(_tasks.c.id)
)
_UPDATE_TASK = (
    update(_tasks)
    .where(_tasks.c.instance_id == bindparam("iid"), _tasks.c.seq == bindparam("tseq"))
    .values(status=bindparam("status"), action=bindparam("action"), comment=bindparam("comment"),
            acted_at=bindparam("acted_at"), wake_at=bindparam("wake_at"), version=_tasks.c.version + 1)
)
_UPDATE_TASK_CAS = _UPDATE_TASK.where(_tasks.c.version == bindparam("expected"), _tasks.c.status == "open")
_SET_WAKE = (update(_tasks).where(_tasks.c.instance_id == bindparam("iid"), _tasks.c.seq == bindparam("tseq"))
             .values(wake_at=bindparam("wake_at")))


def insert_tasks(session: Session, instance_id: int, rows: Sequence[Mapping[str, Any]]) -> dict[int, int]:
    """Insert task rows (``seq``, ``step_id``, ``assignee``, ``kind``, ``status``,
    ``due_at``, ``wake_at``, ``created_at``); returns {seq: task id}. ``assignee_id``
    is the user's id when the name belongs to a user."""
    out: dict[int, int] = {}
    conn = session.connection()
    for r in rows:
        params = {"instance_id": instance_id, "seq": r["seq"], "step_id": r["step_id"], "assignee": r.get("assignee"),
                  "kind": r.get("kind", "approval"), "status": r["status"], "due_at": _naive(r.get("due_at")),
                  "wake_at": _naive(r.get("wake_at")), "created_at": to_db_time(r["created_at"])}
        out[r["seq"]] = int(conn.execute(_INSERT_TASK, params).scalar_one())
    return out


def update_task(
    session: Session, instance_id: int, seq: int, *, status: str, action: str | None, comment: str | None,
    acted_at: datetime | None, wake_at: datetime | None, expected_version: int | None = None,
) -> bool:
    """Change a task row (found by instance and seq) and bump its version;
    with ``expected_version``, only if it is still at that version and open."""
    params = {"iid": instance_id, "tseq": seq, "status": status, "action": action, "comment": comment,
              "acted_at": _naive(acted_at), "wake_at": _naive(wake_at)}
    if expected_version is None:
        result = session.connection().execute(_UPDATE_TASK, params)
    else:
        result = session.connection().execute(_UPDATE_TASK_CAS, {**params, "expected": expected_version})
    return bool(result.rowcount == 1)


def set_task_wake(session: Session, instance_id: int, seq: int, wake_at: datetime | None) -> None:
    session.connection().execute(_SET_WAKE, {"iid": instance_id, "tseq": seq, "wake_at": _naive(wake_at)})


def _joined_tasks() -> Any:
    return (
        select(*_TASK_COLUMNS, _instances.c.record_id, Record.__table__.c.form_id, _instances.c.workflow_id,
               _instances.c.workflow_version)
        .join(_instances, _instances.c.id == _tasks.c.instance_id)
        .join(Record.__table__, Record.__table__.c.id == _instances.c.record_id)
    )


_GET_TASK = _joined_tasks().where(_tasks.c.id == bindparam("task_id"))
_TASKS_OF_INSTANCE = select(*_TASK_COLUMNS).where(_tasks.c.instance_id == bindparam("iid")).order_by(_tasks.c.seq)


def get_task(session: Session, task_id: int) -> TaskRow | None:
    """The task with its instance's record, form and workflow, or None."""
    r = session.connection().execute(_GET_TASK, {"task_id": task_id}).first()
    return None if r is None else _task(r, joined=True)


def tasks_of_instance(session: Session, instance_id: int) -> list[TaskRow]:
    rows = session.connection().execute(_TASKS_OF_INSTANCE, {"iid": instance_id}).all()
    return [_task(r) for r in rows]


@dataclass(frozen=True)
class RecordSnapshot:
    id: int
    form_id: str
    form_version: int
    data: dict[str, Any]
    version: int
    created_by: str | None
    status: str


_r = Record.__table__
_GET_RECORD = select(_r.c.id, _r.c.form_id, _r.c.form_version, _r.c.data, _r.c.version, _r.c.created_by_name,
                     _r.c.status).where(_r.c.id == bindparam("rid"))
_UPDATE_RECORD = (
    update(_r).where(_r.c.id == bindparam("rid"), _r.c.version == bindparam("expected"))
    .values(data=bindparam("data"), version=bindparam("new_version"), updated_at=bindparam("at"))
)


def get_record(session: Session, record_id: int) -> RecordSnapshot | None:
    """The record's data and version, read in the caller's transaction."""
    r = session.connection().execute(_GET_RECORD, {"rid": record_id}).first()
    return None if r is None else RecordSnapshot(r.id, r.form_id, r.form_version, dict(r.data or {}), r.version,
                                                 r.created_by_name, r.status)


def update_record_data(session: Session, record_id: int, *, expected_version: int, data: dict[str, Any],
                       now: datetime) -> bool:
    """Set a record's data (a workflow's set_field) iff it is still at ``expected_version``."""
    result = session.connection().execute(_UPDATE_RECORD, {
        "rid": record_id, "expected": expected_version, "data": data, "new_version": expected_version + 1,
        "at": to_db_time(now)})
    return bool(result.rowcount == 1)


_TASKS_FOR: dict[tuple[bool, bool, bool], Any] = {}


def _tasks_for_query(statuses: bool, form: bool, overdue_first: bool) -> Any:
    key = (statuses, form, overdue_first)
    query = _TASKS_FOR.get(key)
    if query is None:
        query = _joined_tasks().where(_tasks.c.assignee_name == bindparam("username"))
        if statuses:
            query = query.where(_tasks.c.status.in_(bindparam("statuses", expanding=True)))
        if form:
            query = query.where(Record.__table__.c.form_id == bindparam("form_id"))
        if overdue_first:
            query = query.order_by(case((_tasks.c.due_at.is_(None), 1), else_=0), _tasks.c.due_at, _tasks.c.id)
        else:
            query = query.order_by(_tasks.c.id.desc())
        query = _TASKS_FOR[key] = query.limit(bindparam("limit"))
    return query


def tasks_for(
    session: Session, username: str, *, statuses: Sequence[str] | None, form_id: str | None, overdue_first: bool,
    limit: int = 500,
) -> list[TaskRow]:
    """A user's tasks (by assignee name), joined with record, form and workflow;
    ``overdue_first``: earliest due first (undated last), then oldest first."""
    query = _tasks_for_query(statuses is not None, form_id is not None, overdue_first)
    params = {"username": username, "statuses": list(statuses or ()), "form_id": form_id, "limit": limit}
    if statuses is None:
        del params["statuses"]
    if form_id is None:
        del params["form_id"]
    return [_task(r, joined=True) for r in session.connection().execute(query, params).all()]


def task_counts(session: Session, username: str, now: datetime | None) -> dict[str, int]:
    """{status: n} of the user's tasks, plus ``overdue`` (open and past due at ``now``)."""
    rows = session.connection().execute(
        select(_tasks.c.status, func.count()).where(_tasks.c.assignee_name == username).group_by(_tasks.c.status)
    ).all()
    counts = {str(status): int(n) for status, n in rows}
    overdue = 0
    if now is not None:
        overdue = int(session.connection().execute(
            select(func.count()).where(_tasks.c.assignee_name == username, _tasks.c.status == "open",
                                       _tasks.c.due_at.is_not(None), _tasks.c.due_at <= to_db_time(now))
        ).scalar_one())
    counts["overdue"] = overdue
    return counts


def due_instances(session: Session, now: datetime, *, limit: int, after_id: int = 0) -> list[int]:
    """Ids of instances with an open task whose ``wake_at`` has come (one
    indexed range query over (status, wake_at)), in id order after ``after_id``."""
    rows = session.connection().execute(
        select(_tasks.c.instance_id).where(
            _tasks.c.status == "open", _tasks.c.wake_at.is_not(None), _tasks.c.wake_at <= to_db_time(now),
            _tasks.c.instance_id > after_id,
        ).group_by(_tasks.c.instance_id).order_by(_tasks.c.instance_id).limit(limit)
    ).all()
    return [int(r[0]) for r in rows]


# --- records -----------------------------------------------------------------------

_SET_RECORD_STATUS = update(_r).where(_r.c.id == bindparam("rid")).values(status=bindparam("status"))


def set_record_status(session: Session, record_id: int, status: str) -> None:
    """The record's ``status`` column follows its workflow (in_review, approved, …)."""
    session.connection().execute(_SET_RECORD_STATUS, {"rid": record_id, "status": status})


# --- the directory -----------------------------------------------------------------

_USERS_IN_ROLE = (select(User.username).join(UserRole, UserRole.user_id == User.id)
                  .where(UserRole.role == bindparam("role"), User.active.is_(True)).order_by(User.username))
_CONTACTS = (select(User.username, User.display_name, User.email, User.phone)
             .where(User.username.in_(bindparam("names", expanding=True))))


def users_in_role(session: Session, role: str) -> list[str]:
    """Active users holding ``role``, by user name."""
    return list(session.connection().execute(_USERS_IN_ROLE, {"role": role}).scalars())


def manager_of(session: Session, username: str) -> str | None:
    manager = aliased(User)
    return session.connection().execute(
        select(manager.username).join(User, User.manager_id == manager.id)
        .where(User.username == username, manager.active.is_(True))
    ).scalar_one_or_none()


def active_user(session: Session, username: str) -> bool:
    return session.connection().execute(
        select(User.id).where(User.username == username, User.active.is_(True))
    ).first() is not None


def account_manager_of(session: Session, customer_id: int) -> str | None:
    return session.connection().execute(
        select(User.username).join(Customer, Customer.account_manager_id == User.id)
        .where(Customer.id == customer_id, User.active.is_(True))
    ).scalar_one_or_none()


@dataclass(frozen=True)
class Contact:
    username: str
    display_name: str | None
    email: str | None
    phone: str | None


def contacts(session: Session, usernames: Iterable[str]) -> dict[str, Contact]:
    """Display name, e-mail and phone of each named user that exists."""
    names = sorted(set(usernames))
    if not names:
        return {}
    rows = session.connection().execute(_CONTACTS, {"names": names}).all()
    return {r.username: Contact(r.username, r.display_name, r.email, r.phone) for r in rows}


def customer_contact(session: Session, customer_id: int) -> tuple[str | None, str | None, str | None]:
    """(name, e-mail, phone) of a customer, or Nones."""
    r = session.connection().execute(
        select(Customer.name, Customer.email, Customer.phone).where(Customer.id == customer_id)
    ).first()
    return (None, None, None) if r is None else (r.name, r.email, r.phone)


__all__ = [
    "RETRYABLE",
    "Contact",
    "InstanceRow",
    "TaskRow",
    "account_manager_of",
    "active_user",
    "contacts",
    "customer_contact",
    "due_instances",
    "get_instance",
    "get_task",
    "insert_instance",
    "insert_tasks",
    "instance_for_record",
    "manager_of",
    "set_record_status",
    "set_task_wake",
    "task_counts",
    "tasks_for",
    "tasks_of_instance",
    "update_instance",
    "update_task",
    "users_in_role",
]


# --- the fast path: statements compiled once, run on the driver's cursor ---------------
#
# A transition is ~10 short statements. On SQLite, SQLAlchemy's per-execute
# bookkeeping (cache-key lookup, parameter construction, result metadata,
# events) costs several times the statement itself, so the approval and
# submission paths compile each statement once per dialect and run it on the
# session's own DBAPI connection: same connection, same transaction, the same
# bind and result processors SQLAlchemy would apply (JSON, DateTime, Boolean),
# just without the per-call machinery. Only statements without expanding (IN)
# parameters go this way.


#: SQLAlchemy's default storage format of DATETIME on SQLite (the only one :func:`_sqlite_datetime` stands in for).
_SQLITE_DATETIME = ("%(year)04d-%(month)02d-%(day)02d %(hour)02d:%(minute)02d:%(second)02d."
                    "%(microsecond)06d")
_COMPACT = _json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # one encoder, not one per value


def _compact_json(value: Any) -> str:
    return _COMPACT.encode(value)


def _sqlite_datetime(slow: Any) -> Any:
    """SQLite's DATETIME bind processor, quicker for the usual value: a naive
    ``datetime`` is written as ``isoformat(" ", "microseconds")``, which is the
    very text SQLAlchemy's storage format writes (``%Y-%m-%d %H:%M:%S.%f``)
    without its dict-based formatting; anything else goes to SQLAlchemy's own."""
    def process(value: Any) -> Any:
        if type(value) is _dt.datetime and value.tzinfo is None and value.year >= 1000:
            return value.isoformat(" ", "microseconds")
        return slow(value)
    return process


class Prepared:
    """A Core statement compiled once per dialect and executed directly."""

    __slots__ = ("stmt", "_plans", "_keys")

    def __init__(self, stmt: Any, column_keys: Sequence[str] | None = None):
        """``column_keys``: for an INSERT without ``.values()``, the columns it sets."""
        self.stmt = stmt
        self._keys = None if column_keys is None else list(column_keys)
        self._plans: dict[str, tuple[Any, ...]] = {}

    def plan(self, dialect: Any) -> tuple[Any, ...]:
        """(sql, defaults, bind processors, positional order or None, result processors)."""
        plan = self._plans.get(dialect.name)
        if plan is None:
            compiled = self.stmt.compile(dialect=dialect, column_keys=self._keys)
            defaults = compiled.construct_params(_check=False)
            # Python-side column defaults (``default=0``) are normally filled in
            # per execution; here scalar ones are filled in once.
            prefetch = [(c, c.default) for c in compiled.insert_prefetch]
            prefetch += [(c, c.onupdate) for c in compiled.update_prefetch]
            for col, default in prefetch:
                if default is None or not default.is_scalar:
                    raise NotImplementedError(f"column {col} has a non-scalar Python default")
                for name in defaults:
                    if name == col.key or name.startswith(col.key + "_m"):
                        defaults[name] = default.arg
            procs = dict(compiled._bind_processors)  # noqa: SLF001 - the processors SQLAlchemy itself applies
            if dialect.name == "sqlite":
                # JSON as compact UTF-8 text: the same value in about half the
                # bytes (no ``\\uXXXX`` escapes for Chinese, no blanks), which
                # is fewer pages for every commit and checkpoint to write.
                for name in procs:
                    bind = compiled.binds.get(name)
                    if bind is not None and isinstance(bind.type, JSON):
                        procs[name] = _compact_json
                    elif (bind is not None and isinstance(bind.type, DateTime)
                          and getattr(bind.type.dialect_impl(dialect), "_storage_format", None) == _SQLITE_DATETIME):
                        procs[name] = _sqlite_datetime(procs[name])
            order = tuple(compiled.positiontup) if dialect.positional else None
            results = tuple(e.type._cached_result_processor(dialect, None)  # noqa: SLF001
                            for e in compiled._result_columns)  # noqa: SLF001
            plan = self._plans[dialect.name] = (compiled.string, defaults, procs, order, results)
        return plan


class Db:
    """The driver connection behind a session (or a pooled connection, for
    single-statement reads), with the dialect to compile for."""

    __slots__ = ("raw", "dialect")

    def __init__(self, raw: Any, dialect: Any):
        self.raw = raw
        self.dialect = dialect

    @staticmethod
    def of(session: Session | Lean) -> Db:
        """The session's connection, in its transaction (BEGIN is issued if
        needed). Asked of the ORM session each time, never remembered: after a
        commit the session may hand out another pooled connection."""
        if isinstance(session, Lean):
            return session.info["pf.db"]  # type: ignore[no-any-return]
        conn = session.connection()
        return Db(conn.connection.driver_connection, conn.dialect)

    def execute(self, prepared: Prepared, params: Mapping[str, Any]) -> Any:
        """Run ``prepared`` with ``params``; the driver cursor."""
        sql, defaults, procs, order, _ = prepared.plan(self.dialect)
        values = {**defaults, **params}
        for name, proc in procs.items():
            values[name] = proc(values.get(name))
        if order is not None:
            return self.raw.execute(sql, tuple([values[n] for n in order]))
        return self.raw.execute(sql, values)

    def rows(self, prepared: Prepared, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """All result rows, with the result processors applied (JSON parsed, times as datetimes)."""
        cursor = self.execute(prepared, params)
        found = cursor.fetchall()
        results = prepared.plan(self.dialect)[4]
        if not any(results):
            return [tuple(r) for r in found]
        return [tuple(v if p is None or v is None else p(v) for p, v in zip(results, r, strict=False))
                for r in found]

    def rowcount(self, prepared: Prepared, params: Mapping[str, Any]) -> int:
        return int(self.execute(prepared, params).rowcount)


_MULTI: dict[tuple[Any, ...], Prepared] = {}


def _multi_insert(table: Table, columns: tuple[str, ...], n: int, *, returning: tuple[str, ...] = (),
                  skip_conflicts: bool = False, dialect: str = "sqlite",
                  subqueries: Mapping[str, Any] | None = None) -> Prepared:
    """One INSERT of ``n`` rows (bind names ``<column>_<i>``), built once per shape."""
    key = (table.name, columns, n, returning, skip_conflicts, dialect if skip_conflicts else "")
    prepared = _MULTI.get(key)
    if prepared is None:
        if skip_conflicts:
            from sqlalchemy.dialects.postgresql import insert as pg_insert
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            base: Any = (pg_insert if dialect == "postgresql" else sqlite_insert)(table)
        else:
            base = insert(table)
        rows = []
        for i in range(n):
            row: dict[str, Any] = {c: bindparam(f"{c}_{i}", type_=table.c[c].type) for c in columns}
            for c, make in (subqueries or {}).items():
                row[c] = make(i)
            rows.append(row)
        stmt = base.values(rows)
        if skip_conflicts:
            stmt = stmt.on_conflict_do_nothing()
        if returning:
            stmt = stmt.returning(*(table.c[c] for c in returning))
        prepared = _MULTI[key] = Prepared(stmt)
    return prepared


def _numbered(rows: Sequence[Mapping[str, Any]], columns: tuple[str, ...]) -> dict[str, Any]:
    return {f"{c}_{i}": r.get(c) for i, r in enumerate(rows) for c in columns}


_CHUNK = 50  # rows per multi-row INSERT: keeps the bind count far below SQLite's limit


def insert_many(db: Db, table: Table, columns: tuple[str, ...], rows: Sequence[Mapping[str, Any]], *,
                returning: tuple[str, ...] = (), skip_conflicts: bool = False,
                subqueries: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
    """Insert ``rows`` in multi-row statements; the RETURNING rows (unordered)."""
    out: list[tuple[Any, ...]] = []
    for start in range(0, len(rows), _CHUNK):
        part = rows[start:start + _CHUNK]
        prepared = _multi_insert(table, columns, len(part), returning=returning, skip_conflicts=skip_conflicts,
                                 dialect=db.dialect.name, subqueries=subqueries)
        params = _numbered(part, columns)
        if subqueries:
            for i, r in enumerate(part):
                for c in subqueries:
                    params[f"{c}_sub_{i}"] = r.get(c)
        if returning:
            out.extend(db.rows(prepared, params))
        else:
            db.execute(prepared, params)
    return out


# --- events, audit entries and outbox rows of one transaction, written at once -------------

from engine.storage.models import AuditEntry, Event, OutboxMessage  # noqa: E402

_events = Event.__table__
_audit = AuditEntry.__table__
_outbox = OutboxMessage.__table__
_EVENT_COLUMNS = ("name", "subject_type", "subject_id", "payload", "created_at")
_AUDIT_COLUMNS = ("at", "actor", "action", "entity_type", "entity_id", "diff")
OUTBOX_COLUMNS = ("channel", "connector", "recipient", "subject", "body", "payload", "idempotency_key",
                  "delivery_class", "status", "attempts", "next_attempt_at", "rule_id", "journey_id",
                  "created_at", "customer_id", "template_id")


class Pending:
    """Event, audit and outbox rows queued in one transaction, inserted by
    :func:`flush_pending` as one multi-row INSERT per table (in queue order,
    so ids still follow the order things happened)."""

    __slots__ = ("events", "audits", "outbox")

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.audits: list[dict[str, Any]] = []
        self.outbox: list[dict[str, Any]] = []


def pending(session: Session) -> Pending:
    """The session's queue (created on first use)."""
    queue = session.info.get("pf.pending")
    if queue is None:
        queue = session.info["pf.pending"] = Pending()
    return queue


def queue_event(session: Session, name: str, subject_type: str | None, subject_id: str | int | None,
                payload: dict[str, Any] | None, now: datetime) -> None:
    """:func:`engine.storage.events_repo.append_event`, deferred to :func:`flush_pending`."""
    pending(session).events.append({
        "name": name, "subject_type": subject_type, "subject_id": None if subject_id is None else str(subject_id),
        "payload": payload, "created_at": to_db_time(now)})


def queue_audit(session: Session, *, at: datetime, actor: str | None, action: str, entity_type: str,
                entity_id: str | int | None, diff: dict[str, Any] | None) -> None:
    """:func:`engine.storage.audit.append_audit`, deferred to :func:`flush_pending`."""
    pending(session).audits.append({
        "at": to_db_time(at), "actor": actor, "action": action, "entity_type": entity_type,
        "entity_id": None if entity_id is None else str(entity_id), "diff": diff})


def queue_outbox(session: Session, row: Mapping[str, Any]) -> None:
    """An outbox row (as :func:`engine.outbox.row_for` builds it), deferred to :func:`flush_pending`."""
    pending(session).outbox.append(dict(row))


def discard_pending(session: Any) -> None:
    """Forget what was queued (its transaction part was rolled back to a savepoint)."""
    queue = session.info.get("pf.pending")
    if queue is not None:
        queue.events, queue.audits, queue.outbox = [], [], []


def flush_pending(session: Session) -> int:
    """Insert what was queued in this session; returns the outbox rows actually
    written (rows whose idempotency key exists are skipped). Must run before
    the transaction commits: whoever queues flushes."""
    queue = session.info.get("pf.pending")
    if queue is None or not (queue.events or queue.audits or queue.outbox):
        return 0
    db = Db.of(session)
    written = 0
    if queue.outbox:
        written = len(insert_many(db, _outbox, OUTBOX_COLUMNS, queue.outbox, returning=("id",),
                                  skip_conflicts=True))
        queue.outbox = []
    if queue.events:
        insert_many(db, _events, _EVENT_COLUMNS, queue.events)
        queue.events = []
    if queue.audits:
        insert_many(db, _audit, _AUDIT_COLUMNS, queue.audits)
        queue.audits = []
    return written


# --- the transition's statements on the fast path ---------------------------------------

_P_INSERT_INSTANCE = Prepared(_INSERT_INSTANCE, ("workflow_id", "workflow_version", "record_id", "state",
                                                 "status", "version", "started_at", "finished_at"))
_P_UPDATE_INSTANCE = Prepared(_UPDATE_INSTANCE)
_P_UPDATE_TASK = Prepared(_UPDATE_TASK)
_P_UPDATE_TASK_CAS = Prepared(_UPDATE_TASK_CAS)
_P_GET_INSTANCE = Prepared(_GET_INSTANCE)
_P_INSTANCE_FOR_RECORD = Prepared(_INSTANCE_FOR_RECORD)
_P_GET_RECORD = Prepared(_GET_RECORD)
_P_TASKS_OF_INSTANCE = Prepared(_TASKS_OF_INSTANCE)
_P_SET_RECORD_STATUS = Prepared(_SET_RECORD_STATUS)
_P_UPDATE_RECORD_AND_STATUS = Prepared(
    update(_r).where(_r.c.id == bindparam("rid"), _r.c.version == bindparam("expected"))
    .values(data=bindparam("data"), version=bindparam("new_version"), updated_at=bindparam("at"),
            status=bindparam("status"))
)
_P_USERS_IN_ROLE = Prepared(_USERS_IN_ROLE)

_INSTANCE_COLUMNS = (_instances.c.id, _instances.c.workflow_id, _instances.c.workflow_version,
                     _instances.c.record_id, _instances.c.state, _instances.c.status, _instances.c.version,
                     _instances.c.started_at, _instances.c.finished_at)
_N_TASK, _N_INSTANCE = len(_TASK_COLUMNS), len(_INSTANCE_COLUMNS)
_owner = aliased(Task)
#: Every task of the instance that owns task :task_id, each row with the
#: instance and its record: what ``act`` needs, in one statement.
_P_LOAD_FOR_TASK = Prepared(
    select(*_TASK_COLUMNS, *_INSTANCE_COLUMNS, _r.c.form_id, _r.c.form_version, _r.c.data, _r.c.version,
           _r.c.status)
    .join(_instances, _instances.c.id == _tasks.c.instance_id)
    .join(_r, _r.c.id == _instances.c.record_id)
    .where(_tasks.c.instance_id == select(_owner.instance_id).where(_owner.id == bindparam("task_id"))
           .scalar_subquery())
    .order_by(_tasks.c.seq)
)
_P_OPEN_TASKS_FOR = Prepared(
    _joined_tasks().where(_tasks.c.assignee_name == bindparam("username"), _tasks.c.status == bindparam("status"))
    .order_by(case((_tasks.c.due_at.is_(None), 1), else_=0), _tasks.c.due_at, _tasks.c.id)
    .limit(bindparam("limit"))
)


@dataclass(frozen=True)
class Loaded:
    """An instance, all its tasks (by seq) and its record, read in one statement."""

    instance: InstanceRow
    tasks: list[TaskRow]
    record: RecordSnapshot


def _task_tuple(r: Sequence[Any]) -> TaskRow:
    return TaskRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], _aware(r[7]), _aware(r[8]), r[9], r[10], r[11],
                   from_db_time(r[12]), _aware(r[13]))


def load_for_task(db: Db, task_id: int) -> Loaded | None:
    """The instance owning ``task_id`` with every task and the record, or None."""
    sql_rows = db.execute(_P_LOAD_FOR_TASK, {"task_id": task_id}).fetchall()
    if not sql_rows:
        return None
    procs = _P_LOAD_FOR_TASK.plan(db.dialect)[4]
    # only the columns that need one (times, JSON); the instance and record
    # columns repeat on every task row and are converted once
    task_procs = [(i, p) for i, p in enumerate(procs[:_N_TASK]) if p is not None]
    tasks = []
    for r in sql_rows:
        values = list(r[:_N_TASK])
        for i, p in task_procs:
            if values[i] is not None:
                values[i] = p(values[i])
        tasks.append(_task_tuple(values))
    first = list(sql_rows[0])
    for i in range(_N_TASK, len(first)):
        p = procs[i]
        if p is not None and first[i] is not None:
            first[i] = p(first[i])
    i = _N_TASK
    inst = InstanceRow(first[i], first[i + 1], first[i + 2], first[i + 3], dict(first[i + 4] or {}),
                       first[i + 5], first[i + 6], from_db_time(first[i + 7]), _aware(first[i + 8]))
    j = _N_TASK + _N_INSTANCE
    record = RecordSnapshot(inst.record_id, first[j], first[j + 1], dict(first[j + 2] or {}), first[j + 3],
                            None, first[j + 4])
    return Loaded(inst, tasks, record)


def insert_instance_fast(db: Db, *, workflow_id: str, workflow_version: int, record_id: int,
                         state: dict[str, Any], status: str, now: datetime, finished: bool) -> int:
    """:func:`insert_instance` on the fast path."""
    params = {"workflow_id": workflow_id, "workflow_version": workflow_version, "record_id": record_id,
              "state": state, "status": status, "version": 1, "started_at": to_db_time(now),
              "finished_at": to_db_time(now) if finished else None}
    return int(db.execute(_P_INSERT_INSTANCE, params).fetchone()[0])


def update_instance_fast(db: Db, instance_id: int, *, expected_version: int, state: dict[str, Any], status: str,
                         finished_at: datetime | None) -> bool:
    """:func:`update_instance` (compare-and-set on ``version``) on the fast path."""
    return db.rowcount(_P_UPDATE_INSTANCE, {
        "iid": instance_id, "expected": expected_version, "state": state, "status": status,
        "new_version": expected_version + 1, "finished_at": _naive(finished_at)}) == 1


def update_task_fast(db: Db, instance_id: int, seq: int, *, status: str, action: str | None, comment: str | None,
                     acted_at: datetime | None, wake_at: datetime | None,
                     expected_version: int | None = None) -> bool:
    """:func:`update_task` on the fast path (with ``expected_version``: compare-and-set, still open)."""
    params = {"iid": instance_id, "tseq": seq, "status": status, "action": action, "comment": comment,
              "acted_at": _naive(acted_at), "wake_at": _naive(wake_at)}
    if expected_version is None:
        return db.rowcount(_P_UPDATE_TASK, params) == 1
    params["expected"] = expected_version
    return db.rowcount(_P_UPDATE_TASK_CAS, params) == 1


_TASK_INSERT_COLUMNS = ("instance_id", "seq", "step_id", "assignee_name", "role", "kind", "status", "due_at",
                        "wake_at", "created_at", "version")


def _assignee_id(i: int) -> Any:
    return select(User.id).where(User.username == bindparam(f"assignee_id_sub_{i}")).scalar_subquery()


def insert_tasks_fast(db: Db, instance_id: int, rows: Sequence[Mapping[str, Any]]) -> dict[int, int]:
    """:func:`insert_tasks` as one multi-row INSERT; returns {seq: task id}."""
    params = [{"instance_id": instance_id, "seq": r["seq"], "step_id": r["step_id"],
               "assignee_name": r.get("assignee"), "assignee_id": r.get("assignee"), "role": None,
               "kind": r.get("kind", "approval"), "status": r["status"], "due_at": _naive(r.get("due_at")),
               "wake_at": _naive(r.get("wake_at")), "created_at": to_db_time(r["created_at"]), "version": 1}
              for r in rows]
    found = insert_many(db, _tasks, _TASK_INSERT_COLUMNS, params, returning=("id", "seq"),
                        subqueries={"assignee_id": _assignee_id})
    return {int(seq): int(tid) for tid, seq in found}


def update_record_fast(db: Db, record_id: int, *, expected_version: int, data: dict[str, Any], now: datetime,
                       status: str) -> bool:
    """Set a record's data and status iff it is still at ``expected_version`` (then bump it)."""
    return db.rowcount(_P_UPDATE_RECORD_AND_STATUS, {
        "rid": record_id, "expected": expected_version, "data": data, "new_version": expected_version + 1,
        "at": to_db_time(now), "status": status}) == 1


def set_record_status_fast(db: Db, record_id: int, status: str) -> None:
    db.execute(_P_SET_RECORD_STATUS, {"rid": record_id, "status": status})


def users_in_role_fast(db: Db, role: str) -> list[str]:
    return [r[0] for r in db.execute(_P_USERS_IN_ROLE, {"role": role}).fetchall()]


def open_tasks_for(db: Db, username: str, *, limit: int = 500) -> list[TaskRow]:
    """A user's open tasks, earliest due first (undated last): the inbox's
    default query in one statement on the fast path."""
    rows = db.rows(_P_OPEN_TASKS_FOR, {"username": username, "status": "open", "limit": limit})
    return [_with_join(_task_tuple(r[:_N_TASK]), r[_N_TASK:]) for r in rows]


def _with_join(row: TaskRow, extra: Sequence[Any]) -> TaskRow:
    return TaskRow(row.id, row.instance_id, row.seq, row.step_id, row.assignee, row.kind, row.status, row.due_at,
                   row.acted_at, row.action, row.comment, row.version, row.created_at, row.wake_at,
                   extra[0], extra[1], extra[2], extra[3])


_P_INVOLVED = Prepared(
    select(_tasks.c.id).join(_instances, _instances.c.id == _tasks.c.instance_id)
    .where(_instances.c.record_id == bindparam("rid"), _tasks.c.assignee_name == bindparam("username")).limit(1)
)


def has_task_on_record(db: Db, record_id: int, username: str) -> bool:
    """Whether ``username`` has or had a task (approval or copy) on any of the record's instances."""
    return bool(db.execute(_P_INVOLVED, {"rid": record_id, "username": username}).fetchall())


# --- directory lookups on the fast path (a cache miss inside a transition) ----------------

_manager = aliased(User)
_P_MANAGER_OF = Prepared(select(_manager.username).join(User, User.manager_id == _manager.id)
                         .where(User.username == bindparam("username"), _manager.active.is_(True)))
_P_ACTIVE_USER = Prepared(select(User.id).where(User.username == bindparam("username"), User.active.is_(True)))
_P_ACCOUNT_MANAGER_OF = Prepared(select(User.username).join(Customer, Customer.account_manager_id == User.id)
                                 .where(Customer.id == bindparam("cid"), User.active.is_(True)))
_P_CONTACT = Prepared(select(User.username, User.display_name, User.email, User.phone)
                      .where(User.username == bindparam("username")))
_P_CUSTOMER_CONTACT = Prepared(select(Customer.name, Customer.email, Customer.phone)
                               .where(Customer.id == bindparam("cid")))


def manager_of_fast(db: Db, username: str) -> str | None:
    found = db.execute(_P_MANAGER_OF, {"username": username}).fetchall()
    return found[0][0] if found else None


def active_user_fast(db: Db, username: str) -> bool:
    return bool(db.execute(_P_ACTIVE_USER, {"username": username}).fetchall())


def account_manager_of_fast(db: Db, customer_id: int) -> str | None:
    found = db.execute(_P_ACCOUNT_MANAGER_OF, {"cid": customer_id}).fetchall()
    return found[0][0] if found else None


def contacts_fast(db: Db, usernames: Iterable[str]) -> dict[str, Contact]:
    """:func:`contacts`, one indexed lookup per name (a notice names one to three people)."""
    out: dict[str, Contact] = {}
    for name in sorted(set(usernames)):
        for r in db.execute(_P_CONTACT, {"username": name}).fetchall():
            out[r[0]] = Contact(r[0], r[1], r[2], r[3])
    return out


def customer_contact_fast(db: Db, customer_id: int) -> tuple[str | None, str | None, str | None]:
    found = db.execute(_P_CUSTOMER_CONTACT, {"cid": customer_id}).fetchall()
    return (None, None, None) if not found else (found[0][0], found[0][1], found[0][2])


# --- a transaction without an ORM Session ----------------------------------------------------


class Lean:
    """What the submission and approval paths use of a Session, and no more:
    ``info`` (the queued rows, the :class:`Db`). Creating, beginning,
    committing and closing an ORM Session costs about twice a whole
    transition's SQL on SQLite; these paths write only through :class:`Db`."""

    __slots__ = ("info",)

    def __init__(self, db: Db):
        self.info: dict[str, Any] = {"pf.db": db}


@contextmanager
def lean_transaction(engine: Any) -> Iterator[Lean]:
    """One transaction on a pooled connection: commit if the block returns,
    roll back if it raises. On SQLite it queues on the process's writer lock
    first, exactly like :func:`engine.storage.database.transaction`."""
    from engine.storage.database import writer_lock  # the one writer lock per SQLite engine

    lock = writer_lock(engine)
    if lock is not None:
        lock.acquire()
    try:
        pooled = engine.raw_connection()
        try:
            driver = pooled.driver_connection
            if engine.dialect.name == "sqlite":
                driver.execute("BEGIN")  # the driver's own transaction handling is off
            try:
                yield Lean(Db(driver, engine.dialect))
                driver.commit()
            except BaseException:
                driver.rollback()
                raise
        finally:
            pooled.close()
    finally:
        if lock is not None:
            lock.release()
