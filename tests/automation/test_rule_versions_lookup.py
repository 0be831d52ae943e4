"""The journey runtime finds each journey's rule by (id, version): one claimed
batch holding journeys of two versions of a rule runs each on its own spec,
both as one batch and as batches of one (no parking of the other
version's journeys, as the tick wrapper once did)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from engine.automation import advance_due
from engine.automation.program import compile_program
from engine.definitions.loader import DefinitionSet
from engine.storage import automation_repo as repo
from engine.storage.times import to_db_time

from .helpers import add_customer
from .test_batch_runtime import NOW


@pytest.mark.parametrize("per_journey", [False, True])
def test_one_batch_two_versions_each_on_its_spec(session: Session, definitions: DefinitionSet, per_journey: bool) -> None:
    v1 = definitions.rules["winback_90d"]  # coupon, SMS, wait 7d
    v2 = replace(definitions.rules["welcome_journey"], id="winback_90d")  # tag, coupon, e-mail if consented, wait 3d
    for cid in (1, 2):
        add_customer(session, cid, now=NOW, consents={"sms": True, "email": True})
    db_now = to_db_time(NOW)
    repo.enter_subjects(session, [
        {"rule_id": "winback_90d", "rule_version": version, "subject_type": "customer", "subject_id": cid,
         "period_key": "p", "step_index": compile_program(v1 if version == 1 else v2).start, "step_id": None, "status": "active", "due_at": db_now,
         "entered_at": db_now, "state": None, "version": 1}
        for cid, version in ((1, 1), (2, 2))])
    seen: list[tuple[str, int]] = []

    def rule_of(rule_id: str, version: int):  # type: ignore[no-untyped-def]
        seen.append((rule_id, version))
        return v1 if version == 1 else v2

    report = advance_due(session, now=NOW, definitions=definitions, per_journey=per_journey, rule_of=rule_of)
    assert report.claimed == 2 and {v for _, v in seen} == {1, 2}
    rows = dict(session.execute(text("SELECT customer_id, template_id FROM outbox")).all())
    assert rows == {1: "winback_sms", 2: "welcome"}
    assert session.execute(text("SELECT customer_id, tag FROM customer_tags")).all() == [(2, "new_member")]
    waits = dict(session.execute(text("SELECT subject_id, due_at FROM journeys")).all())
    assert str(waits[1]).startswith("2026-03-08") and str(waits[2]).startswith("2026-03-04")
