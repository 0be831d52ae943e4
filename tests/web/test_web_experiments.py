"""A rule's experiment on the pages: the customer page names each journey's
arm (对照组 / Control group, a variant's title) and the rule preview counts
entries, messages and coupons per arm; zh and en; both databases."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from flask import Flask
from web_support import NOW

from engine.automation.runner import run_rule
from engine.experiments import arm_of
from engine.library import library_paths
from engine.publishing import publish_paths
from engine.storage.database import transaction
from engine.storage.models import Consent, Customer, Order
from engine.storage.times import to_db_time

RULE = """
kind: rule
id: winback_test
title: 挽回实验
title_en: Win-back test
trigger: {schedule: "0 10 * * *", timezone: Asia/Shanghai}
audience:
  customer: {all: [{last_purchase_at: {older_than: 90d}}, {consent.sms: true}]}
once_per: ever
experiment:
  salt: web
  holdout: 40
  variants:
    - {key: a, title: 二十元券, title_en: Twenty-yuan coupon}
    - {key: b, title: 三十元券, title_en: Thirty-yuan coupon, coupon_value: 30}
steps:
  - issue_coupon: {pool: welcome10}
  - send: {channel: sms, template: winback_sms}
  - wait: 7d
"""


def _publish(app: Flask, tmp_path: Path) -> None:
    (tmp_path / "winback_test.yaml").write_text(textwrap.dedent(RULE), encoding="utf-8")
    publish_paths(app.extensions["promoflow"].session_factory, [*library_paths(), tmp_path / "winback_test.yaml"],
                  now=NOW, by="test")


def _customers(app: Flask, n: int) -> None:
    """Bulk history fixture: ``n`` customers inactive for 120 days, with SMS consent."""
    stamp, last = to_db_time(NOW), to_db_time(NOW - timedelta(days=120))
    with transaction(app.extensions["promoflow"].session_factory) as s:
        for i in range(1, n + 1):
            s.add(Customer(id=i, name=f"客户{i}", phone=f"1380000{i:04d}", last_purchase_at=last, order_count=1,
                           timezone="Asia/Shanghai", created_at=stamp, updated_at=stamp))
            s.flush()
            s.add(Order(customer_id=i, amount=Decimal(100), placed_at=last, created_at=stamp))
            s.add(Consent(customer_id=i, channel="sms", granted=True, updated_at=stamp))


def test_customer_page_names_the_arm(app: Flask, login, tmp_path: Path) -> None:
    _publish(app, tmp_path)
    _customers(app, 12)
    svc = app.extensions["promoflow"]
    rule = svc.registry.current().rules["winback_test"]
    arms = {i: arm_of(rule, i) for i in range(1, 13)}
    held, variant_b = (next(i for i, a in arms.items() if a == key) for key in ("control", "b"))
    report = run_rule(svc.session_factory, "winback_test", now=NOW, definitions=svc.registry.current())
    assert report.entered == 12 and report.counters.sent == 12 - sum(a == "control" for a in arms.values())
    zh = login("manager", "zh").get(f"/customers/{held}").text
    assert "实验分组: 对照组" in zh
    en = login("manager", "en").get(f"/customers/{held}").text
    assert "Experiment arm: Control group" in en
    assert "Experiment arm: Thirty-yuan coupon" in login("manager", "en").get(f"/customers/{variant_b}").text
    assert "实验分组: 三十元券" in login("manager", "zh").get(f"/customers/{variant_b}").text


def test_preview_counts_per_arm(app: Flask, login, tmp_path: Path) -> None:
    _publish(app, tmp_path)
    _customers(app, 20)
    rule = app.extensions["promoflow"].registry.current().rules["winback_test"]
    held = sum(arm_of(rule, i) == "control" for i in range(1, 21))
    en = login("manager", "en").get("/rules/winback_test/preview?days=2").text
    table = en[en.index('<table class="list arms">'):]
    table = table[:table.index("</table>")]
    assert "the control group gets no messages or coupons" in table
    assert f'<tr class="arm arm-control"><td>Control group <small>control</small></td><td>{held}</td><td>0</td><td>0</td></tr>' \
        in table
    assert "Twenty-yuan coupon" in table and "Thirty-yuan coupon" in table
    zh = login("manager", "zh").get("/rules/winback_test/preview?days=2").text
    assert "对照组" in zh and "二十元券" in zh and "实验分组（对照组不收消息和券）" in zh
