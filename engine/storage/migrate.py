"""Run Alembic migrations from code, from a source tree or an installed wheel.

The script location is this package's ``migrations`` folder, found relative to
this file, so no ``alembic.ini`` or working directory is needed at runtime.
"""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, text
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


def head_revision() -> str | None:
    """The newest revision the packaged migrations know (what ``upgrade()`` reaches)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


#: PostgreSQL advisory lock key serialising migrations (any stable 63-bit number).
MIGRATION_LOCK_KEY = 0x70726F6D6F6D6967  # "promomig"


def _run(url_or_engine: str | URL | Engine, action: Callable[[Config], None]) -> None:
    """Run ``action`` in one transaction, serialised against other processes
    migrating the same database at once (several web processes and workers
    starting together): PostgreSQL takes a transaction-level advisory lock
    (released at commit); SQLite an exclusive ``flock`` on a file beside the
    database. The second one in waits, then finds the schema at head."""
    owned = not isinstance(url_or_engine, Engine)
    engine = url_or_engine if isinstance(url_or_engine, Engine) else make_engine(url_or_engine)
    try:
        with _sqlite_file_lock(engine), engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            config = alembic_config()
            config.attributes["connection"] = conn
            action(config)
    finally:
        if owned:
            engine.dispose()


@contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    """An exclusive lock on ``<database>.migrate.lock`` (SQLite files only; the
    kernel drops it if the process dies). Threads each open their own file
    description, so they exclude each other too."""
    database = engine.url.database or ""
    if engine.dialect.name != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        yield
        return
    path = Path(database).expanduser().resolve()
    with open(path.with_name(path.name + ".migrate.lock"), "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
