"""Journey entry is idempotent: unique (rule, subject, period) plus insert-ignore."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import func, literal, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from engine.storage.bulk import insert_ignore, insert_ignore_from_select
from engine.storage.database import transaction
from engine.storage.models import Customer, Journey

NOW = datetime(2025, 5, 1, 2, 0)  # naive UTC, as stored


def _journey(subject_id: int, period: str = "2025H1", **extra: Any) -> dict[str, Any]:
    return {
        "rule_id": "winback_90d",
        "rule_version": 1,
        "subject_type": "customer",
        "subject_id": subject_id,
        "period_key": period,
        "entered_at": NOW,
        "due_at": NOW,
        **extra,
    }


def _count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Journey)) or 0


def test_unique_key_rejects_a_second_entry(session_factory: sessionmaker[Session]) -> None:
    with transaction(session_factory) as session:
        session.add(Journey(**_journey(1)))
    with pytest.raises(IntegrityError), transaction(session_factory) as session:
        session.add(Journey(**_journey(1, rule_version=2)))
    with transaction(session_factory) as session:
        session.add(Journey(**_journey(1, period="2025H2")))  # another window is fine
        assert _count(session) == 2


def test_insert_ignore_skips_existing_and_in_batch_duplicates(
    session_factory: sessionmaker[Session],
) -> None:
    with transaction(session_factory) as session:
        assert insert_ignore(session, Journey, [_journey(1), _journey(2)]) == 2
    with transaction(session_factory) as session:
        rows = [_journey(2), _journey(3), _journey(3), _journey(2, period="2025H2")]
        assert insert_ignore(session, Journey.__table__, rows) == 2  # type: ignore[arg-type]
    with session_factory() as session:
        keys = session.execute(
            select(Journey.subject_id, Journey.period_key).order_by(
                Journey.subject_id, Journey.period_key
            )
        ).all()
        assert [tuple(k) for k in keys] == [
            (1, "2025H1"),
            (2, "2025H1"),
            (2, "2025H2"),
            (3, "2025H1"),
        ]
        first = session.scalars(select(Journey).where(Journey.subject_id == 1)).one()
        # server defaults fill what a set-based insert leaves out
        assert (first.status, first.step_index, first.version) == ("active", 0, 1)


def test_insert_ignore_handles_more_rows_than_one_statement_allows(
    session_factory: sessionmaker[Session],
) -> None:
    rows = [_journey(i) for i in range(5000)]  # 8 columns x 5000 > SQLite's 32766 parameters
    with transaction(session_factory) as session:
        assert insert_ignore(session, Journey, rows) == 5000
        assert insert_ignore(session, Journey, rows) == 0
        assert _count(session) == 5000


def test_insert_ignore_of_nothing(session: Session) -> None:
    assert insert_ignore(session, Journey, []) == 0


def test_insert_ignore_from_select_enters_each_customer_once(
    session_factory: sessionmaker[Session],
) -> None:
    with transaction(session_factory) as session:
        session.add_all(
            Customer(name=f"c{i}", city="上海" if i % 2 else "北京", created_at=NOW, updated_at=NOW)
            for i in range(10)
        )
    audience = (
        select(
            literal("winback_90d"),
            literal(1),
            literal("customer"),
            Customer.id,
            literal("2025H1"),
            literal(NOW),
        )
        .select_from(Customer)
        .where(Customer.city == "上海")
    )
    columns = ["rule_id", "rule_version", "subject_type", "subject_id", "period_key", "entered_at"]
    with transaction(session_factory) as session:
        assert insert_ignore_from_select(session, Journey, columns, audience) == 5
    with transaction(session_factory) as session:
        assert insert_ignore_from_select(session, Journey, columns, audience) == 0
        shanghai = set(session.scalars(select(Customer.id).where(Customer.city == "上海")))
        assert set(session.scalars(select(Journey.subject_id))) == shanghai
