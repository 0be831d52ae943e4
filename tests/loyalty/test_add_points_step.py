"""The ``add_points`` rule step (one module in the step registry,
engine/steps/add_points.py): an event rule gives points once per journey
(a repeated event adds nothing) and a later ``if`` sees them; a scheduled
rule's control group gets none and its run says why it took the batch path;
the loader refuses a lapse shorter than a day at ``file:line:col``. SQLite
and PostgreSQL."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from flask import Flask
from sqlalchemy import select

from engine.customers_import import import_customers
from engine.definitions.loader import load_texts
from engine.library import library_paths
from engine.publishing import publish_paths
from engine.steps import registry
from engine.storage.models import CustomerTag, Journey, PointsEntry, RuleRun

from .support import HERE, NOW, bearer, customer, ledger_sum, tick


def _publish(services) -> None:
    publish_paths(services.session_factory, [*library_paths(), HERE / "step_rules.yaml"], now=NOW, by="test")


def test_event_rule_gives_points_once_per_journey(app: Flask, tokens, services) -> None:
    _publish(services)
    client, auth, sf = app.test_client(), bearer(tokens["till"]), services.session_factory
    zhang = customer(sf, "M001").id
    for key in ("s1", "s1", "s2"):  # the first sign-in sent twice by the app: one event
        posted = client.post("/api/v1/events", json={"name": "custom.sign_in", "customer_id": zhang,
                                                     "idempotency_key": key}, headers=auth)
        assert posted.status_code in (200, 201), posted.text
        tick(app)
        tick(app)
        if key == "s1":  # 10 points: not yet the 20 the `if` asks for
            with sf() as s:
                assert not s.scalars(select(CustomerTag).where(CustomerTag.tag == "loyal_signer")).all()
    entries = client.get(f"/api/v1/customers/{zhang}/points", headers=auth).get_json()
    assert [(e["kind"], e["points"], e["source"], e["reason"], e["expires_on"]) for e in entries["entries"]] == [
        ("earn", 10, "rule", "签到积分", "2025-03-31")] * 2
    assert entries["balance"] == 20 == customer(sf, "M001").points == ledger_sum(sf, zhang)
    with sf() as s:
        assert set(s.scalars(select(CustomerTag.customer_id).where(CustomerTag.tag == "loyal_signer"))) == {zhang}
    tick(app)  # nothing is due: nothing more
    assert customer(sf, "M001").points == 20


def test_scheduled_rule_skips_the_control_group_and_says_why_not_sql(app: Flask, services, clock, tmp_path) -> None:
    _publish(services)
    sf = services.session_factory
    rows = io.StringIO()
    writer = csv.writer(rows)
    writer.writerow(["external_id", "name"])
    writer.writerows([f"S{i:03d}", f"会员{i}"] for i in range(40))
    (tmp_path / "more.csv").write_text(rows.getvalue(), encoding="utf-8")
    import_customers(sf, tmp_path / "more.csv", now=NOW, timezone="Asia/Shanghai", history=True)
    clock.now = NOW + timedelta(days=1)  # 10:00 the next day: the rule's schedule
    tick(app)
    with sf() as s:
        arms = {j.subject_id: j.arm for j in s.scalars(select(Journey).where(Journey.rule_id == "spring_points"))}
        given = {e.customer_id: (e.amount, e.expires_on.isoformat(), e.source)
                 for e in s.scalars(select(PointsEntry).where(PointsEntry.source == "rule"))}
        run = s.scalars(select(RuleRun).where(RuleRun.rule_id == "spring_points")).all()
    assert len(arms) == 43 and {"control", "treatment"} == set(arms.values())
    assert set(given) == {cid for cid, arm in arms.items() if arm == "treatment"}
    assert set(given.values()) == {(50, "2026-03-02", "rule")}  # the policy's 365 days from 2025-03-02
    assert any("add_points" in str((r.detail or {}).get("sql_fallback", "")) for r in run), [r.detail for r in run]


def test_the_loader_checks_the_step() -> None:
    assert registry.step("add_points").label == {"zh": "加积分", "en": "Add points"}
    text = """kind: rule
id: r
title: r
trigger: {event: custom.x}
steps:
  - add_points: {points: 5, expires_in: 12h}
  - add_points: {points: 0}
  - add_point: {points: 5}
"""
    errors = [str(e) for e in load_texts([("r.yaml", text)]).errors]
    assert any(e.startswith("r.yaml:6:") and "at least 1d" in e for e in errors), errors
    assert any(e.startswith("r.yaml:7:") and "points" in e for e in errors), errors
    assert any(e.startswith("r.yaml:8:") and "add_points" in e for e in errors), errors
