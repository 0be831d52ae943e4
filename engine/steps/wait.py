"""``wait``: pause the journey for a duration, until a time of day, or to a workday.

A journey waiting at instruction ``pc`` stores ``state.waiting = pc``; when it
is due again the same instruction lets it pass. Times are in the customer's
zone (else the rule's). The SQL form ends a scheduled rule's first segment
with a plain ``wait: 3d`` (no ``until``, no workdays).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.automation.timing import wait_until, zone
from engine.definitions.build import duration_of, time_of
from engine.definitions.errors import Problem
from engine.definitions.specs import WaitSpec
from engine.durations import parse_duration
from engine.steps.registry import BuildSite, CheckSite, StepType
from engine.steps.runtime import Writes
from engine.storage.times import to_db_time

if TYPE_CHECKING:
    from engine.automation.program import Instruction
    from engine.steps.runtime import Batch, Cursor
    from engine.steps.sql import SqlPlanner

__all__ = ["STEP", "WaitStep"]


class WaitStep(StepType):
    key = "wait"
    spec_type = WaitSpec
    label = {"zh": "等待", "en": "Wait"}
    help = {"zh": "等待一段时间（如 3d），或等到某个时刻（until: \"10:00\"），可只在工作日继续。",
            "en": "Wait for a duration (e.g. 3d), or until a time of day (until: \"10:00\"), optionally to a workday."}
    schema = {
        "x-message": "must be a duration such as 3d, or {until: \"10:00\", on: workdays}",
        "anyOf": [
            {"$ref": "common.schema.json#/$defs/duration"},
            {
                "type": "object",
                "minProperties": 1,
                "additionalProperties": False,
                "properties": {
                    "for": {"$ref": "common.schema.json#/$defs/duration"},
                    "until": {"$ref": "common.schema.json#/$defs/time_of_day"},
                    "on": {"type": "string", "enum": ["any_day", "workdays"]},
                },
            },
        ],
    }

    def build(self, body: Any, site: BuildSite) -> WaitSpec:
        if isinstance(body, str):
            return WaitSpec(duration=parse_duration(body))
        return WaitSpec(duration=duration_of(body.get("for")), until=time_of(body["until"]) if "until" in body else None,
                        on=body.get("on", "any_day"))

    def check(self, body: Any, site: CheckSite) -> list[Problem]:
        if isinstance(body, dict) and "for" not in body and "until" not in body:
            return [Problem(site.path, "wait", "`wait` needs `for: DURATION` or `until: HH:MM`")]
        return []

    def run(self, batch: Batch, instr: Instruction, cursors: list[Cursor]) -> Writes:
        spec: WaitSpec = instr.action
        for c in cursors:
            if c.state.get("waiting") == c.pc:
                c.state.pop("waiting")
                c.go(instr.next)
                continue
            c.state["waiting"] = c.pc
            key = ("wait", id(spec), c.tz)
            due = batch.cache.get(key)
            if due is None:
                due = batch.cache[key] = wait_until(batch.now, duration=spec.duration, until=spec.until, on=spec.on,
                                                    calendar=batch.policy.calendar, tz=c.tz)
            c.resume_at(due)
        return Writes()

    def sql_form(self, planner: SqlPlanner, instr: Instruction) -> Any:
        from engine.steps.sql import NoSql, SqlEnd

        spec: WaitSpec = instr.action
        if spec.until is not None or spec.on == "workdays":
            return NoSql("a `wait` until a time or a workday (per customer's zone)")
        due = wait_until(planner.now, duration=spec.duration, until=None, on="", calendar=planner.policy.calendar,
                         tz=zone(planner.rule.timezone))
        # the pc is filled in by the planner, which knows where it stands
        return SqlEnd(-2, instr.step_id, "active", to_db_time(due), None)


STEP = WaitStep()
