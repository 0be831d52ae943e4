"""``segment_change`` triggers: "moved from 高价值活跃 to 流失风险" enters exactly the movers.

Customers get RFM scores; the rule's first run only remembers who is where;
then some scores change (a high-value customer slips into churn risk, a
nobody slips into churn risk without having been high-value, a high-value
customer stays); the next hourly run enters the one who moved from → to, and
runs after it enter nobody twice.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from engine.automation import Policy, tick
from engine.automation.timing import due_schedule_runs, schedule_of
from engine.definitions.loader import DefinitionSet, load_paths
from engine.storage.database import transaction

from .conftest import HERE, ROOT
from .helpers import add_customer

NOW = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)

RULE = """
- kind: rule
  id: vip_slipping
  title: 高价值客户流失预警
  trigger: {segment_change: {from: high_value_active, to: churn_risk}}
  audience: {customer: {consent.sms: true}}
  steps:
    - add_tag: slipping
    - issue_coupon: {pool: winback20}
    - send: {channel: sms, template: winback_sms}
- kind: rule
  id: any_to_churn
  title: 进入流失风险
  trigger: {segment_change: {to: churn_risk}}
  steps:
    - add_tag: churn_seen
"""


@pytest.fixture
def defs(tmp_path: Path) -> DefinitionSet:
    (tmp_path / "rule.yaml").write_text(RULE, encoding="utf-8")
    return load_paths([ROOT / "forms", ROOT / "workflows", ROOT / "config" / "roles.yaml",
                       HERE / "connectors.yaml", tmp_path / "rule.yaml"], relative_to=ROOT).raise_for_errors()


def _scores(s: Session, cid: int, r: int, f: int, m: int) -> None:
    s.execute(text("UPDATE customers SET rfm_r = :r, rfm_f = :f, rfm_m = :m WHERE id = :c"),
              {"r": r, "f": f, "m": m, "c": cid})


def _tagged(s: Session, tag: str) -> list[int]:
    return list(s.execute(text("SELECT customer_id FROM customer_tags WHERE tag = :t ORDER BY customer_id"),
                          {"t": tag}).scalars())


def test_segment_change_enters_the_movers_once(session_factory: sessionmaker[Session], defs: DefinitionSet) -> None:
    recent = NOW - timedelta(days=20)
    with transaction(session_factory) as s:
        for cid in range(1, 6):
            add_customer(s, cid, now=NOW, last_order=recent, consents={"sms": True})
        _scores(s, 1, 5, 5, 5)  # high value → will slip into churn risk
        _scores(s, 2, 5, 4, 4)  # high value → stays
        _scores(s, 3, 3, 3, 3)  # neither → will slip into churn risk (not from high value)
        _scores(s, 4, 1, 4, 4)  # already in churn risk: never "moves" into it
        _scores(s, 5, 5, 5, 5)  # high value → dormant (churn risk excludes dormant)
    policy = Policy(caps=())
    rule = defs.rules["vip_slipping"]
    assert schedule_of(rule) == ("7 * * * *", "Asia/Shanghai")
    first = NOW + timedelta(minutes=7)
    assert due_schedule_runs(rule, None, first) == [first]

    report = tick(session_factory, now=first, definitions=defs, policy=policy)
    assert {r[0]: r[2] for r in report.runs} == {"vip_slipping": 0, "any_to_churn": 0}  # the first run only looks

    with transaction(session_factory) as s:
        _scores(s, 1, 2, 4, 5)
        _scores(s, 3, 1, 3, 3)
        s.execute(text("UPDATE customers SET last_purchase_at = :t, rfm_r = 1 WHERE id = 5"),
                  {"t": (NOW - timedelta(days=200)).replace(tzinfo=None)})
    second = first + timedelta(hours=1)
    report = tick(session_factory, now=second, definitions=defs, policy=policy)
    assert {r[0]: r[2] for r in report.runs} == {"vip_slipping": 1, "any_to_churn": 2}
    with session_factory() as s:
        assert _tagged(s, "slipping") == [1]
        assert _tagged(s, "churn_seen") == [1, 3]
        sms = s.execute(text("SELECT customer_id, body FROM outbox WHERE rule_id = 'vip_slipping'")).all()
    assert [c for c, _ in sms] == [1] and sms[0][1].startswith("客户1，")

    # Later runs: nobody moved again, nobody enters twice.
    for hours in (1, 2):
        report = tick(session_factory, now=second + timedelta(hours=hours), definitions=defs, policy=policy)
        assert all(r[2] == 0 for r in report.runs)
    with session_factory() as s:
        assert s.execute(text("SELECT count(*) FROM journeys")).scalar() == 3
        # Back to high value, then into churn risk again (a new day): a second move, a second journey.
        _scores(s, 1, 5, 5, 5)
        s.commit()
    tick(session_factory, now=second + timedelta(days=1), definitions=defs, policy=policy)
    with transaction(session_factory) as s:
        _scores(s, 1, 2, 4, 5)
    report = tick(session_factory, now=second + timedelta(days=1, hours=1), definitions=defs, policy=policy)
    assert {r[0]: r[2] for r in report.runs}["vip_slipping"] == 1
