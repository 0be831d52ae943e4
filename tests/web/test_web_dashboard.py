"""The campaign dashboard pages (issue 14, item 5) in Chinese and English, on
SQLite and PostgreSQL: the overview and the campaign page show the numbers
the API answers (read back from each cell's ``data-value``), every table
exports as CSV and Excel with the same numbers, the search finds campaigns,
and wrong input is a 4xx that says why."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from dashboard_support import page_tables, same
from flask import Flask
from flask.testing import FlaskClient
from openpyxl import load_workbook
from web_support import bearer

CAMPAIGN = "member_winback"  # shipped in workflows/member/campaigns.yaml


def _api(app: Flask, tokens: dict[str, str], path: str) -> Any:
    got = app.test_client().get(path, headers=bearer(tokens["manager"]))
    assert got.status_code == 200, got.text
    return got.get_json()


def test_the_overview_lists_campaigns_with_status_and_the_apis_numbers(
        app: Flask, login: Callable[..., FlaskClient], tokens: dict[str, str]) -> None:
    manager = login("manager")
    page = manager.get("/dashboard")
    assert page.status_code == 200, page.text
    assert "活动看板" in page.text and "会员 90 天挽回" in page.text and "进行中" in page.text
    assert 'src="/static/vendor/echarts/echarts.min.js"' in page.text  # served by us, no CDN
    row = page_tables(page.text)["campaigns"][CAMPAIGN]
    api = _api(app, tokens, f"/api/v1/campaigns/{CAMPAIGN}/kpis")
    for key in ("sent", "redemption_rate", "conversion_rate", "attributed_revenue", "total_cost", "roi", "nps"):
        assert same(row[key], api[key]), (key, row[key], api[key])
    assert row["budget"] == "50000.00"
    english = manager.get("/dashboard?lang=en")
    assert "Campaign dashboard" in english.text and "Member 90-day win-back" in english.text
    assert "Running" in english.text and "活动看板" not in english.text


def test_the_campaign_page_shows_every_table_with_the_apis_numbers(
        app: Flask, login: Callable[..., FlaskClient], tokens: dict[str, str]) -> None:
    api = _api(app, tokens, f"/api/v1/campaigns/{CAMPAIGN}/kpis")
    manager = login("manager")
    for lang, words in (("zh", ("核心指标", "成本构成", "目标与实际", "归因规则")),
                        ("en", ("Headline KPIs", "Cost breakdown", "Targets against actuals", "Attribution rule"))):
        page = manager.get(f"/campaigns/{CAMPAIGN}?lang={lang}")
        assert page.status_code == 200, page.text
        for word in words:
            assert word in page.text, (lang, word)
        tables = page_tables(page.text)
        headline = tables["headline"]
        assert set(headline) >= {"audience", "sent", "redemption_rate", "roi", "total_cost", "nps_answers"}
        for key, cells in headline.items():
            assert same(cells["value"], api[key]), (key, cells, api[key])
        assert {k: Decimal(v["amount"]) for k, v in tables["costs"].items()} == {
            c["category"]: Decimal(c["amount"]) for c in api["costs"]} == {"labour": Decimal("3000.00")}
        for target in api["targets"]:
            cells = tables["targets"][target["metric"]]
            assert same(cells["target"], target["target"]) and same(cells["actual"], target["actual"])
        assert [k for k in tables["funnel"]] == [s["stage"] for s in api["funnel"]]
        for stage in api["funnel"]:
            assert same(tables["funnel"][stage["stage"]]["customers"], stage["customers"])
    # the page says in words how every number is made (zh above, en here)
    assert "(attributed revenue − total cost) ÷ total cost" in page.text
    assert "14 days after" in page.text  # the campaign's attribution window


def test_a_date_range_narrows_the_numbers_like_the_api(
        app: Flask, login: Callable[..., FlaskClient], tokens: dict[str, str]) -> None:
    api = _api(app, tokens, f"/api/v1/campaigns/{CAMPAIGN}/kpis?from=2025-02-01&to=2025-02-28")
    page = login("manager").get(f"/campaigns/{CAMPAIGN}?from=2025-02-01&to=2025-02-28")
    assert page.status_code == 200
    headline = page_tables(page.text)["headline"]
    for key in ("sent", "total_cost", "roi"):
        assert same(headline[key]["value"], api[key])
    assert 'value="2025-02-01"' in page.text


def test_every_table_exports_as_csv_and_excel_with_the_same_numbers(
        app: Flask, login: Callable[..., FlaskClient], tokens: dict[str, str]) -> None:
    api = _api(app, tokens, f"/api/v1/campaigns/{CAMPAIGN}/kpis")
    manager = login("manager")
    got = manager.get(f"/campaigns/{CAMPAIGN}?table=headline&format=csv")
    assert got.status_code == 200 and got.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert got.data.startswith(b"\xef\xbb\xbf")
    assert 'filename="campaign-member_winback-headline.csv"' in got.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(got.data.decode("utf-8-sig"))))
    assert rows[0] == ["指标", "数值"]
    by_label = dict(rows[1:])
    assert Decimal(by_label["总成本 (元)"]) == Decimal(api["total_cost"])
    assert Decimal(by_label["ROI"]) == Decimal(str(api["roi"]))
    xlsx = manager.get(f"/campaigns/{CAMPAIGN}?table=costs&format=xlsx&lang=en")
    assert xlsx.status_code == 200
    assert xlsx.headers["Content-Type"].startswith("application/vnd.openxmlformats-officedocument.spreadsheetml")
    sheet = load_workbook(io.BytesIO(xlsx.data)).active
    values = list(sheet.iter_rows(values_only=True))
    assert values[0] == ("Category", "Amount (CNY)")
    assert [(a, Decimal(str(b))) for a, b in values[1:]] == [("Labour", Decimal(3000))]
    overview = manager.get("/dashboard?table=campaigns&format=xlsx&lang=zh")
    sheet = load_workbook(io.BytesIO(overview.data)).active
    titles = [r[0] for r in sheet.iter_rows(min_row=2, values_only=True)]
    assert "会员 90 天挽回" in titles
    targets = manager.get(f"/campaigns/{CAMPAIGN}?table=targets&format=xlsx&lang=zh")
    rows = list(load_workbook(io.BytesIO(targets.data)).active.iter_rows(min_row=2, values_only=True))
    assert [(r[1], r[2]) for r in rows] == [(float(t["target"]), t["actual"]) for t in api["targets"]]


def test_bad_requests_are_4xx_with_reasons(login: Callable[..., FlaskClient]) -> None:
    manager = login("manager")
    bad = manager.get(f"/campaigns/{CAMPAIGN}?table=headline&format=pdf")
    assert bad.status_code == 400 and "csv" in bad.text
    missing = manager.get(f"/campaigns/{CAMPAIGN}?table=nope&format=csv")
    assert missing.status_code == 404 and "nope" in missing.text
    assert manager.get(f"/campaigns/{CAMPAIGN}?from=yesterday").status_code == 400
    assert manager.get(f"/campaigns/{CAMPAIGN}?from=2025-03-02&to=2025-03-01").status_code == 400
    assert manager.get("/campaigns/no_such_campaign").status_code == 404
    assert manager.get("/campaigns?status=soon").status_code == 400
    assert login("staff").get("/dashboard").status_code == 403
    assert login("clerk").get(f"/campaigns/{CAMPAIGN}").status_code == 403


def test_campaigns_are_searched_by_name_and_status(login: Callable[..., FlaskClient]) -> None:
    manager = login("manager")
    found = page_tables(manager.get("/campaigns?q=挽回").text)["campaigns"]
    assert list(found) == [CAMPAIGN]
    assert list(page_tables(manager.get("/campaigns?q=WIN-BACK&lang=en").text)["campaigns"]) == [CAMPAIGN]
    assert page_tables(manager.get("/campaigns?q=圣诞").text)["campaigns"] == {}
    assert page_tables(manager.get("/campaigns?status=ended").text)["campaigns"] == {}
    assert list(page_tables(manager.get("/campaigns?status=running").text)["campaigns"]) == [CAMPAIGN]


def test_nav_links_show_for_readers_only(login: Callable[..., FlaskClient]) -> None:
    assert 'class="nav-dashboard"' in login("manager").get("/").text
    assert 'class="nav-dashboard"' in login("admin").get("/").text
    assert 'class="nav-dashboard"' not in login("staff").get("/").text
