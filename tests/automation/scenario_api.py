"""The product's HTTP API next to a scenario's fake clock: the Flask app on the
scenario's database with the shipped library published, and a token per role,
so scenario tests submit what people and tills submit through the same door.

The helpers (:meth:`Api.customer`, :meth:`Api.order`, :meth:`Api.event`,
:meth:`Api.redeem`) are the integration token's calls of docs/data-in.md and
docs/redemption.md; each asserts the product accepted the call, so a scenario
cannot silently go on without the fact it meant to create."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from flask.testing import FlaskClient

from engine.library import library_paths
from engine.publishing import publish_paths
from engine.settings import Settings
from web import create_app

#: The till / shop integration every scenario has (docs/data-in.md: a user with the `integration` role).
TILL = "till"


class Api:
    """``api.post(path, json, as_="staff", at=now)``: one request as that user at that time."""

    def __init__(self, db_url: str, instance: Path, now: datetime, users: dict[str, list[str]] | None = None,
                 extra: tuple[Path, ...] = ()):
        """``extra``: definition files published with the shipped library. A
        ``till`` user with the ``integration`` role is always added."""
        self.now = now
        settings = Settings(instance_path=instance, database_url=db_url, secret_key="scenario-secret",
                            timezone="Asia/Shanghai", locale="zh")
        clock: Callable[[], datetime] = lambda: self.now
        self.app = create_app({"TESTING": True, "MIGRATE": False, "CLOCK": clock,
                               "PASSWORD_HASHER": PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)},
                              settings=settings)
        services = self.app.extensions["promoflow"]
        publish_paths(services.session_factory, [*library_paths(), *extra], now=now, by="scenario")
        self.tokens: dict[str, str] = {}
        for name, roles in {TILL: ["integration"], **(users or {})}.items():
            services.accounts.add_user(name, roles=roles, password=None, now=now)
            self.tokens[name] = services.accounts.create_token(name, now=now)
        self.client: FlaskClient = self.app.test_client()

    def get(self, path: str, *, as_: str) -> Any:
        return self.client.get(path, headers={"Authorization": f"Bearer {self.tokens[as_]}"})

    def post(self, path: str, body: Any, *, as_: str, at: datetime) -> Any:
        self.now = at
        return self.client.post(path, json=body, headers={"Authorization": f"Bearer {self.tokens[as_]}"})

    def patch(self, path: str, body: Any, *, as_: str, at: datetime) -> Any:
        self.now = at
        return self.client.patch(path, json=body, headers={"Authorization": f"Bearer {self.tokens[as_]}"})

    # The integration's calls -------------------------------------------------------------------

    def customer(self, body: dict[str, Any], *, at: datetime, expect: int = 201) -> int:
        """``POST /api/v1/customers``; the customer's id. A new customer emits ``customer.registered``."""
        answer = self.post("/api/v1/customers", body, as_=TILL, at=at)
        assert answer.status_code == expect, answer.json
        return int(answer.json["id"])

    def order(self, customer_id: int, external_id: str, amount: str | int, *, at: datetime,
              placed_at: datetime | None = None, **extra: Any) -> dict[str, Any]:
        """``POST /api/v1/orders`` (source ``till``); ``extra``: coupon_code, store, channel …"""
        body = {"source": "till", "external_id": external_id, "customer_id": customer_id, "amount": str(amount),
                "placed_at": (placed_at or at).isoformat(), **extra}
        answer = self.post("/api/v1/orders", body, as_=TILL, at=at)
        assert answer.status_code == 201, answer.json
        return dict(answer.json)

    def event(self, name: str, customer_id: int, *, at: datetime, key: str, **data: Any) -> None:
        """``POST /api/v1/events``: a ``custom.*`` event with an idempotency key."""
        body = {"name": name, "customer_id": customer_id, "idempotency_key": key, "data": data}
        answer = self.post("/api/v1/events", body, as_=TILL, at=at)
        assert answer.status_code in (200, 201), answer.json
        assert answer.json["status"] != "duplicate", answer.json

    def redeem(self, code: str, customer_id: int, *, at: datetime, order_id: str, amount: str | int,
               store: str = "sh_xujiahui", device: str = "till-01") -> dict[str, Any]:
        """``POST /api/v1/coupons/redeem`` at a store's till; asserts ``redeemed``."""
        body = {"code": code, "customer_id": customer_id, "order_id": order_id, "order_amount": str(amount),
                "store": store, "device": device}
        answer = self.post("/api/v1/coupons/redeem", body, as_=TILL, at=at)
        assert answer.status_code == 200 and answer.json["status"] == "redeemed", answer.json
        return dict(answer.json)
