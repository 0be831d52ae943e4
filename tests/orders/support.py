"""Helpers for the orders tests: the clock, customers to import, a rule on
``order.created``, readers of what the product stored."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine.storage.models import Customer, CustomerTag, Event

HERE = Path(__file__).resolve().parent
RULES = HERE / "rules.yaml"
NOW = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai

CUSTOMERS_CSV = """external_id,name,phone,email
M001,张三,13800000001,zhang@example.com
M002,李四,13800000002,
M003,王五,13800000003,
M004,赵六,13800000004,
M005,钱七,13800000005,
"""


class Clock:
    def __init__(self, now: datetime = NOW):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def order(external_id: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source": "pos", "external_id": external_id, "customer": {"external_id": "M001"},
        "lines": [{"sku": "SKU-1", "name": "咖啡豆", "quantity": 2, "unit_price": "49.00"}],
        "amount": "88.00", "discount": "10.00", "store": "SH01", "channel": "store",
        "placed_at": "2025-02-28 15:30", "coupon_code": "WB20KBEV2MSTRH",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def customer(sf: sessionmaker[Session], external_id: str) -> Customer:
    with sf() as s:
        return s.scalars(select(Customer).where(Customer.external_id == external_id)).one()


def events(sf: sessionmaker[Session], name: str) -> list[Event]:
    with sf() as s:
        return list(s.scalars(select(Event).where(Event.name == name).order_by(Event.id)))


def tags(sf: sessionmaker[Session], customer_id: int) -> set[str]:
    with sf() as s:
        return set(s.scalars(select(CustomerTag.tag).where(CustomerTag.customer_id == customer_id)))
