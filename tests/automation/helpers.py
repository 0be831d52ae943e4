"""Building customers, consents and orders for the engine's automation unit
tests (entry, fast path, segment change …): fixture state written straight
into the tables, i.e. history seeding. Scenario tests (test_scenario*.py) do
not use it: their customers come through ``POST /api/v1/customers`` or the
CSV import with ``history=True`` (scenario_support.import_members)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from engine.storage.models import Consent, Customer, CustomerTag, Order, User
from engine.storage.times import to_db_time


def add_customer(session: Session, cid: int, *, now: datetime, last_order: datetime | None = None,
                 consents: dict[str, bool] | None = None, tags: tuple[str, ...] = (), birthday: date | None = None,
                 contract_end: date | None = None, account_manager_id: int | None = None, **extra: Any) -> None:
    stamp = to_db_time(now)
    session.add(Customer(id=cid, name=f"客户{cid}", phone=f"1380000{cid:04d}", email=f"c{cid}@example.com",
                         birthday=birthday, contract_end=contract_end, account_manager_id=account_manager_id,
                         last_purchase_at=to_db_time(last_order) if last_order else None,
                         order_count=1 if last_order else 0, timezone="Asia/Shanghai",
                         created_at=stamp, updated_at=stamp, **extra))
    session.flush()
    if last_order is not None:
        session.add(Order(customer_id=cid, amount=Decimal(100), placed_at=to_db_time(last_order),
                          created_at=stamp))
    for channel, granted in (consents or {}).items():
        session.add(Consent(customer_id=cid, channel=channel, granted=granted, updated_at=stamp))
    for tag in tags:
        session.add(CustomerTag(customer_id=cid, tag=tag))
    session.flush()


def add_user(session: Session, uid: int, username: str, now: datetime) -> None:
    session.add(User(id=uid, username=username, created_at=to_db_time(now)))
    session.flush()


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
