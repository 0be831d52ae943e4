"""Pure time logic: schedule catch-up, period keys, quiet hours, waits, calendars, programs."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from engine.automation.program import END, compile_program
from engine.automation.timing import (
    Calendar,
    date_trigger_days,
    due_schedule_runs,
    end_of_quiet,
    in_quiet_hours,
    period_key,
    wait_until,
)
from engine.definitions.specs import IfSpec, SendSpec, WaitSpec

SH = ZoneInfo("Asia/Shanghai")


def at(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=SH).astimezone(UTC)


def test_on_time_run_and_no_double(definitions) -> None:
    rule = definitions.rules["winback_90d"]  # 10:00 Shanghai daily
    assert due_schedule_runs(rule, None, at(2026, 3, 1, 10, 1)) == [at(2026, 3, 1, 10)]
    assert due_schedule_runs(rule, at(2026, 3, 1, 10), at(2026, 3, 1, 10, 1)) == []
    assert due_schedule_runs(rule, None, at(2026, 3, 1, 9, 59)) == []
    # A rule published long after its last occurrence does not fire yesterday's run.
    assert due_schedule_runs(rule, None, at(2026, 3, 1, 15)) == []


def test_catch_up_policies(definitions) -> None:
    rule = definitions.rules["winback_90d"]
    last, now = at(2026, 3, 1, 10), at(2026, 3, 4, 15)  # down for three occurrences
    assert due_schedule_runs(rule, last, now) == [at(2026, 3, 4, 10)]  # fire_late: one late run
    assert due_schedule_runs(replace(rule, catch_up="skip"), last, now) == []
    assert due_schedule_runs(replace(rule, catch_up="next_window"), last, now) == []
    birthday = definitions.rules["birthday_greeting"]  # date-relative: each missed day has its own people
    assert due_schedule_runs(birthday, at(2026, 3, 1, 9, 30), now) == [
        at(2026, 3, 2, 9, 30), at(2026, 3, 3, 9, 30), at(2026, 3, 4, 9, 30)]
    assert due_schedule_runs(replace(birthday, catch_up="skip"), at(2026, 3, 1, 9, 30), now) == []


def test_period_keys(definitions) -> None:
    winback = definitions.rules["winback_90d"]
    a, b = period_key(winback, at(2026, 3, 1, 10)), period_key(winback, at(2026, 3, 2, 10))
    assert a.startswith("w") and a == b  # same 180-day window
    assert period_key(definitions.rules["welcome_journey"], at(2026, 3, 1), event_id=9) == "ever"
    assert period_key(definitions.rules["nps_detractor_followup"], at(2026, 3, 1), event_id=9) == "e9"
    renewal = definitions.rules["renewal_reminder"].trigger
    assert date_trigger_days(renewal, at(2026, 3, 1, 9)) == (date(2026, 5, 30), "contract_end:2026-05-30")
    birthday = definitions.rules["birthday_greeting"].trigger
    assert date_trigger_days(birthday, at(2027, 2, 28, 9, 30)) == (date(2027, 2, 28), "birthday:2027")


def test_quiet_hours_wrap_midnight() -> None:
    quiet = (time(21), time(9))
    assert in_quiet_hours(at(2026, 3, 1, 22), quiet, SH)
    assert in_quiet_hours(at(2026, 3, 1, 8, 59), quiet, SH)
    assert not in_quiet_hours(at(2026, 3, 1, 9), quiet, SH)
    assert end_of_quiet(at(2026, 3, 1, 22), quiet, SH) == at(2026, 3, 2, 9)
    assert end_of_quiet(at(2026, 3, 2, 3), quiet, SH) == at(2026, 3, 2, 9)
    assert end_of_quiet(at(2026, 3, 2, 12), quiet, SH) == at(2026, 3, 2, 12)


def test_waits_and_workdays() -> None:
    # 2026-10-01..07 National Day holiday, 2026-10-10 (Saturday) a make-up workday (illustrative data).
    cal = Calendar.from_data({"holidays": [f"2026-10-0{d}" for d in range(1, 8)], "workdays": ["2026-10-10"]})
    assert not cal.is_workday(date(2026, 10, 2)) and cal.is_workday(date(2026, 10, 10))
    start = at(2026, 9, 30, 15)
    assert wait_until(start, duration=timedelta(days=1), until=None, on="any_day", calendar=cal, tz=SH) == \
        at(2026, 10, 1, 15)
    assert wait_until(start, duration=timedelta(days=1), until=None, on="workdays", calendar=cal, tz=SH) == \
        at(2026, 10, 8, 15)
    assert wait_until(start, duration=None, until=time(10), on="any_day", calendar=cal, tz=SH) == \
        at(2026, 10, 1, 10)
    assert wait_until(at(2026, 10, 9, 9), duration=None, until=time(10), on="workdays", calendar=cal, tz=SH) == \
        at(2026, 10, 9, 10)


def test_program_flattens_nested_ifs(definitions) -> None:
    program = compile_program(definitions.rules["winback_90d"])
    first = program.at(program.start)
    assert first is not None and first.step_id == "s1"
    kinds = {}
    pc = program.start
    while pc != END:
        instr = program.at(pc)
        assert instr is not None
        kinds[instr.step_id] = type(instr.action).__name__
        pc = instr.else_next if isinstance(instr.action, IfSpec) else instr.next
    assert kinds == {"s1": "IssueCouponSpec", "s2": "SendSpec", "s3": "WaitSpec", "s4": "IfSpec",
                     "s4_else_1": "IfSpec"}
    then = program.at(program.pc_of("s4_else_1_then_1"))  # type: ignore[arg-type]
    assert then is not None and isinstance(then.action, SendSpec) and then.next == END
    assert isinstance(program.at(program.pc_of("s3")).action, WaitSpec)  # type: ignore[arg-type,union-attr]
