"""Experiments: reproducible arms (the same in Python, SQLite and PostgreSQL),
shares within 1 % of their weights on 100,000 customers, a control group that
never gets a message or coupon of the rule, variants' swaps, and the checks."""

from __future__ import annotations

import json
import textwrap
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from engine.automation import run_rule
from engine.definitions.loader import DefinitionSet, load_paths
from engine.definitions.specs import ExperimentSpec, VariantSpec
from engine.experiments import (
    BUCKETS,
    CONTROL,
    MODULUS,
    arm_of,
    assignment,
    bounds,
    bucket,
    hash_keys,
)
from engine.storage.database import transaction
from engine.storage.experiment_sql import arm_sql, bucket_sql

from .conftest import HERE, ROOT
from .helpers import add_customer

NOW = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
FIXTURE_SETTINGS = settings(max_examples=25, deadline=None,
                            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

DEFS = """
- kind: coupon_pool
  id: exp_pool
  title: 实验券
  value: 20
  expires_in: 14d
- kind: template
  id: winback_sms_b
  title: 回归礼券短信 B
  title_en: Win-back SMS B
  channels: [sms]
  body: "{{ customer.name }}，新版：{{ coupon.value }}元券{{ coupon.code }}。退订回T"
- kind: rule
  id: exp_sql
  title: 挽回实验
  title_en: Win-back experiment
  trigger: {schedule: "0 10 * * *", timezone: Asia/Shanghai}
  audience:
    customer: {all: [{last_purchase_at: {older_than: 90d}}, {consent.sms: true}]}
  once_per: ever
  experiment:
    salt: spring
    holdout: 20
    variants:
      - {key: a, title: 20元券, title_en: 20-yuan coupon, weight: 1}
      - key: b
        title: 30元券新文案
        title_en: 30-yuan coupon, new text
        weight: 1
        coupon_value: 30
        templates: {winback_sms: winback_sms_b}
  steps:
    - issue_coupon: {pool: exp_pool}
    - send: {channel: sms, template: winback_sms}
    - add_tag: tried
    - wait: 7d
    - send: {channel: sms, template: winback_sms}
"""


def _defs(tmp_path: Path, extra: str = DEFS) -> DefinitionSet:
    (tmp_path / "exp.yaml").write_text(textwrap.dedent(extra), encoding="utf-8")
    return load_paths([ROOT / "forms", ROOT / "workflows", ROOT / "config" / "roles.yaml", HERE / "connectors.yaml",
                       tmp_path / "exp.yaml"], relative_to=tmp_path)


@pytest.fixture
def defs(tmp_path: Path) -> DefinitionSet:
    return _defs(tmp_path).raise_for_errors()


# -- the hash -------------------------------------------------------------------------


@FIXTURE_SETTINGS
@given(a=st.integers(1, MODULUS - 1), b=st.integers(0, MODULUS - 1),
       ids=st.lists(st.integers(1, 2**40), min_size=1, max_size=30))
def test_sql_buckets_equal_python_buckets(session: Session, a: int, b: int, ids: list[int]) -> None:
    sql = "SELECT " + ", ".join(bucket_sql((a, b), str(i)) for i in ids)
    assert list(session.execute(text(sql)).one()) == [bucket((a, b), i) for i in ids]


def test_assignment_is_stable_across_versions_and_runs(defs: DefinitionSet) -> None:
    rule = defs.rules["exp_sql"]
    # Golden values: a change of the hash would move customers between arms of running tests.
    assert hash_keys("exp_sql", "spring") == hash_keys("exp_sql", "spring") == (2136919541, 494235029)
    assert [bucket(hash_keys("exp_sql", "spring"), i) for i in (1, 2, 3, 1000)] == [923, 6817, 2711, 7264]
    v2 = replace(rule, title="另一个版本", steps=rule.steps[:1], quiet_hours=None)
    assert [arm_of(rule, i) for i in range(1, 200)] == [arm_of(v2, i) for i in range(1, 200)]
    other_salt = replace(rule, experiment=replace(rule.experiment, salt="summer"))
    assert [arm_of(rule, i) for i in range(1, 200)] != [arm_of(other_salt, i) for i in range(1, 200)]


@settings(max_examples=5, deadline=None)
@given(holdout=st.integers(0, 60), weights=st.lists(st.integers(1, 9), min_size=1, max_size=4),
       salt=st.text(min_size=1, max_size=12))
def test_each_arm_within_one_percent_of_its_weight_on_100k(holdout: int, weights: list[int], salt: str) -> None:
    exp = ExperimentSpec(holdout=holdout, salt=salt,
                         variants=tuple(VariantSpec(f"v{i}", w) for i, w in enumerate(weights)))
    s = hash_keys("rule_x", salt)
    b = bounds(exp)
    counts: Counter[str] = Counter()
    for cid in range(1, 100_001):
        x = bucket(s, cid)
        counts[next(key for upper, key in b if x < upper)] += 1
    rest = 100 - holdout
    expected = {f"v{i}": rest * w / sum(weights) for i, w in enumerate(weights)}
    if holdout:
        expected[CONTROL] = holdout
    assert set(counts) == set(expected)
    for key, share in expected.items():
        assert abs(counts[key] / 1000 - share) <= 1.0, (key, counts[key], share)


def test_sql_assigns_100k_customers_as_python_does(session: Session, defs: DefinitionSet) -> None:
    rule = defs.rules["exp_sql"]
    found = assignment(rule)
    assert found is not None
    sql = (f"WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 100000) "
           f"SELECT {arm_sql(found, 'n')} AS arm, count(*) FROM seq GROUP BY 1")
    in_sql = {arm: int(n) for arm, n in session.execute(text(sql))}
    in_python = Counter(arm_of(rule, cid) for cid in range(1, 100_001))
    assert in_sql == dict(in_python)
    assert abs(in_sql["control"] / 1000 - 20) <= 1 and abs(in_sql["a"] / 1000 - 40) <= 1
    assert BUCKETS == 10_000


# -- the control group and the variants through real runs ------------------------------


def _reset(s: Session) -> None:
    for table in ("outbox", "coupons", "journeys", "customer_tags", "rule_runs", "consents", "orders", "events",
                  "customers"):
        s.execute(text(f"DELETE FROM {table}"))


def _seed(s: Session, n: int, no_phone: set[int]) -> None:
    """Bulk history fixture: ``n`` inactive customers with SMS consent."""
    for cid in range(1, n + 1):
        add_customer(s, cid, now=NOW, last_order=NOW - timedelta(days=120), consents={"sms": True})
    if no_phone:
        s.execute(text(f"UPDATE customers SET phone = NULL WHERE id IN ({', '.join(map(str, no_phone))})"))


def _check_run(s: Session, defs: DefinitionSet, rule_id: str, n: int) -> dict[str, int]:
    rule = defs.rules[rule_id]
    journeys = s.execute(text("SELECT id, subject_id, arm FROM journeys WHERE rule_id = :r"), {"r": rule_id}).all()
    assert len(journeys) == n
    arms = {int(jid): arm for jid, _, arm in journeys}
    for _, cid, arm in journeys:
        assert arm == arm_of(rule, int(cid))
    messages = s.execute(text("SELECT journey_id, template_id, body FROM outbox WHERE rule_id = :r"),
                         {"r": rule_id}).all()
    coupons = s.execute(text("SELECT journey_id, value FROM coupons")).all()
    assert all(arms[int(j)] != CONTROL for j, _, _ in messages), "a control customer got a message"
    assert all(arms[int(j)] != CONTROL for j, _ in coupons), "a control customer got a coupon"
    for j, template, body in messages:
        assert template == ("winback_sms_b" if arms[int(j)] == "b" else "winback_sms")
        assert ("新版" in body) == (arms[int(j)] == "b")
    for j, value in coupons:
        assert Decimal(value) == (Decimal(30) if arms[int(j)] == "b" else Decimal(20))
    tagged = s.execute(text("SELECT count(*) FROM customer_tags WHERE tag = 'tried'")).scalar()
    assert tagged == n  # tags are not messages: the control group is tagged too
    return dict(Counter(arms.values()))


@FIXTURE_SETTINGS
@given(n=st.integers(1, 40), holdout=st.integers(0, 90), weight_b=st.integers(1, 5),
       no_phone=st.sets(st.integers(1, 40), max_size=5), limited=st.booleans())
def test_no_control_customer_ever_gets_a_message_or_coupon(session_factory: sessionmaker[Session],
                                                           defs: DefinitionSet, n: int, holdout: int, weight_b: int,
                                                           no_phone: set[int], limited: bool) -> None:
    rule = defs.rules["exp_sql"]
    exp = replace(rule.experiment, holdout=holdout, variants=(
        rule.experiment.variants[0], replace(rule.experiment.variants[1], weight=weight_b)))
    specs = {k: dict(v) for k, v in defs.specs.items()}
    specs["rule"]["exp_sql"] = replace(rule, experiment=exp)
    if limited:  # a pool with a limit: the rule takes the per-journey path
        specs["coupon_pool"]["exp_pool"] = replace(defs.coupon_pools["exp_pool"], max_issued=10_000)
    run_defs = DefinitionSet(documents=defs.documents, specs=specs)
    with transaction(session_factory) as s:
        _reset(s)
        _seed(s, n, {c for c in no_phone if c <= n})
    report = run_rule(session_factory, "exp_sql", now=NOW, definitions=run_defs)
    assert report.entered == n
    assert (report.sql_fallback is not None) == limited
    later = run_rule(session_factory, "exp_sql", now=NOW + timedelta(days=8), definitions=run_defs)
    assert later.entered == 0
    with session_factory() as s:
        counts = _check_run(s, run_defs, "exp_sql", n)
    rule_now = run_defs.rules["exp_sql"]
    reachable = [c for c in range(1, n + 1) if c not in no_phone and arm_of(rule_now, c) != CONTROL]
    assert report.counters.sent + later.counters.sent == 2 * len(reachable)  # two SMS each, none to control
    assert sum(counts.values()) == n


def test_sql_path_and_per_journey_path_give_the_same_arms(session_factory: sessionmaker[Session],
                                                          defs: DefinitionSet) -> None:
    results = []
    for limited in (False, True):
        specs = {k: dict(v) for k, v in defs.specs.items()}
        if limited:
            specs["coupon_pool"]["exp_pool"] = replace(defs.coupon_pools["exp_pool"], max_issued=10_000)
        run_defs = DefinitionSet(documents=defs.documents, specs=specs)
        with transaction(session_factory) as s:
            _reset(s)
            _seed(s, 60, set())
        report = run_rule(session_factory, "exp_sql", now=NOW, definitions=run_defs)
        assert report.sql_fallback == ("coupon pool `exp_pool` has a limit (counted per coupon)" if limited else None)
        with session_factory() as s:
            results.append((_check_run(s, run_defs, "exp_sql", 60), report.counters.sent))
    assert results[0] == results[1]
    counts = results[0][0]
    assert set(counts) == {"control", "a", "b"} and results[0][1] == 60 - counts["control"]


# -- checks -----------------------------------------------------------------------------


BAD = """
- kind: rule
  id: exp_bad
  title: 坏实验
  trigger: {schedule: "0 10 * * *", timezone: Asia/Shanghai}
  audience:
    customer: {all: [{last_purchase_at: {older_than: 90d}}, {consent.sms: true}]}
  experiment:
    holdout: 10
    variants:
      - {key: a, weight: 0}
      - {key: control}
      - {key: c, templates: {winback_smss: winback_reminder}, pools: {winback20: nopool}}
  steps:
    - issue_coupon: {pool: winback20}
    - send: {channel: sms, template: winback_sms}
"""


def test_bad_experiments_are_reported_at_their_line(tmp_path: Path) -> None:
    errors = [str(e) for e in _defs(tmp_path, BAD).errors]
    assert errors == [
        "exp.yaml:11:26: `weight` must be at least 1",
        "exp.yaml:12:15: `control` is reserved; name the variant otherwise",
        "exp.yaml:13:30: unknown template of this rule `winback_smss`; did you mean `winback_sms`?",
        "exp.yaml:13:82: unknown coupon pool `nopool`",
    ], errors
    none = _defs(tmp_path, BAD.replace("    holdout: 10\n", "").replace(
        "      - {key: control}\n      - {key: c, templates: {winback_smss: winback_reminder}, pools: {winback20: nopool}}\n",
        "").replace("weight: 0", "weight: 1"))
    assert [str(e) for e in none.errors] == [
        "exp.yaml:8:3: an experiment needs a holdout (e.g. `holdout: 10`) or at least two variants"]


def test_preview_counts_each_arm(session_factory: sessionmaker[Session], defs: DefinitionSet) -> None:
    from engine.automation.preview import preview_rule

    with transaction(session_factory) as s:
        _seed(s, 30, set())
    result = preview_rule(session_factory, "exp_sql", now=NOW - timedelta(hours=1), definitions=defs, days=2)
    arms = {a.key: a for a in result.arms}
    assert set(arms) == {"control", "a", "b"} and sum(a.entered for a in arms.values()) == 30
    assert arms["control"].messages == 0 and arms["control"].coupons == 0 and arms["control"].title == "对照组"
    assert arms["a"].messages == arms["a"].entered and arms["b"].title_en == "30-yuan coupon, new text"
    assert json.loads(json.dumps(result.as_dict(), default=str))["arms"][0]["key"] == "control"
