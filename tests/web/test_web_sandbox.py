"""The demo's sandbox (issue 12, part 6) and the misconfigured-connector
warnings, through the product's doors, on both databases.

* ``connector_sandbox`` on: an approval notice (WeCom, whose secret is not
  set) goes ``sent`` at the first dispatch tick and shows in the ``/sandbox``
  inbox for marketing and admins;
* off: the same notice waits, its row says why, ``/messages`` shows a banner
  naming the connector and the environment variable (zh/en), and ``promoflow
  worker`` prints a line about it at start.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import select
from web_support import NOW, PASSWORD, USERS, bearer, valid_activity

from engine.library import library_paths
from engine.publishing import publish_paths
from engine.settings import Settings
from engine.storage.models import Event, OutboxMessage
from web import create_app
from web.cli import main
from web.worker import tick_functions

SECRET_VARS = ("WECOM_CORP_SECRET", "WECOM_CONTACT_SECRET", "SMTP_PASSWORD", "ALIYUN_ACCESS_KEY_ID",
               "ALIYUN_ACCESS_KEY_SECRET")


@pytest.fixture(autouse=True)
def _no_provider_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRET_VARS:
        monkeypatch.delenv(name, raising=False)


def _make_app(db_url: str, tmp_path: Path, clock, *, sandbox: bool) -> Flask:
    settings = Settings(instance_path=tmp_path, database_url=db_url, secret_key="test-secret",
                        timezone="Asia/Shanghai", locale="zh", connector_sandbox=sandbox)
    app = create_app({"TESTING": True, "MIGRATE": False, "CLOCK": clock,
                      "PASSWORD_HASHER": PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)},
                     settings=settings)
    services = app.extensions["promoflow"]
    publish_paths(services.session_factory, library_paths(), now=NOW, by="test")
    for name, roles in USERS.items():
        services.accounts.add_user(name, roles=roles, password=PASSWORD, now=NOW)
    return app


@pytest.fixture
def sandbox_app(db_engine, db_url: str, tmp_path: Path, clock) -> Flask:
    return _make_app(db_url, tmp_path, clock, sandbox=True)


def _submit_activity(app: Flask) -> None:
    token = app.extensions["promoflow"].accounts.create_token("staff", now=NOW)
    response = app.test_client().post("/api/v1/forms/activity_request/records", json=valid_activity(),
                                      headers=bearer(token))
    assert response.status_code == 201, response.text


def _outbox(app: Flask) -> list[OutboxMessage]:
    with app.extensions["promoflow"].session_factory() as s:
        return list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def _dispatch(app: Flask) -> None:
    dict(tick_functions(app.extensions["promoflow"]))["dispatch"](NOW)


def _login(app: Flask, name: str, lang: str | None = None):
    from web_support import csrf_from

    client = app.test_client()
    page = client.get("/login" + (f"?lang={lang}" if lang else ""))
    response = client.post("/login", data={"username": name, "password": PASSWORD,
                                           "csrf_token": csrf_from(page.text)})
    assert response.status_code == 302
    return client


def test_with_the_sandbox_approval_notices_go_sent_and_show_in_the_sandbox_inbox(sandbox_app: Flask) -> None:
    _submit_activity(sandbox_app)
    queued = [m for m in _outbox(sandbox_app) if m.connector == "wecom_app"]
    assert queued and {m.status for m in queued} == {"queued"}
    _dispatch(sandbox_app)
    delivered = [m for m in _outbox(sandbox_app) if m.connector == "wecom_app"]
    assert {m.status for m in delivered} == {"sent"} and all(m.attempts == 1 for m in delivered)
    assert all(m.provider_id.startswith("sandbox-") for m in delivered)
    with sandbox_app.extensions["promoflow"].session_factory() as s:
        assert s.scalars(select(Event).where(Event.name == "connector.misconfigured")).all() == []

    page = _login(sandbox_app, "manager").get("/sandbox")
    assert page.status_code == 200
    for m in delivered:
        assert f'data-message="{m.id}"' in page.text
    assert "企业微信" in page.text and 'class="nav-sandbox"' in page.text
    only_sms = _login(sandbox_app, "admin").get("/sandbox?channel=sms")
    assert only_sms.status_code == 200 and f'data-message="{delivered[0].id}"' not in only_sms.text
    english = _login(sandbox_app, "manager", lang="en").get("/sandbox")
    assert "Sandbox inbox" in english.text
    assert _login(sandbox_app, "staff").get("/sandbox").status_code == 403
    messages = _login(sandbox_app, "manager").get("/messages")
    assert "connector-problem" not in messages.text


def test_a_connector_without_its_secret_is_named_on_messages_and_its_rows_say_why(
        app: Flask, login, monkeypatch: pytest.MonkeyPatch) -> None:
    _submit_activity(app)
    _dispatch(app)
    waiting = [m for m in _outbox(app) if m.connector == "wecom_app"]
    assert waiting and {(m.status, m.attempts) for m in waiting} == {("queued", 0)}
    assert all("WECOM_CORP_SECRET" in (m.last_error or "") for m in waiting)

    page = login("manager").get("/messages")
    assert page.status_code == 200
    assert 'data-connector="wecom_app"' in page.text
    banner = page.text.split('data-connector="wecom_app"', 1)[1].split("</div>", 1)[0]
    assert "WECOM_CORP_SECRET" in banner and f"{len(waiting)} 条消息正在排队等待" in banner
    assert "请在运行 promoflow worker 的环境中设置该环境变量" in banner
    english = login("manager", lang="en").get("/messages").text
    banner_en = english.split('data-connector="wecom_app"', 1)[1].split("</div>", 1)[0]
    assert "cannot deliver" in banner_en and "Set the environment variable" in banner_en

    monkeypatch.setenv("WECOM_CORP_SECRET", "s3cret")
    fixed = login("manager").get("/messages").text
    assert 'data-connector="wecom_app"' not in fixed
    assert 'data-connector="email_smtp"' in fixed  # still no SMTP_PASSWORD
    assert "s3cret" not in fixed


def test_the_worker_says_at_start_which_connectors_cannot_deliver(app: Flask, db_url: str, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _submit_activity(app)
    waiting = len([m for m in _outbox(app) if m.connector == "wecom_app" and m.status == "queued"])
    assert waiting > 0
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROMOFLOW_INSTANCE_PATH", str(tmp_path / "worker-instance"))
    result = CliRunner().invoke(main, ["--database-url", db_url, "worker", "--once"])
    lines = [line for line in result.output.splitlines() if line.startswith("Connector wecom_app ")]
    assert len(lines) == 1, result.output
    assert "WECOM_CORP_SECRET" in lines[0] and f". {waiting} message(s) wait for it" in lines[0]

    monkeypatch.setenv("PROMOFLOW_CONNECTOR_SANDBOX", "true")
    sandboxed = CliRunner().invoke(main, ["--database-url", db_url, "worker", "--once"])
    assert "cannot deliver" not in sandboxed.output
    assert "Connector sandbox is on" in sandboxed.output
