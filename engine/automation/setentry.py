"""Entry plus the first steps of a scheduled rule as SQL, when the steps allow it.

:func:`enter_and_start` is what a schedule (or ``rules run``) calls: it asks
each step of the rule's first segment for its SQL form (one module per step
type, :meth:`engine.steps.registry.StepType.sql_form`) and, when every step
has one (see :mod:`engine.storage.entry_sql`), enters the audience and runs
the segment in a few statements. Otherwise it enters as
:func:`engine.automation.entry.enter_audience` does, leaves the steps to
:func:`engine.automation.journeys.advance_due`, and the run's report says why
(:class:`engine.steps.sql.NoSql`).

The SQL path only takes what it can do exactly as the per-journey path would:
customers in the rule's own time zone (or none) when it is not quiet there,
and whose frequency caps cannot bite; sends whose template is text and
``{{ name.attr }}`` of customer columns, the coupon, the rule or the journey;
coupons from pools without limits; a segment ending in a plain ``wait`` or the
end. Everyone and everything else goes the per-journey way, due now.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from engine.automation.entry import enter_audience, segments_of
from engine.automation.facts import Evaluator, business_now, collect_fields, journey_row
from engine.automation.policy import Counters, Policy
from engine.automation.program import END, compile_program
from engine.automation.timing import date_trigger_days, in_quiet_hours, period_key, zone
from engine.definitions.catalog import JOURNEY_FACTS
from engine.definitions.specs import DateFieldTrigger, RuleSpec, SegmentChangeTrigger
from engine.experiments import assignment
from engine.steps import registry
from engine.steps.sql import NoSql, SqlEnd, SqlPlanner
from engine.storage import automation_repo as repo
from engine.storage import entry_sql
from engine.storage.entry_sql import SetArm, SetPlan
from engine.storage.database import transaction
from engine.storage.times import to_db_time

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from engine.definitions.loader import DefinitionSet

__all__ = ["ChunkRunner", "SetEntry", "chunk_ranges", "enter_and_start", "enter_in_chunks", "plan_segment",
           "run_chunk"]

MAX_STEPS = 200  # as the per-journey runtime's limit of steps without a wait

#: Runs the chunks of one set-based entry somewhere else (Celery workers, see
#: :mod:`web.fleet_ticks`): given the id ranges, returns (entered, counters)
#: per range once every chunk has committed. Raises when one did not, so the
#: occurrence stays unclaimed and the next tick repeats it.
ChunkRunner = Callable[[list[tuple[int, int]]], list[tuple[int, "Counters"]]]


def _listened(definitions: DefinitionSet) -> set[str]:
    return {r.trigger.event for r in definitions.rules.values() if hasattr(r.trigger, "event")}


def plan_segment(session: Session, rule: RuleSpec, *, now: datetime, definitions: DefinitionSet, policy: Policy,
                 key: str) -> tuple[SetPlan, bool] | NoSql:
    """The SQL plan of ``rule``'s first segment for journeys entering at
    ``now``, and whether it also needs "no purchase after now" (an
    ``ordered_since_entry`` exit); or :class:`NoSql` saying why the segment
    needs the per-journey path. Each step decides for itself
    (:meth:`engine.steps.registry.StepType.sql_form`)."""
    evaluate = Evaluator(segments_of(definitions))
    db_now = to_db_time(now)
    no_future_purchase = False
    if rule.exit_when is not None:
        used: set[str] = set()
        collect_fields(rule.exit_when, used)
        if not used <= set(JOURNEY_FACTS):
            return NoSql("`exit_when` tests customer fields (checked per journey)")
        fresh = journey_row({}, entered_at=db_now, coupons=[], last_order_at=None, feedback=[], clicks=[])
        if evaluate(rule.exit_when, fresh, now):
            return NoSql("`exit_when` holds on entry")
        no_future_purchase = "ordered_since_entry" in used
    program = compile_program(rule)
    planner = SqlPlanner(rule, definitions, policy, now, key, _listened(definitions))
    pc = program.start
    final: SqlEnd | None = None
    for _ in range(MAX_STEPS):
        instr = program.at(pc)
        if instr is None:
            final = SqlEnd(END, None, "done", None, None)
            break
        made = registry.step_of(instr.action).sql_form(planner, instr)
        if isinstance(made, NoSql):
            return made
        if isinstance(made, SqlEnd):
            final = replace(made, pc=pc, state={"waiting": pc})
            break
        pc = instr.next
    if final is None:
        return NoSql(f"more than {MAX_STEPS} steps without a wait")
    if pc == program.start and final.status == "active":
        return NoSql("the rule starts with a wait")
    sends = any(planner.sends.values())
    zone_name: str | None = None
    if rule.quiet_hours and sends:
        if in_quiet_hours(now, rule.quiet_hours, zone(rule.timezone)):
            return NoSql("quiet hours in the rule's time zone")  # the per-journey path defers them
        zone_name = rule.timezone
    start = program.at(program.start)
    arms = tuple(SetArm(arm.key if arm else None,
                        tuple(c.statement for c in planner.coupons.get(arm.key if arm else None, ())),
                        tuple(planner.sends.get(arm.key if arm else None, ())))
                 for arm in planner.message_arms())
    tags = planner.tags
    return SetPlan(
        rule_id=rule.id, start_pc=program.start, start_step=start.step_id if start else None, arms=arms,
        add_tags=tuple(t for t, add in tags.items() if add), remove_tags=tuple(t for t, add in tags.items() if not add),
        final_pc=final.pc, final_step=final.step_id, final_status=final.status, final_due=final.due,
        final_state=final.state, zone=zone_name, caps=tuple(planner.caps), no_future_purchase=no_future_purchase,
        assignment=assignment(rule),
    ), no_future_purchase


@dataclass(frozen=True)
class SetEntry:
    """What a scheduled run did on the SQL path: entered, counters, and (when
    it could not take it) why, for the run's report."""

    entered: int
    counters: Counters
    fallback: str | None = None


@dataclass(frozen=True)
class _Run:
    """One run's plan and the entry arguments every chunk shares."""

    plan: SetPlan
    key: str
    date_filter: repo.DateFilter | None
    rolling: datetime | None


def _prepare(session: Session, rule: RuleSpec, *, now: datetime, definitions: DefinitionSet, policy: Policy,
             occurrence: datetime) -> _Run | NoSql:
    if isinstance(rule.trigger, SegmentChangeTrigger):
        return NoSql("a segment_change trigger (entry rewrites the segment memory in one transaction)")
    if rule.audience_form is not None:
        return NoSql("the audience is records of a form")
    if isinstance(rule.trigger, DateFieldTrigger):
        target, key = date_trigger_days(rule.trigger, occurrence)
        date_filter: repo.DateFilter | None = repo.DateFilter(rule.trigger.field, target, rule.trigger.yearly)
    else:
        key, date_filter = period_key(rule, occurrence), None
    planned = plan_segment(session, rule, now=now, definitions=definitions, policy=policy, key=key)
    if isinstance(planned, NoSql):
        return planned
    rolling = to_db_time(now - rule.once_per) if rule.once_per is not None else None
    return _Run(planned[0], key, date_filter, rolling)


def _chunk(session: Session, run: _Run, rule: RuleSpec, rule_version: int, *, now: datetime,
           definitions: DefinitionSet, id_range: tuple[int, int] | None) -> tuple[int, Counters]:
    result = entry_sql.enter_and_start(
        session, run.plan, rule_version=rule_version, audience=rule.audience, segments=segments_of(definitions),
        now=business_now(now, rule), db_now=to_db_time(now), period_key=run.key, rolling_since=run.rolling, date_filter=run.date_filter,
        limit=rule.audience_limit, id_range=id_range)
    counters = Counters(advanced=result.plain, sent=result.sent, skipped_consent=result.skipped_consent,
                        skipped_other=result.skipped_other,
                        completed=result.plain if run.plan.final_status == "done" else 0)
    return result.entered, counters


def enter_and_start(session: Session, rule: RuleSpec, rule_version: int, *, now: datetime,
                    definitions: DefinitionSet, policy: Policy,
                    occurrence: datetime | None = None) -> tuple[int, Counters]:
    """Enter ``rule``'s audience and, where the SQL path can, run its first
    segment (see the module notes), in the caller's transaction; (entered,
    counters of the steps run here). Journeys left at their first step are
    due now for ``advance_due``."""
    occurrence = occurrence or now
    run = _prepare(session, rule, now=now, definitions=definitions, policy=policy, occurrence=occurrence)
    if isinstance(run, NoSql):
        return enter_audience(session, rule, rule_version, now=now, definitions=definitions,
                              occurrence=occurrence), Counters()
    return _chunk(session, run, rule, rule_version, now=now, definitions=definitions, id_range=None)


def chunk_ranges(span: tuple[int, int] | None, step: int) -> list[tuple[int, int]]:
    """The half-open id ranges ``[lo, lo + step)`` covering ``span`` (inclusive)."""
    if span is None:
        return []
    step = max(1, step)
    return [(lo, lo + step) for lo in range(span[0], span[1] + 1, step)]


def run_chunk(session_factory: sessionmaker[Session], rule: RuleSpec, rule_version: int, *, now: datetime,
              definitions: DefinitionSet, policy: Policy, occurrence: datetime,
              id_range: tuple[int, int]) -> tuple[int, Counters]:
    """One chunk of :func:`enter_in_chunks` in its own transaction: what a
    Celery worker runs for one task. Idempotent like every chunk (see there);
    (0, nothing) when the rule no longer takes the SQL path."""
    with session_factory() as session:
        run = _prepare(session, rule, now=now, definitions=definitions, policy=policy, occurrence=occurrence)
    if isinstance(run, NoSql):
        return 0, Counters()
    with transaction(session_factory) as session:
        return _chunk(session, run, rule, rule_version, now=now, definitions=definitions, id_range=id_range)


def enter_in_chunks(session_factory: sessionmaker[Session], rule: RuleSpec, rule_version: int, *, now: datetime,
                    definitions: DefinitionSet, policy: Policy,
                    occurrence: datetime | None = None, chunk: int | None = None,
                    runner: ChunkRunner | None = None) -> SetEntry | NoSql:
    """:func:`enter_and_start` over the customers ``policy.entry_chunk`` ids
    (``entry_chunk_postgresql`` on PostgreSQL; ``chunk`` when given) at a
    time, one transaction each; :class:`NoSql` (nothing done, and why) when
    the SQL path does not apply, so the caller enters the usual way and
    reports the reason. With ``runner`` the chunks run there (several
    processes at once) instead of here one after another.

    A chunk is idempotent (the journey key, the rolling ``once_per`` window,
    and the id mark of :mod:`engine.storage.entry_sql`), so after a crash the
    repeated run enters only the customers of the chunks that did not commit.
    """
    occurrence = occurrence or now
    with session_factory() as session:
        run = _prepare(session, rule, now=now, definitions=definitions, policy=policy, occurrence=occurrence)
        span = entry_sql.customer_id_span(session) if not isinstance(run, NoSql) else None
        if chunk is None:
            chunk = policy.entry_chunk_postgresql if session.get_bind().dialect.name == "postgresql" \
                else policy.entry_chunk
    if isinstance(run, NoSql):
        return run
    total, entered = Counters(), 0
    if span is None:
        return SetEntry(0, total)
    step = max(1, chunk) if rule.audience_limit is None else span[1] - span[0] + 1
    ranges = chunk_ranges(span, step)
    if runner is not None and len(ranges) > 0:
        for n, counters in runner(ranges):
            entered += n
            total.add(counters)
        return SetEntry(entered, total)
    for id_range in ranges:
        with transaction(session_factory) as session:
            n, counters = _chunk(session, run, rule, rule_version, now=now, definitions=definitions,
                                 id_range=id_range)
        entered += n
        total.add(counters)
    return SetEntry(entered, total)
