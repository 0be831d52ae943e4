"""Merging two stored customers, through the API and the customer page:
orders, coupons, journeys, messages, consents, tags and identities move; the
merge is audited; ``once_per`` holds (the survivor is not entered again in a
rule either record was in); both databases."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from engine.storage.models import AuditEntry, Coupon, Journey, OutboxMessage
from web.cli import main

from .conftest import NOW, PASSWORD


def _rows(app, model, *where):
    with app.extensions["promoflow"].session_factory() as s:
        return s.scalars(select(model).where(*where)).all()


def test_merge_moves_everything_and_once_per_holds(api, app, worker_tick, db_url: str, tmp_path: Path,
                                                   monkeypatch) -> None:
    a = api("POST", "/customers", json={"phone": "13800000001", "name": "张三",
                                        "consent": {"sms": True, "wecom": True}, "tags": ["a"]}).get_json()["id"]
    b = api("POST", "/customers", json={"email": "zhang@example.com", "member_no": "M9", "tags": ["b"],
                                        "consent": {"email": True, "wecom": True}}).get_json()["id"]
    # An order for b through the product's CSV import (matched by e-mail).
    monkeypatch.setenv("PROMOFLOW_INSTANCE_PATH", str(tmp_path / "instance"))
    orders = tmp_path / "orders.csv"
    orders.write_text("email,order_id,order_amount,order_placed_at\nzhang@example.com,O1,88.00,2026-03-01 12:00\n",
                      encoding="utf-8")
    assert CliRunner().invoke(main, ["--database-url", db_url, "customers", "import", str(orders)]).exit_code == 0
    api("POST", "/events", json={"name": "custom.community.joined", "customer_id": b, "idempotency_key": "j-b"})
    worker_tick(NOW + timedelta(minutes=1))  # welcome journeys for both; community join for b
    assert {j.rule_id for j in _rows(app, Journey, Journey.subject_id == b)} == {"welcome_journey", "community_join"}
    b_messages = {m.id for m in _rows(app, OutboxMessage, OutboxMessage.customer_id == b)}
    assert b_messages  # b's welcome e-mail and community welcome

    merged = api("POST", f"/customers/{a}/merge", json={"from": b})
    assert merged.status_code == 200, merged.get_json()
    body = merged.get_json()
    assert body["id"] == a and body["merged"] == b and body["moved"]["orders"] == 1
    c = body["customer"]
    assert (c["phone"], c["email"], c["member_no"]) == ("13800000001", "zhang@example.com", "M9")
    assert set(c["tags"]) >= {"a", "b", "new_member", "community_member"}
    assert c["consent"]["email"]["granted"] is True and c["consent"]["sms"]["granted"] is True
    assert c["order_count"] == 1 and c["total_spent"] == "88.00"
    assert api("GET", f"/customers/{b}").status_code == 404
    # b's identities now find a.
    again = api("POST", "/customers", json={"member_no": "M9", "city": "上海"})
    assert again.status_code == 200 and again.get_json()["id"] == a
    assert {m.id for m in _rows(app, OutboxMessage, OutboxMessage.customer_id == a)} >= b_messages
    assert sorted(c.pool_id for c in _rows(app, Coupon, Coupon.customer_id == a)) == ["welcome10", "welcome10"]
    journeys = _rows(app, Journey, Journey.subject_type == "customer", Journey.subject_id == a)
    assert sorted(j.rule_id for j in journeys) == ["community_join", "welcome_journey"]
    # b's own welcome journey (same rule, same "ever" key as a's) is not moved and no longer runs.
    left = _rows(app, Journey, Journey.subject_id == b)
    assert [(j.rule_id, j.status) for j in left] == [("welcome_journey", "exited")]

    # once_per: a joined through b already, so joining again enters nothing and sends nothing new.
    api("POST", "/events", json={"name": "custom.community.joined", "customer_id": a, "idempotency_key": "j-a"})
    worker_tick(NOW + timedelta(days=3, minutes=5))
    sent = [m.template_id for m in _rows(app, OutboxMessage, OutboxMessage.customer_id == a)]
    assert sent.count("community_welcome") == 1
    assert sent.count("coupon_reminder") <= 1  # one welcome journey left to remind

    audit = _rows(app, AuditEntry, AuditEntry.action == "customer.merged")
    assert [(e.entity_id, e.actor, e.diff["merged"]) for e in audit] == [(str(a), "pos", b)]


def test_merge_errors_and_roles(api) -> None:
    a = api("POST", "/customers", json={"phone": "13800000021"}).get_json()["id"]
    assert api("POST", f"/customers/{a}/merge", json={"from": a}).status_code == 422
    assert api("POST", f"/customers/{a}/merge", json={"from": 99999}).status_code == 404
    assert api("POST", f"/customers/{a}/merge", json={}).get_json()["errors"][0]["field"] == "from"
    b = api("POST", "/customers", json={"phone": "13800000022"}).get_json()["id"]
    assert api("POST", f"/customers/{a}/merge", json={"from": b}, as_="staff").status_code == 403
    assert api("POST", f"/customers/{a}/merge", json={"from": b}, as_="mkt").status_code == 200


def test_merge_on_the_customer_page(api, app) -> None:
    import re

    a = api("POST", "/customers", json={"phone": "13800000031", "name": "甲"}).get_json()["id"]
    b = api("POST", "/customers", json={"phone": "13800000032", "name": "乙", "tags": ["vip"]}).get_json()["id"]
    client = app.test_client()
    page = client.get("/login")
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    client.post("/login", data={"username": "mkt", "password": PASSWORD, "csrf_token": token})
    detail = client.get(f"/customers/{a}")
    assert detail.status_code == 200 and 'class="merge"' in detail.text
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', detail.text).group(1)
    assert client.post(f"/customers/{a}/merge", data={"from_id": str(b), "confirm": "1"}).status_code == 400  # no CSRF
    unconfirmed = client.post(f"/customers/{a}/merge", data={"from_id": str(b), "csrf_token": token},
                              follow_redirects=True)
    assert "请先勾选确认" in unconfirmed.text
    done = client.post(f"/customers/{a}/merge", data={"from_id": str(b), "confirm": "1", "csrf_token": token},
                       follow_redirects=True)
    assert done.status_code == 200 and f"已将客户 #{b} 合并到 #{a}" in done.text
    assert "vip" in done.text
    assert 'data-kind="phone">138****0032<' in done.text  # b's phone, kept as an alias of a (masked, issue 16)
    assert "13800000032" not in done.text
    assert api("GET", f"/customers/{b}").status_code == 404
    audit = _rows(app, AuditEntry, AuditEntry.action == "customer.merged")
    assert [(e.actor, e.diff["merged"]) for e in audit] == [("mkt", b)]


def test_page_merge_is_for_marketing_and_admin(api, app) -> None:
    import re

    a = api("POST", "/customers", json={"phone": "13800000041"}).get_json()["id"]
    client = app.test_client()
    page = client.get("/login")
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    client.post("/login", data={"username": "staff", "password": PASSWORD, "csrf_token": token})
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', client.get("/").text).group(1)
    assert client.post(f"/customers/{a}/merge", data={"from_id": "1", "confirm": "1",
                                                      "csrf_token": token}).status_code == 403


def test_every_table_pointing_at_customers_moves() -> None:
    """Tables with a foreign key to customers are found in the schema, so a
    table added later moves without editing the merge."""
    from engine.storage.merge_repo import customer_columns
    from engine.storage.models import Base

    found = {(t.name, c) for t, c in customer_columns()}
    expected = {(t.name, fk.parent.name) for t in Base.metadata.sorted_tables for fk in t.foreign_keys
                if fk.column.table.name == "customers" and t.name not in ("consents", "customer_tags")}
    assert expected <= found and ("outbox", "customer_id") in found
    assert {"orders", "coupons", "feedback", "customer_identities"} <= {t for t, _ in found}
