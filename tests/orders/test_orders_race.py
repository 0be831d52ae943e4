"""Two tills push the same batch at the same moment: every order is stored
once, counted once and announced once (``order.created``); the loser's items
answer ``existing``. On PostgreSQL the two transactions really overlap (the
second INSERT waits on the first's unique keys, finds them taken and the batch
is read again); on SQLite writers queue. Both databases."""

from __future__ import annotations

import threading
from decimal import Decimal

from flask import Flask

from .support import bearer, customer, events, order


def test_same_batch_from_two_tills_at_once(app: Flask, tokens, services) -> None:
    auth = bearer(tokens["till"])
    batch = [order(f"R{i:03d}", customer={"external_id": f"M00{1 + i % 5}"}, amount="10.00", lines=None)
             for i in range(200)]
    barrier = threading.Barrier(2)
    answers: list[dict] = []
    lock = threading.Lock()

    def push() -> None:
        client = app.test_client()
        barrier.wait()
        response = client.post("/api/v1/orders/batch", json={"orders": batch}, headers=auth)
        assert response.status_code == 200, response.text
        with lock:
            answers.append(response.get_json())

    threads = [threading.Thread(target=push) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(answers) == 2
    created = sum(a["counts"]["created"] for a in answers)
    existing = sum(a["counts"]["existing"] for a in answers)
    assert (created, existing) == (200, 200)
    ids = [{r["index"]: r["id"] for r in a["results"]} for a in answers]
    assert ids[0] == ids[1]  # both answers name the same stored orders
    assert len(events(services.session_factory, "order.created")) == 200
    for k in range(1, 6):
        person = customer(services.session_factory, f"M00{k}")
        assert (person.order_count, person.total_spent) == (40, Decimal("400.00"))
