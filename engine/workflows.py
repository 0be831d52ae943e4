"""The approval service: runs the pure state machine against the database.

Every transition is one transaction: read the instance (and task), call
:func:`engine.approvals.machine.step`, store the new state with a
compare-and-set on ``workflow_instances.version`` (and on the acted task's
``version``), then execute the effects in the same transaction: task rows,
``task.created`` / ``workflow.*`` events, audit entries, record field
updates, outbox messages. Of two concurrent transitions exactly one commits;
the other is re-read and either applied on the new state (a different task)
or refused (``TaskClosed`` / ``StaleTask``, carrying the current state).

Instances stay on the workflow version they started with
(``DefinitionRegistry.workflow(id, version)``). The service reads no clock:
every command takes ``now``.

Notifications: ``send`` steps and on_approve/on_reject sends use their
template. System notices use a published template named
``workflow_<kind>`` when there is one (``workflow_task_assigned``,
``workflow_reminder``, ``workflow_cc``, ``workflow_returned``,
``workflow_withdrawn``), else none is sent. A notice that cannot be queued
(no address, template error) is recorded as a ``workflow.notify_failed``
event instead of failing the approval.
"""

from __future__ import annotations

import threading
import time as _time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine.approvals.machine import (
    Act,
    ActionError,
    CloseTask,
    CreateTask,
    Emit,
    Event,
    InstanceState,
    RESUBMITTABLE,
    Notify,
    Remind,
    Resubmit,
    SetField,
    Start,
    TaskState,
    Tick,
    Withdraw,
    event_to_json,
    step,
    task_wake_at,
)
from engine.definitions.specs import FormSpec, WorkflowSpec, WorkflowStep
from engine.registry import DefinitionRegistry, UnknownForm
from engine.storage import records_repo
from engine.storage import workflows_repo as repo
from engine.storage.database import transaction

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from engine.accounts import AccountService
    from engine.records import RecordService

#: The record's ``status`` column while its workflow is in each state.
RECORD_STATUS = {"running": "in_review", "returned": "returned", "approved": "approved",
                 "rejected": "rejected", "withdrawn": "withdrawn"}
_ATTEMPTS = 12


# ------------------------------------------------------------------------ errors

class NotAssigned(ActionError):
    """The actor is not the task's assignee (HTTP 403)."""

    def __init__(self, message: str, current: InstanceView | None = None):
        super().__init__("not_assigned", message)
        self.current = current


class TaskClosed(ActionError):
    """The task was already acted on or cancelled (HTTP 409); ``current`` is the instance now."""

    def __init__(self, message: str, current: InstanceView | None = None):
        super().__init__("task_closed", message)
        self.current = current


class StaleTask(ActionError):
    """The task changed since ``expected_version`` (HTTP 409); ``current`` is the instance now."""

    def __init__(self, message: str, current: InstanceView | None = None):
        super().__init__("stale_task", message)
        self.current = current


class TaskNotFound(LookupError):
    """No task has this id (HTTP 404)."""


class NoWorkflow(LookupError):
    """The record has no workflow instance (HTTP 404)."""


class _Retry(Exception):
    """Another transition won the compare-and-set: read again and retry."""


# ------------------------------------------------------------------------ views

@dataclass(frozen=True)
class TaskView:
    """A task as the inbox and the API see it (aware UTC times)."""

    id: int
    instance_id: int
    record_id: int
    form_id: str
    step_id: str
    step_title: str
    status: str
    due_at: datetime | None
    overdue: bool
    version: int
    created_at: datetime
    assignee: str | None
    kind: str = "approval"
    action: str | None = None
    comment: str | None = None
    acted_at: datetime | None = None
    workflow_id: str | None = None
    step_title_en: str | None = None
    origin: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "instance_id": self.instance_id, "record_id": self.record_id, "form_id": self.form_id,
            "step_id": self.step_id, "step_title": self.step_title, "step_title_en": self.step_title_en,
            "status": self.status, "due_at": _iso(self.due_at), "overdue": self.overdue, "version": self.version,
            "created_at": self.created_at.isoformat(), "assignee": self.assignee, "kind": self.kind,
            "action": self.action, "comment": self.comment, "acted_at": _iso(self.acted_at),
            "workflow_id": self.workflow_id, "origin": self.origin,
        }


@dataclass(frozen=True)
class InstanceView:
    """An instance: where it stands, its tasks and its history (oldest first).
    ``history`` items: {at, actor, action, step_id, comment, target}.
    ``marks``: how each finished step ended (for the diagram)."""

    id: int
    record_id: int
    workflow_id: str
    workflow_version: int
    status: str
    current_steps: tuple[str, ...]
    tasks: tuple[TaskView, ...]
    history: tuple[dict[str, Any], ...]
    version: int = 1
    submitter: str | None = None
    marks: Mapping[str, str] = field(default_factory=dict)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    can_withdraw: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "record_id": self.record_id, "workflow_id": self.workflow_id,
            "workflow_version": self.workflow_version, "status": self.status,
            "current_steps": list(self.current_steps), "tasks": [t.to_json() for t in self.tasks],
            "history": [dict(h) for h in self.history], "version": self.version, "submitter": self.submitter,
            "marks": dict(self.marks), "started_at": _iso(self.started_at), "finished_at": _iso(self.finished_at),
            "can_withdraw": self.can_withdraw,
        }


@dataclass(frozen=True)
class BulkResult:
    """One task of a bulk approval: done (``status``: the instance's status
    after it) or refused (``code`` as the single-task API would answer)."""

    task_id: int
    ok: bool
    code: str | None = None
    message: str | None = None
    status: str | None = None
    record_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "ok": self.ok, "code": self.code, "message": self.message,
                "status": self.status, "record_id": self.record_id}


@dataclass
class TickReport:
    """What one ``tick`` did."""

    instances: int = 0
    reminders: int = 0
    escalations: int = 0
    auto_actions: int = 0
    messages: int = 0


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


# --------------------------------------------------------------------- directory

class _DirectoryCache:
    """Directory answers (who holds a role, who manages whom, contacts) shared
    by transitions for at most ``ttl`` seconds, the registry's staleness bound:
    every submission asks who the managers are, and the answer rarely changes.
    A change to people or roles therefore reaches new tasks within ``ttl``
    seconds (``ttl`` 0: every transition asks the database, as in tests)."""

    def __init__(self, ttl: float):
        self.ttl = ttl
        self._data: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any, load: Any) -> Any:
        if self.ttl <= 0:
            return load()
        now = _time.monotonic()
        hit = self._data.get(key)
        if hit is not None and now - hit[0] <= self.ttl:
            return hit[1]
        value = load()
        with self._lock:
            if len(self._data) > 4096:
                self._data.clear()
            self._data[key] = (now, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


class _DbDirectory:
    """The machine's Directory over the caller's session, memoized per
    transition and cached across transitions by ``_DirectoryCache``."""

    def __init__(self, session: Session, cache: _DirectoryCache | None = None):
        self._session = session
        self._cache = cache or _DirectoryCache(0)
        self._roles: dict[str, list[str]] = {}
        self._managers: dict[str, str | None] = {}
        self._exists: dict[str, bool] = {}

    def users_in_role(self, role: str) -> Sequence[str]:
        if role not in self._roles:
            self._roles[role] = self._cache.get(
                ("role", role), lambda: repo.users_in_role_fast(repo.Db.of(self._session), role))
        return self._roles[role]

    def manager_of(self, username: str) -> str | None:
        if username not in self._managers:
            self._managers[username] = self._cache.get(
                ("manager", username), lambda: repo.manager_of_fast(repo.Db.of(self._session), username))
        return self._managers[username]

    def exists(self, username: str) -> bool:
        if username not in self._exists:
            self._exists[username] = self._cache.get(
                ("exists", username), lambda: repo.active_user_fast(repo.Db.of(self._session), username))
        return self._exists[username]

    def account_manager_of(self, customer_id: int) -> str | None:
        return repo.account_manager_of_fast(repo.Db.of(self._session), customer_id)


@dataclass
class _Txn:
    """What one transition works on."""

    session: Session
    instance_id: int
    record_id: int
    spec: WorkflowSpec
    version: int
    now: datetime
    form_id: str
    form_version: int
    record_data: dict[str, Any]
    record_version: int
    record_status: str = ""
    ids: dict[int, int] = field(default_factory=dict)  # task seq -> task row id
    messages: int = 0
    data_changed: bool = False  # set_field changed record_data (record_version already bumped)
    updated: dict[int, tuple[TaskState, datetime | None]] = field(default_factory=dict)  # seq -> (task, wake_at)
    fresh: list[TaskState] = field(default_factory=list)  # tasks inserted (ids in ``ids``)

    def rows_after(self, rows: Sequence[repo.TaskRow]) -> list[repo.TaskRow]:
        """The instance's task rows as this transition left them, given the rows before it."""
        out = []
        for r in rows:
            hit = self.updated.get(r.seq)
            if hit is not None:
                task, wake = hit
                r = repo.TaskRow(r.id, r.instance_id, r.seq, r.step_id, r.assignee, r.kind, task.status, r.due_at,
                                 task.acted_at, task.action, task.comment, r.version + 1, r.created_at, wake)
            out.append(r)
        for t in self.fresh:
            out.append(repo.TaskRow(self.ids[t.id], self.instance_id, t.id, t.step_id, t.assignee, t.kind, t.status,
                                    t.due_at, None, None, None, 1, t.created_at, task_wake_at(self.spec, t)))
        out.sort(key=lambda r: r.seq)
        return out


# ---------------------------------------------------------------------- service

class WorkflowService:
    """Approval flows of published workflows, bound to records by form."""

    def __init__(
        self, session_factory: sessionmaker[Session], registry: DefinitionRegistry,
        accounts: AccountService | None = None, *, tz: str = "Asia/Shanghai", base_url: str = "",
    ):
        self._sf = session_factory
        #: The installation's public address: notices link to the task and the record.
        self._base_url = base_url.rstrip("/")
        self._registry = registry
        self._accounts = accounts
        self._tz = tz
        self._records: RecordService | None = None
        self._step_maps: dict[tuple[str, int], dict[str, WorkflowStep]] = {}
        self._directory = _DirectoryCache(float(getattr(registry, "max_staleness", 0) or 0))
        self._renderers: dict[tuple[int, str], tuple[Any, Any]] = {}
        self._money: dict[int, tuple[FormSpec, tuple[str, ...]]] = {}

    def forget_directory(self) -> None:
        """Drop cached directory answers (people or roles changed in this process)."""
        self._directory.clear()

    # --- specs ----------------------------------------------------------------------

    def spec_for(self, instance: InstanceView | Mapping[str, Any]) -> WorkflowSpec | None:
        """The workflow spec (its own version) an instance runs on, or None."""
        get = instance.get if isinstance(instance, Mapping) else lambda k: getattr(instance, k, None)
        try:
            return self._registry.workflow(str(get("workflow_id")), get("workflow_version"))[0]
        except LookupError:
            return None

    def _steps(self, workflow_id: str, version: int) -> dict[str, WorkflowStep]:
        key = (workflow_id, version)
        steps = self._step_maps.get(key)
        if steps is None:
            try:
                spec, _ = self._registry.workflow(workflow_id, version)
            except LookupError:
                return {}
            steps = self._step_maps[key] = _step_map(spec)  # a stored version never changes
        return steps

    # --- start --------------------------------------------------------------------------

    def start_in(self, session: Session, record_row: records_repo.RecordRow, form_spec: FormSpec,
                 now: datetime) -> int | None:
        """Start the workflow bound to the record's form (if one is published),
        in the caller's transaction: the instance pinned to the workflow's
        current version, its first tasks, ``task.created`` events, audit and
        notifications. Returns the instance id, or None when no workflow is bound.

        The hook ``RecordService(..., on_created=service.start_in)`` calls it.
        """
        bound = self._registry.workflow_for_form(form_spec.id)
        if bound is None:
            return None
        spec, version = bound
        money = self._money_keys(form_spec)
        submitter = record_row.created_by or ""
        event = Start(dict(record_row.data), submitter, now, money)
        old = InstanceState()
        new, effects = step(spec, old, event, _DbDirectory(session, self._directory))
        instance_id = repo.insert_instance_fast(
            repo.Db.of(session), workflow_id=spec.id, workflow_version=version, record_id=record_row.id,
            state=new.to_json(), status=new.status, now=now, finished=new.terminal,
        )
        txn = _Txn(session, instance_id, record_row.id, spec, version, now, record_row.form_id,
                   record_row.form_version, dict(record_row.data), record_row.version, record_row.status)
        self._apply(txn, old, new, effects, event, actor=submitter or None)
        return instance_id

    #: RecordService.create may leave its own audit entry and event queued for
    #: this hook (``_apply`` inserts them with the workflow's, one INSERT each),
    #: and may run it in a lean transaction: it writes only through ``Db``.
    start_in.accepts_pending = True  # type: ignore[attr-defined]

    def _money_keys(self, form_spec: FormSpec) -> tuple[str, ...]:
        key = id(form_spec)
        hit = self._money.get(key)
        if hit is None or hit[0] is not form_spec:
            hit = self._money[key] = (form_spec, tuple(f.key for f in form_spec.fields if f.type == "money"))
        return hit[1]

    # --- queries ------------------------------------------------------------------------

    def _task_view(self, row: repo.TaskRow, now: datetime | None,
                   steps: Mapping[str, WorkflowStep] | None = None, origin: str | None = None) -> TaskView:
        if steps is None:
            steps = self._steps(row.workflow_id or "", row.workflow_version or 0)
        st = steps.get(row.step_id)
        overdue = (row.status == "open" and row.due_at is not None and now is not None and row.due_at <= now)
        return TaskView(
            id=row.id, instance_id=row.instance_id, record_id=row.record_id or 0, form_id=row.form_id or "",
            step_id=row.step_id, step_title=(st.title if st and st.title else row.step_id), status=row.status,
            due_at=row.due_at, overdue=overdue, version=row.version, created_at=row.created_at,
            assignee=row.assignee, kind=row.kind, action=row.action, comment=row.comment, acted_at=row.acted_at,
            workflow_id=row.workflow_id, step_title_en=st.title_en if st else None, origin=origin,
        )

    def tasks_for(self, username: str, *, status: str | None = "open", overdue_first: bool = True,
                  form_id: str | None = None, now: datetime | None = None) -> list[TaskView]:
        """The user's tasks: ``status`` open (default), done (acted on, cancelled,
        transferred), cc (copies), or all/None; optionally of one form.
        ``overdue_first``: earliest due first, undated last. ``overdue`` on each
        view needs ``now`` (without it, False)."""
        statuses: Sequence[str] | None
        if status in (None, "all"):
            statuses = None
        elif status == "done":
            statuses = ("done", "cancelled")
        else:
            statuses = (status,)
        if statuses == ("open",) and form_id is None and overdue_first:
            rows = self._read(lambda db: repo.open_tasks_for(db, username))  # the inbox: one statement
        else:
            with self._sf() as session:
                rows = repo.tasks_for(session, username, statuses=statuses, form_id=form_id,
                                      overdue_first=overdue_first)
        return [self._task_view(r, now) for r in rows]

    def _transaction(self) -> Any:
        """The transaction of a transition: without an ORM Session when the
        factory is bound to an Engine (everything on this path writes through
        ``workflows_repo.Db``), else ``transaction`` as everywhere else."""
        engine = self._sf.kw.get("bind")
        if hasattr(engine, "raw_connection") and hasattr(engine, "dialect"):
            return repo.lean_transaction(engine)
        return transaction(self._sf)

    def _read(self, run: Any) -> Any:
        """Run one read statement on a pooled connection, without a session or
        an explicit transaction (a single statement is its own snapshot)."""
        engine = self._sf.kw.get("bind")
        if engine is None or not hasattr(engine, "raw_connection") or not hasattr(engine, "dialect"):
            with self._sf() as session:
                return run(repo.Db.of(session))
        raw = engine.raw_connection()
        try:
            return run(repo.Db(raw.driver_connection, engine.dialect))
        finally:
            raw.close()

    def involved(self, record_id: int, username: str) -> bool:
        """Whether ``username`` has or had a task (or a copy) on the record's
        flow: such a user is shown the record on the task page."""
        return bool(self._read(lambda db: repo.has_task_on_record(db, record_id, username)))

    def task_counts(self, username: str, now: datetime | None = None) -> dict[str, int]:
        """{"open": n, "done": n, "cancelled": n, "cc": n, "overdue": n} (overdue needs ``now``)."""
        with self._sf() as session:
            counts = repo.task_counts(session, username, now)
        for key in ("open", "done", "cancelled", "cc"):
            counts.setdefault(key, 0)
        return counts

    def get_task(self, task_id: int, now: datetime | None = None) -> TaskView | None:
        """One task (any assignee, any status), or None."""
        with self._sf() as session:
            row = repo.get_task(session, task_id)
        return None if row is None else self._task_view(row, now)

    def instance_for_record(self, record_id: int, now: datetime | None = None) -> InstanceView | None:
        """The record's (latest) workflow instance with tasks and history, or None."""
        with self._sf() as session:
            inst = repo.instance_for_record(session, record_id)
            if inst is None:
                return None
            rows = repo.tasks_of_instance(session, inst.id)
            record = repo.get_record(session, record_id)
        return self._instance_view(inst, rows, record.form_id if record else "", now)

    def _instance_view(self, inst: repo.InstanceRow, rows: Sequence[repo.TaskRow], form_id: str,
                       now: datetime | None, state: InstanceState | None = None) -> InstanceView:
        if state is None:
            state = InstanceState.from_json(inst.state)
        steps = self._steps(inst.workflow_id, inst.workflow_version)
        origins = {t.id: t.origin for t in state.tasks}
        tasks = tuple(
            self._task_view(
                repo.TaskRow(r.id, r.instance_id, r.seq, r.step_id, r.assignee, r.kind, r.status, r.due_at,
                             r.acted_at, r.action, r.comment, r.version, r.created_at, r.wake_at, inst.record_id,
                             form_id, inst.workflow_id, inst.workflow_version),
                now, steps, origins.get(r.seq))
            for r in rows
        )
        history = tuple({"at": h.at, "actor": h.actor, "action": h.action, "step_id": h.step_id,
                         "comment": h.comment, "target": h.target} for h in state.history)
        return InstanceView(
            id=inst.id, record_id=inst.record_id, workflow_id=inst.workflow_id,
            workflow_version=inst.workflow_version, status=inst.status, current_steps=state.current_steps,
            tasks=tasks, history=history, version=inst.version, submitter=state.submitter, marks=dict(state.marks),
            started_at=inst.started_at, finished_at=inst.finished_at,
            can_withdraw=state.status == "returned" or (state.status == "running" and not state.acted),
        )

    def state_of(self, record_id: int) -> InstanceState | None:
        """The record's instance state as the machine sees it (tests, diagram)."""
        with self._sf() as session:
            inst = repo.instance_for_record(session, record_id)
        return None if inst is None else InstanceState.from_json(inst.state)

    def diagram(self, record_id: int, *, locale: str = "zh") -> str | None:
        """The record's flow as SVG with its current step(s) highlighted, or None."""
        from engine.approvals.diagram import render_svg

        with self._sf() as session:
            inst = repo.instance_for_record(session, record_id)
        if inst is None:
            return None
        spec, _ = self._registry.workflow(inst.workflow_id, inst.workflow_version)
        return render_svg(spec, InstanceState.from_json(inst.state), locale=locale)

    # --- commands --------------------------------------------------------------------------

    def act(self, task_id: int, *, actor: str, action: str, comment: str | None = None, target: str | None = None,
            now: datetime, expected_version: int | None = None) -> InstanceView:
        """Approve, reject, return, transfer, add_approver or comment on a task.

        Exactly one transition per task even under concurrency: the loser of a
        race is refused with the current state.

        Raises:
            TaskNotFound: no such task.
            NotAssigned: ``actor`` is not the assignee.
            StaleTask: the task is no longer at ``expected_version``.
            TaskClosed: the task was already acted on (or cancelled).
            ActionError: the step does not allow the action, an unknown target
                user, an unknown action (``code`` says which; ``current`` set).
        """
        for attempt in range(_ATTEMPTS):
            try:
                with self._transaction() as session:
                    loaded = repo.load_for_task(repo.Db.of(session), task_id)  # instance, tasks, record
                    task = None if loaded is None else next(t for t in loaded.tasks if t.id == task_id)
                    if loaded is None or task is None:
                        raise TaskNotFound(task_id)
                    if task.assignee != actor:
                        raise NotAssigned(f"task {task_id} is not assigned to {actor}")
                    if expected_version is not None and task.version != expected_version:
                        raise StaleTask(f"task {task_id} is at version {task.version}, not {expected_version}")
                    if task.status != "open":
                        raise TaskClosed(f"task {task_id} is {task.status}")
                    inst = loaded.instance
                    event = Act(task.seq, actor, action, comment, target, now=now)
                    done = self._transition_txn(session, inst, event, actor=actor, guard=(task.seq, task.version),
                                                record=loaded.record)
                    assert done is not None
                    state, txn = done
                    return self._view_after(session, inst, state, loaded.record.form_id, now,
                                            txn.rows_after(loaded.tasks))
            except _Retry:
                continue
            except repo.RETRYABLE:
                _time.sleep(0.005 * (attempt + 1))
                continue
            except ActionError as exc:
                raise self._with_current(exc, task_id=task_id, now=now) from None
        raise StaleTask(f"task {task_id}: too many concurrent changes", self._current_for_task(task_id, now))

    #: Tasks one bulk request may act on.
    BULK_LIMIT = 200

    def act_many(self, task_ids: Sequence[int], *, actor: str, action: str = "approve", comment: str | None = None,
                 now: datetime) -> list[BulkResult]:
        """批量审批: ``actor`` approves (or rejects) many of their tasks in one
        request and one transaction, as Jiandaoyun's bulk approval does.

        Each task is its own transition with every guarantee of :meth:`act`
        (compare-and-set on the instance and task versions, events, audit and
        outbox rows, the instance's own workflow version), under a SAVEPOINT:
        a task that cannot be acted on (not found, not the actor's, already
        closed, the step forbids the action) is reported and skipped without
        undoing the others. Duplicate ids count once. Results come in the
        order of ``task_ids``.

        Raises:
            ValueError: more than :attr:`BULK_LIMIT` tasks, or an action other
                than approve/reject (those need no target).
        """
        if action not in ("approve", "reject"):
            raise ValueError("bulk actions are approve and reject")
        ids = list(dict.fromkeys(int(t) for t in task_ids))
        if len(ids) > self.BULK_LIMIT:
            raise ValueError(f"at most {self.BULK_LIMIT} tasks per request")
        for attempt in range(_ATTEMPTS):
            try:
                with self._transaction() as session:
                    db = repo.Db.of(session)
                    return [self._bulk_one(session, db, tid, actor, action, comment, now) for tid in ids]
            except repo.RETRYABLE:
                _time.sleep(0.005 * (attempt + 1))
        raise ActionError("not_running", "too many concurrent changes; try again")

    def _bulk_one(self, session: Any, db: repo.Db, task_id: int, actor: str, action: str, comment: str | None,
                  now: datetime) -> BulkResult:
        for _ in range(3):
            db.raw.execute("SAVEPOINT pf_bulk")
            try:
                loaded = repo.load_for_task(db, task_id)
                task = None if loaded is None else next(t for t in loaded.tasks if t.id == task_id)
                if loaded is None or task is None:
                    raise TaskNotFound(task_id)
                if task.assignee != actor:
                    raise NotAssigned(f"task {task_id} is not assigned to {actor}")
                if task.status != "open":
                    raise TaskClosed(f"task {task_id} is {task.status}")
                event = Act(task.seq, actor, action, comment, None, now=now)
                done = self._transition_txn(session, loaded.instance, event, actor=actor,
                                            guard=(task.seq, task.version), record=loaded.record)
                assert done is not None
                db.raw.execute("RELEASE pf_bulk")
                return BulkResult(task_id, True, status=done[0].status, record_id=loaded.instance.record_id)
            except (ActionError, TaskNotFound, _Retry) as exc:
                db.raw.execute("ROLLBACK TO pf_bulk")
                db.raw.execute("RELEASE pf_bulk")
                repo.discard_pending(session)
                if isinstance(exc, _Retry):
                    continue  # someone else changed that instance: read it again
                if isinstance(exc, TaskNotFound):
                    return BulkResult(task_id, False, code="task_not_found", message=f"no task {task_id}")
                return BulkResult(task_id, False, code=exc.code, message=exc.message)
        return BulkResult(task_id, False, code="stale_task", message=f"task {task_id}: too many concurrent changes")

    def withdraw(self, record_id: int, *, actor: str, now: datetime) -> InstanceView:
        """The submitter withdraws (撤回) while no approver has acted (or while returned).

        Raises:
            NoWorkflow, ActionError (not_submitter, already_acted, not_running).
        """
        return self._command(record_id, lambda inst, data: Withdraw(actor, now), actor=actor, now=now)

    def remind(self, record_id: int, task_id: int, *, actor: str, now: datetime) -> InstanceView:
        """The submitter reminds (催办) the assignee of an overdue open task: the
        machine's ``reminder`` notice, at most once an hour per task.

        Raises:
            NoWorkflow, ActionError (not_submitter, unknown_task, task_closed, not_overdue, too_soon).
        """
        return self._command(record_id, lambda inst, data: Remind(actor, task_id, now), actor=actor, now=now)

    def resubmit(self, record_id: int, payload: Mapping[str, Any], *, actor: str, now: datetime) -> InstanceView:
        """The submitter edits a returned or withdrawn record (validated as a
        record update) and sends it again: the flow restarts from its first
        step on the new data (a new round in the history).

        Raises:
            NoWorkflow, ActionError (not_submitter, not_running),
            ValidationFailed / Conflict (from the record update).
        """
        current = self.instance_for_record(record_id, now)
        if current is None:
            raise NoWorkflow(record_id)
        if current.submitter != actor:
            raise self._with_current(ActionError("not_submitter", "only the submitter may resubmit"),
                                     record_id=record_id, now=now)
        if current.status not in RESUBMITTABLE:
            raise self._with_current(
                ActionError("not_running",
                            f"only a returned or withdrawn request can be resubmitted (it is {current.status})"),
                record_id=record_id, now=now)
        if payload:
            self._record_service().update(record_id, payload, actor=actor, now=now, tz=self._tz)
        return self._command(record_id, lambda inst, data: Resubmit(data, now), actor=actor, now=now)

    def _command(self, record_id: int, make: Any, *, actor: str, now: datetime) -> InstanceView:
        for attempt in range(_ATTEMPTS):
            try:
                with transaction(self._sf) as session:
                    inst = repo.instance_for_record(session, record_id)
                    if inst is None:
                        raise NoWorkflow(record_id)
                    record = repo.get_record(session, record_id)
                    assert record is not None
                    done = self._transition(session, inst, make(inst, dict(record.data)), actor=actor)
                    assert done is not None
                    return self._view_after(session, inst, done, record.form_id, now)
            except _Retry:
                continue
            except repo.RETRYABLE:
                _time.sleep(0.005 * (attempt + 1))
                continue
            except ActionError as exc:
                raise self._with_current(exc, record_id=record_id, now=now) from None
        raise ActionError("not_running", "too many concurrent changes; try again")

    def tick(self, now: datetime, *, batch: int = 200) -> TickReport:
        """Reminders and escalations due by ``now`` (the scheduler calls this).

        Finds instances with an open task whose ``wake_at`` has come in one
        indexed query per batch, and steps each with ``Tick(now)`` in its own
        transaction. Idempotent: a second run at the same ``now`` finds nothing.
        """
        report = TickReport()
        after = 0
        while True:
            with self._sf() as session:
                ids = repo.due_instances(session, now, limit=batch, after_id=after)
            if not ids:
                return report
            for instance_id in ids:
                self._tick_one(instance_id, now, report)
            after = ids[-1]

    def _tick_one(self, instance_id: int, now: datetime, report: TickReport) -> None:
        for attempt in range(_ATTEMPTS):
            try:
                with transaction(self._sf) as session:
                    inst = repo.get_instance(session, instance_id)
                    if inst is None:
                        return
                    old = InstanceState.from_json(inst.state)
                    new = self._transition(session, inst, Tick(now), actor=None, report=report)
                    if new is None:  # nothing to do: make sure the task no longer looks due
                        spec, _ = self._registry.workflow(inst.workflow_id, inst.workflow_version)
                        for task in old.tasks:
                            if task.status == "open":
                                repo.set_task_wake(session, inst.id, task.id, task_wake_at(spec, task))
                        return
                report.instances += 1
                return
            except _Retry:
                continue
            except repo.RETRYABLE:
                _time.sleep(0.005 * (attempt + 1))
                continue

    # --- internals ------------------------------------------------------------------------

    def _record_service(self) -> RecordService:
        if self._records is None:
            from engine.records import RecordService

            self._records = RecordService(self._sf, self._registry, tz=self._tz)
        return self._records

    def _current_for_task(self, task_id: int, now: datetime | None) -> InstanceView | None:
        with self._sf() as session:
            task = repo.get_task(session, task_id)
        return None if task is None else self.instance_for_record(task.record_id or 0, now)

    def _with_current(self, exc: ActionError, *, task_id: int | None = None, record_id: int | None = None,
                      now: datetime | None = None) -> ActionError:
        current = (self._current_for_task(task_id, now) if task_id is not None
                   else self.instance_for_record(record_id or 0, now))
        if exc.code == "not_assigned" and not isinstance(exc, NotAssigned):
            return NotAssigned(exc.message, current)
        if exc.code == "task_closed" and not isinstance(exc, TaskClosed):
            return TaskClosed(exc.message, current)
        exc.current = current  # type: ignore[attr-defined]
        return exc

    def _view_after(self, session: Session, inst: repo.InstanceRow, state: InstanceState, form_id: str,
                    now: datetime | None, rows: Sequence[repo.TaskRow] | None = None) -> InstanceView:
        """The view of an instance just stepped to ``state``: from the task rows
        the transition wrote when it knows them all, else read in the same transaction."""
        after = repo.InstanceRow(inst.id, inst.workflow_id, inst.workflow_version, inst.record_id, {}, state.status,
                                 inst.version + 1, inst.started_at, now if state.terminal else inst.finished_at)
        if rows is None:
            rows = repo.tasks_of_instance(session, inst.id)
        return self._instance_view(after, rows, form_id, now, state)

    def _transition(self, session: Session, inst: repo.InstanceRow, event: Event, *, actor: str | None,
                    guard: tuple[int, int] | None = None, report: TickReport | None = None,
                    record: repo.RecordSnapshot | None = None) -> InstanceState | None:
        """Step the instance with ``event`` and store everything; None when the
        event changed nothing (a tick with nothing due).

        Raises:
            ActionError: the machine refused the event.
            _Retry: another transition changed the instance or task first.
        """
        done = self._transition_txn(session, inst, event, actor=actor, guard=guard, report=report, record=record)
        return None if done is None else done[0]

    def _transition_txn(self, session: Session, inst: repo.InstanceRow, event: Event, *, actor: str | None,
                        guard: tuple[int, int] | None = None, report: TickReport | None = None,
                        record: repo.RecordSnapshot | None = None) -> tuple[InstanceState, _Txn] | None:
        spec, _ = self._registry.workflow(inst.workflow_id, inst.workflow_version)
        old = InstanceState.from_json(inst.state)
        new, effects = step(spec, old, event, _DbDirectory(session, self._directory))
        if not effects and new == old:
            return None
        db = repo.Db.of(session)
        if not repo.update_instance_fast(db, inst.id, expected_version=inst.version, state=new.to_json(),
                                         status=new.status, finished_at=event.now if new.terminal else None):
            raise _Retry()
        if record is None:
            record = repo.get_record(session, inst.record_id)
        assert record is not None
        txn = _Txn(session, inst.id, inst.record_id, spec, inst.workflow_version, event.now, record.form_id,
                   record.form_version, dict(record.data), record.version, record.status)
        self._apply(txn, old, new, effects, event, actor=actor, guard=guard)
        if report is not None:
            fresh = new.history[len(old.history):]
            report.reminders += sum(1 for h in fresh if h.action == "remind")
            report.escalations += sum(1 for h in fresh if h.action == "escalate")
            report.auto_actions += sum(1 for h in fresh if h.actor == "system" and h.action in ("approve", "reject"))
            report.messages += txn.messages
        return new, txn

    def _apply(self, txn: _Txn, old: InstanceState, new: InstanceState, effects: Sequence[Any], event: Event, *,
               actor: str | None, guard: tuple[int, int] | None = None) -> None:
        """Write what a step decided: task rows (compare-and-set on the acted
        one), then events, audit entries and outbox rows queued and inserted
        as one multi-row INSERT per table, and one UPDATE of the record for
        its fields and status together."""
        session = txn.session
        db = repo.Db.of(session)
        spec = txn.spec
        before = {t.id: t for t in old.tasks}
        fresh: list[TaskState] = []
        for task in new.tasks:
            prev = before.get(task.id)
            if prev is None:
                fresh.append(task)
            elif prev != task:
                wake = task_wake_at(spec, task)
                if (prev.status, prev.action, prev.comment, task_wake_at(spec, prev)) == (
                        task.status, task.action, task.comment, wake):
                    continue
                expected = guard[1] if guard is not None and guard[0] == task.id else None
                if not repo.update_task_fast(db, txn.instance_id, task.id, status=task.status, action=task.action,
                                             comment=task.comment, acted_at=task.acted_at, wake_at=wake,
                                             expected_version=expected):
                    raise _Retry()
                txn.updated[task.id] = (task, wake)
        if fresh:
            txn.ids.update(repo.insert_tasks_fast(db, txn.instance_id, [
                {"seq": t.id, "step_id": t.step_id, "assignee": t.assignee, "kind": t.kind, "status": t.status,
                 "due_at": t.due_at, "wake_at": task_wake_at(spec, t), "created_at": t.created_at}
                for t in fresh
            ]))
            txn.fresh = fresh
        base = {"instance_id": txn.instance_id, "record_id": txn.record_id, "workflow_id": spec.id,
                "workflow_version": txn.version, "form_id": txn.form_id}
        for effect in effects:
            if isinstance(effect, (CreateTask, CloseTask)):
                continue  # the task rows were synced from the state above
            if isinstance(effect, SetField):
                self._set_fields(txn, dict(effect.values))
            elif isinstance(effect, Emit):
                payload = {**base, **effect.payload}
                if effect.name == "task.created":
                    payload["seq"] = payload["task_id"]
                    payload["task_id"] = txn.ids.get(int(payload["task_id"]))
                repo.queue_event(session, effect.name, "workflow_instance", txn.instance_id, payload, txn.now)
            elif isinstance(effect, Notify):
                self._notify(txn, effect)
        status = (RECORD_STATUS[new.status] if old.status != new.status and new.status in RECORD_STATUS
                  else None)
        if txn.data_changed:
            if not repo.update_record_fast(db, txn.record_id, expected_version=txn.record_version - 1,
                                           data=txn.record_data, now=txn.now,
                                           status=status or txn.record_status):
                raise _Retry()
        elif status is not None:
            repo.set_record_status_fast(db, txn.record_id, status)
        if status is not None:
            txn.record_status = status
        if status == "approved":
            self._campaign_of_request(txn)  # issue 14: an approved request becomes a campaign
        repo.queue_audit(session, at=txn.now, actor=actor, action=f"workflow.{type(event).__name__.lower()}",
                         entity_type="workflow_instance", entity_id=txn.instance_id,
                         diff={"event": event_to_json(event), "status": [old.status, new.status]})
        txn.messages += repo.flush_pending(session)
        if txn.data_changed or status is not None:
            # RecordService.create reads this instead of reading the record back
            session.info.setdefault("pf.records", {})[txn.record_id] = (
                txn.record_data, txn.record_version, txn.record_status)

    def _campaign_of_request(self, txn: _Txn) -> None:
        """Write the campaign of an approved record whose form declares one
        (``campaign:``), in this transaction; see engine/campaigns/requests.py."""
        from engine.campaigns.requests import create_from_request
        from engine.storage.times import to_db_time

        try:
            form, _ = self._registry.form(txn.form_id, txn.form_version)
        except UnknownForm:
            return
        if form.campaign is None:
            return
        made = create_from_request(txn.session, form, self._registry.current(), record_id=txn.record_id,
                                   data=txn.record_data, now=to_db_time(txn.now))
        if made is not None:
            repo.queue_audit(txn.session, at=txn.now, actor="workflow", action="campaign.created",
                             entity_type="campaign", entity_id=made, diff={"record_id": txn.record_id})

    def _set_fields(self, txn: _Txn, values: dict[str, Any]) -> None:
        """A workflow's set_field: changes the record's data in memory; ``_apply``
        writes it (compare-and-set on the version read) with the status."""
        changed = {k: {"old": txn.record_data.get(k), "new": v} for k, v in values.items()
                   if txn.record_data.get(k) != v}
        if not changed:
            return
        txn.record_data = {**txn.record_data, **values}
        if not txn.data_changed:
            txn.data_changed = True
            txn.record_version += 1
        repo.queue_audit(txn.session, at=txn.now, actor="workflow", action="record.updated", entity_type="record",
                         entity_id=txn.record_id, diff=changed)
        repo.queue_event(txn.session, "record.updated", "record", txn.record_id,
                         {"record_id": txn.record_id, "form_id": txn.form_id, "actor": "workflow",
                          "version": txn.record_version, "changed": sorted(changed)}, txn.now)

    def _record_context(self, txn: _Txn) -> dict[str, Any]:
        ctx = dict(txn.record_data)
        ctx["id"] = txn.record_id
        try:
            form, _ = self._registry.form(txn.form_id, txn.form_version)
        except UnknownForm:
            return ctx
        for f in form.fields:
            if f.options:
                labels = {o.value: o.label for o in f.options}
                value = ctx.get(f.key)
                ctx[f"{f.key}_label"] = (", ".join(str(labels.get(v, v)) for v in value) if isinstance(value, list)
                                         else labels.get(value, value) if value is not None else "")
        return ctx

    def _renderer(self, template: Any, channel: str) -> Any:
        """The template compiled once per (template spec, channel): parsing the
        Jinja source cost more than the rest of a notification."""
        from engine.templates import Renderer

        key = (id(template), channel)
        hit = self._renderers.get(key)
        if hit is None or hit[0] is not template:
            if len(self._renderers) > 512:
                self._renderers.clear()
            hit = self._renderers[key] = (template, Renderer(template, channel))
        return hit[1]

    def _notify(self, txn: _Txn, note: Notify) -> None:
        from engine import outbox
        from engine.templates import TemplateRenderError

        definitions = self._registry.current()
        template_id = note.template or f"workflow_{note.kind}"
        template = definitions.templates.get(template_id)
        if template is None:
            if note.template is not None:
                self._notify_failed(txn, note, None, f"unknown template `{template_id}`")
            return  # no template for this system notice: nothing to send
        channel = note.channel or template.channels[0]
        submitter_name = str(note.ctx.get("submitter", {}).get("username", ""))
        contacts = self._contacts(txn.session, [u for u in note.to if not u.startswith("customer:")] + [submitter_name])
        submitter = contacts.get(submitter_name)
        ctx = dict(note.ctx)
        ctx["record"] = self._record_context(txn)
        if submitter is not None:
            ctx["submitter"] = {"username": submitter.username, "name": submitter.display_name or submitter.username}
        ctx["instance"] = {"id": txn.instance_id, "workflow_id": txn.spec.id, "record_id": txn.record_id}
        ctx["base_url"] = self._base_url
        ctx["record"] = {**ctx["record"], "url": f"{self._base_url}/records/{txn.record_id}"}
        task = ctx.get("task")
        if isinstance(task, Mapping) and task.get("id") is not None:
            # The machine numbers tasks within the instance; links need the stored task's id.
            seq = int(task["id"])
            stored = txn.ids.get(seq)
            ctx["task"] = {**task, "seq": seq, "id": stored,
                           "url": f"{self._base_url}/tasks/{stored}" if stored is not None else ctx["record"]["url"]}
        delivery_class = template.delivery_class or "transactional"
        for to in note.to:
            address, customer_id, person = self._address(txn, channel, to, contacts)
            if address is None:
                self._notify_failed(txn, note, to, f"no {channel} address for `{to}`")
                continue
            try:
                conn = outbox.pick_connector(definitions, channel)
                item = outbox.OutboxItem(channel=channel, to=address, template_id=template_id,
                                         context={**ctx, "recipient": person},
                                         idempotency_key=f"wf:{txn.instance_id}:{note.key}:{to}",
                                         delivery_class=delivery_class, connector=conn.id, customer_id=customer_id)
                message = self._renderer(template, channel)(item.context)
            except (outbox.OutboxError, TemplateRenderError) as exc:
                self._notify_failed(txn, note, to, str(exc))
                continue
            # queued: the transition's outbox rows go in one INSERT (ON CONFLICT DO NOTHING)
            repo.queue_outbox(txn.session, outbox.row_for(item, message, conn, txn.now, template))

    def _contacts(self, session: Session, names: Sequence[str]) -> dict[str, repo.Contact]:
        """Contacts of users, through the directory cache."""
        wanted = sorted(set(names))
        if not wanted:
            return {}
        return self._directory.get(("contacts", tuple(wanted)), lambda: repo.contacts_fast(repo.Db.of(session), wanted))

    def _address(self, txn: _Txn, channel: str, to: str,
                 contacts: Mapping[str, repo.Contact]) -> tuple[str | None, int | None, dict[str, Any]]:
        if to.startswith("customer:"):
            customer_id = int(to.split(":", 1)[1])
            name, email, phone = repo.customer_contact_fast(repo.Db.of(txn.session), customer_id)
            address = {"email": email, "sms": phone}.get(channel, to)
            return address, customer_id, {"name": name, "customer_id": customer_id}
        contact = contacts.get(to)
        if contact is None:
            return None, None, {"username": to, "name": to}
        person = {"username": to, "name": contact.display_name or to}
        address = {"email": contact.email, "sms": contact.phone}.get(channel, to)
        return address, None, person

    def _notify_failed(self, txn: _Txn, note: Notify, to: str | None, reason: str) -> None:
        repo.queue_event(txn.session, "workflow.notify_failed", "workflow_instance", txn.instance_id,
                         {"instance_id": txn.instance_id, "record_id": txn.record_id, "kind": note.kind,
                          "template": note.template, "to": to, "reason": reason}, txn.now)


def _step_map(spec: WorkflowSpec) -> dict[str, WorkflowStep]:
    from engine.approvals.machine import steps_by_id

    return steps_by_id(spec)


__all__ = [
    "RECORD_STATUS",
    "BulkResult",
    "InstanceView",
    "NoWorkflow",
    "NotAssigned",
    "StaleTask",
    "TaskClosed",
    "TaskNotFound",
    "TaskView",
    "TickReport",
    "WorkflowService",
]
