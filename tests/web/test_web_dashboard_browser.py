"""Done when (issue 14): a browser opens the demo's campaign dashboard and sees
non-empty charts drawn by the vendored ECharts, whose numbers — the HTML
tables beside them, and the data the charts were drawn with — match
``GET /api/v1/campaigns/<id>/kpis``.

The demo is made by ``promoflow demo`` itself (seeded history, then eight
simulated days played through the product's doors); the page is served by a
real WSGI server and read by Debian's Chromium (Playwright, headless) with
no network beyond the loopback: the chart library is ours.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from dashboard_support import page_tables, same
from web_support import BROWSER_MARKS, CHROMIUM

from engine.settings import load_settings
from web import create_app
from web.cli import main

#: The browser marks without the database parameter: the demo is embedded SQLite by design.
pytestmark = [m for m in BROWSER_MARKS if m.name != "parametrize"]
CAMPAIGN = "member_winback"


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Any]]:
    """``promoflow demo`` in a fresh folder, then the app on its database under waitress."""
    monkeypatch.chdir(tmp_path)
    for name in ("PROMOFLOW_DATABASE_URL", "PROMOFLOW_CONNECTOR_SANDBOX", "PROMOFLOW_INSTANCE_PATH"):
        monkeypatch.delenv(name, raising=False)
    made = CliRunner().invoke(main, ["demo", "--instance", "demo", "--no-serve", "--customers", "300", "--days", "8"])
    assert made.exit_code == 0, made.output
    settings = load_settings(overrides={"instance_path": str(tmp_path / "demo"), "database_url": ""}, environ={})
    app = create_app({}, settings=settings)
    from waitress.server import create_server

    server = create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}", app
    finally:
        server.close()
        thread.join(timeout=5)


@pytest.fixture
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def _sign_in(browser: Any, base: str, path: str, locale: str) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale=locale)
    # nothing but our own server: a chart library from a CDN would fail here
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(base) else route.abort())
    page = context.new_page()
    page.goto(f"{base}{path}")
    page.fill("#username", "marketing_manager")  # the demo's user for the role
    page.fill("#password", "marketing_manager123")
    page.click("button[type=submit]")
    page.wait_for_url(f"**{path}")
    return page


#: What each chart of the campaign page draws, and the API field it comes from.
CHARTS = {"funnel": "funnel", "daily": "daily", "costs": "costs", "arms": "arms"}


def test_the_demos_campaign_dashboard_draws_charts_whose_numbers_match_the_api(demo: tuple[str, Any],
                                                                                browser: Any) -> None:
    base, app = demo
    services = app.extensions["promoflow"]
    token = services.accounts.create_token("marketing_manager", now=services.now())
    page = _sign_in(browser, base, f"/campaigns/{CAMPAIGN}", "zh-CN")
    api = app.test_client().get(f"/api/v1/campaigns/{CAMPAIGN}/kpis",
                                headers={"Authorization": f"Bearer {token}"}).get_json()
    assert api["sent"] > 0 and api["coupons_redeemed"] > 0 and api["attributed_orders"] > 0, api  # the demo played
    page.wait_for_selector("figure.chart[data-drawn='1']")
    drawn = page.eval_on_selector_all("figure.chart", """figs => figs.map(f => {
        const box = f.querySelector('.chart-canvas');
        const chart = echarts.getInstanceByDom(box);
        const canvas = box.querySelector('canvas');
        return {id: f.dataset.chart, drawn: f.dataset.drawn === '1',
                width: canvas ? canvas.width : 0, height: canvas ? canvas.height : 0,
                series: chart ? chart.getOption().series.map(s => (s.data || []).map(d =>
                    Array.isArray(d) ? d[2] : (d !== null && typeof d === 'object' ? d.value : d))) : []};
    })""")
    by_id = {d["id"]: d for d in drawn}
    assert set(CHARTS) <= set(by_id), by_id.keys()
    for chart in by_id.values():
        assert chart["drawn"] and chart["width"] > 100 and chart["height"] > 100, chart
        assert any(any(v not in (None, 0) for v in s) for s in chart["series"]), chart  # not an empty chart
    tables = page_tables(page.content())
    # the numbers under each chart are the API's
    funnel = {s["stage"]: s["customers"] for s in api["funnel"]}
    assert {k: int(v["customers"]) for k, v in tables["funnel"].items()} == funnel
    assert by_id["funnel"]["series"] == [[funnel[k] for k in tables["funnel"]]]
    daily = {d["day"]: d for d in api["daily"]}
    assert set(tables["daily"]) == set(daily)
    for day, cells in tables["daily"].items():
        assert int(cells["sends"]) == daily[day]["sends"] and int(cells["redemptions"]) == daily[day]["redemptions"]
        assert Decimal(cells["revenue"]) == Decimal(daily[day]["revenue"])
    assert by_id["daily"]["series"][0] == [daily[d]["sends"] for d in tables["daily"]]
    assert {k: Decimal(v["amount"]) for k, v in tables["costs"].items()} == {
        c["category"]: Decimal(c["amount"]) for c in api["costs"]}
    for arm in api["arms"]:
        assert same(tables["arms"][arm["arm"]]["conversion_rate"], arm["conversion_rate"])
    for key, cells in tables["headline"].items():
        assert same(cells["value"], api[key]), (key, cells, api[key])
    # the same page in English, and the overview's trend line for the campaign
    english = _sign_in(browser, base, f"/campaigns/{CAMPAIGN}?lang=en", "en-US")
    english.wait_for_selector("figure.chart[data-drawn='1']")
    assert "Member 90-day win-back" in english.inner_text("h1")
    assert english.locator("figure.chart canvas").count() >= len(CHARTS)
    overview = _sign_in(browser, base, "/dashboard", "zh-CN")
    overview.wait_for_selector(f"figure#chart-trend-{CAMPAIGN}[data-drawn='1']")
    row = page_tables(overview.content())["campaigns"][CAMPAIGN]
    assert same(row["attributed_revenue"], api["attributed_revenue"]) and same(row["roi"], api["roi"])
