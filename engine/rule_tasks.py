"""Follow-up tasks that rules create (``create_task``): assignment, notices,
done with an outcome, reminders and escalation.

A rule task is a row of ``tasks`` with ``kind = 'rule'`` and no workflow
instance (see ``engine.storage.rule_tasks_repo``), so it shares the approval
tasks' id space (``/tasks/<id>``), inbox counts and tick index. Its due,
reminder and escalation decisions are the approval machine's own
(:func:`engine.approvals.machine.overdue_tick`); only the bookkeeping is
here, because a rule task has no instance state to keep it in: the step's
policy and the reminder state sit in the row's ``detail``.

Who gets the task (``to`` of the step):

* ``account_manager``: the customer's ``account_manager_id`` (active users only);
* ``{role: r}``: the active holders of ``r``; for a task about a customer
  whose attribute ``store`` is set, only the holders assigned to that store
  (``users.store``, ``promoflow users store NAME STORE``) when there are any.
  So ``{role: store_manager}`` reaches the customer's store manager;
* ``{users: [..]}``: those named users who are active;
* ``{field: k}``: the user named in field ``k`` of the subject (a record).

Several assignees get one task each; the first to mark theirs done closes
the others (``cancelled``). Nobody to assign: no row, a ``task.unassigned``
event and an ``unassigned`` note in the journey's state.

Done: an outcome from the step's list (default contacted, resolved,
no_answer, declined; each with zh/en labels) and an optional comment; the
response time (created → done, seconds) is stored and a ``task.done`` event
(subject: the customer) lets journeys wait on it. The engine reads no clock:
every call takes ``now``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from engine.approvals.machine import TaskState, first_reminder, overdue_tick, overdue_wake_at
from engine.definitions.specs import DEFAULT_TASK_OUTCOMES, Assignees, CreateTaskSpec, OverdueSpec, Recipient, TaskOutcomeSpec
from engine.storage import rule_tasks_repo as repo
from engine.storage.audit import append_audit
from engine.storage.database import transaction
from engine.storage.events_repo import append_event

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from engine.definitions.loader import DefinitionSet

__all__ = [
    "DEFAULT_OUTCOMES",
    "RuleTaskError",
    "RuleTaskService",
    "RuleTaskView",
    "TickReport",
    "assignees_for",
    "new_task_rows",
    "queue_notices",
]

#: Outcomes a step offers when it declares none.
DEFAULT_OUTCOMES = DEFAULT_TASK_OUTCOMES
MAX_COMMENT = 2000


class RuleTaskError(Exception):
    """A refused action: ``status`` is the HTTP status, ``field`` the input at fault."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


@dataclass(frozen=True)
class RuleTaskView:
    """A rule task as pages and the API show it (aware UTC times)."""

    id: int
    title: str
    title_en: str | None
    status: str
    assignee: str | None
    due_at: datetime | None
    overdue: bool
    created_at: datetime
    done_at: datetime | None
    outcome: str | None
    comment: str | None
    response_seconds: int | None
    version: int
    customer_id: int | None
    customer_name: str | None
    rule_id: str | None
    journey_id: int | None
    reminders: int
    escalated: bool
    origin: str
    outcomes: tuple[TaskOutcomeSpec, ...]

    def outcome_label(self, locale: str) -> str | None:
        for o in self.outcomes:
            if o.id == self.outcome:
                return o.label_en if locale == "en" and o.label_en else o.label
        return self.outcome

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": "rule", "title": self.title, "title_en": self.title_en, "status": self.status,
            "assignee": self.assignee, "due_at": _iso(self.due_at), "overdue": self.overdue,
            "created_at": self.created_at.isoformat(), "done_at": _iso(self.done_at), "outcome": self.outcome,
            "comment": self.comment, "response_seconds": self.response_seconds, "version": self.version,
            "customer_id": self.customer_id, "rule_id": self.rule_id, "journey_id": self.journey_id,
            "reminders": self.reminders, "escalated": self.escalated, "origin": self.origin,
            "outcomes": [{"id": o.id, "label": o.label, "label_en": o.label_en} for o in self.outcomes],
        }


@dataclass
class TickReport:
    """What one tick did to rule tasks."""

    tasks: int = 0
    reminders: int = 0
    escalations: int = 0
    messages: int = 0


@dataclass(frozen=True)
class _Subject:
    """What a task is about, as the creating journey knows it."""

    type: str
    id: int
    row: Mapping[str, Any] = field(default_factory=dict)

    @property
    def customer_id(self) -> int | None:
        return self.id if self.type == "customer" else None

    @property
    def store(self) -> str | None:
        attrs = self.row.get("attrs") if self.type == "customer" else None
        value = attrs.get("store") if isinstance(attrs, Mapping) else None
        return str(value) if value not in (None, "") else None


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _dt(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _overdue_json(spec: OverdueSpec | None) -> dict[str, Any] | None:
    if spec is None:
        return None
    esc = spec.escalate_to
    return {"remind": spec.remind, "escalate_to": None if esc is None else
            {"role": esc.role, "users": list(esc.users), "manager": esc.manager}}


def _overdue_of(detail: Mapping[str, Any]) -> OverdueSpec | None:
    raw = detail.get("on_overdue")
    if not isinstance(raw, Mapping):
        return None
    esc = raw.get("escalate_to")
    return OverdueSpec(remind=bool(raw.get("remind", True)), escalate_to=None if not isinstance(esc, Mapping) else
                       Assignees(role=esc.get("role"), users=tuple(esc.get("users") or ()),
                                 manager=bool(esc.get("manager"))))


def _outcomes_of(detail: Mapping[str, Any]) -> tuple[TaskOutcomeSpec, ...]:
    raw = detail.get("outcomes")
    if not raw:
        return DEFAULT_OUTCOMES
    return tuple(TaskOutcomeSpec(str(o["id"]), str(o.get("label") or o["id"]), o.get("label_en")) for o in raw)


def _state(row: repo.RuleTaskRow) -> TaskState:
    """The approval machine's view of a rule task, for the shared overdue rules."""
    d = row.detail
    return TaskState(row.id, row.step_id, row.assignee or "", 0, 0, row.created_at, kind="rule",
                     status=row.status, due_at=row.due_at, next_remind_at=_dt(d.get("next_remind_at")),
                     reminders=int(d.get("reminders") or 0), escalated=bool(d.get("escalated")))


def view(row: repo.RuleTaskRow, now: datetime | None) -> RuleTaskView:
    d = row.detail
    return RuleTaskView(
        id=row.id, title=row.title, title_en=d.get("title_en"), status=row.status, assignee=row.assignee,
        due_at=row.due_at, overdue=row.status == "open" and row.due_at is not None and now is not None
        and row.due_at <= now, created_at=row.created_at, done_at=row.acted_at, outcome=row.outcome,
        comment=row.comment, response_seconds=row.response_seconds, version=row.version,
        customer_id=row.customer_id, customer_name=row.customer_name, rule_id=row.rule_id,
        journey_id=row.journey_id, reminders=int(d.get("reminders") or 0), escalated=bool(d.get("escalated")),
        origin=str(d.get("origin") or "assigned"), outcomes=_outcomes_of(d),
    )


# ------------------------------------------------------------------ creation (journeys)

def _people(session: Session, who: Assignees | Recipient, subject: _Subject, holder: str | None = None) -> list[str]:
    if isinstance(who, Assignees):
        if who.role is not None:
            return repo.users_of_role(session, who.role, subject.store)
        if who.users:
            return repo.people(session, usernames=who.users)
        if who.manager and holder:
            return repo.people(session, manager_of=holder)
        return []
    if who.kind == "account_manager":
        return repo.people(session, account_manager_of=subject.customer_id) if subject.customer_id else []
    if who.kind == "role":
        return repo.users_of_role(session, str(who.value), subject.store)
    if who.kind == "users":
        values = who.value if isinstance(who.value, (list, tuple)) else (who.value,)
        return repo.people(session, usernames=[str(v) for v in values])
    if who.kind == "field":
        value = subject.row.get(str(who.value))
        return repo.people(session, usernames=[str(value)]) if isinstance(value, str) and value else []
    return []


def assignees_for(session: Session, to: Recipient, *, subject_type: str, subject_id: int,
                  row: Mapping[str, Any]) -> list[str]:
    """Who gets a ``create_task`` step's task about this subject (see the module doc)."""
    return _people(session, to, _Subject(subject_type, subject_id, row))


def new_task_rows(spec: CreateTaskSpec, assignees: Sequence[str], *, step_id: str, rule_id: str, journey_id: int,
                  customer_id: int | None, now: datetime, origin: str = "assigned",
                  store: str | None = None) -> list[dict[str, Any]]:
    """The rows of one ``create_task`` step, one per assignee, for :func:`repo.insert`."""
    due_at = now + spec.due if spec.due else None
    nxt = first_reminder(due_at, spec.on_overdue)
    detail = {
        "title_en": spec.title_en, "origin": origin,
        "outcomes": [{"id": o.id, "label": o.label, "label_en": o.label_en} for o in spec.outcomes] or None,
        "due_seconds": int(spec.due.total_seconds()) if spec.due else None,
        "remind_every": int(spec.remind_every.total_seconds()) if spec.remind_every else None,
        "on_overdue": _overdue_json(spec.on_overdue), "next_remind_at": _iso(nxt), "reminders": 0,
        "escalated": origin == "escalation", "store": store,
    }
    role = spec.to.value if spec.to.kind == "role" else None
    rows = []
    for name in assignees:
        state = TaskState(0, step_id, name, 0, 0, now, kind="rule", due_at=due_at, next_remind_at=nxt,
                          escalated=origin == "escalation")
        rows.append({"title": spec.title, "step_id": step_id, "assignee": name, "role": role, "due_at": due_at,
                     "wake_at": overdue_wake_at(state, spec.on_overdue), "created_at": now,
                     "customer_id": customer_id, "rule_id": rule_id, "journey_id": journey_id, "detail": detail})
    return rows


def _local(value: datetime | None, tz: str) -> str:
    return "" if value is None else value.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")


def queue_notices(session: Session, definitions: DefinitionSet, tasks: Sequence[tuple[int, Mapping[str, Any]]], *,
                  kind: str, now: datetime, base_url: str, customers: Mapping[int, Mapping[str, Any]],
                  tz: str = "Asia/Shanghai",
                  key_suffix: str = "") -> int:
    """Queue the ``task_<kind>`` notice (assigned, reminder) for each (task id,
    row) to its assignee, when that template is published, as approval
    notices are; returns how many were queued. A notice that cannot be
    rendered or addressed is recorded as a ``task.notify_failed`` event."""
    from engine.outbox import OutboxError, OutboxItem, pick_connector, row_for
    from engine.storage import outbox_repo
    from engine.storage.workflows_repo import contacts
    from engine.templates import TemplateRenderError, render

    template = definitions.templates.get(f"task_{kind}")
    if template is None or not tasks:
        return 0
    channel = template.channels[0]
    people = contacts(session, [str(r["assignee"]) for _, r in tasks])
    out = []
    for task_id, r in tasks:
        person = people.get(str(r["assignee"]))
        address = None if person is None else {"email": person.email, "sms": person.phone}.get(channel, person.username)
        customer = dict(customers.get(r.get("customer_id") or 0, {}))
        ctx = {"task": {"id": task_id, "title": r["title"], "url": f"{base_url}/tasks/{task_id}",
                        "due": _local(r.get("due_at"), str(r.get("tz") or tz)), "reminders": r.get("reminders", 0)},
               "customer": {"id": r.get("customer_id"), "name": customer.get("name") or ""},
               "rule": {"id": r.get("rule_id")}, "base_url": base_url,
               "recipient": {"username": r["assignee"], "name": (person.display_name if person else None)
                             or r["assignee"]}}
        try:
            if not address:
                raise OutboxError(f"no {channel} address for `{r['assignee']}`")
            conn = pick_connector(definitions, channel)
            item = OutboxItem(channel=channel, to=str(address), template_id=template.id, context={},
                              idempotency_key=f"task:{task_id}:{kind}{key_suffix}", delivery_class="transactional",
                              connector=conn.id, rule_id=r.get("rule_id"))
            out.append(row_for(item, render(template, ctx, channel=channel), conn, now, template))
        except (OutboxError, TemplateRenderError) as exc:
            append_event(session, "task.notify_failed", "task", task_id,
                         {"task_id": task_id, "kind": kind, "to": r["assignee"], "reason": str(exc)}, now)
    outbox_repo.insert_messages(session, out, returning=False)
    return len(out)


# ------------------------------------------------------------------ the service (web, scheduler)

class RuleTaskService:
    """Reading, completing and ticking rule tasks, each call its own transaction."""

    def __init__(self, session_factory: sessionmaker[Session], definitions: Any, *, base_url: str = "",
                 tz: str = "Asia/Shanghai"):
        #: ``definitions()`` returns the current DefinitionSet (templates, connectors for notices).
        self._sf = session_factory
        self._definitions = definitions
        self._base_url = base_url.rstrip("/")
        self._tz = tz

    def get(self, task_id: int, now: datetime | None = None) -> RuleTaskView | None:
        with self._sf() as session:
            row = repo.get(session, task_id)
        return None if row is None else view(row, now)

    def tasks_for(self, username: str, *, status: str | None = "open", now: datetime | None = None,
                  limit: int = 500) -> list[RuleTaskView]:
        """``status``: open, done (done or cancelled), or all/None."""
        statuses = None if status in (None, "all") else ("done", "cancelled") if status == "done" else (status,)
        with self._sf() as session:
            rows = repo.for_user(session, username, statuses=statuses, limit=limit)
        return [view(r, now) for r in rows]

    def for_customer(self, customer_id: int, now: datetime | None = None) -> list[RuleTaskView]:
        with self._sf() as session:
            rows = repo.for_customer(session, customer_id)
        return [view(r, now) for r in rows]

    def done(self, task_id: int, *, actor: str, outcome: Any, comment: Any, now: datetime,
             expected_version: int | None = None) -> RuleTaskView:
        """Mark the actor's open task done with ``outcome`` (one of the task's)
        and an optional ``comment``; records the response time and emits
        ``task.done``. Raises RuleTaskError: 404 unknown, 403 not the
        assignee, 422 bad outcome or comment, 409 already closed or changed."""
        with transaction(self._sf) as session:
            row = repo.get(session, task_id)
            if row is None:
                raise RuleTaskError(404, "not_found", f"no follow-up task {task_id}")
            if row.assignee != actor:
                raise RuleTaskError(403, "not_assigned", f"task {task_id} is assigned to someone else")
            allowed = [o.id for o in _outcomes_of(row.detail)]
            if not isinstance(outcome, str) or outcome not in allowed:
                raise RuleTaskError(422, "invalid_choice", f"outcome must be one of: {', '.join(allowed)}", "outcome")
            if comment is not None and (not isinstance(comment, str) or len(comment) > MAX_COMMENT):
                raise RuleTaskError(422, "too_long" if isinstance(comment, str) else "invalid_type",
                                    f"comment must be text of at most {MAX_COMMENT} characters", "comment")
            comment = (comment or "").strip() or None
            seconds = max(0, int((now - row.created_at).total_seconds()))
            repo.lock_group(session, row)
            if not repo.complete(session, task_id, outcome=outcome, comment=comment, now=now,
                                 response_seconds=seconds, expected_version=expected_version):
                closed = row.status != "open"
                raise RuleTaskError(409, "task_closed" if closed else "stale_task",
                                    f"task {task_id} is already {row.status}" if closed
                                    else f"task {task_id} changed since version {expected_version}")
            repo.cancel_siblings(session, row, now)
            subject = ("customer", row.customer_id) if row.customer_id is not None else ("task", task_id)
            append_event(session, "task.done", subject[0], subject[1], {
                "task_id": task_id, "rule_id": row.rule_id, "journey_id": row.journey_id, "step_id": row.step_id,
                "customer_id": row.customer_id, "outcome": outcome, "response_seconds": seconds, "actor": actor,
            }, now)
            append_audit(session, at=now, actor=actor, action="task.done", entity_type="task", entity_id=task_id,
                         diff={"outcome": outcome, "comment": comment, "response_seconds": seconds})
            done = repo.get(session, task_id)
        assert done is not None
        return view(done, now)

    def tick(self, now: datetime, *, batch: int = 200) -> TickReport:
        """Reminders and escalations of rule tasks due by ``now``, with the
        approval machine's rules; each task in its own transaction, guarded by
        its version (a task done meanwhile is left alone). Idempotent."""
        report = TickReport()
        after = 0
        while True:
            with self._sf() as session:
                ids = repo.due_ids(session, now, limit=batch, after_id=after)
            if not ids:
                return report
            for task_id in ids:
                self._tick_one(task_id, now, report)
            after = ids[-1]

    def _tick_one(self, task_id: int, now: datetime, report: TickReport) -> None:
        definitions = self._definitions()
        with transaction(self._sf) as session:
            row = repo.get(session, task_id)
            if row is None or row.status != "open":
                return
            overdue = _overdue_of(row.detail)
            every = row.detail.get("remind_every")
            state, remind, escalate = overdue_tick(_state(row), timedelta(seconds=every) if every else None,
                                                   overdue, now)
            detail = {**row.detail, "next_remind_at": _iso(state.next_remind_at), "reminders": state.reminders,
                      "escalated": state.escalated}
            if not repo.set_tick_state(session, row, detail=detail, wake_at=overdue_wake_at(state, overdue)):
                return
            report.tasks += 1
            customers = {row.customer_id: {"name": row.customer_name}} if row.customer_id else {}
            base = {"title": row.title, "customer_id": row.customer_id, "rule_id": row.rule_id,
                    "due_at": row.due_at}
            if remind:
                report.reminders += 1
                append_audit(session, at=now, actor="system", action="task.remind", entity_type="task",
                             entity_id=task_id, diff={"reminders": state.reminders})
                report.messages += queue_notices(
                    session, definitions, [(task_id, {**base, "assignee": row.assignee,
                                                      "reminders": state.reminders})],
                    kind="reminder", now=now, base_url=self._base_url, tz=self._tz, customers=customers,
                    key_suffix=f":{state.reminders}")
            if escalate and overdue is not None and overdue.escalate_to is not None:
                report.escalations += 1
                self._escalate(session, definitions, row, overdue.escalate_to, now, report, customers)

    def _escalate(self, session: Session, definitions: DefinitionSet, row: repo.RuleTaskRow, to: Assignees,
                  now: datetime, report: TickReport, customers: Mapping[Any, Mapping[str, Any]]) -> None:
        """New tasks of the same step for ``escalate_to`` (the same policy, due
        again after the step's due period), as an approval escalation adds tasks."""
        attrs = {"attrs": {"store": row.detail.get("store")}} if row.detail.get("store") else {}
        subject = _Subject("customer" if row.customer_id is not None else "task", row.customer_id or row.id, attrs)
        people = [p for p in _people(session, to, subject, holder=row.assignee) if p != row.assignee]
        append_audit(session, at=now, actor="system", action="task.escalate", entity_type="task", entity_id=row.id,
                     diff={"to": people})
        if not people or row.journey_id is None:
            return
        d = row.detail
        spec = CreateTaskSpec(
            title=row.title, to=Recipient("users", tuple(people)),
            due=timedelta(seconds=d["due_seconds"]) if d.get("due_seconds") else None,
            title_en=d.get("title_en"), remind_every=timedelta(seconds=d["remind_every"]) if d.get("remind_every")
            else None, on_overdue=_overdue_of(d), outcomes=tuple(_outcomes_of(d)) if d.get("outcomes") else ())
        rows = new_task_rows(spec, people, step_id=row.step_id, rule_id=row.rule_id or "", journey_id=row.journey_id,
                             customer_id=row.customer_id, now=now, origin="escalation", store=d.get("store"))
        repo.insert(session, rows)
        ids = repo.ids_of(session, {(row.journey_id, row.step_id, p) for p in people})
        report.messages += queue_notices(
            session, definitions, [(ids[(row.journey_id, row.step_id, r["assignee"])], r) for r in rows
                                   if (row.journey_id, row.step_id, r["assignee"]) in ids],
            kind="assigned", now=now, base_url=self._base_url, tz=self._tz, customers=customers)
