"""``promoflow backup`` / ``restore`` round trip on both databases, and
migrations that several processes start at once (issue 17)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner
from sqlalchemy import inspect, text

from engine.settings import Settings
from engine.storage.database import make_engine
from engine.storage.migrate import current_revision, downgrade, head_revision
from web import create_app
from web.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _cli(db_url: str, *args: str):
    return CliRunner().invoke(main, ["--database-url", db_url, *args])


def _activity() -> dict:
    return {"name": "春季促销", "channel": "sms", "budget": "12000.00", "start_date": "2026-03-05",
            "end_date": "2026-03-20", "discount_type": "coupon", "coupon_value": "20",
            "materials": [{"item": "海报", "qty": 10, "unit_cost": "3.50"}], "target_store": "all"}


def _fresh_app(db_url: str, tmp_path: Path):
    settings = Settings(instance_path=tmp_path / "verify", database_url=db_url, secret_key="x")
    return create_app({"TESTING": True, "MIGRATE": False,
                       "PASSWORD_HASHER": PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)},
                      settings=settings)


def test_backup_then_restore_round_trip(app, api, tokens, db_url: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PROMOFLOW_INSTANCE_PATH", str(tmp_path / "instance"))
    customer = api("POST", "/customers", json={"phone": "13800000009", "name": "备份客户",
                                               "email": "b@example.com"}).get_json()
    record = api("POST", "/forms/activity_request/records", as_="admin", json=_activity())
    assert record.status_code == 201, record.text
    record_id = record.get_json()["id"]

    dest = tmp_path / "backups" / "promoflow.backup"
    made = _cli(db_url, "backup", str(dest))
    assert made.exit_code == 0, made.output
    assert dest.is_file() and dest.stat().st_size > 0
    assert _cli(db_url, "backup", str(dest)).exit_code == 1  # no silent overwrite
    refused = _cli(db_url, "restore", str(dest))
    assert refused.exit_code == 1 and "not empty" in refused.output and "--force" in refused.output

    # Lose everything: the schema is dropped by the product's own migrations.
    engine = app.extensions["promoflow"].db_engine
    engine.dispose()
    downgrade(engine, "base")
    engine.dispose()
    assert current_revision(engine) is None
    restored = _cli(db_url, "restore", str(dest))
    assert restored.exit_code == 0, restored.output
    assert current_revision(engine) == head_revision()
    engine.dispose()

    fresh = _fresh_app(db_url, tmp_path)
    token = fresh.extensions["promoflow"].accounts.create_token("admin", now=fresh.extensions["promoflow"].now())
    client = fresh.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    got = client.get(f"/api/v1/records/{record_id}", headers=auth)
    assert got.status_code == 200 and got.get_json()["data"]["name"] == "春季促销"
    person = client.get(f"/api/v1/customers/{customer['id']}", headers=auth)
    assert person.status_code == 200 and person.get_json()["name"] == "备份客户"
    assert "activity_request" in fresh.extensions["promoflow"].registry.current().forms
    fresh.extensions["promoflow"].db_engine.dispose()

    # --force replaces a database that holds data; nothing is doubled.
    forced = _cli(db_url, "restore", "--force", str(dest))
    assert forced.exit_code == 0, forced.output
    check = make_engine(db_url)
    try:
        with check.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM records")).scalar_one() == 1
            assert conn.execute(text("SELECT count(*) FROM customers WHERE name = '备份客户'")).scalar_one() == 1
    finally:
        check.dispose()


def test_restore_of_a_missing_file_is_a_clear_error(db_url: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PROMOFLOW_INSTANCE_PATH", str(tmp_path / "instance"))
    result = _cli(db_url, "restore", str(tmp_path / "nope.backup"))
    assert result.exit_code == 1 and "no such backup file" in result.output


@pytest.mark.slow
def test_two_processes_migrating_a_fresh_database_at_once(db_url: str, tmp_path: Path) -> None:
    script = ("import sys; from engine.storage.migrate import upgrade; upgrade(sys.argv[1]); print('ok')")
    procs = [subprocess.Popen([sys.executable, "-c", script, db_url], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin"})
             for _ in range(3)]
    outcomes = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-2000:] for _, err in outcomes]
    engine = make_engine(db_url)
    try:
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
        assert "outbox" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_two_threads_migrating_a_fresh_database_at_once(db_url: str) -> None:
    import threading

    from engine.storage.migrate import upgrade

    errors: list[BaseException] = []

    def run() -> None:
        try:
            upgrade(db_url)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert errors == []
    engine = make_engine(db_url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()
