"""HTML form strings → the payload shape :func:`validate_submission` takes.

Browsers send every value as text, a checkbox only when ticked, a multiselect
as repeated keys and sub-table cells as ``<table>-<row>-<column>``
(``materials-0-qty``). This module only reshapes; it never rejects: a value
that does not parse is passed on as text so the validator reports it with the
same error the API would get. Keys that are not fields (``csrf_token``) are
ignored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from engine.definitions.specs import FieldSpec, FormSpec

_TRUE = {"on", "true", "1", "y", "yes", "checked"}
_INT = re.compile(r"\s*-?\d{1,20}\s*")
_ROW_KEY = re.compile(r"(\d{1,4})-(.+)")
_NAIVE_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?")
_MAX_ROWS = 1_000


class MultiDictLike(Protocol):
    def getlist(self, key: str) -> list[Any]: ...
    def keys(self) -> Any: ...


def _getlist(data: Any, key: str) -> list[Any]:
    if hasattr(data, "getlist"):
        return list(data.getlist(key))
    if key not in data:
        return []
    value = data[key]
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _first(values: list[Any]) -> Any:
    return values[0] if values else None


def _scalar(f: FieldSpec, text: Any, tz: str = "Asia/Shanghai") -> Any:
    if not isinstance(text, str):
        return text
    if text.strip() == "" and f.type not in ("text", "textarea"):
        return None
    if f.type == "integer" or f.type == "customer":
        return int(text) if _INT.fullmatch(text) else text
    if f.type == "number":
        try:
            number = Decimal(text.strip())
        except InvalidOperation:
            return text
        if not number.is_finite():
            return text
        return int(number) if number == number.to_integral_value() and abs(number) < 10**18 else float(number)
    if f.type in ("select", "multiselect"):
        for option in f.option_values:
            if isinstance(option, int) and not isinstance(option, bool) and text.strip() == str(option):
                return option
        return text
    if f.type == "datetime" and _NAIVE_DATETIME.fullmatch(text.strip()):
        # datetime-local inputs send wall-clock time in the site's zone.
        try:
            return datetime.fromisoformat(text.strip()).replace(tzinfo=ZoneInfo(tz)).isoformat()
        except ValueError:
            return text
    if f.type == "file":
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _field(f: FieldSpec, data: Any, name: str, tz: str) -> tuple[bool, Any]:
    """(present, value) of one field under the HTML name ``name``."""
    if f.type == "table":
        return True, _rows(f, data, name, tz)
    values = _getlist(data, name)
    if f.type == "checkbox":
        return True, any(isinstance(v, str) and v.strip().lower() in _TRUE or v is True for v in values)
    if not values:
        return False, None
    if f.type == "multiselect":
        return True, [_scalar(f, v, tz) for v in values if not (isinstance(v, str) and v == "")]
    return True, _scalar(f, _first(values), tz)


def _rows(f: FieldSpec, data: Any, name: str, tz: str) -> list[dict[str, Any]]:
    prefix = name + "-"
    indexes: set[int] = set()
    for key in list(data.keys()):
        if isinstance(key, str) and key.startswith(prefix):
            match = _ROW_KEY.fullmatch(key[len(prefix):])
            if match and match.group(2) in {c.key for c in f.fields}:
                indexes.add(int(match.group(1)))
    rows: list[dict[str, Any]] = []
    for index in sorted(indexes)[:_MAX_ROWS]:
        row: dict[str, Any] = {}
        filled = False
        for column in f.fields:
            present, value = _field(column, data, f"{prefix}{index}-{column.key}", tz)
            if not present:
                continue
            row[column.key] = value
            if column.type != "checkbox" and value not in (None, "", []):
                filled = True
            if column.type == "checkbox" and value:
                filled = True
        if filled:  # a blank row the page shows for adding is not a row
            rows.append({k: v for k, v in row.items() if v is not None})
    return rows


def coerce_form_data(
    form: FormSpec, data: MultiDictLike | Mapping[str, Any], *, tz: str = "Asia/Shanghai", only: set[str] | None = None,
) -> dict[str, Any]:
    """The payload for ``validate_submission`` from HTML form data.

    ``data`` is a werkzeug ``MultiDict`` (anything with ``getlist``) or a plain
    mapping of name → text or list of texts. Read-only fields are skipped (the
    page shows them; the server decides them). ``only`` limits the fields read
    (for a partial edit page). An empty text input becomes ``""`` for text
    fields and ``None`` otherwise; both mean "no value" to the validator.
    """
    payload: dict[str, Any] = {}
    for f in form.fields:
        if f.readonly or (only is not None and f.key not in only):
            continue
        present, value = _field(f, data, f.key, tz)
        if present:
            payload[f.key] = value
    return payload


__all__ = ["coerce_form_data"]
