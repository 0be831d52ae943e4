"""Set-based inserts that skip rows violating a unique constraint.

Rule entry relies on this: the journey key (rule, subject, period) is unique,
so re-running a rule, or two schedulers racing, inserts each journey once
without reading first. Uses ``INSERT ... ON CONFLICT DO NOTHING``, which both
SQLite (3.24+) and PostgreSQL support through their SQLAlchemy dialects.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Insert, Select, Table, literal_column
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session

# Bound parameters per statement: PostgreSQL's protocol allows 65535; SQLite's
# default limit is 32766 since 3.32 and 999 before.
_PG_MAX_PARAMS = 65535
_SQLITE_MAX_PARAMS = 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999


def insert_ignore(
    session: Session,
    table: Table | type[DeclarativeBase],
    rows: Sequence[Mapping[str, Any]],
) -> int:
    """Insert ``rows`` into ``table``, silently skipping any that hit a unique key.

    All rows must have the same keys. Runs in the caller's transaction and
    returns how many rows were actually inserted.
    """
    if not rows:
        return 0
    target = _table(table)
    dialect = _dialect_name(session)
    max_params = _PG_MAX_PARAMS if dialect == "postgresql" else _SQLITE_MAX_PARAMS
    chunk = max(1, max_params // max(1, len(rows[0])))
    inserted = 0
    for start in range(0, len(rows), chunk):
        stmt = _insert(dialect, target).values([dict(r) for r in rows[start : start + chunk]])
        result = session.execute(stmt.on_conflict_do_nothing())  # type: ignore[attr-defined]
        inserted += result.rowcount  # type: ignore[attr-defined]
    return inserted


def insert_ignore_from_select(
    session: Session,
    table: Table | type[DeclarativeBase],
    columns: Sequence[str],
    select: Select[Any],
) -> int:
    """``INSERT INTO table (columns) SELECT ... ON CONFLICT DO NOTHING``.

    The audience of a rule goes straight from a compiled WHERE clause into
    journeys in one statement, never through Python. Returns rows inserted.
    """
    dialect = _dialect_name(session)
    target = _table(table)
    if dialect == "sqlite":
        # SQLite cannot tell "ON CONFLICT" of the INSERT from a join's ON in a
        # bare SELECT; its documentation prescribes a WHERE clause (here: true).
        select = select.where(_always_true())
    stmt = _insert(dialect, target).from_select(list(columns), select)
    result = session.execute(stmt.on_conflict_do_nothing())  # type: ignore[attr-defined]
    return result.rowcount  # type: ignore[attr-defined,no-any-return]


def _always_true() -> ColumnElement[bool]:
    """A literal ``1 = 1`` condition that every SQLite version parses."""
    return literal_column("1") == literal_column("1")


def _table(table: Table | type[DeclarativeBase]) -> Table:
    if isinstance(table, Table):
        return table
    return table.__table__  # type: ignore[return-value]


def _dialect_name(session: Session) -> str:
    name = session.get_bind().dialect.name
    if name not in ("sqlite", "postgresql"):
        raise NotImplementedError(f"insert_ignore does not support the {name} dialect")
    return name


def _insert(dialect: str, table: Table) -> Insert:
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
