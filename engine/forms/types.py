"""One converter per field type: a JSON-ish value in, the stored JSON value out.

Like click's ``ParamType.convert``, each converter accepts values that are
already in stored form (so re-validating stored data is a no-op) and reports a
problem by raising :class:`Invalid` with an error code and context; it never
lets another exception escape for any JSON-shaped input.

Stored forms (what ``records.data`` holds): text as typed; integer ``int``;
number ``int``/``float``; money a string with exactly two decimals
(``"60000.00"`` stays as given, ``12.5`` becomes ``"12.5"``); date
``YYYY-MM-DD``; datetime naive-UTC ISO (the condition compiler's canonical
form); checkbox ``bool``; multiselect a list; customer an ``int``; file an
object (or a list of them); table a list of row objects.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from email_validator import EmailNotValidError, validate_email

from engine.conditions.values import iso_datetime
from engine.definitions.specs import FieldSpec
from engine.text_clean import clean_text

#: Hard caps whatever the definition says: bounded work and storage per value.
MAX_TEXT = 10_000
MAX_TEXTAREA = 100_000
MAX_SHORT = 2_048  # phone, email, url, user names, file names
MAX_LIST_ITEMS = 1_000
MAX_TABLE_ROWS = 1_000
MAX_FILES = 50
MAX_INTEGER = 2**53 - 1  # exact in JavaScript and in JSON readers
MAX_NUMBER = 1e15
MONEY_INTEGER_DIGITS = 12  # Numeric(14, 2)
MONEY_PLACES = 2

CN_MOBILE = re.compile(r"1[3-9]\d{9}")
E164 = re.compile(r"\+[1-9]\d{6,14}")
USER_NAME = re.compile(r"[^\s\x00-\x1f\x7f]{1,128}")
MONEY_TEXT = re.compile(r"-?\d+(\.\d+)?")
DATE_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}")
DATETIME_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?")
# NUL cannot be stored in PostgreSQL jsonb; lone surrogates are not UTF-8.
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")


class Invalid(Exception):
    """A value does not fit its field: ``code`` and ``ctx`` as in FieldError."""

    def __init__(self, code: str, **ctx: Any):
        super().__init__(code)
        self.code = code
        self.ctx = ctx


@dataclass(frozen=True)
class Env:
    """What conversion may consult besides the value: the caller's clock, zone and lookups."""

    now: datetime
    tz: str = "Asia/Shanghai"
    user: str | None = None
    customer_exists: Callable[[int], bool] | None = None
    user_exists: Callable[[str], bool] | None = None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def today(self) -> date:
        return self.now.astimezone(self.zone).date()


def is_empty(value: object) -> bool:
    """Missing for ``required``: None, empty or blank text, an empty list or object."""
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() == ""
    if isinstance(value, (list, tuple, dict)):
        return len(value) == 0
    return False


def _text(value: object, cap: int) -> str:
    if not isinstance(value, str):
        raise Invalid("string_type")
    if len(value) > cap:
        raise Invalid("too_long", max_length=cap)
    if _BAD_CHARS.search(value):
        raise Invalid("invalid_chars")
    return value


def _lengths(value: str, f: FieldSpec) -> str:
    if f.max_length is not None and len(value) > f.max_length:
        raise Invalid("too_long", max_length=f.max_length)
    if f.min_length is not None and len(value) < f.min_length:
        raise Invalid("too_short", min_length=f.min_length)
    if f.pattern is not None:
        try:
            matched = re.fullmatch(f.pattern, value) is not None
        except re.error:  # the loader checked the pattern; be safe anyway
            matched = False
        if not matched:
            raise Invalid("pattern", pattern=f.pattern, pattern_message=f.pattern_message)
    return value


def convert_text(value: object, f: FieldSpec, env: Env) -> str:
    """Text and textarea: bidi controls and control characters stripped (a
    textarea keeps its line breaks), NUL and lone surrogates refused."""
    text = _text(value, MAX_TEXTAREA if f.type == "textarea" else MAX_TEXT)
    return _lengths(clean_text(text, multiline=f.type == "textarea"), f)


def _bounds(value: Any, f: FieldSpec, as_type: Callable[[Any], Any]) -> None:
    for key in ("min", "max"):
        bound = getattr(f, key)
        if bound is None or isinstance(bound, bool):
            continue
        try:
            limit = as_type(bound)
        except (ValueError, TypeError, InvalidOperation):
            continue
        if (value < limit) if key == "min" else (value > limit):
            raise Invalid(key, **{key: bound})


def convert_integer(value: object, f: FieldSpec, env: Env) -> int:
    if isinstance(value, bool):
        raise Invalid("integer_type")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise Invalid("integer_type")
        value = int(value)
    if isinstance(value, Decimal):
        if not value.is_finite() or value != value.to_integral_value():
            raise Invalid("integer_type")
        value = int(value)
    if not isinstance(value, int):
        raise Invalid("integer_type")
    if abs(value) > MAX_INTEGER:
        raise Invalid("out_of_range")
    _bounds(value, f, lambda b: Decimal(str(b)))
    return value


def convert_number(value: object, f: FieldSpec, env: Env) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise Invalid("number_type")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise Invalid("number_type")
        value = int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise Invalid("number_type")
    if abs(value) > MAX_NUMBER:
        raise Invalid("out_of_range")
    _bounds(Decimal(repr(value)) if isinstance(value, float) else Decimal(value), f, lambda b: Decimal(str(b)))
    return value


def to_money(value: object) -> Decimal:
    """A money value as written (number or text) as a Decimal, or Invalid.

    Floats go through their shortest repr (``12.3`` → ``12.3``), never their
    binary expansion.
    """
    if isinstance(value, bool):
        raise Invalid("money_type")
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise Invalid("money_type")
        amount = Decimal(repr(value))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise Invalid("money_type")
        amount = value
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > 40 or not MONEY_TEXT.fullmatch(text):
            raise Invalid("money_type")
        amount = Decimal(text)
    else:
        raise Invalid("money_type")
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MONEY_PLACES and amount != amount.quantize(Decimal("0.01")):
        raise Invalid("decimal_places", places=MONEY_PLACES)
    if abs(amount) >= Decimal(10) ** MONEY_INTEGER_DIGITS:
        raise Invalid("out_of_range")
    return amount


def money_text(amount: Decimal) -> str:
    """The stored text of an amount: plain notation with exactly two decimals (``"60000.00"``)."""
    text = format(amount.quantize(Decimal("0.01")), "f")
    return "0.00" if text == "-0.00" else text


def convert_money(value: object, f: FieldSpec, env: Env) -> str:
    amount = to_money(value)
    _bounds(amount, f, lambda b: Decimal(str(b)))
    return money_text(amount)


def _date_bound(bound: object, env: Env) -> date:
    if bound in ("today", "now"):
        return env.today()
    return date.fromisoformat(str(bound)[:10])


def parse_date(value: object) -> date:
    if isinstance(value, datetime):
        raise Invalid("date_type")
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not DATE_TEXT.fullmatch(value.strip()):
        raise Invalid("date_type")
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise Invalid("date_type") from None


def convert_date(value: object, f: FieldSpec, env: Env) -> str:
    day = parse_date(value)
    for key, code in (("min", "min"), ("max", "max")):
        bound = getattr(f, key)
        if bound is None:
            continue
        try:
            limit = _date_bound(bound, env)
        except ValueError:
            continue
        if (day < limit) if key == "min" else (day > limit):
            raise Invalid(code, **{key: limit.isoformat()})
    return day.isoformat()


def parse_datetime(value: object, env: Env) -> datetime:
    """An aware datetime from a datetime or ISO text; naive values are UTC.

    Naive means UTC because that is how datetimes are stored and returned, so
    data read from the API and sent back keeps its meaning. Local times carry
    an offset (``+08:00``); the HTML coercer attaches the site's zone to what a
    ``datetime-local`` input sends.
    """
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and DATETIME_TEXT.fullmatch(value.strip()):
        text = value.strip().replace(" ", "T")
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise Invalid("datetime_type") from None
    else:
        raise Invalid("datetime_type")
    if moment.tzinfo is None or moment.utcoffset() is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        moment.astimezone(UTC)
        if not 1 <= (moment - moment.utcoffset()).year <= 9999:  # type: ignore[operator]
            raise OverflowError
    except (OverflowError, ValueError):
        raise Invalid("datetime_type") from None
    return moment


def convert_datetime(value: object, f: FieldSpec, env: Env) -> str:
    moment = parse_datetime(value, env)
    for key in ("min", "max"):
        bound = getattr(f, key)
        if bound is None:
            continue
        if bound == "now":
            limit = env.now
        elif bound == "today":
            limit = datetime.combine(env.today(), datetime.min.time(), env.zone)
            if key == "max":
                limit = limit + timedelta(days=1) - timedelta(microseconds=1)
        else:
            try:
                limit = parse_datetime(str(bound), env)
            except Invalid:
                continue
        if (moment < limit) if key == "min" else (moment > limit):
            raise Invalid(key, **{key: str(bound)})
    return iso_datetime(moment)


def _option(value: object, f: FieldSpec) -> str | int:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise Invalid("option")
    for option in f.option_values:
        if option == value and type(option) is type(value):
            return option
    raise Invalid("option")


def convert_select(value: object, f: FieldSpec, env: Env) -> str | int:
    return _option(value, f)


def convert_multiselect(value: object, f: FieldSpec, env: Env) -> list[str | int]:
    if not isinstance(value, (list, tuple)):
        raise Invalid("list_type")
    if len(value) > MAX_LIST_ITEMS:
        raise Invalid("too_many_items", max_items=MAX_LIST_ITEMS)
    out: list[str | int] = []
    for item in value:
        chosen = _option(item, f)
        if chosen not in out:
            out.append(chosen)
    return out


def convert_checkbox(value: object, f: FieldSpec, env: Env) -> bool:
    if not isinstance(value, bool):
        raise Invalid("bool_type")
    return value


def convert_phone(value: object, f: FieldSpec, env: Env) -> str:
    text = _text(value, MAX_SHORT)
    compact = re.sub(r"[\s\-()]", "", text)
    region = f.phone_region
    if region in ("cn", "any") and compact.startswith("+86") and CN_MOBILE.fullmatch(compact[3:]):
        compact = compact[3:] if region == "cn" else compact
    ok_cn = CN_MOBILE.fullmatch(compact) is not None
    ok_e164 = E164.fullmatch(compact) is not None
    if (region == "cn" and not ok_cn) or (region == "e164" and not ok_e164) or not (ok_cn or ok_e164):
        raise Invalid("phone", region=region)
    return _lengths(compact, f)


def convert_email(value: object, f: FieldSpec, env: Env) -> str:
    text = _text(value, 320).strip()
    try:
        result = validate_email(text, check_deliverability=False)
    except (EmailNotValidError, ValueError, UnicodeError):
        raise Invalid("email") from None
    return _lengths(result.normalized, f)


def convert_url(value: object, f: FieldSpec, env: Env) -> str:
    text = _text(value, MAX_SHORT).strip()
    if re.search(r"\s", text):
        raise Invalid("url")
    try:
        parts = urlsplit(text)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise Invalid("url") from None
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise Invalid("url")
    return _lengths(text, f)


def convert_customer(value: object, f: FieldSpec, env: Env) -> int:
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 18:
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_INTEGER:
        raise Invalid("customer")
    if env.customer_exists is not None and not env.customer_exists(value):
        raise Invalid("customer_not_found", id=value)
    return value


def convert_user(value: object, f: FieldSpec, env: Env) -> str:
    text = _text(value, MAX_SHORT).strip()
    if not USER_NAME.fullmatch(text):
        raise Invalid("user")
    if env.user_exists is not None and not env.user_exists(text):
        raise Invalid("user_not_found", user=text)
    return text


def _size_text(size: int) -> str:
    if size >= 1024 * 1024 and size % (1024 * 1024) == 0:
        return f"{size // (1024 * 1024)}MB"
    if size >= 1024 and size % 1024 == 0:
        return f"{size // 1024}KB"
    return f"{size}B"


def file_accepted(name: str, content_type: str, accept: tuple[str, ...]) -> bool:
    """Whether a file fits ``accept`` (``.pdf``, ``image/*``, ``application/pdf``)."""
    if not accept:
        return True
    lower_name = name.lower()
    ctype = content_type.lower().split(";")[0].strip()
    for item in accept:
        rule = item.lower().strip()
        if rule.startswith(".") and lower_name.endswith(rule):
            return True
        if rule.endswith("/*") and ctype.startswith(rule[:-1]):
            return True
        if "/" in rule and ctype == rule:
            return True
    return False


def _file_ref(value: object, f: FieldSpec) -> dict[str, Any]:
    if not isinstance(value, Mapping) or set(value) - {"id", "name", "size", "content_type"}:
        raise Invalid("file")
    file_id, name, size, ctype = (value.get(k) for k in ("id", "name", "size", "content_type"))
    if not isinstance(file_id, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]{1,128}", file_id):
        raise Invalid("file")
    if not isinstance(name, str) or not 0 < len(name) <= 255 or _BAD_CHARS.search(name):
        raise Invalid("file")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise Invalid("file")
    if ctype is None:
        ctype = ""
    if not isinstance(ctype, str) or len(ctype) > 255 or _BAD_CHARS.search(ctype):
        raise Invalid("file")
    if not file_accepted(name, ctype, f.accept):
        raise Invalid("file_type", accept=", ".join(f.accept))
    if f.max_size_bytes is not None and size > f.max_size_bytes:
        raise Invalid("file_size", max_size=_size_text(f.max_size_bytes))
    return {"id": file_id, "name": name, "size": size, "content_type": ctype}


def convert_file(value: object, f: FieldSpec, env: Env) -> dict[str, Any] | list[dict[str, Any]]:
    if isinstance(value, list):
        if len(value) > MAX_FILES:
            raise Invalid("too_many_items", max_items=MAX_FILES)
        return [_file_ref(v, f) for v in value]
    return _file_ref(value, f)


Converter = Callable[[object, FieldSpec, Env], Any]

CONVERTERS: Mapping[str, Converter] = {
    "text": convert_text,
    "textarea": convert_text,
    "integer": convert_integer,
    "number": convert_number,
    "money": convert_money,
    "date": convert_date,
    "datetime": convert_datetime,
    "select": convert_select,
    "multiselect": convert_multiselect,
    "checkbox": convert_checkbox,
    "phone": convert_phone,
    "email": convert_email,
    "url": convert_url,
    "customer": convert_customer,
    "user": convert_user,
    "file": convert_file,
}
