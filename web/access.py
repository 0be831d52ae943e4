"""What the HTML pages and the API share: finding forms, permission checks,
list queries from request arguments, uploads and display of stored values."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from engine.accounts import Principal, can_list, can_submit, can_view_all
from engine.definitions.specs import FieldSpec, FormSpec
from engine.forms.types import file_accepted
from engine.private_files import private_dir, private_file

from . import services

MAX_PER_PAGE = 200
DEFAULT_PER_PAGE = 20
#: Query arguments that are not ``field=value`` filters.
RESERVED_ARGS = frozenset({"where", "sort", "page", "per_page", "lang", "mine", "format", "q", "unmask"})
#: How a yes/no query argument (``?mine=``) may be written; empty is no.
TRUE_ARGS = frozenset({"1", "true", "yes", "on"})
FALSE_ARGS = frozenset({"", "0", "false", "no", "off"})
_SORT = re.compile(r"-?[A-Za-z_][A-Za-z0-9_.]{0,127}")


class BadQuery(ValueError):
    """A list query argument is malformed; the message says which and why."""


def published_forms() -> list[FormSpec]:
    """Every published form, by id."""
    forms = services().registry.current().forms
    return [forms[k] for k in sorted(forms)]


def fillable_forms(user: Principal) -> list[FormSpec]:
    return [f for f in published_forms() if can_submit(user, f)]


def listable_forms(user: Principal) -> list[FormSpec]:
    return [f for f in published_forms() if can_list(user, f)]


@dataclass(frozen=True)
class ListQuery:
    where: Any
    created_by: str | None
    sort: str
    page: int
    per_page: int
    #: The keyword (``q``) the record's text fields must contain, or None.
    search: str | None = None


def _int_arg(args: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = args.get(name)
    if raw is None:
        return default
    try:
        value = int(str(raw))
    except ValueError:
        raise BadQuery(f"`{name}` must be a whole number") from None
    if not lo <= value <= hi:
        raise BadQuery(f"`{name}` must be between {lo} and {hi}")
    return value


#: The largest page number a list accepts (a larger one is a 400, not an
#: OFFSET the database cannot hold).
MAX_PAGE = 1_000_000
#: Days a date filter accepts: wide enough for any real query, narrow enough
#: that a day ± 1 and its time-zone shift stay inside Python's and the
#: databases' date range (0001-01-01 and 9999-12-31 gave 500s).
MIN_DAY = date(1900, 1, 1)
MAX_DAY = date(9998, 12, 31)


def page_arg(args: Mapping[str, str], name: str = "page") -> int:
    """The page number asked for (1 when absent).

    Raises:
        BadQuery: not a whole number, or outside 1 … MAX_PAGE.
    """
    return _int_arg(args, name, 1, 1, MAX_PAGE)


def day_arg(args: Mapping[str, str], name: str) -> date | None:
    """A ``YYYY-MM-DD`` filter argument (None when absent).

    Raises:
        BadQuery: not a date, or outside MIN_DAY … MAX_DAY.
    """
    raw = str(args.get(name) or "").strip()
    if not raw:
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise BadQuery(f"`{name}` must be a date like 2026-03-02") from None
    if not MIN_DAY <= day <= MAX_DAY:
        raise BadQuery(f"`{name}` must be a date between {MIN_DAY} and {MAX_DAY}")
    return day


def _filter_value(f: FieldSpec, text: str) -> Any:
    if f.type in ("integer", "customer"):
        try:
            return int(text)
        except ValueError:
            raise BadQuery(f"`{f.key}` must be a whole number") from None
    if f.type in ("number", "money"):
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise BadQuery(f"`{f.key}` must be a number") from None
        if not number.is_finite():
            raise BadQuery(f"`{f.key}` must be a number")
        return int(number) if number == number.to_integral_value() else float(number)
    if f.type == "checkbox":
        return text.lower() in ("1", "true", "yes", "on")
    if f.type == "multiselect":
        return {"contains": text}
    for option in f.option_values:
        if isinstance(option, int) and str(option) == text:
            return option
    return text


def list_query(spec: FormSpec, args: Any, user: Principal) -> ListQuery:
    """Turn ``where``/``field=value``/``sort``/``page``/``per_page``/``mine``
    arguments into a list query, restricted to the user's own records unless
    they may see all.

    Raises:
        BadQuery: malformed JSON, unknown filter field, bad numbers.
    """
    parts: list[Any] = []
    raw_where = args.get("where")
    if raw_where:
        if len(raw_where) > 10_000:
            raise BadQuery("`where` is too long")
        try:
            where = json.loads(raw_where)
        except (ValueError, RecursionError):
            raise BadQuery("`where` is not valid JSON") from None
        if not isinstance(where, dict):
            raise BadQuery("`where` must be a JSON object such as {\"budget\": {\"gt\": 1000}}")
        parts.append(where)
    fields = {f.key: f for f in spec.fields}
    for key in args:
        if key in RESERVED_ARGS or key.startswith("_"):
            continue
        values = [v for v in args.getlist(key) if v != ""] if hasattr(args, "getlist") else [args[key]]
        if not values:
            continue
        f = fields.get(key)
        if f is None or f.kind is None:
            from engine.definitions.errors import did_you_mean

            raise BadQuery(f"cannot filter on `{key}`"
                           f"{did_you_mean(key, [k for k, v in fields.items() if v.kind is not None])}")
        parts.append({key: _filter_value(f, values[0])})
    where_all: Any = None
    if len(parts) == 1:
        where_all = parts[0]
    elif parts:
        where_all = {"all": parts}
    sort = str(args.get("sort") or "-created_at")
    if not _SORT.fullmatch(sort):
        raise BadQuery("`sort` is a field name, `-` in front for descending")
    mine_arg = str(args.get("mine") or "").lower()
    if mine_arg not in TRUE_ARGS | FALSE_ARGS:
        raise BadQuery("`mine` is true or false")
    mine = mine_arg in TRUE_ARGS
    created_by = None if (can_view_all(user, spec) and not mine) else user.username
    return ListQuery(where=where_all, created_by=created_by, sort=sort,
                     page=page_arg(args),
                     per_page=_int_arg(args, "per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE),
                     search=str(args.get("q") or "").strip() or None)


# ------------------------------------------------------------- uploads

_SAFE_EXT = re.compile(r"\.[A-Za-z0-9]{1,10}")


def store_upload(f: FieldSpec, storage: Any, folder: Path) -> dict[str, Any] | None:
    """Save an uploaded file (werkzeug FileStorage) into the instance folder and
    return its reference ``{id, name, size, content_type}``; a file that breaks
    the field's type or size limit is not written, but its reference is
    returned so the validator reports the limit it broke."""
    name = (storage.filename or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not name:
        return None
    content_type = (storage.mimetype or "")[:255]
    stream = storage.stream
    stream.seek(0, 2)
    size = stream.tell()
    stream.seek(0)
    ext = Path(name).suffix
    file_id = secrets.token_hex(16) + (ext.lower() if _SAFE_EXT.fullmatch(ext) else "")
    ref = {"id": file_id, "name": name[:255], "size": size, "content_type": content_type}
    fits = file_accepted(name, content_type, f.accept) and (f.max_size_bytes is None or size <= f.max_size_bytes)
    if fits:
        # Uploads are personal data: a 0700 folder, 0600 files (issue 16).
        private_dir(folder)
        storage.save(str(folder / file_id))
        private_file(folder / file_id)
    return ref


# ------------------------------------------------------------- display

def show_value(f: FieldSpec, value: Any, locale: str, tz: str) -> str:
    """A stored value as text for a page or CSV (escaping is the template's job)."""
    if value is None:
        return ""
    if f.type in ("select", "multiselect"):
        labels = {str(o.value): (o.label_en if locale == "en" and o.label_en else o.label) for o in f.options}
        items = value if isinstance(value, list) else [value]
        return ", ".join(labels.get(str(v), str(v)) for v in items)
    if f.type == "checkbox":
        yes, no = ("Yes", "No") if locale == "en" else ("是", "否")
        return yes if value else no
    if f.type == "datetime" and isinstance(value, str):
        return local_time(value, tz)
    if f.type == "file":
        items = value if isinstance(value, list) else [value]
        return ", ".join(str(i.get("name", "")) for i in items if isinstance(i, Mapping))
    if f.type == "table" and isinstance(value, list):
        return f"{len(value)} ×"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def local_time(value: Any, tz: str) -> str:
    """An aware datetime (or naive-UTC ISO text) as local ``YYYY-MM-DD HH:MM``."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=ZoneInfo("UTC"))
        return value.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)
