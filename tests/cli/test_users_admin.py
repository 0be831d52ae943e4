"""``promoflow users roles | manager | deactivate | activate | list`` end to end,
on SQLite and PostgreSQL: the change is checked in the database through a
separate AccountService, errors are click errors (exit code 1, no traceback)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner, Result

from engine.accounts import AccountService
from engine.storage.database import make_engine, make_session_factory
from web.cli import main

ROLES = """- {kind: role, id: staff, title: 员工}
- {kind: role, id: finance, title: 财务}
"""


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROMOFLOW_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.delenv("PROMOFLOW_DATABASE_URL", raising=False)
    return CliRunner()


@pytest.fixture
def cli(runner: CliRunner, db_url: str, tmp_path: Path):
    """Invoke ``promoflow --database-url <db> ARGS``; the roles are published and
    users li (staff) and wang (finance) exist."""

    def invoke(*args: str) -> Result:
        return runner.invoke(main, ["--database-url", db_url, *args])

    folder = tmp_path / "defs"
    folder.mkdir()
    (folder / "roles.yaml").write_text(ROLES, encoding="utf-8")
    assert invoke("publish", str(folder)).exit_code == 0
    for name, role in (("li", "staff"), ("wang", "finance")):
        added = invoke("users", "add", name, "--role", role, "--password", "secret-pw")
        assert added.exit_code == 0, added.output
    return invoke


@pytest.fixture
def accounts(cli, db_url: str) -> Iterator[AccountService]:
    """A service of its own on the same database, to check what the CLI did."""
    engine = make_engine(db_url)
    try:
        yield AccountService(make_session_factory(engine),
                             hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    finally:
        engine.dispose()


def _refused(result: Result, message: str) -> None:
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert isinstance(result.exception, SystemExit)  # a click error, not a crash
    assert "Traceback" not in result.output


def test_roles_replaces_the_set_and_prints_it(cli, accounts: AccountService) -> None:
    result = cli("users", "roles", "li", "--role", "finance", "--role", "staff")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "li roles: finance, staff"
    assert accounts.by_name("li").roles == {"finance", "staff"}

    result = cli("users", "roles", "li", "--role", "finance")
    assert result.output.strip() == "li roles: finance"
    assert accounts.by_name("li").roles == {"finance"}


def test_roles_refuses_an_unknown_role_or_user(cli, accounts: AccountService) -> None:
    _refused(cli("users", "roles", "li", "--role", "financ"), "unknown role `financ`; did you mean `finance`?")
    assert accounts.by_name("li").roles == {"staff"}
    _refused(cli("users", "roles", "ghost", "--role", "staff"), "unknown user `ghost`")


def test_manager_set_cleared_and_cycle_refused(cli, accounts: AccountService) -> None:
    result = cli("users", "manager", "li", "wang")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "li manager: wang"

    _refused(cli("users", "manager", "wang", "li"), "cycle")
    _refused(cli("users", "manager", "li", "li"), "cannot be their own manager")
    _refused(cli("users", "manager", "li", "ghost"), "unknown manager `ghost`")
    assert {u.username: u.manager for u in accounts.list_users()} == {"li": "wang", "wang": None}

    both = cli("users", "manager", "li", "wang", "--none")
    assert both.exit_code == 2 and "either MANAGER or --none" in both.output
    assert cli("users", "manager", "li").exit_code == 2

    cleared = cli("users", "manager", "li", "--none")
    assert cleared.exit_code == 0 and cleared.output.strip() == "li manager: -"
    assert {u.username: u.manager for u in accounts.list_users()}["li"] is None


def test_deactivate_and_activate(cli, accounts: AccountService) -> None:
    token = accounts.create_token("li", now=datetime.now(UTC))
    result = cli("users", "deactivate", "li")
    assert result.exit_code == 0, result.output
    assert "li is inactive" in result.output
    assert accounts.authenticate("li", "secret-pw") is None
    assert accounts.user_for_token(token, now=datetime.now(UTC)) is None

    listed = cli("users", "list")
    assert listed.exit_code == 0
    rows = [line.split() for line in listed.output.splitlines()]
    assert rows == [["NAME", "ROLES", "MANAGER", "ACTIVE"], ["li", "staff", "-", "no"], ["wang", "finance", "-", "yes"]]

    result = cli("users", "activate", "li")
    assert result.exit_code == 0 and "li is active" in result.output
    assert accounts.authenticate("li", "secret-pw").username == "li"
    assert accounts.user_for_token(token, now=datetime.now(UTC)).username == "li"

    _refused(cli("users", "deactivate", "ghost"), "unknown user `ghost`")
    _refused(cli("users", "activate", "ghost"), "unknown user `ghost`")


def test_store_assigns_and_clears_a_users_store(cli, db_url: str) -> None:
    """``promoflow users store NAME STORE``: the store whose customers' follow-up
    tasks for NAME's roles reach NAME (engine/rule_tasks.py)."""
    from sqlalchemy import select

    from engine.storage.models import User

    def store_of(name: str) -> str | None:
        engine = make_engine(db_url)
        try:
            with engine.connect() as conn:
                return conn.execute(select(User.store).where(User.username == name)).scalar_one()
        finally:
            engine.dispose()

    result = cli("users", "store", "li", "SH001")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "li store: SH001" and store_of("li") == "SH001"
    result = cli("users", "store", "li", "--none")
    assert result.output.strip() == "li store: -" and store_of("li") is None
    _refused(cli("users", "store", "ghost", "SH001"), "unknown user `ghost`")
    assert cli("users", "store", "li").exit_code == 2  # neither STORE nor --none
