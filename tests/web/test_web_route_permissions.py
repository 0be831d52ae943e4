"""The route-permission walk (issue 16, item 7): every route × every role →
the expected status, read from ``route_permissions.csv`` next to this file.

The walk goes over ``app.url_map``: a route without a row fails (so a new
route cannot ship without someone deciding who may call it), and so does a
row for a route that no longer exists. API routes are called with a valid
bearer token of a user holding only that role (invalid tokens are throttled
per address), pages with a signed-in session; ``anonymous`` sends neither.
Path parameters are filled with one record, task and customer that exist
(created through the API), and placeholders elsewhere.

A cell is an exact status code or a class such as ``4xx``. When the test
fails on missing rows it prints the rows it observed, ready to be reviewed and
pasted into the table. SQLite only: permissions do not depend on the backend.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from web_support import NOW, PASSWORD, bearer, csrf_from, valid_activity

TABLE = Path(__file__).with_name("route_permissions.csv")
ROLES = ("anonymous", "staff", "marketing", "marketing_manager", "store_manager", "account_manager",
         "finance", "integration", "admin")
#: Requests that end the session run last for each role.
_LAST = {("/logout", "POST")}
_ANY = re.compile(r"<any\(([^)]*)\):(\w+)>")
_PARAM = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def read_table() -> dict[tuple[str, str], dict[str, str]]:
    with TABLE.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    table = {}
    for row in rows:
        key = (row["rule"], row["method"])
        assert key not in table, f"duplicate row {key}"
        assert set(ROLES) <= set(row), f"row {key} lacks a role column"
        table[key] = row
    return table


def routes(app: Flask) -> Iterator[tuple[str, str]]:
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule.rule, method


def concrete(rule: str, values: dict[str, str]) -> str:
    rule = _ANY.sub(lambda m: m.group(1).split(",")[0].strip().strip("'\""), rule)
    return _PARAM.sub(lambda m: values.get(m.group(2), "x"), rule)


def _csv_row(cells: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(cells)
    return out.getvalue()


def matches(expected: str, status: int) -> bool:
    expected = expected.strip()
    if expected.endswith("xx"):
        return str(status)[0] == expected[0]
    return expected == str(status)


@pytest.fixture
def walk_users(app: Flask) -> dict[str, str]:
    """One user per role (``walk_<role>``) and their tokens."""
    accounts = app.extensions["promoflow"].accounts
    tokens = {}
    for role in ROLES[1:]:
        accounts.add_user(f"walk_{role}", roles=[role], password=PASSWORD, now=NOW)
        tokens[role] = accounts.create_token(f"walk_{role}", now=NOW)
    return tokens


def _sign_in(app: Flask, role: str) -> FlaskClient:
    client = app.test_client()
    if role != "anonymous":
        page = client.get("/login")
        done = client.post("/login", data={"username": f"walk_{role}", "password": PASSWORD,
                                           "csrf_token": csrf_from(page.text)})
        assert done.status_code == 302, done.text
    return client


def _fixtures(app: Flask, tokens: dict[str, str]) -> dict[str, str]:
    """Things for path parameters to point at, made through the API."""
    client = app.test_client()
    created = client.post("/api/v1/forms/activity_request/records", json=valid_activity(),
                          headers=bearer(tokens["staff"]))
    assert created.status_code == 201, created.text
    record_id = str(created.get_json()["id"])
    tasks = client.get("/api/v1/tasks", headers=bearer(tokens["admin"])).get_json()
    items = tasks.get("items", tasks) if isinstance(tasks, dict) else tasks
    task_id = str(items[0]["id"]) if items else "1"
    customer = client.post("/api/v1/customers", json={"name": "路人", "phone": "13800138000"},
                           headers=bearer(tokens["admin"]))
    assert customer.status_code in (200, 201), customer.text
    customer_id = str(customer.get_json()["id"])
    rules = sorted(app.extensions["promoflow"].registry.current().rules)
    return {"record_id": record_id, "task_id": task_id, "customer_id": customer_id, "message_id": "1",
            "form_id": "activity_request", "rule_id": rules[0] if rules else "x", "filename": "style.css",
            "campaign_id": "member_winback"}


@SQLITE_ONLY
def test_every_route_has_a_row_and_every_role_gets_its_status(app: Flask, walk_users: dict[str, str]) -> None:
    table = read_table()
    present = set(routes(app))
    missing = sorted(present - set(table))
    stale = sorted(set(table) - present)
    values = _fixtures(app, walk_users)
    clients = {role: _sign_in(app, role) for role in ROLES}
    app.config["WTF_CSRF_ENABLED"] = False  # the walk checks permissions; CSRF has its own tests
    order = sorted(present, key=lambda k: (k in _LAST, k))
    observed: dict[tuple[str, str], dict[str, int]] = {k: {} for k in order}
    for role in ROLES:
        client = clients[role]
        for rule, method in order:
            url = concrete(rule, values)
            headers: dict[str, Any] = {}
            if url.startswith("/api/") and role != "anonymous":
                headers = bearer(walk_users[role])
            kwargs: dict[str, Any] = {"json": {}} if method in ("POST", "PATCH", "PUT") else {}
            response = client.open(url, method=method, headers=headers, **kwargs)
            observed[(rule, method)][role] = response.status_code
    # The observed rows for routes the table lacks, ready to review and paste.
    hint = "\n".join(_csv_row([rule, method, *(str(observed[(rule, method)][r]) for r in ROLES)])
                     for rule, method in missing)
    assert not missing, f"routes without a row in {TABLE.name}:\n{hint}"
    assert not stale, f"rows for routes that no longer exist: {stale}"
    wrong = [f"{method} {rule} as {role}: expected {table[(rule, method)][role]}, got {status}"
             for (rule, method), by_role in observed.items() for role, status in by_role.items()
             if not matches(table[(rule, method)][role], status)]
    assert not wrong, "\n".join(wrong)
    assert all(s < 500 for by_role in observed.values() for s in by_role.values())


def test_the_table_covers_every_role_with_a_status() -> None:
    for key, row in read_table().items():
        for role in ROLES:
            assert re.fullmatch(r"[1-5](\d\d|xx)", row[role].strip()), (key, role, row[role])
