"""Checks of a coupon pool's redemption rules (核销 anti-abuse), and the one
reading of its local validity times that the builder shares.

The schema already checks shapes (``2026-10-01`` or ``2026-10-01T09:00``,
positive limits); here: dates that do not exist, a window that ends before it
starts, a minimum order below the coupon's own value, blacklisted phones that
are not phone numbers, and entries listed twice.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from .context import Context, Problems
from .errors import Problem, unknown

#: A phone as tills and customers' records write it: digits, an optional leading +.
PHONE = re.compile(r"^\+?[0-9]{5,20}$")


def local_time(text: str, *, end: bool = False) -> datetime:
    """``2026-10-01`` or ``2026-10-01T09:00`` as a naive local time; a date
    ``end`` (``valid_until``) means the whole day, so the next midnight."""
    if "T" in text:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M")
    day = datetime.strptime(text, "%Y-%m-%d")
    return day + timedelta(days=1) if end else day


def _time(data: dict, key: str, problems: Problems) -> datetime | None:
    raw = data.get(key)
    if not isinstance(raw, str):
        return None
    try:
        return local_time(raw, end=key == "valid_until")
    except ValueError:
        problems.append(Problem((key,), "bad_date", f"`{key}` {raw} is not a real date or time"))
        return None


def check_coupon_pool(ctx: Context, data: dict) -> Problems:
    """Problems of one coupon pool's redemption rules."""
    problems: Problems = []
    start, until = _time(data, "valid_from", problems), _time(data, "valid_until", problems)
    if start is not None and until is not None and until <= start:
        problems.append(Problem(("valid_until",), "empty_window",
                                f"`valid_until` {data['valid_until']} is not after `valid_from` {data['valid_from']}: "
                                "no coupon of the pool could ever be redeemed"))
    try:
        value, min_order = Decimal(str(data.get("value"))), data.get("min_order")
        if min_order is not None and 0 < Decimal(str(min_order)) < value:
            problems.append(Problem(("min_order",), "min_order_below_value",
                                    f"`min_order` {min_order} is less than the coupon's value {data['value']}: "
                                    "the discount would exceed the order"))
    except InvalidOperation:  # the schema reports a value that is not a number
        pass
    blacklist = data.get("blacklist") or {}
    for key in ("phones", "devices"):
        seen: set[str] = set()
        for i, item in enumerate(blacklist.get(key) or ()):
            if not isinstance(item, str):
                continue
            if key == "phones" and not PHONE.match(item):
                problems.append(Problem(("blacklist", key, i), "bad_phone",
                                        f"blacklisted phone `{item}` must be digits such as 13800001234"))
            elif item in seen:
                problems.append(Problem(("blacklist", key, i), "duplicate", f"`{item}` is listed twice"))
            seen.add(item)
    return problems


#: What each role of a form's ``redeems_coupon`` must point at: field types.
REDEEM_FIELD_TYPES = {"code": ("text",), "customer": ("customer",), "phone": ("phone", "text"),
                      "amount": ("money", "number", "integer"), "store": ("select", "text")}


def check_form_redemption(data: dict, fields: list) -> Problems:
    """A form's ``redeems_coupon`` names fields of the form, of fitting types, and
    says who presents the coupon (a ``customer`` or a ``phone`` field)."""
    spec = data.get("redeems_coupon")
    if not isinstance(spec, dict):
        return []
    types = {f.get("key"): f.get("type") for f in fields if isinstance(f, dict)}
    problems: Problems = []
    for role, key in spec.items():
        allowed = REDEEM_FIELD_TYPES.get(role)
        if allowed is None or not isinstance(key, str):
            continue
        if key not in types:
            problems.append(Problem(("redeems_coupon", role), "unknown_ref",
                                    unknown("field", key, [k for k in types if isinstance(k, str)])))
        elif types[key] not in allowed:
            problems.append(Problem(("redeems_coupon", role), "wrong_type",
                                    f"`{role}` must name a {' or '.join(allowed)} field; `{key}` is {types[key]}"))
    if "customer" not in spec and "phone" not in spec:
        problems.append(Problem(("redeems_coupon",), "missing", "`redeems_coupon` needs `customer` or `phone`: "
                                "who presents the coupon", at_key=True))
    return problems


__all__ = ["PHONE", "REDEEM_FIELD_TYPES", "check_coupon_pool", "check_form_redemption", "local_time"]
