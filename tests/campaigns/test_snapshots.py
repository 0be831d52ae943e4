"""KPI snapshots (issue 14, item 4): a page view reads the stored snapshot
(recomputed when its sources moved and it is a minute old); a new order
moves the watermark; the worker's ``campaigns`` tick (run as the scheduler
runs it, on the fake clock) computes missing snapshots and recomputes moved
ones once they are an hour old."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask

from web.worker import tick_functions

from .kpi_fixture import seed
from .support import bearer

HERE = Path(__file__).resolve().parent


@pytest.fixture
def extra_definitions() -> list[Path]:
    return [HERE / "fixture.yaml"]


def test_views_read_the_snapshot_and_the_tick_refreshes_it(app: Flask, tokens: dict[str, str], clock) -> None:
    ids = seed(app, tokens, clock)
    clock.now = datetime(2025, 3, 21, 2, 0, tzinfo=UTC)  # fx is running
    client = app.test_client()
    first = client.get("/api/v1/campaigns/fx/kpis", headers=bearer(tokens["mm"])).get_json()
    assert first["attributed_orders"] == 7
    # c12 redeems its coupon: an order through the API moves the watermark
    order = {"source": "pos", "external_id": "late", "customer_id": ids["c12"], "amount": "66.00",
             "placed_at": clock.now.isoformat(), "coupon_code": "FX000012"}
    assert client.post("/api/v1/orders", headers=bearer(tokens["till"]), json=order).status_code == 201
    again = client.get("/api/v1/campaigns/fx/kpis", headers=bearer(tokens["mm"])).get_json()
    assert again == first  # within a minute of the last computation: the snapshot is served
    ticks = dict(tick_functions(app.extensions["promoflow"]))
    clock.now += timedelta(minutes=2)
    # a page view a minute later recomputes what moved
    fresh = client.get("/api/v1/campaigns/fx/kpis", headers=bearer(tokens["mm"])).get_json()
    assert (fresh["attributed_orders"], fresh["coupons_redeemed"], fresh["attributed_revenue"]) == (8, 4, "816.00")
    assert ticks["campaigns"](clock.now) == 2  # fy and member_winback had no snapshot yet; fx is current
    assert ticks["campaigns"](clock.now + timedelta(minutes=2)) == 0  # nothing moved since
    # another order moves every watermark: the tick recomputes a moved snapshot once it is an hour old
    later = {**order, "external_id": "later", "placed_at": clock.now.isoformat()}
    del later["coupon_code"]
    assert client.post("/api/v1/orders", headers=bearer(tokens["till"]), json=later).status_code == 201
    assert ticks["campaigns"](clock.now + timedelta(minutes=30)) == 0
    assert ticks["campaigns"](clock.now + timedelta(minutes=70)) == 3
