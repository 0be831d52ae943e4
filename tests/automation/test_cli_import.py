"""`promoflow customers import`: merge by external id/phone/email, bad rows with
their line numbers, good rows kept, re-import adds nothing, aggregates and RFM
recomputed, no progress bar when not a terminal; SQLite and PostgreSQL."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine.storage.models import Consent, Customer, CustomerTag, Order
from web.cli import main

CSV = """external_id,name,phone,email,city,birthday,registered_at,tags,consent_sms,consent_email,order_id,order_amount,order_placed_at
C1,张三,138 0000 0001,Zhang@Example.com,上海,1990-01-02,2025-01-01 10:00,vip;new,1,0,O1,100.50,2025-01-01 12:00
C1,,,,,,,,,,O2,50,2025-02-01 12:00
,李四,+86 138-0000-0002,,北京,,,,yes,,O3,20,2025-03-01
,,13800000002,li@example.com,,,,wecom,,,O4,abc,2025-03-01
,王五,,wang@example.com,,1990-02-30,,,,,,,
,,,,,,,,,,,,
,赵六,12,,,,,,,,,,
,,,zhang@example.com,,,,,,1,O5,300,2025-05-01 09:00
"""


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str, session_factory):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROMOFLOW_INSTANCE_PATH", str(tmp_path / "instance"))
    runner = CliRunner()

    def do(*args: str):
        return runner.invoke(main, ["--database-url", db_url, *args], catch_exceptions=False)

    return do


def _customers(sf: sessionmaker[Session]) -> dict[str, Customer]:
    with sf() as s:
        return {c.name: c for c in s.scalars(select(Customer))}


def test_import_merges_reports_bad_rows_and_recomputes(tmp_path: Path, run, session_factory) -> None:
    path = tmp_path / "customers.csv"
    path.write_text("\ufeff" + CSV, encoding="utf-8")  # a BOM, as Excel writes it
    result = run("customers", "import", str(path))
    assert result.exit_code == 0, result.output
    errors = [line for line in result.output.splitlines() if line.startswith(str(path))]
    assert errors == [
        f"{path}:5: order_amount `abc` is not a number",
        f"{path}:6: birthday `1990-02-30` is not a date (like 2025-01-31)",
        f"{path}:7: no external_id, phone or email to identify the customer",
        f"{path}:8: phone `12` is not a phone number",
    ]
    assert "Imported 4 of 8 row(s): 2 new customer(s), 0 updated, 4 new order(s)" in result.output
    assert "4 row(s) skipped" in result.output
    assert "Importing" not in result.output and "it/s" not in result.output and "row/s" not in result.output
    people = _customers(session_factory)
    assert set(people) == {"张三", "李四"}
    zhang, li = people["张三"], people["李四"]
    assert (zhang.external_id, zhang.phone, zhang.email, zhang.city) == ("C1", "13800000001", "zhang@example.com", "上海")
    assert li.phone == "13800000002" and li.email is None  # its second row was bad: nothing of it kept
    # C1 rows and the row matched by (case-insensitive) e-mail are one customer with three orders.
    assert (zhang.order_count, zhang.total_spent) == (3, Decimal("450.50"))
    assert zhang.last_purchase_at.isoformat() == "2025-05-01T01:00:00"  # 09:00 Shanghai in UTC
    assert (li.order_count, li.total_spent) == (1, Decimal("20.00"))
    assert {zhang.rfm_r, li.rfm_r} == {1, 2} and zhang.rfm_r == 2  # more recent: higher score
    assert zhang.rfm_m == 2 and zhang.rfm_segment and zhang.rfm_recency_days is not None
    with session_factory() as s:
        tags = set(s.execute(select(CustomerTag.customer_id, CustomerTag.tag)))
        consents = {(c.customer_id, c.channel): c.granted for c in s.scalars(select(Consent))}
    assert tags == {(zhang.id, "vip"), (zhang.id, "new")}
    assert consents == {(zhang.id, "sms"): True, (zhang.id, "email"): True, (li.id, "sms"): True}

    again = run("customers", "import", str(path))
    assert "0 new customer(s), 2 updated, 0 new order(s) (4 already stored)" in again.output
    with session_factory() as s:
        assert len(s.scalars(select(Order)).all()) == 4
    assert _customers(session_factory)["张三"].order_count == 3


def test_progress_bar_when_asked(tmp_path: Path, run) -> None:
    path = tmp_path / "one.csv"
    path.write_text("phone,name\n13900000001,甲\n13900000002,乙\n", encoding="utf-8")
    result = run("customers", "import", str(path), "--progress")
    assert result.exit_code == 0
    assert "Importing" in result.output and "2/2" in result.output


def test_unusable_files(tmp_path: Path, run) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("phone,nmae\n13900000001,甲\n", encoding="utf-8")
    result = run("customers", "import", str(bad))
    assert result.exit_code == 1
    assert "unknown column `nmae`; did you mean `name`?" in result.output
    none = tmp_path / "none.csv"
    none.write_text("name,city\n甲,上海\n", encoding="utf-8")
    assert "no identity column" in run("customers", "import", str(none)).output
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    assert "the file is empty" in run("customers", "import", str(empty)).output


def test_small_batches_merge_through_the_database(tmp_path: Path, run, session_factory) -> None:
    path = tmp_path / "customers.csv"
    path.write_text(CSV, encoding="utf-8")
    result = run("customers", "import", str(path), "--batch", "1")
    assert "Imported 4 of 8 row(s)" in result.output and "4 new order(s)" in result.output
    people = _customers(session_factory)
    assert set(people) == {"张三", "李四"} and people["张三"].order_count == 3
