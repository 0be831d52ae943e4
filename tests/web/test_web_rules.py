"""The rules page: who may see it, each rule's trigger, next run and last runs,
and the preview (table and SVG chart, nothing written); zh and en; both databases."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

from flask import Flask
from sqlalchemy import func, select
from web_support import NOW

from engine.automation.runner import run_rule
from engine.storage.database import transaction
from engine.storage.models import Consent, Customer, Journey, Order, OutboxMessage
from engine.storage.times import to_db_time


def _customers(app: Flask, n: int = 5) -> None:
    stamp = to_db_time(NOW)
    last = to_db_time(NOW - timedelta(days=120))
    with transaction(app.extensions["promoflow"].session_factory) as s:
        for i in range(1, n + 1):
            s.add(Customer(id=i, name=f"客户{i}", phone=f"1380000{i:04d}", email=f"c{i}@example.com", city="上海",
                           last_purchase_at=last, order_count=1, timezone="Asia/Shanghai", created_at=stamp,
                           updated_at=stamp))
            s.flush()
            s.add(Order(customer_id=i, amount=Decimal(100), placed_at=last, created_at=stamp))
            s.add(Consent(customer_id=i, channel="sms", granted=i != n, updated_at=stamp))


def _count(app: Flask, model) -> int:
    with app.extensions["promoflow"].session_factory() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_only_marketing_roles_and_admin(login) -> None:
    assert login("staff").get("/rules").status_code == 403
    assert login("outsider").get("/rules/winback_90d/preview").status_code == 403
    assert login("manager").get("/rules").status_code == 200
    assert login("admin").get("/rules").status_code == 200
    anonymous = login("admin").application.test_client()
    assert anonymous.get("/rules").status_code == 302


def test_list_shows_trigger_next_run_and_last_runs(app: Flask, login) -> None:
    _customers(app)
    svc = app.extensions["promoflow"]
    run_rule(svc.session_factory, "winback_90d", now=NOW, definitions=svc.registry.current())
    page = login("manager", "zh").get("/rules").text
    section = page[page.index('data-rule="winback_90d"'):]
    section = section[:section.index("</section>")]
    assert "每天 10:00 (Asia/Shanghai)" in section
    assert "2025-03-02 10:00" in section  # NOW is 10:00 Shanghai: the next run is tomorrow
    row = re.search(r'<td class="entered">(\d+)</td><td class="sent">(\d+)</td>', section)
    assert row and row.groups() == ("4", "4")  # the 5th customer has no SMS consent: not in the audience
    english = login("manager", "en").get("/rules").text
    assert "daily at 10:00 (Asia/Shanghai)" in english and "Last runs" in english
    assert "on event customer.registered" in english


def test_preview_renders_table_and_chart_and_writes_nothing(app: Flask, login) -> None:
    _customers(app)
    before = (_count(app, Journey), _count(app, OutboxMessage))
    response = login("manager", "en").get("/rules/winback_90d/preview?days=10")
    assert response.status_code == 200
    page = response.text
    assert "Audience now: 4 customers" in page
    assert page.count("<svg") == 1 and 'class="bar sms"' in page
    sms = re.findall(r'<td class="ch-sms">(\d+)</td>', page)
    assert len(sms) == 10 and sum(map(int, sms)) == 4
    assert '<td class="total-cost">0.18</td>' in page  # 4 × 0.045
    assert (_count(app, Journey), _count(app, OutboxMessage)) == before
    zh = login("manager", "zh").get("/rules/winback_90d/preview").text
    assert "当前受众 4 人" in zh and "短信费用" in zh


def test_preview_of_event_rule_and_unknown_rule(login) -> None:
    client = login("admin")
    assert "no forecast" in client.get("/rules/welcome_journey/preview?lang=en").text
    assert client.get("/rules/no_such_rule/preview").status_code == 404


def test_list_shows_each_audience_in_words_zh_and_en(login) -> None:
    def audience(lang: str, rule: str) -> str:
        page = login("manager", lang).get("/rules").text
        section = page[page.index(f'data-rule="{rule}"'):]
        section = section[:section.index("</section>")]
        found = re.search(r'<dd class="audience">(.*?)</dd>', section)
        assert found, rule
        return found.group(1)

    assert audience("zh", "dealer_quarterly_rebate") == "属于客群「经销商」"
    assert audience("en", "dealer_quarterly_rebate") == "in segment “Dealers”"
    assert audience("zh", "launch_early_bird") == "标签包含 launch_reserved 且 短信同意 = 是"
    assert audience("en", "launch_early_bird") == "tags contain launch_reserved and SMS consent = yes"
