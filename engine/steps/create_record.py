"""``create_record``: add a record of a form (values may be templates), as if staff had submitted it.

The record is created by ``rule:<id>`` and appends ``record.created`` (so a
workflow bound to the form starts, and rules may listen).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.definitions.build import frozen
from engine.definitions.errors import Problem, unknown
from engine.definitions.specs import CreateRecordSpec
from engine.steps.registry import BuildSite, CheckSite, StepType
from engine.steps.runtime import NewRecord, StepFailed, Writes
from engine.steps.webhook import render_data

if TYPE_CHECKING:
    from engine.automation.program import Instruction
    from engine.steps.runtime import Batch, Cursor

__all__ = ["STEP", "CreateRecordStep"]


class CreateRecordStep(StepType):
    key = "create_record"
    spec_type = CreateRecordSpec
    label = {"zh": "新建表单记录", "en": "Create a record"}
    help = {"zh": "在某个表单里新建一条记录（字段值可用模板），绑定的审批流程会随之启动。",
            "en": "Create a record of a form (field values may be templates); a workflow bound to the form starts."}
    emits = "record.created"
    schema = {
        "type": "object",
        "required": ["form"],
        "additionalProperties": False,
        "properties": {"form": {"$ref": "common.schema.json#/$defs/ref"}, "data": {"type": "object"}},
    }

    def build(self, body: Any, site: BuildSite) -> CreateRecordSpec:
        return CreateRecordSpec(body["form"], frozen(body.get("data", {})))  # type: ignore[arg-type]

    def check(self, body: Any, site: CheckSite) -> list[Problem]:
        ctx, p = site.ctx, site.path
        if body["form"] not in ctx.ids("form"):
            return [Problem(p + ("form",), "unknown_ref", unknown("form", body["form"], ctx.ids("form")))]
        problems = []
        if body["form"] in ctx.form_fields:
            keys = {f["key"] for f in ctx.form_fields[body["form"]]}
            for key in body.get("data", {}):
                if key not in keys:
                    problems.append(Problem(p + ("data", key), "unknown_ref", unknown("field", key, keys), at_key=True))
        return problems

    def summary(self, spec: CreateRecordSpec, lang: str) -> str:
        return f"{self.label[lang]}: {spec.form}"

    def run(self, batch: Batch, instr: Instruction, cursors: list[Cursor]) -> Writes:
        out = Writes()
        spec: CreateRecordSpec = instr.action
        for c in cursors:
            c.go(instr.next)
            try:
                data = render_data(spec.data, batch.context(c), f"{c.rule.id}.create_record")
            except StepFailed as exc:
                c.fail(str(exc))
                continue
            out.records.append(NewRecord(spec.form, data, c.rule.id, c.row.get("id")))
        return out


STEP = CreateRecordStep()
