"""Demo customers, tags, consents and orders: deterministic, inserted in batches.

The same ``seed`` and ``now`` always give the same data, so a demo (or a test
using it) is reproducible. Customers are written as one batch (their ids
come back with the insert); tags, consents and orders go in as multi-row
inserts. Order history is generated first so each customer's aggregates
(last purchase, order count, total spent, RFM scores and segment) are
consistent with their orders, and the shipped segments and rules
(win-back, churn risk, birthdays, B2B renewals) find people to act on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from engine.storage.bulk import insert_ignore
from engine.storage.database import transaction
from engine.storage.models import Consent, Customer, CustomerTag, Order
from engine.storage.times import to_db_time

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红文辉建国燕鹏浩宇欣怡子涵雨轩梓晨"
CITIES = ("上海", "北京", "广州", "深圳", "杭州", "成都", "南京", "武汉", "西安", "苏州")
LEVELS = (("normal", 0.55), ("silver", 0.25), ("gold", 0.15), ("vip", 0.05))
CHANNELS = ("store", "online", "wecom", "app")
CAMPAIGNS = (None, None, None, "spring_sale", "double11", "winback20", "new_product_launch")
BATCH = 1000


@dataclass(frozen=True)
class DemoSummary:
    customers: int
    orders: int
    tags: int
    consents: int


def _weighted(rng: random.Random, pairs: tuple[tuple[str, float], ...]) -> str:
    roll, acc = rng.random(), 0.0
    for value, weight in pairs:
        acc += weight
        if roll < acc:
            return value
    return pairs[-1][0]


def _score(value: float, bounds: tuple[float, float, float, float]) -> int:
    """1..5: how many of the ascending ``bounds`` ``value`` reaches, plus one."""
    return 1 + sum(value >= b for b in bounds)


def _segment(r: int, f: int, m: int, orders: int) -> str:
    if orders == 0:
        return "prospect"
    if r >= 4 and f >= 4 and m >= 4:
        return "champion"
    if r >= 4 and f <= 2:
        return "new"
    if r >= 3 and f >= 3:
        return "loyal"
    if r <= 2 and f >= 3:
        return "at_risk"
    if r <= 1:
        return "hibernating"
    return "needs_attention"


def generate(n_customers: int, *, now: datetime, seed: int = 2025,
             account_manager_ids: tuple[int, ...] = ()) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]],
                                                                  list[list[str]], list[dict[str, bool]]]:
    """Pure generation: per customer its row, orders, tags and consents (no ids yet).

    ``now`` is an aware datetime; all times derive from it and ``seed``.
    """
    rng = random.Random(seed)
    today = now.date()
    customers: list[dict[str, Any]] = []
    orders: list[list[dict[str, Any]]] = []
    tags: list[list[str]] = []
    consents: list[dict[str, bool]] = []
    for i in range(1, n_customers + 1):
        level = _weighted(rng, LEVELS)
        registered = now - timedelta(days=rng.randint(1, 3 * 365), minutes=rng.randint(0, 1439))
        # Activity: some customers buy often and recently, some stopped long ago.
        activity = rng.random()
        n_orders = 0 if activity < 0.08 else min(30, int(rng.expovariate(1 / (3 + 4 * (level != "normal")))) + 1)
        span_days = max(1, (now - registered).days)
        stopped = 0 if activity > 0.6 else rng.randint(0, span_days)  # days since they stopped buying
        placed: list[dict[str, Any]] = []
        for k in range(n_orders):
            back = rng.randint(stopped, span_days) if stopped < span_days else span_days
            at = now - timedelta(days=back, minutes=rng.randint(0, 1439))
            base = {"normal": 120, "silver": 260, "gold": 520, "vip": 1200}[level]
            amount = Decimal(str(round(rng.uniform(0.3, 2.5) * base, 2))).quantize(Decimal("0.01"))
            placed.append({
                "external_id": f"DEMO-O{i:05d}-{k:02d}", "amount": amount, "placed_at": at,
                "channel": rng.choice(CHANNELS), "campaign": rng.choice(CAMPAIGNS), "status": "paid",
            })
        placed.sort(key=lambda o: o["placed_at"])
        last = placed[-1]["placed_at"] if placed else None
        total = sum((o["amount"] for o in placed), Decimal("0.00"))
        recency = (now - last).days if last else None
        r = _score(-(recency if recency is not None else 10_000), (-365, -180, -90, -30))
        f = _score(n_orders, (2, 4, 7, 11))
        m = _score(float(total), (300, 1000, 3000, 8000))
        b2b = rng.random() < 0.05
        birthday = date(rng.randint(1960, 2004), rng.randint(1, 12), rng.randint(1, 28))
        name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.randint(1, 2)))
        customers.append({
            "external_id": f"DEMO-C{i:05d}", "name": name,
            "phone": f"1{rng.choice('3456789')}{rng.randint(0, 999_999_999):09d}",
            "email": f"demo{i:05d}@example.com", "gender": rng.choice(("female", "male")),
            "city": rng.choice(CITIES), "level": level, "birthday": birthday, "registered_at": registered,
            "last_purchase_at": last, "order_count": n_orders, "total_spent": total,
            "rfm_recency_days": recency, "rfm_r": r if n_orders else None, "rfm_f": f if n_orders else None,
            "rfm_m": m if n_orders else None, "rfm_segment": _segment(r, f, m, n_orders),
            "account_manager_id": rng.choice(account_manager_ids) if b2b and account_manager_ids else None,
            "contract_end": today + timedelta(days=rng.randint(-30, 330)) if b2b else None,
            "timezone": "Asia/Shanghai", "attrs": {"b2b": True, "company": f"{name}贸易有限公司"} if b2b else None,
        })
        orders.append(placed)
        t: list[str] = []
        if registered.year == now.year:
            t.append(f"new_{now.year}")
        if level == "vip":
            t.append("vip")
        if rng.random() < 0.03:
            t.append("vip_blocked")
        if rng.random() < 0.35:
            t.append("wecom_member")
        if any(o["campaign"] for o in placed):
            t.append("campaign_buyer")
        if b2b:
            t.append("b2b")
        tags.append(t)
        consents.append({"sms": rng.random() < 0.7, "email": rng.random() < 0.5, "wecom": "wecom_member" in t})
    return customers, orders, tags, consents


def seed_demo(session_factory: sessionmaker[Session], *, now: datetime, customers: int = 3000, seed: int = 2025,
              account_manager_ids: tuple[int, ...] = ()) -> DemoSummary:
    """Insert ``customers`` demo customers with tags, consents and orders in one transaction.

    Deterministic for a given ``seed`` and ``now``. Customers whose
    ``external_id`` already exists make the insert fail (seed a fresh database).
    """
    rows, orders, tags, consents = generate(customers, now=now, seed=seed, account_manager_ids=account_manager_ids)
    stamp = to_db_time(now)
    n_orders = n_tags = n_consents = 0
    with transaction(session_factory) as session:
        for start in range(0, len(rows), BATCH):
            chunk = rows[start:start + BATCH]
            objects = [Customer(**_db_times(row), created_at=stamp, updated_at=stamp) for row in chunk]
            session.add_all(objects)
            session.flush()  # one multi-row INSERT … RETURNING id per batch
            order_rows: list[dict[str, Any]] = []
            tag_rows: list[dict[str, Any]] = []
            consent_rows: list[dict[str, Any]] = []
            for offset, customer in enumerate(objects):
                i = start + offset
                order_rows += [{**_db_times(o), "customer_id": customer.id, "created_at": stamp} for o in orders[i]]
                tag_rows += [{"customer_id": customer.id, "tag": tag} for tag in tags[i]]
                consent_rows += [{"customer_id": customer.id, "channel": ch, "granted": granted,
                                  "source": "demo", "updated_at": stamp} for ch, granted in consents[i].items()]
            n_orders += insert_ignore(session, Order, order_rows)
            n_tags += insert_ignore(session, CustomerTag, tag_rows)
            n_consents += insert_ignore(session, Consent, consent_rows)
            session.expunge_all()
    return DemoSummary(customers=len(rows), orders=n_orders, tags=n_tags, consents=n_consents)


def _db_times(row: dict[str, Any]) -> dict[str, Any]:
    return {k: to_db_time(v) if isinstance(v, datetime) else v for k, v in row.items()}


__all__ = ["DemoSummary", "generate", "seed_demo"]
