"""The migration creates exactly the models' schema, and can be undone, on both backends."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from engine.storage.database import make_engine
from engine.storage.migrate import alembic_config, current_revision, downgrade, upgrade
from engine.storage.models import Base


def _head() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _schema_diff(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_upgrade_from_empty_matches_models_and_downgrades_to_nothing(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert current_revision(engine) is None
        assert inspect(engine).get_table_names() == []

        upgrade(db_url)  # by URL: the path the CLI takes
        assert current_revision(engine) == _head()
        tables = set(inspect(engine).get_table_names())
        assert tables == set(Base.metadata.tables) | {"alembic_version"}
        assert _schema_diff(engine) == []

        downgrade(engine, "base")
        assert current_revision(engine) is None
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}

        upgrade(engine)  # a downgraded database migrates up again cleanly
        assert current_revision(engine) == _head()
        assert _schema_diff(engine) == []
    finally:
        engine.dispose()


def test_compare_metadata_detects_a_missing_table(db_url: str) -> None:
    """Guards the test above: the comparison really reports differences."""
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE feedback")
        diff = _schema_diff(engine)
        assert any(op[0] == "add_table" and op[1].name == "feedback" for op in diff)
    finally:
        engine.dispose()


def test_fixture_engine_is_at_head(db_engine: Engine) -> None:
    assert current_revision(db_engine) == _head()


def test_fixture_schema_matches_models(db_engine: Engine) -> None:
    """The fast fixture paths (file copy, replayed DDL) build the real schema."""
    assert _schema_diff(db_engine) == []
