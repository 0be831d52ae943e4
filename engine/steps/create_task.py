"""``create_task``: a follow-up task for staff (call the customer, visit the store …).

One inbox task per assignee (engine/rule_tasks.py: due, reminders,
escalation and outcomes as an approval step's), a ``task.created`` event, and
the task in the journey's state. Who: the customer's account manager, a role
(in the customer's store when it has one), named users or a record's field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine import rule_tasks
from engine.definitions.build import duration_of, overdue_of, recipient_of
from engine.definitions.errors import Problem, unknown
from engine.definitions.specs import (
    DEFAULT_TASK_OUTCOMES,
    CreateTaskSpec,
    TaskOutcomeSpec,
)
from engine.steps.registry import BuildSite, CheckSite, StepType
from engine.steps.runtime import EventRow, Writes

if TYPE_CHECKING:
    from engine.automation.program import Instruction
    from engine.steps.runtime import Batch, Cursor

__all__ = ["STEP", "CreateTaskStep"]

_KNOWN_OUTCOMES = {o.id: o for o in DEFAULT_TASK_OUTCOMES}
_ID = {"$ref": "common.schema.json#/$defs/id"}
_REF = {"$ref": "common.schema.json#/$defs/ref"}


class CreateTaskStep(StepType):
    key = "create_task"
    spec_type = CreateTaskSpec
    label = {"zh": "创建跟进任务", "en": "Create a follow-up task"}
    help = {"zh": "给员工（客户经理、某角色或指定用户）派一个跟进任务，可设期限、提醒和升级。",
            "en": "Give staff (the account manager, a role or named users) a follow-up task, with a due time, "
                  "reminders and escalation."}
    emits = "task.created"
    schema = {
        "type": "object",
        "required": ["title", "to"],
        "additionalProperties": False,
        "properties": {
            "title": {"type": "string", "minLength": 1},
            "to": {"$ref": "common.schema.json#/$defs/recipient"},
            "due": {"$ref": "common.schema.json#/$defs/duration"},
            "form": _REF,
            "title_en": {"type": "string", "minLength": 1},
            "remind_every": {"$ref": "common.schema.json#/$defs/duration"},
            "on_overdue": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "remind": {"type": "boolean"},
                    "escalate_to": {
                        "type": "object",
                        "additionalProperties": False,
                        "minProperties": 1,
                        "maxProperties": 1,
                        "properties": {
                            "role": _REF,
                            "users": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                            "manager": {"const": True},
                        },
                    },
                },
            },
            "outcomes": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "anyOf": [
                        _ID,
                        {
                            "type": "object",
                            "required": ["id", "label"],
                            "additionalProperties": False,
                            "properties": {
                                "id": _ID,
                                "label": {"type": "string", "minLength": 1},
                                "label_en": {"type": "string", "minLength": 1},
                            },
                        },
                    ]
                },
            },
        },
    }

    def build(self, body: Any, site: BuildSite) -> CreateTaskSpec:
        t = body
        return CreateTaskSpec(t["title"], recipient_of(t["to"]), duration_of(t.get("due")), t.get("form"),  # type: ignore[arg-type]
                              title_en=t.get("title_en"), remind_every=duration_of(t.get("remind_every")),
                              on_overdue=overdue_of(t.get("on_overdue")),
                              outcomes=tuple(_KNOWN_OUTCOMES.get(o, TaskOutcomeSpec(o, o)) if isinstance(o, str) else
                                             TaskOutcomeSpec(o["id"], o.get("label", o["id"]), o.get("label_en"))
                                             for o in t.get("outcomes", ())))

    def check(self, body: Any, site: CheckSite) -> list[Problem]:
        from engine.definitions.check_flows import check_role

        ctx, p = site.ctx, site.path
        problems: list[Problem] = []
        to = body["to"]
        if isinstance(to, dict) and "role" in to:
            problems.extend(check_role(ctx, to["role"], p + ("to", "role")))
        if "form" in body and body["form"] not in ctx.ids("form"):
            problems.append(Problem(p + ("form",), "unknown_ref", unknown("form", body["form"], ctx.ids("form"))))
        escalate = (body.get("on_overdue") or {}).get("escalate_to") or {}
        if "role" in escalate:
            problems.extend(check_role(ctx, escalate["role"], p + ("on_overdue", "escalate_to", "role")))
        seen: set[str] = set()
        for n, outcome in enumerate(body.get("outcomes", ())):
            oid = outcome if isinstance(outcome, str) else outcome.get("id")
            if oid in seen:
                problems.append(Problem(p + ("outcomes", n), "duplicate_outcome", f"outcome `{oid}` is listed twice"))
            seen.add(oid)
        return problems

    def summary(self, spec: CreateTaskSpec, lang: str) -> str:
        return f"{self.label[lang]}: {spec.title_en if lang == 'en' and spec.title_en else spec.title}"

    def run(self, batch: Batch, instr: Instruction, cursors: list[Cursor]) -> Writes:
        out = Writes()
        spec: CreateTaskSpec = instr.action
        for c in cursors:
            c.go(instr.next)
            self._one(batch, out, instr, spec, c)
        return out

    def _one(self, batch: Batch, out: Writes, instr: Instruction, spec: CreateTaskSpec, c: Cursor) -> None:
        j, rule, row = c.journey, c.rule, c.row
        customer_id = c.customer_id
        attrs = row.get("attrs") if customer_id is not None else None
        store = attrs.get("store") if isinstance(attrs, Mapping) else None
        if spec.to.kind == "account_manager":  # loaded with the batch (active users only)
            manager = batch.users.get(row.get("account_manager_id")) if customer_id is not None else None  # type: ignore[arg-type]
            assignees = [manager["username"]] if manager else []
        else:  # the same people for every journey of a step and store: asked once per batch
            named = repr(row.get(str(spec.to.value))) if spec.to.kind == "field" else None
            key = (spec.to.kind, repr(spec.to.value), store, named)
            if key not in batch.task_people:
                batch.task_people[key] = rule_tasks.assignees_for(batch.session, spec.to, subject_type=j.subject_type,
                                                                  subject_id=j.subject_id, row=row)
            assignees = batch.task_people[key]
        out.tasks.extend({**r, "tz": rule.timezone} for r in rule_tasks.new_task_rows(
            spec, assignees, step_id=instr.step_id, rule_id=rule.id, journey_id=j.id, customer_id=customer_id,
            now=batch.now, store=str(store) if store not in (None, "") else None))
        due = (batch.now + spec.due).isoformat() if spec.due else None
        task = {"title": spec.title, "assignees": assignees, "due_at": due, "step": instr.step_id}
        c.state.setdefault("tasks", []).append(task)
        out.events.append(EventRow("task.created", j.subject_type, j.subject_id,
                                   {**task, "rule_id": rule.id, "journey_id": j.id}))
        if not assignees:
            out.events.append(EventRow("task.unassigned", j.subject_type, j.subject_id,
                                       {**task, "rule_id": rule.id, "journey_id": j.id, "to": spec.to.kind}))


STEP = CreateTaskStep()
