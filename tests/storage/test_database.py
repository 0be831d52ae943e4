"""Engine setup per backend, URL handling for subprocesses, and transactions."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from engine.storage.database import make_engine, normalize_url, transaction
from engine.storage.models import User

NOW = datetime(2025, 1, 1)


def test_postgresql_url_uses_psycopg3() -> None:
    assert normalize_url("postgresql://u@h:5432/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("sqlite:///x.db").drivername == "sqlite"


def test_sqlite_pragmas_and_parent_dir(tmp_path: Path) -> None:
    path = tmp_path / "instance" / "nested" / "promoflow.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            pragmas = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
            }
        assert pragmas == {
            "journal_mode": "wal",
            "foreign_keys": 1,
            "busy_timeout": 5000,
            "synchronous": 1,
        }
        assert path.exists()
    finally:
        engine.dispose()


def test_url_alone_selects_the_isolated_schema(db_url: str, db_engine: Engine) -> None:
    """A plain URL string, as handed to a CLI subprocess, reaches the test's database."""
    with db_engine.begin() as conn:
        conn.execute(
            User.__table__.insert().values(username="probe", created_at=NOW)  # type: ignore[attr-defined]
        )
    code = (
        "import sys\n"
        "from sqlalchemy import text\n"
        "from engine.storage.database import make_engine\n"
        "e = make_engine(sys.argv[1])\n"
        "with e.connect() as c:\n"
        "    print(c.execute(text('SELECT username FROM users')).scalar_one())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, db_url], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "probe"
    if db_engine.dialect.name == "postgresql":
        with db_engine.connect() as conn:
            schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        assert schema.startswith("pf_test_") and schema in db_url


def test_transaction_commits_or_rolls_back(session_factory: sessionmaker[Session]) -> None:
    with transaction(session_factory) as session:
        session.add(User(username="kept", created_at=NOW))
    with pytest.raises(KeyError), transaction(session_factory) as session:
        session.add(User(username="dropped", created_at=NOW))
        session.flush()
        raise KeyError("fail after the insert reached the database")
    with session_factory() as session:
        assert session.scalars(select(User.username)).all() == ["kept"]


def test_foreign_keys_are_enforced(session_factory: sessionmaker[Session]) -> None:
    with pytest.raises(IntegrityError), transaction(session_factory) as session:
        session.add(User(username="orphan", manager_id=999, created_at=NOW))
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 0


def test_savepoint_rolls_back_only_the_nested_part(session_factory: sessionmaker[Session]) -> None:
    with transaction(session_factory) as session:
        session.add(User(username="outer", created_at=NOW))
        session.flush()
        with pytest.raises(RuntimeError), session.begin_nested():
            session.add(User(username="inner", created_at=NOW))
            session.flush()
            raise RuntimeError
    with session_factory() as session:
        assert session.scalars(select(User.username)).all() == ["outer"]


def test_sqlite_writers_in_one_process_queue_on_a_lock(tmp_path) -> None:
    """A second writer thread waits for the first to commit instead of sleeping
    in SQLite's busy handler; a nested transaction in the same thread is fine."""
    import threading
    import time as _time

    from sqlalchemy import text as _text

    from engine.storage.database import make_engine, make_session_factory, transaction

    engine = make_engine(f"sqlite:///{tmp_path / 'lock.sqlite'}")
    with engine.begin() as conn:
        conn.execute(_text("CREATE TABLE t (n INTEGER)"))
    factory = make_session_factory(engine)
    order: list[str] = []
    inside = threading.Event()

    def second() -> None:
        inside.wait()
        with transaction(factory) as session:
            order.append("second")
            session.execute(_text("INSERT INTO t VALUES (2)"))

    worker = threading.Thread(target=second)
    worker.start()
    with transaction(factory) as session:
        session.execute(_text("INSERT INTO t VALUES (1)"))
        inside.set()
        _time.sleep(0.2)                   # the other thread is now waiting on the lock
        order.append("first")
        with transaction(factory):          # re-entrant in the same thread
            pass
    worker.join(5)
    assert order == ["first", "second"]
    with engine.connect() as conn:
        assert conn.execute(_text("SELECT count(*) FROM t")).scalar() == 2
    engine.dispose()
