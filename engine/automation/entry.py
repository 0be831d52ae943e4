"""Entering subjects into a rule's journeys: set-based for audiences and date
triggers, per event for event triggers. Entry never runs a step: it only
inserts journey rows due now, which :func:`engine.automation.journeys.advance_due`
then moves. The unique (rule, subject, period) key makes entry idempotent.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine.automation.facts import Evaluator, business_now, orders_since
from engine.automation.policy import Policy
from engine.automation.program import compile_program
from engine.automation.timing import date_trigger_days, period_key
from engine.conditions.predicate import compile_predicate
from engine.experiments import arm_of, assignment
from engine.definitions.specs import DateFieldTrigger, EventTrigger, RuleSpec, SegmentChangeTrigger
from engine.storage import automation_repo as repo
from engine.storage.times import to_db_time

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from engine.definitions.loader import DefinitionSet

__all__ = ["EventReport", "enter_audience", "handle_events", "segments_of"]


def segments_of(definitions: DefinitionSet) -> dict[str, Any]:
    """The conditions of the published segments, by id (what ``segment:`` tests read)."""
    return {k: s.condition for k, s in definitions.segments.items()}


def enter_audience(session: Session, rule: RuleSpec, rule_version: int, *, now: datetime,
                   definitions: DefinitionSet, occurrence: datetime | None = None) -> int:
    """Enter every customer in ``rule``'s audience: one ``INSERT INTO journeys
    … SELECT … FROM customers WHERE … ON CONFLICT DO NOTHING``. Returns how
    many entered (0 when run again: nobody enters twice).

    ``occurrence`` (default ``now``) is the schedule time the run stands for;
    it fixes the period key, so a restarted run of the same occurrence inserts
    nothing new. Date-relative rules enter customers whose date is due on the
    occurrence's local day. ``once_per`` also excludes customers whose last
    journey of the rule began less than ``once_per`` before ``now``.
    Rules whose audience is ``record: {form, where}`` enter the matching
    records of that form instead of customers (subject type ``record``).
    ``segment_change`` rules enter the customers who moved between the
    segments since the rule's last run (see ``automation_repo.enter_segment_movers``).
    """
    occurrence = occurrence or now
    now = business_now(now, rule)  # the same instant; calendar order windows read its zone
    program = compile_program(rule)
    first = program.at(program.start)
    date_filter = None
    if isinstance(rule.trigger, DateFieldTrigger):
        target, key = date_trigger_days(rule.trigger, occurrence)
        date_filter = repo.DateFilter(rule.trigger.field, target, rule.trigger.yearly)
    else:
        key = period_key(rule, occurrence)
    rolling = to_db_time(now - rule.once_per) if rule.once_per is not None else None
    if rule.audience_form is not None:
        form = definitions.forms.get(rule.audience_form)
        return repo.enter_records(
            session, rule_id=rule.id, rule_version=rule_version, form_id=rule.audience_form,
            where=rule.record_audience, form_fields=form.field_kinds() if form is not None else {},
            segments=segments_of(definitions), now=now, db_now=to_db_time(now), period_key=key,
            start_pc=program.start, start_step=first.step_id if first else None, rolling_since=rolling,
            limit=rule.audience_limit, assignment=assignment(rule))
    if isinstance(rule.trigger, SegmentChangeTrigger):
        return repo.enter_segment_movers(
            session, rule_id=rule.id, to_segment=rule.trigger.to, from_segment=rule.trigger.from_,
            segments=segments_of(definitions), now=now, rule_version=rule_version, audience=rule.audience,
            db_now=to_db_time(now), period_key=key, start_pc=program.start,
            start_step=first.step_id if first else None, rolling_since=rolling, limit=rule.audience_limit,
            assignment=assignment(rule))
    return repo.enter_customers(
        session, rule_id=rule.id, rule_version=rule_version, audience=rule.audience,
        segments=segments_of(definitions), now=now, db_now=to_db_time(now), period_key=key,
        start_pc=program.start, start_step=first.step_id if first else None, rolling_since=rolling,
        date_filter=date_filter, limit=rule.audience_limit, assignment=assignment(rule),
    )


@dataclass
class EventReport:
    seen: int = 0
    entered: dict[str, int] = field(default_factory=dict)
    loop_guarded: dict[str, int] = field(default_factory=dict)


def _subject(event: dict[str, Any]) -> tuple[str, int] | None:
    payload = event.get("payload") or {}
    raw = None
    if event.get("subject_type") == "customer":
        raw = event.get("subject_id")
    elif isinstance(payload, dict) and payload.get("customer_id") is not None:
        raw = payload["customer_id"]
    if raw is not None:
        try:
            return "customer", int(raw)
        except (TypeError, ValueError):
            return None
    if event.get("subject_type") == "record" and event.get("subject_id") is not None:
        try:
            return "record", int(event["subject_id"])
        except (TypeError, ValueError):
            return None
    return None


def _matches(rule: RuleSpec, event: dict[str, Any], now: datetime) -> bool:
    trigger = rule.trigger
    assert isinstance(trigger, EventTrigger)
    payload = event.get("payload") or {}
    if not isinstance(payload, dict):
        payload = {}
    if trigger.form is not None and payload.get("form_id") != trigger.form:
        return False
    if trigger.workflow is not None and payload.get("workflow_id") != trigger.workflow:
        return False
    if trigger.when is not None:
        data = payload.get("data")
        row = {**payload, **(data if isinstance(data, dict) else {})}
        return compile_predicate(trigger.when)(row, now)
    return True


def handle_events(session: Session, *, now: datetime, definitions: DefinitionSet, batch: int = 1000,
                  policy: Policy | None = None) -> EventReport:
    """Consume one batch of unprocessed events: enter the subject of each into
    every enabled rule triggered by it (``form``/``workflow``/``when`` filters
    and the rule's audience must hold), then mark the batch processed.

    The period key is the event id, or the ``once_per`` window, or ``ever``.
    The loop guard: a subject that already entered the same rule
    ``policy.loop_limit`` times within ``policy.loop_window`` (an event chain
    feeding itself) is not entered again; guarded entries are counted.
    """
    policy = policy or Policy()
    report = EventReport()
    events = repo.fetch_events(session, names=(), batch=batch)
    report.seen = len(events)
    if not events:
        return report
    listeners: dict[str, list[RuleSpec]] = defaultdict(list)
    for rule in definitions.rules.values():
        if rule.enabled and isinstance(rule.trigger, EventTrigger):
            listeners[rule.trigger.event].append(rule)
    db_now = to_db_time(now)
    candidates: dict[str, list[tuple[dict[str, Any], tuple[str, int]]]] = defaultdict(list)
    for event in events:
        for rule in listeners.get(event["name"], ()):
            subject = _subject(event)
            if subject is not None and _matches(rule, event, now):
                candidates[rule.id].append((event, subject))
    customer_ids = {s[1] for pairs in candidates.values() for _, s in pairs if s[0] == "customer"}
    segments = segments_of(definitions)
    since = orders_since([definitions.rules[r] for r in candidates], now, segments, audience=True)
    customers = repo.customers_with_zone(session, customer_ids, orders_since=since) if customer_ids else {}
    evaluate = Evaluator(segments)
    for rule_id, pairs in candidates.items():
        rule = definitions.rules[rule_id]
        program = compile_program(rule)
        first = program.at(program.start)
        by_type: dict[str, set[int]] = defaultdict(set)
        for _, (stype, sid) in pairs:
            by_type[stype].add(sid)
        recent = {t: repo.recent_entries(session, rule.id, t, ids, to_db_time(now - policy.loop_window))
                  for t, ids in by_type.items()}
        within = ({t: repo.recent_entries(session, rule.id, t, ids, to_db_time(now - rule.once_per))
                   for t, ids in by_type.items()} if rule.once_per is not None else {})
        rows = []
        seen_keys: set[tuple[str, int, str]] = set()
        for event, (stype, sid) in pairs:
            if stype == "customer":
                customer = customers.get(sid)
                if customer is None:
                    continue
                if rule.audience is not None and not evaluate(rule.audience, customer, business_now(now, rule)):
                    continue
            if within.get(stype, {}).get(sid):
                continue
            if recent[stype].get(sid, 0) >= policy.loop_limit:
                report.loop_guarded[rule.id] = report.loop_guarded.get(rule.id, 0) + 1
                continue
            key = period_key(rule, now, event_id=int(event["id"]))
            if (stype, sid, key) in seen_keys:
                continue
            seen_keys.add((stype, sid, key))
            recent[stype][sid] = recent[stype].get(sid, 0) + 1
            rows.append({
                "rule_id": rule.id, "rule_version": policy.version_of(rule.id), "subject_type": stype,
                "subject_id": sid, "period_key": key, "step_index": program.start,
                "step_id": first.step_id if first else None, "status": "active", "due_at": db_now,
                "entered_at": db_now, "state": {"event_id": int(event["id"]), "event": event["name"]},
                "version": 1, "arm": arm_of(rule, sid),
            })
        entered = repo.enter_subjects(session, rows)
        if entered or report.loop_guarded.get(rule.id):
            report.entered[rule.id] = entered
            repo.record_run(session, rule_id=rule.id, rule_version=policy.version_of(rule.id), kind="event",
                            db_now=db_now, counters={"entered": entered},
                            detail={"loop_guarded": report.loop_guarded.get(rule.id, 0)})
    repo.mark_events_processed(session, [int(e["id"]) for e in events], db_now)
    return report
