"""Run Alembic migrations from code, from a source tree or an installed wheel.

The script location is this package's ``migrations`` folder, found relative to
this file, so no ``alembic.ini`` or working directory is needed at runtime.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from engine.storage.database import make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config() -> Config:
    """Return an in-memory Alembic Config pointing at the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade(url_or_engine: str | URL | Engine, revision: str = "head") -> None:
    """Migrate the database up to ``revision`` (default: the newest).

    Runs in one transaction on both backends (DDL is transactional on SQLite
    with our engine setup and on PostgreSQL), so a failing migration leaves the
    schema as it was.
    """
    _run(url_or_engine, lambda cfg: command.upgrade(cfg, revision))


def downgrade(url_or_engine: str | URL | Engine, revision: str = "base") -> None:
    """Migrate the database down to ``revision`` (default: an empty schema)."""
    _run(url_or_engine, lambda cfg: command.downgrade(cfg, revision))


def current_revision(engine: Engine) -> str | None:
    """Return the revision the database is at, or None if it was never migrated."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _run(url_or_engine: str | URL | Engine, action: Callable[[Config], None]) -> None:
    owned = not isinstance(url_or_engine, Engine)
    engine = url_or_engine if isinstance(url_or_engine, Engine) else make_engine(url_or_engine)
    try:
        with engine.begin() as conn:
            config = alembic_config()
            config.attributes["connection"] = conn
            action(config)
    finally:
        if owned:
            engine.dispose()
