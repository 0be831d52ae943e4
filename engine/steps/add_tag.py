"""``add_tag``: put a tag on the journey's customer (records have no tags).

The SQL form adds the tag to every plain customer of an entry in one
``INSERT … SELECT``. Tags are not messages: the control group gets them too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.definitions.specs import TagSpec
from engine.steps.registry import BuildSite, StepType
from engine.steps.runtime import Writes

if TYPE_CHECKING:
    from engine.automation.program import Instruction
    from engine.steps.runtime import Batch, Cursor
    from engine.steps.sql import SqlPlanner

__all__ = ["STEP", "AddTagStep", "run_tag"]


def run_tag(batch: Batch, instr: Instruction, cursors: list[Cursor]) -> Writes:
    """Add or remove ``instr.action.tag`` for every customer journey of the group
    (the row conditions see is updated too, for a later ``if``)."""
    out = Writes()
    spec: TagSpec = instr.action
    for c in cursors:
        c.go(instr.next)
        customer_id = c.customer_id
        if customer_id is None:
            continue
        out.tag(customer_id, spec.tag, remove=spec.remove)
        tags = c.row.get("tags") or []
        if spec.remove:
            c.row["tags"] = [t for t in tags if t != spec.tag]
        else:
            c.row["tags"] = [*tags, spec.tag] if spec.tag not in tags else tags
        batch.event(out, "customer.tagged", c, {"tag": spec.tag, "removed": spec.remove})
    return out


def tag_sql_form(planner: SqlPlanner, instr: Instruction) -> Any:
    """The tag change in the SQL segment (one statement per tag), unless someone listens to it."""
    from engine.steps.sql import NoSql

    if "customer.tagged" in planner.listened:
        return NoSql("a rule listens to `customer.tagged`")
    planner.tag(instr.action.tag, add=not instr.action.remove)
    return None


class AddTagStep(StepType):
    key = "add_tag"
    spec_type = TagSpec
    label = {"zh": "打标签", "en": "Add a tag"}
    help = {"zh": "给客户加一个标签（已有则不变）。", "en": "Tag the customer (no change when the tag is there)."}
    emits = "customer.tagged"
    schema = {"type": "string", "minLength": 1}

    def owns(self, spec: Any) -> bool:
        return isinstance(spec, TagSpec) and not spec.remove

    def build(self, body: Any, site: BuildSite) -> TagSpec:
        return TagSpec(body)

    def summary(self, spec: TagSpec, lang: str) -> str:
        return f"{self.label[lang]}: {spec.tag}"

    def run(self, batch: Batch, instr: Instruction, cursors: list[Cursor]) -> Writes:
        return run_tag(batch, instr, cursors)

    def sql_form(self, planner: SqlPlanner, instr: Instruction) -> Any:
        return tag_sql_form(planner, instr)


STEP = AddTagStep()
