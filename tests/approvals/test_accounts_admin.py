"""Administering existing users: AccountService.set_roles, set_manager,
deactivate/activate and list_users, on SQLite and PostgreSQL.

The people and definitions are this suite's (tests/approvals/conftest.py) (the shipped activity
flow: marketing_manager review, then finance co-signing above 50000), so the
directory tests can check who the next task really goes to.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine.accounts import AccountError, AccountService
from engine.registry import DefinitionRegistry
from engine.settings import Settings
from engine.storage.models import User
from web import create_app

from .conftest import NOW, activity

FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
#: The directory cache's bound in the app tests: without the listener wiring a
#: changed role holder would not be seen for an hour.
STALENESS = 3600.0


@pytest.fixture
def accounts(published: sessionmaker[Session]) -> AccountService:
    return AccountService(published, hasher=FAST)


@pytest.fixture
def calls(accounts: AccountService) -> list[int]:
    """One entry per listener call."""
    seen: list[int] = []
    accounts.on_directory_changed.append(lambda: seen.append(1))
    return seen


def _manager_id(factory: sessionmaker[Session], username: str) -> int | None:
    with factory() as s:
        return s.scalar(select(User.manager_id).where(User.username == username))


# ------------------------------------------------------------------ roles


def test_set_roles_replaces_the_whole_set(accounts: AccountService, calls: list[int]) -> None:
    info = accounts.set_roles("staff", ["finance", "store_manager"], now=NOW)
    assert info.roles == {"finance", "store_manager"}
    assert accounts.by_name("staff").roles == {"finance", "store_manager"}  # "staff" is gone
    assert calls == [1]

    assert accounts.set_roles("staff", [], now=NOW).roles == frozenset()
    assert accounts.by_name("staff").roles == frozenset()
    assert calls == [1, 1]

    accounts.set_roles("staff", [], now=NOW)  # no change: nobody to tell
    assert calls == [1, 1]


def test_unknown_role_is_refused_and_nothing_changes(accounts: AccountService, calls: list[int]) -> None:
    with pytest.raises(AccountError, match=r"unknown role `financ`; did you mean `finance`\?"):
        accounts.set_roles("staff", ["staff", "financ"], now=NOW)
    assert accounts.by_name("staff").roles == {"staff"}
    assert calls == []
    # the same escape hatch as add_user
    assert accounts.set_roles("staff", ["legacy_role"], now=NOW, check_roles=False).roles == {"legacy_role"}


@pytest.mark.parametrize("call", [
    lambda a: a.set_roles("ghost", ["staff"], now=NOW),
    lambda a: a.set_manager("ghost", "mm"),
    lambda a: a.set_manager("ghost", None),
    lambda a: a.deactivate("ghost"),
    lambda a: a.activate("ghost"),
], ids=["set_roles", "set_manager", "clear_manager", "deactivate", "activate"])
def test_unknown_user_is_refused(accounts: AccountService, calls: list[int], call) -> None:
    with pytest.raises(AccountError, match="unknown user `ghost`"):
        call(accounts)
    assert calls == []


# ---------------------------------------------------------------- manager


def test_set_and_clear_manager(accounts: AccountService, published: sessionmaker[Session],
                               calls: list[int]) -> None:
    info = accounts.set_manager("other", "mm")
    assert info.manager == "mm"
    assert _manager_id(published, "other") == accounts.by_name("mm").id
    assert {u.username: u.manager for u in accounts.list_users()}["other"] == "mm"
    assert accounts.set_manager("other", None).manager is None
    assert _manager_id(published, "other") is None
    assert calls == [1, 1]


def test_bad_managers_are_refused(accounts: AccountService, published: sessionmaker[Session],
                                  calls: list[int]) -> None:
    # PEOPLE: staff -> mm -> director
    with pytest.raises(AccountError, match="unknown manager `nobody`"):
        accounts.set_manager("staff", "nobody")
    with pytest.raises(AccountError, match="cannot be their own manager"):
        accounts.set_manager("staff", "staff")
    with pytest.raises(AccountError, match=r"cycle.*\(staff → mm → director\)"):
        accounts.set_manager("director", "staff")  # director would manage mm who manages staff who ...
    with pytest.raises(AccountError, match="cycle"):
        accounts.set_manager("mm", "staff")  # direct cycle
    assert _manager_id(published, "director") is None
    assert _manager_id(published, "mm") == accounts.by_name("director").id
    assert calls == []
    # moving someone to a different branch is fine
    assert accounts.set_manager("staff", "director").manager == "director"


# ------------------------------------------------------------- deactivate


def test_deactivated_user_cannot_sign_in_nor_use_a_token(accounts: AccountService, calls: list[int]) -> None:
    accounts.add_user("li", roles=["staff"], password="secret-pw", now=NOW)
    token = accounts.create_token("li", now=NOW)
    assert accounts.authenticate("li", "secret-pw").username == "li"
    assert accounts.user_for_token(token, now=NOW).username == "li"  # now cached in this process
    calls.clear()

    info = accounts.deactivate("li")
    assert info.active is False and calls == [1]
    assert accounts.authenticate("li", "secret-pw") is None
    assert accounts.user_for_token(token, now=NOW) is None  # the cached answer was dropped
    assert accounts.by_name("li") is None
    assert {u.username: u.active for u in accounts.list_users()}["li"] is False
    accounts.deactivate("li")  # already inactive: no change, nobody told
    assert calls == [1]

    assert accounts.activate("li").active is True and calls == [1, 1]
    assert accounts.authenticate("li", "secret-pw").username == "li"
    assert accounts.user_for_token(token, now=NOW).roles == {"staff"}  # the token was kept


def test_role_change_reaches_a_cached_token_principal(accounts: AccountService) -> None:
    accounts.add_user("li", roles=["staff"], password=None, now=NOW)
    token = accounts.create_token("li", now=NOW)
    assert accounts.user_for_token(token, now=NOW).roles == {"staff"}
    accounts.set_roles("li", ["admin"], now=NOW)
    assert accounts.user_for_token(token, now=NOW).is_admin


# -------------------------------------------------------------- listeners


def test_listeners_run_after_commit_only(accounts: AccountService) -> None:
    seen: list[tuple[Any, ...]] = []

    def listener() -> None:  # reads in sessions of its own: only committed rows
        row = next(u for u in accounts.list_users() if u.username == "other")
        seen.append((tuple(sorted(row.roles)), row.manager, row.active))

    accounts.on_directory_changed.append(listener)
    accounts.set_roles("other", ["finance"], now=NOW)
    accounts.set_manager("other", "f1")
    accounts.deactivate("other")
    assert seen == [(("finance",), None, True), (("finance",), "f1", True), (("finance",), "f1", False)]

    for refused in (lambda: accounts.set_roles("other", ["nope"], now=NOW),
                    lambda: accounts.set_manager("f1", "other"),
                    lambda: accounts.set_manager("other", "ghost")):
        with pytest.raises(AccountError):
            refused()
    assert len(seen) == 3


# -------------------------------------------------- the approval directory


@pytest.fixture
def app(published: sessionmaker[Session], db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Flask:
    monkeypatch.setattr(DefinitionRegistry, "max_staleness", property(lambda self: STALENESS))
    settings = Settings(instance_path=tmp_path, database_url=db_url, secret_key="test-secret",
                        timezone="Asia/Shanghai", locale="zh")
    return create_app({"TESTING": True, "MIGRATE": False, "CLOCK": lambda: NOW, "PASSWORD_HASHER": FAST},
                      settings=settings)


def _submit(app: Flask, **overrides: Any) -> int:
    svc = app.extensions["promoflow"]
    return int(svc.records.create("activity_request", activity(**overrides), actor="staff", now=NOW).id)


def _open_records(app: Flask, user: str) -> set[int]:
    return {t.record_id for t in app.extensions["promoflow"].workflows.tasks_for(user, status="open")}


def test_replaced_roles_reach_the_next_task_at_once(app: Flask) -> None:
    svc = app.extensions["promoflow"]
    first = _submit(app, name="第一个")  # marketing managers: [mm], cached for an hour
    assert _open_records(app, "mm") == {first}

    svc.accounts.set_roles("other", ["marketing_manager"], now=NOW)
    svc.accounts.set_roles("mm", ["staff"], now=NOW)
    second = _submit(app, name="第二个")
    assert _open_records(app, "other") == {second}
    assert _open_records(app, "mm") == {first}  # no longer a marketing manager: nothing new


def test_a_deactivated_approver_gets_no_new_task(app: Flask) -> None:
    svc = app.extensions["promoflow"]
    wf = svc.workflows

    def to_finance(name: str) -> int:
        rid = _submit(app, name=name, budget="60000.00")
        wf.act(next(t.id for t in wf.tasks_for("mm") if t.record_id == rid), actor="mm", action="approve", now=NOW)
        return rid

    first = to_finance("第一个")
    assert _open_records(app, "f1") == {first} and _open_records(app, "f2") == {first}  # finance cached

    svc.accounts.deactivate("f2")
    second = to_finance("第二个")
    assert _open_records(app, "f1") == {first, second}
    assert _open_records(app, "f2") == {first}  # keeps the task it had, gets no new one

    svc.accounts.activate("f2")
    third = to_finance("第三个")
    assert _open_records(app, "f2") == {first, third}
