"""The approval state machine: ``step(spec, state, event, directory) -> (state, effects)``.

Pure: no clock (every event carries ``now``), no database, no I/O. The spec
is the immutable definition version the instance started on; the state is
plain data that round-trips through JSON (``to_json``/``from_json``, with a
``format`` key so stored states can be migrated one version at a time).
Effects are data the host executes: create/close task rows, notifications
(outbox), record field updates, domain events.

Positions in the flow are step ids (unique across a workflow, a checked
invariant): ``active`` lists the approval steps waiting on people, ``joins``
the parallel steps waiting for their lanes.

Task actions: approve, reject (ends the flow, or re-enters the step's
``reject_to``), return (退回: the instance waits for ``Resubmit``), transfer
(转交), add_approver (加签), comment. Approval modes: any (或签), all (会签),
sequential (依次审批), threshold (N of M). Each task holds a ``slot``: tasks of
one slot (a transfer, an escalation) stand for one vote, the first decision
in a slot wins.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol

from engine.conditions.ast import Condition
from engine.conditions.predicate import Predicate, compile_predicate
from engine.definitions.specs import (
    ApprovalSpec,
    Assignees,
    BranchSpec,
    FieldSpec,
    OverdueSpec,
    ParallelSpec,
    Recipient,
    SendSpec,
    SetFieldSpec,
    WorkflowAction,
    WorkflowSpec,
    WorkflowStep,
)
from engine.forms.values import condition_row

from .duties import TARGET_IS_SUBMITTER, self_approval_allowed, target_refusal

#: Version of the stored state layout; ``InstanceState.from_json`` migrates older ones.
FORMAT = 1
TERMINAL = frozenset({"approved", "rejected", "withdrawn"})
#: Statuses from which the submitter may send the request again (a new round).
RESUBMITTABLE = frozenset({"returned", "withdrawn"})
#: Actions that count as "someone acted" (withdraw is refused after one).
DECISIONS = frozenset({"approve", "reject", "return", "transfer", "add_approver"})
ACTIONS = DECISIONS | {"comment"}
SYSTEM = "system"


# ------------------------------------------------------------------ directory

class Directory(Protocol):
    """Who is who, as the host knows it when it calls ``step``."""

    def users_in_role(self, role: str) -> Sequence[str]:
        """Active user names holding ``role``, in a stable order."""

    def manager_of(self, username: str) -> str | None:
        """The user's manager (user name), if any."""

    def exists(self, username: str) -> bool:
        """Is this an active user who may receive tasks?"""

    def account_manager_of(self, customer_id: int) -> str | None:
        """The customer's account manager (user name), if any."""


@dataclass(frozen=True)
class StaticDirectory:
    """A Directory from plain mappings (tests, replays, the bench)."""

    roles: Mapping[str, Sequence[str]] = field(default_factory=dict)
    managers: Mapping[str, str] = field(default_factory=dict)
    users: frozenset[str] = frozenset()
    account_managers: Mapping[int, str] = field(default_factory=dict)

    def users_in_role(self, role: str) -> Sequence[str]:
        return tuple(self.roles.get(role, ()))

    def manager_of(self, username: str) -> str | None:
        return self.managers.get(username)

    def exists(self, username: str) -> bool:
        return username in self.users or any(username in v for v in self.roles.values())

    def account_manager_of(self, customer_id: int) -> str | None:
        return self.account_managers.get(customer_id)


# ----------------------------------------------------------------------- errors

class ActionError(Exception):
    """An event the state cannot take. ``code``: unknown_task, not_assigned,
    task_closed, not_running, not_allowed, bad_action, bad_target,
    not_submitter, already_acted, target_is_submitter, target_already_decided
    (separation of duties, :mod:`engine.approvals.duties`)."""

    def __init__(self, code: str, message: str):
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


# ----------------------------------------------------------------------- events

def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


@dataclass(frozen=True)
class Start:
    """A record was submitted. ``money_fields``: keys whose text values are
    money (the form's), turned to Decimal before conditions see them."""

    record_data: Mapping[str, Any]
    submitter: str
    now: datetime
    money_fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class Act:
    """A person acts on one of their tasks; ``target``: user for transfer/add_approver."""

    task_id: int
    actor: str
    action: str
    comment: str | None = None
    target: str | None = None
    now: datetime = field(kw_only=True)


@dataclass(frozen=True)
class Resubmit:
    """The submitter sends a returned or withdrawn record again (with its edited
    data): a new round from the first step, so a withdrawn request is no dead end."""

    record_data: Mapping[str, Any]
    now: datetime


@dataclass(frozen=True)
class Withdraw:
    """The submitter takes the request back (撤回)."""

    actor: str
    now: datetime


@dataclass(frozen=True)
class Remind:
    """The submitter nudges (催办) the assignee of an overdue open task: the
    same ``reminder`` notice the tick sends, at most once per
    :data:`SUBMITTER_REMIND_EVERY` per task."""

    actor: str
    task_id: int
    now: datetime


@dataclass(frozen=True)
class Tick:
    """The scheduler's heartbeat: reminders and escalations due by ``now``."""

    now: datetime


Event = Start | Act | Resubmit | Withdraw | Remind | Tick
#: How often the submitter may remind the assignee of one task.
SUBMITTER_REMIND_EVERY = timedelta(hours=1)


def event_to_json(event: Event) -> dict[str, Any]:
    """A JSON-ready dict of ``event`` (``type`` key + fields; times as ISO text)."""
    out: dict[str, Any] = {"type": type(event).__name__}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, Mapping):
            value = dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def event_from_json(data: Mapping[str, Any]) -> Event:
    """Inverse of :func:`event_to_json`."""
    kind = data["type"]
    now = datetime.fromisoformat(data["now"])
    if kind == "Start":
        return Start(dict(data["record_data"]), data["submitter"], now, tuple(data.get("money_fields", ())))
    if kind == "Act":
        return Act(int(data["task_id"]), data["actor"], data["action"], data.get("comment"), data.get("target"), now=now)
    if kind == "Resubmit":
        return Resubmit(dict(data["record_data"]), now)
    if kind == "Withdraw":
        return Withdraw(data["actor"], now)
    if kind == "Remind":
        return Remind(data["actor"], int(data["task_id"]), now)
    if kind == "Tick":
        return Tick(now)
    raise ValueError(f"unknown event type {kind!r}")


# ----------------------------------------------------------------------- effects

@dataclass(frozen=True)
class CreateTask:
    task: TaskState


@dataclass(frozen=True)
class CloseTask:
    task_id: int
    status: str
    action: str | None


@dataclass(frozen=True)
class Notify:
    """A message to send. ``kind``: send (a ``send`` step or on_approve/on_reject
    action: ``template`` set), or a system notice without a template of its
    own: task_assigned, reminder, cc, returned, withdrawn (the host picks the
    published template of that name, if any). ``to``: user names, or
    ``customer:<id>``. ``key``: unique within the instance (idempotency)."""

    kind: str
    channel: str | None
    template: str | None
    to: tuple[str, ...]
    ctx: Mapping[str, Any]
    key: str


@dataclass(frozen=True)
class SetField:
    values: Mapping[str, Any]


@dataclass(frozen=True)
class Emit:
    name: str
    payload: Mapping[str, Any]


Effect = CreateTask | CloseTask | Notify | SetField | Emit


# ------------------------------------------------------------------------ state

@dataclass(frozen=True)
class TaskState:
    """One person's task. ``status``: open, done, cancelled, or cc (a
    carbon copy: nothing to do). ``slot``: tasks standing for one vote."""

    id: int
    step_id: str
    assignee: str
    slot: int
    visit: int
    created_at: datetime
    kind: str = "approval"
    status: str = "open"
    origin: str = "assigned"
    due_at: datetime | None = None
    next_remind_at: datetime | None = None
    reminders: int = 0
    escalated: bool = False
    action: str | None = None
    comment: str | None = None
    acted_at: datetime | None = None
    acted_by: str | None = None

    def to_json(self) -> dict[str, Any]:
        # by hand: dataclasses.asdict deep-copies, and this runs for every task on every transition
        return {
            "id": self.id, "step_id": self.step_id, "assignee": self.assignee, "slot": self.slot,
            "visit": self.visit, "created_at": _iso(self.created_at), "kind": self.kind, "status": self.status,
            "origin": self.origin, "due_at": _iso(self.due_at), "next_remind_at": _iso(self.next_remind_at),
            "reminders": self.reminders, "escalated": self.escalated, "action": self.action,
            "comment": self.comment, "acted_at": _iso(self.acted_at), "acted_by": self.acted_by,
        }

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> TaskState:
        d = dict(d)
        for k in ("created_at", "due_at", "next_remind_at", "acted_at"):
            d[k] = _dt(d.get(k))
        return TaskState(**d)


@dataclass(frozen=True)
class ActiveStep:
    """An approval step waiting on people. ``queue``: the sequential mode's
    approvers still to come; ``visit``: which entry into the step this is."""

    step_id: str
    visit: int
    next_slot: int
    queue: tuple[str, ...] = ()


@dataclass(frozen=True)
class Join:
    step_id: str
    done: tuple[str, ...] = ()


@dataclass(frozen=True)
class HistoryEntry:
    at: datetime
    actor: str | None
    action: str
    step_id: str | None = None
    comment: str | None = None
    task_id: int | None = None
    target: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "actor": self.actor, "action": self.action, "step_id": self.step_id,
                "comment": self.comment, "task_id": self.task_id, "target": self.target}

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> HistoryEntry:
        return HistoryEntry(datetime.fromisoformat(d["at"]), d.get("actor"), d["action"], d.get("step_id"),
                            d.get("comment"), d.get("task_id"), d.get("target"))


@dataclass(frozen=True)
class InstanceState:
    """Everything the machine knows about one instance. ``status``: new,
    running, returned, approved, rejected, withdrawn. ``marks``: how each
    finished step ended (approved, rejected, skipped, done), for the diagram."""

    status: str = "new"
    submitter: str = ""
    record: Mapping[str, Any] = field(default_factory=dict)
    money_fields: tuple[str, ...] = ()
    tasks: tuple[TaskState, ...] = ()
    active: tuple[ActiveStep, ...] = ()
    joins: tuple[Join, ...] = ()
    marks: Mapping[str, str] = field(default_factory=dict)
    history: tuple[HistoryEntry, ...] = ()
    acted: bool = False
    visits: int = 0
    notices: int = 0
    format: int = FORMAT

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def open_tasks(self) -> tuple[TaskState, ...]:
        return tuple(t for t in self.tasks if t.status == "open")

    @property
    def current_steps(self) -> tuple[str, ...]:
        return tuple(a.step_id for a in self.active)

    def task(self, task_id: int) -> TaskState | None:
        for t in self.tasks:
            if t.id == task_id:
                return t
        return None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; ``InstanceState.from_json(s.to_json()) == s``."""
        return {
            "format": self.format, "status": self.status, "submitter": self.submitter, "record": dict(self.record),
            "money_fields": list(self.money_fields), "tasks": [t.to_json() for t in self.tasks],
            "active": [{"step_id": a.step_id, "visit": a.visit, "next_slot": a.next_slot, "queue": list(a.queue)}
                       for a in self.active],
            "joins": [{"step_id": j.step_id, "done": list(j.done)} for j in self.joins],
            "marks": dict(self.marks), "history": [h.to_json() for h in self.history],
            "acted": self.acted, "visits": self.visits, "notices": self.notices,
        }

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> InstanceState:
        """Read a stored state, migrating older formats first.

        Raises:
            ValueError: a format newer than this code knows.
        """
        data = _migrate(dict(data))
        return InstanceState(
            status=data["status"], submitter=data["submitter"], record=dict(data["record"]),
            money_fields=tuple(data.get("money_fields", ())),
            tasks=tuple(TaskState.from_json(t) for t in data["tasks"]),
            active=tuple(ActiveStep(a["step_id"], a["visit"], a["next_slot"], tuple(a.get("queue", ())))
                         for a in data["active"]),
            joins=tuple(Join(j["step_id"], tuple(j["done"])) for j in data["joins"]),
            marks=dict(data["marks"]), history=tuple(HistoryEntry.from_json(h) for h in data["history"]),
            acted=bool(data["acted"]), visits=int(data["visits"]), notices=int(data["notices"]),
            format=FORMAT,
        )


def _migrate(data: dict[str, Any]) -> dict[str, Any]:
    """One function per format step (none yet: format 1 is the first)."""
    version = int(data.get("format", 1))
    if version > FORMAT:
        raise ValueError(f"instance state format {version} is newer than this code ({FORMAT})")
    return data


# --------------------------------------------------------------- spec indexing

@dataclass(frozen=True)
class _Pos:
    step: WorkflowStep
    seq: tuple[WorkflowStep, ...]
    index: int
    parent: str | None  # the branch/parallel step owning ``seq``
    lane: str | None  # parallel lane id, or "case:N" / "default" of a branch
    chain: tuple[tuple[str, int], ...]  # (sequence key, index) from the root down to this step


class _Index:
    def __init__(self, spec: WorkflowSpec):
        self.spec = spec
        self.pos: dict[str, _Pos] = {}
        self._walk(spec.steps, None, None, ())

    def _walk(self, seq: tuple[WorkflowStep, ...], parent: str | None, lane: str | None,
              chain: tuple[tuple[str, int], ...]) -> None:
        key = "" if parent is None else f"{parent}/{lane}"
        for i, st in enumerate(seq):
            here = chain + ((key, i),)
            self.pos[st.id] = _Pos(st, seq, i, parent, lane, here)
            if isinstance(st.action, BranchSpec):
                for j, case in enumerate(st.action.cases):
                    self._walk(case.steps, st.id, f"case:{j}", here)
                self._walk(st.action.default, st.id, "default", here)
            elif isinstance(st.action, ParallelSpec):
                for lane_spec in st.action.branches:
                    self._walk(lane_spec.steps, st.id, lane_spec.id, here)

    def inside(self, step_id: str, region: tuple[tuple[str, int], ...], at_or_after: bool) -> bool:
        """Is ``step_id`` the step at ``region`` or (``at_or_after``) one after it
        in the same sequence, or nested inside such a step?"""
        chain = self.pos[step_id].chain
        depth = len(region)
        if len(chain) < depth or chain[:depth - 1] != region[:-1]:
            return False
        key, index = chain[depth - 1]
        return key == region[-1][0] and (index >= region[-1][1] if at_or_after else index == region[-1][1])


_INDEXES: dict[int, tuple[WorkflowSpec, _Index]] = {}


def _index(spec: WorkflowSpec) -> _Index:
    hit = _INDEXES.get(id(spec))
    if hit is not None and hit[0] is spec:
        return hit[1]
    if len(_INDEXES) > 256:
        _INDEXES.clear()
    idx = _Index(spec)
    _INDEXES[id(spec)] = (spec, idx)
    return idx


def steps_by_id(spec: WorkflowSpec) -> dict[str, WorkflowStep]:
    """Every step of ``spec`` by its id, nested steps (branches, lanes) included."""
    return {sid: pos.step for sid, pos in _index(spec).pos.items()}


_PREDICATES: dict[int, tuple[Condition, Predicate]] = {}


def _predicate(cond: Condition) -> Predicate:
    hit = _PREDICATES.get(id(cond))
    if hit is not None and hit[0] is cond:
        return hit[1]
    if len(_PREDICATES) > 4096:
        _PREDICATES.clear()
    pred = compile_predicate(cond)
    _PREDICATES[id(cond)] = (cond, pred)
    return pred


@lru_cache(maxsize=256)
def _money_specs(keys: tuple[str, ...]) -> tuple[FieldSpec, ...]:
    return tuple(FieldSpec(key=k, type="money", label=k) for k in keys)


# ------------------------------------------------------------------ the working copy

class _Work:
    """A mutable copy of the state while one event is applied."""

    def __init__(self, spec: WorkflowSpec, state: InstanceState, directory: Directory, now: datetime):
        self.spec = spec
        self.idx = _index(spec)
        self.directory = directory
        self.now = now
        self.status = state.status
        self.submitter = state.submitter
        self.record = dict(state.record)
        self.money_fields = state.money_fields
        self.tasks: dict[int, TaskState] = {t.id: t for t in state.tasks}
        self.active: dict[str, ActiveStep] = {a.step_id: a for a in state.active}
        self.joins: dict[str, list[str]] = {j.step_id: list(j.done) for j in state.joins}
        self.marks = dict(state.marks)
        self.history = list(state.history)
        self.acted = state.acted
        self.visits = state.visits
        self.notices = state.notices
        self.effects: list[Effect] = []
        self.actor: str | None = SYSTEM  # who caused this event (the final approver of a flow)

    def freeze(self) -> InstanceState:
        return InstanceState(
            status=self.status, submitter=self.submitter, record=self.record, money_fields=self.money_fields,
            tasks=tuple(self.tasks.values()), active=tuple(self.active.values()),
            joins=tuple(Join(k, tuple(v)) for k, v in self.joins.items()), marks=self.marks,
            history=tuple(self.history), acted=self.acted, visits=self.visits, notices=self.notices,
        )

    # --- small helpers -----------------------------------------------------------

    def log(self, action: str, actor: str | None = SYSTEM, step_id: str | None = None, comment: str | None = None,
            task_id: int | None = None, target: str | None = None) -> None:
        self.history.append(HistoryEntry(self.now, actor, action, step_id, comment, task_id, target))

    def row(self) -> dict[str, Any]:
        return condition_row(_money_specs(self.money_fields), self.record)

    def holds(self, cond: Condition | None) -> bool:
        return cond is None or _predicate(cond)(self.row(), self.now)

    def notify(self, kind: str, to: Sequence[str], *, channel: str | None = None, template: str | None = None,
               step_id: str | None = None, extra: Mapping[str, Any] | None = None) -> None:
        recipients = tuple(dict.fromkeys(u for u in to if u))
        if not recipients:
            return
        self.notices += 1
        ctx: dict[str, Any] = {"workflow": self.spec.id, "step_id": step_id, "record": dict(self.record),
                               "submitter": {"username": self.submitter, "name": self.submitter}}
        if extra:
            ctx.update(extra)
        self.effects.append(Notify(kind, channel, template, recipients, ctx, f"n{self.notices}"))

    def emit(self, name: str, **payload: Any) -> None:
        self.effects.append(Emit(name, payload))

    def close(self, task: TaskState, status: str, action: str | None, *, actor: str | None = None,
              comment: str | None = None) -> TaskState:
        closed = dataclasses.replace(task, status=status, action=action, comment=comment, acted_at=self.now,
                                     acted_by=actor, next_remind_at=None)
        self.tasks[task.id] = closed
        self.effects.append(CloseTask(task.id, status, action))
        return closed

    def new_task(self, step: WorkflowStep, assignee: str, slot: int, visit: int, *, origin: str = "assigned",
                 kind: str = "approval", due_at: datetime | None = None) -> TaskState:
        task_id = max(self.tasks, default=0) + 1
        if kind == "approval" and due_at is None and step.due is not None:
            due_at = self.now + step.due
        task = TaskState(task_id, step.id, assignee, slot, visit, self.now, kind=kind,
                         status="open" if kind == "approval" else "cc", origin=origin, due_at=due_at,
                         next_remind_at=first_reminder(due_at, step.on_overdue) if kind == "approval" else None)
        self.tasks[task_id] = task
        self.effects.append(CreateTask(task))
        if kind == "approval":
            self.emit("task.created", task_id=task_id, step_id=step.id, assignee=assignee,
                      due_at=_iso(due_at), origin=origin)
            self.notify("task_assigned", (assignee,), step_id=step.id,
                        extra={"task": {"id": task_id, "step_id": step.id, "title": step.title or step.id,
                                        "due_at": _iso(due_at)}})
        return task

    # --- people -----------------------------------------------------------------

    def people(self, who: Assignees) -> list[str]:
        if who.role is not None:
            found = list(self.directory.users_in_role(who.role))
        elif who.users:
            found = [u for u in who.users if self.directory.exists(u)]
        elif who.field is not None:
            found = [u for u in [self.person_in_field(who.field)] if u]
        elif who.manager:
            found = [u for u in [self.directory.manager_of(self.submitter)] if u]
        else:
            found = []
        return list(dict.fromkeys(found))

    def person_in_field(self, key: str) -> str | None:
        value = self.record.get(key)
        if isinstance(value, bool) or value is None:
            return None
        if isinstance(value, int):  # a customer field: that customer's account manager
            return self.directory.account_manager_of(value)
        if isinstance(value, str) and self.directory.exists(value):
            return value
        return None

    def recipients(self, to: Recipient | None) -> list[str]:
        if to is None or to.kind == "submitter":
            return [self.submitter]
        if to.kind == "manager":
            return [u for u in [self.directory.manager_of(self.submitter)] if u]
        if to.kind == "role":
            return list(self.directory.users_in_role(str(to.value)))
        if to.kind == "users":
            # Named people who have left (deactivated) get no more notices.
            values = to.value if isinstance(to.value, tuple) else (to.value,)
            return [str(u) for u in values if self.directory.exists(str(u))]
        if to.kind == "field":
            return [u for u in [self.person_in_field(str(to.value))] if u]
        customer = self.record.get("customer")
        if to.kind == "customer":
            return [f"customer:{customer}"] if isinstance(customer, int) else []
        if to.kind == "account_manager":
            return [u for u in [self.directory.account_manager_of(customer)] if u] if isinstance(customer, int) else []
        return []

    # --- walking the flow ----------------------------------------------------------

    def run_action(self, action: WorkflowAction, step_id: str | None, extra: Mapping[str, Any] | None = None) -> None:
        if isinstance(action, SendSpec):
            self.notify("send", self.recipients(action.to), channel=action.channel, template=action.template,
                        step_id=step_id, extra=extra)
        elif isinstance(action, SetFieldSpec):
            values = dict(action.values)
            self.record.update(values)
            self.effects.append(SetField(values))
        elif isinstance(action, Assignees):
            people = self.people(action)
            if step_id is not None:
                step = self.idx.pos[step_id].step
                for person in people:
                    self.new_task(step, person, 0, self.visits, kind="cc")
            self.notify("cc", people, step_id=step_id, extra=extra)

    def enter(self, step_id: str) -> None:
        if self.terminal_or_waiting():
            return
        pos = self.idx.pos[step_id]
        st = pos.step
        if not self.holds(st.when):
            self.marks[st.id] = "skipped"
            self.log("skip", step_id=st.id)
            self.advance(st.id)
            return
        action = st.action
        if isinstance(action, ApprovalSpec):
            people = self.people(action.assignees)
            if not people:
                self.marks[st.id] = "skipped"
                self.log("no_approver", step_id=st.id)
                self.advance(st.id)
                return
            self.visits += 1
            self.marks.pop(st.id, None)
            if action.mode == "sequential":
                self.active[st.id] = ActiveStep(st.id, self.visits, 2, tuple(people[1:]))
                self.new_task(st, people[0], 1, self.visits)
            else:
                self.active[st.id] = ActiveStep(st.id, self.visits, len(people) + 1)
                for slot, person in enumerate(people, start=1):
                    self.new_task(st, person, slot, self.visits)
            return
        if isinstance(action, BranchSpec):
            chosen: tuple[WorkflowStep, ...] = action.default
            label = "default"
            for j, case in enumerate(action.cases):
                if self.holds(case.when):
                    chosen, label = case.steps, f"case:{j}"
                    break
            self.log("branch", step_id=st.id, target=label)
            if chosen:
                self.enter(chosen[0].id)
            else:
                self.marks[st.id] = "done"
                self.advance(st.id)
            return
        if isinstance(action, ParallelSpec):
            self.joins[st.id] = []
            for lane in action.branches:
                if self.status != "running":
                    return
                self.enter(lane.steps[0].id)
            return
        self.visits += 1
        self.run_action(action, st.id)
        self.marks[st.id] = "done"
        self.advance(st.id)

    def terminal_or_waiting(self) -> bool:
        return self.status != "running"

    def advance(self, step_id: str) -> None:
        """``step_id`` finished: go to the next step, close a lane, or finish."""
        pos = self.idx.pos[step_id]
        if pos.index + 1 < len(pos.seq):
            self.enter(pos.seq[pos.index + 1].id)
            return
        if pos.parent is None:
            self.finish("approved")
            return
        parent = self.idx.pos[pos.parent].step
        if isinstance(parent.action, BranchSpec):
            self.marks[parent.id] = "done"
            self.advance(parent.id)
            return
        done = self.joins.setdefault(parent.id, [])
        if pos.lane not in done:
            done.append(str(pos.lane))
        assert isinstance(parent.action, ParallelSpec)
        if len(done) == len(parent.action.branches):
            del self.joins[parent.id]
            self.marks[parent.id] = "done"
            self.advance(parent.id)

    def finish(self, outcome: str, *, actor: str | None = None, comment: str | None = None,
               step_id: str | None = None) -> None:
        actor = actor or self.actor
        for t in list(self.tasks.values()):
            if t.status == "open":
                self.close(t, "cancelled", None)
        self.active.clear()
        self.joins.clear()
        self.status = outcome
        self.log(outcome, actor=actor, step_id=step_id, comment=comment)
        extra = {"task": {"comment": comment, "actor": actor, "step_id": step_id}}
        for action in self.spec.on_approve if outcome == "approved" else self.spec.on_reject:
            self.run_action(action, None, extra)
        self.emit(f"workflow.{outcome}", step_id=step_id, actor=actor, comment=comment)

    # --- deciding a step ------------------------------------------------------------

    def step_tasks(self, active: ActiveStep) -> list[TaskState]:
        return [t for t in self.tasks.values()
                if t.step_id == active.step_id and t.visit == active.visit and t.kind == "approval"]

    def slot_votes(self, active: ActiveStep) -> tuple[set[int], set[int], set[int]]:
        """(approved slots, rejected slots, slots still open)."""
        approved: set[int] = set()
        rejected: set[int] = set()
        open_: set[int] = set()
        for t in self.step_tasks(active):
            if t.status == "done" and t.action == "approve":
                approved.add(t.slot)
            elif t.status == "done" and t.action == "reject":
                rejected.add(t.slot)
            elif t.status == "open":
                open_.add(t.slot)
        return approved, rejected, open_ - approved - rejected

    def decide(self, active: ActiveStep, actor: str, comment: str | None) -> None:
        """After a vote: complete, reject, or keep waiting."""
        st = self.idx.pos[active.step_id].step
        assert isinstance(st.action, ApprovalSpec)
        mode = st.action.mode
        approved, rejected, open_ = self.slot_votes(active)
        if mode == "threshold":
            slots = len(approved | rejected | open_)
            needed = min(st.action.threshold or 1, slots)
            if len(approved) >= needed:
                return self.complete(active)
            if len(approved) + len(open_) < needed:
                return self.reject_step(active, actor, comment)
            return None
        if rejected:
            return self.reject_step(active, actor, comment)
        if mode == "any":
            if approved:
                return self.complete(active)
            return None
        if open_:
            return None
        if mode == "sequential" and active.queue:
            nxt, rest = active.queue[0], active.queue[1:]
            self.active[st.id] = dataclasses.replace(active, queue=rest, next_slot=active.next_slot + 1)
            self.new_task(st, nxt, active.next_slot, active.visit)
            return None
        return self.complete(active)

    def cancel_open(self, active: ActiveStep) -> None:
        for t in self.step_tasks(active):
            if t.status == "open":
                self.close(t, "cancelled", None)

    def complete(self, active: ActiveStep) -> None:
        self.cancel_open(active)
        del self.active[active.step_id]
        self.marks[active.step_id] = "approved"
        self.log("step_approved", step_id=active.step_id)
        self.advance(active.step_id)

    def reject_step(self, active: ActiveStep, actor: str, comment: str | None) -> None:
        st = self.idx.pos[active.step_id].step
        assert isinstance(st.action, ApprovalSpec)
        target = st.action.reject_to
        if target is None or target not in self.idx.pos:
            self.marks[st.id] = "rejected"
            self.finish("rejected", actor=actor, comment=comment, step_id=st.id)
            return
        # Undo everything from the target onwards in its own sequence: other
        # parallel lanes that do not descend from it keep running.
        region = self.idx.pos[target].chain
        for sid, other in list(self.active.items()):
            if self.idx.inside(sid, region, True):
                self.cancel_open(other)
                del self.active[sid]
        for jid in list(self.joins):
            if self.idx.inside(jid, region, True):
                del self.joins[jid]
        for sid in list(self.marks):
            if self.idx.inside(sid, region, True):
                del self.marks[sid]
        self.log("rejected_to", actor=actor, step_id=st.id, comment=comment, target=target)
        self.enter(target)


# ------------------------------------------------------------------------ step

def step(spec: WorkflowSpec, state: InstanceState, event: Event,
         directory: Directory) -> tuple[InstanceState, list[Effect]]:
    """Apply ``event`` to ``state`` under ``spec``; return the new state and the
    effects for the host to execute. ``state`` is not modified.

    Raises:
        ActionError: the event does not apply (not the assignee, task closed,
            action not allowed on this step, withdraw after someone acted, …).
    """
    w = _Work(spec, state, directory, event.now)
    if isinstance(event, Start):
        if state.status != "new":
            raise ActionError("not_running", "the instance has already started")
        w.status = "running"
        w.submitter = event.submitter
        w.record = dict(event.record_data)
        w.money_fields = tuple(event.money_fields)
        w.log("submit", actor=event.submitter)
        w.enter(spec.steps[0].id)
    elif isinstance(event, Act):
        _act(w, event)
    elif isinstance(event, Resubmit):
        if state.status not in RESUBMITTABLE:
            raise ActionError("not_running",
                              f"only a returned or withdrawn request can be resubmitted (it is {state.status})")
        w.status = "running"
        w.record = dict(event.record_data)
        w.acted = False
        w.marks.clear()
        w.log("resubmit", actor=w.submitter)
        w.enter(spec.steps[0].id)
    elif isinstance(event, Withdraw):
        _withdraw(w, event)
    elif isinstance(event, Remind):
        _remind(w, event)
    elif isinstance(event, Tick):
        _tick(w)
    else:  # pragma: no cover - the Event union is closed
        raise TypeError(f"not an event: {event!r}")
    return w.freeze(), w.effects


def _act(w: _Work, event: Act) -> None:
    w.actor = event.actor
    task = w.tasks.get(event.task_id)
    if task is None or task.kind != "approval":
        raise ActionError("unknown_task", f"no task {event.task_id}")
    if task.assignee != event.actor and event.actor != SYSTEM:
        raise ActionError("not_assigned", f"task {task.id} is assigned to someone else")
    if task.status != "open" or w.status != "running":
        raise ActionError("task_closed", f"task {task.id} is {task.status}")
    if event.action not in ACTIONS:
        raise ActionError("bad_action", f"unknown action `{event.action}`")
    active = w.active.get(task.step_id)
    if active is None or active.visit != task.visit:  # pragma: no cover - open tasks belong to active steps
        raise ActionError("task_closed", f"task {task.id} no longer belongs to an active step")
    st = w.idx.pos[task.step_id].step
    assert isinstance(st.action, ApprovalSpec)
    allow = st.action.allow
    actor, comment, action = event.actor, event.comment, event.action
    if action in ("return", "transfer", "add_approver") and action not in allow:
        raise ActionError("not_allowed", f"`{action}` is not allowed on step `{st.id}`")
    if action in ("transfer", "add_approver"):
        target = event.target
        if not target or not w.directory.exists(target):
            raise ActionError("bad_target", f"unknown user `{target}`")
        holders = {t.assignee for t in w.step_tasks(active) if t.status == "open"} | set(active.queue)
        if target in holders:
            raise ActionError("bad_target", f"`{target}` already has this step's task")
        if not self_approval_allowed(w.spec, st.id):
            refusal = target_refusal(target, submitter=w.submitter, history=w.history)
            if refusal == TARGET_IS_SUBMITTER:
                raise ActionError(refusal, f"`{target}` submitted this request and may not approve it")
            if refusal is not None:
                raise ActionError(refusal, f"`{target}` already decided on this request")
    if action == "comment":
        w.log("comment", actor=actor, step_id=st.id, comment=comment, task_id=task.id)
        return
    w.acted = True
    if action == "approve" or action == "reject":
        w.close(task, "done", action, actor=actor, comment=comment)
        for other in w.step_tasks(active):  # the first decision in a slot wins
            if other.slot == task.slot and other.status == "open":
                w.close(other, "cancelled", None)
        w.log(action, actor=actor, step_id=st.id, comment=comment, task_id=task.id)
        w.decide(active, actor, comment)
    elif action == "return":
        w.close(task, "done", "return", actor=actor, comment=comment)
        for t in list(w.tasks.values()):
            if t.status == "open":
                w.close(t, "cancelled", None)
        w.active.clear()
        w.joins.clear()
        w.status = "returned"
        w.log("return", actor=actor, step_id=st.id, comment=comment, task_id=task.id)
        w.notify("returned", (w.submitter,), step_id=st.id,
                 extra={"task": {"comment": comment, "actor": actor, "step_id": st.id}})
        w.emit("workflow.returned", step_id=st.id, actor=actor, comment=comment)
    elif action == "transfer":
        w.close(task, "done", "transfer", actor=actor, comment=comment)
        w.log("transfer", actor=actor, step_id=st.id, comment=comment, task_id=task.id, target=event.target)
        w.new_task(st, str(event.target), task.slot, task.visit, origin="transfer", due_at=task.due_at)
    elif action == "add_approver":
        w.log("add_approver", actor=actor, step_id=st.id, comment=comment, task_id=task.id, target=event.target)
        if st.action.mode == "sequential":
            w.active[st.id] = dataclasses.replace(active, queue=(str(event.target),) + active.queue)
        else:
            w.active[st.id] = dataclasses.replace(active, next_slot=active.next_slot + 1)
            w.new_task(st, str(event.target), active.next_slot, active.visit, origin="add_approver")


def _withdraw(w: _Work, event: Withdraw) -> None:
    if event.actor != w.submitter:
        raise ActionError("not_submitter", "only the submitter may withdraw the request")
    if w.status not in ("running", "returned"):
        raise ActionError("not_running", f"the request is already {w.status}")
    if w.status == "running" and w.acted:
        raise ActionError("already_acted", "an approver has already acted; the request can no longer be withdrawn")
    holders = [t.assignee for t in w.tasks.values() if t.status == "open"]
    for t in list(w.tasks.values()):
        if t.status == "open":
            w.close(t, "cancelled", None)
    w.active.clear()
    w.joins.clear()
    w.status = "withdrawn"
    w.log("withdraw", actor=event.actor)
    w.notify("withdrawn", holders)
    w.emit("workflow.withdrawn", actor=event.actor)


def _remind(w: _Work, event: Remind) -> None:
    if event.actor != w.submitter:
        raise ActionError("not_submitter", "only the submitter may remind the approver")
    task = w.tasks.get(event.task_id)
    if task is None or task.kind != "approval":
        raise ActionError("unknown_task", f"no task {event.task_id}")
    if task.status != "open" or w.status != "running":
        raise ActionError("task_closed", f"task {task.id} is {task.status}")
    if task.due_at is None or task.due_at > event.now:
        raise ActionError("not_overdue", f"task {task.id} is not overdue")
    last = max((h.at for h in w.history if h.action == "remind" and h.actor == event.actor
                and h.task_id == task.id), default=None)
    if last is not None and event.now - last < SUBMITTER_REMIND_EVERY:
        raise ActionError("too_soon", f"task {task.id} was reminded at {last.isoformat()}")
    st = w.idx.pos[task.step_id].step
    w.log("remind", actor=event.actor, step_id=task.step_id, task_id=task.id, target=task.assignee)
    w.notify("reminder", (task.assignee,), step_id=task.step_id,
             extra={"task": {"id": task.id, "step_id": task.step_id, "title": st.title or st.id,
                             "due_at": _iso(task.due_at), "reminders": task.reminders}})


def _tick(w: _Work) -> None:
    if w.status != "running":
        return
    now = w.now
    for task_id in sorted(w.tasks):
        task = w.tasks[task_id]
        if task.status != "open" or task.due_at is None:
            continue
        st = w.idx.pos[task.step_id].step
        overdue = st.on_overdue
        task, remind, escalate = overdue_tick(task, st.remind_every, overdue, now)
        w.tasks[task_id] = task
        if remind:
            w.log("remind", step_id=task.step_id, task_id=task.id, target=task.assignee)
            w.notify("reminder", (task.assignee,), step_id=task.step_id,
                     extra={"task": {"id": task.id, "step_id": task.step_id, "title": st.title or st.id,
                                     "due_at": _iso(task.due_at), "reminders": task.reminders}})
        if not escalate or overdue is None:
            continue
        active = w.active.get(task.step_id)
        if active is None or active.visit != task.visit:  # pragma: no cover - defensive
            continue
        if overdue.escalate_to is not None:
            holders = {t.assignee for t in w.step_tasks(active) if t.status == "open"}
            people = [p for p in w.people(overdue.escalate_to) if p not in holders]
            w.log("escalate", step_id=task.step_id, task_id=task.id, target=",".join(people) or None)
            for person in people:
                new = w.new_task(st, person, task.slot, task.visit, origin="escalation",
                                 due_at=now + (st.due or timedelta(0)))
                w.tasks[new.id] = dataclasses.replace(new, escalated=True)
        if overdue.auto in ("approve", "reject"):
            _act(w, Act(task.id, SYSTEM, overdue.auto, "overdue", now=now))
            if w.status != "running":
                return


def task_wake_at(spec: WorkflowSpec, task: TaskState) -> datetime | None:
    """When ``Tick`` next has something to do for this task (None: never).
    The host stores it on the task row so the tick query is set-based."""
    if task.status != "open" or task.due_at is None:
        return None
    return overdue_wake_at(task, _index(spec).pos[task.step_id].step.on_overdue)


# --- due, remind, escalate: shared by approval tasks and rule tasks (engine.rule_tasks) ---------

def first_reminder(due_at: datetime | None, overdue: OverdueSpec | None) -> datetime | None:
    """A new task's first reminder: at its due time, unless ``on_overdue.remind`` is false."""
    return due_at if due_at is not None and (overdue is None or overdue.remind) else None


def overdue_tick(task: TaskState, remind_every: timedelta | None, overdue: OverdueSpec | None,
                 now: datetime) -> tuple[TaskState, bool, bool]:
    """What a tick at ``now`` does to one open task: (the task with its
    reminder state moved on, remind now?, escalate now?). A due reminder
    counts once however late the tick runs, and the next one is the first
    ``remind_every`` period after ``now``; an escalation (``escalate_to`` or
    ``auto``) happens once, at the due time."""
    remind = escalate = False
    if task.status != "open" or task.due_at is None:
        return task, remind, escalate
    if task.next_remind_at is not None and now >= task.next_remind_at:
        nxt: datetime | None = None
        if remind_every is not None and remind_every > timedelta(0):
            periods = (now - task.next_remind_at) // remind_every + 1
            nxt = task.next_remind_at + periods * remind_every
        task = dataclasses.replace(task, next_remind_at=nxt, reminders=task.reminders + 1)
        remind = True
    if (overdue is not None and not task.escalated and task.due_at is not None and now >= task.due_at
            and (overdue.escalate_to is not None or overdue.auto is not None)):
        task = dataclasses.replace(task, escalated=True)
        escalate = True
    return task, remind, escalate


def overdue_wake_at(task: TaskState, overdue: OverdueSpec | None) -> datetime | None:
    """When :func:`overdue_tick` next has something to do for an open task (None: never)."""
    if task.status != "open" or task.due_at is None:
        return None
    times = [t for t in (task.next_remind_at,) if t is not None]
    if overdue is not None and not task.escalated and (overdue.escalate_to is not None or overdue.auto is not None):
        times.append(task.due_at)
    return min(times) if times else None


__all__ = [
    "ACTIONS",
    "FORMAT",
    "RESUBMITTABLE",
    "TERMINAL",
    "Act",
    "ActionError",
    "ActiveStep",
    "CloseTask",
    "CreateTask",
    "Directory",
    "Effect",
    "Emit",
    "Event",
    "HistoryEntry",
    "InstanceState",
    "Join",
    "Notify",
    "Remind",
    "Resubmit",
    "SUBMITTER_REMIND_EVERY",
    "SetField",
    "Start",
    "StaticDirectory",
    "TaskState",
    "Tick",
    "Withdraw",
    "event_from_json",
    "event_to_json",
    "first_reminder",
    "overdue_tick",
    "overdue_wake_at",
    "step",
    "task_wake_at",
]
