"""Alert definitions and the pure breach check (issue 14, item 6): what
breaches, when, and in which period — on a fixed ``now``, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.alerts.check import (
    CampaignFacts,
    breaches,
    campaign_started,
    format_kpi,
    period_key,
)
from engine.alerts.spec import AlertSpec
from engine.definitions.loader import load_paths, load_texts
from engine.library import library_paths

TZ = "Asia/Shanghai"
NOW = datetime(2025, 3, 8, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


def _alerts(text: str) -> dict[str, AlertSpec]:
    templates = [(f"lib{i}.yaml", p.read_text(encoding="utf-8")) for i, p in enumerate(_template_files())]
    result = load_texts([*templates, ("a.yaml", text)])
    assert not result.errors, result.errors
    return {k: a for k, a in result.definitions.alerts.items() if a.source.file == "a.yaml"}


def _template_files() -> list:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    return [root / "workflows" / "evaluation" / "alerts.yaml", *sorted((root / "config").glob("roles.yaml"))]


def _campaign(**kw: object) -> CampaignFacts:
    base: dict[str, object] = {
        "campaign_id": "spring", "title": "春季促销", "starts_at": campaign_started(datetime(2025, 3, 4).date(), TZ),
        "owner": "manager", "kpis": {"redemption_rate": 0.04, "nps": -5.0},
        "counts": {"coupons_issued": 100, "nps_answers": 12}}
    base.update(kw)
    return CampaignFacts(**base)  # type: ignore[arg-type]


def test_the_shipped_alerts_load_with_percentages_as_fractions() -> None:
    alerts = load_paths(library_paths()).definitions.alerts
    assert set(alerts) >= {"low_redemption", "negative_nps", "sms_failures", "budget_90"}
    low = alerts["low_redemption"]
    assert (low.kpi, low.direction, low.threshold, low.after, low.min_count) == (
        "redemption_rate", "below", 0.05, timedelta(days=3), 20)
    assert alerts["budget_90"].threshold == pytest.approx(0.9)
    assert alerts["sms_failures"].notify.to_kind == "role"
    assert alerts["sms_failures"].notify.to == ("marketing_manager",)


@pytest.mark.parametrize("text, message", [
    ("kpi: redemption_rat\nbelow: 5%\nnotify: {channel: email}", "did you mean `redemption_rate`?"),
    ("kpi: nps\nnotify: {channel: email}", "must say `below:` or `above:`"),
    ("kpi: nps\nbelow: 0\nabove: 3\nnotify: {channel: email}", "must say `below:` or `above:`"),
    ("kpi: nps\nbelow: 0\nnotify: {channel: email, to: {role: marketing_manger}}",
     "unknown role `marketing_manger`; did you mean `marketing_manager`?"),
    ("kpi: nps\nbelow: 0\nnotify: {channel: sms}", "template `alert_notice` has no sms version"),
    ("kpi: nps\nbelow: 0\nnotify: {channel: email, template: alert_notic}", "did you mean `alert_notice`?"),
    ("kpi: nps\nbelow: five\nnotify: {channel: email}", "a percentage such as 5%"),
    ("kpi: nps\nbelow: 0\ncampaigns: [spring_sal]\nnotify: {channel: email}",
     "unknown campaign `spring_sal`; did you mean `spring_sale`?"),
])
def test_a_wrong_alert_is_a_located_error(text: str, message: str) -> None:
    files = [(f"lib{i}.yaml", p.read_text(encoding="utf-8")) for i, p in enumerate(_template_files())]
    campaign = "kind: campaign\nid: spring_sale\ntitle: 春季促销\nstart: '2025-03-01'\nend: '2025-03-31'\n"
    result = load_texts([*files, ("c.yaml", campaign), ("a.yaml", "kind: alert\nid: x\ntitle: X\n" + text)])
    found = [e for e in result.errors if e.file == "a.yaml"]
    assert any(message in e.message for e in found), found
    assert all(e.line >= 1 for e in found)


def test_low_redemption_breaches_only_three_days_in_and_with_enough_coupons() -> None:
    low = _alerts("kind: alert\nid: low\ntitle: 低\nkpi: redemption_rate\nbelow: 5%\nafter: 3d\nmin_count: 20\n"
                  "notify: {channel: email}")["low"]
    started = campaign_started(datetime(2025, 3, 6).date(), TZ)  # 2025-03-05 16:00 UTC
    young = _campaign(starts_at=started)
    # 2 days 18 hours in: not yet
    assert breaches([low], [young], now=started + timedelta(days=2, hours=18), tz=TZ) == []
    found = breaches([low], [young], now=started + timedelta(days=3), tz=TZ)
    assert [(b.alert.id, b.campaign.campaign_id, b.value) for b in found] == [("low", "spring", 0.04)]
    # 19 coupons issued is below min_count 20: not judged
    assert breaches([low], [_campaign(counts={"coupons_issued": 19})], now=NOW, tz=TZ) == []
    # at exactly 5 % it does not breach (strictly below)
    assert breaches([low], [_campaign(kpis={"redemption_rate": 0.05})], now=NOW, tz=TZ) == []
    # no KPI yet (nothing issued): no data is not bad data
    assert breaches([low], [_campaign(kpis={"redemption_rate": None})], now=NOW, tz=TZ) == []
    # an ended campaign is not watched
    assert breaches([low], [_campaign(status="ended")], now=NOW, tz=TZ) == []


def test_an_alert_limited_to_campaigns_and_a_disabled_alert() -> None:
    alerts = _alerts("- kind: campaign\n  id: autumn\n  title: 秋\n  start: '2025-09-01'\n  end: '2025-09-30'\n"
                     "- kind: alert\n  id: only\n  title: 仅\n  kpi: nps\n  below: 0\n  campaigns: [autumn]\n"
                     "  notify: {channel: email}\n"
                     "- kind: alert\n  id: off\n  title: 关\n  kpi: nps\n  below: 0\n  enabled: false\n"
                     "  notify: {channel: email}\n"
                     "- kind: alert\n  id: on\n  title: 开\n  kpi: nps\n  below: 0\n  notify: {channel: email}\n")
    found = breaches(alerts.values(), [_campaign(), _campaign(campaign_id="autumn")], now=NOW, tz=TZ)
    assert sorted((b.alert.id, b.campaign.campaign_id) for b in found) == [
        ("on", "autumn"), ("on", "spring"), ("only", "autumn")]


def test_periods_start_at_local_midnight_and_span_every() -> None:
    day = timedelta(days=1)
    # 23:59 and 00:01 Shanghai time are different days; 00:01 and 23:00 the same
    before = datetime(2025, 3, 7, 15, 59, tzinfo=UTC)
    after = datetime(2025, 3, 7, 16, 1, tzinfo=UTC)
    late = datetime(2025, 3, 8, 15, 0, tzinfo=UTC)
    assert period_key(before, day, TZ) != period_key(after, day, TZ)
    assert period_key(after, day, TZ) == period_key(late, day, TZ)
    # a week-long period covers seven consecutive local days
    week = timedelta(days=7)
    keys = {period_key(after + day * i, week, TZ) for i in range(14)}
    assert len(keys) in (2, 3)


def test_values_in_notices_are_in_the_kpis_unit() -> None:
    assert format_kpi("redemption_rate", 0.0412) == "4.1%"
    assert format_kpi("nps", -12.345) == "-12.3"
    assert format_kpi("cost", 12345.5) == "12,345.50"
