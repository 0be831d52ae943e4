"""数据预警, weekly reports and 复盘 (issue 14, items 6 and 7), driven through
the scheduler's own tick functions on a fake clock, on SQLite and PostgreSQL:

* an alert notifies the campaign's owner through the e-mail connector once
  per period, whatever the ticks, and is listed on ``/alerts``;
* the weekly report reaches the owner once per week with the headline table
  and the charts as inline PNG images;
* when a campaign ends its retrospective appears pre-filled with the KPIs
  against targets; the team saves lessons (a stale save is a 409) and finds
  it again by searching past campaigns.
"""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from dashboard_support import page_tables, real_packaging
from flask import Flask
from flask.testing import FlaskClient
from openpyxl import load_workbook
from sqlalchemy import select
from web_support import NOW, PASSWORD, Clock, bearer, csrf_from

from engine.library import library_paths
from engine.publishing import publish_paths
from engine.storage.models import Event, OutboxMessage
from web.worker import tick_functions

CAMPAIGN = "member_winback"  # owner: the user `marketing` (workflows/member/campaigns.yaml)
OWNER_EMAIL = "owner@example.com"
ROI_ALERT = """
kind: alert
id: roi_negative
title: ROI 为负
title_en: ROI below zero
kpi: roi
below: 0
every: 1d
notify: {channel: email, to: owner}
"""


@pytest.fixture
def owner(app: Flask) -> str:
    services = app.extensions["promoflow"]
    services.accounts.add_user("marketing", roles=["marketing"], password=PASSWORD, now=NOW, email=OWNER_EMAIL,
                               display_name="市场小王")
    return "marketing"


@pytest.fixture
def ticks(app: Flask) -> dict[str, Callable[..., Any]]:
    return dict(tick_functions(app.extensions["promoflow"]))


def _outbox(app: Flask, prefix: str) -> list[OutboxMessage]:
    with app.extensions["promoflow"].session_factory() as s:
        return list(s.scalars(select(OutboxMessage).where(OutboxMessage.idempotency_key.like(f"{prefix}%"))
                              .order_by(OutboxMessage.id)))


def test_an_alert_notifies_the_owner_once_per_period_and_is_listed(
        app: Flask, owner: str, ticks: dict[str, Callable[..., Any]], clock: Clock, tmp_path: Path,
        login: Callable[..., FlaskClient]) -> None:
    extra = tmp_path / "alerts.yaml"
    extra.write_text(ROI_ALERT, encoding="utf-8")
    services = app.extensions["promoflow"]
    publish_paths(services.session_factory, [*library_paths(), extra], now=NOW, by="test")
    # no orders yet and 3,000 yuan of labour: ROI = (0 − 3000) / 3000 = −100 %
    ticks["campaigns"](clock.now)
    ticks["alerts"](clock.now)
    ticks["alerts"](clock.now + timedelta(hours=3))  # same business day: nothing more
    sent = _outbox(app, "alert:")
    assert [(m.recipient, m.channel) for m in sent] == [(OWNER_EMAIL, "email")]
    assert sent[0].subject == "【数据预警】会员 90 天挽回：ROI 为负"
    assert "当前 ROI：-100.0%（阈值：低于 0.0%）" in sent[0].body
    assert f"/campaigns/{CAMPAIGN}" in sent[0].body
    # the shipped alerts stay quiet: redemption needs 20 coupons, NPS 10 answers, the budget is 6 % spent
    # the next business day is a new period: one more notice
    clock.now = NOW + timedelta(days=1)
    ticks["alerts"](clock.now)
    assert len(_outbox(app, "alert:")) == 2
    manager = login("manager")
    page = manager.get("/alerts")
    assert page.status_code == 200
    tables = page_tables(page.text)
    assert set(tables["alert_rules"]) == {"low_redemption", "negative_nps", "sms_failures", "budget_90",
                                          "roi_negative"}
    assert len(tables["alert_firings"]) == 2
    assert "ROI 为负" in page.text and "低于 5.0%" in page.text and "市场经理" in page.text
    english = manager.get("/alerts?lang=en")
    assert "ROI below zero" in english.text and "below 5.0%" in english.text
    exported = manager.get("/alerts?table=alert_firings&format=csv&lang=zh")
    rows = list(csv.reader(io.StringIO(exported.data.decode("utf-8-sig"))))
    assert rows[0][:3] == ["触发时间", "预警", "活动"]
    assert [r[2] for r in rows[1:]] == [CAMPAIGN, CAMPAIGN]
    sheet = load_workbook(io.BytesIO(manager.get("/alerts?table=alert_rules&format=xlsx").data)).active
    assert sheet.max_row == 6


def test_an_owner_without_an_address_is_reported_not_skipped_silently(
        app: Flask, ticks: dict[str, Callable[..., Any]], clock: Clock, tmp_path: Path) -> None:
    extra = tmp_path / "alerts.yaml"
    extra.write_text(ROI_ALERT, encoding="utf-8")
    services = app.extensions["promoflow"]
    publish_paths(services.session_factory, [*library_paths(), extra], now=NOW, by="test")
    ticks["alerts"](clock.now)  # the owner `marketing` does not exist here
    assert _outbox(app, "alert:") == []
    with services.session_factory() as s:
        events = list(s.scalars(select(Event).where(Event.name == "alert.notify_failed")))
    assert [e.payload["campaign"] for e in events] == [CAMPAIGN]


def test_the_weekly_report_reaches_the_owner_once_a_week_with_charts(
        app: Flask, owner: str, ticks: dict[str, Callable[..., Any]], clock: Clock) -> None:
    real_packaging()
    # NOW is Saturday 2025-03-01 10:00 in Shanghai: the week's report is due
    ticks["reports"](clock.now)
    ticks["reports"](clock.now + timedelta(days=1))  # Sunday: same week
    [report] = _outbox(app, "report:")
    assert report.idempotency_key == f"report:{CAMPAIGN}:2025-W09"
    assert report.recipient == OWNER_EMAIL and report.subject == "【活动周报】会员 90 天挽回（2025-W09）"
    assert "总成本 (元)：3,000.00" in report.body and "ROI：-100.0%" in report.body
    html = report.payload["html"]
    images = report.payload["options"]["inline_images"]
    assert [i["cid"] for i in images] == ["funnel-2025-W09@promoflow"]  # no daily rows yet: no daily chart
    for image in images:
        assert f'src="cid:{image["cid"]}"' in html
        assert base64.b64decode(image["data"]).startswith(b"\x89PNG")
    assert "<td>总成本 (元)</td><td>3,000.00</td>" in html
    # Monday 08:00 is before the new week's report time; 09:00 is not
    monday = NOW + timedelta(days=2)  # 2025-03-03 10:00 Shanghai
    ticks["reports"](monday - timedelta(hours=2))
    assert len(_outbox(app, "report:")) == 1
    ticks["reports"](monday)
    assert [m.idempotency_key for m in _outbox(app, "report:")][-1] == f"report:{CAMPAIGN}:2025-W10"


def test_an_ended_campaign_gets_a_retrospective_the_team_completes_and_finds(
        app: Flask, ticks: dict[str, Callable[..., Any]], clock: Clock, tokens: dict[str, str],
        login: Callable[..., FlaskClient]) -> None:
    manager = login("manager")
    assert manager.get(f"/campaigns/{CAMPAIGN}/retrospective").status_code == 404  # not ended yet
    ended = app.test_client().post(f"/api/v1/campaigns/{CAMPAIGN}/end", headers=bearer(tokens["manager"]))
    assert ended.status_code == 200, ended.text
    clock.now = NOW + timedelta(minutes=5)
    ticks["retrospectives"](clock.now)
    ticks["retrospectives"](clock.now)  # once
    api = app.test_client().get(f"/api/v1/campaigns/{CAMPAIGN}/kpis", headers=bearer(tokens["manager"])).get_json()
    page = manager.get(f"/campaigns/{CAMPAIGN}/retrospective")
    assert page.status_code == 200
    assert "活动复盘：会员 90 天挽回" in page.text
    tables = page_tables(page.text)
    assert tables["headline"]["total_cost"]["value"] == api["total_cost"]
    assert [(k, v["met"]) for k, v in tables["targets"].items()] == [
        ("converted_customers", "否"), ("average_order_value", ""), ("redemption_rate", "")]
    form = {"went_well": "短信到达率高", "to_improve": "核销率偏低", "lessons": "周末发券效果更好",
            "next_actions": "下次提前备货", "version": "1", "csrf_token": csrf_from(page.text)}
    saved = manager.post(f"/campaigns/{CAMPAIGN}/retrospective", data=form)
    assert saved.status_code == 302
    again = manager.get(f"/campaigns/{CAMPAIGN}/retrospective")
    assert "周末发券效果更好" in again.text and "复盘已保存" in again.text
    stale = manager.post(f"/campaigns/{CAMPAIGN}/retrospective", data={**form, "lessons": "覆盖"})
    assert stale.status_code == 409 and "覆盖" in stale.text  # kept on the form, not stored
    too_long = manager.post(f"/campaigns/{CAMPAIGN}/retrospective",
                            data={**form, "version": "2", "lessons": "长" * 5001})
    assert too_long.status_code == 422 and "5000" in too_long.text
    found = manager.get("/campaigns?q=周末发券")
    assert f'data-row="{CAMPAIGN}"' in found.text.split('class="retros"')[1]
    assert 'data-row="' not in manager.get("/campaigns?q=没有这回事").text.split('class="retros"')[1]
    # readers of the dashboard read the lessons too
    assert login("admin").get(f"/campaigns/{CAMPAIGN}/retrospective").status_code == 200


SMS_WORLD = """
- kind: connector
  id: sms_mem
  type: memory
  channel: sms
  settings: {fail_recipients: ["13800000001"]}
- kind: template
  id: flash_sms
  channels: [sms]
  sms: {aliyun_template_code: SMS_100001, sign_name: 促销通}
  body: "{{ customer.name }}您好，限时闪购今晚开始。退订回T"
- kind: rule
  id: flash_sms
  title: 闪购短信
  trigger: {schedule: "0 10 * * *", timezone: Asia/Shanghai}
  audience: {customer: {consent.sms: true}}
  once_per: ever
  steps:
    - send: {channel: sms, template: flash_sms, connector: sms_mem}
- kind: campaign
  id: flash
  title: 闪购
  owner: marketing
  channel: sms
  start: "2025-02-20"
  end: "2025-03-31"
  rules: [flash_sms]
- kind: alert
  id: flash_sms_failures
  title: 闪购短信失败率超过 2%
  kpi: sms_failure_rate
  above: 2%
  min_count: 3
  campaigns: [flash]
  notify: {channel: email, to: owner}
"""
SMS_CUSTOMERS = """external_id,name,phone,consent_sms
f1,李雷,13800000001,1
f2,韩梅梅,13800000002,1
f3,王芳,13800000003,1
"""


def test_sms_failures_of_a_campaigns_rules_raise_the_sms_alert(
        app: Flask, owner: str, ticks: dict[str, Callable[..., Any]], clock: Clock, tmp_path: Path) -> None:
    from engine.customers_import import import_customers

    services = app.extensions["promoflow"]
    extra = tmp_path / "flash.yaml"
    extra.write_text(SMS_WORLD, encoding="utf-8")
    publish_paths(services.session_factory, [*library_paths(), extra], now=NOW - timedelta(days=1), by="test")
    people = tmp_path / "customers.csv"
    people.write_text(SMS_CUSTOMERS, encoding="utf-8")
    assert not import_customers(services.session_factory, people, now=NOW - timedelta(days=1)).errors
    ticks["alerts"](clock.now)
    assert _outbox(app, "alert:") == []  # nothing sent yet: nothing to judge
    # the rule fires at 10:00 and the dispatcher delivers: one of three SMS fails (33 % > 2 %)
    for at in (NOW, NOW + timedelta(minutes=1), NOW + timedelta(minutes=2)):
        clock.now = at
        ticks["automation"](at)
        ticks["dispatch"](at)
    with services.session_factory() as s:
        sent = list(s.scalars(select(OutboxMessage).where(OutboxMessage.rule_id == "flash_sms")))
    assert sorted((m.recipient, m.status) for m in sent) == [
        ("13800000001", "failed"), ("13800000002", "sent"), ("13800000003", "sent")]
    ticks["alerts"](clock.now)
    [notice] = [m for m in _outbox(app, "alert:") if "闪购" in (m.subject or "")]
    assert notice.recipient == OWNER_EMAIL
    assert "当前 短信失败率：33.3%（阈值：高于 2.0%）" in notice.body
