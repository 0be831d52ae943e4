"""Concurrent redemptions never spend the same points twice: eight tills
redeem 30 points each at once from a balance of 100 (three lots), and the
same idempotency key sent twice at once spends once. SQLite and PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from flask import Flask

from .support import bearer, customer, ledger_sum, order


def test_concurrent_redemptions_spend_each_point_once(app: Flask, tokens, services) -> None:
    client, auth = app.test_client(), bearer(tokens["till"])
    for i, (amount, day) in enumerate((("40.00", "2025-02-01"), ("35.00", "2025-02-10"), ("25.00", "2025-02-20"))):
        assert client.post("/api/v1/orders", json=order(f"C{i}", amount, placed_at=f"{day} 12:00"),
                           headers=auth).status_code == 201
    zhang = customer(services.session_factory, "M001").id

    def redeem(key: str, points: int = 30) -> int:
        with app.test_client() as c:
            return c.post("/api/v1/points/redeem", json={"customer_id": zhang, "points": points,
                                                         "idempotency_key": key}, headers=auth).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(redeem, [f"K{i}" for i in range(8)]))
    assert sorted(codes) == [201, 201, 201, 422, 422, 422, 422, 422], codes
    assert customer(services.session_factory, "M001").points == 10 == ledger_sum(services.session_factory, zhang)
    # One request sent twice at once (a till retrying): spent once, the other answered with the first result.
    with ThreadPoolExecutor(max_workers=2) as pool:
        twice = list(pool.map(lambda _: redeem("SAME", 5), range(2)))
    assert sorted(twice) == [200, 201], twice
    assert customer(services.session_factory, "M001").points == 5 == ledger_sum(services.session_factory, zhang)
