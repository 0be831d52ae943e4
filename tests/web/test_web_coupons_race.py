"""Two tills redeem the same code at once: it is redeemed once. Threads on
both databases, through the service (one session each) and over HTTP on a
real server; the conditional ``UPDATE … WHERE status='issued'`` decides."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections import Counter
from datetime import timedelta
from typing import Any

from coupon_support import codes, coupon_state, publish_guarded, run_rules, seed_customer
from flask import Flask
from sqlalchemy import func, select
from web_support import NOW, PASSWORD

from engine.coupons import RedeemRequest
from engine.storage.models import Event, RedemptionAttempt
from web.api_coupons import coupon_service

THREADS = 8


def _issue(app: Flask, tmp_path, clock, n: int) -> list[tuple[int, str]]:
    publish_guarded(app, tmp_path, NOW)
    for cid in range(1, n + 1):  # history: customers the rule issues the plain pool to
        seed_customer(app, cid, name=f"顾客{cid}", phone=f"138000001{cid:02d}", now=NOW - timedelta(days=9),
                      tags=("till_test",))
    run_rules(app, NOW + timedelta(minutes=1))
    clock.now = NOW + timedelta(minutes=5)
    return [(cid, codes(app, cid, "till_plain")[0]) for cid in range(1, n + 1)]


def _race(work) -> list:
    barrier = threading.Barrier(THREADS)
    results: list = [None] * THREADS

    def run(i: int) -> None:
        barrier.wait()
        results[i] = work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def _events(app: Flask, code: str) -> int:
    with app.extensions["promoflow"].session_factory() as s:
        rows = s.scalars(select(Event.payload).where(Event.name == "coupon.redeemed"))
        return sum(1 for p in rows if p["code"] == code)


def test_threads_through_the_service(app: Flask, tmp_path, clock) -> None:
    with app.app_context():
        svc = coupon_service()
    for cid, code in _issue(app, tmp_path, clock, 4):
        def redeem(i: int, code: str = code, cid: int = cid) -> Any:
            return svc.redeem(RedeemRequest(code=code, order_id=f"till{i}-{code}", order_amount=None,
                                            customer_id=cid, device=f"till{i}"), now=clock.now)

        results = _race(redeem)
        assert Counter(r.status for r in results) == {"redeemed": 1, "refused": THREADS - 1}
        assert {r.reason for r in results if r.status == "refused"} == {"already_redeemed"}
        assert coupon_state(app, code)[0] == "redeemed" and _events(app, code) == 1
        with app.extensions["promoflow"].session_factory() as s:
            logged = s.scalar(select(func.count()).select_from(RedemptionAttempt)
                              .where(RedemptionAttempt.code == code))
        assert logged == THREADS


def test_same_order_from_two_threads_is_one_redemption(app: Flask, tmp_path, clock) -> None:
    with app.app_context():
        svc = coupon_service()
    cid, code = _issue(app, tmp_path, clock, 1)[0]
    results = _race(lambda i: svc.redeem(RedeemRequest(code=code, order_id="ONE-ORDER", customer_id=cid),
                                         now=clock.now))
    assert all(r.status == "redeemed" for r in results)
    assert sum(1 for r in results if not r.replayed) == 1 and _events(app, code) == 1


def test_threads_over_http(app: Flask, tmp_path, clock, live_url: str) -> None:
    issued = _issue(app, tmp_path, clock, 2)
    accounts = app.extensions["promoflow"].accounts
    accounts.add_user("pos", roles=["integration"], password=PASSWORD, now=NOW)
    token = accounts.create_token("pos", now=NOW)
    for cid, code in issued:
        def post(i: int, code: str = code, cid: int = cid) -> tuple[int, dict]:
            body = json.dumps({"code": code, "customer_id": cid, "order_id": f"H{i}", "order_amount": "10"})
            req = urllib.request.Request(f"{live_url}/api/v1/coupons/redeem", data=body.encode(), method="POST",
                                         headers={"Authorization": f"Bearer {token}",
                                                  "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    return resp.status, json.loads(resp.read())
            except urllib.error.HTTPError as err:
                return err.code, json.loads(err.read())

        results = _race(post)
        assert Counter(status for status, _ in results) == {200: 1, 422: THREADS - 1}
        assert {b["reason"] for s, b in results if s == 422} == {"already_redeemed"}
        assert _events(app, code) == 1
