"""Customer rights (PIPL, issue 16): export everything held about a customer,
erase them so none of their values remain in the raw database (SQLite file
bytes after a checkpoint; a ``pg_dump`` of the test schema), keep consent
proof and orders without identity, and never enter them into a rule again.
Driven through the API, the survey page and the scheduler's tick; both databases."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from engine.feedback.links import sign_survey
from engine.personal_data import mask
from engine.storage.models import AuditEntry, Consent, Customer, Journey, Order, OutboxMessage
from engine.storage.rights_repo import ERASE_POLICY, customer_sources, unpolicied_tables
from web.i18n import CATALOG

from .conftest import NOW

ZHAO = {"name": "赵雪莹", "phone": "13912345678", "email": "zhao.xueying@example.com",
        "wecom_userid": "wmErasedZhao7781", "member_no": "MEM-ERASE-5531"}
ZHAO_COMMENT = "包装破损严重希望改进ZQX"
QIAN = {"name": "钱多多", "phone": "13787654321", "email": "qian.duoduo@example.com",
        "wecom_userid": "wmKeptQian4410", "member_no": "MEM-KEEP-7720"}
QIAN_COMMENT = "服务很好下次再来KPW"


def _sf(app):
    return app.extensions["promoflow"].session_factory


def _create(api, who: dict[str, str], *, email_consent: bool = True) -> int:
    body = {**who, "city": "上海", "tags": ["会员"],
            "consent": {"sms": True, "email": email_consent, "wecom": True}}
    created = api("POST", "/customers", json=body)
    assert created.status_code == 201, created.text
    return int(created.get_json()["id"])


def _order(api, external_id: str, phone: str, days_ago: int) -> None:
    placed = (NOW - timedelta(days=days_ago)).astimezone().strftime("%Y-%m-%d %H:%M")
    response = api("POST", "/orders", json={
        "source": "pos", "external_id": external_id, "customer": {"phone": phone},
        "lines": [{"sku": "SKU-1", "name": "咖啡豆", "quantity": 1, "unit_price": "88.00"}],
        "amount": "88.00", "store": "SH01", "channel": "store", "placed_at": placed})
    assert response.status_code == 201, response.text


def _answer_survey(app, customer_id: int, comment: str) -> None:
    import re

    client = app.test_client()
    url = "/survey/" + sign_survey("test-secret", customer_id=customer_id, campaign="spring_sale",
                                   expires=NOW + timedelta(days=7))
    page = client.get(url)
    assert page.status_code == 200, page.text
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    answered = client.post(url, data={"csrf_token": token, "score": "3", "comment": comment})
    assert answered.status_code == 200, answered.text


def _two_customers(api, app, worker_tick) -> tuple[int, int]:
    """Zhao (to be erased) and Qian (kept), each with an old order, a win-back
    coupon and SMS from the 10:00 run, a welcome e-mail and a survey comment."""
    zhao, qian = _create(api, ZHAO), _create(api, QIAN)
    _order(api, "Z-1", ZHAO["phone"], 120)
    _order(api, "Q-1", QIAN["phone"], 120)
    worker_tick(NOW + timedelta(minutes=1))  # welcome e-mails (event) and the win-back run (10:00 schedule)
    _answer_survey(app, zhao, ZHAO_COMMENT)
    _answer_survey(app, qian, QIAN_COMMENT)
    with _sf(app)() as s:
        bodies = {c: list(s.scalars(select(OutboxMessage.body).where(OutboxMessage.customer_id == c)))
                  for c in (zhao, qian)}
    assert any(ZHAO["name"] in (b or "") for b in bodies[zhao]), bodies  # the setup reached the outbox
    return zhao, qian


def _needles(who: dict[str, str], comment: str) -> list[tuple[str, bytes]]:
    """Each value as UTF-8 and as JSON's ASCII escapes (a JSON column may store either)."""
    out = []
    for key, value in [*who.items(), ("comment", comment)]:
        out.append((key, value.encode("utf-8")))
        escaped = json.dumps(value)[1:-1].encode("ascii")
        if escaped != value.encode("utf-8"):
            out.append((key + " (json)", escaped))
            out.append((key + " (json, upper)", escaped.replace(b"\\u", b"\\U").upper().replace(b"\\U", b"\\u")))
    return out


def _raw_database(app, db_url: str) -> bytes:
    """What someone holding the database sees: the SQLite file (and any WAL), or a pg_dump of the schema."""
    if db_url.startswith("sqlite"):
        path = Path(db_url.removeprefix("sqlite:///"))
        app.extensions["promoflow"].session_factory.kw["bind"].dispose()  # close pooled connections
        data = path.read_bytes()
        for extra in (Path(str(path) + "-wal"), Path(str(path) + "-journal")):
            if extra.exists():
                data += extra.read_bytes()
        return data
    with _sf(app)() as s:
        schema = s.execute(text("SELECT current_schema()")).scalar_one()
        url = s.get_bind().url
    if shutil.which("pg_dump"):
        args = ["pg_dump", "-h", url.host or "127.0.0.1", "-p", str(url.port or 5432), "-n", schema,
                "--data-only", "--no-owner", url.database or "test"]
        if url.username:
            args[1:1] = ["-U", url.username]
        return subprocess.run(args, check=True, capture_output=True).stdout
    with _sf(app)() as s:  # no pg_dump: every text column of every table of the schema
        out = io.StringIO()
        for table, column in s.execute(text(
                "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = :s "
                "AND data_type IN ('text', 'character varying', 'json', 'jsonb')"), {"s": schema}):
            for value in s.execute(text(f'SELECT "{column}"::text FROM "{schema}"."{table}"')).scalars():
                out.write(f"{value}\n")
        return out.getvalue().encode("utf-8")


def test_every_table_with_customer_rows_has_an_erase_policy() -> None:
    assert unpolicied_tables() == set()
    found = {s.name for s in customer_sources()}
    # found from the schema, not a hand list: child tables come along through their foreign keys
    assert {"outbox", "message_attempts", "message_receipts", "click_links", "link_clicks", "feedback", "tasks",
            "customer_identities", "consents", "coupons", "redemption_attempts", "orders"} <= found
    assert set(ERASE_POLICY) - found - {"customers", "journeys", "events"} == set()


def test_export_holds_everything_and_is_admin_only_and_audited(app, api, worker_tick) -> None:
    zhao, _qian = _two_customers(api, app, worker_tick)
    assert api("GET", f"/customers/{zhao}/export", as_="pos").status_code == 403
    assert api("GET", f"/customers/{zhao}/export", as_="mkt").status_code == 403
    assert api("GET", "/customers/999999/export", as_="admin").status_code == 404
    assert api("GET", f"/customers/{2**64}/export", as_="admin").status_code == 404
    response = api("GET", f"/customers/{zhao}/export", as_="admin")
    assert response.status_code == 200 and response.mimetype == "application/zip"
    assert "attachment" in response.headers["Content-Disposition"]
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    names = set(archive.namelist())
    assert {"customer.json", "customers.csv", "customer_identities.csv", "consents.csv", "orders.csv",
            "coupons.csv", "outbox.csv", "feedback.csv", "journeys.csv", "events.csv"} <= names
    tables = json.loads(archive.read("customer.json"))["tables"]
    assert tables["customers"][0]["phone"] == ZHAO["phone"] and tables["customers"][0]["name"] == ZHAO["name"]
    assert {(i["kind"], i["value"]) for i in tables["customer_identities"]} >= {
        ("wecom", ZHAO["wecom_userid"]), ("member_no", ZHAO["member_no"])}
    assert [f["comment"] for f in tables["feedback"]] == [ZHAO_COMMENT]
    assert [o["external_id"] for o in tables["orders"]] == ["Z-1"]
    assert any(ZHAO["name"] in (m["body"] or "") for m in tables["outbox"])
    assert {j["rule_id"] for j in tables["journeys"]} >= {"winback_90d"}
    assert all(str(e["subject_id"]) == str(zhao) or (e["payload"] or {}).get("customer_id") == zhao
               for e in tables["events"]) and tables["events"]
    everything = json.dumps(tables, ensure_ascii=False)
    assert QIAN["phone"] not in everything and QIAN_COMMENT not in everything  # nobody else's data
    csv_text = archive.read("customers.csv").decode("utf-8-sig")
    assert ZHAO["email"] in csv_text and "phone" in csv_text.splitlines()[0]
    with _sf(app)() as s:
        audit = s.execute(select(AuditEntry).where(AuditEntry.action == "customer.exported")).scalar_one()
    assert (audit.actor, audit.entity_type, audit.entity_id) == ("admin", "customer", str(zhao))
    assert ZHAO["phone"] not in json.dumps(audit.diff, ensure_ascii=False)


def test_erased_customer_leaves_no_value_in_the_raw_database(app, api, worker_tick, db_url: str) -> None:
    zhao, qian = _two_customers(api, app, worker_tick)
    withdrawn = api("PATCH", f"/customers/{zhao}", json={"consent": {"sms": {"granted": False,
                                                                             "source": "unsubscribe"}}})
    assert withdrawn.status_code == 200, withdrawn.text
    raw = _raw_database(app, db_url)
    assert all(needle in raw or key.endswith(")") for key, needle in _needles(ZHAO, ZHAO_COMMENT)), \
        "the values must be findable before the erasure, or the check below proves nothing"

    assert api("POST", f"/customers/{zhao}/erase", as_="pos").status_code == 403
    assert api("POST", f"/customers/{zhao}/erase", as_="mkt").status_code == 403
    assert api("POST", "/customers/999999/erase", as_="admin").status_code == 404
    erased = api("POST", f"/customers/{zhao}/erase", as_="admin")
    assert erased.status_code == 200, erased.text
    body = erased.get_json()
    assert body["erased"] is True and body["already"] is False and body["touched"]["customer_identities"] >= 2
    again = api("POST", f"/customers/{zhao}/erase", as_="admin")
    assert again.status_code == 200 and again.get_json()["already"] is True

    raw = _raw_database(app, db_url)
    left = [key for key, needle in _needles(ZHAO, ZHAO_COMMENT) if needle in raw]
    assert left == [], f"still in the raw database after erasure: {left}"
    kept = [key for key, needle in _needles(QIAN, QIAN_COMMENT) if needle in raw and not key.endswith(")")]
    assert len(kept) == 6, kept  # the search does find values: the other customer's are all there

    with _sf(app)() as s:
        row = s.get(Customer, zhao)
        assert row is not None and row.erased_at is not None
        assert (row.name, row.phone, row.email, row.external_id) == (None, None, None, None)
        assert row.order_count == 1 and row.total_spent > 0  # aggregates stay
        consent = s.execute(select(Consent).where(Consent.customer_id == zhao, Consent.channel == "sms")).scalar_one()
        assert (consent.granted, consent.source) == (False, "unsubscribe")  # the withdrawal stays as proof
        assert s.execute(select(func.count()).select_from(Order).where(Order.customer_id == zhao)).scalar() == 1
        assert s.execute(select(func.count()).select_from(Journey).where(
            Journey.subject_id == zhao, Journey.status == "active")).scalar() == 0
        audits = s.execute(select(AuditEntry).where(AuditEntry.action == "customer.erased")).scalars().all()
    assert [(a.actor, a.entity_id) for a in audits] == [("admin", str(zhao))]  # the repeat is not audited again
    assert api("GET", f"/customers/{qian}", as_="pos").get_json()["phone"] == QIAN["phone"]


def test_erased_customer_is_never_entered_by_the_win_back_rule_again(app, api, worker_tick) -> None:
    zhao, qian = _two_customers(api, app, worker_tick)

    def winbacks(customer_id: int) -> int:
        with _sf(app)() as s:
            return int(s.execute(select(func.count()).select_from(Journey).where(
                Journey.rule_id == "winback_90d", Journey.subject_type == "customer",
                Journey.subject_id == customer_id)).scalar_one())

    assert (winbacks(zhao), winbacks(qian)) == (1, 1)
    assert api("POST", f"/customers/{zhao}/erase", as_="admin").status_code == 200
    # Zhao's consent and old order still match the audience; 181 days on, `once_per: 180d` lets Qian in again.
    later = NOW + timedelta(days=181)
    worker_tick(later)
    worker_tick(later + timedelta(days=1))
    assert winbacks(qian) == 2
    assert winbacks(zhao) == 1
    # an event about the erased customer does not enter them either (the per-event path)
    event = api("POST", "/events", json={"name": "custom.community.joined", "customer_id": zhao,
                                         "idempotency_key": "after-erase"})
    assert event.status_code in (200, 201, 404, 422), event.text
    worker_tick(later + timedelta(days=1, minutes=5))
    with _sf(app)() as s:
        active = s.execute(select(func.count()).select_from(Journey).where(
            Journey.subject_type == "customer", Journey.subject_id == zhao, Journey.status == "active")).scalar()
        sent_after = s.execute(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.customer_id == zhao, OutboxMessage.created_at > NOW.replace(tzinfo=None)
            + timedelta(days=1))).scalar()
    assert (active, sent_after) == (0, 0)


def _csrf(html: str) -> str:
    import re

    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)
    assert match
    return match.group(1)


def _login(app, name: str) -> Any:
    client = app.test_client()
    page = client.get("/login")
    assert client.post("/login", data={"username": name, "password": "secret-pw",
                                       "csrf_token": _csrf(page.text)}).status_code == 302
    return client


def test_customer_page_export_and_erase_for_admins_only(app, api) -> None:
    zhao = _create(api, ZHAO)
    admin, mkt = _login(app, "admin"), _login(app, "mkt")
    page = admin.get(f"/customers/{zhao}")
    assert page.status_code == 200 and 'id="rights"' in page.text and "rights-erase" in page.text
    mkt_page = mkt.get(f"/customers/{zhao}").text
    assert 'id="rights"' not in mkt_page
    assert mkt.get(f"/customers/{zhao}/export.zip").status_code == 403
    assert mkt.post(f"/customers/{zhao}/erase", data={"confirm": str(zhao),
                                                     "csrf_token": _csrf(mkt_page)}).status_code == 403
    download = admin.get(f"/customers/{zhao}/export.zip")
    assert download.status_code == 200 and download.mimetype == "application/zip"
    assert "customer.json" in zipfile.ZipFile(io.BytesIO(download.data)).namelist()
    # no CSRF token: refused; wrong confirmation: nothing happens
    assert admin.post(f"/customers/{zhao}/erase", data={"confirm": str(zhao)}).status_code == 400
    wrong = admin.post(f"/customers/{zhao}/erase", data={"confirm": "1" + str(zhao), "csrf_token": _csrf(page.text)},
                       follow_redirects=True)
    assert wrong.status_code == 200 and mask(ZHAO["phone"]) in wrong.text  # masked on the page (issue 16)
    done = admin.post(f"/customers/{zhao}/erase", data={"confirm": str(zhao), "csrf_token": _csrf(page.text)},
                      follow_redirects=True)
    assert done.status_code == 200 and mask(ZHAO["phone"]) not in done.text and ZHAO["name"] not in done.text
    assert CATALOG["rights_erased_badge"][0] in done.text
    with _sf(app)() as s:
        actions = list(s.scalars(select(AuditEntry.action).where(AuditEntry.entity_type == "customer",
                                                                 AuditEntry.entity_id == str(zhao))
                                 .order_by(AuditEntry.id)))
    assert actions == ["customer.exported", "customer.erased"]


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_erase_labels_exist_in_both_languages(lang: str) -> None:
    for key in ("rights_title", "rights_export", "rights_erase", "rights_confirm", "rights_erased"):
        assert CATALOG[key][0 if lang == "zh" else 1]
