"""CSV in through the same code as the API: a GBK file from Chinese Excel is
read (detected), a wrong encoding is a clear message, not a traceback; new
customers emit ``customer.registered`` unless ``--history``; events import
is idempotent and ``--history`` makes no rule act; both databases."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from engine.storage.models import Customer, CustomerTag, Event, OutboxMessage
from web.cli import main

from .conftest import NOW

GBK_CSV = "phone,name,city,tags,consent_sms,consent_email,email\n" \
          "13800000001,张三丰,上海市,会员;新客,是,是,zsf@example.com\n" \
          "13800000002,李四,北京,,否,,\n" \
          "13800000003,王小明,广州,,,,\n"


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str, app):
    """The CLI on the app's database (the app fixture published the library)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROMOFLOW_INSTANCE_PATH", str(tmp_path / "instance"))
    runner = CliRunner()

    def do(*args: str):
        return runner.invoke(main, ["--database-url", db_url, *args], catch_exceptions=False)

    return do


def _sf(app):
    return app.extensions["promoflow"].session_factory


def _registered(app) -> list[str]:
    with _sf(app)() as s:
        return list(s.scalars(select(Event.subject_id).where(Event.name == "customer.registered")))


def test_gbk_file_is_read_and_new_customers_are_welcomed(tmp_path: Path, run, app, worker_tick) -> None:
    path = tmp_path / "客户.csv"
    path.write_bytes(GBK_CSV.encode("gbk"))
    result = run("customers", "import", str(path))
    assert result.exit_code == 0, result.output
    assert "Read as GB18030/GBK." in result.output and "Imported 3 of 3 row(s): 3 new customer(s)" in result.output
    with _sf(app)() as s:
        people = {c.name: c for c in s.scalars(select(Customer))}
        tags = set(s.scalars(select(CustomerTag.tag)))
    assert set(people) == {"张三丰", "李四", "王小明"} and people["张三丰"].city == "上海市"
    assert {"会员", "新客"} <= tags
    assert sorted(_registered(app)) == sorted(str(c.id) for c in people.values())
    worker_tick(NOW + timedelta(minutes=1))
    with _sf(app)() as s:
        sent = s.execute(select(OutboxMessage.customer_id, OutboxMessage.template_id)).all()
    assert sent == [(people["张三丰"].id, "welcome")]  # the only one with e-mail consent


def test_history_backfill_emits_nothing_and_sends_nothing(tmp_path: Path, run, app, worker_tick) -> None:
    path = tmp_path / "old.csv"
    path.write_text(GBK_CSV, encoding="utf-8")
    result = run("customers", "import", str(path), "--history")
    assert result.exit_code == 0, result.output
    assert "3 new customer(s)" in result.output and "History" in result.output
    assert _registered(app) == []
    with _sf(app)() as s:
        ids = {c.phone: c.id for c in s.scalars(select(Customer))}
    events = tmp_path / "events.csv"
    events.write_text("name,phone,occurred_at,chat\n"
                      "custom.community.joined,13800000001,2024-05-01 10:00,wrOLD\n", encoding="utf-8")
    back = run("events", "import", str(events), "--history")
    assert back.exit_code == 0, back.output
    assert "Imported 1 event(s) of 1 row(s)" in back.output
    worker_tick(NOW + timedelta(minutes=1))
    with _sf(app)() as s:
        assert s.scalars(select(OutboxMessage)).all() == []
        tags = set(s.scalars(select(CustomerTag.tag).where(CustomerTag.customer_id == ids["13800000001"])))
        assert tags == {"会员", "新客"}  # the file's tags; no rule added new_member or community_member
        stored = s.execute(select(Event.name, Event.payload)).all()
    assert [(n, p["data"]["chat"]) for n, p in stored] == [("custom.community.joined", "wrOLD")]


def test_events_import_acts_once_and_reports_bad_rows(tmp_path: Path, run, app, api, worker_tick) -> None:
    cid = api("POST", "/customers", json={"phone": "13800000005", "consent": {"wecom": True}}).get_json()["id"]
    path = tmp_path / "events.csv"
    path.write_bytes(("name,phone,customer_id,渠道\n"
                      f"custom.community.joined,13800000005,,门店\n"
                      f"custom.community.joined,,{cid + 100},门店\n"
                      f"order.created,,{cid},门店\n").encode("gbk"))
    result = run("events", "import", str(path))
    assert result.exit_code == 0, result.output
    assert f"{path}:3: customer_id: no customer {cid + 100}" in result.output
    assert f"{path}:4: name: `order.created` is emitted by promoflow itself" in result.output
    assert "Imported 1 event(s) of 3 row(s)" in result.output
    again = run("events", "import", str(path))
    assert "Imported 0 event(s) of 3 row(s), 1 already stored" in again.output
    worker_tick(NOW + timedelta(minutes=1))
    with _sf(app)() as s:
        tags = set(s.scalars(select(CustomerTag.tag).where(CustomerTag.customer_id == cid)))
        payload = s.scalars(select(Event.payload).where(Event.name == "custom.community.joined")).one()
    assert "community_member" in tags and payload["data"] == {"渠道": "门店"}


def test_wrong_encoding_is_a_clear_error(tmp_path: Path, run) -> None:
    path = tmp_path / "gbk.csv"
    path.write_bytes(GBK_CSV.encode("gbk"))
    result = run("customers", "import", str(path), "--encoding", "utf-8")
    assert result.exit_code == 1
    assert "is not UTF-8 throughout" in result.output and "--encoding gb18030" in result.output
    assert "Traceback" not in result.output
    assert "unknown encoding `klingon`" in run("customers", "import", str(path), "--encoding", "klingon").output


def test_a_row_naming_two_customers_is_refused_not_merged(tmp_path: Path, run, app, api) -> None:
    a = api("POST", "/customers", json={"phone": "13800000001"}).get_json()["id"]
    b = api("POST", "/customers", json={"email": "b@example.com"}).get_json()["id"]
    path = tmp_path / "both.csv"
    path.write_text("phone,email,name,member_no\n13800000001,b@example.com,混合,\n13800000001,,甲,M1\n",
                    encoding="utf-8")
    result = run("customers", "import", str(path))
    assert f"{path}:2: email: this email belongs to customer {b}, not to customer {a}" in result.output
    assert "Imported 1 of 2 row(s): 0 new customer(s), 1 updated" in result.output
    got = api("GET", f"/customers/{a}").get_json()
    assert (got["name"], got["email"], got["member_no"]) == ("甲", None, "M1")


def test_events_import_progress_bar(tmp_path: Path, run, api) -> None:
    api("POST", "/customers", json={"phone": "13800000008"})
    path = tmp_path / "e.csv"
    path.write_text("name,phone,streak\ncustom.community.signin,13800000008,3\ncustom.community.signin,13800000008,4\n",
                    encoding="utf-8")
    result = run("events", "import", str(path), "--progress")
    assert result.exit_code == 0, result.output
    assert "Importing" in result.output and "2/2" in result.output and "Imported 2 event(s)" in result.output
