"""``promoflow demo`` closes the loop without any setup (issue 12, part 6):
its instance delivers every channel to the sandbox, so a worker tick sends
the seeded rules' messages and the approval notices (no provider secrets),
and ``/sandbox`` can show them. SQLite only: the demo is embedded SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from connectors.sandbox import read_inbox
from engine.settings import load_settings
from engine.storage.database import make_engine, make_session_factory
from engine.storage.models import OutboxMessage
from web.cli import main


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PROMOFLOW_DATABASE_URL", raising=False)
    monkeypatch.delenv("PROMOFLOW_CONNECTOR_SANDBOX", raising=False)
    for name in ("WECOM_CORP_SECRET", "WECOM_CONTACT_SECRET", "SMTP_PASSWORD", "ALIYUN_ACCESS_KEY_ID",
                 "ALIYUN_ACCESS_KEY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


def test_the_demo_instance_delivers_to_the_sandbox(runner: CliRunner, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    made = runner.invoke(main, ["demo", "--instance", "demo", "--no-serve", "--customers", "300", "--days", "0"])
    assert made.exit_code == 0, made.output
    assert "/sandbox" in made.output
    folder = tmp_path / "demo"
    assert load_settings(overrides={"instance_path": str(folder)}, environ={}).connector_sandbox is True

    monkeypatch.setenv("PROMOFLOW_INSTANCE_PATH", str(folder))
    ran = runner.invoke(main, ["rules", "run", "winback_90d"])  # the win-back's SMS, now instead of at 10:00
    assert ran.exit_code == 0, ran.output
    ticked = runner.invoke(main, ["worker", "--once"])
    assert ticked.exit_code == 0, ticked.output
    assert "cannot deliver" not in ticked.output and "Connector sandbox is on" in ticked.output

    engine = make_engine(f"sqlite:///{folder / 'promoflow.sqlite'}")
    try:
        with make_session_factory(engine)() as s:
            by_status = dict(s.execute(select(OutboxMessage.status, func.count())
                                       .where(OutboxMessage.connector != "demo_log")
                                       .group_by(OutboxMessage.status)).all())
    finally:
        engine.dispose()
    assert by_status.get("sent", 0) > 0, by_status
    assert not by_status.get("queued") and not by_status.get("retry"), by_status
    inbox = read_inbox(folder / "sandbox", limit=100_000)
    assert len(inbox) == by_status["sent"]


def test_the_sandbox_setting_reads_true_and_false_and_refuses_anything_else(tmp_path: Path) -> None:
    from engine.settings import SettingsError

    base = {"instance_path": str(tmp_path)}
    assert load_settings(overrides=base, environ={}).connector_sandbox is False
    assert load_settings(overrides=base, environ={"PROMOFLOW_CONNECTOR_SANDBOX": "true"}).connector_sandbox is True
    assert load_settings(overrides=base, environ={"PROMOFLOW_CONNECTOR_SANDBOX": "0"}).connector_sandbox is False
    with pytest.raises(SettingsError, match="connector_sandbox: `maybe` is not true or false"):
        load_settings(overrides=base, environ={"PROMOFLOW_CONNECTOR_SANDBOX": "maybe"})
