"""Naive-UTC storage convention: helpers and a round trip through both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine.storage.database import transaction
from engine.storage.models import Event
from engine.storage.times import from_db_time, from_db_time_opt, to_db_time, to_db_time_opt

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_to_db_time_converts_to_naive_utc() -> None:
    local = datetime(2025, 6, 1, 9, 30, 15, 123456, tzinfo=SHANGHAI)
    assert to_db_time(local) == datetime(2025, 6, 1, 1, 30, 15, 123456)
    assert to_db_time(local).tzinfo is None
    new_york = datetime(2025, 3, 9, 3, 0, tzinfo=ZoneInfo("America/New_York"))  # just after DST
    assert to_db_time(new_york) == datetime(2025, 3, 9, 7, 0)


def test_from_db_time_marks_utc() -> None:
    value = from_db_time(datetime(2025, 6, 1, 1, 30))
    assert value == datetime(2025, 6, 1, 9, 30, tzinfo=SHANGHAI)
    assert value.utcoffset() == timedelta(0)


def test_wrong_kind_of_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        to_db_time(datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="naive"):
        from_db_time(datetime(2025, 1, 1, tzinfo=UTC))


def test_optional_variants_pass_none() -> None:
    assert to_db_time_opt(None) is None and from_db_time_opt(None) is None
    assert to_db_time_opt(datetime(2025, 1, 1, tzinfo=UTC)) == datetime(2025, 1, 1)
    assert from_db_time_opt(datetime(2025, 1, 1)) == datetime(2025, 1, 1, tzinfo=UTC)


def test_round_trip_through_the_database(session_factory: sessionmaker[Session]) -> None:
    moment = datetime(2025, 12, 31, 23, 59, 59, 999999, tzinfo=SHANGHAI)
    with transaction(session_factory) as session:
        session.add(Event(name="customer.registered", created_at=to_db_time(moment)))
    with session_factory() as session:
        stored = session.scalars(select(Event.created_at)).one()
    assert stored.tzinfo is None
    assert stored == datetime(2025, 12, 31, 15, 59, 59, 999999)
    assert from_db_time(stored) == moment
