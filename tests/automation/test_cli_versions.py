"""Publishing a new version of a rule with subjects in its journeys:
`promoflow publish --journeys pin|migrate|drain` prints how many each choice
affects and applies one; pinned journeys finish on the old spec, migrated ones
continue at the same step id of the new one, draining holds new entries until
the old journeys are done. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine.automation.configure import build_policy
from engine.automation.versions import StoredRules, journey_impact, tick_versions
from engine.definitions.loader import load_texts
from engine.registry import DefinitionRegistry
from engine.storage.database import transaction
from engine.storage.models import Journey, OutboxMessage
from web.cli import main

from .helpers import add_customer

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 Shanghai, the rule's run time
BASE = """
- {kind: connector, id: sms_log, type: log, channel: sms, default: true}
- {kind: template, id: hello, channels: [sms], body: "hi {{ customer.name }}"}
- {kind: template, id: bye, channels: [sms], body: "bye v1"}
- {kind: template, id: bye2, channels: [sms], body: "bye v2"}
"""
V1 = """kind: rule
id: nurture
title: 培育
trigger: {schedule: "0 10 * * *", timezone: Asia/Shanghai}
audience: {customer: {consent.sms: true}}
once_per: 60d
steps:
  - {id: hello, send: {channel: sms, template: hello}}
  - {id: pause, wait: 7d}
  - {id: bye, send: {channel: sms, template: bye}}
"""
V2_SAME_IDS = V1.replace("template: bye}", "template: bye2}")
V2_NEW_IDS = V2_SAME_IDS.replace("id: pause, wait: 7d", "id: pause_v2, wait: 5d")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str, session_factory: sessionmaker[Session]):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROMOFLOW_INSTANCE_PATH", str(tmp_path / "instance"))
    folder = tmp_path / "defs"
    folder.mkdir()
    (folder / "base.yaml").write_text(BASE, encoding="utf-8")
    runner = CliRunner()

    def publish(rule: str, *args: str) -> str:
        (folder / "rule.yaml").write_text(rule, encoding="utf-8")
        result = runner.invoke(main, ["--database-url", db_url, "publish", str(folder), *args],
                               catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    publish(V1)
    with transaction(session_factory) as s:
        for cid in (1, 2, 3):
            add_customer(s, cid, now=T0, consents={"sms": True})
    return publish


def _tick(sf: sessionmaker[Session], now: datetime, stored: StoredRules) -> None:
    registry = DefinitionRegistry(sf, max_staleness=0)
    definitions = registry.refresh(force=True)
    policy = build_policy(definitions, version_of=lambda r: registry.version_of("rule", r))
    tick_versions(sf, now=now, definitions=definitions, policy=policy, stored=stored)


def _sent(sf: sessionmaker[Session]) -> list[tuple[int, str, int]]:
    with sf() as s:
        rows = s.execute(select(OutboxMessage.customer_id, OutboxMessage.body, OutboxMessage.created_at)).all()
    return sorted((c, body, (at.replace(tzinfo=UTC) - T0).days) for c, body, at in rows)


def _journeys(sf: sessionmaker[Session]) -> list[tuple[int, int, str | None, str]]:
    with sf() as s:
        return sorted(s.execute(select(Journey.subject_id, Journey.rule_version, Journey.step_id, Journey.status)).all())


def test_impact_counts_per_choice(project, session_factory) -> None:
    stored = StoredRules(session_factory)
    _tick(session_factory, T0, stored)
    with transaction(session_factory) as s:
        s.execute(Journey.__table__.update().where(Journey.subject_id == 3).values(status="done", step_id=None))
    rule = lambda text: load_texts([("b.yaml", BASE), ("r.yaml", text)]).raise_for_errors().rules["nurture"]
    with session_factory() as s:
        assert journey_impact(s, "nurture", rule(V2_SAME_IDS), new_version=2) == {"pin": 2, "migrate": 2, "drain": 2}
        assert journey_impact(s, "nurture", rule(V2_NEW_IDS), new_version=2) == {"pin": 2, "migrate": 0, "drain": 2}
        assert journey_impact(s, "nurture", rule(V2_SAME_IDS), new_version=1) == {"pin": 0, "migrate": 0, "drain": 0}
    out = project(V2_NEW_IDS, "--journeys", "migrate")
    assert "journeys under way on older versions: pin 2 · migrate 0 (same step id) · drain 2" in out
    assert "--journeys migrate: 0 moved to v2" in out
    assert [j[1] for j in _journeys(session_factory)] == [1, 1, 1]


def test_pin_finishes_on_the_old_version(project, session_factory) -> None:
    stored = StoredRules(session_factory)
    _tick(session_factory, T0, stored)
    out = project(V2_SAME_IDS)  # --journeys pin is the default
    assert "changed   rule         nurture v2" in out
    assert "pin 3 · migrate 3 (same step id) · drain 3" in out and "--journeys pin: 3 finish on their version" in out
    for day in range(1, 9):
        _tick(session_factory, T0 + timedelta(days=day), stored)
    byes = [(c, body, d) for c, body, d in _sent(session_factory) if body.startswith("bye")]
    assert byes == [(1, "bye v1", 7), (2, "bye v1", 7), (3, "bye v1", 7)]
    assert [j[1:] for j in _journeys(session_factory)] == [(1, None, "done")] * 3


def test_migrate_moves_to_the_same_step_of_the_new_version(project, session_factory) -> None:
    stored = StoredRules(session_factory)
    _tick(session_factory, T0, stored)
    out = project(V2_SAME_IDS, "--journeys", "migrate")
    assert "--journeys migrate: 3 moved to v2" in out
    assert [j[1:] for j in _journeys(session_factory)] == [(2, "pause", "active")] * 3
    for day in range(1, 9):
        _tick(session_factory, T0 + timedelta(days=day), stored)
    byes = [(c, body, d) for c, body, d in _sent(session_factory) if body.startswith("bye")]
    assert byes == [(1, "bye v2", 7), (2, "bye v2", 7), (3, "bye v2", 7)]  # the wait was not restarted


def test_drain_holds_new_entries_until_old_journeys_finish(project, session_factory) -> None:
    stored = StoredRules(session_factory)
    _tick(session_factory, T0, stored)
    with transaction(session_factory) as s:
        add_customer(s, 4, now=T0, consents={"sms": True})  # would enter at the next run
    out = project(V2_SAME_IDS, "--journeys", "drain")
    assert "--journeys drain: 3 finish on their version; no new entries until then" in out
    for day in range(1, 7):
        _tick(session_factory, T0 + timedelta(days=day), stored)
    assert 4 not in {j[0] for j in _journeys(session_factory)}
    _tick(session_factory, T0 + timedelta(days=7), stored)  # old journeys finish (bye v1) ...
    _tick(session_factory, T0 + timedelta(days=8), stored)  # ... so the next run takes new entries on v2
    journeys = _journeys(session_factory)
    assert (4, 2, "pause", "active") in journeys
    assert [(c, body) for c, body, d in _sent(session_factory) if body.startswith("bye")] == \
        [(1, "bye v1"), (2, "bye v1"), (3, "bye v1")]
