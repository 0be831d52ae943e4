"""Forms that redeem (``redeems_coupon``): submitting the shipped store
redemption form redeems its coupon through the same service as the till and
the API, in the record's own transaction. A code the engine never issued, or
one it refuses, is a field error on the code's field (422), and nothing of the
submission is stored, so no form accepts a code that does not exist. The
refused attempt is still logged, in its own transaction after the rollback.

The record's id is the order id (``record:<id>``), unless the form names an
order field: one record redeems at most once.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy.orm import Session

from engine.coupons.decision import RedeemRequest, normalize_phone
from engine.coupons.redeem import redeem
from engine.definitions.specs import FormSpec
from engine.forms.errors import FieldError, ValidationFailed
from engine.storage import coupons_repo as repo
from engine.storage.times import to_db_time


class FormRedemption:
    """An ``on_created`` hook of :class:`engine.records.RecordService`."""

    def __init__(self, registry: Any, session_factory: Any, *, tz: str = "Asia/Shanghai"):
        self._registry = registry
        self._sf = session_factory
        self._tz = tz

    def applies_to(self, form: FormSpec) -> bool:
        """Only forms that declare ``redeems_coupon``: other forms keep the record
        service's lean transaction (this hook needs an ORM session)."""
        return bool(form.redeems_coupon)

    def __call__(self, session: Session, row: Any, form: FormSpec, now: datetime) -> None:
        roles = form.redeems_coupon
        if not roles:
            return
        data = row.data or {}

        def value(role: str) -> Any:
            key = roles.get(role)
            return data.get(key) if key else None

        amount = value("amount")
        try:
            amount = None if amount is None else Decimal(str(amount))
        except InvalidOperation:
            amount = None
        customer = value("customer")
        request = RedeemRequest(code=str(value("code") or ""), order_id=f"record:{row.id}", order_amount=amount,
                                customer_id=customer if isinstance(customer, int) else None,
                                phone=value("phone"), store=value("store"), device=f"form:{form.id}",
                                actor=row.created_by)
        result = redeem(session, request, pools=self._registry.current().coupon_pools, now=now, tz=self._tz)
        if not result.ok:
            # the refusal is logged after the submission's rollback (it stores nothing else)
            repo.record_attempt_after_rollback(
                session, self._sf, code=result.code or request.code[:64], coupon_id=result.coupon_id,
                pool_id=result.pool_id, customer_id=request.customer_id, phone=normalize_phone(request.phone),
                order_id=request.order_id, order_amount=request.order_amount, store=request.store,
                device=request.device, actor=request.actor, result="refused", reason=result.reason, at=to_db_time(now))
            ctx = {"min_order": f"{result.min_order:.2f}" if result.min_order is not None else ""}
            raise ValidationFailed([FieldError(roles["code"], f"coupon_{result.reason}", ctx)])


__all__ = ["FormRedemption"]
