"""Helpers for the loyalty tests: the clock, members to import, order bodies,
the product's scheduler tick, and readers of what the product stored."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine.storage.models import Customer, PointsEntry
from web.scheduler import SchedulerHost
from web.worker import tick_functions

HERE = Path(__file__).resolve().parent
NOW = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai

CUSTOMERS_CSV = """external_id,name,phone,email,consent_sms
M001,张三,13800000001,zhang@example.com,yes
M002,李四,13800000002,,yes
M003,王五,13800000003,,no
"""


class Clock:
    def __init__(self, now: datetime = NOW):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def order(external_id: str, amount: str, *, member: str = "M001", placed_at: str = "2025-02-28 15:30",
          **extra: Any) -> dict[str, Any]:
    return {"source": "pos", "external_id": external_id, "customer": {"external_id": member}, "amount": amount,
            "placed_at": placed_at, **extra}


def customer(sf: sessionmaker[Session], external_id: str) -> Customer:
    with sf() as s:
        return s.scalars(select(Customer).where(Customer.external_id == external_id)).one()


def ledger_sum(sf: sessionmaker[Session], customer_id: int) -> int:
    """The balance as the sum of the ledger's amounts (one of the three ways it is kept)."""
    with sf() as s:
        return int(s.scalar(select(func.coalesce(func.sum(PointsEntry.amount), 0))
                            .where(PointsEntry.customer_id == customer_id)) or 0)


def tick(app: Flask, only: tuple[str, ...] = ("automation", "loyalty")) -> Any:
    """One scheduler tick of the product (without delivery: no provider is reachable from tests)."""
    services = app.extensions["promoflow"]
    ticks = [t for t in tick_functions(services) if t[0] in only]
    result = SchedulerHost(services.session_factory.kw["bind"], ticks, clock=services.now, host_id="test").tick()
    assert not result.errors, result.errors
    return result
