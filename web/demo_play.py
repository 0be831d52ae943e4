"""Sixty simulated days of the demo, played through the product's own doors.

Why: a newcomer who opens the demo should see every part working — messages
delivered, links clicked, coupons redeemed at a till, orders, survey answers,
follow-up tasks done, approvals — with nothing to set up. So the demo plays
the weeks before "today" on a simulated clock, and nothing here writes a
product table:

* rules, journeys, approval reminders, follow-up tasks and delivery run
  through the scheduler's own tick functions (:func:`web.worker.tick_functions`);
* customers register, order and redeem through the REST API with an
  ``integration`` token, as a till or a shop system would;
* customers click the short links and answer the surveys they find in the
  messages delivered to the sandbox inbox, through the public pages;
* staff, approvers and managers act through the API as themselves.

Every choice a simulated person makes comes from one seeded
:class:`random.Random`, so the same seed and start give the same demo.
"""

from __future__ import annotations

import re
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask
from flask.testing import FlaskClient

#: The local times of day the scheduler ticks (rules fire at 09:00–12:00).
TICKS = (time(9), time(9, 30), time(10), time(11), time(12), time(15), time(19))
#: Stores of the shipped redemption form.
STORES = ("sh_xujiahui", "bj_sanlitun", "gz_tianhe")
#: A coupon code as the shipped templates print it ("券码：WB20KBEV2MSTRH").
CODE = re.compile(r"券码[：:]?\s*([A-Z0-9]{6,24})")
SURVEY = re.compile(r"/survey/([A-Za-z0-9_.\-]+)")
CSRF = re.compile(r'name="csrf_token"\s+value="([^"]+)"')
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平"


@dataclass(frozen=True)
class Behaviour:
    """How often simulated people do things (per message, per day)."""

    click: float = 0.3              # follows a link in a message
    survey: float = 0.45            # answers a survey it was sent
    redeem_if_clicked: float = 0.55  # visits a store with the coupon after clicking
    redeem_otherwise: float = 0.12
    orders_per_day: int = 20        # orders without a coupon
    registrations_per_day: int = 4  # new members (the welcome journey)
    task_done: float = 0.75         # an assignee works an open follow-up task that day
    activity_every_days: int = 15   # staff submit an activity request


@dataclass
class PlayReport:
    """What happened, for the demo's summary line."""

    days: int = 0
    delivered: int = 0
    clicks: int = 0
    surveys: int = 0
    registrations: int = 0
    orders: int = 0
    redeemed: int = 0
    refused: int = 0
    tasks_done: int = 0
    approvals: int = 0
    errors: list[str] = field(default_factory=list)
    #: Per campaign (issue 14): (title, status, messages sent, coupons redeemed, attributed revenue).
    campaigns: list[tuple[str, str, int, int, str]] = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.days} days played: {self.delivered} messages delivered, {self.clicks} clicks, "
                f"{self.surveys} survey answers, {self.registrations} new members, {self.orders} orders, "
                f"{self.redeemed} coupons redeemed ({self.refused} refused at the till), "
                f"{self.tasks_done} follow-up tasks done, {self.approvals} approvals.")

    def campaign_lines(self) -> list[str]:
        """One line per campaign with its headline numbers (what /campaigns shows)."""
        return [f"Campaign {title} ({status}): {sent} messages sent, {redeemed} coupons redeemed, "
                f"{revenue} attributed revenue." for title, status, sent, redeemed, revenue in self.campaigns]


class SimClock:
    """The app's clock during the play (``CLOCK`` of :func:`web.create_app`)."""

    def __init__(self, start: datetime) -> None:
        self.at = start

    def __call__(self) -> datetime:
        return self.at


@dataclass
class _Visit:
    """A customer who will bring a coupon to a store on ``day``."""

    day: date
    customer_id: int
    code: str


class DemoPlay:
    """One play: the app on a simulated clock, the people's tokens, what they saw."""

    def __init__(self, app: Flask, clock: SimClock, *, seed: int = 2025, behaviour: Behaviour | None = None):
        from connectors.sandbox import read_inbox
        from engine.clicks import short_tokens
        from engine.dispatch import sandbox_folder

        from . import services as services_of
        from .worker import tick_functions

        self.app = app
        self.clock = clock
        self.rng = random.Random(seed)
        self.behaviour = behaviour or Behaviour()
        with app.app_context():
            self.svc = services_of()
        self.tz = ZoneInfo(self.svc.settings.timezone)
        self.ticks = tick_functions(self.svc)
        self.client: FlaskClient = app.test_client()
        self.report = PlayReport()
        self.visits: list[_Visit] = []
        self.seen: set[str] = set()
        self.ordinal = 0
        self._read_inbox = lambda: read_inbox(Path(sandbox_folder(self.svc.settings)), limit=1_000_000)
        self._short_tokens = lambda text: short_tokens(text, self.svc.settings.base_url)
        self.tokens: dict[str, str] = {}

    # ------------------------------------------------------------------ set-up

    def token(self, username: str, *, roles: tuple[str, ...] = ()) -> str:
        """An API token for ``username`` (created with ``roles`` if the user does not exist)."""
        if username not in self.tokens:
            accounts = self.svc.accounts
            if accounts.by_name(username) is None:
                accounts.add_user(username, roles=list(roles), password=None, now=self.clock(), check_roles=False)
            self.tokens[username] = accounts.create_token(username, now=self.clock(), name="demo")
        return self.tokens[username]

    def _api(self, method: str, path: str, user: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"}
        response = self.client.open(f"/api/v1{path}", method=method, json=body, headers=headers)
        try:
            data = response.get_json(silent=True)
        except Exception:  # noqa: BLE001 - a body that is not JSON is reported as None
            data = None
        if response.status_code >= 500:
            self.report.errors.append(f"{method} {path}: {response.status_code}")
        return response.status_code, data

    # ------------------------------------------------------------------ the play

    def run(self, start: date, days: int, progress: Callable[[int], None] | None = None) -> PlayReport:
        """Play ``days`` days from ``start`` (local dates in the business zone)."""
        self.token("demo_till", roles=("integration",))
        for name in ("staff", "marketing_manager", "store_manager", "account_manager", "finance"):
            if self.svc.accounts.by_name(name) is not None:
                self.token(name)
        for offset in range(days):
            self.day(start + timedelta(days=offset), offset)
            self.report.days += 1
            if progress is not None:
                progress(1)
        self.campaign_snapshots()
        return self.report

    def campaign_snapshots(self) -> None:
        """Compute every campaign's KPIs once more at the end of the play, so
        the dashboard opens on current numbers (the snapshot is what it reads)."""
        from .api_campaigns import campaigns

        with self.app.app_context():
            service = campaigns(self.app)
            for view in service.list(now=self.clock()):
                k = service.kpis(view.id, now=self.clock(), refresh=True)
                self.report.campaigns.append((view.title, view.status, k.sent, k.coupons_redeemed,
                                              f"{k.attributed_revenue:.2f}"))

    def _at(self, day: date, when: time) -> datetime:
        self.clock.at = datetime.combine(day, when, tzinfo=self.tz).astimezone(UTC)
        return self.clock.at

    def day(self, day: date, offset: int) -> None:
        """One simulated day: the scheduler's ticks, then what people do."""
        for when in TICKS:
            now = self._at(day, when)
            for _, fn in self.ticks:
                fn(now)
            if when == time(12):
                self._at(day, time(13))
                self.read_messages(day)
            if when == time(15):
                self._at(day, time(16))
                self.store_visits(day)
                self._at(day, time(17))
                self.organic_orders(day)
                self.registrations(day)
                self._at(day, time(18))
                self.work_tasks()
                self.approvals(day, offset)

    def read_messages(self, day: date) -> None:
        """Customers open what was delivered to them: click, answer surveys, keep coupons."""
        b = self.behaviour
        for message in self._read_inbox():
            if message.message_id in self.seen or message.customer_id is None:
                continue
            self.seen.add(message.message_id)
            self.report.delivered += 1
            text = " ".join(filter(None, (message.subject, message.body, message.html, message.url)))
            clicked = False
            for token in self._short_tokens(text)[:1]:
                if self.rng.random() < b.click:
                    self.client.get(f"/c/{token}")
                    self.report.clicks += 1
                    clicked = True
            for token in SURVEY.findall(text)[:1]:
                if self.rng.random() < b.survey:
                    self.answer_survey(token)
            for code in CODE.findall(text)[:1]:
                chance = b.redeem_if_clicked if clicked else b.redeem_otherwise
                if self.rng.random() < chance:
                    self.visits.append(_Visit(day + timedelta(days=self.rng.randint(1, 6)),
                                              message.customer_id, code))

    def answer_survey(self, token: str) -> None:
        page = self.client.get(f"/survey/{token}")
        found = CSRF.search(page.get_data(as_text=True))
        if page.status_code != 200 or found is None:
            return
        roll = self.rng.random()
        score = self.rng.choice((9, 10)) if roll < 0.55 else self.rng.choice((7, 8)) if roll < 0.8 else \
            self.rng.randint(2, 6)
        comment = {True: "服务很好，下次还来", False: "排队太久，店员不太耐心"}[score >= 7]
        response = self.client.post(f"/survey/{token}", data={"csrf_token": found.group(1), "score": str(score),
                                                               "comment": comment})
        if response.status_code < 400:
            self.report.surveys += 1

    def _order_id(self) -> str:
        self.ordinal += 1
        return f"D{self.ordinal:07d}"

    def store_visits(self, day: date) -> None:
        """Customers bring their coupon to a store: the till checks and redeems it, then closes the order."""
        due, self.visits = [v for v in self.visits if v.day <= day], [v for v in self.visits if v.day > day]
        for visit in due:
            store = self.rng.choice(STORES)
            order_id = self._order_id()
            amount = Decimal(self.rng.randrange(129, 460))
            status, body = self._api("POST", "/coupons/redeem", "demo_till", {
                "code": visit.code, "customer_id": visit.customer_id, "order_id": order_id,
                "order_amount": str(amount), "store": store, "device": f"{store}-till-1"})
            if status == 200:
                self.report.redeemed += 1
                coupon: str | None = visit.code
            else:
                self.report.refused += 1
                coupon = None
            self.order(visit.customer_id, order_id, amount, store=store, channel="store", coupon=coupon)

    def order(self, customer_id: int, order_id: str, amount: Decimal, *, store: str | None, channel: str,
              coupon: str | None = None) -> None:
        body: dict[str, Any] = {"source": "demo_pos", "external_id": order_id, "customer_id": customer_id,
                                "amount": str(amount), "channel": channel,
                                "placed_at": self.clock().isoformat()}
        if store:
            body["store"] = store
        if coupon:
            body["coupon_code"] = coupon
        status, _ = self._api("POST", "/orders", "demo_till", body)
        if status in (200, 201):
            self.report.orders += 1

    def organic_orders(self, day: date) -> None:
        """Everyday purchases without a coupon, from known customers."""
        known = sorted({m.customer_id for m in self._recent_customers()})
        for _ in range(self.behaviour.orders_per_day):
            customer = self.rng.choice(known) if known and self.rng.random() < 0.5 else self.rng.randint(1, 500)
            online = self.rng.random() < 0.4
            self.order(customer, self._order_id(), Decimal(self.rng.randrange(39, 680)),
                       store=None if online else self.rng.choice(STORES), channel="online" if online else "store")

    def _recent_customers(self) -> Iterator[Any]:
        for message in self._read_inbox()[:300]:
            if message.customer_id is not None:
                yield message

    def registrations(self, day: date) -> None:
        """New members sign up at the till (the welcome journey greets them)."""
        for _ in range(self.rng.randint(1, 2 * self.behaviour.registrations_per_day - 1)):
            n = self.report.registrations + 1
            body = {"external_id": f"demo-new-{n:05d}",
                    "name": self.rng.choice(SURNAMES) + self.rng.choice(GIVEN) + self.rng.choice(GIVEN),
                    "phone": f"139{self.rng.randrange(10**8):08d}",
                    "email": f"member{n}@example.com",
                    "consent": {ch: {"granted": True, "source": "till"} for ch in ("sms", "email", "wecom")}}
            status, _ = self._api("POST", "/customers", "demo_till", body)
            if status in (200, 201):
                self.report.registrations += 1

    def work_tasks(self) -> None:
        """Store and account managers work their open follow-up tasks."""
        outcomes = ("contacted", "resolved", "no_answer")
        for user in ("store_manager", "account_manager", "marketing_manager"):
            if user not in self.tokens:
                continue
            status, body = self._api("GET", "/tasks", user)
            for task in (body or {}).get("followups", []) if status == 200 else []:
                if self.rng.random() >= self.behaviour.task_done:
                    continue
                done, _ = self._api("POST", f"/tasks/{task['id']}/done", user, {
                    "outcome": self.rng.choice(outcomes), "comment": "已电话回访",
                    "version": task.get("version")})
                if done == 200:
                    self.report.tasks_done += 1

    def approvals(self, day: date, offset: int) -> None:
        """Staff submit an activity request now and then; the marketing manager approves what waits."""
        if "staff" in self.tokens and offset % self.behaviour.activity_every_days == 1:
            start = day + timedelta(days=7)
            self._api("POST", "/forms/activity_request/records", "staff", {
                "name": f"周末门店促销 {day:%m-%d}", "channel": "store", "budget": "30000",
                "start_date": start.isoformat(), "end_date": (start + timedelta(days=3)).isoformat(),
                "discount_type": "coupon", "coupon_value": "20", "target_store": STORES[0],
                "materials": [{"item": "海报", "qty": 20, "unit_cost": "15"}],
                "targets": [{"metric": "attributed_revenue", "target": 120000},
                            {"metric": "new_customers", "target": 50}],
                "expected_revenue": "120000"})
        if "marketing_manager" not in self.tokens:
            return
        status, body = self._api("GET", "/tasks", "marketing_manager")
        for task in (body or {}).get("items", []) if status == 200 else []:
            done, _ = self._api("POST", f"/tasks/{task['id']}/approve", "marketing_manager",
                                {"comment": "同意，注意控制预算", "version": task.get("version")})
            if done == 200:
                self.report.approvals += 1


def play(app: Flask, clock: SimClock, *, start: date, days: int, seed: int = 2025,
         progress: Callable[[int], None] | None = None) -> PlayReport:
    """Play ``days`` simulated days from ``start`` on ``app`` (built with ``CLOCK=clock``)."""
    return DemoPlay(app, clock, seed=seed).run(start, days, progress)
