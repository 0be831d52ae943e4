"""Entry is set-based and idempotent; sends respect consent and caps; events enter with a loop guard."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from engine.automation import (
    Policy,
    advance_due,
    enter_audience,
    handle_events,
    run_rule,
)
from engine.automation.policy import FrequencyCap
from engine.conditions.ast import Compare
from engine.definitions.loader import DefinitionSet
from engine.storage.database import transaction
from engine.storage.events_repo import append_event
from engine.storage.models import Journey, OutboxMessage, RuleRun

from .helpers import add_customer

NOW = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


def _with_rule(definitions: DefinitionSet, rule) -> DefinitionSet:  # type: ignore[no-untyped-def]
    specs = {k: dict(v) for k, v in definitions.specs.items()}
    specs["rule"][rule.id] = rule
    return DefinitionSet(documents=definitions.documents, specs=specs)


def _seed(session: Session, n: int = 30) -> None:
    for cid in range(1, n + 1):
        add_customer(session, cid, now=NOW, last_order=NOW - timedelta(days=100 if cid % 3 else 10),
                     consents={"sms": cid % 2 == 1, "wecom": True})


def test_enter_twice_enters_once(session: Session, definitions) -> None:
    _seed(session)
    rule = definitions.rules["winback_90d"]
    first = enter_audience(session, rule, 1, now=NOW, definitions=definitions)
    again = enter_audience(session, rule, 1, now=NOW + timedelta(hours=1), definitions=definitions)
    later = enter_audience(session, rule, 1, now=NOW + timedelta(days=100), definitions=definitions)
    expected = len([c for c in range(1, 31) if c % 3 and c % 2 == 1])
    # By day 100 the customers who last bought 10 days before have become inactive too.
    assert (first, again, later) == (expected, 0, 5)
    assert session.scalar(select(func.count()).select_from(Journey)) == expected + 5
    # After once_per (180 days) the same customers may enter again, once.
    assert enter_audience(session, rule, 1, now=NOW + timedelta(days=181), definitions=definitions) == expected
    assert enter_audience(session, rule, 1, now=NOW + timedelta(days=182), definitions=definitions) == 0


def test_two_runners_at_once_enter_each_customer_once(session_factory: sessionmaker[Session], definitions) -> None:
    with transaction(session_factory) as s:
        _seed(s, 60)
    rule = definitions.rules["winback_90d"]
    results: list[int] = []

    def run() -> None:
        with transaction(session_factory) as s:
            results.append(enter_audience(s, rule, 1, now=NOW, definitions=definitions))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with session_factory() as s:
        total = s.scalar(select(func.count()).select_from(Journey))
        distinct = s.scalar(select(func.count(func.distinct(Journey.subject_id))))
    assert sum(results) == total == distinct == 20


def test_run_rule_sends_once_and_records_counters(session_factory: sessionmaker[Session], definitions) -> None:
    with transaction(session_factory) as s:
        _seed(s)
    first = run_rule(session_factory, "winback_90d", now=NOW, definitions=definitions)
    again = run_rule(session_factory, "winback_90d", now=NOW, definitions=definitions)
    assert first.entered == first.counters.sent == 10 and again.entered == again.counters.sent == 0
    with session_factory() as s:
        keys = s.scalars(select(OutboxMessage.idempotency_key)).all()
        runs = s.execute(select(RuleRun.kind, RuleRun.entered, RuleRun.sent).order_by(RuleRun.id)).all()
    assert len(keys) == len(set(keys)) == 10
    assert all(k.startswith("winback_90d:customer:") and k.endswith(":s2") for k in keys)
    assert ("manual", 10, 0) in runs and ("advance", 0, 10) in runs


def test_consent_checked_at_enqueue_and_caps(session_factory: sessionmaker[Session], definitions) -> None:
    with transaction(session_factory) as s:
        _seed(s)
    # The same rule without consent in its audience: the send step checks it.
    loose = replace(definitions.rules["winback_90d"],
                    audience=Compare("last_purchase_at", "older_than", timedelta(days=90)))
    defs = _with_rule(definitions, loose)
    report = run_rule(session_factory, "winback_90d", now=NOW, definitions=defs)
    assert (report.entered, report.counters.sent, report.counters.skipped_consent) == (20, 10, 10)
    with session_factory() as s:
        sent_to = set(s.scalars(select(OutboxMessage.customer_id)).all())
    assert all(cid % 2 == 1 for cid in sent_to)
    # A cap of one marketing SMS a week: a second rule's SMS the next day waits, then goes out.
    birthday = replace(definitions.rules["birthday_greeting"], audience=None)
    defs = _with_rule(defs, birthday)
    policy = Policy(caps=(FrequencyCap(limit=1),))
    with transaction(session_factory) as s:
        s.execute(text("UPDATE customers SET birthday = '1990-03-02' WHERE id = 1"))
    day2 = NOW + timedelta(days=1, hours=-0.5)  # 09:30 Shanghai, 2026-03-02
    report = run_rule(session_factory, "birthday_greeting", now=day2, definitions=defs, policy=policy)
    assert (report.entered, report.counters.sent, report.counters.deferred_cap) == (1, 0, 1)
    with transaction(session_factory) as s:
        due = s.scalar(select(Journey.due_at).where(Journey.rule_id == "birthday_greeting"))
        assert due is not None and due > NOW.replace(tzinfo=None) + timedelta(days=7)
        assert advance_due(s, now=NOW + timedelta(days=6), definitions=defs, policy=policy).claimed == 0
        done = advance_due(s, now=NOW + timedelta(days=7, hours=1), definitions=defs, policy=policy)
        assert done.by_rule["birthday_greeting"].sent == 1
    skip = run_rule(session_factory, "birthday_greeting", now=day2 + timedelta(days=1), definitions=defs,
                    policy=replace(policy, cap_action="skip"))
    assert skip.entered == 0  # once_per 300d


def test_birthday_feb29_in_common_year(session: Session, definitions) -> None:
    add_customer(session, 1, now=NOW, consents={"sms": True}, birthday=date(2004, 2, 29))
    add_customer(session, 2, now=NOW, consents={"sms": True}, birthday=date(1990, 2, 28))
    add_customer(session, 3, now=NOW, consents={"sms": True}, birthday=date(1990, 3, 1))
    rule = definitions.rules["birthday_greeting"]
    feb28 = datetime(2027, 2, 28, 1, 30, tzinfo=UTC)  # 09:30 Shanghai
    assert enter_audience(session, rule, 1, now=feb28, definitions=definitions) == 2
    leap = datetime(2028, 2, 28, 1, 30, tzinfo=UTC)
    assert enter_audience(session, rule, 1, now=leap, definitions=definitions) == 1  # customer 2 only
    assert enter_audience(session, rule, 1, now=leap + timedelta(days=1), definitions=definitions) == 1
    keys = sorted(session.scalars(select(Journey.period_key)).all())
    assert keys == ["birthday:2027", "birthday:2027", "birthday:2028", "birthday:2028"]


def test_events_enter_once_and_loop_guard_stops_chains(session: Session, definitions) -> None:
    add_customer(session, 1, now=NOW, consents={"sms": True, "email": True})
    for _ in range(2):
        append_event(session, "customer.registered", "customer", 1, {}, NOW)
    for score in (3, 9):
        append_event(session, "feedback.received", "customer", 1, {"score": score}, NOW)
    report = handle_events(session, now=NOW, definitions=definitions)
    assert report.seen == 4 and report.entered == {"welcome_journey": 1, "nps_detractor_followup": 1}
    assert handle_events(session, now=NOW, definitions=definitions).seen == 0
    # A chain: the same subject keeps re-entering the detractor rule within the hour.
    for _ in range(5):
        append_event(session, "feedback.received", "customer", 1, {"score": 1}, NOW)
    chained = handle_events(session, now=NOW + timedelta(minutes=1), definitions=definitions)
    assert chained.entered == {"nps_detractor_followup": 2}
    assert chained.loop_guarded == {"nps_detractor_followup": 3}
    welcome = advance_due(session, now=NOW, definitions=definitions)
    assert welcome.by_rule["welcome_journey"].sent == 1  # the email (10:00: not quiet)
    tags = session.execute(text("SELECT tag FROM customer_tags WHERE customer_id = 1 ORDER BY tag")).scalars().all()
    assert tags == ["new_member", "nps_detractor"]
