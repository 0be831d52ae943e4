"""Read-only views of rules for people: the trigger in words, the next run,
recent activity from ``rule_runs`` and journey counts (CLI and rules page)."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from croniter import croniter

from engine.automation.timing import schedule_of, zone
from engine.definitions.specs import (
    DateFieldTrigger,
    EventTrigger,
    RuleSpec,
    ScheduleTrigger,
    SegmentChangeTrigger,
)
from engine.storage import rule_journeys_repo as repo
from engine.storage.times import from_db_time, to_db_time

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["DayActivity", "describe_trigger", "journey_counts", "journey_sample", "next_run", "recent_activity"]

_DAILY = re.compile(r"^(\d{1,2}) (\d{1,2}) \* \* \*$")
_WEEKLY = re.compile(r"^(\d{1,2}) (\d{1,2}) \* \* ([0-7](?:,[0-7])*)$")
_DOW = {"zh": "日一二三四五六日", "en": ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]}


def _days(delta: timedelta) -> str:
    return str(abs(delta.days))


def describe_trigger(rule: RuleSpec, locale: str = "zh") -> str:
    """The rule's trigger in words, e.g. ``每天 10:00 (Asia/Shanghai)`` / ``daily at 10:00 (Asia/Shanghai)``."""
    t = rule.trigger
    zh = locale == "zh"
    if isinstance(t, ScheduleTrigger):
        m = _DAILY.match(t.cron)
        if m:
            at = f"{int(m.group(2)):02d}:{int(m.group(1)):02d}"
            return f"每天 {at} ({t.timezone})" if zh else f"daily at {at} ({t.timezone})"
        m = _WEEKLY.match(t.cron)
        if m:
            at = f"{int(m.group(2)):02d}:{int(m.group(1)):02d}"
            days = [_DOW["zh" if zh else "en"][int(d)] for d in m.group(3).split(",")]
            return (f"每周{'、'.join(days)} {at} ({t.timezone})" if zh
                    else f"weekly on {', '.join(days)} at {at} ({t.timezone})")
        return f"定时 `{t.cron}` ({t.timezone})" if zh else f"on schedule `{t.cron}` ({t.timezone})"
    if isinstance(t, EventTrigger):
        extra = f" ({t.form or t.workflow})" if (t.form or t.workflow) else ""
        return f"事件 {t.event}{extra}" if zh else f"on event {t.event}{extra}"
    if isinstance(t, DateFieldTrigger):
        at = t.at.strftime("%H:%M")
        if t.yearly and t.offset == timedelta(0):
            return f"每年 {t.field} 当天 {at}" if zh else f"yearly on {t.field} at {at}"
        if t.offset > timedelta(0):
            words = f"{t.field} 前 {_days(t.offset)} 天 {at}" if zh else f"{_days(t.offset)} days before {t.field} at {at}"
        elif t.offset < timedelta(0):
            words = f"{t.field} 后 {_days(t.offset)} 天 {at}" if zh else f"{_days(t.offset)} days after {t.field} at {at}"
        else:
            words = f"{t.field} 当天 {at}" if zh else f"on {t.field} at {at}"
        return (("每年 " if zh else "yearly, ") + words) if t.yearly else words
    if isinstance(t, SegmentChangeTrigger):
        src = t.from_ or ("任意" if zh else "any")
        return f"客群变化 {src} → {t.to}" if zh else f"segment change {src} → {t.to}"
    return str(t)


def next_run(rule: RuleSpec, now: datetime) -> datetime | None:
    """The next time the rule runs on its own (aware UTC), or None (event rules, disabled rules)."""
    sched = schedule_of(rule)
    if sched is None or not rule.enabled:
        return None
    return croniter(sched[0], now.astimezone(zone(sched[1]))).get_next(datetime)


@dataclass
class DayActivity:
    day: date
    runs: int = 0
    counters: dict[str, int] = field(default_factory=lambda: defaultdict(int))


_COUNTERS = ("entered", "sent", "skipped_consent", "skipped_cap", "skipped_other", "deferred_quiet", "deferred_cap",
             "exited", "completed", "errors")


def recent_activity(session: Session, rule_id: str, *, now: datetime, tz: str = "Asia/Shanghai",
                    days: int = 30, limit: int = 5) -> list[DayActivity]:
    """The rule's counters summed per local day over the last ``days`` days,
    latest first, at most ``limit`` days that saw anything. ``runs`` counts
    audience runs (schedule, date, manual) and event entries."""
    since = to_db_time(now - timedelta(days=days))
    by_day: dict[date, DayActivity] = {}
    zone_info = zone(tz)
    for row in repo.runs_since(session, rule_id, since, _COUNTERS):
        day = from_db_time(row.started_at).astimezone(zone_info).date()
        act = by_day.setdefault(day, DayActivity(day))
        if row.kind != "advance":
            act.runs += 1
        for c in _COUNTERS:
            act.counters[c] += int(getattr(row, c) or 0)
    return sorted(by_day.values(), key=lambda a: a.day, reverse=True)[:limit]


def journey_counts(session: Session, rule_id: str) -> list[tuple[int, str | None, str, int]]:
    """(rule version, step id, status, count) of the rule's journeys."""
    return repo.journey_counts(session, rule_id)


def journey_sample(session: Session, rule_id: str, limit: int = 10) -> list[dict[str, Any]]:
    """The rule's latest journeys."""
    return repo.journey_sample(session, rule_id, limit)
