"""The customer's tier (``customers.tier``): its one writer, set-based.

A tier evaluation is two statements over all customers, whatever their
number:

1. ``INSERT INTO events … SELECT`` one ``tier.changed`` event per customer
   whose tier by the current figures differs from the stored one (upgrades
   and downgrades alike; payload ``{customer_id, from, to, direction}``);
2. ``UPDATE customers SET tier = … FROM (the same figures)`` where it differs.

The figure per customer is one grouped subquery: the net amount of counted
orders placed in the window (``basis: spend``), or the points earned in it
(``basis: points``: earn entries less their reversals). Erased customers are
left as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    String,
    Table,
    case,
    cast,
    func,
    insert,
    literal,
    null,
    select,
    update,
)
from sqlalchemy.orm import Session

from engine.storage.bulk import dialect_name
from engine.storage.models import (
    COUNTED_ORDER_STATUSES,
    Customer,
    Event,
    Order,
    PointsEntry,
)

_cust: Table = Customer.__table__  # type: ignore[assignment]
_orders: Table = Order.__table__  # type: ignore[assignment]
_ledger: Table = PointsEntry.__table__  # type: ignore[assignment]
_events: Table = Event.__table__  # type: ignore[assignment]

__all__ = ["evaluate_tiers"]


def _figures(basis: str, since: datetime) -> Any:
    """(customer_id, figure) for customers with anything in the window; money in whole cents."""
    if basis == "spend":
        o = _orders.c
        return (select(o.customer_id.label("customer_id"),
                       func.sum(cast(func.round(o.net_amount * 100), BigInteger)).label("figure"))
                .where(o.placed_at >= since, o.status.in_(COUNTED_ORDER_STATUSES))
                .group_by(o.customer_id).subquery("figures"))
    p = _ledger.c
    return (select(p.customer_id.label("customer_id"), func.sum(p.amount).label("figure"))
            .where(p.created_at >= since, p.kind.in_(("earn", "reverse")), p.source.in_(("order", "rule")))
            .group_by(p.customer_id).subquery("figures"))


def evaluate_tiers(session: Session, *, basis: str, levels: Sequence[tuple[str, Decimal]], since: datetime,
                   db_now: datetime) -> tuple[int, int]:
    """Set every customer's tier to the highest level of ``levels`` ((key,
    min) pairs, lowest first) their figure since ``since`` reaches, or NULL.
    Returns (upgrades, downgrades); one ``tier.changed`` event for each."""
    figures = _figures(basis, since)
    scale = 100 if basis == "spend" else 1
    figure = func.coalesce(figures.c.figure, 0)
    whens = [(figure >= int(Decimal(low) * scale), literal(key)) for key, low in reversed(levels)]
    new_tier = case(*whens, else_=null()) if whens else null()

    def rank(column: Any) -> Any:
        return case(*[(column == key, literal(i + 1)) for i, (key, _) in enumerate(levels)], else_=literal(0))

    computed = (select(_cust.c.id.label("id"), _cust.c.tier.label("old"), cast(new_tier, String(32)).label("new"))
                .select_from(_cust.outerjoin(figures, figures.c.customer_id == _cust.c.id))
                .where(_cust.c.erased_at.is_(None)).subquery("computed"))
    changed = computed.c.new.is_distinct_from(computed.c.old)
    up = rank(computed.c.new) > rank(computed.c.old)
    build = func.jsonb_build_object if dialect_name(session) == "postgresql" else func.json_object
    payload = build("customer_id", computed.c.id, "from", computed.c.old, "to", computed.c.new,
                    "direction", case((up, literal("up")), else_=literal("down")))
    rows = select(literal("tier.changed"), literal("customer"), cast(computed.c.id, String), payload,
                  literal(db_now, DateTime())).where(changed)
    session.connection().execute(
        insert(_events).from_select(["name", "subject_type", "subject_id", "payload", "created_at"], rows))
    counts = session.execute(select(func.count().filter(up), func.count().filter(~up)).where(changed)).one()
    session.connection().execute(
        update(_cust).where(_cust.c.id == computed.c.id, changed).values(tier=computed.c.new, updated_at=db_now))
    return int(counts[0] or 0), int(counts[1] or 0)
