"""Orders coming in (REST, batch, CSV): idempotent on (source, external order
id), with the customers' aggregates, RFM scores and segments updated in the
same transaction and ``order.created`` appended for the rules.

Statuses:

==================  =======================================================
paid                counted: ``net_amount`` = ``amount``
partially_refunded  counted: ``net_amount`` = ``amount`` − ``refunded_amount``
refunded            not counted: ``net_amount`` = 0
cancelled           not counted: ``net_amount`` = 0
==================  =======================================================

"Counted" orders make a customer's ``order_count``, ``total_spent`` (the sum
of ``net_amount``) and ``last_purchase_at``; the RFM scores and segment follow
from them (:func:`engine.storage.customers_repo.recompute_aggregates`, the one
RFM formula, also used by the customer CSV import).

A batch (up to :data:`MAX_BATCH` orders) is one transaction and a few
set-based statements, whatever its size: the keys already stored are read in
one SELECT, the new orders written in one multi-row INSERT … ON CONFLICT DO
NOTHING, their customers' aggregates recomputed in four UPDATEs, their events
appended in one INSERT. A repeat of an order with the same content answers the
stored order (``existing``); with another content it is a ``conflict``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from engine.customers_import import normalize_phone
from engine.forms.errors import FieldError, ValidationFailed
from engine.loyalty.points import earn_for_orders, follow_order_change
from engine.storage import customers_repo, identity_repo, orders_repo
from engine.storage.database import transaction
from engine.storage.models import COUNTED_ORDER_STATUSES, ORDER_STATUSES
from engine.storage.times import from_db_time, to_db_time

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from engine.definitions.loyalty import PointsPolicySpec

MAX_BATCH = 1000
MAX_LINES = 500
MAX_MONEY = Decimal("1e12")
_KEY = re.compile(r"[^/\s]{1,128}")
_SOURCE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
ORDER_FIELDS = frozenset({"source", "external_id", "customer_id", "customer", "lines", "amount", "discount", "store",
                          "channel", "campaign", "placed_at", "coupon_code", "status", "refunded_amount"})
CUSTOMER_KEYS = ("id", "external_id", "phone", "email")
LINE_FIELDS = frozenset({"sku", "name", "quantity", "unit_price"})
_TEXT_LIMITS = {"store": 64, "channel": 32, "campaign": 128, "coupon_code": 64}

__all__ = [
    "COUNTED_ORDER_STATUSES", "MAX_BATCH", "ORDER_STATUSES", "CustomerRef", "ItemResult", "OrderChange", "OrderIn",
    "OrderNotFound", "OrderService", "OrderStateConflict", "order_json", "parse_money", "parse_order", "parse_text", "redeem_order_coupons",
    "resolve_customers",
]


class OrderNotFound(LookupError):
    """No order with this (source, external id)."""


class OrderStateConflict(Exception):
    """The order's status does not allow the change (refund of a cancelled order …)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class CustomerRef:
    """How an order names its customer: our id, or an identity of a stored customer."""

    id: int | None = None
    external_id: str | None = None
    phone: str | None = None
    email: str | None = None


@dataclass(frozen=True)
class OrderIn:
    """One order as validated: amounts quantized to cents, ``placed_at`` aware."""

    source: str
    external_id: str
    customer: CustomerRef
    amount: Decimal
    discount: Decimal
    lines: tuple[Mapping[str, Any], ...]
    placed_at: datetime
    store: str | None = None
    channel: str | None = None
    campaign: str | None = None
    coupon_code: str | None = None
    status: str = "paid"
    refunded_amount: Decimal = Decimal("0.00")

    @property
    def key(self) -> tuple[str, str]:
        return self.source, self.external_id

    @cached_property
    def placed_db(self) -> datetime:
        """``placed_at`` as stored (naive UTC): computed once for the hash and the row."""
        return to_db_time(self.placed_at)

    @property
    def net_amount(self) -> Decimal:
        if self.status not in COUNTED_ORDER_STATUSES:
            return Decimal("0.00")
        return self.amount - self.refunded_amount

    def body_hash(self) -> str:
        """The order's content, normalized (``100`` and ``"100.00"`` are the same
        amount; a time in any offset is the same instant): what a repeat is compared on."""
        c = self.customer
        lines = tuple((ln["sku"], ln["name"], ln["quantity"], ln["unit_price"]) for ln in self.lines)
        body = (c.id, c.external_id, c.phone, c.email, str(self.amount), str(self.discount), lines,
                self.placed_db.isoformat(), self.store, self.channel, self.campaign, self.coupon_code,
                self.status, str(self.refunded_amount))
        return hashlib.sha256(repr(body).encode()).hexdigest()  # repr of str/int/None/tuple: stable across runs


@dataclass
class ItemResult:
    """What became of one order of a batch: ``created``, ``existing`` (the same
    order again), ``conflict`` (the key with another content) or ``invalid``.
    ``row`` is the stored order (for all but ``invalid``)."""

    index: int
    outcome: str
    row: dict[str, Any] | None = None
    errors: list[FieldError] = field(default_factory=list)

    @property
    def order(self) -> dict[str, Any] | None:
        """The stored order as the API answers it."""
        return None if self.row is None else order_json(self.row)


@dataclass
class OrderChange:
    """A refund or cancellation: ``applied`` False when it was already applied
    (same ``refund_id``, or an order already cancelled)."""

    order: dict[str, Any]
    applied: bool


# ----------------------------------------------------------------- parsing

_PLAIN_MONEY = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,2})?")
#: Money text already as ``str(Decimal(text).quantize(0.01))`` writes it (no leading zero, two decimals).
_CANONICAL_MONEY = re.compile(r"(?:0|[1-9][0-9]{0,11})\.[0-9]{2}")
_CENT = Decimal("0.01")


def parse_money(value: Any, name: str, errors: list[FieldError], *, required: bool = False) -> Decimal | None:
    """An amount ≥ 0 with at most 2 decimals (text or a JSON number), or None
    with the error appended."""
    if type(value) is str and _PLAIN_MONEY.fullmatch(value):  # the common case, checked once
        return Decimal(value).quantize(_CENT)
    if value is None or value == "":
        if required:
            errors.append(FieldError(name, "required"))
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        errors.append(FieldError(name, "money_type"))
        return None
    try:
        amount = Decimal(str(value).strip().replace(",", ""))
    except InvalidOperation:
        errors.append(FieldError(name, "money_type"))
        return None
    if not amount.is_finite():
        errors.append(FieldError(name, "money_type"))
        return None
    if amount < 0:
        errors.append(FieldError(name, "min", {"min": 0}))
        return None
    if amount >= MAX_MONEY:  # before quantize: 1e155 has more digits than the context holds
        errors.append(FieldError(name, "out_of_range"))
        return None
    if amount != amount.quantize(Decimal("0.01")):
        errors.append(FieldError(name, "decimal_places", {"places": 2}))
        return None
    return amount.quantize(Decimal("0.01"))


def parse_text(value: Any, name: str, limit: int, errors: list[FieldError], *, required: bool = False,
          pattern: re.Pattern[str] | None = None) -> str | None:
    """Stripped text of at most ``limit`` characters (matching ``pattern``), or
    None (empty, or with the error appended)."""
    if type(value) is str:
        value = value.strip()
        if value and len(value) <= limit and (pattern is None or pattern.fullmatch(value)):
            return value
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            errors.append(FieldError(name, "required"))
        return None
    if isinstance(value, int) and not isinstance(value, bool) and pattern is not None:
        value = str(value)  # an order number sent as a JSON number
    if not isinstance(value, str):
        errors.append(FieldError(name, "string_type"))
        return None
    value = value.strip()
    if len(value) > limit:
        errors.append(FieldError(name, "too_long", {"max_length": limit}))
        return None
    if pattern is not None and not pattern.fullmatch(value):
        errors.append(FieldError(name, "pattern"))
        return None
    return value


def _moment(value: Any, name: str, tz: ZoneInfo, errors: list[FieldError], now: datetime) -> datetime | None:
    if value is None or value == "":
        return now
    if not isinstance(value, str):
        errors.append(FieldError(name, "datetime_type"))
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("/", "-").replace("Z", "+00:00"))
    except ValueError:
        errors.append(FieldError(name, "datetime_type"))
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


def _customer(raw: Mapping[str, Any], errors: list[FieldError]) -> CustomerRef | None:
    given = raw.get("customer")
    cid = raw.get("customer_id")
    if given is None and cid is None:
        errors.append(FieldError("customer_id", "required"))
        return None
    if cid is not None:
        if isinstance(cid, bool) or not isinstance(cid, int) or cid < 1:
            errors.append(FieldError("customer_id", "customer"))
            return None
        return CustomerRef(id=cid)
    if not isinstance(given, Mapping):
        errors.append(FieldError("customer", "object_type"))
        return None
    unknown = [k for k in given if k not in CUSTOMER_KEYS]
    for k in unknown:
        errors.append(FieldError(f"customer.{k}", "unknown_field"))
    ref_id = given.get("id")
    if ref_id is not None and (isinstance(ref_id, bool) or not isinstance(ref_id, int) or ref_id < 1):
        errors.append(FieldError("customer.id", "customer"))
        return None
    ext = parse_text(given.get("external_id"), "customer.external_id", 128, errors)
    phone_text = parse_text(given.get("phone"), "customer.phone", 32, errors)
    phone = None
    if phone_text:
        try:
            phone = normalize_phone(phone_text)
        except ValueError:
            errors.append(FieldError("customer.phone", "phone"))
            return None
    email = parse_text(given.get("email"), "customer.email", 255, errors)
    if unknown or not (ref_id or ext or phone or email):
        if not unknown:
            errors.append(FieldError("customer", "required"))
        return None
    return CustomerRef(id=ref_id, external_id=ext, phone=phone, email=email.lower() if email else None)


def _lines(raw: Any, errors: list[FieldError]) -> tuple[dict[str, Any], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        errors.append(FieldError("lines", "list_type"))
        return ()
    if len(raw) > MAX_LINES:
        errors.append(FieldError("lines", "too_many_items", {"max_items": MAX_LINES}))
        return ()
    out = []
    for i, line in enumerate(raw):
        if type(line) is dict and line.keys() <= LINE_FIELDS:  # the common, well-formed line, checked in one go
            sku, name, qty, price = line.get("sku"), line.get("name"), line.get("quantity", 1), line.get("unit_price")
            if (type(sku) is str and _KEY.fullmatch(sku) and len(sku) <= 64
                    and (name is None or (type(name) is str and len(name) <= 255))
                    and type(qty) is int and 1 <= qty <= 1_000_000
                    and type(price) is str and _PLAIN_MONEY.fullmatch(price)):
                out.append({"sku": sku, "name": (name.strip() or None) if name else None, "quantity": qty,
                            "unit_price": price if _CANONICAL_MONEY.fullmatch(price)
                            else str(Decimal(price).quantize(_CENT))})
                continue
        where = f"lines[{i}]"
        if not isinstance(line, Mapping):
            errors.append(FieldError(where, "object_type"))
            continue
        for k in line:
            if k not in LINE_FIELDS:
                errors.append(FieldError(f"{where}.{k}", "unknown_field"))
        sku = parse_text(line.get("sku"), f"{where}.sku", 64, errors, required=True, pattern=_KEY)
        name = parse_text(line.get("name"), f"{where}.name", 255, errors)
        qty = line.get("quantity", 1)
        if isinstance(qty, bool) or not isinstance(qty, int):
            errors.append(FieldError(f"{where}.quantity", "integer_type"))
            qty = None
        elif not 1 <= qty <= 1_000_000:
            errors.append(FieldError(f"{where}.quantity", "min" if qty < 1 else "max",
                                     {"min": 1} if qty < 1 else {"max": 1_000_000}))
            qty = None
        price = parse_money(line.get("unit_price"), f"{where}.unit_price", errors, required=True)
        if sku is not None and qty is not None and price is not None:
            out.append({"sku": sku, "name": name, "quantity": qty, "unit_price": str(price)})
    return tuple(out)


def _short_text(value: Any, limit: int) -> tuple[bool, str | None]:
    """(True, what :func:`parse_text` answers) for an absent or well-formed
    optional text; (False, None) for anything :func:`parse_text` would refuse."""
    if value is None:
        return True, None
    if type(value) is str:
        value = value.strip()
        if len(value) <= limit:
            return True, value or None
    return False, None


def _parse_common(raw: dict[str, Any], tz: ZoneInfo) -> OrderIn | None:
    """The common, well-formed order (a paid order with its customer's
    external id, amount as money text, ``placed_at`` given) in one pass; None
    for anything else, which :func:`parse_order` then reads field by field.
    Gives exactly what the field-by-field reading gives (a property test
    holds it to that): it is only quicker, a thousand orders a batch."""
    if not raw.keys() <= ORDER_FIELDS or raw.get("customer_id") is not None:
        return None
    source, external_id, customer = raw.get("source"), raw.get("external_id"), raw.get("customer")
    amount, discount, placed = raw.get("amount"), raw.get("discount"), raw.get("placed_at")
    if not (type(source) is str and _SOURCE.fullmatch(source) and type(external_id) is str
            and _KEY.fullmatch(external_id) and type(customer) is dict and customer.keys() == {"external_id"}
            and type(amount) is str and _PLAIN_MONEY.fullmatch(amount) and type(placed) is str
            and (discount is None or (type(discount) is str and _PLAIN_MONEY.fullmatch(discount)))
            and raw.get("status") in (None, "", "paid") and raw.get("refunded_amount") is None):
        return None
    ext = customer["external_id"]
    if type(ext) is not str:
        return None
    ext = ext.strip()
    if not ext or len(ext) > 128:
        return None
    errors: list[FieldError] = []
    lines = _lines(raw.get("lines"), errors)
    try:
        moment = datetime.fromisoformat(placed.strip().replace("/", "-").replace("Z", "+00:00"))
    except ValueError:
        return None
    texts = {}
    for name, limit in _TEXT_LIMITS.items():
        ok, texts[name] = _short_text(raw.get(name), limit)
        if not ok:
            return None
    if errors:
        return None
    return OrderIn(source=source, external_id=external_id, customer=CustomerRef(external_id=ext),
                   amount=Decimal(amount).quantize(_CENT),
                   discount=Decimal(discount).quantize(_CENT) if discount else Decimal("0.00"), lines=lines,
                   placed_at=moment if moment.tzinfo is not None else moment.replace(tzinfo=tz),
                   status="paid", refunded_amount=Decimal("0.00"), **texts)


def parse_order(raw: Any, tz: ZoneInfo, now: datetime) -> OrderIn:
    """One order body as an :class:`OrderIn`; ``placed_at`` without an offset
    is business time (``tz``), left out it is ``now``.

    Raises:
        ValidationFailed: every field error found.
    """
    if type(raw) is dict:
        common = _parse_common(raw, tz)
        if common is not None:
            return common
    if not isinstance(raw, Mapping):
        raise ValidationFailed([FieldError("", "object_type")])
    errors: list[FieldError] = ([] if raw.keys() <= ORDER_FIELDS
                                else [FieldError(k, "unknown_field") for k in raw if k not in ORDER_FIELDS])
    source = parse_text(raw.get("source"), "source", 64, errors, required=True, pattern=_SOURCE)
    external_id = parse_text(raw.get("external_id"), "external_id", 128, errors, required=True, pattern=_KEY)
    customer = _customer(raw, errors)
    lines = _lines(raw.get("lines"), errors)
    discount = parse_money(raw.get("discount"), "discount", errors) or Decimal("0.00")
    amount = parse_money(raw.get("amount"), "amount", errors, required=not lines)
    if amount is None and lines and not any(e.field.startswith(("lines", "amount")) for e in errors):
        amount = sum((Decimal(ln["unit_price"]) * ln["quantity"] for ln in lines), Decimal("0.00")) - discount
        if amount < 0:
            errors.append(FieldError("discount", "max", {"max": str(amount + discount)}))
    placed_at = _moment(raw.get("placed_at"), "placed_at", tz, errors, now)
    texts = {k: parse_text(raw.get(k), k, n, errors) for k, n in _TEXT_LIMITS.items()}
    status = raw.get("status") or "paid"
    if status not in ORDER_STATUSES:
        errors.append(FieldError("status", "option"))
    refunded = parse_money(raw.get("refunded_amount"), "refunded_amount", errors)
    if amount is not None and not errors:
        if refunded is None:
            refunded = amount if status == "refunded" else Decimal("0.00")
        if refunded > amount:
            errors.append(FieldError("refunded_amount", "max", {"max": str(amount)}))
        elif status == "paid" and refunded:
            errors.append(FieldError("status", "option"))  # a refund makes it partially_refunded
        elif status == "partially_refunded" and not Decimal("0") < refunded < amount:
            errors.append(FieldError("refunded_amount", "out_of_range"))
    if errors:
        raise ValidationFailed(errors)
    assert source and external_id and customer and amount is not None and placed_at and refunded is not None
    return OrderIn(source=source, external_id=external_id, customer=customer, amount=amount, discount=discount,
                   lines=lines, placed_at=placed_at, status=status, refunded_amount=refunded, **texts)


# ------------------------------------------------------------- JSON answer

def _iso(value: datetime | None) -> str | None:
    return None if value is None else from_db_time(value).isoformat().replace("+00:00", "Z")


def order_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored order as the API answers it (money as strings, times in UTC)."""
    return {
        "id": int(row["id"]), "source": row["source"], "external_id": row["external_id"],
        "customer_id": int(row["customer_id"]), "amount": f"{Decimal(row['amount']):.2f}",
        "discount": f"{Decimal(row['discount'] or 0):.2f}", "net_amount": f"{Decimal(row['net_amount']):.2f}",
        "refunded_amount": f"{Decimal(row['refunded_amount'] or 0):.2f}", "lines": list(row["lines"] or []),
        "placed_at": _iso(row["placed_at"]), "store": row["store"], "channel": row["channel"],
        "campaign": row["campaign"], "coupon_code": row["coupon_code"], "status": row["status"],
        "created_at": _iso(row["created_at"]), "updated_at": _iso(row["updated_at"]),
    }


# ------------------------------------------------------- customers, coupons

def resolve_customers(session: Session, refs: Sequence[CustomerRef]) -> dict[CustomerRef, int]:
    """The stored customer each reference names (references naming nobody are
    left out): by our id, else external id, phone, e-mail, in that order.
    Set-based: the identity lookup of the customers API
    (:func:`engine.storage.identity_repo.find_identities`) for the whole
    batch, so the aliases a merge leaves behind find the survivor here too."""
    ids = orders_repo.existing_customer_ids(session, {r.id for r in refs if r.id is not None})
    named = [r for r in refs if r.id is None]
    found_by = identity_repo.find_identities(session, {
        "external_id": {r.external_id for r in named if r.external_id},
        "phone": {r.phone for r in named if r.phone},
        "email": {r.email for r in named if r.email}})
    out: dict[CustomerRef, int] = {}
    for ref in refs:
        if ref.id is not None:
            found: int | None = ref.id if ref.id in ids else None
        else:
            found = ((found_by.get(("external_id", ref.external_id)) if ref.external_id else None)
                     or (found_by.get(("phone", ref.phone)) if ref.phone else None)
                     or (found_by.get(("email", ref.email)) if ref.email else None))
        if found is not None:
            out[ref] = found
    return out


def redeem_order_coupons(session: Session, orders: Sequence[Mapping[str, Any]], *, now: datetime,
                         pools: Mapping[str, Any], tz: str) -> None:
    """Redeem the coupons new orders carry (核销), in the order batch's
    transaction, through the one redemption service (:mod:`engine.coupons`).

    The order id is the shop's external id, the one a till sends to
    ``/coupons/redeem``: a till that redeemed the code before closing the
    order is answered with that first result, not a second redemption. A
    refused code (expired, someone else's …) does not undo the order: the
    purchase happened; the refusal is in the redemption attempts log."""
    from engine.coupons import RedeemRequest, redeem

    for order in orders:
        redeem(session, RedeemRequest(code=str(order["coupon_code"]), order_id=str(order["external_id"]),
                                      order_amount=order["amount"], customer_id=order["customer_id"],
                                      store=order.get("store"), actor=f"order:{order.get('source', '')}"),
               pools=pools, now=now, tz=tz)


class OrderService:
    """Orders in: ``ingest`` (one order or a batch), ``refund``, ``cancel``, ``get``."""

    def __init__(self, session_factory: sessionmaker[Session], *, tz: str,
                 coupon_pools: Callable[[], Mapping[str, Any]] | None = None,
                 points_policy: Callable[[], PointsPolicySpec | None] | None = None):
        """``coupon_pools``: the published coupon pools (read when an order
        carries a coupon code); None: codes are stored, not redeemed.
        ``points_policy``: the published points policy (loyalty); orders earn
        points under it, back-filled ones too (:mod:`engine.loyalty.points`)."""
        self.session_factory = session_factory
        self.tz = ZoneInfo(tz)
        self.coupon_pools = coupon_pools
        self.points_policy = points_policy

    def parse(self, raws: Sequence[Any], *, now: datetime) -> list[OrderIn | list[FieldError]]:
        out: list[OrderIn | list[FieldError]] = []
        for raw in raws:
            try:
                out.append(parse_order(raw, self.tz, now))
            except ValidationFailed as exc:
                out.append(exc.errors)
        return out

    def ingest(self, raws: Sequence[Any], *, now: datetime, history: bool = False) -> list[ItemResult]:
        """Validate and store ``raws`` (at most :data:`MAX_BATCH`); one result per item, in order."""
        return self.ingest_parsed(self.parse(raws, now=now), now=now, history=history)

    def ingest_parsed(self, items: Sequence[OrderIn | list[FieldError]], *, now: datetime,
                      history: bool = False) -> list[ItemResult]:
        """Store already parsed orders (an item that is a list is its errors).
        ``history``: a back-fill; aggregates are updated but no event is
        appended and no coupon redeemed, so nothing is sent."""
        if len(items) > MAX_BATCH:
            raise ValueError(f"at most {MAX_BATCH} orders per batch")
        results = [ItemResult(i, "invalid", errors=list(item)) if isinstance(item, list) else ItemResult(i, "")
                   for i, item in enumerate(items)]
        valid = [(i, item) for i, item in enumerate(items) if isinstance(item, OrderIn)]
        if not valid:
            return results
        for attempt in range(3):
            try:
                return self._ingest_once(results, valid, now=now, history=history)
            except orders_repo.InsertRaced:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _ingest_once(self, results: list[ItemResult], valid: list[tuple[int, OrderIn]], *, now: datetime,
                     history: bool) -> list[ItemResult]:
        results = list(results)
        db_now = to_db_time(now)
        with transaction(self.session_factory) as session:
            owners = resolve_customers(session, list({item.customer for _, item in valid}))
            pending: list[tuple[int, OrderIn, str]] = []
            for i, item in valid:
                if item.customer not in owners:
                    field_name = "customer_id" if item.customer.id is not None else "customer"
                    results[i] = ItemResult(i, "invalid", errors=[FieldError(field_name, "customer_not_found")])
                else:
                    pending.append((i, item, item.body_hash()))
            stored = orders_repo.find_orders(session, {item.key for _, item, _ in pending})
            rows: dict[tuple[str, str], dict[str, Any]] = {}
            first_hash: dict[tuple[str, str], str] = {}
            for _, item, digest in pending:
                key = item.key
                if key in stored or key in first_hash:
                    continue
                first_hash[key] = digest
                rows[key] = {
                    "source": item.source, "external_id": item.external_id, "customer_id": owners[item.customer],
                    "amount": item.amount, "discount": item.discount, "net_amount": item.net_amount,
                    "refunded_amount": item.refunded_amount, "lines": list(item.lines) or None,
                    "placed_at": item.placed_db, "channel": item.channel, "store": item.store,
                    "campaign": item.campaign, "coupon_code": item.coupon_code, "status": item.status,
                    "body_hash": digest, "created_at": db_now}  # refunds, updated_at: NULL (no JSON null to encode)
            # Keys stored by a concurrent request since our SELECT raise InsertRaced: the batch is
            # rolled back and read again, and they are then a repeat or a conflict like any other.
            new_ids = orders_repo.insert_new_orders(session, list(rows.values()))
            created = {}
            for k, oid in new_ids.items():  # the stored rows as answered (written: no copy needed)
                row = rows[k]
                row["id"], row["refunds"], row["updated_at"] = oid, None, None
                created[k] = row
            answered: set[tuple[str, str]] = set()
            for _, item, digest in pending:
                key = item.key
                if key in created and key not in answered:
                    answered.add(key)
                    results[i] = ItemResult(i, "created", created[key])
                    continue
                row = created.get(key) or stored[key]
                same = row["body_hash"] == digest
                results[i] = ItemResult(i, "existing" if same else "conflict", row)
            if created:
                sums: dict[int, tuple[int, Decimal, datetime]] = {}
                for r in created.values():
                    if r["status"] in COUNTED_ORDER_STATUSES:
                        n, total, last = sums.get(r["customer_id"], (0, Decimal("0.00"), r["placed_at"]))
                        sums[r["customer_id"]] = (n + 1, total + r["net_amount"], max(last, r["placed_at"]))
                customers_repo.add_orders(session, sums, db_now=db_now)
                policy = self.points_policy() if self.points_policy is not None else None
                if policy is not None:  # back-fills earn too: their old lots lapse at the next expiry tick
                    earn_for_orders(session, list(created.values()), policy, now=now, tz=str(self.tz))
                if not history:
                    orders_repo.append_order_events(session, "order.created", [r["id"] for r in created.values()],
                                                    db_now)
                    with_codes = [r for r in created.values() if r["coupon_code"]]
                    if with_codes and self.coupon_pools is not None:
                        redeem_order_coupons(session, with_codes, now=now, pools=self.coupon_pools(),
                                             tz=str(self.tz))
        return results

    def get(self, source: str, external_id: str) -> dict[str, Any]:
        with self.session_factory() as session:
            row = orders_repo.get_order(session, source, external_id)
        if row is None:
            raise OrderNotFound(f"no order `{external_id}` from `{source}`")
        return order_json(row)

    def refund(self, source: str, external_id: str, *, amount: Decimal | None, refund_id: str | None,
               now: datetime) -> OrderChange:
        """Refund ``amount`` (all that is left when None) of a paid or partially
        refunded order. A ``refund_id`` already applied answers the order unchanged.

        Raises:
            OrderNotFound, OrderStateConflict, ValidationFailed (amount above what is left).
        """
        def change(row: dict[str, Any]) -> dict[str, Any] | None:
            if refund_id is not None and any(r.get("id") == refund_id for r in row["refunds"] or []):
                return None
            if row["status"] not in COUNTED_ORDER_STATUSES:
                raise OrderStateConflict(f"order_{row['status']}", f"the order is {row['status']}")
            left = Decimal(row["net_amount"])
            value = left if amount is None else amount
            if value <= 0 or value > left:
                raise ValidationFailed([FieldError("amount", "max" if value > left else "min",
                                                   {"max": f"{left:.2f}"} if value > left else {"min": "0.01"})])
            net = left - value
            refunds = [*(row["refunds"] or []), {"id": refund_id, "amount": f"{value:.2f}",
                                                 "at": to_db_time(now).isoformat()}]
            return {"net_amount": net, "refunded_amount": Decimal(row["refunded_amount"] or 0) + value,
                    "status": "refunded" if net == 0 else "partially_refunded", "refunds": refunds,
                    "_event": {"refund_id": refund_id, "refund_amount": float(value)}}

        return self._change(source, external_id, change, now)

    def cancel(self, source: str, external_id: str, *, now: datetime) -> OrderChange:
        """Cancel a paid or partially refunded order: it stops counting (net 0).
        Cancelling a cancelled order answers it unchanged.

        Raises:
            OrderNotFound, OrderStateConflict (a refunded order).
        """
        def change(row: dict[str, Any]) -> dict[str, Any] | None:
            if row["status"] == "cancelled":
                return None
            if row["status"] not in COUNTED_ORDER_STATUSES:
                raise OrderStateConflict(f"order_{row['status']}", f"the order is {row['status']}")
            return {"net_amount": Decimal("0.00"), "status": "cancelled",
                    "_event": {"refund_amount": float(row["net_amount"])}}

        return self._change(source, external_id, change, now)

    def _change(self, source: str, external_id: str, change: Callable[[dict[str, Any]], dict[str, Any] | None],
                now: datetime) -> OrderChange:
        db_now = to_db_time(now)
        for _ in range(5):
            with transaction(self.session_factory) as session:
                row = orders_repo.get_order(session, source, external_id)
                if row is None:
                    raise OrderNotFound(f"no order `{external_id}` from `{source}`")
                values = change(row)
                if values is None:
                    return OrderChange(order_json(row), applied=False)
                extra = values.pop("_event")
                if not orders_repo.apply_change(session, int(row["id"]), expect_status=row["status"],
                                                expect_net=row["net_amount"], values={**values, "updated_at": db_now}):
                    continue  # changed since read: read again
                new = {**row, **values, "updated_at": db_now}
                customers_repo.recompute_aggregates(session, db_now=db_now, customer_ids={int(row["customer_id"])})
                follow_order_change(session, new, self.points_policy() if self.points_policy is not None else None,
                                    now=now, tz=str(self.tz))
                orders_repo.append_events(session, [_event("order.refunded", new, db_now, extra)])
                return OrderChange(order_json(new), applied=True)
        raise OrderStateConflict("busy", "the order kept changing; try again")


def _event(name: str, row: Mapping[str, Any], db_now: datetime, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """An ``order.*`` event about the order; its customer in the payload is
    whom rules triggered by it enter."""
    payload = {"customer_id": int(row["customer_id"]), "order_id": int(row["id"]), "source": row["source"],
               "external_id": row["external_id"], "amount": float(row["amount"]),
               "net_amount": float(row["net_amount"]), "status": row["status"], "store": row["store"],
               "channel": row["channel"], "coupon_code": row["coupon_code"], **(extra or {})}
    return {"name": name, "subject_type": "order", "subject_id": str(row["id"]), "payload": payload,
            "created_at": db_now}
