"""``if``: test a condition on the subject and the journey's facts; go on with ``then`` or ``else``.

A condition is data (engine/conditions), never code: the customer's fields,
segments and journey facts (``coupon_redeemed: winback20``,
``ordered_since_entry``, ``feedback.score`` …). Either branch may be empty;
after it the journey goes on with the steps after the ``if``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.automation.facts import business_now
from engine.definitions.build import condition_of
from engine.definitions.errors import Problem
from engine.definitions.specs import IfSpec
from engine.steps.registry import BuildSite, CheckSite, StepType
from engine.steps.runtime import Writes

if TYPE_CHECKING:
    from engine.automation.program import Instruction
    from engine.steps.runtime import Batch, Cursor

__all__ = ["STEP", "BranchStep"]


class BranchStep(StepType):
    key = "if"
    spec_type = IfSpec
    label = {"zh": "条件分支", "en": "If / else"}
    help = {"zh": "按条件分两路：满足走 then，否则走 else（例如：券已核销？）。",
            "en": "Split on a condition: `then` when it holds, `else` otherwise (e.g. was the coupon redeemed?)."}
    schema = {"$ref": "common.schema.json#/$defs/condition"}
    nested = ("then", "else")
    siblings = {"then": {"$ref": "#/$defs/steps"}, "else": {"$ref": "#/$defs/steps"}}

    def build(self, body: Any, site: BuildSite) -> IfSpec:
        sid, d = site.step_id, site.step
        return IfSpec(condition_of(body), site.build_steps(d.get("then", ()), f"{sid}_then_"),  # type: ignore[arg-type]
                      site.build_steps(d.get("else", ()), f"{sid}_else_"))

    def check(self, body: Any, site: CheckSite) -> list[Problem]:
        from engine.definitions.check_flows import check_pool_facts, parse_checked

        cond, problems = parse_checked(body, site.path, dict(site.journey_kinds), site.ctx, "field or journey fact")
        site.conditions[site.path] = cond
        if cond is not None:
            problems = problems + check_pool_facts(site.ctx, cond)
        if "then" not in site.step and "else" not in site.step:
            problems = problems + [Problem(site.path, "if_without_branches",
                                           "an `if` step needs `then:` or `else:` steps", at_key=True)]
        return problems

    def run(self, batch: Batch, instr: Instruction, cursors: list[Cursor]) -> Writes:
        spec: IfSpec = instr.action
        for c in cursors:
            rule = c.rule
            hit = batch.evaluate(spec.condition, c.row, business_now(batch.now, rule), batch.fields_of(rule))
            c.go(instr.next if hit else instr.else_next)
        return Writes()


STEP = BranchStep()
