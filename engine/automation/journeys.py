"""Advancing due journeys, one claimed batch at a time.

A batch is claimed in one statement, its subjects and facts are loaded with
one query per kind, each journey's instructions run in Python (conditions,
waits, send decisions, rendering), and every write the batch produces goes
out as one executemany per kind: coupons, outbox rows, tags, events, journey
rows. Nothing is written unless the batch's transaction commits, so a killed
worker leaves its journeys due and the next claim repeats them; coupon codes
and outbox idempotency keys then make the repeat harmless.

Sends check, in order: consent (marketing messages to customers need
``consent.<channel>``; skipped and counted), an address (skipped), quiet hours
in the customer's zone (else the rule's) and ``on: workdays`` (the journey
waits: deferred, never dropped), and frequency caps (deferred until the window
has room, or skipped when the policy says so).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from engine.automation.facts import Evaluator, business_now, facts_used, journey_row, orders_since
from engine.automation.fastpath import FastPass, RuleLookup
from engine.automation.links import survey_link, unsubscribe_link
from engine.automation.policy import Counters, Policy
from engine.automation.program import Instruction, compile_program
from engine.automation.timing import (
    end_of_quiet,
    in_quiet_hours,
    next_workday_time,
    wait_until,
    zone,
)
from engine.definitions.specs import (
    CreateRecordSpec,
    CreateTaskSpec,
    IfSpec,
    IssueCouponSpec,
    Recipient,
    RuleSpec,
    SendSpec,
    SetFieldSpec,
    TagSpec,
    WaitSpec,
    WebhookSpec,
)
from engine import rule_tasks
from engine.outbox import OutboxError, OutboxItem, pick_connector, row_for
from engine.storage import automation_repo as repo
from engine.storage import clicks_repo
from engine.storage import outbox_repo
from engine.storage import rule_tasks_repo
from engine.storage.events_repo import append_event
from engine.storage.times import from_db_time, to_db_time
from engine.templates import TemplateRenderError, render, render_string

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from engine.definitions.loader import DefinitionSet

__all__ = ["AdvanceReport", "advance_due"]

_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # 32 symbols: no 0/O, 1/I
MAX_STEPS_PER_PASS = 200


@dataclass
class AdvanceReport:
    """One batch: how many journeys were claimed, and counters per rule."""

    claimed: int = 0
    by_rule: dict[str, Counters] = field(default_factory=dict)

    @property
    def totals(self) -> Counters:
        total = Counters()
        for c in self.by_rule.values():
            total.add(c)
        return total


class _Skip(Exception):
    """A journey cannot go on (unknown template, render error …): it ends as ``error``."""


@dataclass
class _Batch:
    """Everything one batch writes, flushed at the end in one statement per kind."""

    coupons: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    add_tags: set[tuple[int, str]] = field(default_factory=set)
    remove_tags: set[tuple[int, str]] = field(default_factory=set)
    events: list[tuple[str, str, int, dict[str, Any]]] = field(default_factory=list)
    journeys: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)  # rule tasks (engine.rule_tasks)


def _random_code(length: int = 10) -> str:
    """``length`` symbols of ``_CODE_ALPHABET`` from the OS's CSPRNG (5 bits each)."""
    bits = int.from_bytes(secrets.token_bytes((5 * length + 7) // 8), "big")
    return "".join(_CODE_ALPHABET[(bits >> (5 * i)) & 31] for i in range(length))


def _display(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral() else format(value, "f")
    return value


class _Advancer:
    def __init__(self, session: Session, now: datetime, definitions: DefinitionSet, policy: Policy,
                 rule_of: RuleLookup | None = None):
        self.rule_of: RuleLookup = rule_of or (lambda rule_id, _version: definitions.rules.get(rule_id))
        self.session = session
        self.now = now
        self.db_now = to_db_time(now)
        self.defs = definitions
        self.policy = policy
        self.evaluate = Evaluator({k: s.condition for k, s in definitions.segments.items()})
        self.out = _Batch()
        self.report = AdvanceReport()
        self.listened = {r.trigger.event for r in definitions.rules.values() if hasattr(r.trigger, "event")}
        self.pool_counts: dict[str, list[Any]] = {}
        self.recent: dict[tuple[int, str], list[datetime]] = {}
        self.role_users: dict[str, list[dict[str, Any]]] = {}
        self.task_people: dict[tuple[Any, ...], list[str]] = {}

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

    # -- one journey ---------------------------------------------------------------

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

    def run(self, j: repo.JourneyRow) -> None:
        state = dict(j.state or {})
        update: dict[str, Any] = {"jid": j.id, "step_index": j.step_index, "step_id": j.step_id,
                                  "status": "active", "due_at": None}
        self.out.journeys.append(update)
        try:
            self._run(j, state, update)
        finally:
            update["state"] = state or None

    def _run(self, j: repo.JourneyRow, state: dict[str, Any], update: dict[str, Any]) -> None:
        counters = self.report.by_rule.setdefault(j.rule_id, Counters())
        counters.advanced += 1
        rule = self.rule_of(j.rule_id, j.rule_version)
        if rule is None:
            update.update(status="orphaned")
            state["error"] = f"rule `{j.rule_id}` is not published"
            counters.errors += 1
            return
        if j.subject_type == "customer" and j.subject_id not in self.customers:
            update.update(status="exited")
            state["exit"] = "subject deleted"
            counters.exited += 1
            return
        row = self.row_of(j)
        if rule.exit_when is not None and self.evaluate(rule.exit_when, row, business_now(self.now, rule),
                                                        self.fields_of(rule)):
            update.update(status="exited")
            state["exit"] = "exit_when"
            counters.exited += 1
            return
        program = compile_program(rule)
        pc = j.step_index
        try:
            for _ in range(MAX_STEPS_PER_PASS):
                instr = program.at(pc)
                if instr is None:
                    update.update(status="done", step_index=-1, step_id=None)
                    counters.completed += 1
                    state.pop("waiting", None)
                    return
                update.update(step_index=pc, step_id=instr.step_id)
                outcome = self.step(j, rule, instr, pc, row, state, counters)
                if isinstance(outcome, datetime):  # wait or defer: resume then
                    update["due_at"] = to_db_time(outcome)
                    return
                pc = outcome
            raise _Skip(f"more than {MAX_STEPS_PER_PASS} steps without a wait")
        except _Skip as exc:
            update.update(status="error")
            state["error"] = str(exc)
            counters.errors += 1

    def step(self, j: repo.JourneyRow, rule: RuleSpec, instr: Instruction, pc: int, row: dict[str, Any],
             state: dict[str, Any], counters: Counters) -> int | datetime:
        """Run one instruction; the next pc, or the time to resume at."""
        action = instr.action
        tz = zone(str(row.get("timezone") or ""), rule.timezone)
        if isinstance(action, IfSpec):
            hit = self.evaluate(action.condition, row, business_now(self.now, rule), self.fields_of(rule))
            return instr.next if hit else instr.else_next
        if isinstance(action, WaitSpec):
            if state.get("waiting") == pc:
                state.pop("waiting")
                return instr.next
            state["waiting"] = pc
            return wait_until(self.now, duration=action.duration, until=action.until, on=action.on,
                              calendar=self.policy.calendar, tz=tz)
        if isinstance(action, SendSpec):
            deferred = self.send(j, rule, instr, action, row, tz, counters)
            return deferred if deferred is not None else instr.next
        if isinstance(action, IssueCouponSpec):
            self.issue_coupon(j, action, counters)
        elif isinstance(action, TagSpec):
            self.tag(j, action, row)
        elif isinstance(action, SetFieldSpec):
            self.set_field(j, action, row)
        elif isinstance(action, WebhookSpec):
            self.webhook(j, rule, instr, action, row)
        elif isinstance(action, CreateRecordSpec):
            self.create_record(j, rule, action, row)
        elif isinstance(action, CreateTaskSpec):
            self.create_task(j, rule, instr, action, row, state)
        return instr.next

    # -- steps ----------------------------------------------------------------------

    def context(self, j: repo.JourneyRow, rule: RuleSpec, row: Mapping[str, Any]) -> dict[str, Any]:
        customer = {k: _display(v) for k, v in self.customers.get(j.subject_id, {}).items()} \
            if j.subject_type == "customer" else {}
        ctx: dict[str, Any] = {
            "customer": customer, "rule": {"id": rule.id, "title": rule.title},
            "record": {k: _display(v) for k, v in self.records.get(j.subject_id, {}).items()}
            if j.subject_type == "record" else {},
            "journey": {"id": j.id, "period": j.period_key},
            "unsubscribe_url": unsubscribe_link(self.policy, j.subject_type, j.subject_id, self.now),
            "survey_url": survey_link(self.policy, rule, j.subject_type, j.subject_id, self.now),
            "base_url": self.policy.base_url,
        }
        issued = self.coupons.get(j.id)
        if issued:
            c = issued[-1]
            pool = self.defs.coupon_pools.get(c["pool_id"])
            expires = c.get("expires_at")
            ctx["coupon"] = {
                "code": c["code"], "value": _display(c["value"]), "pool": c["pool_id"],
                "min_order": _display(pool.min_order) if pool and pool.min_order is not None else "",
                "expires_at": from_db_time(expires).astimezone(zone(rule.timezone)).date().isoformat()
                if expires else "",
            }
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

    def send(self, j: repo.JourneyRow, rule: RuleSpec, instr: Instruction, spec: SendSpec, row: dict[str, Any],
             tz: Any, counters: Counters) -> datetime | None:
        """Queue the message(s) of a send step; the time to retry when deferred."""
        template = self.defs.templates.get(spec.template)
        if template is None:
            raise _Skip(f"unknown template `{spec.template}`")
        marketing = "marketing" in (rule.delivery_class, template.delivery_class)
        dclass = "marketing" if marketing else "transactional"
        targets = self.recipients(spec.to, spec.channel, row)
        customer_id = j.subject_id if j.subject_type == "customer" else None
        to_customer = any(is_customer for _, is_customer in targets) and customer_id is not None
        if to_customer and marketing and not row.get("consent", {}).get(spec.channel, False):
            counters.skipped_consent += 1
            return None
        targets = [(a, c) for a, c in targets if a]
        if not targets:
            counters.skipped_other += 1
            return None
        if rule.quiet_hours and in_quiet_hours(self.now, rule.quiet_hours, tz):
            counters.deferred_quiet += 1
            return end_of_quiet(self.now, rule.quiet_hours, tz)
        if spec.on == "workdays":
            moved = next_workday_time(self.now, self.policy.calendar, tz)
            if moved != self.now:
                counters.deferred_quiet += 1
                return moved
        cap_keys: list[tuple[int, str]] = []
        if customer_id is not None and any(c for _, c in targets):
            for cap in self.policy.caps:
                if cap.delivery_class != dclass:
                    continue
                key = (customer_id, f"{dclass}:{spec.channel}")
                window_start = to_db_time(self.now - cap.per)
                times = [t for t in self.recent.get(key, []) if t >= window_start]
                if len(times) >= cap.limit:
                    if self.policy.cap_action == "skip":
                        counters.skipped_cap += 1
                        return None
                    counters.deferred_cap += 1
                    free_at = from_db_time(sorted(times)[len(times) - cap.limit]) + cap.per + timedelta(seconds=1)
                    return max(free_at, self.now + timedelta(minutes=1))
                cap_keys.append(key)
        try:
            connector = pick_connector(self.defs, spec.channel, spec.connector)
            message = render(template, self.context(j, rule, row), channel=spec.channel)
        except (OutboxError, TemplateRenderError) as exc:
            raise _Skip(str(exc)) from None
        base_key = f"{rule.id}:{j.subject_type}:{j.subject_id}:{j.period_key}:{instr.step_id}"
        for n, (address, _) in enumerate(targets):
            item = OutboxItem(channel=spec.channel, to=str(address), template_id=template.id, context={},
                              idempotency_key=base_key if n == 0 else f"{base_key}:{n}", delivery_class=dclass,
                              rule_id=rule.id, journey_id=j.id, customer_id=customer_id)
            self.out.outbox.append(row_for(item, message, connector, self.now, template))
            counters.sent += 1
        for key in cap_keys:
            self.recent.setdefault(key, []).append(self.db_now)
        self.emit("message.sent", j, {"rule_id": rule.id, "template": template.id, "channel": spec.channel})
        return None

    def issue_coupon(self, j: repo.JourneyRow, spec: IssueCouponSpec, counters: Counters) -> None:
        pool = self.defs.coupon_pools.get(spec.pool)
        if pool is None:
            raise _Skip(f"unknown coupon pool `{spec.pool}`")
        value = spec.value if spec.value is not None else pool.value
        if pool.max_issued is not None or pool.budget is not None:
            if spec.pool not in self.pool_counts:
                self.pool_counts[spec.pool] = list(repo.pool_issued(self.session, spec.pool))
            count, total = self.pool_counts[spec.pool]
            if (pool.max_issued is not None and count >= pool.max_issued) or \
                    (pool.budget is not None and Decimal(total) + value > pool.budget):
                counters.skipped_other += 1
                return
            self.pool_counts[spec.pool] = [count + 1, Decimal(total) + value]
        expires_in = spec.expires_in or pool.expires_in
        code = (pool.code_prefix or pool.id.upper()[:8]) + _random_code()
        coupon = {"pool_id": pool.id, "code": code, "customer_id": j.subject_id if j.subject_type == "customer" else None,
                  "value": value, "issued_at": self.db_now,
                  "expires_at": to_db_time(self.now + expires_in) if expires_in else None, "redeemed_at": None,
                  "journey_id": j.id, "status": "issued"}
        self.out.coupons.append(coupon)
        self.coupons.setdefault(j.id, []).append(coupon)
        self.emit("coupon.issued", j, {"pool": pool.id, "code": code})

    def tag(self, j: repo.JourneyRow, spec: TagSpec, row: dict[str, Any]) -> None:
        if j.subject_type != "customer":
            return
        pair = (j.subject_id, spec.tag)
        tags = row.get("tags") or []
        if spec.remove:
            self.out.remove_tags.add(pair)
            self.out.add_tags.discard(pair)
            row["tags"] = [t for t in tags if t != spec.tag]
        else:
            self.out.add_tags.add(pair)
            self.out.remove_tags.discard(pair)
            row["tags"] = [*tags, spec.tag] if spec.tag not in tags else tags
        self.emit("customer.tagged", j, {"tag": spec.tag, "removed": spec.remove})

    def set_field(self, j: repo.JourneyRow, spec: SetFieldSpec, row: dict[str, Any]) -> None:
        if j.subject_type != "customer":
            return
        values: dict[str, Any] = {}
        for key, value in spec.values.items():
            if key in ("birthday", "contract_end") and isinstance(value, str):
                value = date.fromisoformat(value)
            values[key] = value
        repo.set_customer_fields(self.session, j.subject_id, values, self.db_now)
        row.update(values)
        self.emit("customer.updated", j, {"fields": sorted(values)})

    def _render_data(self, data: Mapping[str, Any], ctx: Mapping[str, Any], name: str) -> dict[str, Any]:
        try:
            return {k: render_string(v, ctx, template_id=name, part=k) if isinstance(v, str) else v
                    for k, v in data.items()}
        except TemplateRenderError as exc:
            raise _Skip(str(exc)) from None

    def webhook(self, j: repo.JourneyRow, rule: RuleSpec, instr: Instruction, spec: WebhookSpec,
                row: dict[str, Any]) -> None:
        connector = self.defs.connectors.get(spec.connector)
        if connector is None:
            raise _Skip(f"unknown connector `{spec.connector}`")
        payload = self._render_data(spec.payload, self.context(j, rule, row), f"{rule.id}.{instr.step_id}")
        stamp = self.db_now
        self.out.outbox.append({
            "channel": connector.channel, "connector": connector.id, "recipient": connector.id, "subject": None,
            "body": json.dumps(payload, ensure_ascii=False, default=str), "payload": {"data": payload},
            "idempotency_key": f"{rule.id}:{j.subject_type}:{j.subject_id}:{j.period_key}:{instr.step_id}",
            "delivery_class": "transactional", "status": "queued", "attempts": 0, "next_attempt_at": stamp,
            "rule_id": rule.id, "journey_id": j.id, "created_at": stamp,
            "customer_id": j.subject_id if j.subject_type == "customer" else None, "template_id": None,
        })

    def create_record(self, j: repo.JourneyRow, rule: RuleSpec, spec: CreateRecordSpec, row: dict[str, Any]) -> None:
        data = self._render_data(spec.data, self.context(j, rule, row), f"{rule.id}.create_record")
        record_id = repo.insert_record(self.session, form_id=spec.form, form_version=self.policy.form_version_of(spec.form),
                                       data=data, by=f"rule:{rule.id}", db_now=self.db_now)
        append_event(self.session, "record.created", "record", record_id,
                     {"form_id": spec.form, "rule_id": rule.id, "customer_id": row.get("id")}, self.now)

    def create_task(self, j: repo.JourneyRow, rule: RuleSpec, instr: Instruction, spec: CreateTaskSpec,
                    row: dict[str, Any], state: dict[str, Any]) -> None:
        """A follow-up task for staff: one inbox task per assignee (see
        :mod:`engine.rule_tasks`, written at flush), a ``task.created`` event
        and an entry in the journey's state."""
        customer_id = j.subject_id if j.subject_type == "customer" else None
        attrs = row.get("attrs") if customer_id is not None else None
        store = attrs.get("store") if isinstance(attrs, Mapping) else None
        if spec.to.kind == "account_manager":  # loaded with the batch (active users only)
            manager = self.users.get(row.get("account_manager_id")) if customer_id is not None else None  # type: ignore[arg-type]
            assignees = [manager["username"]] if manager else []
        else:  # the same people for every journey of a step and store: asked once per batch
            named = repr(row.get(str(spec.to.value))) if spec.to.kind == "field" else None
            key = (spec.to.kind, repr(spec.to.value), store, named)
            if key not in self.task_people:
                self.task_people[key] = rule_tasks.assignees_for(self.session, spec.to, subject_type=j.subject_type,
                                                                 subject_id=j.subject_id, row=row)
            assignees = self.task_people[key]
        self.out.tasks.extend({**r, "tz": rule.timezone} for r in rule_tasks.new_task_rows(
            spec, assignees, step_id=instr.step_id, rule_id=rule.id, journey_id=j.id, customer_id=customer_id,
            now=self.now, store=str(store) if store not in (None, "") else None))
        due = (self.now + spec.due).isoformat() if spec.due else None
        task = {"title": spec.title, "assignees": assignees, "due_at": due, "step": instr.step_id}
        state.setdefault("tasks", []).append(task)
        self.out.events.append(("task.created", j.subject_type, j.subject_id,
                                {**task, "rule_id": rule.id, "journey_id": j.id}))
        if not assignees:
            self.out.events.append(("task.unassigned", j.subject_type, j.subject_id,
                                    {**task, "rule_id": rule.id, "journey_id": j.id, "to": spec.to.kind}))

    def emit(self, name: str, j: repo.JourneyRow, payload: dict[str, Any]) -> None:
        """Record a step's event only when some rule listens for it (the events
        table is not a log of every message of a million-customer run)."""
        if name in self.listened:
            self.out.events.append((name, j.subject_type, j.subject_id, {**payload, "journey_id": j.id}))

    # -- flush ----------------------------------------------------------------------

    def flush(self) -> None:
        s, out = self.session, self.out
        repo.insert_coupons(s, out.coupons)  # codes are random: no conflicts to count
        outbox_repo.insert_messages(s, out.outbox, returning=False)
        repo.add_tags(s, out.add_tags)
        repo.remove_tags(s, out.remove_tags)
        for name, subject_type, subject_id, payload in out.events:
            append_event(s, name, subject_type, subject_id, payload, self.now)
        if out.tasks:
            self.flush_tasks()
        repo.update_journeys(s, out.journeys)

    def flush_tasks(self) -> None:
        """Insert the batch's rule tasks (a repeated batch inserts nothing) and
        queue the assignees' notices for the ones this batch created."""
        s, rows = self.session, self.out.tasks
        keys = {(r["journey_id"], r["step_id"], r["assignee"]) for r in rows}
        before = rule_tasks_repo.ids_of(s, keys)
        rule_tasks_repo.insert(s, rows)
        ids = rule_tasks_repo.ids_of(s, keys)
        fresh = [(ids[k], r) for r in rows if (k := (r["journey_id"], r["step_id"], r["assignee"])) in ids
                 and k not in before]
        rule_tasks.queue_notices(s, self.defs, fresh, kind="assigned", now=self.now, base_url=self.policy.base_url,
                                 customers=self.customers)


def advance_due(session: Session, *, now: datetime, definitions: DefinitionSet, batch: int = 5000,
                policy: Policy | None = None, rule_ids: list[str] | None = None, fast: bool = True,
                rule_of: RuleLookup | None = None) -> AdvanceReport:
    """Claim one batch of journeys due by ``now`` (aware) and run each until it
    waits, is deferred, ends or exits, in the caller's transaction.

    Journeys stay on the rule version they entered: ``rule_of(rule_id,
    version)`` gives its spec (default: the rule of that id in
    ``definitions``; :func:`engine.automation.versions.rule_lookup` serves
    pinned and draining old versions from the stored definitions). Call again (in a new
    transaction) while ``report.claimed == batch``. Per-rule counters of the
    batch are added to ``rule_runs`` (kind ``advance``).

    With ``fast`` (the default), groups of journeys of one rule at one step
    whose next instructions are coupons, sends to the customer, tags and a
    wait go through the set-based pass of :mod:`engine.automation.fastpath`
    (same outcome, one statement per kind for the whole group); the rest, and
    everything with ``fast=False``, journey by journey.
    """
    policy = policy or Policy()
    journeys = repo.claim_due(session, db_now=to_db_time(now), batch=batch, rule_ids=rule_ids)
    advancer = _Advancer(session, now, definitions, policy, rule_of)
    advancer.report.claimed = len(journeys)
    if not journeys:
        return advancer.report
    rest = journeys
    if fast:
        fastpass = FastPass(session, now, definitions, policy, advancer.listened, advancer.evaluate, rule_of)
        groups, rest = fastpass.split(journeys)
        for key, group in groups.items():
            if not fastpass.run(key, group, advancer.report.by_rule.setdefault(key[0], Counters())):
                rest.extend(group)
        rest.sort(key=lambda j: j.id)
    if rest:
        advancer.load(rest)
        for j in rest:
            advancer.run(j)
        advancer.flush()
    for rule_id, counters in advancer.report.by_rule.items():
        repo.record_run(session, rule_id=rule_id, rule_version=None, kind="advance", db_now=to_db_time(now),
                        counters=counters.as_dict())
    return advancer.report

