"""Entry plus first steps in SQL writes exactly what entry plus the per-journey path writes.

The same mixed audience as test_batch_runtime (consent given or not, a missing
phone, a customer in quiet hours, capped customers, an unknown time zone, a
missing name, a future purchase) runs through an SMS rule twice on the same
database: once entered by :func:`enter_and_start` (the SQL segment for plain
customers, the per-journey path for the rest) and once by ``enter_audience``
with ``advance_due``. Outbox rows, coupons (codes aside), tags,
journey rows and the summed counters must be identical, through the wait and after it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from engine.automation import Policy, advance_due, enter_audience, run_rule
from engine.automation.policy import Counters
from engine.automation.setentry import enter_and_start, plan_segment
from engine.steps.sql import NoSql
from engine.definitions.loader import DefinitionSet
from engine.storage.database import transaction

from .test_batch_runtime import NOW, _caps, _seed, _snapshot, loose_rule

RULE = """
- kind: rule
  id: fast_mix
  title: set mix
  trigger: {schedule: "0 10 * * *", timezone: Asia/Shanghai}
  audience:
    customer: {all: [{last_purchase_at: {older_than: 90d}}, {consent.sms: true}]}
  once_per: 30d
  quiet_hours: "21:00-09:00"
  exit_when: {ordered_since_entry: true}
  steps:
    - add_tag: touched
    - issue_coupon: {pool: welcome10}
    - send: {channel: sms, template: winback_sms}
    - remove_tag: stale
    - wait: 2d
    - send: {channel: sms, template: winback_sms}
    - wait: 1d
    - add_tag: done
"""


@pytest.fixture
def sms_mix(tmp_path: Path) -> DefinitionSet:
    return loose_rule(tmp_path, RULE)  # consent checked by the SQL send


def _run(session_factory: sessionmaker[Session], defs: DefinitionSet, *, set_based: bool) -> list[object]:
    with transaction(session_factory) as s:
        for table in ("outbox", "coupons", "journeys", "customer_tags", "rule_runs"):
            s.execute(text(f"DELETE FROM {table}"))
        s.execute(text("INSERT INTO customer_tags (customer_id, tag) SELECT id, 'stale' FROM customers "
                       "WHERE id % 4 = 0 AND id <= 12"))
        _caps(s)
    rule = defs.rules["fast_mix"]
    out: list[object] = []
    for at in (NOW, NOW + timedelta(days=1), NOW + timedelta(days=2, hours=1), NOW + timedelta(days=4)):
        totals = Counters()
        with transaction(session_factory) as s:
            if at == NOW:
                if set_based:
                    entered, started = enter_and_start(s, rule, 1, now=at, definitions=defs, policy=Policy())
                    totals.add(started)
                else:
                    entered = enter_audience(s, rule, 1, now=at, definitions=defs)
                out.append(entered)
            while True:
                report = advance_due(s, now=at, definitions=defs, batch=7)
                totals.add(report.by_rule.get("fast_mix", Counters()))
                if report.claimed < 7:
                    break
            out.append(totals.as_dict())
            out.append(_snapshot(s))
    return out


def test_sql_segment_writes_what_the_per_journey_path_writes(session_factory: sessionmaker[Session],
                                                             sms_mix: DefinitionSet) -> None:
    with transaction(session_factory) as s:
        _seed(s)
        s.execute(text("UPDATE customers SET last_purchase_at = :t WHERE id = 12"),
                  {"t": (NOW + timedelta(hours=1)).replace(tzinfo=None)})  # a purchase "after" entry
    with session_factory() as s:
        assert not isinstance(plan_segment(s, sms_mix.rules["fast_mix"], now=NOW, definitions=sms_mix,
                                           policy=Policy(), key="w1"), NoSql)
    set_based = _run(session_factory, sms_mix, set_based=True)
    per_journey = _run(session_factory, sms_mix, set_based=False)
    assert set_based == per_journey
    first = set_based[1]
    assert isinstance(first, dict)
    assert first["deferred_quiet"] == 1 and first["deferred_cap"] == 2 and first["skipped_consent"] > 0
    assert first["skipped_other"] >= 1 and first["sent"] > 3
    with session_factory() as s:
        body = s.execute(text("SELECT body FROM outbox WHERE customer_id = 17 AND channel = 'sms'")).scalar()
        waiting = s.execute(text("SELECT count(*) FROM journeys WHERE step_index = 4")).scalar()
    assert body is None or body.startswith("None，")
    assert waiting == 0  # everyone moved on by day 4


def test_run_rule_twice_issues_once(session_factory: sessionmaker[Session], definitions: DefinitionSet) -> None:
    """The SQL path takes the win-back; a second run at the same time enters
    nobody and issues nothing (the id mark excludes the earlier run's journeys)."""
    with transaction(session_factory) as s:
        _seed(s)
    pool = definitions.coupon_pools["winback20"]
    defs = DefinitionSet(documents=definitions.documents, specs={
        **{k: dict(v) for k, v in definitions.specs.items()},
        "coupon_pool": {**definitions.specs["coupon_pool"], "winback20": replace(pool, max_issued=None, budget=None)}})
    with session_factory() as s:
        assert plan_segment(s, defs.rules["winback_90d"], now=NOW, definitions=defs, policy=Policy(),
                            key="w1") is not None
    first = run_rule(session_factory, "winback_90d", now=NOW, definitions=defs)
    again = run_rule(session_factory, "winback_90d", now=NOW, definitions=defs)
    with session_factory() as s:
        coupons = s.execute(text("SELECT count(*), count(DISTINCT journey_id) FROM coupons")).one()
        outbox = s.execute(text("SELECT count(*) FROM outbox WHERE rule_id = 'winback_90d'")).scalar()
        cid, code = s.execute(text("SELECT customer_id, code FROM coupons ORDER BY id LIMIT 1")).one()
        body, payload = s.execute(text("SELECT body, payload FROM outbox WHERE customer_id = :c"), {"c": cid}).one()
    assert first.entered > 0 and again.entered == 0 and again.counters.sent == 0
    # Everyone gets a coupon (once); the one without a phone no SMS, the one in New York waits for morning.
    assert coupons[0] == coupons[1] == first.entered and outbox == first.counters.sent == first.entered - 2
    assert len(code) == len("WB20") + 10 and set(code[4:]) <= set("ABCDEFGHJKLMNPQRSTUVWXYZ23456789")
    assert body == f"客户{cid}，好久不见！送您20元回归券，券码{code}，14天内有效。退订回T"
    payload = payload if isinstance(payload, dict) else __import__("json").loads(payload)
    assert payload["params"] == {"name": f"客户{cid}", "value": "20", "code": code, "sign_name": "促销通"}


def test_coupon_code_expression_draws_every_symbol_in_every_position(session: Session) -> None:
    """The SQL code expression (both backends) yields ten symbols of the
    alphabet, each position taking every symbol: no position is fixed or
    biased to a subset (a wrong offset in the table of triples would be)."""
    from engine.storage import entry_sql

    dialect = session.get_bind().dialect.name
    expr = entry_sql._code_sql(dialect)
    if dialect == "postgresql":
        sql = f"SELECT {expr} FROM (SELECT uuid_send(gen_random_uuid()) AS b FROM generate_series(1, 3000)) r"
    else:
        sql = f"WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 3000) SELECT {expr} FROM seq"
    codes = [row[0] for row in session.execute(text(sql), {"alpha": entry_sql.CODE_ALPHABET,
                                                           "triples": entry_sql._TRIPLES})]
    assert all(len(c) == entry_sql.CODE_LENGTH for c in codes)
    for position in range(entry_sql.CODE_LENGTH):
        assert {c[position] for c in codes} == set(entry_sql.CODE_ALPHABET), position
    assert len(set(codes)) == len(codes)
