"""The audit trail (issue 16, item 5): sign-ins and failed sign-ins, exports
(records CSV, customer export), account and role changes and publishes are
logged; admins read them on ``/audit`` and through ``GET /api/v1/audit`` with
the same filters (actor, action, target, a business-time date range), paged in
SQL; zh/en labels; nothing changes the log. Both databases."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from engine.storage.models import AuditEntry
from web.cli import main
from web.i18n_rights import AUDIT_ACTIONS

from .conftest import NOW, PASSWORD

ROOT = Path(__file__).resolve().parents[2]


def _sf(app):
    return app.extensions["promoflow"].session_factory


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)
    assert match
    return match.group(1)


def _login(app, name: str, password: str = PASSWORD, lang: str | None = None) -> Any:
    client = app.test_client()
    page = client.get("/login" + (f"?lang={lang}" if lang else ""))
    client.post("/login", data={"username": name, "password": password, "csrf_token": _csrf(page.text)})
    return client


def _validator(doc: dict, name: str) -> Draft202012Validator:
    schema = {"$defs": doc["components"]["schemas"], "$ref": f"#/$defs/{name}"}
    return Draft202012Validator(json.loads(json.dumps(schema).replace("#/components/schemas/", "#/$defs/")))


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str, app):
    """The CLI on the app's database."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROMOFLOW_INSTANCE_PATH", str(tmp_path / "instance"))
    runner = CliRunner()

    def do(*args: str) -> Any:
        result = runner.invoke(main, ["--database-url", db_url, *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result

    return do


def _actions(app, **where: str) -> list[tuple[str | None, str, str | None]]:
    with _sf(app)() as s:
        stmt = select(AuditEntry.actor, AuditEntry.action, AuditEntry.entity_id).order_by(AuditEntry.id)
        for key, value in where.items():
            stmt = stmt.where(getattr(AuditEntry, key) == value)
        return [tuple(r) for r in s.execute(stmt)]  # type: ignore[misc]


def test_what_is_logged(app, api, cli) -> None:
    _login(app, "mkt", "wrong-password")
    _login(app, "mkt")
    assert ("mkt", "login_failed") in [(a, b) for a, b, _ in _actions(app)]
    assert ("mkt", "login") in [(a, b) for a, b, _ in _actions(app)]
    # publishes (the fixture published the library as "test")
    assert ("test", "definitions.published") in [(a, b) for a, b, _ in _actions(app)]
    # account and role changes, tokens
    cli("users", "add", "carol", "--role", "staff", "--password", "Long-enough-pass-42")
    cli("users", "roles", "carol", "--role", "marketing")
    cli("users", "deactivate", "carol")
    cli("users", "activate", "carol")
    cli("tokens", "create", "carol")
    cli("tokens", "revoke", "carol")
    carol = [b for a, b, _ in _actions(app, entity_type="user") if a == "cli"]
    assert carol == ["user.created", "user.roles_changed", "user.deactivated", "user.activated", "token.created",
                     "token.revoked"]
    with _sf(app)() as s:
        diff = s.execute(select(AuditEntry.diff).where(AuditEntry.action == "user.roles_changed")).scalar_one()
    assert diff == {"username": "carol", "from": ["staff"], "to": ["marketing"]}
    cli("users", "roles", "carol", "--role", "marketing")  # no change: nothing logged
    assert [b for _, b, _ in _actions(app)].count("user.roles_changed") == 1
    # exports: the records CSV and a customer's data
    admin = _login(app, "admin")
    assert admin.get("/forms/activity_request/records.csv").status_code == 200
    assert ("admin", "records.exported", "activity_request") in _actions(app)
    cid = api("POST", "/customers", json={"phone": "13900001111"}).get_json()["id"]
    assert api("GET", f"/customers/{cid}/export", as_="admin").status_code == 200
    assert ("admin", "customer.exported", str(cid)) in _actions(app)


def test_every_audited_action_has_zh_and_en_labels() -> None:
    from web.i18n import CATALOG

    written = set()
    for path in [*ROOT.joinpath("engine").rglob("*.py"), *ROOT.joinpath("web").rglob("*.py")]:
        written |= set(re.findall(r'action="([a-z_]+(?:\.[a-z_]+)*)", entity_type=', path.read_text("utf-8")))
        written |= set(re.findall(r'_Audit\("([a-z_.]+)"', path.read_text("utf-8")))
    assert {"login", "login_failed", "customer.erased", "user.roles_changed"} <= written
    from engine.approvals import machine  # the workflow's audit action is named after the event class

    written |= {f"workflow.{cls.__name__.lower()}" for cls in (machine.Start, machine.Act, machine.Resubmit,
                                                               machine.Withdraw, machine.Tick)}
    assert written - set(AUDIT_ACTIONS) == set()
    for action in AUDIT_ACTIONS:
        zh, en = CATALOG["audit_action_" + action.replace(".", "_")]
        assert zh and en and zh != en


def test_api_filters_pages_and_matches_the_document(app, api, clock) -> None:
    doc = app.test_client().get("/api/v1/openapi.json").get_json()
    assert {"/audit", "/customers/{customer_id}/export", "/customers/{customer_id}/erase"} <= set(doc["paths"])
    for name in ("AuditEntry", "AuditPage", "CustomerErased"):
        Draft202012Validator.check_schema(doc["components"]["schemas"][name])
    _login(app, "mkt", "nope-1")
    clock.now = NOW + timedelta(days=1)
    _login(app, "mkt", "nope-2")
    _login(app, "staff", "nope-3")
    assert api("GET", "/audit", as_="mkt").status_code == 403
    assert api("GET", "/audit", as_="pos").status_code == 403
    everything = api("GET", "/audit", as_="admin")
    assert everything.status_code == 200
    _validator(doc, "AuditPage").validate(everything.get_json())
    failed = api("GET", "/audit?action=login_failed", as_="admin").get_json()
    assert failed["total"] == 3 and [i["actor"] for i in failed["items"]] == ["staff", "mkt", "mkt"]  # newest first
    assert api("GET", "/audit?action=login_failed&actor=mkt", as_="admin").get_json()["total"] == 2
    # the business day: NOW is 2026-03-02 10:00 in Shanghai, a day later is 03-03
    first_day = api("GET", "/audit?action=login_failed&from=2026-03-02&to=2026-03-02", as_="admin").get_json()
    assert [i["at_local"] for i in first_day["items"]] == ["2026-03-02 10:00"]
    assert api("GET", "/audit?action=login_failed&from=2026-03-03", as_="admin").get_json()["total"] == 2
    paged = api("GET", "/audit?action=login_failed&per_page=2&page=2", as_="admin").get_json()
    assert (paged["total"], paged["pages"], [i["actor"] for i in paged["items"]]) == (3, 2, ["mkt"])
    assert api("GET", "/audit?target=user", as_="admin").get_json()["total"] >= 3
    for bad, field in (("from=2026-13-01", "from"), ("to=9999-12-31", "to"), ("page=0", "page"),
                       (f"page={2**64}", "page"), ("per_page=100000", "per_page"),
                       ("from=2026-03-03&to=2026-03-01", "to")):
        answer = api("GET", f"/audit?{bad}", as_="admin")
        assert answer.status_code == 422, bad
        _validator(doc, "ValidationErrors").validate(answer.get_json())
        assert [e["field"] for e in answer.get_json()["errors"]] == [field]
    # append-only: no route changes it, and the database refuses to
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert api(method, "/audit", as_="admin").status_code == 405
    with _sf(app)() as s, pytest.raises(DBAPIError):
        s.execute(text("DELETE FROM audit_log"))
        s.commit()


@pytest.mark.parametrize(("lang", "label", "badge"), [("zh", "登录失败", "审计日志"), ("en", "Sign-in failed", "Audit log")])
def test_page_for_admins_with_filters_and_labels(app, lang: str, label: str, badge: str) -> None:
    _login(app, "mkt", "wrong-pw")
    admin = _login(app, "admin", lang=lang)
    page = admin.get(f"/audit?action=login_failed&lang={lang}")
    assert page.status_code == 200 and badge in page.text
    rows = re.findall(r'<tr class="audit-row" data-action="([^"]+)">', page.text)
    assert rows == ["login_failed"]
    assert label in page.text and "2026-03-02 10:00" in page.text and "Asia/Shanghai" in page.text
    assert 'class="nav-audit"' in admin.get("/audit").text
    bad = admin.get(f"/audit?from=not-a-date&lang={lang}")
    assert bad.status_code == 200 and ("筛选条件“开始日期”无效" if lang == "zh" else "The filter “From date” is not valid") \
        in bad.text
    mkt = _login(app, "mkt")
    assert mkt.get("/audit").status_code == 403
    assert 'class="nav-audit"' not in mkt.get("/customers").text
