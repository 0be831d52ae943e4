"""The audit log is append-only, enforced by the database on both backends."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from engine.storage.audit import append_audit
from engine.storage.database import transaction
from engine.storage.models import AuditEntry

NOW = datetime(2025, 3, 1, 8, 30, tzinfo=timezone(timedelta(hours=8)))


def _append_one(session_factory: sessionmaker[Session]) -> int:
    with transaction(session_factory) as session:
        return append_audit(
            session,
            at=NOW,
            actor="alice",
            action="record.created",
            entity_type="record",
            entity_id=42,
            diff={"budget": [None, 5000]},
        )


def test_append_stores_naive_utc_and_text_id(session_factory: sessionmaker[Session]) -> None:
    entry_id = _append_one(session_factory)
    with session_factory() as session:
        row = session.get(AuditEntry, entry_id)
        assert row is not None
        assert row.at == datetime(2025, 3, 1, 0, 30)  # 08:30 +08:00 as naive UTC
        assert (row.actor, row.action, row.entity_type, row.entity_id) == (
            "alice",
            "record.created",
            "record",
            "42",
        )
        assert row.diff == {"budget": [None, 5000]}


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log"],
    ids=["update", "delete"],
)
def test_database_rejects_rewriting_history(
    db_engine: Engine, session_factory: sessionmaker[Session], statement: str
) -> None:
    _append_one(session_factory)
    with pytest.raises(DBAPIError, match="append-only"), db_engine.begin() as conn:
        conn.execute(text(statement))
    with session_factory() as session:
        assert session.scalars(select(AuditEntry.actor)).all() == ["alice"]


def test_orm_update_is_rejected_too(session_factory: sessionmaker[Session]) -> None:
    entry_id = _append_one(session_factory)
    with pytest.raises(DBAPIError, match="append-only"):
        with transaction(session_factory) as session:
            row = session.get(AuditEntry, entry_id)
            assert row is not None
            row.action = "forged"
    with session_factory() as session:
        assert session.scalars(select(AuditEntry.action)).one() == "record.created"


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # TRUNCATE exists only on PostgreSQL
def test_postgresql_rejects_truncate(
    db_engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    assert db_engine.dialect.name == "postgresql"
    _append_one(session_factory)
    with pytest.raises(DBAPIError, match="append-only"), db_engine.begin() as conn:
        conn.execute(text("TRUNCATE audit_log"))
    with session_factory() as session:
        assert len(session.scalars(select(AuditEntry)).all()) == 1


def test_audit_entry_rolls_back_with_its_transaction(
    session_factory: sessionmaker[Session],
) -> None:
    with pytest.raises(RuntimeError), transaction(session_factory) as session:
        append_audit(
            session, at=NOW, actor=None, action="x", entity_type="y", entity_id=None, diff=None
        )
        raise RuntimeError("the change failed")
    with session_factory() as session:
        assert session.scalars(select(AuditEntry)).all() == []


def test_naive_time_is_refused(session: Session) -> None:
    with pytest.raises(ValueError, match="aware"):
        append_audit(
            session,
            at=datetime(2025, 1, 1),
            actor=None,
            action="x",
            entity_type="y",
            entity_id=None,
            diff=None,
        )
