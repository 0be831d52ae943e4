"""``promoflow orders import``: GBK files from Chinese Excel, bad rows by
line, lines merged into orders, ``--history`` updates aggregates but emits no
events, a file in an unknown encoding is refused with a message (never a
traceback), a re-import adds nothing. SQLite and PostgreSQL."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from engine.storage.models import Event, Order
from web.cli import main

from .support import CUSTOMERS_CSV, customer

ORDERS_CSV = """order_id,customer_external_id,customer_phone,placed_at,amount,discount,store,sku,item_name,quantity,unit_price,coupon_code
O1,M001,,2024-01-05 10:00,,5,上海南京路店,SKU-1,咖啡豆,2,49.00,
O1,M001,,2024-01-05 10:00,,5,上海南京路店,SKU-2,马克杯,1,30.00,
O2,,13800000002,2024-02-01 12:00,66.50,,北京店,,,,,WB20KBEV2MSTRH
O3,M999,,2024-02-02 12:00,10,,,,,,,
O4,M003,,明天,10,,,,,,,
O5,M003,,2024-03-01,-3,,,,,,,
O6,M003,,2024-03-02 08:00,12.5,,,,,,,
"""


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str, session_factory):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROMOFLOW_INSTANCE_PATH", str(tmp_path / "instance"))
    runner = CliRunner()

    def do(*args: str):
        return runner.invoke(main, ["--database-url", db_url, *args], catch_exceptions=False)

    people = tmp_path / "customers.csv"
    people.write_text(CUSTOMERS_CSV, encoding="utf-8")
    assert do("customers", "import", str(people)).exit_code == 0
    return do


def _count(sf, model, *where) -> int:
    with sf() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)))


def test_gbk_file_history_bad_rows_by_line(tmp_path: Path, run, session_factory) -> None:
    path = tmp_path / "orders.csv"
    path.write_bytes(ORDERS_CSV.encode("gbk"))  # what Chinese Excel writes as "CSV"
    result = run("orders", "import", str(path), "--history")
    assert result.exit_code == 0, result.output
    errors = [line for line in result.output.splitlines() if line.startswith(str(path))]
    assert [e.split(": ", 1)[0] for e in errors] == [f"{path}:5", f"{path}:6", f"{path}:7"]
    assert "customer_external_id" in errors[0] and "placed_at" in errors[1] and "amount" in errors[2]
    assert "Imported 3 new order(s) of 6 in 7 row(s) (gb18030), history: no events; 3 row(s) skipped." \
        in result.output
    assert "Importing" not in result.output  # no progress bar when not a terminal
    sf = session_factory
    zhang, li, wang = customer(sf, "M001"), customer(sf, "M002"), customer(sf, "M003")
    # Two rows of O1 are one order with two lines: 2 × 49 + 30 − 5.
    assert (zhang.order_count, zhang.total_spent) == (1, Decimal("123.00"))
    assert (li.order_count, li.total_spent) == (1, Decimal("66.50"))
    assert (wang.order_count, wang.total_spent) == (1, Decimal("12.50"))
    assert zhang.rfm_segment not in (None, "prospect") and li.rfm_r is not None
    with sf() as s:
        o1 = s.scalars(select(Order).where(Order.external_id == "O1")).one()
        o2 = s.scalars(select(Order).where(Order.external_id == "O2")).one()
    assert [ln["sku"] for ln in o1.lines] == ["SKU-1", "SKU-2"] and o1.store == "上海南京路店"
    assert o1.placed_at.isoformat() == "2024-01-05T02:00:00" and o2.coupon_code == "WB20KBEV2MSTRH"
    assert _count(sf, Event, Event.name.like("order.%")) == 0  # a back-fill emits nothing

    again = run("orders", "import", str(path))
    assert "Imported 0 new order(s) of 6 in 7 row(s) (gb18030), 3 already stored" in again.output
    assert _count(sf, Order) == 3 and _count(sf, Event, Event.name.like("order.%")) == 0


def test_without_history_emits_order_created(tmp_path: Path, run, session_factory) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("\ufefforder_id,source,customer_external_id,placed_at,amount\n"
                    "X1,shop,M001,2025-02-01 10:00,20\nX2,shop,M002,2025-02-01T10:00:00+08:00,30\n",
                    encoding="utf-8")
    result = run("orders", "import", str(path))
    assert result.exit_code == 0 and "Imported 2 new order(s) of 2 in 2 row(s) (utf-8-sig)" in result.output
    with session_factory() as s:
        created = list(s.scalars(select(Event).where(Event.name == "order.created")))
    assert sorted(e.payload["external_id"] for e in created) == ["X1", "X2"]
    assert {e.payload["source"] for e in created} == {"shop"}


def test_unreadable_file_is_a_message_not_a_traceback(tmp_path: Path, run, session_factory) -> None:
    binary = tmp_path / "orders.csv"
    binary.write_bytes(bytes(range(256)) * 64)
    result = run("orders", "import", str(binary))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "CSV UTF-8" in result.output or "unknown column" in result.output
    header = tmp_path / "bad_header.csv"
    header.write_text("order_no,placed_at\n1,2025-01-01\n", encoding="utf-8")
    result = run("orders", "import", str(header))
    assert result.exit_code == 1 and "unknown column `order_no`" in result.output
    assert _count(session_factory, Order) == 0
