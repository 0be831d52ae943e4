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
    Notify,
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
from engine.storage.audit import append_audit
from engine.storage.database import transaction
from engine.storage.events_repo import append_event

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

class _DbDirectory:
    """The machine's Directory over the caller's session, memoized per transition."""

    def __init__(self, session: Session):
        self._session = session
        self._roles: dict[str, list[str]] = {}
        self._managers: dict[str, str | None] = {}
        self._exists: dict[str, bool] = {}

    def users_in_role(self, role: str) -> Sequence[str]:
        if role not in self._roles:
            self._roles[role] = repo.users_in_role(self._session, role)
        return self._roles[role]

    def manager_of(self, username: str) -> str | None:
        if username not in self._managers:
            self._managers[username] = repo.manager_of(self._session, username)
        return self._managers[username]

    def exists(self, username: str) -> bool:
        if username not in self._exists:
            self._exists[username] = repo.active_user(self._session, username)
        return self._exists[username]

    def account_manager_of(self, customer_id: int) -> str | None:
        return repo.account_manager_of(self._session, customer_id)


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
    ids: dict[int, int] = field(default_factory=dict)  # task seq -> task row id
    messages: int = 0


# ---------------------------------------------------------------------- service

class WorkflowService:
    """Approval flows of published workflows, bound to records by form."""

    def __init__(
        self, session_factory: sessionmaker[Session], registry: DefinitionRegistry,
        accounts: AccountService | None = None, *, tz: str = "Asia/Shanghai",
    ):
        self._sf = session_factory
        self._registry = registry
        self._accounts = accounts
        self._tz = tz
        self._records: RecordService | None = None
        self._step_maps: dict[tuple[str, int], dict[str, WorkflowStep]] = {}

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
        money = tuple(f.key for f in form_spec.fields if f.type == "money")
        submitter = record_row.created_by or ""
        event = Start(dict(record_row.data), submitter, now, money)
        old = InstanceState()
        new, effects = step(spec, old, event, _DbDirectory(session))
        instance_id = repo.insert_instance(
            session, workflow_id=spec.id, workflow_version=version, record_id=record_row.id,
            state=new.to_json(), status=new.status, now=now, finished=new.terminal,
        )
        txn = _Txn(session, instance_id, record_row.id, spec, version, now, record_row.form_id,
                   record_row.form_version, dict(record_row.data), record_row.version)
        self._apply(txn, old, new, effects, event, actor=submitter or None)
        return instance_id

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
        with self._sf() as session:
            rows = repo.tasks_for(session, username, statuses=statuses, form_id=form_id, overdue_first=overdue_first)
        return [self._task_view(r, now) for r in rows]

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
                repo.TaskRow(**{**r.__dict__, "record_id": inst.record_id, "form_id": form_id,
                                "workflow_id": inst.workflow_id, "workflow_version": inst.workflow_version}),
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
                with transaction(self._sf) as session:
                    task = repo.get_task(session, task_id)
                    if task is None:
                        raise TaskNotFound(task_id)
                    if task.assignee != actor:
                        raise NotAssigned(f"task {task_id} is not assigned to {actor}")
                    if expected_version is not None and task.version != expected_version:
                        raise StaleTask(f"task {task_id} is at version {task.version}, not {expected_version}")
                    if task.status != "open":
                        raise TaskClosed(f"task {task_id} is {task.status}")
                    inst = repo.get_instance(session, task.instance_id)
                    assert inst is not None
                    event = Act(task.seq, actor, action, comment, target, now=now)
                    done = self._transition(session, inst, event, actor=actor, guard=(task.seq, task.version))
                    assert done is not None
                    return self._view_after(session, inst, done, task.form_id or "", now)
            except _Retry:
                continue
            except repo.RETRYABLE:
                _time.sleep(0.005 * (attempt + 1))
                continue
            except ActionError as exc:
                raise self._with_current(exc, task_id=task_id, now=now) from None
        raise StaleTask(f"task {task_id}: too many concurrent changes", self._current_for_task(task_id, now))

    def withdraw(self, record_id: int, *, actor: str, now: datetime) -> InstanceView:
        """The submitter withdraws (撤回) while no approver has acted (or while returned).

        Raises:
            NoWorkflow, ActionError (not_submitter, already_acted, not_running).
        """
        return self._command(record_id, lambda inst, data: Withdraw(actor, now), actor=actor, now=now)

    def resubmit(self, record_id: int, payload: Mapping[str, Any], *, actor: str, now: datetime) -> InstanceView:
        """The submitter edits a returned record (validated as a record update)
        and sends it again: the flow restarts from its first step on the new data.

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
        if current.status != "returned":
            raise self._with_current(
                ActionError("not_running", f"only a returned request can be resubmitted (it is {current.status})"),
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
                    now: datetime | None) -> InstanceView:
        """The view of an instance just stepped to ``state``, read in the same transaction."""
        after = repo.InstanceRow(inst.id, inst.workflow_id, inst.workflow_version, inst.record_id, {}, state.status,
                                 inst.version + 1, inst.started_at, now if state.terminal else inst.finished_at)
        return self._instance_view(after, repo.tasks_of_instance(session, inst.id), form_id, now, state)

    def _transition(self, session: Session, inst: repo.InstanceRow, event: Event, *, actor: str | None,
                    guard: tuple[int, int] | None = None, report: TickReport | None = None) -> InstanceState | None:
        """Step the instance with ``event`` and store everything; None when the
        event changed nothing (a tick with nothing due).

        Raises:
            ActionError: the machine refused the event.
            _Retry: another transition changed the instance or task first.
        """
        spec, _ = self._registry.workflow(inst.workflow_id, inst.workflow_version)
        old = InstanceState.from_json(inst.state)
        new, effects = step(spec, old, event, _DbDirectory(session))
        if not effects and new == old:
            return None
        if not repo.update_instance(session, inst.id, expected_version=inst.version, state=new.to_json(),
                                    status=new.status, finished_at=event.now if new.terminal else None):
            raise _Retry()
        record = repo.get_record(session, inst.record_id)
        assert record is not None
        txn = _Txn(session, inst.id, inst.record_id, spec, inst.workflow_version, event.now, record.form_id,
                   record.form_version, dict(record.data), record.version)
        self._apply(txn, old, new, effects, event, actor=actor, guard=guard)
        if report is not None:
            fresh = new.history[len(old.history):]
            report.reminders += sum(1 for h in fresh if h.action == "remind")
            report.escalations += sum(1 for h in fresh if h.action == "escalate")
            report.auto_actions += sum(1 for h in fresh if h.actor == "system" and h.action in ("approve", "reject"))
            report.messages += txn.messages
        return new

    def _apply(self, txn: _Txn, old: InstanceState, new: InstanceState, effects: Sequence[Any], event: Event, *,
               actor: str | None, guard: tuple[int, int] | None = None) -> None:
        session = txn.session
        before = {t.id: t for t in old.tasks}
        fresh: list[TaskState] = []
        for task in new.tasks:
            prev = before.get(task.id)
            if prev is None:
                fresh.append(task)
            elif prev != task and (prev.status, prev.action, prev.comment, task_wake_at(txn.spec, prev)) != (
                    task.status, task.action, task.comment, task_wake_at(txn.spec, task)):
                expected = guard[1] if guard is not None and guard[0] == task.id else None
                if not repo.update_task(session, txn.instance_id, task.id, status=task.status, action=task.action,
                                        comment=task.comment, acted_at=task.acted_at,
                                        wake_at=task_wake_at(txn.spec, task), expected_version=expected):
                    raise _Retry()
        if fresh:
            txn.ids.update(repo.insert_tasks(session, txn.instance_id, [
                {"seq": t.id, "step_id": t.step_id, "assignee": t.assignee, "kind": t.kind, "status": t.status,
                 "due_at": t.due_at, "wake_at": task_wake_at(txn.spec, t), "created_at": t.created_at}
                for t in fresh
            ]))
        base = {"instance_id": txn.instance_id, "record_id": txn.record_id, "workflow_id": txn.spec.id,
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
                append_event(session, effect.name, "workflow_instance", txn.instance_id, payload, txn.now)
            elif isinstance(effect, Notify):
                self._notify(txn, effect)
        if old.status != new.status and new.status in RECORD_STATUS:
            repo.set_record_status(session, txn.record_id, RECORD_STATUS[new.status])
        append_audit(session, at=txn.now, actor=actor, action=f"workflow.{type(event).__name__.lower()}",
                     entity_type="workflow_instance", entity_id=txn.instance_id,
                     diff={"event": event_to_json(event), "status": [old.status, new.status]})

    def _set_fields(self, txn: _Txn, values: dict[str, Any]) -> None:
        data = {**txn.record_data, **values}
        changed = {k: {"old": txn.record_data.get(k), "new": v} for k, v in values.items()
                   if txn.record_data.get(k) != v}
        if not changed:
            return
        if not repo.update_record_data(txn.session, txn.record_id, expected_version=txn.record_version,
                                       data=data, now=txn.now):
            raise _Retry()
        txn.record_data = data
        txn.record_version += 1
        append_audit(txn.session, at=txn.now, actor="workflow", action="record.updated", entity_type="record",
                     entity_id=txn.record_id, diff=changed)
        append_event(txn.session, "record.updated", "record", txn.record_id,
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
        contacts = repo.contacts(txn.session, [u for u in note.to if not u.startswith("customer:")] + [submitter_name])
        submitter = contacts.get(submitter_name)
        ctx = dict(note.ctx)
        ctx["record"] = self._record_context(txn)
        if submitter is not None:
            ctx["submitter"] = {"username": submitter.username, "name": submitter.display_name or submitter.username}
        ctx["instance"] = {"id": txn.instance_id, "workflow_id": txn.spec.id, "record_id": txn.record_id}
        for to in note.to:
            address, customer_id, person = self._address(txn, channel, to, contacts)
            if address is None:
                self._notify_failed(txn, note, to, f"no {channel} address for `{to}`")
                continue
            try:
                msg_id = outbox.enqueue(
                    txn.session, channel=channel, to=address, template_id=template_id,
                    context={**ctx, "recipient": person}, now=txn.now,
                    idempotency_key=f"wf:{txn.instance_id}:{note.key}:{to}",
                    delivery_class=template.delivery_class or "transactional", definitions=definitions,
                    customer_id=customer_id,
                )
            except (outbox.OutboxError, TemplateRenderError) as exc:
                self._notify_failed(txn, note, to, str(exc))
                continue
            if msg_id is not None:
                txn.messages += 1

    def _address(self, txn: _Txn, channel: str, to: str,
                 contacts: Mapping[str, repo.Contact]) -> tuple[str | None, int | None, dict[str, Any]]:
        if to.startswith("customer:"):
            customer_id = int(to.split(":", 1)[1])
            name, email, phone = repo.customer_contact(txn.session, customer_id)
            address = {"email": email, "sms": phone}.get(channel, to)
            return address, customer_id, {"name": name, "customer_id": customer_id}
        contact = contacts.get(to)
        if contact is None:
            return None, None, {"username": to, "name": to}
        person = {"username": to, "name": contact.display_name or to}
        address = {"email": contact.email, "sms": contact.phone}.get(channel, to)
        return address, None, person

    def _notify_failed(self, txn: _Txn, note: Notify, to: str | None, reason: str) -> None:
        append_event(txn.session, "workflow.notify_failed", "workflow_instance", txn.instance_id,
                     {"instance_id": txn.instance_id, "record_id": txn.record_id, "kind": note.kind,
                      "template": note.template, "to": to, "reason": reason}, txn.now)


def _step_map(spec: WorkflowSpec) -> dict[str, WorkflowStep]:
    from engine.approvals.machine import _index

    return {sid: pos.step for sid, pos in _index(spec).pos.items()}


__all__ = [
    "RECORD_STATUS",
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
