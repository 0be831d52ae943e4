"""Helpers for the dashboard tests: read the KPI tables of a page back as
data (``data-table`` → ``data-row`` → ``data-key`` → ``data-value``), and
compare a page value with the API's."""

from __future__ import annotations

import sys
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any


def real_packaging() -> None:
    """tests/packaging (the wheel test) shadows the installed ``packaging``
    that matplotlib imports, because tests/ is on sys.path: load the real one."""
    saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if not p.rstrip("/").endswith("/tests")]
    try:
        import packaging.version  # noqa: F401
    finally:
        sys.path[:] = saved


class _Tables(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, dict[str, dict[str, str]]] = {}
        self.table: str | None = None
        self.row: str | None = None
        self.rows = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table" and a.get("data-table"):
            self.table = str(a["data-table"])
            self.tables[self.table] = {}
            self.rows = 0
        elif tag == "tr" and self.table is not None and "data-row" in a:
            self.row = str(a["data-row"])
            self.tables[self.table][self.row] = {}
        elif tag == "tr" and self.table is not None:
            self.row = f"#{self.rows}"
            self.rows += 1
        elif tag == "td" and self.table is not None and self.row is not None and "data-key" in a:
            self.tables[self.table].setdefault(self.row, {})[str(a["data-key"])] = str(a.get("data-value") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.table = None
        elif tag == "tr":
            self.row = None


def page_tables(html: str) -> dict[str, dict[str, dict[str, str]]]:
    """Every KPI table of a page: ``{table: {row key: {column key: data-value}}}``."""
    parser = _Tables()
    parser.feed(html)
    return {k: {r: c for r, c in v.items() if c} for k, v in parser.tables.items()}


def same(page_value: str, api_value: Any) -> bool:
    """A ``data-value`` equals the API's value (numbers compared exactly as decimals)."""
    if api_value is None:
        return page_value == ""
    if isinstance(api_value, bool):
        return page_value == str(api_value)
    try:
        return Decimal(page_value) == Decimal(str(api_value))
    except ArithmeticError:
        return page_value == str(api_value)
