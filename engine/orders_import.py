"""Importing orders from a CSV file (``promoflow orders import FILE [--history]``)
through the same code as the API (:class:`engine.orders.OrderService`).

Columns (a header row names them; any order):

=======================  =========================================================
order_id                 required: the order's id in its source
source                   the system it came from (default: ``--source``, ``import``)
customer_id              our customer id, or one of:
customer_external_id,    an identity of a stored customer (an unknown customer
customer_phone,          is reported for its line, never dropped silently)
customer_email
amount                   what was paid (default: the lines' total less the discount)
placed_at                required: 2025-01-31 09:30 (business time), or with an offset
discount, store, channel, campaign, coupon_code
status                   paid (default), partially_refunded, refunded, cancelled
refunded_amount          for partially refunded orders
sku, item_name,          one order line per row: consecutive rows with the same
quantity, unit_price     source and order_id are one order with several lines
=======================  =========================================================

The file may be UTF-8 (with or without a BOM, as Excel's "CSV UTF-8" writes
it) or GBK/GB18030 (what Chinese Excel writes as plain "CSV"); other encodings
are detected when they can be, and otherwise refused with a message saying
which to use. ``history``: a back-fill (years of past orders): the customers'
aggregates and RFM are updated, but no event is appended and nothing is sent.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from engine.customers_import import ImportError_, RowError
from engine.definitions.errors import did_you_mean
from engine.forms.errors import FieldError
from engine.orders import MAX_BATCH, OrderIn, OrderService

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

COLUMNS = ("order_id", "source", "customer_id", "customer_external_id", "customer_phone", "customer_email",
           "amount", "placed_at", "discount", "store", "channel", "campaign", "coupon_code", "status",
           "refunded_amount", "sku", "item_name", "quantity", "unit_price")
_ORDER_TEXT = ("amount", "placed_at", "discount", "store", "channel", "campaign", "coupon_code", "status",
               "refunded_amount")
SAMPLE_BYTES = 256 * 1024
#: Chinese encodings are read as GB18030, their superset.
_GB = {"gbk", "gb2312", "gb18030", "hz", "cp936"}

__all__ = ["COLUMNS", "OrdersImportReport", "detect_encoding", "import_orders"]


@dataclass
class OrdersImportReport:
    rows: int = 0
    orders: int = 0
    created: int = 0
    existing: int = 0
    conflicts: int = 0
    encoding: str = "utf-8"
    errors: list[RowError] = field(default_factory=list)


def detect_encoding(path: str | Path) -> str:
    """The file's text encoding: ``utf-8-sig`` when all of it is UTF-8 (read
    in chunks, so a GBK row deep in a UTF-8 file is found before anything is
    imported), ``gb18030`` for GBK/GB2312/GB18030 (tried first: this is what
    Chinese Excel writes, and short Chinese samples are ambiguous to a
    detector), else what charset-normalizer finds around the first non-UTF-8 byte.

    Raises:
        ImportError_: no encoding fits.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    bad: int | None = None
    with open(path, "rb") as fh:
        while chunk := fh.read(SAMPLE_BYTES):
            try:
                decoder.decode(chunk, final=False)
            except UnicodeDecodeError as exc:
                bad = offset + exc.start
                break
            offset += len(chunk)
        else:
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                bad = max(offset - 4, 0)
        if bad is None:
            return "utf-8-sig"
        fh.seek(max(bad - 4096, 0))
        sample = fh.read(SAMPLE_BYTES)
    try:
        codecs.getincrementaldecoder("gb18030")().decode(sample, final=False)
        return "gb18030"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(sample).best()
    if best is None:
        raise ImportError_("the file is not UTF-8 and its encoding was not recognised: save it from Excel as "
                           "\"CSV UTF-8\" (or as CSV in GB18030/GBK)")
    encoding = best.encoding.lower().replace("-", "").replace("_", "")
    return "gb18030" if encoding in _GB else best.encoding


def _rows(stream: IO[str], path: str | Path, encoding: str) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(stream)
    try:
        names = [(n or "").strip().lower() for n in (reader.fieldnames or [])]
    except UnicodeDecodeError:
        raise ImportError_(f"the file is not valid {encoding}: save it as \"CSV UTF-8\"") from None
    if not names:
        raise ImportError_("the file is empty: the first line must name the columns")
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        raise ImportError_("; ".join(f"unknown column `{n}`{did_you_mean(n, COLUMNS)}" for n in unknown)
                           + f" (columns: {', '.join(COLUMNS)})")
    for needed in ("order_id", "placed_at"):
        if needed not in names:
            raise ImportError_(f"no `{needed}` column")
    reader.fieldnames = names
    line = reader.line_num
    while True:
        try:
            raw = next(reader)
        except StopIteration:
            return
        except UnicodeDecodeError:
            raise ImportError_(f"the file is not valid {encoding} after line {line}: save it as "
                               "\"CSV UTF-8\"") from None
        start = line + 1
        line = reader.line_num
        if None in raw and any((x or "").strip() for x in raw[None]):  # type: ignore[index]
            yield start, {"__error__": "more cells than columns"}
            continue
        yield start, {k: (v or "").strip() for k, v in raw.items() if k is not None}


def _order_body(cell: dict[str, str], source: str) -> dict[str, Any]:
    body: dict[str, Any] = {"source": cell.get("source") or source, "external_id": cell.get("order_id") or None}
    cid = cell.get("customer_id")
    if cid:
        body["customer_id"] = int(cid) if cid.isdigit() else cid
    else:
        ident = {k: cell.get(f"customer_{k}") for k in ("external_id", "phone", "email") if cell.get(f"customer_{k}")}
        if ident:
            body["customer"] = ident
    for key in _ORDER_TEXT:
        if cell.get(key):
            body[key] = cell[key]
    if not cell.get("placed_at"):
        body["placed_at"] = 0  # not a time: reported as such (an empty cell would default to now)
    return body


def _line(cell: dict[str, str]) -> dict[str, Any] | None:
    if not any(cell.get(k) for k in ("sku", "item_name", "quantity", "unit_price")):
        return None
    qty = cell.get("quantity") or "1"
    return {"sku": cell.get("sku") or None, "name": cell.get("item_name") or None,
            "quantity": int(qty) if qty.isdigit() else qty, "unit_price": cell.get("unit_price") or None}


def import_orders(session_factory: sessionmaker[Session], path: str | Path, *, now: datetime,
                  timezone: str = "Asia/Shanghai", history: bool = False, source: str = "import",
                  batch: int = MAX_BATCH, locale: str = "en",
                  progress: Callable[[int], None] | None = None) -> OrdersImportReport:
    """Import ``path``; see the module notes. Bad rows are reported with their
    line and skipped, good ones kept. ``progress(n)`` after each batch with the
    rows it covered.

    Raises:
        ImportError_: the file cannot be read at all (encoding, header).
    """
    from engine.registry import DefinitionRegistry

    registry = DefinitionRegistry(session_factory)
    service = OrderService(session_factory, tz=timezone, coupon_pools=lambda: registry.current().coupon_pools,
                           points_policy=lambda: registry.current().points_policy)
    report = OrdersImportReport(encoding=detect_encoding(path))
    batch = max(1, min(batch, MAX_BATCH))
    pending: list[tuple[int, dict[str, Any]]] = []
    rows_in_batch = 0

    def flush() -> None:
        nonlocal pending, rows_in_batch
        if pending:
            _write(service, pending, report, now=now, history=history, locale=locale)
        if progress and rows_in_batch:
            progress(rows_in_batch)
        pending, rows_in_batch = [], 0

    with open(path, encoding=report.encoding, newline="") as stream:
        for line, cell in _rows(stream, path, report.encoding):
            report.rows += 1
            rows_in_batch += 1
            if "__error__" in cell:
                report.errors.append(RowError(line, cell["__error__"]))
                continue
            body = _order_body(cell, source)
            item = _line(cell)
            last = pending[-1][1] if pending else None
            if (last is not None and item is not None and last["external_id"] == body["external_id"]
                    and last["source"] == body["source"] and "lines" in last):
                last["lines"].append(item)  # another line of the same order
                continue
            if item is not None:
                body["lines"] = [item]
            if len(pending) >= batch:
                rows_in_batch -= 1
                flush()
                rows_in_batch = 1
            pending.append((line, body))
        flush()
    return report


def _write(service: OrderService, pending: list[tuple[int, dict[str, Any]]], report: OrdersImportReport, *,
           now: datetime, history: bool, locale: str) -> None:
    parsed: list[OrderIn | list[FieldError]] = service.parse([body for _, body in pending], now=now)
    results = service.ingest_parsed(parsed, now=now, history=history)
    report.orders += len(pending)
    for (line, body), result in zip(pending, results):
        if result.outcome == "created":
            report.created += 1
        elif result.outcome == "existing":
            report.existing += 1
        elif result.outcome == "conflict":
            report.conflicts += 1
            report.errors.append(RowError(line, f"order `{body['external_id']}` from `{body['source']}` is already "
                                                "stored with other content"))
        else:
            report.errors.append(RowError(line, "; ".join(
                f"{_column(e.field)}: {e.message(locale)}" for e in result.errors)))


def _column(field_name: str) -> str:
    """An API field path as the CSV column a person would fix."""
    anyone = "customer_id/customer_external_id/customer_phone/customer_email"
    names = {"external_id": "order_id", "customer": anyone, "customer_id": anyone,
             "customer.external_id": "customer_external_id", "customer.phone": "customer_phone",
             "customer.email": "customer_email"}
    if field_name.startswith("lines["):
        tail = field_name.split(".", 1)[-1]
        return {"name": "item_name"}.get(tail, tail)
    return names.get(field_name, field_name or "row")
