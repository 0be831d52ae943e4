"""SQL of rule tasks: rows of ``tasks`` with ``kind = 'rule'`` and no workflow
instance (migration 0014), written by a rule's ``create_task`` step.

Everything runs in the caller's transaction with naive UTC times (see
``engine.storage.times``). Creation is ``INSERT … ON CONFLICT DO NOTHING`` on
(journey, step, assignee), so a journey batch repeated after a crash writes
nothing twice; completion is a conditional ``UPDATE … WHERE status = 'open'``
(and the version read, when given), so of two people closing one task exactly
one succeeds.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, select, update
from sqlalchemy.orm import Session

from engine.storage.bulk import insert_ignore
from engine.storage.models import Customer, Task, User, UserRole
from engine.storage.times import from_db_time, to_db_time

__all__ = [
    "RuleTaskRow",
    "cancel_siblings",
    "complete",
    "due_ids",
    "for_customer",
    "for_user",
    "get",
    "ids_of",
    "insert",
    "lock_group",
    "people",
    "set_tick_state",
    "users_of_role",
]

_t = Task.__table__
_u = User.__table__
_r = UserRole.__table__
_c = Customer.__table__
KIND = "rule"


@dataclass(frozen=True)
class RuleTaskRow:
    """A stored rule task (aware UTC times)."""

    id: int
    title: str
    step_id: str
    assignee: str | None
    role: str | None
    status: str
    due_at: datetime | None
    created_at: datetime
    acted_at: datetime | None
    outcome: str | None
    comment: str | None
    response_seconds: int | None
    version: int
    customer_id: int | None
    rule_id: str | None
    journey_id: int | None
    wake_at: datetime | None
    detail: dict[str, Any]
    customer_name: str | None = None


_COLUMNS = (_t.c.id, _t.c.title, _t.c.step_id, _t.c.assignee_name, _t.c.role, _t.c.status, _t.c.due_at,
            _t.c.created_at, _t.c.acted_at, _t.c.outcome, _t.c.comment, _t.c.response_seconds, _t.c.version,
            _t.c.customer_id, _t.c.rule_id, _t.c.journey_id, _t.c.wake_at, _t.c.detail, _c.c.name)
_SELECT = select(*_COLUMNS).select_from(_t.outerjoin(_c, _c.c.id == _t.c.customer_id)).where(_t.c.kind == KIND)


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None else from_db_time(value)


def _row(r: Any) -> RuleTaskRow:
    return RuleTaskRow(int(r.id), r.title or "", r.step_id, r.assignee_name, r.role, r.status, _aware(r.due_at),
                       from_db_time(r.created_at), _aware(r.acted_at), r.outcome, r.comment, r.response_seconds,
                       int(r.version), r.customer_id, r.rule_id, r.journey_id, _aware(r.wake_at),
                       dict(r.detail or {}), r.name)


def insert(session: Session, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert rule tasks (keys: title, step_id, assignee, role, due_at, wake_at,
    created_at, customer_id, rule_id, journey_id, detail; aware times), skipping
    any whose (journey, step, assignee) exists; returns how many were new."""
    if not rows:
        return 0
    names = {str(r["assignee"]) for r in rows}
    ids = dict(session.execute(select(_u.c.username, _u.c.id).where(_u.c.username.in_(names))).all())
    params = [{
        "instance_id": None, "seq": 0, "step_id": r["step_id"], "assignee_id": ids.get(r["assignee"]),
        "assignee_name": r["assignee"], "role": r.get("role"), "kind": KIND, "status": "open",
        "due_at": None if r.get("due_at") is None else to_db_time(r["due_at"]),
        "wake_at": None if r.get("wake_at") is None else to_db_time(r["wake_at"]),
        "created_at": to_db_time(r["created_at"]), "version": 1, "title": r["title"][:255],
        "customer_id": r.get("customer_id"), "rule_id": r.get("rule_id"), "journey_id": r["journey_id"],
        "detail": dict(r.get("detail") or {}),
    } for r in rows]
    return insert_ignore(session, _t, params)


def ids_of(session: Session, keys: Collection[tuple[int, str, str]]) -> dict[tuple[int, str, str], int]:
    """{(journey, step, assignee): task id} of stored rule tasks."""
    journeys = sorted({k[0] for k in keys})
    if not journeys:
        return {}
    stmt = select(_t.c.journey_id, _t.c.step_id, _t.c.assignee_name, _t.c.id).where(
        _t.c.kind == KIND, _t.c.journey_id.in_(journeys))
    return {(int(j), s, a): int(i) for j, s, a, i in session.execute(stmt) if (int(j), s, a) in keys}


def get(session: Session, task_id: int) -> RuleTaskRow | None:
    r = session.execute(_SELECT.where(_t.c.id == task_id)).first()
    return None if r is None else _row(r)


def for_user(session: Session, username: str, *, statuses: Sequence[str] | None, limit: int = 500) -> list[RuleTaskRow]:
    """A user's rule tasks, earliest due first (undated last)."""
    stmt = _SELECT.where(_t.c.assignee_name == username)
    if statuses is not None:
        stmt = stmt.where(_t.c.status.in_(list(statuses)))
    stmt = stmt.order_by(case((_t.c.due_at.is_(None), 1), else_=0), _t.c.due_at, _t.c.id).limit(limit)
    return [_row(r) for r in session.execute(stmt)]


def for_customer(session: Session, customer_id: int, *, limit: int = 100) -> list[RuleTaskRow]:
    """The customer's rule tasks, newest first."""
    stmt = _SELECT.where(_t.c.customer_id == customer_id).order_by(_t.c.id.desc()).limit(limit)
    return [_row(r) for r in session.execute(stmt)]


def lock_group(session: Session, task: RuleTaskRow) -> None:
    """Lock the rows of the task's journey step in id order (PostgreSQL ``FOR
    UPDATE``; SQLite's write lock already serialises): two assignees closing
    sibling tasks at once then queue instead of deadlocking on each other's rows."""
    if task.journey_id is None:
        return
    session.execute(select(_t.c.id).where(_t.c.kind == KIND, _t.c.journey_id == task.journey_id,
                                          _t.c.step_id == task.step_id).order_by(_t.c.id).with_for_update())


def complete(session: Session, task_id: int, *, outcome: str, comment: str | None, now: datetime,
             response_seconds: int, expected_version: int | None) -> bool:
    """Close an open rule task as done; False when it is no longer open (or
    no longer at ``expected_version``)."""
    cond = [_t.c.id == task_id, _t.c.kind == KIND, _t.c.status == "open"]
    if expected_version is not None:
        cond.append(_t.c.version == expected_version)
    result = session.execute(update(_t).where(and_(*cond)).values(
        status="done", action="done", outcome=outcome, comment=comment, acted_at=to_db_time(now),
        response_seconds=response_seconds, wake_at=None, version=_t.c.version + 1))
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def cancel_siblings(session: Session, task: RuleTaskRow, now: datetime) -> int:
    """Close the other open tasks of the same journey step (several holders of
    a role, an escalation): one person's done is the step's done."""
    if task.journey_id is None:
        return 0
    result = session.execute(update(_t).where(
        _t.c.kind == KIND, _t.c.journey_id == task.journey_id, _t.c.step_id == task.step_id,
        _t.c.status == "open", _t.c.id != task.id,
    ).values(status="cancelled", acted_at=to_db_time(now), wake_at=None, version=_t.c.version + 1))
    return int(result.rowcount)  # type: ignore[attr-defined]


def due_ids(session: Session, now: datetime, *, limit: int, after_id: int = 0) -> list[int]:
    """Open rule tasks whose ``wake_at`` has come (the (status, wake_at) index), by id."""
    stmt = select(_t.c.id).where(
        _t.c.status == "open", _t.c.wake_at.is_not(None), _t.c.wake_at <= to_db_time(now), _t.c.kind == KIND,
        _t.c.id > after_id).order_by(_t.c.id).limit(limit)
    return [int(i) for i in session.execute(stmt).scalars()]


def set_tick_state(session: Session, task: RuleTaskRow, *, detail: dict[str, Any], wake_at: datetime | None) -> bool:
    """Store a tick's reminder state iff the task is still open at the version read."""
    result = session.execute(update(_t).where(
        _t.c.id == task.id, _t.c.status == "open", _t.c.version == task.version,
    ).values(detail=detail, wake_at=None if wake_at is None else to_db_time(wake_at), version=_t.c.version + 1))
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def users_of_role(session: Session, role: str, store: str | None = None) -> list[str]:
    """Active holders of ``role``; with ``store``, those assigned to that store
    when there are any (else every holder: a store without its own manager
    is not left without one)."""
    stmt = (select(_u.c.username, _u.c.store).join(_r, _r.c.user_id == _u.c.id)
            .where(_r.c.role == role, _u.c.active.is_(True)).order_by(_u.c.id))
    found = session.execute(stmt).all()
    if store:
        local = [name for name, at in found if at == store]
        if local:
            return local
    return [name for name, _ in found]


def people(session: Session, *, usernames: Iterable[str] = (), manager_of: str | None = None,
           account_manager_of: int | None = None) -> list[str]:
    """Active users among ``usernames``, plus the active manager of
    ``manager_of`` and the active account manager of a customer."""
    out: list[str] = []
    names = sorted(set(usernames))
    if names:
        out += list(session.execute(select(_u.c.username).where(_u.c.username.in_(names),
                                                                _u.c.active.is_(True))).scalars())
    if manager_of is not None:
        boss = _u.alias("boss")
        out += list(session.execute(select(boss.c.username).join(_u, _u.c.manager_id == boss.c.id).where(
            _u.c.username == manager_of, boss.c.active.is_(True))).scalars())
    if account_manager_of is not None:
        out += list(session.execute(select(_u.c.username).join(_c, _c.c.account_manager_id == _u.c.id).where(
            _c.c.id == account_manager_of, _u.c.active.is_(True))).scalars())
    return list(dict.fromkeys(out))

