"""The loop back through the product: a customer posted to the API emits
``customer.registered`` and the shipped welcome journey greets them when the
scheduler ticks; custom events posted to ``/api/v1/events`` (idempotent,
checked names, batches) drive the community and referral rules. Fake clock,
both databases."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from engine.storage.models import Coupon, CustomerTag, Event, OutboxMessage

from .conftest import NOW


def _outbox(app, customer_id: int) -> list[tuple[str, str]]:
    with app.extensions["promoflow"].session_factory() as s:
        return [(m.template_id, m.channel) for m in s.scalars(
            select(OutboxMessage).where(OutboxMessage.customer_id == customer_id).order_by(OutboxMessage.id))]


def _tags(app, customer_id: int) -> set[str]:
    with app.extensions["promoflow"].session_factory() as s:
        return set(s.scalars(select(CustomerTag.tag).where(CustomerTag.customer_id == customer_id)))


def test_welcome_journey_acts_on_a_customer_posted_to_the_api(api, app, worker_tick) -> None:
    cid = api("POST", "/customers", json={"phone": "13800000001", "email": "new@example.com", "name": "新会员",
                                          "consent": {"email": True, "sms": True}}).get_json()["id"]
    assert _outbox(app, cid) == []  # nothing before the scheduler runs
    worker_tick(NOW + timedelta(minutes=1))
    assert _outbox(app, cid) == [("welcome", "email")]
    assert "new_member" in _tags(app, cid)
    with app.extensions["promoflow"].session_factory() as s:
        assert [c.pool_id for c in s.scalars(select(Coupon).where(Coupon.customer_id == cid))] == ["welcome10"]
    worker_tick(NOW + timedelta(days=3, minutes=2))
    assert _outbox(app, cid) == [("welcome", "email"), ("coupon_reminder", "sms")]
    # Posting the same customer again is an update: no second welcome.
    assert api("POST", "/customers", json={"phone": "13800000001", "city": "上海"}).status_code == 200
    worker_tick(NOW + timedelta(days=4))
    assert [t for t, _ in _outbox(app, cid) if t in ("welcome", "coupon_reminder")] == ["welcome", "coupon_reminder"]


def test_community_join_event_acts_and_a_repeat_is_the_first_result(api, app, worker_tick) -> None:
    cid = api("POST", "/customers", json={"wecom_userid": "wmJOIN1", "name": "群友",
                                          "consent": {"wecom": True}}).get_json()["id"]
    event = {"name": "custom.community.joined", "customer": {"wecom_userid": "wmJOIN1"},
             "idempotency_key": "join-1", "data": {"chat_id": "wrCHAT"}}
    first = api("POST", "/events", json=event)
    assert first.status_code == 201, first.get_json()
    body = first.get_json()
    assert (body["status"], body["customer_id"], "warning" in body) == ("created", cid, False)
    repeat = api("POST", "/events", json=event)
    assert repeat.status_code == 200
    assert repeat.get_json() == {**body, "status": "duplicate"}
    other = api("POST", "/events", json={**event, "name": "custom.community.signin"})
    assert other.status_code == 409 and other.get_json()["errors"][0]["code"] == "idempotency_conflict"
    with app.extensions["promoflow"].session_factory() as s:
        assert s.scalars(select(Event.id).where(Event.idempotency_key == "join-1")).all() == [body["id"]]
    worker_tick(NOW + timedelta(minutes=1))
    assert "community_member" in _tags(app, cid)
    assert _outbox(app, cid) == [("community_welcome", "wecom")]


def test_referral_event_acts(api, app, worker_tick) -> None:
    cid = api("POST", "/customers", json={"external_id": "REF1", "consent": {"wecom": True}}).get_json()["id"]
    worker_tick(NOW + timedelta(minutes=1))  # the welcome journey
    posted = api("POST", "/events", json={"name": "custom.referral.converted", "customer_id": cid,
                                          "idempotency_key": "ref-1", "data": {"referred": "13900000000"}})
    assert posted.status_code == 201
    worker_tick(NOW + timedelta(minutes=2))
    assert "referrer" in _tags(app, cid)
    assert ("referral_thanks", "wecom") in _outbox(app, cid)
    with app.extensions["promoflow"].session_factory() as s:
        pools = {c.pool_id for c in s.scalars(select(Coupon).where(Coupon.customer_id == cid))}
    assert "referral_reward20" in pools


def test_names_are_checked_against_the_catalog(api) -> None:
    cid = api("POST", "/customers", json={"phone": "13800000002"}).get_json()["id"]
    base = {"customer_id": cid, "idempotency_key": "k"}
    reserved = api("POST", "/events", json={**base, "name": "order.created"}).get_json()["errors"][0]
    assert reserved["code"] == "reserved" and "POST /api/v1/orders" in reserved["message"]
    typo = api("POST", "/events", json={**base, "name": "custom.comunity.joined"})
    assert typo.status_code == 201  # stored, a rule may come later, but the client is told
    assert "did you mean `custom.community.joined`" in typo.get_json()["warning"]
    bad = api("POST", "/events", json={**base, "idempotency_key": "k2", "name": "custm.community.joined"})
    assert bad.status_code == 422
    assert "did you mean `custom.community.joined`" in bad.get_json()["errors"][0]["message"]
    missing = api("POST", "/events", json={"name": "custom.community.joined", "customer_id": 99999,
                                           "idempotency_key": "k3"})
    assert missing.status_code == 422 and missing.get_json()["errors"][0]["code"] == "not_found"
    no_key = api("POST", "/events", json={"name": "custom.community.joined", "customer_id": cid})
    assert no_key.get_json()["errors"][0]["field"] == "idempotency_key"


def test_event_batch_has_a_result_per_item(api, app, worker_tick) -> None:
    ids = [r["id"] for r in api("POST", "/customers", json={"items": [
        {"phone": f"1380000010{i}", "consent": {"wecom": True}} for i in range(3)]}).get_json()["results"]]
    items = [{"name": "custom.community.signin", "customer_id": cid, "idempotency_key": f"s-{cid}",
              "data": {"streak": 7}} for cid in ids]
    items.insert(1, {"name": "custom.community.signin", "customer": {"phone": "12"}, "idempotency_key": "bad"})
    items.append(items[0])  # a retry inside the batch
    body = api("POST", "/events", json={"items": items}).get_json()
    assert [r["status"] for r in body["results"]] == ["created", "error", "created", "created", "duplicate"]
    assert body["results"][1]["errors"][0]["field"] == "customer"
    assert api("POST", "/events", json={"items": [items[0]] * 1001}).status_code == 413
