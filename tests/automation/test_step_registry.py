"""The step registry: every step type declares itself in one module, and a
third party's step (an installed distribution with a ``promoflow.steps``
entry point) is loaded, schema-checked, checked and run with no other file
of the product touched."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from engine.automation import run_rule
from engine.definitions.loader import load_paths
from engine.definitions.schema_check import schema_document
from engine.steps import registry
from engine.storage.database import transaction

from .conftest import HERE, ROOT
from .helpers import add_customer

NOW = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


def test_every_step_declares_schema_labels_and_help() -> None:
    kinds = registry.steps()
    assert [k.key for k in kinds] == ["send", "issue_coupon", "add_tag", "remove_tag", "set_field", "wait", "if",
                                      "webhook", "create_record", "create_task", "add_points"]
    for kind in kinds:
        assert kind.label["zh"] and kind.label["en"] and kind.label["zh"] != kind.label["en"], kind.key
        assert kind.help["zh"] and kind.help["en"], kind.key
        assert kind.schema, kind.key
    step = schema_document("rule")["$defs"]["step"]["properties"]
    assert set(step) == {"id", "then", "else", *registry.keys()}
    assert step["issue_coupon"]["required"] == ["pool"]


def test_unknown_step_key_says_did_you_mean() -> None:
    with pytest.raises(registry.UnknownStepError, match="did you mean `issue_coupon`"):
        registry.step("issue_copon")


PLUGIN = '''
"""A third party's step: ``stamp: TEXT`` tags the customer ``stamp_TEXT`` and records a ``stamp`` event."""
from dataclasses import dataclass

from engine.definitions.errors import Problem
from engine.steps.registry import StepType
from engine.steps.runtime import EventRow, WriteKind, Writes
from engine.storage.events_repo import append_event


@dataclass(frozen=True)
class StampSpec:
    text: str


def _write(session, rows, batch):
    for customer_id, text, journey_id in rows:
        append_event(session, "custom.stamped", "customer", customer_id, {"text": text, "journey_id": journey_id},
                     batch.now)


STAMPS = WriteKind("stamps", _write)


class StampStep(StepType):
    key = "stamp"
    spec_type = StampSpec
    label = {"zh": "盖章", "en": "Stamp"}
    help = {"zh": "给客户盖章。", "en": "Stamp the customer."}
    schema = {"type": "string", "minLength": 1}

    def build(self, body, site):
        return StampSpec(body)

    def check(self, body, site):
        return [Problem(site.path, "stamp", "a stamp is lower-case")] if body != body.lower() else []

    def run(self, batch, instr, cursors):
        out = Writes()
        for c in cursors:
            c.go(instr.next)
            out.tag(c.customer_id, "stamp_" + instr.action.text, remove=False)
            out.add(STAMPS, (c.customer_id, instr.action.text, c.journey.id))
        return out


STEP = StampStep()
'''

RULE = """
kind: rule
id: stamp_all
title: 盖章
trigger: {schedule: "0 10 * * *", timezone: Asia/Shanghai}
audience:
  customer: {last_purchase_at: {older_than: 30d}}
steps:
  - stamp: {text}
"""


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """An installed distribution ``stamp-steps`` (a dist-info folder on sys.path) declaring the entry point."""
    (tmp_path / "stamp_steps.py").write_text(PLUGIN, encoding="utf-8")
    info = tmp_path / "stamp_steps-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: stamp-steps\nVersion: 1.0\n", encoding="utf-8")
    (info / "entry_points.txt").write_text("[promoflow.steps]\nstamp = stamp_steps:STEP\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.reload()
    yield tmp_path
    monkeypatch.undo()
    registry.reload()


def _load(tmp_path: Path, stamp: str):  # type: ignore[no-untyped-def]
    (tmp_path / "rule.yaml").write_text(textwrap.dedent(RULE).replace("{text}", stamp), encoding="utf-8")
    return load_paths([ROOT / "forms", ROOT / "workflows", ROOT / "config" / "roles.yaml", HERE / "connectors.yaml",
                       tmp_path / "rule.yaml"], relative_to=tmp_path)


def test_a_third_party_step_is_one_module(plugin: Path, session_factory: sessionmaker[Session]) -> None:
    assert "stamp" in registry.keys() and registry.step("stamp").label["zh"] == "盖章"
    bad = _load(plugin, "{x: 1}")
    assert any(str(e).startswith("rule.yaml:9:") and "text" in str(e) for e in bad.errors), bad.errors
    loud = _load(plugin, "LOUD")
    assert [str(e) for e in loud.errors] == ["rule.yaml:9:12: a stamp is lower-case"]
    defs = _load(plugin, "gold").raise_for_errors()
    with transaction(session_factory) as s:
        for cid in (1, 2):
            add_customer(s, cid, now=NOW, last_order=NOW - timedelta(days=60))
        add_customer(s, 3, now=NOW, last_order=NOW - timedelta(days=1))
    report = run_rule(session_factory, "stamp_all", now=NOW, definitions=defs)
    assert report.entered == 2 and report.counters.completed == 2
    assert report.sql_fallback == "`stamp` has no SQL form"
    with session_factory() as s:
        tags = s.execute(text("SELECT customer_id, tag FROM customer_tags ORDER BY customer_id")).all()
        events = s.execute(text("SELECT subject_id FROM events WHERE name = 'custom.stamped' "
                                "ORDER BY subject_id")).scalars().all()
        detail = s.execute(text("SELECT detail FROM rule_runs WHERE kind = 'manual'")).scalar()
    assert [tuple(t) for t in tags] == [(1, "stamp_gold"), (2, "stamp_gold")]
    assert [int(e) for e in events] == [1, 2]
    detail = detail if isinstance(detail, dict) else __import__("json").loads(detail)
    assert detail == {"sql_fallback": "`stamp` has no SQL form"}
