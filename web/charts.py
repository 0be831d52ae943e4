"""Dashboard tables and the charts drawn from them (issue 14, item 5).

Why one structure for both: a manager trusts a chart only when its numbers can
be read and exported, so every chart is built *from* a :class:`Table`. The page
shows the table as HTML (accessible, what the tests compare with the API), and
the same rows go as a JSON blob to ``static/charts.js``, which draws them with
the vendored ECharts (``static/vendor/echarts``), and to :mod:`web.table_export`
(CSV, xlsx) and to the report images (:mod:`web.report_images`).

Cells hold raw values (numbers, ``Decimal``, dates, aware datetimes, text,
None); :func:`format_cell` formats them for people (dates in the business time
zone, money with two decimals, rates as percentages) and :func:`plain_value`
keeps the machine value (``data-value`` on each ``<td>``, the JSON blob, the
xlsx cell).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

#: How a column's values are shown (and typed in an export).
KINDS = ("text", "int", "number", "money", "percent", "date", "datetime", "auto")
#: Chart kinds ``static/charts.js`` knows.
CHART_KINDS = ("line", "bar", "funnel", "heatmap", "pie", "sparkline")


@dataclass(frozen=True)
class Column:
    """One column: ``key`` (stable, used by exports and tests), the label shown
    in the request's language, and the kind of its values."""

    key: str
    label: str
    kind: str = "text"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown column kind {self.kind!r}; one of {', '.join(KINDS)}")


@dataclass(frozen=True)
class Table:
    """A titled grid of raw values; ``id`` names it in URLs (``?table=id``) and
    in export file names."""

    id: str
    title: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[Any, ...], ...]
    #: Text shown when there are no rows.
    empty: str = ""
    #: For key/value tables (one metric per row): the kind of each row's
    #: ``auto`` columns, so a rate shows as a percentage and money as yuan.
    row_kinds: tuple[str, ...] = ()
    #: A stable key per row (``data-row`` on the ``<tr>``, for links and tests), or ().
    row_keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        width = len(self.columns)
        for row in self.rows:
            if len(row) != width:
                raise ValueError(f"table {self.id}: a row has {len(row)} cells for {width} columns")
        if any(c.kind == "auto" for c in self.columns) and len(self.row_kinds) != len(self.rows):
            raise ValueError(f"table {self.id}: `auto` columns need one row kind per row")

    def kind_at(self, row: int, column: int) -> str:
        """The kind of one cell: the column's, or the row's for an ``auto`` column."""
        kind = self.columns[column].kind
        return self.row_kinds[row] if kind == "auto" else kind

    def column(self, key: str) -> int:
        """The index of column ``key``.

        Raises:
            KeyError: no such column.
        """
        for i, col in enumerate(self.columns):
            if col.key == key:
                return i
        raise KeyError(f"table {self.id} has no column {key!r}")

    def values(self, key: str) -> list[Any]:
        """Every row's raw value in column ``key``."""
        i = self.column(key)
        return [row[i] for row in self.rows]


@dataclass(frozen=True)
class Chart:
    """A chart of a table: ``x`` is the column along the category axis (the
    cohort column for a heat map), ``series`` the columns drawn (for a heat
    map: the period columns)."""

    id: str
    kind: str
    table: Table
    x: str
    series: tuple[str, ...]
    #: Extra ECharts hints that are data, not code (e.g. ``{"stack": True}``).
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in CHART_KINDS:
            raise ValueError(f"unknown chart kind {self.kind!r}; one of {', '.join(CHART_KINDS)}")
        self.table.column(self.x)
        for key in self.series:
            self.table.column(key)

    @property
    def has_data(self) -> bool:
        """True when some drawn cell holds a number (a chart of dashes only is
        not drawn: its table says "—" better than an empty frame)."""
        return any(_number(v) is not None for key in self.series for v in self.table.values(key))

    def blob(self, *, tz: str, locale: str) -> dict[str, Any]:
        """What ``static/charts.js`` draws: category labels as shown in the
        table, and each series' machine values (None for a gap)."""
        xi = self.table.column(self.x)
        xcol = self.table.columns[xi]
        return {
            "id": self.id,
            "kind": self.kind,
            "title": self.table.title,
            "categories": [format_cell(row[xi], xcol.kind, tz=tz, locale=locale) for row in self.table.rows],
            "series": [
                {"key": key, "name": self.table.columns[self.table.column(key)].label,
                 "kind": self.table.columns[self.table.column(key)].kind,
                 "data": [_number(v) for v in self.table.values(key)]}
                for key in self.series
            ],
            "options": dict(self.options),
            "locale": locale,
        }


def _number(value: Any) -> float | int | None:
    if value is None or isinstance(value, bool):
        return None if value is None else int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, (float, Decimal)):
        return float(value)
    return None


def plain_value(value: Any, kind: str, *, tz: str) -> Any:
    """The machine form of a cell: numbers stay numbers (``Decimal`` as a
    string, so no cent is lost), dates ISO, datetimes ISO in the business time
    zone, None stays None."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return (value.astimezone(ZoneInfo(tz)) if value.tzinfo else value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def format_cell(value: Any, kind: str, *, tz: str, locale: str) -> str:
    """A cell as people read it in ``locale``; None is an em dash."""
    if value is None:
        return "—"
    if kind == "datetime" and isinstance(value, datetime):
        local = value.astimezone(ZoneInfo(tz)) if value.tzinfo else value
        return local.strftime("%Y-%m-%d %H:%M")
    if kind in ("date", "datetime") and isinstance(value, datetime):
        return (value.astimezone(ZoneInfo(tz)) if value.tzinfo else value).date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if kind == "percent" and isinstance(value, (int, float, Decimal)):
        return f"{float(value) * 100:.1f}%"
    if kind == "money" and isinstance(value, (int, float, Decimal)):
        return f"{Decimal(str(value)).quantize(Decimal('0.01')):,}"
    if kind == "int" and isinstance(value, (int, float, Decimal)):
        return f"{int(value):,}"
    if kind == "number" and isinstance(value, (int, float, Decimal)):
        return f"{float(value):,.2f}"
    return str(value)


@dataclass(frozen=True)
class ShownCell:
    text: str
    value: Any
    #: 0–9 for the rates of heat-map tables (a CSS class, since the CSP forbids inline styles), else None.
    heat: int | None = None


def shown_rows(table: Table, *, tz: str, locale: str, heat: bool = False) -> list[list[ShownCell]]:
    """The table's rows as the template prints them: text, ``data-value`` and,
    for a heat map, the shade of each numeric cell relative to the largest."""
    top = 0.0
    if heat:  # shade the rates (retention), not counts beside them
        numbers = [abs(float(v)) for r, row in enumerate(table.rows) for c, v in enumerate(row)
                   if table.kind_at(r, c) == "percent" and _number(v) is not None]
        top = max(numbers, default=0.0)
    out = []
    for r, row in enumerate(table.rows):
        cells = []
        for c, value in enumerate(row):
            kind = table.kind_at(r, c)
            shade = None
            if heat and kind == "percent" and _number(value) is not None and top:
                shade = min(9, int(abs(float(value)) / top * 9.999))
            cells.append(ShownCell(format_cell(value, kind, tz=tz, locale=locale), plain_value(value, kind, tz=tz),
                                   shade))
        out.append(cells)
    return out


def find_table(tables: Sequence[Table], table_id: str) -> Table | None:
    """The table called ``table_id`` among a page's tables, or None."""
    return next((tb for tb in tables if tb.id == table_id), None)


__all__ = [
    "CHART_KINDS",
    "KINDS",
    "Chart",
    "Column",
    "ShownCell",
    "Table",
    "find_table",
    "format_cell",
    "plain_value",
    "shown_rows",
]
