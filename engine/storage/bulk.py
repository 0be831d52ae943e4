"""Set-based inserts that skip rows violating a unique constraint.

Rule entry relies on this: the journey key (rule, subject, period) is unique,
so re-running a rule, or two schedulers racing, inserts each journey once
without reading first. Uses ``INSERT ... ON CONFLICT DO NOTHING``, which both
SQLite (3.35+, for RETURNING) and PostgreSQL support through their SQLAlchemy
dialects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, literal_column
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session


def insert_ignore(
    session: Session,
    table: Table | type[DeclarativeBase],
    rows: Sequence[Mapping[str, Any]],
) -> int:
    """Insert ``rows`` into ``table``, silently skipping any that hit a unique key.

    All rows must have the same keys. Runs in the caller's transaction and
    returns how many rows were actually inserted.

    One executemany with ``RETURNING`` of the key: SQLAlchemy batches it into
    multi-row INSERTs ("insertmanyvalues") with a cached compiled statement,
    and the rows returned are exactly the ones inserted, which is a count both
    backends report reliably (rowcount of a multi-row INSERT is not).
    """
    if not rows:
        return 0
    target = _table(table)
    stmt = (
        dialect_insert(dialect_name(session), target)
        .on_conflict_do_nothing()
        .returning(*target.primary_key.columns)
    )
    result = session.connection().execute(stmt, [dict(r) for r in rows])
    return len(result.all())


def insert_ignore_from_select(
    session: Session,
    table: Table | type[DeclarativeBase],
    columns: Sequence[str],
    select: Select[*tuple[Any, ...]],
) -> int:
    """``INSERT INTO table (columns) SELECT ... ON CONFLICT DO NOTHING``.

    The audience of a rule goes straight from a compiled WHERE clause into
    journeys in one statement, never through Python. Returns rows inserted.
    """
    dialect = dialect_name(session)
    target = _table(table)
    if dialect == "sqlite":
        # SQLite cannot tell "ON CONFLICT" of the INSERT from a join's ON in a
        # bare SELECT; its documentation prescribes a WHERE clause (here: true).
        select = select.where(_always_true())
    stmt = dialect_insert(dialect, target).from_select(list(columns), select)
    result = session.connection().execute(
        stmt.on_conflict_do_nothing().execution_options(preserve_rowcount=True)
    )
    return result.rowcount


def _always_true() -> ColumnElement[bool]:
    """A literal ``1 = 1`` condition that every SQLite version parses."""
    return literal_column("1") == literal_column("1")


def _table(table: Table | type[DeclarativeBase]) -> Table:
    if isinstance(table, Table):
        return table
    return table.__table__  # type: ignore[return-value]


def dialect_name(session: Session) -> str:
    name = session.get_bind().dialect.name
    if name not in ("sqlite", "postgresql"):
        raise NotImplementedError(f"insert_ignore does not support the {name} dialect")
    return name


def dialect_insert(dialect: str, table: Table) -> postgresql.Insert | sqlite.Insert:
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
