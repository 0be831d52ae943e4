"""Equality proven over drawn rules: the batch runtime, batches of one and the SQL path write the same rows.

Hypothesis draws an audience (consents, missing phones and names, time zones
in and out of quiet hours, tags, customers already at their frequency cap)
and a rule built from every step type (send on each channel and to staff,
coupons from pools with and without limits, tags, set_field, waits, nested
if/else, webhook, create_record, create_task), optionally with quiet hours,
an ``exit_when``, an experiment and rules listening to the steps' events.
Each draw runs three ways on the same database (SQLite and PostgreSQL):

* ``batch``: entry, then ``advance_due`` over claimed batches;
* ``one``: entry, then every journey as a batch of one (``per_journey=True``);
* ``sql``: the scheduled path (entry and first segment as SQL), when the rule
  takes it; when it does not, ``plan_segment`` must say why.

over a simulated week, and every row written — journeys (with arms), outbox,
coupons, tags, tasks, events, records, customers' fields — and the run
counters must be identical (ids, coupon codes and record ids aside, which are
random or sequence numbers).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from engine.automation import Policy, enter_audience
from engine.automation.policy import Counters
from engine.automation.runner import advance_all
from engine.automation.setentry import enter_and_start, plan_segment
from engine.definitions.build import build_rule
from engine.definitions.loader import DefinitionSet, load_paths
from engine.definitions.specs import Source
from engine.steps import registry
from engine.steps.sql import NoSql
from engine.storage.database import transaction
from engine.storage.models import OutboxMessage, UserRole
from engine.storage.times import to_db_time

from .conftest import HERE, ROOT
from .helpers import add_customer, add_user

NOW = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai, 21:00 in New York
TIMES = (NOW, NOW + timedelta(hours=13), NOW + timedelta(days=1), NOW + timedelta(days=2, hours=1),
         NOW + timedelta(days=8))

EXTRA = """
- kind: coupon_pool
  id: d_pool
  title: 差分券
  value: 20
  expires_in: 14d
- kind: coupon_pool
  id: d_limited
  title: 限量券
  value: 10
  max_issued: 3
- kind: template
  id: d_sms
  title: 差分短信
  channels: [sms]
  body: "{{ customer.name }}，欢迎回来 {{ rule.title }}。退订回T"
- kind: template
  id: d_sms_coupon
  title: 差分券短信
  channels: [sms]
  body: "{{ customer.name }}，券码{{ coupon.code }}，{{ coupon.value }}元，{{ coupon.expires_at }}前有效"
- kind: template
  id: d_sms_b
  title: 差分短信 B
  channels: [sms]
  body: "B版：{{ customer.name }}您好"
"""


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> DefinitionSet:
    folder = tmp_path_factory.mktemp("diff")
    (folder / "extra.yaml").write_text(EXTRA, encoding="utf-8")
    return load_paths([ROOT / "forms", ROOT / "workflows", ROOT / "config" / "roles.yaml", HERE / "connectors.yaml",
                       folder / "extra.yaml"], relative_to=ROOT).raise_for_errors()


# -- what hypothesis draws ---------------------------------------------------------------

SENDS = [{"channel": "sms", "template": "d_sms"}, {"channel": "sms", "template": "d_sms_coupon"},
         {"channel": "email", "template": "welcome"},
         {"channel": "wecom", "connector": "wecom_customer", "template": "winback_reminder"},
         {"channel": "sms", "template": "d_sms", "to": {"role": "store_manager"}}]
LEAF = st.one_of(
    st.sampled_from(SENDS).map(lambda s: {"send": s}),
    st.sampled_from([{"issue_coupon": {"pool": "d_pool"}}, {"issue_coupon": {"pool": "d_limited"}},
                     {"issue_coupon": {"pool": "d_pool", "value": 5, "expires_in": "3d"}}]),
    st.sampled_from([{"add_tag": "x"}, {"add_tag": "y"}, {"remove_tag": "x"}, {"remove_tag": "stale"}]),
    st.just({"set_field": {"level": "gold"}}),
    st.sampled_from([{"wait": "1d"}, {"wait": {"until": "10:00"}}, {"wait": {"for": "2d", "until": "10:00"}}]),
    st.just({"webhook": {"connector": "hook_log", "payload": {"who": "{{ customer.name }}", "rule": "{{ rule.id }}"}}}),
    st.just({"create_record": {"form": "nps_survey", "data": {"score": 9, "comment": "{{ customer.name }}"}}}),
    st.just({"create_task": {"title": "回访", "title_en": "Call back", "to": {"role": "store_manager"}, "due": "2d"}}),
)
CONDITIONS = st.sampled_from([{"tags": {"contains": "x"}}, {"coupon_issued": "d_pool"}, {"consent.email": True},
                              {"level": "gold"}])
STEPS = st.recursive(
    st.lists(LEAF, min_size=1, max_size=4),
    lambda inner: st.lists(st.one_of(LEAF, st.builds(lambda c, th, el: {"if": c, "then": th, "else": el},
                                                     CONDITIONS, inner, inner)), min_size=1, max_size=4),
    max_leaves=8)
#: A first segment the SQL path takes (coupon, SMS, tags, a plain wait), then anything.
SQL_HEAD = st.lists(st.sampled_from([{"issue_coupon": {"pool": "d_pool"}}, {"send": SENDS[0]}, {"add_tag": "x"},
                                     {"remove_tag": "stale"}]), min_size=1, max_size=3)


@st.composite
def rules(draw: Any) -> dict[str, Any]:
    steps = draw(STEPS)
    if draw(st.booleans()):
        head = draw(SQL_HEAD)
        if any("issue_coupon" in s for s in head) and draw(st.booleans()):
            head.append({"send": SENDS[1]})
        steps = head + [{"wait": "1d"}] + steps
    rule: dict[str, Any] = {
        "kind": "rule", "id": "diff", "title": "差分规则", "trigger": {"schedule": "0 10 * * *"},
        "audience": {"customer": {"last_purchase_at": {"older_than": "90d"}}}, "once_per": "ever", "steps": steps,
    }
    if draw(st.booleans()):
        rule["quiet_hours"] = "21:00-09:00"
    if draw(st.booleans()):
        rule["exit_when"] = {"ordered_since_entry": True}
    if draw(st.booleans()):
        rule["experiment"] = {"salt": draw(st.sampled_from(["s1", "s2"])), "holdout": draw(st.sampled_from([0, 30])),
                              "variants": [{"key": "a"}, {"key": "b", "templates": {"d_sms": "d_sms_b"},
                                                          "coupon_value": 7}]}
    return rule


CUSTOMER = st.fixed_dictionaries({
    "sms": st.booleans(), "email": st.booleans(), "wecom": st.booleans(), "phone": st.booleans(),
    "name": st.booleans(), "zone": st.sampled_from(["Asia/Shanghai", "America/New_York", "Not/AZone"]),
    "stale": st.booleans(), "capped": st.booleans(), "recent": st.booleans(),
})
LISTENED = st.sets(st.sampled_from(["customer.tagged", "coupon.issued", "message.sent", "customer.updated"]),
                   max_size=2)


# -- running and reading back ------------------------------------------------------------

TABLES = ("outbox", "coupons", "journeys", "customer_tags", "tasks", "events", "records", "rule_runs", "consents",
          "orders", "user_roles", "users", "customers")


def _seed(s: Session, audience: list[dict[str, Any]]) -> None:
    """Bulk history fixture: the drawn customers, a store manager, and earlier messages for capped customers."""
    for table in TABLES:
        s.execute(text(f"DELETE FROM {table}"))
    add_user(s, 1, "manager_li", NOW)
    s.add(UserRole(user_id=1, role="store_manager"))
    for cid, c in enumerate(audience, start=1):
        last = NOW - timedelta(days=5 if c["recent"] else 120)
        add_customer(s, cid, now=NOW, last_order=last, consents={k: c[k] for k in ("sms", "email", "wecom")},
                     tags=("stale",) if c["stale"] else ())
        s.execute(text("UPDATE customers SET timezone = :z WHERE id = :c"), {"z": c["zone"], "c": cid})
        if not c["phone"]:
            s.execute(text("UPDATE customers SET phone = NULL WHERE id = :c"), {"c": cid})
        if not c["name"]:
            s.execute(text("UPDATE customers SET name = NULL WHERE id = :c"), {"c": cid})
        if c["capped"]:
            for n in range(2):
                at = to_db_time(NOW - timedelta(days=1 + n))
                s.add(OutboxMessage(channel="sms", connector="sms_aliyun", recipient="x", body="earlier",
                                    idempotency_key=f"earlier:{cid}:{n}", delivery_class="marketing", status="sent",
                                    attempts=1, next_attempt_at=at, rule_id="other", created_at=at, customer_id=cid))
    s.flush()


def _run(session_factory: sessionmaker[Session], defs: DefinitionSet, audience: list[dict[str, Any]],
         mode: str) -> dict[str, Any]:
    with transaction(session_factory) as s:
        _seed(s, audience)
    rule = defs.rules["diff"]
    totals = Counters()
    for at in TIMES:
        if at == NOW:
            with transaction(session_factory) as s:
                if mode == "sql":
                    entered, started = enter_and_start(s, rule, 1, now=at, definitions=defs, policy=Policy())
                    totals.add(started)
                else:
                    entered = enter_audience(s, rule, 1, now=at, definitions=defs)
                totals.entered += entered
        for counters in advance_all(session_factory, now=at, definitions=defs, batch=5, policy=Policy(),
                                    per_journey=mode == "one").values():
            totals.add(counters)
    with session_factory() as s:
        return {"counters": totals.as_dict(), **_snapshot(s)}


def _rows(s: Session, sql: str) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in s.execute(text(sql))]


def _snapshot(s: Session) -> dict[str, Any]:
    """Every row the runs wrote, with ids, codes and record ids replaced by what they stand for."""
    subject = {int(r["id"]): int(r["subject_id"]) for r in _rows(s, "SELECT id, subject_id FROM journeys")}
    codes = [r["code"] for r in _rows(s, "SELECT code FROM coupons")]
    pattern = re.compile("|".join(map(re.escape, codes))) if codes else None

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            if value[:1] in "{[":
                try:
                    return clean(json.loads(value))
                except ValueError:
                    pass
            return pattern.sub("<code>", value) if pattern else value
        if isinstance(value, dict):
            return {k: (subject.get(int(v), v) if k == "journey_id" and v is not None else clean(v))
                    for k, v in sorted(value.items()) if k not in ("task_id",)}
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, datetime):
            return value.isoformat()
        return value if isinstance(value, (int, bool, type(None))) else str(value)

    def table(sql: str, drop: tuple[str, ...] = ("id",)) -> list[str]:
        out = []
        for row in _rows(s, sql):
            if row.get("journey_id") is not None:
                row["journey_id"] = subject.get(int(row["journey_id"]), row["journey_id"])
            out.append(json.dumps({k: clean(v) for k, v in row.items() if k not in drop}, sort_keys=True,
                                  ensure_ascii=False, default=str))
        return sorted(out)

    return {
        "journeys": table("SELECT * FROM journeys", ("id", "version")),
        "outbox": table("SELECT * FROM outbox WHERE rule_id IS NULL OR rule_id <> 'other'"),
        "coupons": table("SELECT *, length(code) AS code_length FROM coupons", ("id", "code")),
        "tags": table("SELECT * FROM customer_tags"),
        "tasks": table("SELECT * FROM tasks", ("id", "version")),
        "events": table("SELECT name, subject_type, CASE WHEN name = 'record.created' THEN NULL ELSE subject_id END "
                        "AS subject, payload, created_at, processed_at FROM events"),
        "records": table("SELECT form_id, form_version, data, created_by_name, created_at FROM records"),
        "customers": table("SELECT id, level, name, phone FROM customers"),
    }


def _definitions(base: DefinitionSet, rule: dict[str, Any], listened: set[str]) -> DefinitionSet:
    specs = {k: dict(v) for k, v in base.specs.items()}
    specs["rule"] = {"diff": build_rule(None, rule, Source("diff.yaml", 1))}  # type: ignore[arg-type]
    for n, name in enumerate(sorted(listened)):
        listener = {"kind": "rule", "id": f"listen_{n}", "title": "监听", "trigger": {"event": name},
                    "steps": [{"wait": "1d"}]}
        specs["rule"][listener["id"]] = build_rule(None, listener, Source("diff.yaml", 1))  # type: ignore[arg-type]
    return DefinitionSet(documents=base.documents, specs=specs)


def test_the_draw_covers_every_step_type() -> None:
    """A new step type must join the draw: the proof is only as good as its coverage."""
    source = Path(__file__).read_text(encoding="utf-8")
    assert [k for k in registry.keys() if f'{{"{k}"' not in source] == []


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(rule=rules(), audience=st.lists(CUSTOMER, min_size=1, max_size=7), listened=LISTENED)
def test_batch_one_and_sql_write_the_same_rows(session_factory: sessionmaker[Session], base: DefinitionSet,
                                               rule: dict[str, Any], audience: list[dict[str, Any]],
                                               listened: set[str]) -> None:
    note(json.dumps({"rule": rule, "audience": audience, "listened": sorted(listened)}, ensure_ascii=False))
    defs = _definitions(base, rule, listened)
    batch = _run(session_factory, defs, audience, "batch")
    one = _run(session_factory, defs, audience, "one")
    for key in batch:
        assert one[key] == batch[key], key
    with session_factory() as s:
        planned = plan_segment(s, defs.rules["diff"], now=NOW, definitions=defs, policy=Policy(), key="x")
    event("sql path" if not isinstance(planned, NoSql) else "per-journey path")
    if isinstance(planned, NoSql):
        assert planned.reason  # the run report carries it
        return
    sql = _run(session_factory, defs, audience, "sql")
    for key in batch:
        assert sql[key] == batch[key], key
