"""The scale-out settings and commands refuse what they cannot use, with a
message that says what to set (issue 17)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.settings import SettingsError, load_settings
from web import refresh_hooks
from web.celery_app import result_backend
from web.cli import main


def test_fleet_settings_from_the_environment(tmp_path: Path) -> None:
    env = {"PROMOFLOW_INSTANCE_PATH": str(tmp_path), "PROMOFLOW_FLEET_CHUNK": "20000",
           "PROMOFLOW_FLEET_PARTS": "3", "PROMOFLOW_DISPATCH_REAP_AFTER": "90s",
           "PROMOFLOW_BROKER_URL": "redis://127.0.0.1:6379/0"}
    settings = load_settings(env)
    assert (settings.fleet_chunk, settings.fleet_parts) == (20000, 3)
    assert settings.dispatch_reap_after == timedelta(seconds=90)
    assert settings.broker_url == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize(("key", "value", "message"), [
    ("PROMOFLOW_FLEET_CHUNK", "many", "fleet_chunk: `many` is not a whole number"),
    ("PROMOFLOW_FLEET_PARTS", "0", "fleet_parts: `0` must be at least 1"),
    ("PROMOFLOW_DISPATCH_REAP_AFTER", "soon", "dispatch_reap_after:"),
])
def test_bad_fleet_settings_are_named(tmp_path: Path, key: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings({"PROMOFLOW_INSTANCE_PATH": str(tmp_path), key: value})


def test_celery_worker_needs_a_broker(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["worker", "--celery"], env={"PROMOFLOW_INSTANCE_PATH": str(tmp_path),
                                                                   "PROMOFLOW_BROKER_URL": ""})
    assert result.exit_code == 1
    assert "needs a broker: set PROMOFLOW_BROKER_URL" in result.output


def test_results_come_back_through_the_broker() -> None:
    assert result_backend("redis://h:6379/0") == "redis://h:6379/0"
    assert result_backend("amqp://guest:guest@h:5672//") == "rpc://"


def test_refresh_hooks_run_in_the_in_process_tick() -> None:
    seen: list[datetime] = []
    refresh_hooks.register("test_snapshots", lambda services, now: seen.append(now) or len(seen))
    try:
        now = datetime(2026, 3, 1, tzinfo=UTC)
        assert refresh_hooks.refresh_tick(object())(now)["test_snapshots"] == 1
        assert seen == [now]
        with pytest.raises(KeyError, match="no refresh hook `nope`"):
            refresh_hooks.run_hook("nope", object(), now)
    finally:
        refresh_hooks.unregister("test_snapshots")
