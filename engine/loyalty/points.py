"""Loyalty points (积分): what earns, spends, reverses and adjusts them.

The storage is a ledger (:mod:`engine.storage.points_repo`, its one
writer); this module decides *how much* and *under which key*:

* orders earn ``floor(net amount × per_yuan × the tier's multiplier)`` under
  the published ``points_policy`` (:func:`earn_for_orders`), in the order
  batch's transaction; the lot lapses ``validity`` days after the order's
  local day, so a back-filled old order (``--history``) earns points that the
  next expiry tick lapses — the ledger then reads as if the policy had run all
  along, and no event is written for them (nothing is sent);
* a refund or cancellation takes back the share of the order's points that
  the money returned (:func:`follow_order_change`), from the order's own lot
  first, then oldest first; points already spent are taken back from what the
  customer still has, as far as it goes;
* ``POST /api/v1/points/redeem`` spends (:meth:`PointsService.redeem`);
* the ``add_points`` rule step and adjustments add or remove points
  (:func:`add_points`).

Every movement has an idempotency key, so nothing is counted twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from engine.forms.errors import FieldError, ValidationFailed
from engine.storage import points_repo
from engine.storage.database import transaction
from engine.storage.times import from_db_time, to_db_time

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from engine.definitions.loyalty import PointsPolicySpec

__all__ = ["MAX_POINTS", "IdempotencyConflict", "PointsAccount", "PointsService", "Redemption", "add_points",
           "earn_for_orders", "entry_json", "follow_order_change", "local_day", "parse_redeem"]

#: The most points one request moves (and a sane bound for a JSON integer).
MAX_POINTS = 1_000_000_000
_RETRIES = 5


class IdempotencyConflict(Exception):
    """The idempotency key was used before for another customer or amount."""

    def __init__(self, entry: Mapping[str, Any]):
        super().__init__("this idempotency key was used for another redemption")
        self.entry = dict(entry)


def local_day(now: datetime, tz: str) -> date:
    """The business day ``now`` falls on: lots lapse at the start of a local day."""
    return now.astimezone(ZoneInfo(tz)).date()


def _iso(value: datetime | None) -> str | None:
    return None if value is None else from_db_time(value).isoformat().replace("+00:00", "Z")


def entry_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """A ledger entry as the API answers it."""
    return {"id": int(row["id"]), "customer_id": int(row["customer_id"]), "kind": row["kind"],
            "points": int(row["amount"]), "remaining": int(row["remaining"] or 0),
            "expires_on": row["expires_on"].isoformat() if row["expires_on"] else None,
            "reason": row["reason"], "source": row["source"], "source_ref": row["source_ref"],
            "idempotency_key": row["idempotency_key"], "created_at": _iso(row["created_at"])}


def _floor(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def earn_for_orders(session: Session, orders: Sequence[Mapping[str, Any]], policy: PointsPolicySpec, *,
                    now: datetime, tz: str) -> int:
    """Write the lots that new counted orders earn (one INSERT for the batch,
    one UPDATE of the customers' balances). Key ``order:<id>:earn``. Returns
    the points written."""
    counted = [o for o in orders if Decimal(o["net_amount"]) > 0]
    if not counted:
        return 0
    tiers = points_repo.tiers_of(session, {int(o["customer_id"]) for o in counted})
    zone = ZoneInfo(tz)
    rows: list[dict[str, Any]] = []
    for o in counted:
        points = _floor(Decimal(o["net_amount"]) * policy.per_yuan * policy.multiplier(tiers.get(o["customer_id"])))
        if points <= 0:
            continue
        placed = from_db_time(o["placed_at"]).astimezone(zone).date()
        rows.append({"customer_id": int(o["customer_id"]), "kind": "earn", "amount": points,
                     "expires_on": placed + timedelta(days=policy.validity_days),
                     "reason": f"{o['source']}/{o['external_id']}"[:255], "source": "order",
                     "source_ref": str(o["id"]), "idempotency_key": f"order:{o['id']}:earn",
                     "created_at": to_db_time(now)})
    written = set(points_repo.add_lots(session, rows))
    points_repo.refresh_customers(session, {r["customer_id"] for r in rows if r["idempotency_key"] in written},
                                  to_db_time(now))
    return sum(r["amount"] for r in rows if r["idempotency_key"] in written)


def follow_order_change(session: Session, order: Mapping[str, Any], policy: PointsPolicySpec | None, *,
                        now: datetime, tz: str) -> int:
    """After a refund or cancellation of ``order`` (the row as changed), take
    back the points its returned money earned: the order keeps
    ``floor(earned × net now / net when earned)``. Key
    ``order:<id>:reverse:<net now>`` (a net amount only ever falls, so each
    change has its own key). Returns the points taken back."""
    if policy is not None and not policy.reverse_on_refund:
        return 0
    entries = points_repo.entries_for(session, "order", str(order["id"]))
    earn = next((e for e in entries if e["kind"] == "earn"), None)
    if earn is None:
        return 0
    earned = int(earn["amount"])
    reversed_so_far = -sum(int(e["amount"]) for e in entries if e["kind"] == "reverse")
    refunded_later = sum(Decimal(str(r.get("amount", "0"))) for r in order.get("refunds") or [])
    net_then = Decimal(order["amount"]) - (Decimal(order["refunded_amount"] or 0) - refunded_later)
    net_now = Decimal(order["net_amount"])
    keep = 0 if net_then <= 0 else _floor(Decimal(earned) * net_now / net_then)
    owed = earned - reversed_so_far - keep
    if owed <= 0:
        return 0
    key = f"order:{order['id']}:reverse:{net_now:.2f}"
    if points_repo.entry_by_key(session, key) is not None:
        return 0
    customer_id = int(order["customer_id"])
    taken = points_repo.consume(session, customer_id, owed, local_day(now, tz), first_lot=int(earn["id"]))
    if taken:
        points_repo.append_entry(session, {
            "customer_id": customer_id, "kind": "reverse", "amount": -taken, "expires_on": None,
            "reason": earn["reason"], "source": "order", "source_ref": str(order["id"]), "idempotency_key": key,
            "created_at": to_db_time(now)})
        points_repo.refresh_customers(session, {customer_id}, to_db_time(now))
    return taken


def add_points(session: Session, customer_id: int, points: int, *, reason: str | None, source: str, key: str,
               now: datetime, tz: str, validity_days: int | None) -> int:
    """Add (``points`` > 0: a lot lapsing after ``validity_days``, never when
    None) or remove (< 0: oldest first, as far as the balance goes) points.
    Returns the points moved; 0 when ``key`` was used before."""
    db_now = to_db_time(now)
    if points > 0:
        day = local_day(now, tz)
        expires = day + timedelta(days=validity_days) if validity_days else None
        written = points_repo.add_lots(session, [{
            "customer_id": customer_id, "kind": "adjust" if source == "api" else "earn", "amount": points,
            "expires_on": expires, "reason": reason, "source": source, "source_ref": None,
            "idempotency_key": key, "created_at": db_now}])
        if not written:
            return 0
        points_repo.refresh_customers(session, {customer_id}, db_now)
        return points
    if points == 0 or points_repo.entry_by_key(session, key) is not None:
        return 0
    points_repo.lock_customer(session, customer_id)
    taken = points_repo.consume(session, customer_id, -points, local_day(now, tz))
    if taken:
        points_repo.append_entry(session, {
            "customer_id": customer_id, "kind": "adjust", "amount": -taken, "expires_on": None, "reason": reason,
            "source": source, "source_ref": None, "idempotency_key": key, "created_at": db_now})
        points_repo.refresh_customers(session, {customer_id}, db_now)
    return -taken


@dataclass(frozen=True)
class Redemption:
    """A spend: its ledger entry, the balance after it, and whether this was
    a repeat of a request already applied (then nothing moved)."""

    entry: dict[str, Any]
    balance: int
    repeated: bool


@dataclass(frozen=True)
class PointsAccount:
    """A customer's balance, the day their oldest points lapse and how many
    lapse then, and one page of their ledger (newest first)."""

    customer_id: int
    balance: int
    expire_on: date | None
    expiring: int
    tier: str | None
    total: int
    entries: list[dict[str, Any]]


class PointsService:
    """Spending and reading points; earning happens with orders and rule steps."""

    def __init__(self, session_factory: sessionmaker[Session], *, tz: str):
        self.session_factory = session_factory
        self.tz = tz

    def redeem(self, customer_id: int, points: int, *, key: str, reason: str | None, now: datetime) -> Redemption:
        """Spend ``points`` of ``customer_id``'s, oldest first, once per ``key``.

        Raises:
            ValidationFailed: unknown customer, or fewer points available
                (``insufficient_points`` with the balance).
            IdempotencyConflict: ``key`` was used for another customer or amount.
        """
        full_key = f"redeem:{key}"
        for attempt in range(_RETRIES):
            try:
                with transaction(self.session_factory) as session:
                    return self._redeem_once(session, customer_id, points, full_key, reason, now)
            except points_repo.ConsumeRaced:
                if attempt == _RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def _redeem_once(self, session: Session, customer_id: int, points: int, key: str, reason: str | None,
                     now: datetime) -> Redemption:
        if not points_repo.lock_customer(session, customer_id):
            raise ValidationFailed([FieldError("customer_id", "customer_not_found")])
        today = local_day(now, self.tz)
        stored = points_repo.entry_by_key(session, key)
        if stored is not None:
            if int(stored["customer_id"]) != customer_id or int(stored["amount"]) != -points:
                raise IdempotencyConflict(stored)
            return Redemption(entry_json(stored), points_repo.available(session, customer_id, today), True)
        have = points_repo.available(session, customer_id, today)
        if have < points:
            raise ValidationFailed([FieldError("points", "insufficient_points", {"balance": have})])
        db_now = to_db_time(now)
        if not points_repo.append_entry(session, {
                "customer_id": customer_id, "kind": "spend", "amount": -points, "expires_on": None,
                "reason": reason, "source": "api", "source_ref": None, "idempotency_key": key,
                "created_at": db_now}):
            raise points_repo.ConsumeRaced("the same key was redeemed concurrently")
        if points_repo.consume(session, customer_id, points, today) != points:
            raise points_repo.ConsumeRaced("the lots changed")
        points_repo.refresh_customers(session, {customer_id}, db_now)
        entry = points_repo.entry_by_key(session, key)
        assert entry is not None
        return Redemption(entry_json(entry), have - points, False)

    def account(self, customer_id: int, *, now: datetime, page: int = 1, per_page: int = 20) -> PointsAccount | None:
        """The customer's points and one page of their ledger; None for an unknown customer."""
        with self.session_factory() as session:
            tiers = points_repo.tiers_of(session, {customer_id})
            if customer_id not in tiers:
                return None
            today = local_day(now, self.tz)
            balance = points_repo.available(session, customer_id, today)
            expire_on, expiring = points_repo.next_lapse(session, customer_id, today)
            total, rows = points_repo.history(session, customer_id, page=page, per_page=per_page)
            return PointsAccount(customer_id, balance, expire_on, expiring, tiers[customer_id], total, rows)


def parse_redeem(body: Any) -> tuple[int, int, str, str | None]:
    """(customer id, points, idempotency key, reason) from a redeem request.

    Raises:
        ValidationFailed: every field problem at once.
    """
    errors: list[FieldError] = []
    if not isinstance(body, dict):
        raise ValidationFailed([FieldError("", "object_type")])
    errors.extend(FieldError(k, "unknown_field") for k in body
                  if k not in ("customer_id", "points", "idempotency_key", "reason"))
    cid, points, key, reason = body.get("customer_id"), body.get("points"), body.get("idempotency_key"), body.get("reason")
    if cid is None:
        errors.append(FieldError("customer_id", "required"))
    elif isinstance(cid, bool) or not isinstance(cid, int) or not 1 <= cid <= 2**31 - 1:
        errors.append(FieldError("customer_id", "customer"))
    if points is None:
        errors.append(FieldError("points", "required"))
    elif isinstance(points, bool) or not isinstance(points, int):
        errors.append(FieldError("points", "integer_type"))
    elif not 1 <= points <= MAX_POINTS:
        errors.append(FieldError("points", "min" if points < 1 else "max", {"min": 1} if points < 1 else {"max": MAX_POINTS}))
    if key is None or (isinstance(key, str) and not key.strip()):
        errors.append(FieldError("idempotency_key", "required"))
    elif not isinstance(key, str):
        errors.append(FieldError("idempotency_key", "string_type"))
    elif len(key.strip()) > 128:
        errors.append(FieldError("idempotency_key", "too_long", {"max_length": 128}))
    if reason is not None and not isinstance(reason, str):
        errors.append(FieldError("reason", "string_type"))
    elif isinstance(reason, str) and len(reason) > 255:
        errors.append(FieldError("reason", "too_long", {"max_length": 255}))
    if errors:
        raise ValidationFailed(errors)
    assert isinstance(cid, int) and isinstance(points, int)  # no errors: both were checked above
    return int(cid), int(points), str(key).strip(), (reason.strip() or None) if isinstance(reason, str) else None
