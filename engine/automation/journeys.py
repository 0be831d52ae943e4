"""Advancing due journeys, one claimed batch at a time.

A batch is claimed in one statement, its subjects and facts are loaded with
one query per kind (:meth:`engine.steps.runtime.Batch.load`), and then its
journeys move through their rules' programs together: the journeys at the
same rule version and instruction form a group, and that instruction's step
type runs once over the group (one module per step type, see
:mod:`engine.steps.registry`). Groups form again after every instruction
until each journey waits, is deferred, ends or fails. Every write the batch
produces goes out as one statement per table. Nothing is written unless the
batch's transaction commits, so a killed worker leaves its journeys due and
the next claim repeats them; coupon codes and outbox idempotency keys then
make the repeat harmless.

``per_journey=True`` runs each journey as a batch of one (same steps, same
writes): the reference the differential tests compare the batch with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine.automation.facts import business_now
from engine.automation.policy import Counters, Policy
from engine.automation.program import END, RuleLookup, compile_program
from engine.experiments import arm_spec
from engine.steps import registry
from engine.steps import runtime as rt
from engine.storage import automation_repo as repo
from engine.storage.times import to_db_time

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from engine.definitions.loader import DefinitionSet

__all__ = ["AdvanceReport", "advance_due", "run_journeys"]

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


@dataclass
class _Slot:
    """A journey's row to write back (``[id, pc, step id, status, due, state]``) and its cursor."""

    update: list[Any]
    cursor: rt.Cursor | None = None


def _start(batch: rt.Batch, j: repo.JourneyRow, report: AdvanceReport) -> _Slot:
    """A journey's cursor, or its final row when it cannot run (rule gone, subject gone, exit_when)."""
    state = dict(j.state or {})
    counters = report.by_rule.setdefault(j.rule_id, Counters())
    counters.advanced += 1
    slot = _Slot([j.id, j.step_index, j.step_id, "active", None, state])
    rule = batch.rule_of(j.rule_id, j.rule_version)
    if rule is None:
        slot.update[3] = "orphaned"
        state["error"] = f"rule `{j.rule_id}` is not published"
        counters.errors += 1
        return slot
    if j.subject_type == "customer" and j.subject_id not in batch.customers:
        slot.update[3] = "exited"
        state["exit"] = "subject deleted"
        counters.exited += 1
        return slot
    row = batch.row_of(j)
    if rule.exit_when is not None and batch.evaluate(rule.exit_when, row, business_now(batch.now, rule),
                                                     batch.fields_of(rule)):
        slot.update[3] = "exited"
        state["exit"] = "exit_when"
        counters.exited += 1
        return slot
    arm_key = ("arm", rule.id, id(rule), j.arm)
    if arm_key not in batch.cache:
        batch.cache[arm_key] = arm_spec(rule, j.arm)
    slot.cursor = rt.Cursor(j, rule, row, state, counters, batch.zone_of(row, rule), batch.cache[arm_key],
                            pc=j.step_index)
    return slot


def _walk(batch: rt.Batch, slots: list[_Slot], out: rt.Writes) -> None:
    """Move the slots' cursors together until each stops (see the module notes)."""
    live = [s for s in slots if s.cursor is not None]
    for _ in range(MAX_STEPS_PER_PASS):
        if not live:
            return
        groups: dict[tuple[int, int], list[_Slot]] = {}
        for s in live:
            groups.setdefault((id(s.cursor.rule), s.cursor.pc), []).append(s)  # type: ignore[union-attr]
        live = []
        for (_, pc), group in groups.items():
            cursors = [s.cursor for s in group]
            program = compile_program(cursors[0].rule)  # type: ignore[union-attr]
            instr = program.at(pc)
            if instr is None:
                for s in group:
                    c = s.cursor
                    s.update[1:5] = [END, None, "done", None]
                    c.counters.completed += 1  # type: ignore[union-attr]
                    c.state.pop("waiting", None)  # type: ignore[union-attr]
                continue
            for s in group:
                s.update[1:3] = [pc, instr.step_id]
                s.cursor.outcome = s.cursor.error = None  # type: ignore[union-attr]
            out.merge(registry.step_of(instr.action).run(batch, instr, cursors))  # type: ignore[arg-type]
            for s in group:
                c = s.cursor
                assert c is not None
                if c.error is not None:
                    s.update[3] = "error"
                    c.state["error"] = c.error
                    c.counters.errors += 1
                elif isinstance(c.outcome, datetime):
                    s.update[4] = to_db_time(c.outcome)
                elif isinstance(c.outcome, int):
                    c.pc = c.outcome
                    live.append(s)
                else:
                    raise AssertionError(f"step `{registry.step_of(instr.action).key}` set no outcome")
    for s in live:
        s.update[3] = "error"
        s.cursor.state["error"] = f"more than {MAX_STEPS_PER_PASS} steps without a wait"  # type: ignore[union-attr]
        s.cursor.counters.errors += 1  # type: ignore[union-attr]


def advance_due(session: Session, *, now: datetime, definitions: DefinitionSet, batch: int = 5000,
                policy: Policy | None = None, rule_ids: list[str] | None = None, per_journey: bool = False,
                rule_of: RuleLookup | None = None) -> AdvanceReport:
    """Claim one batch of journeys due by ``now`` (aware) and run each until it
    waits, is deferred, ends or exits, in the caller's transaction.

    Journeys stay on the rule version they entered: ``rule_of(rule_id,
    version)`` gives its spec (default: the rule of that id in
    ``definitions``; :func:`engine.automation.versions.rule_lookup` serves
    pinned and draining old versions from the stored definitions). Call again (in a new
    transaction) while ``report.claimed == batch``. Per-rule counters of the
    batch are added to ``rule_runs`` (kind ``advance``). ``per_journey``: each
    journey as a batch of one (the same outcome; slower).
    """
    policy = policy or Policy()
    journeys = repo.claim_due(session, db_now=to_db_time(now), batch=batch, rule_ids=rule_ids)
    return run_journeys(session, journeys, now=now, definitions=definitions, policy=policy,
                        per_journey=per_journey, rule_of=rule_of)


def run_journeys(session: Session, journeys: list[repo.JourneyRow], *, now: datetime, definitions: DefinitionSet,
                 policy: Policy | None = None, per_journey: bool = False,
                 rule_of: RuleLookup | None = None) -> AdvanceReport:
    """Run journeys the caller holds (claimed, or replayed after a crash) as
    one batch: load, move, write, record the counters (see :func:`advance_due`)."""
    policy = policy or Policy()
    report = AdvanceReport(claimed=len(journeys))
    if not journeys:
        return report
    work = rt.Batch(session, now, definitions, policy, rule_of)
    work.load(journeys)
    out = rt.Writes()
    slots = [_start(work, j, report) for j in journeys]
    if per_journey:
        for s in slots:
            _walk(work, [s], out)
    else:
        _walk(work, slots, out)
    due_text: dict[datetime, str | None] = {}
    rows = []
    for s in slots:
        jid, pc, sid, status, due, state = s.update
        if due is not None and due not in due_text:
            due_text[due] = repo.db_time_text(due)
        rows.append([jid, pc, sid, status, due_text.get(due) if due is not None else None, state or None])
    work.flush(out, rows)
    for rule_id, counters in report.by_rule.items():
        repo.record_run(session, rule_id=rule_id, rule_version=None, kind="advance", db_now=to_db_time(now),
                        counters=counters.as_dict())
    return report
