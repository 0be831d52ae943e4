"""Hostile input gets a 4xx with a clear message, never a 500 (issue 16, item 6)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from web_support import bearer, csrf_from, valid_activity, valid_activity_form

from web.converters import MAX_BIG_ID, MAX_ID

_INT = re.compile(r"<int:[^>]+>")
_BIG = re.compile(r"<bigint:[^>]+>")
_OTHER = re.compile(r"<[^>]+>")


def _numeric_rules(app: Flask) -> list[tuple[str, str]]:
    """(url with every id set one past its column's range, method) for every numeric route."""
    found = []
    for rule in app.url_map.iter_rules():
        if "<int:" not in rule.rule and "<bigint:" not in rule.rule:
            continue
        url = _OTHER.sub("x", _BIG.sub(str(MAX_BIG_ID + 1), _INT.sub(str(MAX_ID + 1), rule.rule)))
        found.extend((url, m) for m in sorted(rule.methods - {"HEAD", "OPTIONS"}))
    return found


def test_ids_beyond_64_bits_are_not_found_on_every_numeric_route(app: Flask, tokens: dict[str, str],
                                                                  login) -> None:
    probes = _numeric_rules(app)
    assert len(probes) >= 15  # the walk really covers the numeric routes
    api = app.test_client()
    page = login("admin")
    for url, method in probes:
        client, headers = (api, bearer(tokens["admin"])) if url.startswith("/api/") else (page, {})
        response = client.open(url, method=method, headers=headers, json={})
        assert response.status_code == 404, (method, url, response.status_code)
        if url.startswith("/api/"):
            assert response.get_json()["error"]["code"] == "not_found"


def test_largest_id_still_routes(app: Flask, tokens: dict[str, str]) -> None:
    """The largest key of each column reaches the view, which finds nothing (404)."""
    for url in (f"/api/v1/records/{MAX_ID}", f"/api/v1/messages/{MAX_BIG_ID}", f"/api/v1/customers/{MAX_ID}"):
        response = app.test_client().get(url, headers=bearer(tokens["admin"]))
        assert response.status_code == 404, url
        assert response.get_json()["error"]["code"] == "not_found"
    assert app.test_client().get(f"/api/v1/records/{MAX_ID + 1}",
                                 headers=bearer(tokens["admin"])).get_json()["error"]["code"] == "not_found"


# ------------------------------------------------------------------ uploads

FILL = "/forms/activity_request/new"


def _upload(client, **overrides: Any) -> Any:
    page = client.get(FILL)
    data = {**valid_activity_form(), "csrf_token": csrf_from(page.text), **overrides}
    return client.post(FILL, data=data, content_type="multipart/form-data")


def _stored_files(app: Flask) -> list[Path]:
    folder = Path(app.config["UPLOAD_FOLDER"])
    return sorted(folder.iterdir()) if folder.exists() else []


def test_a_refused_submission_leaves_no_file_on_disk(app: Flask, login) -> None:
    client = login("staff")
    for _ in range(3):  # a file that fits, in a submission that is refused (end before start)
        refused = _upload(client, end_date="2025-03-01",
                          attachments=(io.BytesIO(b"%PDF-1.4 " + b"x" * 1_000_000), "plan.pdf", "application/pdf"))
        assert refused.status_code == 422
    assert _stored_files(app) == []
    kept = _upload(client, attachments=(io.BytesIO(b"%PDF-1.4 ok"), "plan.pdf", "application/pdf"))
    assert kept.status_code == 302
    [path] = _stored_files(app)
    assert path.read_bytes() == b"%PDF-1.4 ok"


def test_a_forged_file_reference_is_refused_on_the_page_and_the_api(app: Flask, login, tokens) -> None:
    victim = login("staff2")
    created = _upload(victim, attachments=(io.BytesIO(b"%PDF-1.4 secret"), "secret.pdf", "application/pdf"))
    assert created.status_code == 302
    rid = int(created.headers["Location"].rsplit("/", 1)[1])
    ref = app.extensions["promoflow"].records.get(rid).data["attachments"]
    forged = json.dumps(ref)
    # the page's hidden "kept file" input, carrying the victim's reference
    attacker = login("staff")
    refused = _upload(attacker, attachments=forged)
    assert refused.status_code == 422
    assert "secret.pdf" not in refused.text  # not offered back as a kept file either
    # the API: on create, and on update of the attacker's own record
    api = app.test_client()
    headers = bearer(tokens["staff"])
    body = valid_activity(attachments=ref)
    response = api.post("/api/v1/forms/activity_request/records", json=body, headers=headers)
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "attachments"
    own = api.post("/api/v1/forms/activity_request/records", json=valid_activity(), headers=headers)
    assert own.status_code == 201
    own_id = own.get_json()["id"]
    patched = api.patch(f"/api/v1/records/{own_id}", json={"attachments": ref}, headers=headers)
    assert patched.status_code == 422, patched.text  # the reference is checked before anything else
    # nothing of the attacker's serves the victim's file
    for record_id in (own_id,):
        assert api.get(f"/api/v1/records/{record_id}/files/attachments/{ref['id']}",
                       headers=headers).status_code == 404


def test_a_returned_record_keeps_its_own_file_when_resubmitted(app: Flask, login) -> None:
    """The record's own reference (the page's hidden "kept file" input) is still
    accepted; a new file refused with the resubmission is not kept."""
    services = app.extensions["promoflow"]
    staff = login("staff")
    created = _upload(staff, attachments=(io.BytesIO(b"%PDF-1.4 mine"), "mine.pdf", "application/pdf"))
    assert created.status_code == 302
    rid = int(created.headers["Location"].rsplit("/", 1)[1])
    ref = services.records.get(rid).data["attachments"]
    [task] = [t for t in services.workflows.tasks_for("manager") if t.record_id == rid]
    services.workflows.act(task.id, actor="manager", action="return", comment="补充", now=services.now())
    page = staff.get(f"/records/{rid}/resubmit")
    assert page.status_code == 200 and "mine.pdf" in page.text
    url = f"/records/{rid}/resubmit"
    refused = staff.post(url, data={**valid_activity_form(budget="abc"), "csrf_token": csrf_from(page.text),
                                    "attachments": (io.BytesIO(b"%PDF-1.4 new"), "new.pdf", "application/pdf")},
                         content_type="multipart/form-data")
    assert refused.status_code == 422
    assert len(_stored_files(app)) == 1  # the refused new file is gone, the record's own is there
    done = staff.post(url, data={**valid_activity_form(name="改过"), "csrf_token": csrf_from(page.text),
                                 "attachments": json.dumps(ref)})
    assert done.status_code == 302, done.text
    assert services.records.get(rid).data["attachments"] == ref
    assert staff.get(f"/records/{rid}/files/attachments/{ref['id']}").data == b"%PDF-1.4 mine"


# ------------------------------------------------------------------ list queries

def _nested(levels: int, keyword: str) -> str:
    cond: Any = {"budget": {"gt": 1}}
    for _ in range(levels):
        cond = {"not": cond} if keyword == "not" else {keyword: [cond]}
    return json.dumps(cond)


@pytest.mark.parametrize("keyword", ["not", "all", "any"])
def test_a_where_nested_too_deeply_is_a_400_on_the_list_and_before_the_csv_starts(
        app: Flask, tokens: dict[str, str], login, keyword: str) -> None:
    api = app.test_client()
    headers = bearer(tokens["admin"])
    list_url = "/api/v1/forms/activity_request/records?where="
    api.post("/api/v1/forms/activity_request/records", json=valid_activity(), headers=headers)
    deep = api.get(list_url + _nested(45, keyword), headers=headers)
    assert deep.status_code == 400
    assert deep.get_json()["error"]["message"] == "a condition may nest `all`/`any`/`not` at most 16 levels deep"
    # the limit itself still runs on the database (an even number of `not`s keeps the match)
    ok = api.get(list_url + _nested(16, keyword), headers=headers)
    assert ok.status_code == 200, ok.text
    assert ok.get_json()["total"] == 1
    assert api.get(list_url + _nested(17, keyword), headers=headers).status_code == 400
    export = login("admin").get("/forms/activity_request/records.csv?where=" + _nested(45, keyword))
    assert export.status_code == 400
    assert "16 levels" in export.text


def test_huge_page_numbers_are_a_400(app: Flask, tokens: dict[str, str], login) -> None:
    huge = "9" * 25
    api = app.test_client()
    for url in (f"/api/v1/messages?page={huge}", f"/api/v1/forms/activity_request/records?page={huge}"):
        response = api.get(url, headers=bearer(tokens["admin"]))
        assert response.status_code == 400, url
        assert response.get_json()["error"]["message"] == "`page` must be between 1 and 1000000"
    pages = login("admin")
    for url in (f"/messages?page={huge}", f"/feedback?page={huge}", f"/forms/activity_request/records?page={huge}"):
        response = pages.get(url)
        assert response.status_code == 400, url
        assert "1000000" in response.text
    assert pages.get("/messages?page=1000000").status_code == 200  # the largest page is just empty
    assert pages.get("/feedback?page=1000000").status_code == 200


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31"])
def test_extreme_dates_in_filters_never_500(app: Flask, tokens: dict[str, str], login, day: str) -> None:
    api = app.test_client()
    headers = bearer(tokens["admin"])
    for name in ("from", "to"):
        response = api.get(f"/api/v1/messages?{name}={day}", headers=headers)
        assert response.status_code == 400
        assert response.get_json()["error"]["message"] == f"`{name}` must be a date between 1900-01-01 and 9998-12-31"
        assert login("admin").get(f"/messages?{name}={day}").status_code == 400
    assert api.get("/api/v1/messages?from=1900-01-01&to=9998-12-31", headers=headers).status_code == 200
    # record filters compare stored dates: an extreme day is a valid question with an answer
    api.post("/api/v1/forms/activity_request/records", json=valid_activity(), headers=headers)
    records = "/api/v1/forms/activity_request/records"
    assert api.get(f"{records}?start_date={day}", headers=headers).get_json()["total"] == 0
    later = api.get(f"{records}?where=" + json.dumps({"start_date": {"gt": day}}), headers=headers)
    assert later.status_code == 200 and later.get_json()["total"] == (1 if day.startswith("0001") else 0)
    assert login("admin").get(f"/forms/activity_request/records?start_date={day}").status_code == 200


def test_the_id_pattern_matches_exactly_the_database_range() -> None:
    from web.converters import at_most

    for top in (MAX_ID, MAX_BIG_ID):
        pattern = re.compile(at_most(top))
        for n in (0, 1, 9, 10, 99, 10**9, top // 10, top - 1, top):
            assert pattern.fullmatch(str(n)), n
        for n in (top + 1, top + 10, top * 10, 10 ** len(str(top)), 2**64, 2**70):
            assert not pattern.fullmatch(str(n)), n


# ------------------------------------------------------------------ names and text

SPOOF = "\u202e\u2066张三\x07\x1b[31m\u200f\x85"


def test_control_and_bidi_characters_are_stripped_from_customer_names(app: Flask, tokens: dict[str, str]) -> None:
    api = app.test_client()
    headers = bearer(tokens["admin"])
    created = api.post("/api/v1/customers", json={"phone": "13800138001", "name": SPOOF}, headers=headers)
    assert created.status_code in (200, 201), created.text
    customer = api.get(f"/api/v1/customers/{created.get_json()['id']}", headers=headers).get_json()
    assert customer["name"] == "张三[31m"
    patched = api.patch(f"/api/v1/customers/{created.get_json()['id']}", json={"name": "gpj.exe\u202e李四"},
                        headers=headers)
    assert patched.status_code == 200, patched.text
    assert api.get(f"/api/v1/customers/{created.get_json()['id']}", headers=headers).get_json()["name"] \
        == "gpj.exe李四"
    # NUL cannot be stored on PostgreSQL: refused with the field named, never a 500
    nul = api.post("/api/v1/customers", json={"phone": "13800138002", "name": "王\x00五"}, headers=headers)
    assert nul.status_code == 422 and nul.get_json()["errors"][0]["field"] == "name"


def test_control_and_bidi_characters_are_stripped_from_user_display_names(app: Flask) -> None:
    from web_support import NOW

    accounts = app.extensions["promoflow"].accounts
    user = accounts.add_user("spoofed", roles=["staff"], password=None, now=NOW, display_name=SPOOF + "\x00")
    assert user.display_name == "张三[31m"
    blank = accounts.add_user("blank", roles=["staff"], password=None, now=NOW, display_name="\u202e\x07 ")
    assert blank.display_name is None and blank.name == "blank"


def test_record_text_fields_lose_bidi_and_control_characters(app: Flask, tokens: dict[str, str]) -> None:
    api = app.test_client()
    headers = bearer(tokens["admin"])
    body = valid_activity(name="春季\u202e促销\x07", description="第一行\n第二行\u2066\t完")
    created = api.post("/api/v1/forms/activity_request/records", json=body, headers=headers)
    assert created.status_code == 201, created.text
    data = created.get_json()["data"]
    assert data["name"] == "春季促销"
    assert data["description"] == "第一行\n第二行\t完"  # a textarea keeps its lines
    nul = api.post("/api/v1/forms/activity_request/records", json=valid_activity(name="a\x00b"), headers=headers)
    assert nul.status_code == 422 and nul.get_json()["errors"][0]["code"] == "invalid_chars"


def test_deep_json_in_resend_is_a_400(app: Flask, tokens: dict[str, str]) -> None:
    api = app.test_client()
    headers = {**bearer(tokens["admin"]), "Content-Type": "application/json"}
    deep = "[" * 100_000 + "]" * 100_000
    response = api.post("/api/v1/messages/1/resend", data=deep, headers=headers)
    assert response.status_code == 400
    assert response.get_json()["error"] == {"code": "bad_json", "message": "the JSON is nested too deeply"}
    assert api.post("/api/v1/messages/1/resend", data="{}", headers=headers).status_code == 404  # no message 1


def test_the_remove_checkbox_takes_a_kept_file_off_the_record(app: Flask, login) -> None:
    """On resubmission the page shows the record's file with a "remove" checkbox
    (``_remove_file``): ticked, the file is off the record even though the
    hidden "kept file" input still carries its reference (unticked it stays: the test above)."""
    services = app.extensions["promoflow"]
    staff = login("staff")
    created = _upload(staff, attachments=(io.BytesIO(b"%PDF-1.4 mine"), "mine.pdf", "application/pdf"))
    rid = int(created.headers["Location"].rsplit("/", 1)[1])
    ref = services.records.get(rid).data["attachments"]
    [task] = [t for t in services.workflows.tasks_for("manager") if t.record_id == rid]
    services.workflows.act(task.id, actor="manager", action="return", comment="去掉附件", now=services.now())
    url = f"/records/{rid}/resubmit"
    page = staff.get(url)
    assert 'name="_remove_file" value="attachments"' in page.text  # the checkbox beside the kept file
    done = staff.post(url, data={**valid_activity_form(name="不要附件"), "csrf_token": csrf_from(page.text),
                                 "attachments": json.dumps(ref), "_remove_file": "attachments"})
    assert done.status_code == 302, done.text
    record = services.records.get(rid)
    assert record.data["name"] == "不要附件" and not record.data.get("attachments")
    assert staff.get(f"/records/{rid}/files/attachments/{ref['id']}").status_code == 404
