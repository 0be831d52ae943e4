"""Nothing done twice under concurrency: clients racing to create the same
new customer make one customer and one customer.registered event; racing
retries of one event store it once. Both databases."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from engine.storage.models import Customer, Event


def _race(app, tokens, path: str, bodies: list[dict], n: int = 6) -> list[int]:
    barrier = threading.Barrier(n)
    statuses: list[int] = []
    lock = threading.Lock()

    def go(i: int) -> None:
        client = app.test_client()
        barrier.wait()
        response = client.post("/api/v1" + path, json=bodies[i % len(bodies)],
                               headers={"Authorization": f"Bearer {tokens['pos']}"})
        with lock:
            statuses.append(response.status_code)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(statuses)


def test_racing_upserts_make_one_customer(app, tokens) -> None:
    bodies = [{"phone": "13800000001", "name": "甲"}, {"phone": "+86 138 0000 0001", "email": "a@example.com"},
              {"phone": "13800000001", "member_no": "M1"}]
    statuses = _race(app, tokens, "/customers", bodies)
    assert statuses.count(201) == 1 and statuses.count(200) == 5, statuses
    with app.extensions["promoflow"].session_factory() as s:
        assert s.scalar(select(func.count()).select_from(Customer)) == 1
        assert s.scalar(select(func.count()).select_from(Event).where(Event.name == "customer.registered")) == 1


def test_racing_event_retries_store_once(app, tokens, api) -> None:
    cid = api("POST", "/customers", json={"phone": "13800000002"}).get_json()["id"]
    event = {"name": "custom.referral.converted", "customer_id": cid, "idempotency_key": "race-1"}
    statuses = _race(app, tokens, "/events", [event])
    assert statuses == [200] * 5 + [201], statuses
    with app.extensions["promoflow"].session_factory() as s:
        assert s.scalar(select(func.count()).select_from(Event).where(Event.idempotency_key == "race-1")) == 1
