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
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, case, func, insert, select, update
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
RETRYABLE: tuple[type[BaseException], ...] = (OperationalError,)

_instances = cast(Table, WorkflowInstance.__table__)
_tasks = cast(Table, Task.__table__)


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


_r = cast(Table, Record.__table__)
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
        .where(Customer.id == customer_id)
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
