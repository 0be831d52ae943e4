"""The HTML side: sign in/out, CSRF, permissions, the fill page (errors next to
fields, values kept, escaping, sub-tables, visible_if data), lists, CSV, languages."""

from __future__ import annotations

import csv
import io
import json
import re

from flask import Flask
from web_support import PASSWORD, bearer, csrf_from, valid_activity, valid_activity_form

FILL = "/forms/activity_request/new"
LIST = "/forms/activity_request/records"


def _post_form(client, url: str, data: dict[str, str]):
    page = client.get(url)
    return client.post(url, data={**data, "csrf_token": csrf_from(page.text)})


def _field_errors(html: str) -> dict[str, list[str]]:
    """{field key: [error messages]} read from the rendered page."""
    out: dict[str, list[str]] = {}
    for match in re.finditer(r'<div class="field has-error[^"]*" data-key="([^"]+)".*?</div>', html, re.DOTALL):
        out[match.group(1)] = re.findall(r'<p class="error" role="alert">([^<]*)</p>', match.group(0))
    return out


def test_login_logout(app: Flask, login) -> None:
    client = app.test_client()
    assert client.get("/").status_code == 302  # to the sign-in page
    page = client.get("/login")
    wrong = client.post("/login", data={"username": "staff", "password": "nope", "csrf_token": csrf_from(page.text)})
    assert wrong.status_code == 401 and "用户名或密码错误" in wrong.text
    unknown = client.post("/login", data={"username": "ghost", "password": PASSWORD,
                                          "csrf_token": csrf_from(page.text)})
    assert unknown.status_code == 401
    client = login("staff")
    home = client.get("/")
    assert home.status_code == 200 and "促销活动申请" in home.text and "staff" in home.text
    out = client.post("/logout", data={"csrf_token": csrf_from(home.text)})
    assert out.status_code == 302
    assert client.get("/").status_code == 302


def test_login_redirects_only_to_local_next(app: Flask) -> None:
    client = app.test_client()
    for target, expected in [("/forms/activity_request/records", "/forms/activity_request/records"),
                             ("https://evil.example/", "/"), ("//evil.example/x", "/"), ("/\\evil", "/")]:
        page = client.get("/login")
        response = client.post("/login", query_string={"next": target},
                               data={"username": "staff", "password": PASSWORD, "csrf_token": csrf_from(page.text)})
        assert response.headers["Location"] == expected, target
        client.post("/logout", data={"csrf_token": csrf_from(client.get("/").text)})


def test_post_without_csrf_token_is_refused(app: Flask, login) -> None:
    client = app.test_client()
    assert client.post("/login", data={"username": "staff", "password": PASSWORD}).status_code == 400
    client = login("staff")
    response = client.post(FILL, data=valid_activity_form())
    assert response.status_code == 400
    assert "安全令牌" in response.text
    assert client.post(FILL, data={**valid_activity_form(), "csrf_token": "forged"}).status_code == 400
    assert client.post("/logout").status_code == 400
    assert app.extensions["promoflow"].records.list("activity_request").total == 0


def test_submit_with_errors_keeps_values_and_shows_field_errors(app: Flask, login) -> None:
    client = login("staff")
    script = "<script>alert(1)</script>"
    response = _post_form(client, FILL, valid_activity_form(
        name=script, budget="12,5", end_date="2025-03-04", discount_type="coupon", coupon_value="",
        **{"materials-0-qty": "zero", "materials-1-item": "易拉宝", "materials-1-qty": "2",
           "materials-1-unit_cost": "80"}))
    assert response.status_code == 422
    html = response.text
    assert _field_errors(html) == {
        "budget": ["应为金额，如 12.50"],
        "end_date": ["必须晚于「开始日期」"],
        "coupon_value": ["必填"],
        "qty": ["应为整数"],
    }
    # what was typed is still there, the script as text
    assert 'value="&lt;script&gt;alert(1)&lt;/script&gt;"' in html and script not in html
    assert 'name="budget"' in html and 'value="12,5"' in html
    assert 'name="materials-0-qty"' in html and 'value="zero"' in html
    assert 'name="materials-1-item"' in html and 'value="易拉宝"' in html
    assert re.search(r'<option selected value="coupon">|<option value="coupon" selected>', html)
    assert app.extensions["promoflow"].records.list("activity_request").total == 0


def test_submit_stores_text_as_typed_and_shows_it_escaped(app: Flask, login) -> None:
    client = login("staff")
    script = "<script>alert('x')</script>"
    response = _post_form(client, FILL, valid_activity_form(name=script, description=f"{script}\n<b>bold</b>"))
    assert response.status_code == 302, _field_errors(response.text)
    record_url = response.headers["Location"]
    record = app.extensions["promoflow"].records.get(int(record_url.rsplit("/", 1)[1]))
    assert record.data["name"] == script and record.data["description"] == f"{script}\n<b>bold</b>"
    assert record.data["materials"] == [{"item": "海报", "qty": 10, "unit_cost": "3.50"}]
    detail = client.get(record_url)
    assert detail.status_code == 200
    assert script not in detail.text and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in detail.text
    assert "<b>bold</b>" not in detail.text
    assert "script-src 'self'" in detail.headers["Content-Security-Policy"]
    listing = client.get(LIST)
    assert script not in listing.text and "&lt;script&gt;" in listing.text


def test_fill_page_renders_every_field_with_conditions_as_data(app: Flask, login) -> None:
    html = login("staff").get(FILL).text
    assert 'data-key="coupon_value" data-type="money"' in html
    assert 'data-visible-if="{&#34;discount_type&#34;: {&#34;eq&#34;: &#34;coupon&#34;}}"' in html
    assert 'data-required-if="{&#34;discount_type&#34;: {&#34;eq&#34;: &#34;coupon&#34;}}"' in html
    assert 'name="materials-0-item"' in html and "data-add-row" in html and "data-remove-row" in html
    assert 'type="date"' in html and 'type="file"' in html and 'enctype="multipart/form-data"' in html
    assert '<script src="/static/form.js"' in html and "eval(" not in html
    # read-only status shows its default, disabled
    assert re.search(r'<select disabled id="status" name="status">', html)


def test_hidden_field_values_are_dropped_on_the_server(app: Flask, login) -> None:
    client = login("staff")
    response = _post_form(client, FILL, valid_activity_form(discount_type="gift", gift_name="杯子",
                                                            coupon_value="not a number"))
    assert response.status_code == 302, _field_errors(response.text)
    record = app.extensions["promoflow"].records.get(int(response.headers["Location"].rsplit("/", 1)[1]))
    assert record.data["gift_name"] == "杯子" and "coupon_value" not in record.data


def test_permission_matrix_html(app: Flask, login) -> None:
    staff = login("staff")
    assert _post_form(staff, FILL, valid_activity_form()).status_code == 302
    other = login("staff2")
    assert _post_form(other, FILL, valid_activity_form(name="别人的")).status_code == 302
    records = app.extensions["promoflow"].records.list("activity_request", sort="id").items
    mine, theirs = records[0].id, records[1].id
    # staff sees their own record, not the other one, and only their own in the list
    assert staff.get(f"/records/{mine}").status_code == 200
    assert staff.get(f"/records/{theirs}").status_code == 403
    listing = staff.get(LIST).text
    assert f'href="/records/{mine}"' in listing and f'href="/records/{theirs}"' not in listing
    # a viewer (marketing_manager) sees all, may not submit
    manager = login("manager")
    assert manager.get(f"/records/{theirs}").status_code == 200
    assert manager.get(FILL).status_code == 403
    assert f'href="/records/{theirs}"' in manager.get(LIST).text
    # admin may do everything
    admin = login("admin")
    assert admin.get(f"/records/{mine}").status_code == 200 and admin.get(FILL).status_code == 200
    # no role on the form: 403 everywhere (detail hides the record: 404)
    outsider = login("outsider")
    assert outsider.get(FILL).status_code == 403
    assert outsider.get(LIST).status_code == 403
    assert outsider.get(f"/records/{mine}").status_code == 404
    assert "促销活动申请" not in outsider.get("/").text
    assert staff.get("/forms/nope/new").status_code == 404


def test_edit_by_submitter(app: Flask, login, tokens) -> None:
    client = login("staff")
    rid = app.test_client().post("/api/v1/forms/activity_request/records", json=valid_activity(),
                                 headers=bearer(tokens["staff"])).get_json()["id"]
    # edit.until: workflow_started: in review, the record is locked (409, no edit button) …
    locked = client.get(f"/records/{rid}/edit")
    assert locked.status_code == 409 and "审批流程已开始" in locked.text
    assert f'href="/records/{rid}/edit"' not in client.get(f"/records/{rid}").text
    # … until its submitter withdraws it (撤回) and it is back in their hands
    services = app.extensions["promoflow"]
    services.workflows.withdraw(rid, actor="staff", now=services.now())
    assert f'href="/records/{rid}/edit"' in client.get(f"/records/{rid}").text
    page = client.get(f"/records/{rid}/edit")
    assert page.status_code == 200 and 'value="春季促销"' in page.text
    form = {**valid_activity_form(name="改过的"), "_version": "1"}
    response = client.post(f"/records/{rid}/edit", data={**form, "csrf_token": csrf_from(page.text)})
    assert response.status_code == 302
    assert app.extensions["promoflow"].records.get(rid).data["name"] == "改过的"
    stale = client.post(f"/records/{rid}/edit", data={**form, "name": "again", "csrf_token": csrf_from(page.text)})
    assert stale.status_code == 302 and stale.headers["Location"].endswith(f"/records/{rid}/edit")
    assert login("staff2").get(f"/records/{rid}/edit").status_code == 403


def test_language_switch_shows_english_labels(app: Flask, login) -> None:
    client = login("staff")
    zh = client.get(FILL).text
    assert "活动名称" in zh and "提交" in zh
    en = client.get(FILL + "?lang=en")
    assert "Activity name" in en.text and "Promotion activity request" in en.text and "活动名称" not in en.text
    assert "Add row" in en.text and "Coupon" in en.text
    assert "lang=en" in en.headers.get("Set-Cookie", "")
    assert "Activity name" in client.get(FILL).text  # remembered in the cookie
    assert "活动名称" in client.get(FILL + "?lang=zh").text
    errors = _post_form(client, FILL + "?lang=en", valid_activity_form(name=""))
    assert "This field is required" in errors.text


def test_record_list_filters_sort_pages(app: Flask, login, tokens) -> None:
    api = app.test_client()
    for i, channel in enumerate(["sms", "email", "sms"]):
        api.post("/api/v1/forms/activity_request/records", headers=bearer(tokens["staff"]),
                 json=valid_activity(name=f"活动{i}", channel=channel, budget=str(1000 * (i + 1))))
    client = login("manager")
    sms = client.get(LIST + "?channel=sms&sort=-budget").text
    assert sms.index("活动2") < sms.index("活动0") and "活动1" not in sms
    where = json.dumps({"budget": {"gte": 2000}})
    filtered = client.get(LIST, query_string={"where": where}).text
    assert "活动1" in filtered and "活动2" in filtered and "活动0" not in filtered
    paged = client.get(LIST + "?per_page=2&sort=budget")
    assert "活动0" in paged.text and "活动2" not in paged.text and "page=2" in paged.text
    bad = client.get(LIST, query_string={"where": "{oops"})
    assert bad.status_code == 400 and "筛选条件无效" in bad.text


def test_csv_export(app: Flask, login, tokens) -> None:
    api = app.test_client()
    api.post("/api/v1/forms/activity_request/records", headers=bearer(tokens["staff"]),
             json=valid_activity(name="=cmd|' /C calc'!A0"))
    api.post("/api/v1/forms/activity_request/records", headers=bearer(tokens["staff2"]),
             json=valid_activity(name="第二个", channel="email"))
    response = login("manager").get(LIST.replace("records", "records.csv") + "?lang=en&sort=created_at")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    assert rows[0][:4] == ["ID", "Activity name", "Channel", "Budget (CNY)"]
    assert [r[1] for r in rows[1:]] == ["'=cmd|' /C calc'!A0", "第二个"]
    assert rows[2][2] == "Email"
    # staff exports only their own records; a filter applies to the export too
    own = login("staff2").get(LIST.replace("records", "records.csv"))
    assert [r[1] for r in csv.reader(io.StringIO(own.get_data(as_text=True).lstrip("\ufeff")))][1:] == ["第二个"]
    only_sms = login("manager").get(LIST.replace("records", "records.csv") + "?channel=sms")
    assert "第二个" not in only_sms.get_data(as_text=True)
    assert login("outsider").get(LIST.replace("records", "records.csv")).status_code == 403


def test_file_upload_is_stored_in_the_instance_folder(app: Flask, login) -> None:
    client = login("staff")
    page = client.get(FILL)
    data = {**valid_activity_form(), "csrf_token": csrf_from(page.text),
            "attachments": (io.BytesIO(b"%PDF-1.4 plan"), "方案.pdf", "application/pdf")}
    response = client.post(FILL, data=data, content_type="multipart/form-data")
    assert response.status_code == 302, _field_errors(response.text)
    record = app.extensions["promoflow"].records.get(int(response.headers["Location"].rsplit("/", 1)[1]))
    ref = record.data["attachments"]
    assert ref["name"] == "方案.pdf" and ref["size"] == 13 and ref["content_type"] == "application/pdf"
    stored = app.config["UPLOAD_FOLDER"] + "/" + ref["id"]
    with open(stored, "rb") as fh:
        assert fh.read() == b"%PDF-1.4 plan"
    bad = {**valid_activity_form(), "csrf_token": csrf_from(page.text),
           "attachments": (io.BytesIO(b"MZ"), "tool.exe", "application/octet-stream")}
    refused = client.post(FILL, data=bad, content_type="multipart/form-data")
    assert refused.status_code == 422
    assert _field_errors(refused.text)["attachments"] == ["不支持的文件类型，允许：.pdf, .jpg, .png, .xlsx, .pptx"]


def test_uploaded_file_downloads_for_those_who_may_see_the_record(app: Flask, login, tokens) -> None:
    staff = login("staff")
    page = staff.get(FILL)
    data = {**valid_activity_form(), "csrf_token": csrf_from(page.text),
            "attachments": (io.BytesIO(b"%PDF-1.4 plan"), "活动 方案.pdf", "application/pdf")}
    response = staff.post(FILL, data=data, content_type="multipart/form-data")
    assert response.status_code == 302, _field_errors(response.text)
    rid = int(response.headers["Location"].rsplit("/", 1)[1])
    services = app.extensions["promoflow"]
    file_id = services.records.get(rid).data["attachments"]["id"]
    url = f"/records/{rid}/files/attachments/{file_id}"
    assert f'href="{url}"' in staff.get(f"/records/{rid}").text  # linked from the detail page
    got = staff.get(url)
    assert got.status_code == 200 and got.data == b"%PDF-1.4 plan"
    assert got.headers["Content-Type"] == "application/pdf"
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    disposition = got.headers["Content-Disposition"]
    assert disposition.startswith("attachment;")
    assert "filename*=UTF-8''%E6%B4%BB%E5%8A%A8%20%E6%96%B9%E6%A1%88.pdf" in disposition
    assert login("manager").get(url).status_code == 200  # a reader of the form's records
    # neither a reader nor the submitter nor an approver: as if there were no such file
    staff2 = login("staff2")
    assert login("outsider").get(url).status_code == 404 and staff2.get(url).status_code == 404
    # an approver who is not a reader gets it once the task is theirs (transferred to them)
    [task] = services.workflows.tasks_for("manager")
    services.workflows.act(task.id, actor="manager", action="transfer", target="staff2", now=services.now())
    assert staff2.get(url).status_code == 200
    # only files this record refers to, by their exact id, from the uploads folder
    other = services.records.create("activity_request", {**valid_activity(), "attachments": {
        "id": "0" * 32 + ".pdf", "name": "x.pdf", "size": 1, "content_type": "application/pdf"}},
        actor="staff", now=services.now())
    assert staff.get(f"/records/{other.id}/files/attachments/{file_id}").status_code == 404
    assert staff.get(f"/records/{other.id}/files/attachments/{'0' * 32}.pdf").status_code == 404  # not on disk
    for bad in ("..%2F..%2Fsecret", "..", file_id.upper(), file_id + "%00", "%2Fetc%2Fpasswd"):
        assert staff.get(f"/records/{rid}/files/attachments/{bad}").status_code == 404, bad
    assert staff.get(f"/records/{rid}/files/description/{file_id}").status_code == 404  # not a file field
    # the API serves the same file to the same people
    api = app.test_client()
    assert api.get(f"/api/v1{url}", headers=bearer(tokens["staff"])).data == b"%PDF-1.4 plan"
    assert api.get(f"/api/v1{url}", headers=bearer(tokens["outsider"])).status_code == 404
    assert api.get(f"/api/v1{url}").status_code == 401


def test_phone_width_page_has_viewport_and_local_assets(app: Flask, login) -> None:
    client = login("staff")
    html = client.get(FILL).text
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert "http://" not in html and "https://" not in html
    css = client.get("/static/style.css")
    assert css.status_code == 200 and b"@media" in css.data
    js = client.get("/static/form.js")
    assert js.status_code == 200 and b"eval(" not in js.data and b"new Function" not in js.data
