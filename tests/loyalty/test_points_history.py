"""``promoflow orders import --history`` (a back-fill) earns points under the
published policy without any event, and an order older than the validity
earns a lot that the next expiry tick lapses: the ledger reads as if the
policy had run all along. Through the CLI and the product's scheduler tick.
SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import func, select

from engine.library import library_paths
from engine.settings import Settings
from engine.storage.models import Event, PointsEntry
from web import create_app
from web.cli import main

from .support import CUSTOMERS_CSV, customer, ledger_sum, tick


def test_history_backfill_earns_quietly_and_old_points_lapse(tmp_path: Path, monkeypatch, db_url: str,
                                                            session_factory) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROMOFLOW_INSTANCE_PATH", str(tmp_path / "instance"))
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(main, ["--database-url", db_url, *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    run("publish", *(str(p) for p in library_paths()), "--by", "test")
    people = tmp_path / "customers.csv"
    people.write_text(CUSTOMERS_CSV, encoding="utf-8")
    run("customers", "import", str(people), "--history")
    # The CLI stands at the wall clock: one order two years back, one last month.
    now = datetime.now(UTC)
    old, recent = (now - timedelta(days=730)).strftime("%Y-%m-%d 12:00"), (now - timedelta(days=30)).strftime(
        "%Y-%m-%d 12:00")
    orders = tmp_path / "orders.csv"
    orders.write_text(f"order_id,customer_external_id,placed_at,amount\nH1,M001,{old},300.00\n"
                      f"H2,M001,{recent},45.80\n", encoding="utf-8")
    assert "history: no events" in run("orders", "import", str(orders), "--history")

    zhang = customer(session_factory, "M001").id
    with session_factory() as s:
        earned = sorted(s.execute(select(PointsEntry.reason, PointsEntry.amount).where(
            PointsEntry.kind == "earn")).all())
        assert s.scalar(select(func.count()).select_from(Event).where(Event.name.like("order.%"))) == 0
    assert earned == [("import/H1", 300), ("import/H2", 45)]
    assert customer(session_factory, "M001").points == 345

    # The product's scheduler tick at the same wall clock lapses the two-year-old lot, once.
    settings = Settings(instance_path=tmp_path / "app", database_url=db_url, secret_key="test-secret",
                        timezone="Asia/Shanghai", locale="zh")
    app = create_app({"TESTING": True, "MIGRATE": False, "CLOCK": lambda: now + timedelta(minutes=1)},
                     settings=settings)
    tick(app, only=("loyalty",))
    tick(app, only=("loyalty",))
    with session_factory() as s:
        lapsed = s.execute(select(PointsEntry.amount).where(PointsEntry.kind == "expire")).scalars().all()
    assert lapsed == [-300]
    assert customer(session_factory, "M001").points == 45 == ledger_sum(session_factory, zhang)
