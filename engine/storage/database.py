"""Engines, sessions and transactions for SQLite and PostgreSQL.

One ``make_engine(url)`` hides the per-backend setup so callers (web, worker,
CLI, tests) only ever pass a URL string around, e.g. to a subprocess.
"""

from __future__ import annotations

import threading
import weakref

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from engine.private_files import FOLDER_MODE, secure_sqlite_files

SQLITE_BUSY_TIMEOUT_MS = 5000
#: WAL pages after which a committing connection checkpoints the WAL into the
#: database (SQLite's default is 1,000). With ``synchronous=NORMAL`` a commit
#: itself does not wait for the disk; the checkpoint does (fsyncs, 10-250 ms
#: on the test machine), inside whichever request's commit crosses the mark,
#: while it holds the writer lock. Measured: the median commit took 0.015 ms,
#: the mean 0.25-0.5 ms, nearly all of it in the 1 % of commits that
#: checkpointed. A redemption dirties several pages (the coupon, its partial
#: indexes, the event, the attempt), so a till crossed the default mark often.
#: Hot pages are rewritten in the WAL many times between checkpoints, so a
#: 10x rarer checkpoint costs about as much each: ~10x less per commit. The
#: WAL stays bounded (~40 MB at 4 KiB pages) and is reused after a checkpoint.
SQLITE_WAL_AUTOCHECKPOINT_PAGES = 10_000


def normalize_url(url: str | URL) -> URL:
    """Return ``url`` with the driver we support made explicit.

    ``postgresql://`` (what users and ops tools write) becomes
    ``postgresql+psycopg://`` because psycopg 3 is the only PostgreSQL driver
    we depend on; SQLAlchemy would otherwise pick psycopg2.
    """
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


#: Execution option of a SQLite connection whose transaction writes (see ``transaction``).
IMMEDIATE_OPTION = "promoflow_sqlite_immediate"


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    """Create an Engine for a SQLite or PostgreSQL URL.

    SQLite: creates the file's parent folder (0700 when new) and the file
    (0600, and tightens an existing one and its WAL/SHM), and on every new connection turns
    on WAL (readers never block the writer), foreign keys (off by default in
    SQLite), a 5 s busy timeout, ``synchronous=NORMAL`` (safe with WAL) and a
    rarer WAL checkpoint (``SQLITE_WAL_AUTOCHECKPOINT_PAGES``). The
    driver's own transaction handling is switched off and we emit ``BEGIN``
    ourselves, so DDL is transactional and SAVEPOINTs work as on PostgreSQL.

    PostgreSQL: psycopg 3; connection options such as
    ``?options=-csearch_path%3Dmy_schema`` in the URL pass through to libpq.
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _make_sqlite_engine(parsed, **kwargs)
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(parsed, **kwargs)


def _make_sqlite_engine(url: URL, **kwargs: Any) -> Engine:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        path = Path(database).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True, mode=FOLDER_MODE)
        secure_sqlite_files(path)  # 0600 before SQLite opens it; WAL and SHM inherit the mode (issue 16)
    connect_args = dict(kwargs.pop("connect_args", {}))
    connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_MS / 1000)
    # Most recently used connection first: its page cache is the warm one
    # (SQLite drops a connection's cache whenever another connection wrote).
    kwargs.setdefault("pool_use_lifo", True)
    engine = create_engine(url, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Autocommit at the driver level: we issue BEGIN in the "begin" hook.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_WAL_AUTOCHECKPOINT_PAGES}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A write transaction takes the write lock at once (BEGIN IMMEDIATE):
        # a deferred one that read first cannot wait for another *process*'s
        # write (SQLITE_BUSY at once, no busy timeout) — several web
        # processes on one SQLite file (issue 17). Sent on the driver
        # connection itself: through ``exec_driver_sql`` this one word cost as
        # much as a till's redemption statement (a full execution context and
        # result object for every transaction).
        immediate = connection.get_execution_options().get(IMMEDIATE_OPTION)
        connection.connection.dbapi_connection.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Return the session factory every caller should use.

    ``expire_on_commit=False`` so objects read in a transaction stay usable after
    it commits (services return them to views and tests).
    """
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def transaction(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    """Run a block in one transaction: commit if it returns, roll back if it raises.

    This is the unit of work of the design's "two walks": a record, its audit
    entry, its event and its outbox rows commit together or not at all.
    """
    session = session_factory()
    lock = writer_lock(session.get_bind())
    if lock is not None:
        lock.acquire()
    outermost = lock is not None and not getattr(_nesting, "depth", 0)
    if lock is not None:
        _nesting.depth = getattr(_nesting, "depth", 0) + 1
    try:
        if outermost:
            # Only the thread's outermost write transaction: a nested one
            # (another connection) would wait on the outer one's own lock.
            session.connection(execution_options={IMMEDIATE_OPTION: True})
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
        if lock is not None:
            _nesting.depth -= 1
            lock.release()


@contextmanager
def connection_transaction(session_factory: sessionmaker[Session]) -> Iterator[Connection]:
    """:func:`transaction` on a Core connection instead of an ORM session, for
    a hot path of a few Core statements (a till's redemption): the same
    writer queue, BEGIN (IMMEDIATE when outermost, see there) and
    commit-or-rollback, without the session's unit of work around them,
    which cost a third of such a request."""
    engine: Engine = session_factory.kw["bind"]
    lock = writer_lock(engine)
    if lock is not None:
        lock.acquire()
    outermost = lock is not None and not getattr(_nesting, "depth", 0)
    if lock is not None:
        _nesting.depth = getattr(_nesting, "depth", 0) + 1
    try:
        with engine.connect() as conn:
            if outermost:
                conn.execution_options(**{IMMEDIATE_OPTION: True})
            with conn.begin():
                yield conn
    finally:
        if lock is not None:
            _nesting.depth -= 1
            lock.release()


_nesting = threading.local()  # write transactions this thread has open (SQLite)

#: What a unit of work hands the code inside it: an ORM session
#: (:func:`transaction`) or a Core connection (:func:`connection_transaction`).
#: Engine code outside engine/storage types against this name rather than
#: importing SQLAlchemy's Connection (docs/architecture.md: SQL stays here).
SessionOrConnection = Session | Connection
_WRITER_LOCKS: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()
_WRITER_LOCKS_GUARD = threading.Lock()


def writer_lock(bind: Any) -> Any:
    """SQLite lets one connection write at a time. Threads of one process queue
    on a lock instead of in SQLite's busy handler, which sleeps in growing steps
    (1, 2, 5, 10 … ms) and under contention spends more time asleep than
    writing. Other processes are still arbitrated by SQLite (busy timeout).
    Re-entrant, so a nested ``transaction`` in one thread behaves as before."""
    engine = getattr(bind, "engine", bind)
    if not isinstance(engine, Engine) or engine.dialect.name != "sqlite":
        return None
    with _WRITER_LOCKS_GUARD:
        lock = _WRITER_LOCKS.get(engine)
        if lock is None:
            lock = _WRITER_LOCKS[engine] = threading.RLock()
        return lock
