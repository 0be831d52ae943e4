"""The `calendar` kind: the shipped China calendar (holidays and 调休 workdays
2025–2026) loads, builds the runtime Calendar the automation policy uses for
`on: workdays`, and is chosen by settings; `promoflow validate` reports a broken one."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from engine.automation.configure import build_policy, calendar_of, pick_calendar
from engine.automation.timing import Calendar, wait_until
from engine.definitions.loader import load_paths, load_texts
from web.cli import main

ROOT = Path(__file__).resolve().parents[2]
SH = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def cn():
    return load_paths([ROOT / "config" / "calendars"], relative_to=ROOT).raise_for_errors().calendars["cn_business"]


def test_shipped_calendar_days(cn) -> None:
    cal = calendar_of(cn)
    assert cn.timezone == "Asia/Shanghai" and cn.weekend == frozenset({5, 6})
    assert len([d for d in cn.holidays if d.year == 2025]) == 28
    assert len([d for d in cn.holidays if d.year == 2026]) == 33
    assert all(d.weekday() >= 5 for d in cn.workdays)  # make-up workdays are weekend days
    assert cal.is_workday(date(2025, 1, 26))      # Sunday worked for the Spring Festival
    assert not cal.is_workday(date(2025, 1, 28))  # 除夕
    assert not cal.is_workday(date(2025, 10, 8))  # a Wednesday inside National Day
    assert cal.is_workday(date(2025, 10, 11))     # Saturday worked
    assert cal.is_workday(date(2026, 2, 14)) and cal.is_workday(date(2026, 2, 28))
    assert not cal.is_workday(date(2026, 2, 23))
    assert not cal.is_workday(date(2026, 6, 6))   # an ordinary Saturday
    assert cal.is_workday(date(2026, 6, 8))


def test_on_workdays_waits_over_the_holiday(cn) -> None:
    start = datetime(2026, 9, 30, 1, 0, tzinfo=UTC)  # Wednesday 09:00 in Shanghai
    due = wait_until(start, duration=timedelta(days=1), until=None, on="workdays", calendar=calendar_of(cn), tz=SH)
    assert due.astimezone(SH).replace(tzinfo=None) == datetime(2026, 10, 8, 9, 0)
    plain = wait_until(start, duration=timedelta(days=1), until=time(9), on="workdays", calendar=Calendar(), tz=SH)
    assert plain.astimezone(SH).date() == date(2026, 10, 1)


def test_policy_picks_the_calendar() -> None:
    two = load_texts([("c.yaml", """
- {kind: calendar, id: a, title: A, holidays: [2026-01-05]}
- {kind: calendar, id: b, title: B, weekends: [fri, sat], workdays: [2026-01-09]}
""")]).raise_for_errors()
    assert build_policy(two, calendar_id="a").calendar.holidays == {date(2026, 1, 5)}
    b = pick_calendar(two, "b")
    assert b.is_workday(date(2026, 1, 4)) and b.is_workday(date(2026, 1, 9)) and not b.is_workday(date(2026, 1, 10))
    assert pick_calendar(two) == Calendar()  # two calendars and no choice: plain weekends
    with pytest.raises(KeyError, match="unknown calendar `c`"):
        pick_calendar(two, "c")


def test_validate_reports_calendar_problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROMOFLOW_INSTANCE_PATH", str(tmp_path / "instance"))
    (tmp_path / "cal.yaml").write_text(
        "kind: calendar\nid: cn\ntitle: 日历\ntimezone: Asia/Beijing\nholidays: [2025-10-01]\nworkdays: [2025-10-01]\n",
        encoding="utf-8")
    result = CliRunner().invoke(main, ["validate", "cal.yaml"])
    assert result.exit_code == 1
    assert "cal.yaml:4:11: unknown time zone `Asia/Beijing` (an IANA name such as Asia/Shanghai)" in result.output
    assert "cal.yaml:6:12: `2025-10-01` is both a holiday and a make-up workday" in result.output
    shipped = CliRunner().invoke(main, ["validate", str(ROOT / "config")])
    assert shipped.exit_code == 0 and "1 calendar" in shipped.output
