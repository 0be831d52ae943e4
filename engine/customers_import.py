"""Importing customers and their orders from a CSV file (``promoflow customers import``).

Columns (a header row names them; any order; only the identity is required):

==================  ==============================================================
external_id         your customer id (matched first)
member_no           membership number; wecom_userid: WeCom external userid
                    (matched next, see :mod:`engine.customers_in`)
name, gender, city, level
phone               mainland mobile or +country number; spaces/dashes ignored,
                    ``+86`` dropped (matched after the ids above)
email               matched last, case-insensitive
birthday            2025-01-31 (or 2025/01/31)
registered_at       2025-01-31 09:30 (local time of the installation's zone,
                    or with an offset); a date alone is midnight
contract_end        a date
account_manager     the user name of the customer's account manager
store               the customer's store (role tasks go to its staff)
timezone            an IANA zone for quiet hours, e.g. Asia/Shanghai
tags                separated by ``;`` ``,`` or ``|``; added, never removed
consent_sms, consent_email, consent_wecom
                    1/0, true/false, yes/no, y/n, 是/否; empty: unchanged
order_id, order_amount, order_placed_at
                    one order per row (all three, or none); a stored order id
                    is not imported again
order_channel, order_campaign, order_status (default ``paid``)
==================  ==============================================================

Each row needs ``external_id``, ``member_no``, ``wecom_userid``, ``phone`` or
``email``. The file is UTF-8 (a BOM is fine) or GBK/GB18030 as Chinese Excel
saves it (detected; :mod:`engine.csv_text`). New customers emit
``customer.registered``, so the welcome journey greets them, unless the import
is a ``history`` back-fill. Rows are written through the same upsert as the
REST API (:func:`engine.customers_in.upsert_customers`). Rows of one customer
(several orders) and rows matching a stored customer by external id, phone or
email are merged into that customer: given values replace stored ones, empty
cells keep them. A row whose identities belong to two different stored
customers is refused (merge them first) rather than moving a phone or e-mail
from one to the other. A bad row is reported with its line number and reason and
skipped; good rows are kept. Rows are written in batches (one transaction and
one executemany per table each), then order counts, totals, last purchase and
RFM scores are recomputed for everyone in SQL.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from engine.csv_text import CsvEncodingError, detect_encoding
from engine.customers_in import IDENTITY_KINDS, CustomerInput, upsert_customers
from engine.definitions.errors import did_you_mean
from engine.storage import customers_repo as repo
from engine.storage.database import transaction
from engine.storage.times import to_db_time

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

__all__ = ["COLUMNS", "ImportError_", "ImportReport", "RowError", "import_customers", "parse_row"]

CUSTOMER_COLUMNS = ("external_id", "member_no", "wecom_userid", "name", "phone", "email", "gender", "city", "level", "birthday", "registered_at",
                    "contract_end", "timezone", "tags", "consent_sms", "consent_email", "consent_wecom",
                    "account_manager", "store")
ORDER_COLUMNS = ("order_id", "order_amount", "order_placed_at", "order_channel", "order_campaign", "order_status")
COLUMNS = CUSTOMER_COLUMNS + ORDER_COLUMNS
CONSENT_CHANNELS = ("sms", "email", "wecom")
BATCH = 2000

_TRUE = {"1", "true", "yes", "y", "是", "t"}
_FALSE = {"0", "false", "no", "n", "否", "f"}
_PHONE = re.compile(r"\+?[0-9]{6,20}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_TAG_SPLIT = re.compile(r"[;,|]")
_LIMITS = {"external_id": 128, "member_no": 64, "wecom_userid": 128, "name": 255, "gender": 16, "city": 128, "level": 32, "order_id": 128,
           "order_channel": 32, "order_campaign": 128, "order_status": 32, "account_manager": 128, "store": 64}


class ImportError_(ValueError):
    """The file cannot be imported at all (no header, unknown columns, no identity column)."""


@dataclass(frozen=True)
class RowError:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ImportReport:
    rows: int = 0
    imported: int = 0
    customers_new: int = 0
    customers_updated: int = 0
    orders_new: int = 0
    orders_known: int = 0
    tags_added: int = 0
    errors: list[RowError] = field(default_factory=list)
    #: The encoding the file was read in (``UTF-8``, ``GB18030/GBK`` …).
    encoding: str = "UTF-8"


class _Bad(Exception):
    pass


def _date(text: str, what: str) -> date:
    try:
        return date.fromisoformat(text.replace("/", "-"))
    except ValueError:
        raise _Bad(f"{what} `{text}` is not a date (like 2025-01-31)") from None


def _moment(text: str, what: str, tz: ZoneInfo) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("/", "-"))
    except ValueError:
        raise _Bad(f"{what} `{text}` is not a date and time (like 2025-01-31 09:30)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value


def _bool(text: str, what: str) -> bool:
    low = text.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise _Bad(f"{what} `{text}` is not yes/no (1/0, true/false, 是/否)")


def normalize_phone(text: str) -> str:
    """Digits (and a leading +) only; ``+86``/``0086`` in front of a mainland mobile dropped.

    Raises:
        ValueError: not a phone number.
    """
    compact = re.sub(r"[\s\-()]", "", text)
    if compact.startswith("0086"):
        compact = "+86" + compact[4:]
    if compact.startswith("+86") and len(compact) == 14:
        compact = compact[3:]
    if not _PHONE.fullmatch(compact):
        raise ValueError(text)
    return compact


def parse_row(raw: dict[str, str | None], tz: ZoneInfo) -> dict[str, Any]:
    """One CSV row as clean values (None for empty cells).

    Raises:
        _Bad: with the reason the row is skipped.
    """
    cell = {k: (v or "").strip() for k, v in raw.items() if k is not None}
    if None in raw and any((x or "").strip() for x in (raw[None] or [])):  # type: ignore[index]
        raise _Bad("more cells than columns")
    out: dict[str, Any] = {}
    for key, limit in _LIMITS.items():
        value = cell.get(key) or None
        if value is not None and len(value) > limit:
            raise _Bad(f"{key} is longer than {limit} characters")
        out[key] = value
    phone = cell.get("phone")
    try:
        out["phone"] = normalize_phone(phone) if phone else None
    except ValueError:
        raise _Bad(f"phone `{phone}` is not a phone number") from None
    email = cell.get("email")
    if email and not _EMAIL.fullmatch(email):
        raise _Bad(f"email `{email}` is not an email address")
    out["email"] = email.lower() if email else None
    if not any(out[k] for k in ("external_id", "member_no", "wecom_userid", "phone", "email")):
        raise _Bad("no external_id, phone or email to identify the customer")
    out["birthday"] = _date(cell["birthday"], "birthday") if cell.get("birthday") else None
    out["contract_end"] = _date(cell["contract_end"], "contract_end") if cell.get("contract_end") else None
    out["registered_at"] = (to_db_time(_moment(cell["registered_at"], "registered_at", tz))
                            if cell.get("registered_at") else None)
    zone_name = cell.get("timezone") or None
    if zone_name:
        try:
            ZoneInfo(zone_name)
        except (KeyError, ValueError):
            raise _Bad(f"timezone `{zone_name}` is not a time zone (like Asia/Shanghai)") from None
    out["timezone"] = zone_name
    tags = [t.strip() for t in _TAG_SPLIT.split(cell.get("tags", "")) if t.strip()]
    for tag in tags:
        if len(tag) > 64:
            raise _Bad(f"tag `{tag[:20]}…` is longer than 64 characters")
    out["tags"] = tags
    out["consents"] = {ch: _bool(cell[f"consent_{ch}"], f"consent_{ch}")
                       for ch in CONSENT_CHANNELS if cell.get(f"consent_{ch}")}
    order_cells = [cell.get(k) for k in ("order_id", "order_amount", "order_placed_at")]
    if any(order_cells):
        if not all(order_cells):
            missing = [k for k, v in zip(("order_id", "order_amount", "order_placed_at"), order_cells) if not v]
            raise _Bad(f"an order needs order_id, order_amount and order_placed_at: {', '.join(missing)} empty")
        try:
            amount = Decimal(cell["order_amount"].replace(",", ""))
        except InvalidOperation:
            raise _Bad(f"order_amount `{cell['order_amount']}` is not a number") from None
        if not amount.is_finite() or amount < 0 or amount >= Decimal("1e12"):
            raise _Bad(f"order_amount `{cell['order_amount']}` is out of range")
        out["order"] = {"external_id": out["order_id"], "amount": amount.quantize(Decimal("0.01")),
                        "placed_at": to_db_time(_moment(cell["order_placed_at"], "order_placed_at", tz)),
                        "channel": out["order_channel"], "campaign": out["order_campaign"],
                        "status": out["order_status"] or "paid"}
    else:
        out["order"] = None
    return out


def _rows(stream: IO[str]) -> Iterator[tuple[int, dict[str, str | None]]]:
    reader = csv.DictReader(stream)
    if not reader.fieldnames:
        raise ImportError_("the file is empty: the first line must name the columns")
    names = [(n or "").strip().lower() for n in reader.fieldnames]
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        raise ImportError_("; ".join(f"unknown column `{n}`{did_you_mean(n, COLUMNS)}" for n in unknown)
                           + f" (columns: {', '.join(COLUMNS)})")
    if not {"external_id", "member_no", "wecom_userid", "phone", "email"} & set(names):
        raise ImportError_("no identity column: add external_id, phone or email (or member_no, wecom_userid)")
    reader.fieldnames = names
    line = reader.line_num
    for raw in reader:
        start = line + 1
        line = reader.line_num
        yield start, raw


def import_customers(session_factory: sessionmaker[Session], path: str | Path, *, now: datetime,
                     timezone: str = "Asia/Shanghai", batch: int = BATCH, source: str = "import",
                     progress: Callable[[int], None] | None = None, history: bool = False,
                     encoding: str | None = None) -> ImportReport:
    """Import ``path`` (UTF-8 with or without a BOM, or GBK/GB18030 as Chinese
    Excel writes it: detected, or ``encoding``); see the module notes.
    ``progress(n)`` is called after each batch with the rows it covered.
    New customers emit ``customer.registered`` (the welcome journey acts on
    them) unless ``history``: a back-fill of past customers emits nothing.

    Raises:
        ImportError_: the header or the encoding is unusable (nothing was imported,
        or, for a bad byte further down, the batches before it).
    """
    tz = ZoneInfo(timezone)
    report = ImportReport()
    db_now = to_db_time(now)
    try:
        detected = detect_encoding(path, encoding)
    except CsvEncodingError as exc:
        raise ImportError_(str(exc)) from None
    report.encoding = detected.label
    line = 0
    try:
        with open(path, encoding=detected.encoding, newline="") as stream:
            pending: list[tuple[int, dict[str, Any]]] = []
            seen = 0
            for line, raw in _rows(stream):
                report.rows += 1
                seen += 1
                try:
                    pending.append((line, parse_row(raw, tz)))
                except _Bad as exc:
                    report.errors.append(RowError(line, str(exc)))
                if len(pending) >= batch:
                    _write_batch(session_factory, pending, report, now, source, history)
                    pending = []
                    if progress:
                        progress(seen)
                    seen = 0
            if pending:
                _write_batch(session_factory, pending, report, now, source, history)
            if progress and seen:
                progress(seen)
    except UnicodeDecodeError:
        raise ImportError_(f"near line {line + 1}: the file is not {detected.label} throughout; save it as UTF-8 "
                           f"(Excel: “CSV UTF-8”) or pass --encoding gb18030") from None
    with transaction(session_factory) as session:
        repo.recompute_aggregates(session, db_now=db_now)
    return report


def _customer_input(row: dict[str, Any], source: str) -> CustomerInput:
    """A parsed row as the shared upsert's item: given values replace, empty cells keep."""
    identity = {k: row[k] for k in IDENTITY_KINDS if row.get(k)}
    fields = {f: row[f] for f in repo.IMPORT_FIELDS if row.get(f) is not None}
    item = CustomerInput(identity=identity, fields=fields, tags=tuple(row["tags"]),
                         consents={ch: (granted, source) for ch, granted in row["consents"].items()})
    if row.get("account_manager"):
        item.account_manager, item.account_manager_given = row["account_manager"], True
    if row.get("store"):
        item.attrs = {"store": row["store"]}
    return item


def _write_batch(session_factory: sessionmaker[Session], rows: list[tuple[int, dict[str, Any]]],
                 report: ImportReport, now: datetime, source: str, history: bool) -> None:
    db_now = to_db_time(now)
    with transaction(session_factory) as session:
        counts: dict[str, int] = {}
        outcomes = upsert_customers(session, [_customer_input(r, source) for _, r in rows], now=now,
                                    source=source, history=history, counts=counts)
        orders = {}
        created = {o.customer_id for o in outcomes if o.status == "created"}
        updated: set[int] = set()
        for (line, row), outcome in zip(rows, outcomes):
            if outcome.status == "error":
                report.errors.append(RowError(line, "; ".join(f"{p.field}: {p.message}" if p.field else p.message
                                                              for p in outcome.problems)))
                continue
            report.imported += 1
            if outcome.customer_id not in created:
                updated.add(outcome.customer_id)  # type: ignore[arg-type]
            if row["order"] is not None:
                orders[row["order"]["external_id"]] = {**row["order"], "customer_id": outcome.customer_id,
                                                       "created_at": db_now}
        n = repo.insert_orders(session, list(orders.values()))
        report.orders_new += n
        report.orders_known += len(orders) - n
        report.customers_new += len(created)
        report.customers_updated += len(updated)
        report.tags_added += counts.get("tags_added", 0)
