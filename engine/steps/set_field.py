"""``set_field``: write fields of the journey's customer (``level: gold``, a date …).

Only fields a person could type are writable (catalog
``WRITABLE_CUSTOMER_FIELDS``); computed ones (RFM, totals) are refused at
load. The row conditions see is updated at once, for a later ``if``.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from engine.conditions.customer_fields import CUSTOMER_FIELDS
from engine.definitions.build import frozen
from engine.definitions.catalog import WRITABLE_CUSTOMER_FIELDS
from engine.definitions.errors import Problem, unknown
from engine.definitions.specs import SetFieldSpec
from engine.steps.registry import BuildSite, CheckSite, StepType
from engine.steps.runtime import FieldChange, Writes

if TYPE_CHECKING:
    from engine.automation.program import Instruction
    from engine.steps.runtime import Batch, Cursor

__all__ = ["STEP", "SetFieldStep"]


class SetFieldStep(StepType):
    key = "set_field"
    spec_type = SetFieldSpec
    label = {"zh": "修改客户字段", "en": "Set customer fields"}
    help = {"zh": "把客户的字段改成给定的值，例如 level: gold。", "en": "Set fields of the customer, e.g. level: gold."}
    emits = "customer.updated"
    schema = {"type": "object", "minProperties": 1}

    def build(self, body: Any, site: BuildSite) -> SetFieldSpec:
        return SetFieldSpec(frozen(body))  # type: ignore[arg-type]

    def check(self, body: Any, site: CheckSite) -> list[Problem]:
        problems = []
        for key in body:
            if key not in WRITABLE_CUSTOMER_FIELDS:
                msg = (f"customer field `{key}` is computed and cannot be set" if key in CUSTOMER_FIELDS
                       else unknown("customer field", key, WRITABLE_CUSTOMER_FIELDS))
                problems.append(Problem(site.path + (key,), "set_field", msg, at_key=True))
        return problems

    def summary(self, spec: SetFieldSpec, lang: str) -> str:
        return f"{self.label[lang]}: {', '.join(sorted(spec.values))}"

    def run(self, batch: Batch, instr: Instruction, cursors: list[Cursor]) -> Writes:
        out = Writes()
        spec: SetFieldSpec = instr.action
        values: dict[str, Any] = {}
        for key, value in spec.values.items():
            if key in ("birthday", "contract_end") and isinstance(value, str):
                value = date.fromisoformat(value)
            values[key] = value
        for c in cursors:
            c.go(instr.next)
            if c.customer_id is None:
                continue
            out.fields.append(FieldChange(c.customer_id, values))
            c.row.update(values)
            batch.event(out, "customer.updated", c, {"fields": sorted(values)})
        return out


STEP = SetFieldStep()
