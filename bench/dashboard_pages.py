"""How fast the campaign dashboard answers once the KPIs are computed (issue 14).

Builds a SQLite instance with the shipped definitions and 20,000 demo
customers (× ``--scale``) with their order history (a bulk history fixture,
``engine.demo_data.seed_demo``), then lets the product work: the scheduler's
automation and dispatch ticks run the 90-day win-back rule (coupons, SMS to
the sandbox), and the campaigns tick computes the ``member_winback`` KPI
snapshot once. Then, in the same run:

* baseline: ``GET /api/v1/campaigns/member_winback/kpis``, the KPI body as
  JSON from the same snapshot;
* project: ``GET /campaigns/member_winback``, the page with every table, the
  chart data and the help, built from that body.

    python bench/dashboard_pages.py [--scale S] [--views N]

The last line: ratio=R project=P baseline=B unit=views/s, R = page rate ÷
API rate (higher is better). The target is a page under 1 s once computed;
the slowest page view is printed too.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from argon2 import PasswordHasher

from engine.demo_data import seed_demo
from engine.library import library_paths
from engine.publishing import publish_paths
from engine.settings import Settings
from web import create_app
from web.worker import tick_functions

NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # Monday 10:00 in Shanghai
CAMPAIGN = "member_winback"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--views", type=int, default=30)
    args = parser.parse_args()
    customers = max(100, int(20_000 * args.scale))
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        settings = Settings(instance_path=tmp, database_url=f"sqlite:///{tmp / 'bench.sqlite'}",
                            secret_key="bench", timezone="Asia/Shanghai", locale="zh", connector_sandbox=True)
        app = create_app({"CLOCK": lambda: NOW, "PASSWORD_HASHER": PasswordHasher(time_cost=1, memory_cost=1024,
                                                                                   parallelism=1)},
                         settings=settings)
        services = app.extensions["promoflow"]
        publish_paths(services.session_factory, library_paths(), now=NOW, by="bench")
        services.accounts.add_user("mm", roles=["marketing_manager"], password="bench-pw-123", now=NOW)
        token = services.accounts.create_token("mm", now=NOW)
        started = time.perf_counter()
        summary = seed_demo(services.session_factory, now=NOW, customers=customers)
        ticks = dict(tick_functions(services))
        ticks["automation"](NOW)
        ticks["dispatch"](NOW)
        print(f"{summary.customers} customers, {summary.orders} orders seeded; rule and delivery "
              f"{time.perf_counter() - started:.1f} s")
        t0 = time.perf_counter()
        ticks["campaigns"](NOW)
        print(f"KPI snapshot computed in {time.perf_counter() - t0:.2f} s")
        api = app.test_client()
        headers = {"Authorization": f"Bearer {token}"}
        body = api.get(f"/api/v1/campaigns/{CAMPAIGN}/kpis", headers=headers).get_json()
        print(f"sent {body['sent']}, coupons issued {body['coupons_issued']}, attributed orders "
              f"{body['attributed_orders']}")
        page = app.test_client()
        login = page.get("/login")
        csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', login.text).group(1)  # type: ignore[union-attr]
        assert page.post("/login", data={"username": "mm", "password": "bench-pw-123", "csrf_token": csrf}
                         ).status_code == 302
        assert page.get(f"/campaigns/{CAMPAIGN}").status_code == 200  # warm the templates

        def timed(client, path: str, **kw) -> tuple[float, float]:
            times = []
            for _ in range(args.views):
                t = time.perf_counter()
                got = client.get(path, **kw)
                times.append(time.perf_counter() - t)
                assert got.status_code == 200, got.status_code
            return sum(times), max(times)

        base_total, base_max = timed(api, f"/api/v1/campaigns/{CAMPAIGN}/kpis", headers=headers)
        page_total, page_max = timed(page, f"/campaigns/{CAMPAIGN}")
        over_total, over_max = timed(page, "/dashboard")
    n = args.views
    print(f"API body: {base_total / n * 1000:.1f} ms a view (slowest {base_max * 1000:.1f} ms)")
    print(f"campaign page: {page_total / n * 1000:.1f} ms a view (slowest {page_max * 1000:.1f} ms; target < 1000 ms)")
    print(f"overview page: {over_total / n * 1000:.1f} ms a view (slowest {over_max * 1000:.1f} ms)")
    print(f"ratio={base_total / page_total:.2f} project={n / page_total:.1f} baseline={n / base_total:.1f} "
          f"unit=views/s")


if __name__ == "__main__":
    main()
