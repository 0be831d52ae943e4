"""Importing custom events from a CSV file (``promoflow events import``).

Columns (a header row names them; any order):

================  ================================================================
name              the event, ``custom.<name>`` (required)
customer_id       the customer's promoflow id, or one identity column:
external_id, member_no, wecom_userid, phone, email
idempotency_key   optional; without it a key is derived from the row's content,
                  so importing the same file twice stores each event once
occurred_at       when it happened (local time of the installation's zone, or
                  with an offset); default: the import time
any other column  a value in the event's ``data`` (text), e.g. ``streak``
================  ================================================================

Rows go through :func:`engine.events_in.post_events`, like the REST API.
``history``: a back-fill; events are stored as already handled, so no rule
acts on them and nothing is sent. The file is UTF-8 or GBK/GB18030 (detected,
:mod:`engine.csv_text`).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Collection
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.csv_text import CsvEncodingError, detect_encoding
from engine.customers_import import ImportError_, RowError
from engine.customers_in import IDENTITY_KINDS
from engine.events_in import InvalidEvent, content_key, parse_event, post_events
from engine.storage.database import transaction

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

__all__ = ["EventsReport", "import_events"]

BATCH = 1000
_RESERVED = ("name", "customer_id", "idempotency_key", "occurred_at", *IDENTITY_KINDS)


class EventsReport:
    def __init__(self) -> None:
        self.rows = 0
        self.created = 0
        self.duplicates = 0
        self.errors: list[RowError] = []
        self.warnings: set[str] = set()
        self.encoding = "UTF-8"


def _item(cell: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": cell.get("name") or None}
    if cell.get("customer_id"):
        text = cell["customer_id"]
        out["customer_id"] = int(text) if text.isdigit() else text
    identity = {k: cell[k] for k in IDENTITY_KINDS if cell.get(k)}
    if identity:
        out["customer"] = identity
    if cell.get("idempotency_key"):
        out["idempotency_key"] = cell["idempotency_key"]
    if cell.get("occurred_at"):
        out["occurred_at"] = cell["occurred_at"]
    data = {k: v for k, v in cell.items() if k not in _RESERVED and v}
    if data:
        out["data"] = data
    return out


def import_events(session_factory: sessionmaker[Session], path: str | Path, *, now: datetime, listened: Collection[str],
                  timezone: str = "Asia/Shanghai", history: bool = False, encoding: str | None = None,
                  batch: int = BATCH, progress: Callable[[int], None] | None = None) -> EventsReport:
    """Import ``path``; see the module notes.

    Raises:
        ImportError_: no header, no name column, no customer column, or an unreadable encoding.
    """
    report = EventsReport()
    try:
        detected = detect_encoding(path, encoding)
    except CsvEncodingError as exc:
        raise ImportError_(str(exc)) from None
    report.encoding = detected.label
    line = 0
    source = "import:history" if history else "import"
    try:
        with open(path, encoding=detected.encoding, newline="") as stream:
            reader = csv.DictReader(stream)
            if not reader.fieldnames:
                raise ImportError_("the file is empty: the first line must name the columns")
            names = [(n or "").strip().lower() for n in reader.fieldnames]
            if "name" not in names:
                raise ImportError_("no `name` column: each row is an event named custom.<name>")
            if not {"customer_id", *IDENTITY_KINDS} & set(names):
                raise ImportError_("no customer column: add customer_id, external_id, member_no, wecom_userid, "
                                   "phone or email")
            reader.fieldnames = names
            pending: list[tuple[int, dict[str, Any]]] = []
            line = reader.line_num
            for raw in reader:
                start, line = line + 1, reader.line_num
                report.rows += 1
                cell = {k: (v or "").strip() for k, v in raw.items() if k is not None}
                pending.append((start, _item(cell)))
                if len(pending) >= batch:
                    _write(session_factory, pending, report, now, listened, timezone, source, history)
                    if progress:
                        progress(len(pending))
                    pending = []
            if pending:
                _write(session_factory, pending, report, now, listened, timezone, source, history)
                if progress:
                    progress(len(pending))
    except UnicodeDecodeError:
        raise ImportError_(f"near line {line + 1}: the file is not {detected.label} throughout; save it as UTF-8 "
                           f"or pass --encoding gb18030") from None
    return report


def _write(session_factory: sessionmaker[Session], rows: list[tuple[int, dict[str, Any]]], report: EventsReport,
           now: datetime, listened: Collection[str], timezone: str, source: str, history: bool) -> None:
    parsed: list[Any] = []
    for line, item in rows:
        key = content_key("csv", item.get("name"), item.get("customer_id"), item.get("customer"),
                          item.get("occurred_at"), item.get("data"))
        try:
            event = parse_event(item, listened=listened, timezone=timezone, default_key=key)
            if event.warning:
                report.warnings.add(event.warning)
            parsed.append(event)
        except InvalidEvent as exc:
            report.errors.append(RowError(line, "; ".join(f"{p.field}: {p.message}" for p in exc.problems)))
            parsed.append(None)
    with transaction(session_factory) as session:
        outcomes = post_events(session, parsed, now=now, source=source, history=history)
    for (line, _), event, outcome in zip(rows, parsed, outcomes):
        if event is None:
            continue
        if outcome.status == "created":
            report.created += 1
        elif outcome.status == "duplicate":
            report.duplicates += 1
        else:
            report.errors.append(RowError(line, "; ".join(f"{p.field}: {p.message}" for p in outcome.problems)))
