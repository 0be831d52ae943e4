"""A fake-clock driver for the template library's scenario tests: tick at
local times, post events and redeem coupons through the product's HTTP API
(:class:`~tests.automation.scenario_api.Api`), read back who got what
(outbox, coupons, tags) per day. Reading with SELECT is all it does to the
database itself: every fact a scenario needs comes in through a public door."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine.automation import Policy, tick
from engine.automation.configure import build_policy
from engine.customers_import import import_customers
from engine.definitions.loader import DefinitionSet, load_paths
from engine.storage.models import Coupon, Customer, CustomerTag, OutboxMessage
from engine.storage.times import from_db_time

from .scenario_api import Api

SH = ZoneInfo("Asia/Shanghai")
ROOT = Path(__file__).resolve().parents[2]


def local(d: date, t: time) -> datetime:
    return datetime.combine(d, t, tzinfo=SH).astimezone(UTC)


def calendar_policy(definitions: DefinitionSet) -> Policy:
    """The shipped China calendar (config/calendars) as the policy's calendar."""
    calendars = load_paths([ROOT / "config" / "calendars"], relative_to=ROOT).raise_for_errors()
    return build_policy(calendars, calendar_id="cn_business")


def import_members(session_factory: sessionmaker[Session], path: Path, csv_text: str, now: datetime) -> dict[str, int]:
    """Existing members through the product's CSV import as a back-fill
    (``history=True``: no ``customer.registered``, nothing sent) — history
    seeding, not a simulated fact. Their ids by external id."""
    path.write_text(csv_text, encoding="utf-8")
    report = import_customers(session_factory, path, now=now, timezone="Asia/Shanghai", history=True)
    assert report.errors == [], report.errors
    with session_factory() as s:
        return {c.external_id: c.id for c in s.scalars(select(Customer)) if c.external_id}


class Sim:
    def __init__(self, session_factory: sessionmaker[Session], definitions: DefinitionSet,
                 policy: Policy | None = None, api: Api | None = None):
        """``api``: the product's HTTP API on the same database, for :meth:`event` and :meth:`redeem`."""
        self.sf = session_factory
        self.defs = definitions
        self.policy = policy or Policy()
        self.api = api
        self.pending: list[tuple[datetime, Callable[[], None]]] = []

    def at(self, when: datetime, action: Callable[[], None]) -> None:
        """Do ``action`` (post an event, redeem …) just before the first tick at or after ``when``."""
        self.pending.append((when, action))

    def tick(self, now: datetime) -> None:
        due = sorted((p for p in self.pending if p[0] <= now), key=lambda p: p[0])
        self.pending = [p for p in self.pending if p[0] > now]
        for _, action in due:
            action()
        tick(self.sf, now=now, definitions=self.defs, policy=self.policy)

    def days(self, start: date, n: int, times: tuple[time, ...] = (time(9), time(10), time(12), time(22))) -> None:
        for i in range(n):
            for t in times:
                self.tick(local(start + timedelta(days=i), t))

    def event(self, name: str, customer_id: int, now: datetime, **data: object) -> None:
        """``POST /api/v1/events`` at ``now`` (a key per customer, name and time)."""
        assert self.api is not None, "Sim(api=...) posts events through the HTTP API"
        self.api.event(name, customer_id, at=now, key=f"{name}:{customer_id}:{now.isoformat()}", **data)

    def redeem(self, customer_id: int, pool: str, now: datetime, amount: str | int = 500) -> None:
        """The customer's coupon of ``pool`` redeemed at a till (``POST /api/v1/coupons/redeem``)
        with an order of ``amount``; the code is the one the engine issued (read back)."""
        assert self.api is not None, "Sim(api=...) redeems through the HTTP API"
        codes = [code for p, code in self.coupons(customer_id) if p == pool]
        assert len(codes) == 1, (customer_id, pool, codes)
        self.api.redeem(codes[0], customer_id, at=now, order_id=f"POS-{customer_id}-{now:%Y%m%d%H%M}",
                        amount=amount)

    def sent(self) -> dict[int, list[tuple[str, date]]]:
        """Outbox rows per customer: (template, local day), sorted."""
        out: dict[int, list[tuple[str, date]]] = defaultdict(list)
        with self.sf() as s:
            for cid, template, at in s.execute(select(OutboxMessage.customer_id, OutboxMessage.template_id,
                                                      OutboxMessage.created_at)):
                out[cid].append((template, from_db_time(at).astimezone(SH).date()))
        return {k: sorted(v) for k, v in out.items()}

    def sent_at(self, customer_id: int, template: str) -> list[datetime]:
        with self.sf() as s:
            rows = s.scalars(select(OutboxMessage.created_at).where(OutboxMessage.customer_id == customer_id,
                                                                    OutboxMessage.template_id == template))
            return sorted(from_db_time(r).astimezone(SH).replace(tzinfo=None) for r in rows)

    def coupons(self, customer_id: int) -> list[tuple[str, str]]:
        with self.sf() as s:
            return sorted((c.pool_id, c.code) for c in s.scalars(select(Coupon).where(Coupon.customer_id == customer_id)))

    def tags(self, customer_id: int) -> set[str]:
        with self.sf() as s:
            return set(s.scalars(select(CustomerTag.tag).where(CustomerTag.customer_id == customer_id)))
