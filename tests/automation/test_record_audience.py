"""Audiences of records of a form: ``audience: {record: {form, where}}``.

The rule enters every record of the form whose data matches the condition
(compiled to SQL over ``records.data``), set-based, as subject ``record``;
steps see the record's fields (``record.*`` in templates, ``if`` tests).
The definition checks know the form and its fields.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from engine.automation import run_rule
from engine.definitions.errors import DefinitionsInvalid
from engine.definitions.loader import DefinitionSet, load_paths
from engine.storage import automation_repo as repo
from engine.storage.database import transaction
from engine.storage.times import to_db_time

from .conftest import HERE, ROOT

NOW = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)

RULE = """
- kind: rule
  id: big_budget_review
  title: 大额活动复核
  trigger: {schedule: "0 10 * * *", timezone: Asia/Shanghai}
  audience:
    record: {form: activity_request, where: {budget: {gt: 50000}}}
  once_per: ever
  class: transactional
  steps:
    - if: {channel: wecom}
      then:
        - create_task: {title: 复核企业微信大额活动, to: {role: finance}}
      else:
        - create_task: {title: 复核大额活动, to: {role: finance}}
"""


def _load(tmp_path: Path, text_: str) -> DefinitionSet:
    (tmp_path / "rule.yaml").write_text(text_, encoding="utf-8")
    return load_paths([ROOT / "forms", ROOT / "workflows", ROOT / "config" / "roles.yaml",
                       HERE / "connectors.yaml", tmp_path / "rule.yaml"], relative_to=ROOT).raise_for_errors()


def test_records_of_a_form_enter_once(session_factory: sessionmaker[Session], tmp_path: Path) -> None:
    defs = _load(tmp_path, RULE)
    rule = defs.rules["big_budget_review"]
    assert rule.audience_form == "activity_request" and rule.audience is None
    with transaction(session_factory) as s:
        made = {}
        for name, budget, channel, form in (("春季大促", 80000, "wecom", "activity_request"),
                                            ("门店试吃", 3000, "store", "activity_request"),
                                            ("会员日", 120000, "sms", "activity_request"),
                                            ("其他表单", 90000, "sms", "o2o_campaign")):
            made[name] = repo.insert_record(s, form_id=form, form_version=1,
                                            data={"name": name, "budget": budget, "channel": channel},
                                            by="test", db_now=to_db_time(NOW - timedelta(days=1)))
    report = run_rule(session_factory, "big_budget_review", now=NOW, definitions=defs)
    again = run_rule(session_factory, "big_budget_review", now=NOW + timedelta(days=1), definitions=defs)
    assert report.entered == 2 and again.entered == 0
    with session_factory() as s:
        journeys = s.execute(text("SELECT subject_type, subject_id, status, state FROM journeys "
                                  "ORDER BY subject_id")).all()
        tasks = s.execute(text("SELECT subject_type, subject_id FROM events WHERE name = 'task.created' "
                               "ORDER BY subject_id")).all()
    assert [(t, i, st) for t, i, st, _ in journeys] == [("record", made["春季大促"], "done"),
                                                        ("record", made["会员日"], "done")]
    titles = {}
    for _, rid, _, state in journeys:
        state = state if isinstance(state, dict) else __import__("json").loads(state)
        titles[rid] = state["tasks"][0]["title"]
    assert titles == {made["春季大促"]: "复核企业微信大额活动", made["会员日"]: "复核大额活动"}  # `if` read the record
    assert tasks == [("record", str(made["春季大促"])), ("record", str(made["会员日"]))]


@pytest.mark.parametrize(("audience", "message"), [
    ("{record: {form: no_such_form}}", "no_such_form"),
    ("{record: {form: activity_request, where: {budgett: {gt: 1}}}}", "budgett"),
    ("{customer: {consent.sms: true}, record: {form: activity_request}}", "customers or records"),
])
def test_record_audience_checks(tmp_path: Path, audience: str, message: str) -> None:
    broken = RULE.replace("    record: {form: activity_request, where: {budget: {gt: 50000}}}", f"    {audience}")
    broken = broken.replace("  audience:\n    {", "  audience: {")
    with pytest.raises(DefinitionsInvalid, match=message):
        _load(tmp_path, broken)
