"""URL converters registered once for the whole app.

Every ``<int:…>`` id in a route is a database key: records, tasks and
customers are ``INTEGER`` (32-bit on PostgreSQL), outbox messages ``BIGINT``
(``<bigint:…>``). Werkzeug's ``int`` converter accepts any number of
digits, so an id of 2**63 reached the database driver and failed there (a 500
on most numeric routes). Replacing the app's ``int`` converter with a bounded
one makes such a URL simply not match: the router answers 404, before any view
runs, on every present and future ``<int:…>`` route.
"""

from __future__ import annotations

from flask import Flask
from werkzeug.routing import IntegerConverter

#: The largest key of an INTEGER id column on PostgreSQL (``<int:…>``).
MAX_ID = 2**31 - 1
#: The largest key of a BIGINT id column (``<bigint:…>``, e.g. outbox messages).
MAX_BIG_ID = 2**63 - 1


def at_most(limit: int) -> str:
    """A regular expression (no capturing groups) for the decimal numbers 0 … ``limit``,
    leading zeros allowed up to ``limit``'s number of digits."""
    digits = str(limit)
    width = len(digits)
    options = [rf"\d{{1,{width - 1}}}"] if width > 1 else []
    for i, ch in enumerate(digits):
        if ch != "0":
            rest = width - i - 1
            options.append(digits[:i] + (f"[0-{int(ch) - 1}]" if ch != "1" else "0")
                           + (rf"\d{{{rest}}}" if rest else ""))
    options.append(digits)
    return "(?:" + "|".join(options) + ")"


class DatabaseIdConverter(IntegerConverter):
    """``int`` limited to 0 … 2**31-1; a larger number does not match (404)."""

    limit = MAX_ID

    def __init__(self, map, fixed_digits: int = 0, min: int | None = None,  # noqa: A002 (werkzeug's names)
                 max: int | None = None, signed: bool = False) -> None:
        top = self.limit if max is None else max
        super().__init__(map, fixed_digits=fixed_digits, min=0 if min is None else min, max=top, signed=signed)
        if not fixed_digits and not signed:
            self.regex = at_most(top)


class BigIdConverter(DatabaseIdConverter):
    """``bigint``: 0 … 2**63-1, for BIGINT keys."""

    limit = MAX_BIG_ID


def init_app(app: Flask) -> None:
    """Register the converters; call before any blueprint adds its rules."""
    app.url_map.converters["int"] = DatabaseIdConverter
    app.url_map.converters["bigint"] = BigIdConverter
