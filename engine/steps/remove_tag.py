"""``remove_tag``: take a tag off the journey's customer (see :mod:`engine.steps.add_tag`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.definitions.specs import TagSpec
from engine.steps.add_tag import run_tag, tag_sql_form
from engine.steps.registry import BuildSite, StepType
from engine.steps.runtime import Writes

if TYPE_CHECKING:
    from engine.automation.program import Instruction
    from engine.steps.runtime import Batch, Cursor
    from engine.steps.sql import SqlPlanner

__all__ = ["STEP", "RemoveTagStep"]


class RemoveTagStep(StepType):
    key = "remove_tag"
    spec_type = TagSpec
    label = {"zh": "去掉标签", "en": "Remove a tag"}
    help = {"zh": "去掉客户的一个标签（没有则不变）。", "en": "Take a tag off the customer (no change when it is not there)."}
    emits = "customer.tagged"
    schema = {"type": "string", "minLength": 1}

    def owns(self, spec: Any) -> bool:
        return isinstance(spec, TagSpec) and spec.remove

    def build(self, body: Any, site: BuildSite) -> TagSpec:
        return TagSpec(body, remove=True)

    def summary(self, spec: TagSpec, lang: str) -> str:
        return f"{self.label[lang]}: {spec.tag}"

    def run(self, batch: Batch, instr: Instruction, cursors: list[Cursor]) -> Writes:
        return run_tag(batch, instr, cursors)

    def sql_form(self, planner: SqlPlanner, instr: Instruction) -> Any:
        return tag_sql_form(planner, instr)


STEP = RemoveTagStep()
