"""Redeeming coupons (核销): the one service behind every door — the REST API,
the till page, the store redemption form and orders that arrive with a code.

``redeem`` works in the caller's transaction (an order's, a form record's) and
writes, together: the coupon's state change (a conditional ``UPDATE … WHERE
status='issued'``: two tills at once redeem it once), the ``coupon.redeemed``
event (journeys' ``coupon_redeemed`` facts and ``exit_when`` read the coupon
row it changed) and the attempt log entry. A refusal changes nothing but the
log. The decision itself is :func:`engine.coupons.decision.refusal`.

Idempotent on the order: the same order redeeming the same code again gets the
first (redeemed) result back, marked ``replayed``. A refusal is not sticky: it
changed nothing, so the till may correct the amount and try the same order again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session, sessionmaker

from engine.coupons.decision import CouponFacts, Facts, RedeemRequest, normalize_code, normalize_phone, refusal
from engine.definitions.specs import CouponPoolSpec, RedemptionRules
from engine.storage import coupons_repo as repo
from engine.storage.database import SessionOrConnection, connection_transaction, transaction
from engine.storage.times import from_db_time_opt, to_db_time

HOUR = timedelta(hours=1)
_NO_RULES = RedemptionRules()


@dataclass(frozen=True)
class RedeemResult:
    """What a till is told: ``redeemed`` or ``refused`` with a reason code
    (``engine.coupons.decision.REASONS``) and what the message needs (``min_order``)."""

    status: str
    code: str
    reason: str | None = None
    order_id: str | None = None
    coupon_id: int | None = None
    pool_id: str | None = None
    customer_id: int | None = None
    value: Decimal | None = None
    min_order: Decimal | None = None
    redeemed_at: datetime | None = None
    replayed: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "redeemed"


@dataclass(frozen=True)
class CheckResult:
    """Whether a code would be redeemed now (``reason`` None) and the coupon's facts."""

    code: str
    reason: str | None
    coupon: repo.CouponRow | None
    min_order: Decimal | None = None
    pool_title: str | None = None
    pool_title_en: str | None = None

    @property
    def valid(self) -> bool:
        return self.reason is None


@dataclass(frozen=True)
class VoidResult:
    """``restored`` (usable again), ``cancelled`` (void for good), or nothing
    changed: ``unknown`` code, ``not_redeemed`` or ``other_order`` (redeemed by
    another order than the one refunded); ``repeated`` when it was already undone."""

    status: str
    code: str
    coupon_status: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in ("restored", "cancelled")


def _facts(row: repo.CouponRow) -> CouponFacts:
    return CouponFacts(row.id, row.code, row.pool_id, row.customer_id, normalize_phone(row.customer_phone),
                       row.status, row.value, row.issued_at, row.expires_at, row.redeemed_at, row.redeemed_order)


def _counts(session: SessionOrConnection, row: repo.CouponRow, rules: RedemptionRules, request: RedeemRequest,
            phone: str | None, now_db: datetime, pools: Mapping[str, CouponPoolSpec],
            read: repo.RedemptionCounts | None = None) -> Facts:
    """Only the counts the pool's declared rules need (most pools declare none);
    ``read``: the counts already read with the coupon (the redeem path)."""
    since = now_db - HOUR
    others: tuple[bool, ...] = ()
    if request.order_id and (read is None or read.other_on_order):
        other_pools = repo.pools_on_order(session, request.order_id, except_coupon=row.id)
        others = tuple((p.redemption.stackable if (p := pools.get(pid)) is not None else True) for pid in other_pools)

    def count(by: str, value: Any, wanted: bool, window: bool = False) -> int | None:
        # the phone read with the coupon is the request's; an owner's stored phone is normalized here first
        if not wanted or value is None:
            return None
        if read is not None and (by != "phone" or normalize_phone(request.phone) is not None):
            return int(getattr(read, {"customer": "customer_redeemed", "phone": "phone_redeemed",
                                      "store": "store_last_hour", "device": "device_last_hour"}[by]))
        return repo.count_redeemed(session, row.pool_id, by=by, value=value, since=since if window else None)

    return Facts(
        customer_redeemed=count("customer", row.customer_id, rules.per_customer is not None),
        phone_redeemed=count("phone", phone, rules.per_phone is not None),
        store_last_hour=count("store", request.store, rules.per_store_per_hour is not None, True),
        device_last_hour=count("device", request.device, rules.per_device_per_hour is not None, True),
        earlier_orders=(repo.earlier_paid_orders(session, row.customer_id, except_order=request.order_id)
                        if rules.new_customers_only and row.customer_id is not None else None),
        others_on_order=others,
    )


def _decide(session: SessionOrConnection, row: repo.CouponRow | None, request: RedeemRequest, *,
            pools: Mapping[str, CouponPoolSpec], now: datetime, tz: str,
            read: repo.RedemptionCounts | None = None) -> tuple[str | None, CouponPoolSpec | None]:
    pool = pools.get(row.pool_id) if row is not None else None
    rules = pool.redemption if pool is not None else _NO_RULES
    now_db = to_db_time(now)
    now_local = now.astimezone(ZoneInfo(tz)).replace(tzinfo=None)
    if row is None:
        return "unknown", None
    phone = normalize_phone(request.phone) or normalize_phone(row.customer_phone)
    facts = _counts(session, row, rules, request, phone, now_db, pools, read) if row.status == "issued" else Facts()
    reason = refusal(_facts(row), rules, request, facts, now_utc=now_db, now_local=now_local,
                     min_order=pool.min_order if pool is not None else None)
    return reason, pool


def _replay(row: repo.CouponRow, code: str, pool: CouponPoolSpec | None) -> RedeemResult:
    return RedeemResult("redeemed", code, order_id=row.redeemed_order, coupon_id=row.id, pool_id=row.pool_id,
                        customer_id=row.customer_id, value=row.value,
                        min_order=pool.min_order if pool is not None else None,
                        redeemed_at=from_db_time_opt(row.redeemed_at), replayed=True)


def redeem(session: SessionOrConnection, request: RedeemRequest, *, pools: Mapping[str, CouponPoolSpec], now: datetime,
           tz: str = "Asia/Shanghai") -> RedeemResult:
    """Redeem ``request.code`` for ``request.order_id`` in the caller's transaction.

    ``pools``: the published coupon pools (``DefinitionSet.coupon_pools``);
    ``now`` aware; ``tz`` the business time zone of the pools' validity windows.
    The caller commits: the coupon, the ``coupon.redeemed`` event and the
    attempt log entry go together (a refusal writes only the log entry).
    """
    if not request.order_id:
        raise ValueError("a redemption needs the order id (it makes a repeated request harmless)")
    code = normalize_code(request.code)
    now_db = to_db_time(now)
    db = repo.connection_of(session)  # once: the statements below run on it (see ``repo.Db``)
    found = repo.find_with_counts(db, code, order_id=request.order_id, phone=normalize_phone(request.phone),
                                  store=request.store, device=request.device, since=now_db - HOUR) if code else None
    row, read = found if found is not None else (None, None)
    logged = False
    phone = normalize_phone(request.phone) or (normalize_phone(row.customer_phone) if row is not None else None)
    pool = pools.get(row.pool_id) if row is not None else None
    if row is not None and row.status == "redeemed" and row.redeemed_order == request.order_id:
        result = _replay(row, code, pool)
    else:
        reason, pool = _decide(session, row, request, pools=pools, now=now, tz=tz, read=read)
        if reason is None and row is not None:
            payload = {"customer_id": row.customer_id, "coupon_id": row.id, "code": code, "pool": row.pool_id,
                       "order_id": request.order_id,
                       "amount": None if request.order_amount is None else str(request.order_amount),
                       "store": request.store, "device": request.device}
            if repo.redeem_logged(db, coupon_id=row.id, code=code, pool_id=row.pool_id,
                                  order_id=request.order_id, amount=request.order_amount, store=request.store,
                                  device=request.device, phone=phone,
                                  attempt_customer=(request.customer_id if request.customer_id is not None
                                                    else row.customer_id),
                                  attempt_phone=normalize_phone(request.phone), actor=request.actor,
                                  subject_type="customer" if row.customer_id is not None else "coupon",
                                  subject_id=row.customer_id if row.customer_id is not None else row.id,
                                  payload=payload, at=now_db):
                logged = True
                result = RedeemResult("redeemed", code, order_id=request.order_id, coupon_id=row.id,
                                      pool_id=row.pool_id, customer_id=row.customer_id, value=row.value,
                                      min_order=pool.min_order if pool is not None else None, redeemed_at=now)
            else:  # another till won the race: its redemption, or ours if it was this very order
                again = repo.find_coupon(db, code)
                if again is not None and again.status == "redeemed" and again.redeemed_order == request.order_id:
                    result = _replay(again, code, pool)
                else:
                    reason = "already_redeemed" if again is not None and again.status == "redeemed" else "voided"
        if reason is not None:
            result = RedeemResult("refused", code, reason=reason, order_id=request.order_id,
                                  coupon_id=row.id if row is not None else None,
                                  pool_id=row.pool_id if row is not None else None,
                                  customer_id=row.customer_id if row is not None else None,
                                  value=row.value if row is not None else None,
                                  min_order=pool.min_order if pool is not None else None)
    if not logged:  # the redeemed path logged its attempt with the coupon's change
        repo.record_attempt(db, code=code or (request.code or "")[:64], coupon_id=result.coupon_id,
                            pool_id=result.pool_id, customer_id=request.customer_id if request.customer_id is not None
                            else result.customer_id, phone=normalize_phone(request.phone), order_id=request.order_id,
                            order_amount=request.order_amount, store=request.store, device=request.device,
                            actor=request.actor,
                            result="replayed" if result.replayed else result.status, reason=result.reason, at=now_db)
    return result


def check(session: Session, request: RedeemRequest, *, pools: Mapping[str, CouponPoolSpec], now: datetime,
          tz: str = "Asia/Shanghai") -> CheckResult:
    """Whether ``request.code`` would be redeemed now, and why not; writes nothing.

    Without ``order_amount`` the minimum order is not tested (the till may not
    know the amount yet); without ``order_id`` stacking is not."""
    code = normalize_code(request.code)
    row = repo.find_coupon(session, code, order_id=request.order_id) if code else None
    reason, pool = _decide(session, row, request, pools=pools, now=now, tz=tz)
    return CheckResult(code, reason, row, min_order=pool.min_order if pool is not None else None,
                       pool_title=pool.title if pool is not None else None,
                       pool_title_en=pool.title_en if pool is not None else None)


def void(session: Session, code: str, *, order_id: str, now: datetime, cancel: bool = False,
         actor: str | None = None, store: str | None = None, device: str | None = None) -> VoidResult:
    """Undo the redemption of ``code`` by ``order_id`` because the order was refunded.

    What a till expects: the customer did not get the benefit, so the coupon
    becomes usable again (``restored``, status ``issued``; its own expiry still
    applies). ``cancel`` voids it for good instead (``cancelled``, status
    ``void``: e.g. the redemption was abuse). Idempotent: undoing it again
    answers ``repeated`` and changes nothing. Logged as an attempt."""
    norm = normalize_code(code)
    row = repo.find_coupon(session, norm) if norm else None
    if row is None:
        return VoidResult("unknown", norm)
    if row.status == "redeemed" and row.redeemed_order == order_id:
        done = repo.unredeem(session, row.id, order_id=order_id, cancel=cancel)
        status = ("cancelled" if cancel else "restored") if done else "repeated"
    elif row.status == "redeemed":
        status = "other_order"
    else:
        status = "repeated" if _voided_by(session, norm, order_id) else "not_redeemed"
    if status in ("restored", "cancelled"):
        repo.record_attempt(session, code=norm, coupon_id=row.id, pool_id=row.pool_id, customer_id=row.customer_id,
                            phone=None, order_id=order_id, order_amount=None, store=store, device=device, actor=actor,
                            result="voided", reason=status, at=to_db_time(now))
    after = repo.find_coupon(session, norm)
    return VoidResult(status, norm, coupon_status=after.status if after is not None else None)


def _voided_by(session: Session, code: str, order_id: str) -> bool:
    return any(a["result"] == "voided" and a["order_id"] == order_id for a in repo.attempts_for(session, code))


class CouponService:
    """The redemption service in its own transactions, for the web doors.

    ``pools`` is read from the definition registry on each call (published
    changes reach the till within the registry's staleness)."""

    def __init__(self, session_factory: sessionmaker[Session], registry: Any, *, tz: str = "Asia/Shanghai"):
        self._sf = session_factory
        self._registry = registry
        self.tz = tz

    def pools(self) -> Mapping[str, CouponPoolSpec]:
        return self._registry.current().coupon_pools  # type: ignore[no-any-return]

    def redeem(self, request: RedeemRequest, *, now: datetime) -> RedeemResult:
        pools = self.pools()  # before the transaction: a stale registry's check is not a write
        with connection_transaction(self._sf) as conn:
            return redeem(conn, request, pools=pools, now=now, tz=self.tz)

    def check(self, request: RedeemRequest, *, now: datetime) -> CheckResult:
        with self._sf() as session:
            return check(session, request, pools=self.pools(), now=now, tz=self.tz)

    def void(self, code: str, *, order_id: str, now: datetime, cancel: bool = False, actor: str | None = None,
             store: str | None = None, device: str | None = None) -> VoidResult:
        with transaction(self._sf) as session:
            return void(session, code, order_id=order_id, now=now, cancel=cancel, actor=actor, store=store,
                        device=device)

    def find_customers(self, *, phone: str | None = None, last4: str | None = None,
                       name: str | None = None) -> list[repo.CustomerHit]:
        with self._sf() as session:
            return repo.find_customers(session, phone=normalize_phone(phone) if phone else None, last4=last4,
                                       name=name)

    def customer(self, customer_id: int) -> repo.CustomerHit | None:
        with self._sf() as session:
            return repo.customer_by_id(session, customer_id)

    def wallet(self, customer_id: int, *, now: datetime) -> list[CheckResult]:
        """A customer's coupons, each with whether it may be redeemed now (the till's list)."""
        pools = self.pools()
        with self._sf() as session:
            rows = repo.coupons_of_customer(session, customer_id)
            out = []
            for row in rows:
                req = RedeemRequest(code=row.code, customer_id=customer_id)
                reason, pool = _decide(session, row, req, pools=pools, now=now, tz=self.tz)
                out.append(CheckResult(row.code, reason, row, min_order=pool.min_order if pool is not None else None,
                                       pool_title=pool.title if pool is not None else None,
                                       pool_title_en=pool.title_en if pool is not None else None))
            return out


__all__ = ["CheckResult", "CouponService", "RedeemResult", "VoidResult", "check", "redeem", "void"]
