"""Helpers for the dispatcher tests: outbox rows, memory connectors, reading rows back."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from connectors.memory import MemoryConnector
from engine.definitions.specs import ConnectorSpec
from engine.storage import outbox_repo
from engine.storage.database import transaction
from engine.storage.models import OutboxMessage
from engine.storage.times import to_db_time

NOW = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai


def memory(connector_id: str = "mem", *, channel: str = "sms", max_attempts: int = 8, max_batch: int = 100,
           send_window: Any = None) -> MemoryConnector:
    spec = ConnectorSpec(id=connector_id, type="memory", channel=channel, settings={"max_batch": max_batch},
                         max_attempts=max_attempts, send_window=send_window)
    return MemoryConnector(spec, {})


def add_rows(session_factory: sessionmaker[Session], n: int, *, connector: str = "mem", channel: str = "sms",
             delivery_class: str = "marketing", customer_ids: Iterable[int | None] | None = None,
             now: datetime = NOW, prefix: str = "k") -> None:
    customers = list(customer_ids) if customer_ids is not None else [None] * n
    stamp = to_db_time(now)
    rows = [{
        "channel": channel, "connector": connector, "recipient": f"1380000{i:04d}", "body": f"hello {i}",
        "payload": {"template_code": "SMS_200"}, "idempotency_key": f"{prefix}-{i}",
        "delivery_class": delivery_class, "status": "queued", "attempts": 0, "next_attempt_at": stamp,
        "created_at": stamp, "customer_id": customers[i],
    } for i in range(n)]
    with transaction(session_factory) as session:
        for start in range(0, n, 1000):
            outbox_repo.insert_messages(session, rows[start:start + 1000], returning=False)


def rows(session_factory: sessionmaker[Session]) -> list[dict[str, Any]]:
    with session_factory() as session:
        t = OutboxMessage.__table__
        return [dict(r._mapping) for r in session.execute(select(t).order_by(t.c.id))]


def statuses(session_factory: sessionmaker[Session]) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in rows(session_factory):
        out[row["status"]] = out.get(row["status"], 0) + 1
    return out


def events(session_factory: sessionmaker[Session], name: str) -> list[Any]:
    with session_factory() as session:
        return list(session.execute(text("SELECT subject_id, payload FROM events WHERE name = :n"), {"n": name}))
