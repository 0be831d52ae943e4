"""Time for rules, all pure: schedule occurrences and catch-up, period keys,
quiet hours, waits, business calendars. Nothing here reads the clock; every
function takes ``now`` (aware) and answers in aware UTC.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from engine.definitions.specs import DateFieldTrigger, RuleSpec, ScheduleTrigger, SegmentChangeTrigger

__all__ = [
    "EVER",
    "Calendar",
    "date_trigger_days",
    "due_schedule_runs",
    "end_of_quiet",
    "in_quiet_hours",
    "next_workday_time",
    "period_key",
    "schedule_of",
    "wait_until",
    "zone",
]

#: period_key of ``once_ever`` rules: one journey per subject, ever.
EVER = "ever"

#: How late an occurrence may be noticed and still count as on time (``skip``).
DEFAULT_GRACE = timedelta(minutes=5)

#: When ``segment_change`` rules look for customers who moved (every hour, at :07).
SEGMENT_CHANGE_CRON = "7 * * * *"

#: Most missed days a date-relative trigger catches up after downtime.
MAX_CATCH_UP_DAYS = 31


def zone(name: str | None, fallback: str = "Asia/Shanghai") -> ZoneInfo:
    """The zone called ``name`` (or ``fallback`` when empty or unknown)."""
    try:
        return ZoneInfo(name or fallback)
    except (KeyError, ValueError):
        return ZoneInfo(fallback)


@dataclass(frozen=True)
class Calendar:
    """A business calendar: weekends, holidays, and make-up workdays (调休).

    A day is a workday if it is listed in ``workdays`` (a weekend made a
    workday), or it is not a weekend day and not in ``holidays``.
    """

    holidays: frozenset[date] = field(default_factory=frozenset)
    workdays: frozenset[date] = field(default_factory=frozenset)
    weekend: frozenset[int] = frozenset({5, 6})

    @classmethod
    def from_data(cls, data: dict[str, Iterable[str]]) -> Calendar:
        """From ``{holidays: [ISO dates], workdays: [ISO dates]}`` (a calendar file's content)."""
        return cls(holidays=frozenset(date.fromisoformat(d) for d in data.get("holidays", ())),
                   workdays=frozenset(date.fromisoformat(d) for d in data.get("workdays", ())))

    def is_workday(self, day: date) -> bool:
        if day in self.workdays:
            return True
        return day.weekday() not in self.weekend and day not in self.holidays


def schedule_of(rule: RuleSpec) -> tuple[str, str] | None:
    """(cron, zone) when ``rule`` runs on a clock: cron rules, and date-relative
    rules (daily at their ``at`` time), segment-change rules (hourly). None
    for event-driven rules."""
    trigger = rule.trigger
    if isinstance(trigger, ScheduleTrigger):
        return trigger.cron, trigger.timezone
    if isinstance(trigger, DateFieldTrigger):
        return f"{trigger.at.minute} {trigger.at.hour} * * *", trigger.timezone
    if isinstance(trigger, SegmentChangeTrigger):
        # Segments move when orders and RFM scores change, not by the minute:
        # looking once an hour finds each move within the hour, set-based.
        return SEGMENT_CHANGE_CRON, rule.timezone
    return None


def due_schedule_runs(rule: RuleSpec, last_run_at: datetime | None, now: datetime, *,
                      grace: timedelta = DEFAULT_GRACE) -> list[datetime]:
    """The occurrences of ``rule`` to run at ``now`` (aware UTC, oldest first),
    given the occurrence it last ran for.

    Occurrences are the cron times in (``last_run_at``, ``now``] in the rule's
    zone; a rule that never ran looks back ``grace`` only (publishing a rule
    does not fire yesterday's run). After downtime ``catch_up`` decides:

    * ``fire_late`` (default): the latest missed occurrence runs once, now; the
      older ones fold into it (a run is never doubled). Date-relative rules run
      each missed day (at most 31), since each day has its own subjects.
    * ``skip``: missed occurrences are dropped; only one noticed within
      ``grace`` runs.
    * ``next_window``: nothing runs late; for date-relative rules the next
      on-time run also enters the subjects of the missed days.
    """
    sched = schedule_of(rule)
    if sched is None:
        return []
    cron, tz_name = sched
    tz = zone(tz_name)
    start = last_run_at if last_run_at is not None else now - grace
    it = croniter(cron, start.astimezone(tz))
    missed: list[datetime] = []
    while True:
        occurrence = it.get_next(datetime).astimezone(UTC)
        if occurrence > now:
            break
        missed.append(occurrence)
        if len(missed) > MAX_CATCH_UP_DAYS * 24 * 60:  # a minutely cron down for a month: enough
            break
    if not missed:
        return []
    latest = missed[-1]
    on_time = now - latest <= grace
    dated = isinstance(rule.trigger, DateFieldTrigger)
    if rule.catch_up == "fire_late":
        return missed[-MAX_CATCH_UP_DAYS:] if dated else [latest]
    if rule.catch_up == "next_window" and dated:
        return missed[-MAX_CATCH_UP_DAYS:] if on_time else []
    return [latest] if on_time else []


def period_key(rule: RuleSpec, occurrence: datetime, *, event_id: int | None = None) -> str:
    """The ``period_key`` of journeys a run at ``occurrence`` creates.

    * ``once_ever``: ``"ever"``.
    * ``once_per: W``: ``"w<n>"`` with n = floor(epoch seconds / W): two runs in
      one window share the key, so re-running or racing inserts nothing. Fixed
      windows alone would let a subject in again just after a window boundary,
      so entry also skips subjects whose last journey of the rule began less
      than W ago (a rolling window, see ``automation_repo.enter_customers``).
    * otherwise: the event id (``"e<id>"``) for event rules, else the local day
      of the occurrence (``"d2026-03-01"``): once per run day.
    Date-relative rules use :func:`date_trigger_days` keys instead.
    """
    if rule.once_ever:
        return EVER
    if rule.once_per is not None:
        seconds = int(rule.once_per.total_seconds())
        return f"w{int(occurrence.timestamp()) // seconds}"
    if event_id is not None:
        return f"e{event_id}"
    return "d" + occurrence.astimezone(zone(rule.timezone)).date().isoformat()


def date_trigger_days(trigger: DateFieldTrigger, occurrence: datetime) -> tuple[date, str]:
    """For a date-relative run at ``occurrence``: the date the subject's field
    must fall on (for ``yearly``, its month and day), and the period key.

    ``before: 90d`` on ``contract_end``: the run on local day D enters subjects
    whose contract ends on D + 90 days; the key is that end date, so each
    contract end reminds once. ``yearly``: the key is the anniversary's year.
    """
    day = occurrence.astimezone(zone(trigger.timezone)).date()
    target = day + trigger.offset
    if trigger.yearly:
        return target, f"{trigger.field}:{target.year}"
    return target, f"{trigger.field}:{target.isoformat()}"


def in_quiet_hours(moment: datetime, quiet: tuple[time, time], tz: ZoneInfo) -> bool:
    """Whether ``moment`` falls in the local quiet hours ``[start, end)``
    (a window that wraps midnight, like 21:00-09:00, included)."""
    start, end = quiet
    local = moment.astimezone(tz).time().replace(tzinfo=None)
    if start <= end:
        return start <= local < end
    return local >= start or local < end


def end_of_quiet(moment: datetime, quiet: tuple[time, time], tz: ZoneInfo) -> datetime:
    """The first instant at or after ``moment`` that is outside the quiet hours."""
    if not in_quiet_hours(moment, quiet, tz):
        return moment
    local = moment.astimezone(tz)
    candidate = datetime.combine(local.date(), quiet[1], tzinfo=tz)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), quiet[1], tzinfo=tz)
    return candidate.astimezone(UTC)


def next_workday_time(moment: datetime, calendar: Calendar, tz: ZoneInfo) -> datetime:
    """``moment`` if it falls on a workday, else the same local time on the next workday."""
    local = moment.astimezone(tz)
    day = local.date()
    for _ in range(60):
        if calendar.is_workday(day):
            break
        day += timedelta(days=1)
    if day == local.date():
        return moment
    return datetime.combine(day, local.time().replace(tzinfo=None), tzinfo=tz).astimezone(UTC)


def wait_until(now: datetime, *, duration: timedelta | None, until: time | None, on: str,
               calendar: Calendar, tz: ZoneInfo) -> datetime:
    """When a ``wait`` step started at ``now`` ends: after ``duration``, then
    (``until``) at the next local time of day, then (``on: workdays``) moved
    to a workday."""
    due = now + (duration or timedelta(0))
    if until is not None:
        local = due.astimezone(tz)
        candidate = datetime.combine(local.date(), until, tzinfo=tz)
        if candidate < local:
            candidate = datetime.combine(local.date() + timedelta(days=1), until, tzinfo=tz)
        due = candidate.astimezone(UTC)
    if on == "workdays":
        due = next_workday_time(due, calendar, tz)
    return due
