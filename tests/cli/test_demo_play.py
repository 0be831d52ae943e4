"""``promoflow demo`` plays its simulated days through the product's doors
(issue 12, part 6): after the play the database holds what people did —
delivered messages, clicks, survey answers, orders, redemptions at the till,
follow-up tasks done, an approval — each made by the product itself (the
play only calls the API, the public pages and the scheduler's ticks).
SQLite only: the demo is embedded SQLite."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from engine.storage.database import make_engine, make_session_factory
from engine.storage.models import (
    Coupon,
    Customer,
    Feedback,
    LinkClick,
    Order,
    OutboxMessage,
    RedemptionAttempt,
    Task,
)
from web.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    for name in ("PROMOFLOW_DATABASE_URL", "PROMOFLOW_CONNECTOR_SANDBOX", "PROMOFLOW_INSTANCE_PATH"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


def test_the_demo_plays_its_days_through_the_product(runner: CliRunner, tmp_path: Path) -> None:
    made = runner.invoke(main, ["demo", "--instance", "demo", "--no-serve", "--customers", "400", "--days", "8"])
    assert made.exit_code == 0, made.output
    line = re.search(r"(\d+) days played: (\d+) messages delivered, (\d+) clicks, (\d+) survey answers, "
                     r"(\d+) new members, (\d+) orders, (\d+) coupons redeemed \((\d+) refused at the till\), "
                     r"(\d+) follow-up tasks done, (\d+) approvals\.", made.output)
    assert line is not None, made.output
    days, delivered, clicks, surveys, members, orders, redeemed, _, tasks, approvals = map(int, line.groups())
    assert " ! " not in made.output  # no request of the play answered 5xx

    engine = make_engine(f"sqlite:///{tmp_path / 'demo' / 'promoflow.sqlite'}")
    try:
        with make_session_factory(engine)() as s:
            def count(stmt: object) -> int:
                return int(s.scalar(stmt) or 0)  # type: ignore[call-overload]

            sent = count(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status == "sent"))
            stuck = count(select(func.count()).select_from(OutboxMessage)
                          .where(OutboxMessage.status.in_(("queued", "retry", "dead"))))
            stored = {
                "clicks": count(select(func.count()).select_from(LinkClick)),
                "surveys": count(select(func.count()).select_from(Feedback)),
                "members": count(select(func.count()).select_from(Customer)
                                 .where(Customer.external_id.like("demo-new-%"))),
                "orders": count(select(func.count()).select_from(Order).where(Order.source == "demo_pos")),
                "redeemed": count(select(func.count()).select_from(Coupon).where(Coupon.status == "redeemed")),
                "attempts": count(select(func.count()).select_from(RedemptionAttempt)),
                "tasks": count(select(func.count()).select_from(Task)
                               .where(Task.kind == "rule", Task.status == "done")),
            }
    finally:
        engine.dispose()
    assert days == 8
    assert delivered > 0 and sent >= delivered and stuck == 0
    # What the summary says is what the product stored (every count made by the product's own doors).
    assert stored["clicks"] == clicks > 0
    assert stored["surveys"] >= surveys > 0
    assert stored["members"] == members > 0
    assert stored["orders"] == orders > 0
    assert stored["redeemed"] == redeemed > 0 and stored["attempts"] >= redeemed
    assert stored["tasks"] == tasks > 0
    assert approvals >= 1
    # issue 14: the shipped win-back campaign has numbers for the dashboard, and the approved
    # activity request became a campaign; the summary prints what the snapshots hold
    campaign = re.search(r"Campaign 会员 90 天挽回 \(running\): (\d+) messages sent, (\d+) coupons redeemed, "
                         r"([0-9.]+) attributed revenue\.", made.output)
    assert campaign is not None, made.output
    assert int(campaign.group(1)) > 0 and int(campaign.group(2)) > 0
    assert re.search(r"Campaign 周末门店促销 ", made.output), made.output
