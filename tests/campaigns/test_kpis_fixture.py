"""Every KPI of the hand-built fixture (tests/campaigns/kpi_fixture.py),
worked out by hand below, asserted exactly on SQLite and PostgreSQL.

Campaign fx: 2025-03-01..03-31 (Shanghai), attribution window 7 days, so the
default range is 2025-02-28 16:00Z .. 2025-04-07 16:00Z. KPIs are read at
2025-10-01 02:00Z (``as_of`` = the range end; loyalty is observed until now).

Reach (12 messages written for arm "a", c01..c12):
  sent 11 (c12 dead); delivered 9 (c01..c09); failed 2 (c10 undelivered,
  c12 dead); clicked 4 (c01, c02, c03, c11); replied 1 (c04's answer names
  its message). delivery 9/11, failure 2/12, clicks 4/11.
  audience 18 (12 in arm a + 6 control), control 6, reached 11.
Coupons (fx_pool, 12 issued at T0): redeemed 3 by orders (c01 +24 h, c02
  +48 h, c05 +432 h): rate 3/12 = 0.25, average (24+48+432)/3 = 168 h.
Attribution:
  by coupon: c01 120, c02 80, c05 150 (18 days later: the code still counts);
  by touch (first delivered/clicked fx message, 7 days): c03 200, c06 60,
  c11 100 (click, no receipt), c09 40 (fy reaches c09 only after the order);
  not: c04 (day 8), c08 (fy touched later: last touch is fy's), c10 (no
  touch), c07 (cancelled), c06's second order (day 23).
  orders 7, revenue 750.00, coupon 3 / message 4, buyers 7,
  AOV 750/7 = 107.142… → 107.14. Converted (reached buyers) 7: 7/11.
  New customers: buyers with no earlier counted order: c02 c05 c06 c09 c11 = 5.
  Total revenue of the range (every counted order): 1800.00.
Costs:
  SMS 10 × 1 segment (60+5 chars) + 1 × 3 segments (130+5) = 13 × 0.045 = 0.585 → 0.59;
  coupon discounts 3 × 20 = 60.00; coupon handling 12 × 0.10 = 1.20;
  materials 500.00 (definition); labour 800.00, media 200.00 (the 999.00 of
  May is after the range). Total 1561.79; budget 2000 → used 0.780895.
  ROI (750 − 1561.79)/1561.79 = −0.519776; CAC 1561.79/5 = 312.358 → 312.36.
Loyalty (first attributed order → next counted order):
  c01 +78 d, c02 +128 d, c06 +22 d, others none. Cohort 2025-03, 7 buyers:
  7 d 0/7, 30 d 1/7, 90 d 2/7, 180 d 3/7. Repurchase 30 d 1/7, 90 d 2/7,
  churn 5/7. Repurchased (funnel) 3.
Arms (orders within 7 days after entering at T0):
  a: 12 customers, converted 8 (c01 c02 c03 c06 c08 c09 c10 c11), revenue 760;
  control: 6, converted 2 (c13 100, c14 50), revenue 150.
  CLV (365 days after entering): a 1260/12 = 105.00; control 230/6 = 38.33;
  difference 66.67.
NPS (fx and its rule's answers): 10, 9, 8, 7, 6, 3, 10: promoters 3,
  passives 2, detractors 2, 7 answers: 100 × 1/7 = 14.2857; tags 物流慢 2, 客服态度 1.
Tasks: 2 created, 1 answered in 1 h.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask import Flask

from .kpi_fixture import seed
from .support import bearer, check_schema, statsmodels_modules

HERE = Path(__file__).resolve().parent


@pytest.fixture
def extra_definitions() -> list[Path]:
    return [HERE / "fixture.yaml"]


def _close(value: float | None, expected: float) -> bool:
    return value is not None and abs(value - expected) < 1e-6


def test_every_kpi_of_the_hand_built_fixture(app: Flask, tokens: dict[str, str], clock) -> None:
    seed(app, tokens, clock)
    clock.now = datetime(2025, 10, 1, 2, 0, tzinfo=UTC)
    got = app.test_client().get("/api/v1/campaigns/fx/kpis?total_revenue=1", headers=bearer(tokens["mm"]))
    assert got.status_code == 200, got.text
    k = got.get_json()
    check_schema(app, "CampaignKpis", k)
    assert (k["start"], k["end"], k["as_of"]) == ("2025-02-28T16:00:00Z", "2025-04-07T16:00:00Z",
                                                  "2025-04-07T16:00:00Z")
    assert k["attribution_window_days"] == 7
    # reach
    assert (k["audience"], k["control_size"], k["reached"]) == (18, 6, 11)
    assert (k["sent"], k["delivered"], k["failed"], k["clicked"], k["clicked_customers"], k["replied"]) == (
        11, 9, 2, 4, 4, 1)
    assert _close(k["delivery_rate"], 9 / 11) and _close(k["failure_rate"], 2 / 12)
    assert _close(k["click_rate"], 4 / 11)
    # coupons
    assert (k["coupons_issued"], k["coupons_redeemed"]) == (12, 3)
    assert k["redemption_rate"] == 0.25 and _close(k["redeem_hours_avg"], 168.0)
    # orders
    assert (k["attributed_orders"], k["coupon_orders"], k["message_orders"]) == (7, 3, 4)
    assert (k["attributed_revenue"], k["average_order_value"], k["total_revenue"]) == ("750.00", "107.14", "1800.00")
    assert (k["buyers"], k["converted_customers"], k["new_customers"]) == (7, 7, 5)
    assert _close(k["conversion_rate"], 7 / 11)
    # money
    assert k["costs"] == [
        {"category": "coupon_discounts", "amount": "60.00"}, {"category": "coupon_handling", "amount": "1.20"},
        {"category": "labour", "amount": "800.00"}, {"category": "materials", "amount": "500.00"},
        {"category": "media", "amount": "200.00"}, {"category": "messages_sms", "amount": "0.59"}]
    assert (k["total_cost"], k["budget"], k["cac"]) == ("1561.79", "2000.00", "312.36")
    assert _close(k["roi"], round((750 - 1561.79) / 1561.79, 6))
    assert _close(k["budget_used_rate"], round(1561.79 / 2000, 6))
    # loyalty
    assert _close(k["repurchase_rate_30d"], round(1 / 7, 6)) and _close(k["repurchase_rate_90d"], round(2 / 7, 6))
    assert _close(k["churn_rate"], round(5 / 7, 6))
    assert k["cohorts"] == [{"cohort": "2025-03", "customers": 7, "cells": [
        {"days": 7, "matured": 7, "retained": 0, "rate": 0.0},
        {"days": 30, "matured": 7, "retained": 1, "rate": round(1 / 7, 6)},
        {"days": 90, "matured": 7, "retained": 2, "rate": round(2 / 7, 6)},
        {"days": 180, "matured": 7, "retained": 3, "rate": round(3 / 7, 6)}]}]
    assert (k["clv"], k["clv_control"], k["clv_difference"]) == ("105.00", "38.33", "66.67")
    assert k["funnel"] == [{"stage": "reached", "customers": 11}, {"stage": "clicked", "customers": 4},
                           {"stage": "redeemed", "customers": 3}, {"stage": "ordered", "customers": 7},
                           {"stage": "repurchased", "customers": 3}]
    # answers and follow-up
    assert (k["nps_answers"], k["nps_promoters"], k["nps_passives"], k["nps_detractors"]) == (7, 3, 2, 2)
    assert _close(k["nps"], round(100 / 7, 6))
    assert k["nps_distribution"] == [0, 0, 0, 1, 0, 0, 1, 1, 1, 1, 2]
    assert k["feedback_tags"] == [["物流慢", 2], ["客服态度", 1]]
    assert (k["tasks_created"], k["tasks_answered"], k["task_response_hours_avg"]) == (2, 1, 1.0)
    # experiment
    arms = {a["arm"]: a for a in k["arms"]}
    assert (arms["a"]["customers"], arms["a"]["converted"], arms["a"]["revenue"]) == (12, 8, "760.00")
    assert (arms["control"]["customers"], arms["control"]["converted"], arms["control"]["revenue"]) == (
        6, 2, "150.00")
    assert (arms["a"]["revenue_per_customer"], arms["control"]["revenue_per_customer"]) == ("63.33", "25.00")
    assert arms["control"]["conversion_uplift"] is None
    assert _close(k["uplift_conversion"]["estimate"], round(8 / 12 - 2 / 6, 6))
    assert _close(k["uplift_revenue_per_customer"]["estimate"], round(760 / 12 - 150 / 6, 6))
    assert arms["a"]["conversion_uplift"] == k["uplift_conversion"]
    proportion, weightstats = statsmodels_modules()
    low, high = proportion.confint_proportions_2indep(8, 12, 2, 6, method="newcomb", compare="diff")
    assert _close(k["uplift_conversion"]["low"], round(low, 6)) and _close(k["uplift_conversion"]["high"], round(high, 6))
    treated = [120, 80, 200, 0, 0, 60, 0, 110, 40, 50, 100, 0]
    control = [100, 50, 0, 0, 0, 0]
    w_low, w_high = weightstats.CompareMeans(weightstats.DescrStatsW(treated), weightstats.DescrStatsW(control)
                                             ).tconfint_diff(usevar="unequal")
    assert abs(k["uplift_revenue_per_customer"]["low"] - w_low) < 1e-5
    assert abs(k["uplift_revenue_per_customer"]["high"] - w_high) < 1e-5
    # series
    assert k["daily"] == [
        {"day": "2025-03-02", "sends": 11, "redemptions": 0, "revenue": "40.00"},
        {"day": "2025-03-03", "sends": 0, "redemptions": 1, "revenue": "180.00"},
        {"day": "2025-03-04", "sends": 0, "redemptions": 1, "revenue": "80.00"},
        {"day": "2025-03-05", "sends": 0, "redemptions": 0, "revenue": "200.00"},
        {"day": "2025-03-06", "sends": 0, "redemptions": 0, "revenue": "100.00"},
        {"day": "2025-03-20", "sends": 0, "redemptions": 1, "revenue": "150.00"}]
    # targets
    assert k["targets"] == [
        {"metric": "new_customers", "target": "5.00", "actual": 5.0, "met": True, "higher_is_better": True},
        {"metric": "average_order_value", "target": "200.00", "actual": 107.14, "met": False,
         "higher_is_better": True},
        {"metric": "cac", "target": "300.00", "actual": 312.36, "met": False, "higher_is_better": False}]


def test_the_competing_campaign_gets_its_last_touch_order(app: Flask, tokens: dict[str, str], clock) -> None:
    """fy reached c08 and c09 on 03-03 02:00: c08's order of 03-04 (110.00) is
    fy's (its touch is the later one); c09's order came before fy's touch."""
    seed(app, tokens, clock)
    clock.now = datetime(2025, 10, 1, 2, 0, tzinfo=UTC)
    k = app.test_client().get("/api/v1/campaigns/fy/kpis", headers=bearer(tokens["mm"])).get_json()
    assert (k["attributed_orders"], k["attributed_revenue"], k["message_orders"]) == (1, "110.00", 1)
