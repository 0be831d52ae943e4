"""Role changes reach the approval directory at once: the web app registers
``WorkflowService.forget_directory`` as a listener of ``AccountService``, so a
user added (with roles, a manager) through the app's AccountService is seen by
the next transition, not only after the directory cache's staleness bound.

The bound is made an hour here, so without the wiring the new approver would
get no task; a change made behind AccountService's back (straight into the
database) shows that the cache really is in effect in these tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from flask import Flask
from sqlalchemy.orm import Session, sessionmaker

from engine.accounts import AccountError, AccountService
from engine.registry import DefinitionRegistry
from engine.settings import Settings
from web import create_app

from .conftest import NOW, activity, add_people

#: The directory cache's bound in these tests (the registry's staleness).
STALENESS = 3600.0


@pytest.fixture
def app(published: sessionmaker[Session], db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Flask:
    # WorkflowService takes its directory cache's bound from the registry.
    monkeypatch.setattr(DefinitionRegistry, "max_staleness", property(lambda self: STALENESS))
    settings = Settings(instance_path=tmp_path, database_url=db_url, secret_key="test-secret",
                        timezone="Asia/Shanghai", locale="zh")
    return create_app({"TESTING": True, "MIGRATE": False, "CLOCK": lambda: NOW,
                       "PASSWORD_HASHER": PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)},
                      settings=settings)


def _submit(app: Flask, **overrides: Any) -> int:
    svc = app.extensions["promoflow"]
    return int(svc.records.create("activity_request", activity(**overrides), actor="staff", now=NOW).id)


def _open_records(app: Flask, user: str) -> set[int]:
    return {t.record_id for t in app.extensions["promoflow"].workflows.tasks_for(user, status="open")}


def test_a_role_given_through_accounts_reaches_the_next_task_at_once(app: Flask,
                                                                      published: sessionmaker[Session]) -> None:
    svc = app.extensions["promoflow"]
    first = _submit(app, name="第一个")  # asks who the marketing managers are: [mm], cached for an hour
    assert _open_records(app, "mm") == {first}

    # Behind AccountService's back: nobody is told, the cached answer stands (the bound is in effect).
    add_people(published, {"mm_db": (("marketing_manager",), None)})
    second = _submit(app, name="第二个")
    assert _open_records(app, "mm") == {first, second}
    assert _open_records(app, "mm_db") == set()

    # Through the app's AccountService: the cache is dropped after the commit.
    svc.accounts.add_user("mm_new", roles=["marketing_manager"], password="pw", now=NOW)
    third = _submit(app, name="第三个")
    assert _open_records(app, "mm_new") == {third}
    assert _open_records(app, "mm_db") == {third}  # the fresh answer has everyone
    assert _open_records(app, "mm") == {first, second, third}


def test_a_new_finance_approver_cosigns_the_next_request(app: Flask) -> None:
    svc = app.extensions["promoflow"]
    wf = svc.workflows
    first = _submit(app, name="第一个", budget="60000.00")
    wf.act(next(t.id for t in wf.tasks_for("mm") if t.record_id == first), actor="mm", action="approve", now=NOW)
    assert _open_records(app, "f1") == {first} and _open_records(app, "f2") == {first}  # finance: [f1, f2] cached

    svc.accounts.add_user("f3", roles=["finance"], password="pw", now=NOW, manager="director")
    second = _submit(app, name="第二个", budget="60000.00")
    wf.act(next(t.id for t in wf.tasks_for("mm") if t.record_id == second), actor="mm", action="approve", now=NOW)
    assert _open_records(app, "f3") == {second}  # 会签: the new finance user must co-sign too
    assert _open_records(app, "f1") == {first, second}


def test_listeners_run_after_the_commit_only_and_cannot_fail_the_change(
        published: sessionmaker[Session]) -> None:
    accounts = AccountService(published, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    seen: list[str | None] = []

    def listener() -> None:  # by_name reads in a session of its own: only committed rows
        found = accounts.by_name("newbie")
        seen.append(None if found is None else found.username)

    def broken() -> None:
        raise RuntimeError("cache is down")

    accounts.on_directory_changed.extend([broken, listener])
    user = accounts.add_user("newbie", roles=["finance"], password=None, now=NOW)
    assert user.username == "newbie" and seen == ["newbie"]  # the broken listener did not stop the next one
    with pytest.raises(AccountError):
        accounts.add_user("newbie", roles=["finance"], password=None, now=NOW)  # taken: nothing changed
    with pytest.raises(AccountError):
        accounts.add_user("ghost", roles=["no_such_role"], password=None, now=NOW)
    assert seen == ["newbie"]
