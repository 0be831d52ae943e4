"""Checks of business calendars: real dates, a valid zone, no day both a
holiday and a make-up workday, no day listed twice."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

from .catalog import WEEKDAY_NAMES
from .context import Context, Problems
from .errors import Problem

__all__ = ["WEEKDAY_NAMES", "check_calendar"]


def _zone_ok(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (KeyError, ValueError):
        return False
    return True


def check_calendar(ctx: Context, data: dict) -> Problems:
    problems: Problems = []
    tz = data.get("timezone")
    if isinstance(tz, str) and not _zone_ok(tz):
        problems.append(Problem(("timezone",), "unknown_timezone",
                                f"unknown time zone `{tz}` (an IANA name such as Asia/Shanghai)"))
    weekend = {WEEKDAY_NAMES.index(d) for d in data.get("weekends", ("sat", "sun"))}
    seen: dict[date, str] = {}
    for key in ("holidays", "workdays"):
        for i, text in enumerate(data.get(key, ())):
            try:
                day = date.fromisoformat(text)
            except ValueError:
                problems.append(Problem((key, i), "bad_date", f"`{text}` is not a date"))
                continue
            where = seen.get(day)
            if where == key:
                problems.append(Problem((key, i), "duplicate_date", f"`{text}` is listed twice in `{key}`"))
                continue
            if where is not None:
                problems.append(Problem((key, i), "holiday_and_workday",
                                        f"`{text}` is both a holiday and a make-up workday"))
                continue
            seen[day] = key
            if key == "workdays" and day.weekday() not in weekend:
                problems.append(Problem((key, i), "workday_not_weekend",
                                        f"`{text}` is a {WEEKDAY_NAMES[day.weekday()]}, a workday already: "
                                        f"`workdays` lists weekend days worked instead (调休)"))
    return problems
