"""SQL of a customer's rights (PIPL): find, export and anonymise everything
held about one customer (:mod:`engine.customer_rights`).

Which tables hold customer data is read from the schema, as
:func:`engine.storage.merge_repo.customer_columns` does for merges: every
foreign key to ``customers.id`` and every column named ``customer_id``
(high-volume tables carry one without a foreign key), then the tables hanging
off those (message attempts off the outbox, clicks off click links), then the
journeys and events whose subject is the customer. What erasure does to each
table is :data:`ERASE_POLICY`; a table found in the schema without a policy
makes :func:`unpolicied_tables` non-empty, which a test checks, so a table
added later cannot silently keep a customer's data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Column, String, Table, and_, cast, delete, or_, select, text, update
from sqlalchemy.orm import Session

from engine.storage.models import Base, Customer, Event, Journey
from engine.storage.results import affected

__all__ = ["ERASE_POLICY", "ERASED", "Source", "customer_sources", "erase_rows", "exists_customer",
           "export_rows", "mark_erased", "sqlite_secure_delete", "sqlite_checkpoint", "unpolicied_tables"]

_cust: Table = Customer.__table__  # type: ignore[assignment]
_events: Table = Event.__table__  # type: ignore[assignment]
_journeys: Table = Journey.__table__  # type: ignore[assignment]

#: What replaces a required text value that identified the customer (the outbox recipient).
ERASED = "erased"

#: Child columns without a foreign key that point at a customer-holding table
#: (child table, column, parent table): receipts name their message by id only.
_UNCONSTRAINED_CHILDREN = (("message_receipts", "message_id", "outbox"),)

#: Per table what erasure does: ``keep`` (no identity in it once the customer
#: row is anonymised: orders, consent proof), ``delete`` the customer's rows,
#: or a dict of columns to overwrite (None clears). ``customers`` and the
#: subject tables (journeys, events) are handled by their own statements.
ERASE_POLICY: dict[str, str | dict[str, Any]] = {
    "customers": {"name": None, "phone": None, "email": None, "external_id": None, "gender": None, "city": None,
                  "birthday": None, "timezone": None, "attrs": None},
    "customer_identities": "delete",
    "customer_tags": "delete",
    "segment_memory": "delete",
    "consents": "keep",  # channel, decision, source and time stay as proof; the customer row has no identity left
    "orders": "keep",  # amounts and times feed aggregates; the customer row has no identity left
    "coupons": {"redeemed_phone": None},
    "redemption_attempts": {"phone": None},
    "outbox": {"recipient": ERASED, "subject": None, "body": None, "payload": None, "last_error": None},
    "message_attempts": {"error": None},
    "message_receipts": {"payload": None},
    "feedback": {"comment": None, "data": None},
    "tasks": {"title": None, "comment": None},
    "click_links": "keep",  # the campaign's URL and times
    "link_clicks": {"user_agent": None},
    "points_ledger": {"reason": None},  # amounts and days stay (the balance); free-text reasons go
    "journeys": {"state": None},
    "events": {"payload": None},
}


@dataclass(frozen=True)
class Source:
    """Rows of one table about the customer: ``column`` equals the customer id,
    or (``parent``) points at a row of ``parent`` that does."""

    table: Table
    column: str
    parent: Source | None = None

    @property
    def name(self) -> str:
        return self.table.name

    def where(self, customer_id: int) -> Any:
        col: Column[Any] = self.table.c[self.column]
        if self.parent is None:
            return col == customer_id
        return col.in_(select(self.parent.table.c.id).where(self.parent.where(customer_id)))


def customer_sources() -> list[Source]:
    """Every table holding rows about a customer, found in the schema."""
    direct: list[Source] = []
    for table in Base.metadata.sorted_tables:
        if table is _cust or table is _journeys or table is _events:
            continue
        cols = {fk.parent.name for fk in table.foreign_keys if fk.column.table is _cust}
        if "customer_id" in table.c:
            cols.add("customer_id")
        direct.extend(Source(table, c) for c in sorted(cols))
    by_name = {s.name: s for s in direct}
    children: list[Source] = []
    for table in Base.metadata.sorted_tables:
        if table.name in by_name:
            continue
        for fk in table.foreign_keys:
            parent = by_name.get(fk.column.table.name)
            if parent is not None and fk.column.name == "id":
                children.append(Source(table, fk.parent.name, parent))
    for child, column, parent_name in _UNCONSTRAINED_CHILDREN:
        if parent_name in by_name:
            children.append(Source(Base.metadata.tables[child], column, by_name[parent_name]))
    return direct + children


def _subject_where(table: Table, customer_id: int) -> Any:
    if table is _journeys:
        return and_(_journeys.c.subject_type == "customer", _journeys.c.subject_id == customer_id)
    # Events name the customer as their subject, or carry ``customer_id`` in the payload (an order's, a coupon's).
    return or_(and_(_events.c.subject_type == "customer", _events.c.subject_id == str(customer_id)),
               cast(_events.c.payload["customer_id"].as_string(), String) == str(customer_id))


def unpolicied_tables() -> set[str]:
    """Tables holding customer rows that :data:`ERASE_POLICY` says nothing about."""
    return {s.name for s in customer_sources()} - set(ERASE_POLICY)


def exists_customer(session: Session, customer_id: int) -> dict[str, Any] | None:
    row = session.execute(select(_cust).where(_cust.c.id == customer_id).with_for_update()).first()
    return None if row is None else dict(row._mapping)


def export_rows(session: Session, customer_id: int) -> dict[str, list[dict[str, Any]]]:
    """Every row about the customer, by table name (the customer's own row under ``customers``)."""
    out: dict[str, list[dict[str, Any]]] = {
        "customers": [dict(r._mapping) for r in session.execute(select(_cust).where(_cust.c.id == customer_id))]}
    for source in customer_sources():
        stmt = select(source.table).where(source.where(customer_id))
        if "id" in source.table.c:
            stmt = stmt.order_by(source.table.c.id)
        out.setdefault(source.name, []).extend(dict(r._mapping) for r in session.execute(stmt))
    for table in (_journeys, _events):
        stmt = select(table).where(_subject_where(table, customer_id)).order_by(table.c.id)
        out[table.name] = [dict(r._mapping) for r in session.execute(stmt)]
    return out


def erase_rows(session: Session, customer_id: int, db_now: datetime) -> dict[str, int]:
    """Apply :data:`ERASE_POLICY` to every row about the customer (one statement
    per table); running journeys end. Returns rows touched per table."""
    touched: dict[str, int] = {}
    # Children first: their WHERE reads the parent's customer column.
    for source in reversed(customer_sources()):
        policy = ERASE_POLICY[source.name]
        if policy == "keep":
            continue
        if policy == "delete":
            count = affected(session.execute(delete(source.table).where(source.where(customer_id))))
        else:
            assert isinstance(policy, dict)
            count = affected(session.execute(update(source.table).where(source.where(customer_id)).values(policy)))
        touched[source.name] = touched.get(source.name, 0) + int(count or 0)
    mine = _subject_where(_journeys, customer_id)
    session.execute(update(_journeys).where(mine, _journeys.c.status == "active")
                    .values(status="exited", due_at=None, version=_journeys.c.version + 1))
    touched["journeys"] = affected(session.execute(update(_journeys).where(mine).values(ERASE_POLICY["journeys"])))
    touched["events"] = affected(session.execute(update(_events).where(_subject_where(_events, customer_id))
                                                 .values(ERASE_POLICY["events"])))
    return touched


def mark_erased(session: Session, customer_id: int, db_now: datetime) -> None:
    """Anonymise the customer row and set ``erased_at`` (every entry path skips it)."""
    values = dict(ERASE_POLICY["customers"])  # type: ignore[arg-type]
    session.execute(update(_cust).where(_cust.c.id == customer_id).values(**values, erased_at=db_now,
                                                                           updated_at=db_now))


def sqlite_secure_delete(session: Session, on: bool) -> None:
    """SQLite keeps deleted and overwritten cells in free space until reused;
    ``secure_delete`` zeroes them, so an erased value is gone from the file.
    Per connection; PostgreSQL needs nothing here (its dead tuples are not
    dumped, and vacuum reclaims them)."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text(f"PRAGMA secure_delete = {'ON' if on else 'OFF'}"))


def sqlite_checkpoint(session: Session) -> bool:
    """Copy the WAL into the database file and truncate it, so the WAL holds no
    page written before the erasure. False when a reader kept it from finishing."""
    if session.get_bind().dialect.name != "sqlite":
        return True
    busy = session.execute(text("PRAGMA wal_checkpoint(TRUNCATE)")).first()
    return busy is None or int(busy[0]) == 0
