"""What a step's runtime works on and gives back: a claimed batch, its journeys, typed writes.

:func:`engine.automation.journeys.advance_due` claims due journeys, loads
their subjects and facts once (:meth:`Batch.load`), then moves every journey
one instruction at a time *together*: the journeys at the same rule and
instruction form one group, and that instruction's step type runs once over
the group (:meth:`engine.steps.registry.StepType.run`). A step sets each
:class:`Cursor`'s outcome (go on to an instruction, resume at a time, fail)
and returns :class:`Writes`; the batch writes them at the end with one
statement per table (:meth:`Batch.flush`). A batch of one journey is the
per-journey path: the same code with groups of one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from engine.automation.facts import Evaluator, facts_used, journey_row, orders_since
from engine.automation.links import survey_link, unsubscribe_link
from engine.automation.policy import Counters, Policy
from engine.automation.program import RuleLookup
from engine.automation.timing import zone
from engine.definitions.specs import Recipient, RuleSpec
from engine.storage import automation_repo as repo
from engine.storage import clicks_repo, outbox_repo, rule_tasks_repo
from engine.storage.events_repo import append_event
from engine.storage.times import from_db_time, to_db_time

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from engine.definitions.loader import DefinitionSet
    from engine.experiments import Arm

__all__ = ["Batch", "CouponRow", "Cursor", "EventRow", "FieldChange", "NewRecord", "OutboxRow", "RuleLookup",
           "StepFailed", "WriteKind", "Writes", "display", "idempotency_key"]



class StepFailed(Exception):
    """A journey cannot go on (unknown template, render error …): it ends as ``error``."""


def idempotency_key(rule_id: str, subject_type: str, subject_id: Any, period_key: str, step_id: str) -> str:
    """The outbox idempotency key of a step's message: one per rule, subject,
    period and step, so a repeated batch (or run) queues nothing twice. The
    one formula of it: the SQL path splits it around the subject id."""
    return f"{rule_id}:{subject_type}:{subject_id}:{period_key}:{step_id}"


def display(value: Any) -> Any:
    """A value as templates print it (``20`` not ``20.00`` for a whole Decimal)."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral() else format(value, "f")
    return value


# -- typed writes ----------------------------------------------------------------------


@dataclass(frozen=True)
class OutboxRow:
    """One queued message (status ``queued``, due and created at the batch's now)."""

    channel: str
    connector: str
    recipient: str
    subject: str | None
    body: str
    payload: Mapping[str, Any]
    idempotency_key: str
    delivery_class: str
    rule_id: str
    journey_id: int
    customer_id: int | None
    template_id: str | None

    def as_list(self) -> list[Any]:
        return [self.channel, self.connector, self.recipient, self.subject, self.body, dict(self.payload),
                self.idempotency_key, self.delivery_class, self.rule_id, self.journey_id, self.customer_id,
                self.template_id]


@dataclass(frozen=True)
class CouponRow:
    pool_id: str
    code: str
    customer_id: int | None
    value: Any
    expires_at: datetime | None         # naive UTC
    journey_id: int


@dataclass(frozen=True)
class EventRow:
    name: str
    subject_type: str
    subject_id: int
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class FieldChange:
    customer_id: int
    values: Mapping[str, Any]


@dataclass(frozen=True)
class NewRecord:
    """A record a rule creates, and the ``record.created`` event about it."""

    form_id: str
    data: Mapping[str, Any]
    rule_id: str
    customer_id: Any


@dataclass(frozen=True)
class WriteKind:
    """A kind of write a plug-in step adds (a table of its own): ``write(session,
    rows, batch)`` writes a batch's rows in one statement; ``name`` must be unique."""

    name: str
    write: Callable[[Session, list[Any], Batch], None]


@dataclass
class Writes:
    """Everything a step (or a batch) writes, one list per table."""

    coupons: list[CouponRow] = field(default_factory=list)
    outbox: list[OutboxRow] = field(default_factory=list)
    add_tags: set[tuple[int, str]] = field(default_factory=set)
    remove_tags: set[tuple[int, str]] = field(default_factory=set)
    fields: list[FieldChange] = field(default_factory=list)
    records: list[NewRecord] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)   # rule task rows (engine.rule_tasks)
    extra: dict[WriteKind, list[Any]] = field(default_factory=dict)

    def tag(self, customer_id: int, tag: str, *, remove: bool) -> None:
        pair = (customer_id, tag)
        (self.add_tags if remove else self.remove_tags).discard(pair)
        (self.remove_tags if remove else self.add_tags).add(pair)

    def add(self, kind: WriteKind, row: Any) -> None:
        """A row of a plug-in's write kind."""
        self.extra.setdefault(kind, []).append(row)

    def merge(self, other: Writes) -> None:
        """Append ``other`` (written after this), keeping the last word on each tag."""
        self.coupons += other.coupons
        self.outbox += other.outbox
        for c, t in other.add_tags:
            self.tag(c, t, remove=False)
        for c, t in other.remove_tags:
            self.tag(c, t, remove=True)
        self.fields += other.fields
        self.records += other.records
        self.events += other.events
        self.tasks += other.tasks
        for kind, rows in other.extra.items():
            self.extra.setdefault(kind, []).extend(rows)


# -- journeys in a batch ---------------------------------------------------------------


@dataclass
class Cursor:
    """One journey moving through a batch: where it is, what conditions see,
    its state, and the outcome its current step set."""

    journey: repo.JourneyRow
    rule: RuleSpec
    row: dict[str, Any]
    state: dict[str, Any]
    counters: Counters
    tz: Any
    arm: Arm | None = None
    pc: int = 0
    outcome: int | datetime | None = None
    error: str | None = None

    def go(self, pc: int) -> None:
        """Go on to instruction ``pc`` (``END``: the journey is done)."""
        self.outcome = pc

    def resume_at(self, when: datetime) -> None:
        """Stop here and resume at ``when`` (a wait, quiet hours, a cap)."""
        self.outcome = when

    def fail(self, message: str) -> None:
        """End the journey as ``error`` with ``message``."""
        self.error = message

    @property
    def customer_id(self) -> int | None:
        return self.journey.subject_id if self.journey.subject_type == "customer" else None

    @property
    def held_out(self) -> bool:
        """In the rule's control group: enters and is counted, gets no message or coupon."""
        return self.arm is not None and self.arm.control


class Batch:
    """A claimed batch: the subjects and facts its journeys need, loaded once,
    and the caches steps share (pool counts, cap history, people of a role)."""

    def __init__(self, session: Session, now: datetime, definitions: DefinitionSet, policy: Policy,
                 rule_of: RuleLookup | None = None):
        self.rule_of: RuleLookup = rule_of or (lambda rule_id, _version: definitions.rules.get(rule_id))
        self.session = session
        self.now = now
        self.db_now = to_db_time(now)
        self.defs = definitions
        self.policy = policy
        self.evaluate = Evaluator({k: s.condition for k, s in definitions.segments.items()})
        self.listened = {r.trigger.event for r in definitions.rules.values() if hasattr(r.trigger, "event")}
        self.pool_counts: dict[str, list[Any]] = {}
        self.recent: dict[tuple[int, str], list[datetime]] = {}
        self.role_users: dict[str, list[dict[str, Any]]] = {}
        self.task_people: dict[tuple[Any, ...], list[str]] = {}
        self.cache: dict[Any, Any] = {}   # per-batch memo for steps (compiled renderers, time zones …)
        self.customers: dict[int, dict[str, Any]] = {}
        self.records: dict[int, dict[str, Any]] = {}
        self.coupons: dict[int, list[Any]] = {}  # coupon rows per journey (issued ones appended)
        self.orders: dict[int, datetime] = {}
        self.feedback: dict[int, Any] = {}
        self.replies: dict[int, Any] = {}
        self.clicks: dict[Any, Any] = {}
        self.users: dict[int, dict[str, Any]] = {}

    # -- loading -------------------------------------------------------------------

    def load(self, journeys: list[repo.JourneyRow]) -> None:
        s = self.session
        customer_ids = {j.subject_id for j in journeys if j.subject_type == "customer"}
        rules = [r for key in {(j.rule_id, j.rule_version) for j in journeys if j.subject_type == "customer"}
                 if (r := self.rule_of(*key)) is not None]
        since = orders_since(rules, self.now, self.evaluate.segments)
        self.customers = repo.customers_with_zone(s, customer_ids, orders_since=since)
        record_ids = {j.subject_id for j in journeys if j.subject_type == "record"}
        self.records = repo.records_data(s, record_ids) if record_ids else {}
        self.coupons = repo.coupons_of_journeys(s, [j.id for j in journeys])
        needed: set[str] = set()
        for rule_id, version in {(j.rule_id, j.rule_version) for j in journeys}:
            rule = self.rule_of(rule_id, version)
            if rule is not None:
                needed |= facts_used(rule)
        # Facts "since entry" only exist for journeys that entered before now.
        older = {j.subject_id for j in journeys if j.subject_type == "customer" and j.entered_at < self.db_now}
        since = min((j.entered_at for j in journeys), default=self.db_now)
        self.orders = repo.latest_orders(s, older) if "ordered_since_entry" in needed and older else {}
        wants_feedback = needed & {"feedback.score", "message_replied"}
        self.feedback = repo.feedback_since(s, older, since) if wants_feedback and older else {}
        self.replies = repo.replies_since(s, older, since) if wants_feedback and older else {}
        self.clicks = clicks_repo.clicked_since(s, older, since) if "message_clicked" in needed and older else {}
        managers = {c.get("account_manager_id") for c in self.customers.values()} - {None}
        self.users = repo.users_by_id(s, managers) if managers else {}  # type: ignore[arg-type]
        caps = self.policy.caps
        if caps and customer_ids:
            longest = max(c.per for c in caps)
            for cap in caps:
                found = outbox_repo.count_recent(s, customer_ids, channels=("sms", "email", "wecom"),
                                                 delivery_class=cap.delivery_class, since=to_db_time(self.now - longest))
                for key, times in found.items():
                    self.recent.setdefault((key[0], f"{cap.delivery_class}:{key[1]}"), []).extend(times)

    # -- what steps read -----------------------------------------------------------

    def fields_of(self, rule: RuleSpec) -> Any:
        """The field kinds conditions of ``rule`` test: a record audience's form fields (None: customers)."""
        if rule.audience_form is None:
            return None
        form = self.defs.forms.get(rule.audience_form)
        return form.field_kinds() if form is not None else {}

    def row_of(self, j: repo.JourneyRow) -> dict[str, Any]:
        """What conditions see: the customer's fields, or a record's data (its
        fields by key, for ``if`` tests and ``to: {field: …}``), plus journey facts."""
        if j.subject_type != "customer":
            record = self.records.get(j.subject_id, {}) if j.subject_type == "record" else {}
            return journey_row(record, entered_at=j.entered_at, coupons=self.coupons.get(j.id, []),
                               last_order_at=None, feedback=[], clicks=[])
        return journey_row(self.customers.get(j.subject_id, {}), entered_at=j.entered_at,
                           coupons=self.coupons.get(j.id, []), last_order_at=self.orders.get(j.subject_id),
                           feedback=self.feedback.get(j.subject_id, []),
                           clicks=self.clicks.get((j.subject_id, j.rule_id), []),
                           replies=self.replies.get(j.subject_id, []))

    def zone_of(self, row: Mapping[str, Any], rule: RuleSpec) -> Any:
        key = ("tz", str(row.get("timezone") or ""), rule.timezone)
        tz = self.cache.get(key)
        if tz is None:
            tz = self.cache[key] = zone(key[1], rule.timezone)
        return tz

    def context(self, c: Cursor) -> dict[str, Any]:
        """The template context of a journey (``customer``, ``coupon``, links …)."""
        from engine.steps.issue_coupon import coupon_context

        j, rule = c.journey, c.rule
        customer = {k: display(v) for k, v in self.customers.get(j.subject_id, {}).items()} \
            if j.subject_type == "customer" else {}
        ctx: dict[str, Any] = {
            "customer": customer, "rule": {"id": rule.id, "title": rule.title},
            "record": {k: display(v) for k, v in self.records.get(j.subject_id, {}).items()}
            if j.subject_type == "record" else {},
            "journey": {"id": j.id, "period": j.period_key},
            "unsubscribe_url": unsubscribe_link(self.policy, j.subject_type, j.subject_id, self.now),
            "survey_url": survey_link(self.policy, rule, j.subject_type, j.subject_id, self.now),
            "base_url": self.policy.base_url,
        }
        issued = self.coupons.get(j.id)
        if issued:
            last = issued[-1]
            expires = last.get("expires_at")
            ctx["coupon"] = {"code": last["code"], **coupon_context(
                self.defs.coupon_pools.get(last["pool_id"]), last["pool_id"], last["value"],
                from_db_time(expires) if expires else None, rule)}
        return ctx

    def recipients(self, to: Recipient | None, channel: str, row: Mapping[str, Any]) -> list[tuple[str | None, bool]]:
        """(address, is_customer) per recipient of a send."""
        kind = to.kind if to else "customer"
        if kind == "customer":
            if channel == "sms":
                return [(row.get("phone"), True)]
            if channel == "email":
                return [(row.get("email"), True)]
            attrs = row.get("attrs") or {}
            wecom = attrs.get("wecom_external_userid") if isinstance(attrs, Mapping) else None
            return [(wecom or row.get("external_id") or (f"customer:{row['id']}" if row.get("id") else None), True)]
        if kind == "field":
            return [(str(row.get(str(to.value)) or "") or None, True)] if to else []
        users: list[dict[str, Any]] = []
        if kind == "account_manager":
            manager = self.users.get(row.get("account_manager_id"))  # type: ignore[arg-type]
            users = [manager] if manager else []
        elif kind == "role" and to is not None:
            role = str(to.value)
            if role not in self.role_users:
                self.role_users[role] = repo.users_in_role(self.session, role)
            users = self.role_users[role]
        elif kind == "users" and to is not None:
            names = to.value if isinstance(to.value, (list, tuple)) else (to.value,)
            return [(str(n), False) for n in names]
        address_of = {"sms": "phone", "email": "email"}.get(channel, "username")
        return [(u.get(address_of), False) for u in users] or [(None, False)]

    def event(self, out: Writes, name: str, c: Cursor, payload: dict[str, Any]) -> None:
        """Record a step's event only when some rule listens for it (the events
        table is not a log of every message of a million-customer run)."""
        if name in self.listened:
            j = c.journey
            out.events.append(EventRow(name, j.subject_type, j.subject_id, {**payload, "journey_id": j.id}))

    # -- writing ---------------------------------------------------------------------

    def flush(self, out: Writes, journeys: list[list[Any]]) -> None:
        """Write a batch: one statement per table (coupons, outbox, tags,
        customers, records, events, tasks, plug-in kinds, then the journeys)."""
        s = self.session
        repo.insert_coupons(s, [
            {"pool_id": c.pool_id, "code": c.code, "customer_id": c.customer_id, "value": c.value,
             "issued_at": self.db_now, "expires_at": c.expires_at, "redeemed_at": None, "journey_id": c.journey_id,
             "status": "issued"} for c in out.coupons])  # codes are random: no conflicts to count
        outbox_repo.insert_rows(s, [r.as_list() for r in out.outbox], now=self.db_now)
        repo.add_tags(s, out.add_tags)
        repo.remove_tags(s, out.remove_tags)
        for change in out.fields:
            repo.set_customer_fields(s, change.customer_id, change.values, self.db_now)
        for rec in out.records:
            record_id = repo.insert_record(s, form_id=rec.form_id, form_version=self.policy.form_version_of(rec.form_id),
                                           data=rec.data, by=f"rule:{rec.rule_id}", db_now=self.db_now)
            append_event(s, "record.created", "record", record_id,
                         {"form_id": rec.form_id, "rule_id": rec.rule_id, "customer_id": rec.customer_id}, self.now)
        for e in out.events:
            append_event(s, e.name, e.subject_type, e.subject_id, dict(e.payload), self.now)
        if out.tasks:
            self._flush_tasks(out.tasks)
        for kind, rows in out.extra.items():
            kind.write(s, rows, self)
        repo.update_journey_rows(s, journeys)

    def _flush_tasks(self, rows: list[dict[str, Any]]) -> None:
        """Insert the batch's rule tasks (a repeated batch inserts nothing) and
        queue the assignees' notices for the ones this batch created."""
        from engine import rule_tasks

        s = self.session
        keys = {(r["journey_id"], r["step_id"], r["assignee"]) for r in rows}
        before = rule_tasks_repo.ids_of(s, keys)
        rule_tasks_repo.insert(s, rows)
        ids = rule_tasks_repo.ids_of(s, keys)
        fresh = [(ids[k], r) for r in rows if (k := (r["journey_id"], r["step_id"], r["assignee"])) in ids
                 and k not in before]
        rule_tasks.queue_notices(s, self.defs, fresh, kind="assigned", now=self.now, base_url=self.policy.base_url,
                                 customers=self.customers)
