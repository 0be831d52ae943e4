"""CSV and Excel (.xlsx) export of any dashboard table (issue 14, item 5).

Why a BOM on the CSV: Excel on Windows (what most managers open a CSV with)
reads a CSV without one as the ANSI code page and shows Chinese as mojibake;
with ``\\ufeff`` first it reads UTF-8. The xlsx is written with openpyxl with
typed cells (numbers stay numbers, dates are dates, rates carry a percent
format) so a manager can sum and chart it without retyping.

Both exports write the table's machine values (:func:`web.charts.plain_value`),
the same numbers the HTML table's ``data-value`` and the API carry, under the
column labels of the request's language.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from flask import Response

from .charts import Table, plain_value

FORMATS = ("csv", "xlsx")
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
#: Spreadsheet programs run a cell that starts with one of these as a formula
#: (CSV injection); such text cells get a leading apostrophe.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_text(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    if isinstance(value, str) and text.startswith(_FORMULA_START):
        return "'" + text
    return text


def to_csv(table: Table, *, tz: str) -> bytes:
    """The table as UTF-8 CSV with a byte-order mark, header row of labels."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([c.label for c in table.columns])
    for r, row in enumerate(table.rows):
        writer.writerow([_csv_text(plain_value(v, table.kind_at(r, c), tz=tz)) for c, v in enumerate(row)])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def _xlsx_value(value: Any, tz: str) -> Any:
    if value is None:
        return None
    if isinstance(value, datetime):
        local = value.astimezone(ZoneInfo(tz)) if value.tzinfo else value
        return local.replace(tzinfo=None)  # Excel has no time zones: the business zone's wall time
    if isinstance(value, date):
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


_NUMBER_FORMATS = {"percent": "0.0%", "money": "#,##0.00", "int": "#,##0", "number": "#,##0.00",
                   "date": "yyyy-mm-dd", "datetime": "yyyy-mm-dd hh:mm"}


def to_xlsx(table: Table, *, tz: str) -> bytes:
    """The table as a one-sheet workbook: bold header of labels, typed cells."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    sheet = book.active
    sheet.title = (_SAFE.sub("_", table.id) or "table")[:31]
    sheet.append([c.label for c in table.columns])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in table.rows:
        sheet.append([_xlsx_value(v, tz) for v in row])
    for r, cells in enumerate(sheet.iter_rows(min_row=2, max_row=len(table.rows) + 1)):
        for c, cell in enumerate(cells):
            fmt = _NUMBER_FORMATS.get(table.kind_at(r, c))
            if fmt and cell.value is not None:
                cell.number_format = fmt
    sheet.freeze_panes = "A2"
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def filename(table: Table, stem: str, fmt: str) -> str:
    """An ASCII file name: ``<stem>-<table id>.<fmt>``."""
    return f"{_SAFE.sub('_', stem)}-{_SAFE.sub('_', table.id)}.{fmt}"


def export_response(table: Table, fmt: str, *, tz: str, stem: str) -> Response:
    """A download of ``table`` in ``fmt`` (``csv`` or ``xlsx``).

    Raises:
        ValueError: ``fmt`` is not one of :data:`FORMATS` (callers answer 400).
    """
    if fmt == "csv":
        body, mime = to_csv(table, tz=tz), "text/csv; charset=utf-8"
    elif fmt == "xlsx":
        body, mime = to_xlsx(table, tz=tz), XLSX_MIME
    else:
        raise ValueError(f"`format` must be one of {', '.join(FORMATS)}")
    return Response(body, mimetype=mime.split(";")[0], headers={
        "Content-Type": mime,
        "Content-Disposition": f'attachment; filename="{filename(table, stem, fmt)}"',
        "Cache-Control": "no-store",
    })


__all__ = ["FORMATS", "XLSX_MIME", "export_response", "filename", "to_csv", "to_xlsx"]
