"""Helpers for the condition tests: a fixed clock and small inserters."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import delete, insert
from sqlalchemy.orm import Session

from engine.storage.models import Consent, Customer, CustomerTag, Record

NOW = datetime(2025, 6, 15, 10, 30, tzinfo=UTC)
EPOCH = datetime(2025, 1, 1)


@pytest.fixture
def now() -> datetime:
    return NOW


def insert_customers(session: Session, customers: Iterable[Mapping[str, Any]]) -> list[int]:
    """Insert customers given in predicate-row shape (``tags`` list, ``consent`` dict).

    ``consent`` values may be ``None`` to mean "no row". Returns the ids.
    """
    ids = []
    for index, given in enumerate(customers, start=1):
        row = dict(given)
        tags = row.pop("tags", None) or []
        consent = row.pop("consent", None) or {}
        row.setdefault("id", index)
        row.setdefault("created_at", EPOCH)
        row.setdefault("updated_at", EPOCH)
        session.execute(insert(Customer.__table__).values(**row))
        for tag in dict.fromkeys(tags):
            session.execute(insert(CustomerTag.__table__).values(customer_id=row["id"], tag=tag))
        for channel, granted in consent.items():
            if granted is not None:
                session.execute(
                    insert(Consent.__table__).values(
                        customer_id=row["id"], channel=channel, granted=granted, updated_at=EPOCH
                    )
                )
        ids.append(row["id"])
    session.flush()
    return ids


def insert_records(session: Session, datas: Iterable[Mapping[str, Any]], form_id: str = "f") -> list[int]:
    """Insert records with the given ``data``; returns the ids (1, 2, …)."""
    ids = []
    for index, data in enumerate(datas, start=1):
        session.execute(
            insert(Record.__table__).values(
                id=index, form_id=form_id, form_version=1, data=dict(data),
                created_at=EPOCH, updated_at=EPOCH,
            )
        )
        ids.append(index)
    session.flush()
    return ids


def clear(session: Session) -> None:
    """Remove every customer and record inserted by these helpers."""
    for model in (Consent, CustomerTag, Customer, Record):
        session.execute(delete(model.__table__))
    session.flush()
