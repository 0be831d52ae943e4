"""Fixtures shared by every test suite.

``db_url`` runs a test once per backend (ids ``sqlite`` and ``postgresql``);
``db_engine`` / ``session_factory`` / ``session`` give it a freshly migrated,
isolated database. Isolation on PostgreSQL is a throw-away schema selected via
``?options=-csearch_path=...`` in the URL, so the same URL string works in a
subprocess (CLI tests) through ``engine.storage.database.make_engine``.

PostgreSQL comes from ``PROMOFLOW_TEST_PG_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``). If it is unreachable the
``postgresql`` cases are skipped, except when ``CI=true``: there they fail, so a
green CI run means both databases passed.
"""

from __future__ import annotations

import io
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from alembic import command
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from engine.storage.database import make_engine, make_session_factory
from engine.storage.migrate import alembic_config, upgrade

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
BACKENDS = ("sqlite", "postgresql")


def pg_base_url() -> str:
    """The PostgreSQL server URL the tests use (without a schema)."""
    return os.environ.get("PROMOFLOW_TEST_PG_URL", DEFAULT_PG_URL)


def with_search_path(url: str, schema: str) -> str:
    """Return ``url`` with libpq ``options`` that make ``schema`` the search_path."""
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options={quote(f'-csearch_path={schema}', safe='')}"


@pytest.fixture(scope="session")
def _pg_admin() -> Iterator[Engine | str]:
    """An engine on the PostgreSQL server, or the reason it cannot be reached."""
    engine = make_engine(pg_base_url(), pool_pre_ping=False, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "no server"
        engine.dispose()
        first_line = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""])[0]
        yield f"PostgreSQL unreachable at {pg_base_url()}: {first_line}"
        return
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per session; each test gets a copy."""
    path = tmp_path_factory.mktemp("sqlite_template") / "template.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    try:
        upgrade(engine)
        with engine.connect() as conn:
            # Fold the WAL into the main file so copying that one file is enough.
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()
    return path


@pytest.fixture(scope="session")
def _pg_upgrade_sql() -> str:
    """The PostgreSQL DDL of ``alembic upgrade head``, rendered once (offline mode).

    Replaying this script in a fresh schema takes a fraction of an online
    upgrade (which reflects and checks as it goes), keeping per-test setup
    well under 0.5 s. The migration tests still run the online upgrade.
    """
    buffer = io.StringIO()
    config = alembic_config()
    config.output_buffer = buffer
    config.set_main_option("sqlalchemy.url", "postgresql+psycopg://")
    command.upgrade(config, "head", sql=True)
    lines = [ln for ln in buffer.getvalue().splitlines() if ln.strip() not in ("BEGIN;", "COMMIT;")]
    return "\n".join(lines)


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty, isolated database URL per backend (not migrated).

    SQLite: a fresh file under ``tmp_path``. PostgreSQL: a fresh schema
    ``pf_test_<random>``, dropped with CASCADE after the test.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'promoflow.sqlite'}"
        return
    admin = request.getfixturevalue("_pg_admin")
    if isinstance(admin, str):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{admin} (CI=true: PostgreSQL cases must run)")
        pytest.skip(admin)
    schema = f"pf_test_{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield with_search_path(pg_base_url(), schema)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


@pytest.fixture
def db_engine(request: pytest.FixtureRequest, db_url: str) -> Iterator[Engine]:
    """An engine on a database migrated to head, disposed after the test.

    SQLite copies a file migrated once per session; PostgreSQL replays the
    upgrade script rendered once per session into the test's fresh schema.
    """
    if db_url.startswith("sqlite"):
        template: Path = request.getfixturevalue("_sqlite_template")
        target = Path(db_url.removeprefix("sqlite:///"))
        shutil.copyfile(template, target)
        engine = make_engine(db_url)
    else:
        engine = make_engine(db_url)
        ddl: str = request.getfixturevalue("_pg_upgrade_sql")
        with engine.begin() as conn:
            conn.exec_driver_sql(ddl)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def session_factory(db_engine: Engine) -> sessionmaker[Session]:
    """The application's session factory bound to the test database."""
    return make_session_factory(db_engine)


@pytest.fixture
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session for the test body; rolled back and closed afterwards."""
    with session_factory() as sess:
        yield sess
        sess.rollback()
