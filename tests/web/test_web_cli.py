"""CLI: users add (roles checked, did-you-mean, password prompt), tokens create
(printed once, only the hash stored), demo users and data; on both databases."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from engine.accounts import AccountService, hash_token
from engine.library import library_paths
from engine.storage.database import make_engine, make_session_factory
from engine.storage.models import ApiToken, User
from web.cli import main


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROMOFLOW_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.delenv("PROMOFLOW_DATABASE_URL", raising=False)
    return CliRunner()


def _published(runner: CliRunner, url: str) -> None:
    result = runner.invoke(main, ["--database-url", url, "publish", *map(str, library_paths())])
    assert result.exit_code == 0, result.output


def test_users_add_and_tokens_create(runner: CliRunner, db_url: str) -> None:
    _published(runner, db_url)
    added = runner.invoke(main, ["--database-url", db_url, "users", "add", "lin", "--role", "staff",
                                 "--role", "marketing", "--password", "pw-123-kept", "--display-name", "林"])
    assert added.exit_code == 0, added.output
    assert "Created user lin" in added.output and "marketing, staff" in added.output
    boss = runner.invoke(main, ["--database-url", db_url, "users", "add", "boss", "--role", "admin",
                                "--manager", "lin"], input="s3cret-Ok9\ns3cret-Ok9\n")
    assert boss.exit_code == 0, boss.output
    engine = make_engine(db_url)
    try:
        accounts = AccountService(make_session_factory(engine))
        assert accounts.authenticate("boss", "s3cret-Ok9") is not None
        assert accounts.authenticate("lin", "pw-123-kept").roles == frozenset({"staff", "marketing"})
        created = runner.invoke(main, ["--database-url", db_url, "tokens", "create", "lin", "--name", "ci"])
        assert created.exit_code == 0, created.output
        token = created.stdout.strip()
        assert token.startswith("pf_") and len(token) > 40
        with make_session_factory(engine)() as session:
            stored = session.scalars(select(ApiToken)).one()
            assert stored.token_hash == hash_token(token) and token not in stored.token_hash
            assert stored.name == "ci"
            password_hash = session.scalars(select(User.password_hash).where(User.username == "lin")).one()
            assert password_hash.startswith("$argon2id$") and "pw-123-kept" not in password_hash
        assert accounts.user_for_token(token, now=accounts_now()).username == "lin"
    finally:
        engine.dispose()


def accounts_now():
    from datetime import datetime

    return datetime(2025, 3, 1, tzinfo=UTC)


def test_users_add_unknown_role_did_you_mean(runner: CliRunner, db_url: str) -> None:
    _published(runner, db_url)
    result = runner.invoke(main, ["--database-url", db_url, "users", "add", "x", "--role", "staf",
                                  "--role", "admn", "--password", "p-long-enough"])
    assert result.exit_code == 1
    assert "unknown role `staf`; did you mean `staff`?" in result.output
    assert "unknown role `admn`; did you mean `admin`?" in result.output
    assert "known roles: account_manager, admin, finance" in result.output
    duplicate = runner.invoke(main, ["--database-url", db_url, "users", "add", "y", "--password", "p-long-enough"])
    assert duplicate.exit_code == 0
    again = runner.invoke(main, ["--database-url", db_url, "users", "add", "y", "--password", "p-long-enough"])
    assert again.exit_code == 1 and "user `y` already exists" in again.output


def test_tokens_for_unknown_user(runner: CliRunner, db_url: str) -> None:
    result = runner.invoke(main, ["--database-url", db_url, "tokens", "create", "ghost"])
    assert result.exit_code == 1 and "unknown user `ghost`" in result.output


def test_demo_creates_users_and_data_without_serving(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["demo", "--instance", "demo", "--customers", "200", "--days", "0"])
    assert result.exit_code == 0, result.output
    assert "staff                / staff123" in result.output
    assert "admin                / admin123" in result.output
    assert "Demo data: 200 customers" in result.output
    assert "--serve" in result.output  # not a terminal: it says how to start the app instead
    engine = make_engine(f"sqlite:///{tmp_path / 'demo' / 'promoflow.sqlite'}")
    try:
        accounts = AccountService(make_session_factory(engine))
        assert accounts.authenticate("staff", "staff123").roles == frozenset({"staff"})
        assert accounts.authenticate("admin", "admin123").is_admin
    finally:
        engine.dispose()
