"""`promoflow rules list|preview|run` and `journeys show` through the CLI, on
SQLite and PostgreSQL: the preview writes nothing, a run enters once."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine.library import library_paths
from engine.storage.database import transaction
from engine.storage.models import Coupon, Journey, OutboxMessage, RuleRun
from web.cli import main

from .helpers import add_customer

NOW = datetime(2026, 3, 2, 1, 30, tzinfo=UTC)  # 09:30 in Shanghai


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str, session_factory: sessionmaker[Session]):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROMOFLOW_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.delenv("PROMOFLOW_DATABASE_URL", raising=False)
    runner = CliRunner()

    def run(*args: str, ok: bool = True):
        result = runner.invoke(main, ["--database-url", db_url, *args], catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    run("publish", *map(str, library_paths()))
    with transaction(session_factory) as s:
        for cid in range(1, 7):
            add_customer(s, cid, now=NOW, last_order=NOW - timedelta(days=100 + cid),
                         consents={"sms": cid != 6, "wecom": cid % 2 == 0})
    return run


def _count(sf: sessionmaker[Session], model, **where) -> int:
    with sf() as s:
        stmt = select(func.count()).select_from(model)
        for k, v in where.items():
            stmt = stmt.where(getattr(model, k) == v)
        return s.scalar(stmt)


def test_preview_counts_samples_and_forecasts_without_writing(cli, session_factory) -> None:
    result = cli("rules", "preview", "winback_90d", "--days", "10", "--at", "2026-03-02T09:30+08:00")
    out = result.output
    assert "Audience now: 5 customer(s)" in out
    assert len(re.findall(r"^  #\d", out, re.MULTILINE)) == 5
    rows = {m[0]: m[1:] for m in re.findall(r"^(\d{4}-\d\d-\d\d)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)$", out, re.MULTILINE)}
    assert len(rows) == 10
    # today's 10:00 run enters 5 and texts them (SMS 0.045 each); a week later 2 of them have WeCom consent.
    assert rows["2026-03-02"] == ("5", "5", "0", "5", "0.23")
    assert rows["2026-03-09"] == ("0", "0", "2", "0", "0.00")
    assert "Total: 7 message(s), SMS cost 0.23 CNY at 0.045 CNY per SMS." in out
    for model in (Journey, OutboxMessage, Coupon):
        assert _count(session_factory, model) == 0
    assert _count(session_factory, RuleRun) == 0
    priced = cli("rules", "preview", "winback_90d", "--days", "1", "--at", "2026-03-02T09:30+08:00",
                 "--sms-price", "0.1").output
    assert "SMS cost 0.50 CNY at 0.1 CNY per SMS" in priced


def test_preview_of_an_event_rule_and_unknown_rules(cli) -> None:
    assert "no forecast" in cli("rules", "preview", "welcome_journey").output
    bad = cli("rules", "preview", "winback_9d", ok=False)
    assert bad.exit_code == 1 and "unknown rule `winback_9d`; did you mean `winback_90d`?" in bad.output
    assert "not a timestamp" in cli("rules", "run", "winback_90d", "--at", "yesterday", ok=False).output
    assert "triggered by events" in cli("rules", "run", "welcome_journey", ok=False).output


def test_run_enters_once_and_list_and_journeys_show(cli, session_factory) -> None:
    first = cli("rules", "run", "winback_90d", "--at", "2026-03-02 10:00").output
    assert "entered 5, advanced 5, sent 5" in first
    again = cli("rules", "run", "winback_90d", "--at", "2026-03-02 11:00").output
    assert "entered 0" in again
    assert _count(session_factory, OutboxMessage, rule_id="winback_90d") == 5
    shown = cli("journeys", "show", "winback_90d").output
    assert "winback_90d: 5 journey(s)" in shown
    assert re.search(r"^\s+1\s+s3\s+active\s+5$", shown, re.MULTILINE)
    assert len(re.findall(r"^  #\d+ +customer", shown, re.MULTILINE)) == 5
    listed = cli("rules", "list", "--at", "2026-03-02 12:00").output
    block = listed[listed.index("winback_90d v1"):]
    assert "trigger:  daily at 10:00 (Asia/Shanghai)" in block
    assert "next run: 2026-03-03 10:00" in block
    assert re.search(r"2026-03-02  runs 2  entered 5  sent 5  skipped: consent 0 caps 0", block)
    assert "on event customer.registered" in listed
    assert "no journeys yet" in cli("journeys", "show", "renewal_reminder").output


def test_commands_need_published_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMOFLOW_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.delenv("PROMOFLOW_DATABASE_URL", raising=False)
    result = CliRunner().invoke(main, ["rules", "list"])
    assert result.exit_code == 1 and "run `promoflow publish` first" in result.output
