"""Who looks after a customer, through the product's doors: ``account_manager``
(a user name) and ``store`` on ``POST/PATCH /api/v1/customers`` and in the
customers CSV import; ``customer.updated`` on PATCH and on a merge, and a
merge rescoring the survivor's RFM; both databases."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import Float, cast, func, select

from engine.storage.models import Customer, Event
from web.cli import main


def _events(app, name: str) -> list[dict]:
    with app.extensions["promoflow"].session_factory() as s:
        return [dict(p) for p in s.scalars(select(Event.payload).where(Event.name == name).order_by(Event.id))]


def test_account_manager_and_store_through_post_and_patch(api, app) -> None:
    made = api("POST", "/customers", json={"phone": "13800000031", "name": "甲", "account_manager": "mkt",
                                           "store": "S01"})
    assert made.status_code == 201, made.get_json()
    cid = made.get_json()["id"]
    got = api("GET", f"/customers/{cid}").get_json()
    assert (got["account_manager"], got["store"], got["attrs"]) == ("mkt", "S01", {"store": "S01"})

    changed = api("PATCH", f"/customers/{cid}", json={"account_manager": "staff"})
    assert changed.status_code == 200, changed.get_json()
    assert (changed.get_json()["account_manager"], changed.get_json()["store"]) == ("staff", "S01")
    cleared = api("PATCH", f"/customers/{cid}", json={"account_manager": None, "store": None})
    assert (cleared.get_json()["account_manager"], cleared.get_json()["store"]) == (None, None)

    typo = api("PATCH", f"/customers/{cid}", json={"account_manager": "mtk"})
    assert typo.status_code == 422
    [error] = typo.get_json()["errors"]
    assert (error["field"], error["code"]) == ("account_manager", "unknown_user") and "mkt" in error["message"]
    assert api("GET", f"/customers/{cid}").get_json()["account_manager"] is None  # nothing written
    empty = api("POST", "/customers", json={"phone": "13800000032", "store": "  "})
    assert empty.status_code == 422 and empty.get_json()["errors"][0]["field"] == "store"

    batch = api("POST", "/customers", json={"items": [{"phone": "13800000033", "account_manager": "nobody"},
                                                      {"phone": "13800000034", "account_manager": "mkt"}]})
    first, second = batch.get_json()["results"]
    assert first["status"] == "error" and first["errors"][0]["code"] == "unknown_user"
    assert second["status"] == "created"
    assert api("GET", f"/customers/{second['id']}").get_json()["account_manager"] == "mkt"


def test_patch_emits_customer_updated_with_the_fields_given(api, app) -> None:
    cid = api("POST", "/customers", json={"phone": "13800000041"}).get_json()["id"]
    assert _events(app, "customer.updated") == []  # a first sight is customer.registered only
    assert api("PATCH", f"/customers/{cid}", json={"city": "上海", "store": "S02"}).status_code == 200
    refused = api("PATCH", f"/customers/{cid}", json={"account_manager": "nobody"})
    assert refused.status_code == 422
    assert _events(app, "customer.updated") == [
        {"customer_id": cid, "reason": "patch", "source": "api:pos", "fields": ["city", "store"]}]


def test_csv_import_sets_account_manager_and_store(api, app, db_url: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PROMOFLOW_INSTANCE_PATH", str(tmp_path / "instance"))
    path = tmp_path / "customers.csv"
    path.write_text("external_id,name,account_manager,store\n"
                    "K1,客户一,mkt,S07\n"
                    "K2,客户二,bob,S07\n"
                    "K3,客户三,,\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["--database-url", db_url, "customers", "import", str(path)])
    assert result.exit_code == 0, result.output
    assert "customers.csv:3: account_manager: no user `bob`" in result.output
    with app.extensions["promoflow"].session_factory() as s:
        ids = {ext: cid for ext, cid in s.execute(select(Customer.external_id, Customer.id))}
    assert set(ids) == {"K1", "K3"}
    k1, k3 = (api("GET", f"/customers/{ids[k]}").get_json() for k in ("K1", "K3"))
    assert (k1["account_manager"], k1["store"]) == ("mkt", "S07")
    assert (k3["account_manager"], k3["store"]) == (None, None)


def _order(api, customer_id: int, external_id: str, amount: str, day: int) -> None:
    answer = api("POST", "/orders", json={"source": "pos", "external_id": external_id,
                                          "customer_id": customer_id, "amount": amount,
                                          "placed_at": f"2026-02-{day:02d} 12:00"})
    assert answer.status_code == 201, answer.get_json()


def test_merge_rescores_the_survivor_and_emits_customer_updated(api, app) -> None:
    ids = [api("POST", "/customers", json={"phone": f"138000001{i:02d}"}).get_json()["id"] for i in range(12)]
    for i, cid in enumerate(ids):  # a spread of buyers to rank against
        _order(api, cid, f"B{i}", f"{20 + 10 * i}.00", 1 + i)
    survivor, merged = ids[0], ids[11]  # the smallest buyer takes over the biggest one's orders
    _order(api, merged, "B11b", "500.00", 25)
    before = api("GET", f"/customers/{survivor}").get_json()
    assert (before["order_count"], before["rfm_segment"]) == (1, "hibernating")

    done = api("POST", f"/customers/{survivor}/merge", json={"from": merged}, as_="admin")
    assert done.status_code == 200, done.get_json()
    after = api("GET", f"/customers/{survivor}").get_json()
    assert (after["order_count"], after["total_spent"]) == (3, "650.00")
    with app.extensions["promoflow"].session_factory() as s:
        c = Customer
        window = (select(c.id, func.ntile(5).over(order_by=(c.last_purchase_at, c.id)),
                         func.ntile(5).over(order_by=(c.order_count, c.id)),
                         func.ntile(5).over(order_by=(cast(c.total_spent, Float), c.id)))
                  .where(c.order_count > 0)).subquery()
        expected = s.execute(select(window).where(window.c.id == survivor)).one()[1:]
        stored = s.execute(select(c.rfm_r, c.rfm_f, c.rfm_m).where(c.id == survivor)).one()
    assert tuple(stored) == tuple(expected) and expected == (5, 5, 5)  # the latest, most and largest orders now
    assert after["rfm_segment"] == "champion"
    [updated] = _events(app, "customer.updated")
    assert (updated["customer_id"], updated["reason"], updated["merged"]) == (survivor, "merge", merged)
