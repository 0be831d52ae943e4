"""Entry points for hosts: ``run_rule`` (CLI ``promoflow rules run``) and
``tick`` (the scheduler, every minute or so). Each unit of work is its own
transaction, so a crash loses at most the batch in flight, which the next
call repeats (idempotently)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from engine.automation.entry import EventReport, enter_audience, handle_events
from engine.automation.journeys import advance_due
from engine.automation.policy import Counters, Policy
from engine.automation.program import RuleLookup
from engine.automation.setentry import enter_in_chunks
from engine.steps.sql import NoSql
from engine.automation.timing import due_schedule_runs
from engine.definitions.specs import EventTrigger, RuleSpec
from engine.outbox import deliver_log
from engine.storage import automation_repo as repo
from engine.storage.database import transaction
from engine.storage.times import from_db_time_opt, to_db_time

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from engine.definitions.loader import DefinitionSet

__all__ = ["Fanout", "RunReport", "TickReport", "advance_all", "run_occurrence", "run_rule", "tick"]


@dataclass(frozen=True)
class Fanout:
    """Where a tick's heavy parts run when not in this process (a host with
    Celery workers, see :mod:`web.fleet_ticks`); the engine only hands out
    the same units of work it would run itself.

    ``run_chunks(rule, version, now, occurrence, id_ranges)``: run the
    set-based entry chunks and return (entered, counters) per chunk once all
    committed (raise otherwise). ``advance(now, rule_ids)``: advance every
    due journey. ``chunk``: customer ids per chunk."""

    chunk: int
    run_chunks: Callable[[RuleSpec, int, datetime, datetime, list[tuple[int, int]]], list[tuple[int, Counters]]]
    advance: Callable[[datetime, list[str] | None], dict[str, Counters]]


@dataclass
class RunReport:
    rule_id: str
    entered: int = 0
    counters: Counters = field(default_factory=Counters)
    #: Why the rule's first steps did not run as SQL (None: they did, or the rule has no audience run).
    sql_fallback: str | None = None


@dataclass
class TickReport:
    runs: list[tuple[str, datetime, int]] = field(default_factory=list)  # (rule, occurrence, entered)
    events: EventReport = field(default_factory=EventReport)
    advanced: dict[str, Counters] = field(default_factory=dict)
    delivered: int = 0


def advance_all(session_factory: sessionmaker[Session], *, now: datetime, definitions: DefinitionSet,
                batch: int = 5000, policy: Policy | None = None,
                rule_ids: list[str] | None = None, per_journey: bool = False,
                rule_of: RuleLookup | None = None) -> dict[str, Counters]:
    """Advance due journeys batch after batch (one transaction each) until none is due
    (``per_journey``, ``rule_of``: see :func:`engine.automation.journeys.advance_due`)."""
    totals: dict[str, Counters] = {}
    while True:
        with transaction(session_factory) as session:
            report = advance_due(session, now=now, definitions=definitions, batch=batch, policy=policy,
                                 rule_ids=rule_ids, per_journey=per_journey, rule_of=rule_of)
        for rule_id, counters in report.by_rule.items():
            totals.setdefault(rule_id, Counters()).add(counters)
        if report.claimed < batch:
            return totals


def run_occurrence(session_factory: sessionmaker[Session], rule: RuleSpec, occurrence: datetime, *,
                   now: datetime, definitions: DefinitionSet, policy: Policy,
                   fanout: Fanout | None = None) -> int | None:
    """Run a schedule occurrence: enter its audience (set-based first steps in
    chunks where the rule allows, see :mod:`engine.automation.setentry`), then
    claim the occurrence with its counters. None when the occurrence was
    already run (by this or another scheduler).

    Chunks commit before the claim, so a crash mid-run leaves the occurrence
    unclaimed and the next tick repeats it; entry is idempotent, so the repeat
    only adds who is missing. Rules the SQL path cannot take enter and claim
    in one transaction. With ``fanout`` the chunks run on its workers."""
    version = policy.version_of(rule.id)
    db_occurrence = to_db_time(occurrence)
    with session_factory() as session:
        if repo.occurrence_claimed(session, rule.id, db_occurrence):
            return None
    if fanout is None:
        started = enter_in_chunks(session_factory, rule, version, now=now, definitions=definitions, policy=policy,
                                  occurrence=occurrence)
    else:
        started = enter_in_chunks(
            session_factory, rule, version, now=now, definitions=definitions, policy=policy, occurrence=occurrence,
            chunk=fanout.chunk, runner=lambda ranges: fanout.run_chunks(rule, version, now, occurrence, ranges))
    with transaction(session_factory) as session:
        run_id = repo.claim_occurrence(session, rule_id=rule.id, rule_version=version,
                                       scheduled_for=db_occurrence, db_now=to_db_time(now))
        if run_id is None:
            return None
        if isinstance(started, NoSql):
            entered = enter_audience(session, rule, version, now=now, definitions=definitions, occurrence=occurrence)
            counters = Counters(entered=entered)
        else:
            entered, counters = started.entered, started.counters
            counters.entered = entered
        repo.record_run(session, run_id=run_id, rule_id=rule.id, rule_version=version, kind="schedule",
                        db_now=to_db_time(now), counters=counters.as_dict(), detail=_sql_detail(started))
    return entered


def _sql_detail(started: object) -> dict[str, str] | None:
    """The run's note about the SQL path: why the rule fell back from it (None when it took it)."""
    return {"sql_fallback": started.reason} if isinstance(started, NoSql) else None


def run_rule(session_factory: sessionmaker[Session], rule_id: str, *, now: datetime, definitions: DefinitionSet,
             policy: Policy | None = None, batch: int = 5000, rule_of: RuleLookup | None = None) -> RunReport:
    """Run one rule once, as if at ``now``: enter its audience (a manual run:
    its period key is that of ``now``) and, set-based where it can, run their
    first steps (:mod:`engine.automation.setentry`), then advance its due journeys.

    Raises:
        KeyError: no such rule. TypeError: an event-triggered rule (it has no audience run).
    """
    policy = policy or Policy()
    rule = definitions.rules[rule_id]
    if isinstance(rule.trigger, EventTrigger):
        raise TypeError(f"rule `{rule_id}` is triggered by events; it has no run of its own")
    version = policy.version_of(rule.id)
    report = RunReport(rule_id)
    chunked = enter_in_chunks(session_factory, rule, version, now=now, definitions=definitions, policy=policy)
    with transaction(session_factory) as session:
        if isinstance(chunked, NoSql):
            report.entered, started = enter_audience(session, rule, version, now=now, definitions=definitions), \
                Counters()
            report.sql_fallback = chunked.reason
        else:
            report.entered, started = chunked.entered, chunked.counters
        started.entered = report.entered
        repo.record_run(session, rule_id=rule.id, rule_version=version, kind="manual", db_now=to_db_time(now),
                        counters=started.as_dict(), detail=_sql_detail(chunked))
    advanced = advance_all(session_factory, now=now, definitions=definitions, batch=batch, policy=policy,
                           rule_ids=[rule.id], rule_of=rule_of)
    report.counters = advanced.get(rule.id, Counters())
    report.counters.add(started)
    report.counters.entered = report.entered
    return report


def tick(session_factory: sessionmaker[Session], *, now: datetime, definitions: DefinitionSet,
         policy: Policy | None = None, batch: int = 5000, deliver: bool = True,
         rule_of: RuleLookup | None = None, fanout: Fanout | None = None) -> TickReport:
    """Everything due at ``now``: schedule and date-rule occurrences (per each
    rule's catch-up policy), pending events, due journey steps, and (``deliver``)
    the ``log`` connector's deliveries. With ``fanout``, entry chunks and due
    journey steps run on its workers (same functions, other processes)."""
    policy = policy or Policy()
    report = TickReport()
    for rule in sorted(definitions.rules.values(), key=lambda r: r.id):
        if not rule.enabled or isinstance(rule.trigger, EventTrigger):
            continue
        with session_factory() as session:
            last = from_db_time_opt(repo.last_occurrence(session, rule.id))
        for occurrence in due_schedule_runs(rule, last, now, grace=policy.grace):
            entered = run_occurrence(session_factory, rule, occurrence, now=now, definitions=definitions,
                                     policy=policy, fanout=fanout)
            if entered is not None:
                report.runs.append((rule.id, occurrence, entered))
    while True:
        with transaction(session_factory) as session:
            events = handle_events(session, now=now, definitions=definitions, batch=batch, policy=policy)
        report.events.seen += events.seen
        for rule_id, n in events.entered.items():
            report.events.entered[rule_id] = report.events.entered.get(rule_id, 0) + n
        for rule_id, n in events.loop_guarded.items():
            report.events.loop_guarded[rule_id] = report.events.loop_guarded.get(rule_id, 0) + n
        if events.seen < batch:
            break
    if fanout is not None:
        report.advanced = fanout.advance(now, None)
    else:
        report.advanced = advance_all(session_factory, now=now, definitions=definitions, batch=batch,
                                      policy=policy, rule_of=rule_of)
    while deliver:
        with transaction(session_factory) as session:
            n = deliver_log(session, now, batch, definitions=definitions)
        report.delivered += n
        if n < batch:
            break
    return report
