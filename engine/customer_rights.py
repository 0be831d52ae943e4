"""A customer's rights under PIPL: a copy of everything held about them, and
erasure.

Export: one zip with ``customer.json`` (every table's rows, by table) and one
CSV per table, built from :func:`engine.storage.rights_repo.export_rows`, which
finds the tables in the schema (nothing to keep in step by hand).

Erase: identities, profile and free text are anonymised
(:data:`engine.storage.rights_repo.ERASE_POLICY`); consent rows stay as proof
(channel, decision, time, source) on the now anonymous customer row; orders
and aggregates (order count, total spent, RFM) stay; ``erased_at`` is set so
no rule enters the customer again (the entry SQL and the per-journey path
both skip it). On SQLite the erasure runs with ``secure_delete`` on and ends
with a WAL checkpoint, so the values are gone from the file's bytes.

Both are audited; the audit entry names the customer by id only (the audit
log is append-only, so it must not receive what is being erased).
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from engine.storage import rights_repo as repo
from engine.storage.audit import append_audit
from engine.storage.database import transaction
from engine.storage.times import to_db_time

__all__ = ["CustomerNotFound", "ErasureReport", "erase_customer", "export_audited", "export_customer", "export_zip"]


class CustomerNotFound(LookupError):
    def __init__(self, customer_id: int):
        super().__init__(f"no customer {customer_id}")
        self.customer_id = customer_id


@dataclass(frozen=True)
class ErasureReport:
    """What an erasure did: rows changed per table; ``already`` when the
    customer had been erased before (nothing to do, nothing audited twice)."""

    customer_id: int
    touched: dict[str, int]
    already: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"customer_id": self.customer_id, "erased": True, "already": self.already, "touched": self.touched}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False, default=_plain)
    text = str(_plain(value))
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text  # no spreadsheet formulas


def export_customer(session: Session, customer_id: int) -> dict[str, list[dict[str, Any]]]:
    """Every row about the customer by table, JSON-safe. Raises CustomerNotFound."""
    rows = repo.export_rows(session, customer_id)
    if not rows["customers"]:
        raise CustomerNotFound(customer_id)
    return {table: [{k: _plain(v) for k, v in r.items()} for r in found] for table, found in rows.items()}


def export_zip(data: dict[str, list[dict[str, Any]]], *, exported_at: datetime) -> bytes:
    """The export as a zip: ``customer.json`` plus ``<table>.csv`` per table with rows."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("customer.json", json.dumps({"exported_at": exported_at.isoformat(), "tables": data},
                                                     ensure_ascii=False, indent=2, default=_plain))
        for table, rows in sorted(data.items()):
            if not rows:
                continue
            out = io.StringIO()
            writer = csv.writer(out)
            columns = list(rows[0])
            writer.writerow(columns)
            for row in rows:
                writer.writerow([_csv_cell(row.get(c)) for c in columns])
            archive.writestr(f"{table}.csv", "\ufeff" + out.getvalue())  # BOM: spreadsheets read Chinese right
    return buffer.getvalue()


def export_audited(session_factory: sessionmaker[Session], customer_id: int, *, now: datetime,
                   actor: str | None, via: str) -> bytes:
    """Export one customer as a zip and audit who took it (``customer.exported``)."""
    with transaction(session_factory) as session:
        data = export_customer(session, customer_id)
        append_audit(session, at=now, actor=actor, action="customer.exported", entity_type="customer",
                     entity_id=customer_id, diff={"via": via, "tables": {k: len(v) for k, v in data.items() if v}})
    return export_zip(data, exported_at=now)


def erase_customer(session_factory: sessionmaker[Session], customer_id: int, *, now: datetime,
                   actor: str | None, via: str) -> ErasureReport:
    """Erase one customer (see the module docstring), audited as ``customer.erased``.

    Idempotent: a second call finds ``erased_at`` set and changes nothing.
    Raises CustomerNotFound.
    """
    db_now = to_db_time(now)
    with transaction(session_factory) as session:
        # Cells are zeroed as the statements free them, so the pragma is back off before the commit.
        repo.sqlite_secure_delete(session, True)
        try:
            row = repo.exists_customer(session, customer_id)
            if row is None:
                raise CustomerNotFound(customer_id)
            if row.get("erased_at") is not None:
                return ErasureReport(customer_id, {}, already=True)
            touched = repo.erase_rows(session, customer_id, db_now)
            repo.mark_erased(session, customer_id, db_now)
            append_audit(session, at=now, actor=actor, action="customer.erased", entity_type="customer",
                         entity_id=customer_id, diff={"via": via, "touched": touched})
        finally:
            repo.sqlite_secure_delete(session, False)
    with session_factory() as session:
        repo.sqlite_checkpoint(session)
    return ErasureReport(customer_id, touched)
