"""``promoflow users add | password | reset-password`` and the password policy,
end to end on SQLite and PostgreSQL: refusals are click errors with the
reason, passwords are read hidden from the prompt, a reset prints a one-time
password that must be changed at the next sign-in."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner, Result
from sqlalchemy import select

from engine.accounts import AccountService, PasswordRejected
from engine.passwords import PasswordPolicy, common_passwords
from engine.storage.database import make_engine, make_session_factory
from engine.storage.models import AuditEntry
from web.cli import main

ROLES = "- {kind: role, id: staff, title: 员工}\n"
NOW = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROMOFLOW_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.delenv("PROMOFLOW_DATABASE_URL", raising=False)
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:  # noqa: A002 - click's name
        return runner.invoke(main, ["--database-url", db_url, *args], input=input)

    (tmp_path / "defs").mkdir()
    (tmp_path / "defs" / "roles.yaml").write_text(ROLES, encoding="utf-8")
    assert invoke("publish", str(tmp_path / "defs")).exit_code == 0
    return invoke


@pytest.fixture
def accounts(cli, db_url: str) -> Iterator[AccountService]:
    engine = make_engine(db_url)
    try:
        yield AccountService(make_session_factory(engine),
                             hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    finally:
        engine.dispose()


def _refused(result: Result, message: str) -> None:
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output


def test_users_add_applies_the_policy(cli, accounts: AccountService) -> None:
    _refused(cli("users", "add", "li", "--role", "staff", "--password", "x"),
             "the password must have at least 8 characters (it has 1)")
    _refused(cli("users", "add", "li", "--role", "staff", "--password", "qwerty123"),
             "the password is on the list of common passwords")
    _refused(cli("users", "add", "zhangwei", "--role", "staff", "--password", "Zhangwei-2025"),
             "the password must not contain the user name")
    assert accounts.list_users() == []
    added = cli("users", "add", "li", "--role", "staff", "--password", "Tea-Garden-19")
    assert added.exit_code == 0, added.output


def test_users_password_prompts_hidden_and_ends_sessions(cli, accounts: AccountService) -> None:
    assert cli("users", "add", "li", "--role", "staff", "--password", "Tea-Garden-19").exit_code == 0
    before = accounts.login("li", "Tea-Garden-19", address=None, now=NOW)
    assert before.principal is not None
    result = cli("users", "password", "li", input="River-Stone-88\nRiver-Stone-88\n")
    assert result.exit_code == 0, result.output
    assert "River-Stone-88" not in result.output  # hidden input is not echoed
    assert "Password of li changed" in result.output
    assert accounts.authenticate("li", "Tea-Garden-19") is None
    assert accounts.authenticate("li", "River-Stone-88") is not None
    assert accounts.session_user(before.principal.id, before.session_version) is None
    _refused(cli("users", "password", "li", input="short\nshort\n"), "at least 8 characters")
    _refused(cli("users", "password", "ghost"), "unknown user `ghost`")
    mismatch = cli("users", "password", "li", input="River-Stone-99\nRiver-Stone-98\n")
    assert mismatch.exit_code != 0 and accounts.authenticate("li", "River-Stone-88") is not None


def test_reset_password_prints_a_one_time_password(cli, accounts: AccountService) -> None:
    assert cli("users", "add", "li", "--role", "staff", "--password", "Tea-Garden-19").exit_code == 0
    result = cli("users", "reset-password", "li")
    assert result.exit_code == 0, result.output
    one_time = result.stdout.strip()
    assert len(one_time) >= 16 and "must choose a new password" in result.stderr
    signed_in = accounts.login("li", one_time, address="10.1.1.1", now=NOW)
    assert signed_in.principal is not None and signed_in.must_change_password
    assert accounts.login("li", "Tea-Garden-19", address="10.1.1.1", now=NOW).principal is None
    version = accounts.change_password("li", one_time, "Moon-Cake-2025", now=NOW)
    assert version > signed_in.session_version
    after = accounts.login("li", "Moon-Cake-2025", address=None, now=NOW)
    assert after.principal is not None and not after.must_change_password
    _refused(cli("users", "reset-password", "ghost"), "unknown user `ghost`")
    with accounts._sessions() as session:  # read the audit trail (written by the product)
        actions = list(session.scalars(select(AuditEntry.action).where(AuditEntry.entity_type == "user")
                                       .order_by(AuditEntry.id)))
    assert actions.count("password_reset") == 1 and "password_changed" in actions
    assert "login" in actions and "login_failed" in actions


def test_policy_rules() -> None:
    policy = PasswordPolicy()
    assert policy.problems("Tea-Garden-19", "li") == []
    assert [p.code for p in policy.problems("a", "li")] == ["too_short"]
    assert [p.code for p in policy.problems("PASSWORD1", "li")] == ["common"]  # case does not help
    assert [p.code for p in policy.problems("li-li-li-li", "li")] == []  # a 2-letter name is too short to match
    assert [p.code for p in policy.problems("wang.admin", "admin")] == ["contains_username"]
    assert [p.code for p in policy.problems("x" * 1025, "li")] == ["too_long"]
    assert [p.code for p in PasswordPolicy(min_length=12).problems("Tea-Garden", "li")] == ["too_short"]
    assert 3000 <= len(common_passwords()) <= 10000
    assert {"123456789", "password", "qwertyuiop", "woaini1314", "5201314"} <= common_passwords()


def test_change_password_through_the_service_checks_policy(accounts: AccountService) -> None:
    accounts.add_user("li", roles=[], password="Tea-Garden-19", now=NOW, check_roles=False)
    with pytest.raises(PasswordRejected) as refused:
        accounts.change_password("li", "Tea-Garden-19", "12345678", now=NOW)
    assert [p.code for p in refused.value.problems] == ["common"]
