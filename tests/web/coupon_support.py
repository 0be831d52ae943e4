"""Helpers for the coupon redemption tests: history seeding, a fake-clock tick
of the published rules, and response checks against the OpenAPI document."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from flask import Flask
from jsonschema import Draft202012Validator
from sqlalchemy import select

from engine.automation import tick
from engine.library import library_paths
from engine.publishing import publish_paths
from engine.storage.database import transaction
from engine.storage.models import Consent, Coupon, Customer, CustomerTag, Order
from engine.storage.times import to_db_time

#: A pool with every redemption rule, and a rule that issues it (plus a plain
#: pool, for stacking) to customers tagged ``till_test`` every day at 10:00.
GUARDED = """\
- kind: coupon_pool
  id: till_guarded
  title: 核销测试券
  title_en: Till test coupon
  value: 10
  min_order: 50
  code_prefix: TG
  valid_from: "2025-03-01"
  valid_until: "2025-03-10"
  limits: {per_customer: 1, per_phone: 1}
  velocity: {per_device_per_hour: 3}
  new_customers_only: true
  stackable: false
  blacklist: {phones: ["13900009999"], devices: [till-banned]}
- kind: coupon_pool
  id: till_plain
  title: 普通券
  value: 5
  code_prefix: TP
- kind: rule
  id: till_issue
  title: 发放核销测试券
  trigger: {schedule: "0 10 * * *", timezone: Asia/Shanghai}
  audience:
    customer: {tags: {contains: till_test}}
  once_per: 365d
  steps:
    - issue_coupon: {pool: till_guarded}
    - issue_coupon: {pool: till_guarded}
    - issue_coupon: {pool: till_plain}
- kind: rule
  id: till_exit
  title: 未核销则打标签
  trigger: {schedule: "0 10 * * *", timezone: Asia/Shanghai}
  audience:
    customer: {tags: {contains: till_exit_test}}
  once_per: 365d
  exit_when: {coupon_redeemed: till_plain}
  steps:
    - issue_coupon: {pool: till_plain}
    - wait: 3d
    - add_tag: till_not_redeemed
"""


def publish_guarded(app: Flask, tmp_path: Path, now: datetime) -> None:
    """Publish the shipped library plus :data:`GUARDED` (through the product's publish)."""
    folder = tmp_path / "guarded"
    folder.mkdir()
    (folder / "guarded.yaml").write_text(GUARDED, encoding="utf-8")
    sf = app.extensions["promoflow"].session_factory
    publish_paths(sf, [*library_paths(), folder], now=now, by="test")
    app.extensions["promoflow"].registry.refresh(force=True)


def seed_customer(app: Flask, cid: int, *, name: str, phone: str, now: datetime, tags: tuple[str, ...] = (),
                  last_order: datetime | None = None, consents: dict[str, bool] | None = None) -> None:
    """History seeding (allowed in fixtures): a customer as an import left them,
    with an earlier order when ``last_order`` is given."""
    sf = app.extensions["promoflow"].session_factory
    stamp = to_db_time(now)
    with transaction(sf) as s:
        s.add(Customer(id=cid, name=name, phone=phone, timezone="Asia/Shanghai", created_at=stamp, updated_at=stamp,
                       last_purchase_at=to_db_time(last_order) if last_order else None,
                       order_count=1 if last_order else 0))
        s.flush()
        if last_order is not None:
            s.add(Order(customer_id=cid, amount=Decimal(100), placed_at=to_db_time(last_order), created_at=stamp,
                        external_id=f"hist-{cid}"))
        for tag in tags:
            s.add(CustomerTag(customer_id=cid, tag=tag))
        for channel, granted in (consents or {}).items():
            s.add(Consent(customer_id=cid, channel=channel, granted=granted, updated_at=stamp))


def run_rules(app: Flask, now: datetime) -> None:
    """One scheduler tick of the published rules at ``now`` (the fake clock)."""
    svc = app.extensions["promoflow"]
    tick(svc.session_factory, now=now, definitions=svc.registry.current())


def run_days(app: Flask, start: datetime, days: int) -> None:
    for d in range(days):
        for hours in (0, 1, 3, 8):
            run_rules(app, start + timedelta(days=d, hours=hours))


def codes(app: Flask, customer_id: int, pool: str | None = None) -> list[str]:
    """The codes the product issued to a customer (read only)."""
    with app.extensions["promoflow"].session_factory() as s:
        q = select(Coupon.code).where(Coupon.customer_id == customer_id).order_by(Coupon.id)
        if pool:
            q = q.where(Coupon.pool_id == pool)
        return list(s.scalars(q))


def coupon_state(app: Flask, code: str) -> tuple[str, Any]:
    with app.extensions["promoflow"].session_factory() as s:
        row = s.execute(select(Coupon.status, Coupon.redeemed_at).where(Coupon.code == code)).one()
        return row[0], row[1]


class OpenApi:
    """Checks answers against the app's own OpenAPI document."""

    def __init__(self, app: Flask):
        self.doc = app.test_client().get("/api/v1/openapi.json").get_json()

    def check(self, path: str, method: str, response: Any) -> Any:
        spec = self.doc["paths"][path][method]["responses"][str(response.status_code)]
        schema = spec["content"]["application/json"]["schema"]
        wrapped = {"$defs": self.doc["components"]["schemas"], **schema}
        text = json.dumps(wrapped).replace("#/components/schemas/", "#/$defs/")
        body = response.get_json()
        Draft202012Validator(json.loads(text)).validate(body)
        return body
