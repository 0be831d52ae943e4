"""``if`` / ``exit_when`` conditions over a customer and their journey facts.

Customer fields come from the customer row; journey facts (``coupon_redeemed``,
``coupon_issued``, ``message_replied``, ``message_clicked``,
``ordered_since_entry``, ``feedback.score``) are computed per journey from
rows loaded once per batch. Pool facts name a pool (``coupon_redeemed:
winback20``); they are rewritten to boolean tests of ``coupon_redeemed:<pool>``
so the one shared predicate compiler evaluates everything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from engine.automation.timing import zone
from engine.conditions.ast import All, Compare, Condition, Not, OrderWindow, SegmentRef
from engine.conditions.ast import Any as AnyOf
from engine.conditions.customer_fields import CUSTOMER_DEFAULTS, CUSTOMER_FIELDS
from engine.conditions.kinds import FieldKind
from engine.conditions.order_windows import ORDERS_KEY, earliest_order_needed
from engine.conditions.predicate import compile_predicate
from engine.definitions.catalog import JOURNEY_FACTS, POOL_FACTS
from engine.definitions.specs import IfSpec, RuleSpec

__all__ = ["Evaluator", "business_now", "collect_fields", "facts_used", "journey_row", "orders_since", "rule_conditions"]

Row = Mapping[str, object]


def _rewrite(node: Condition, pools: dict[str, FieldKind]) -> Condition:
    if isinstance(node, Compare) and node.field in POOL_FACTS:
        values = node.value if isinstance(node.value, tuple) else (node.value,)
        tests: list[Condition] = []
        for pool in values:
            key = f"{node.field}:{pool}"
            pools[key] = FieldKind.BOOL
            tests.append(Compare(key, "eq", True))
        hit: Condition = tests[0] if len(tests) == 1 else AnyOf(tuple(tests))
        return Not(hit) if node.op in ("ne", "not_in") else hit
    if isinstance(node, All):
        return All(tuple(_rewrite(i, pools) for i in node.items))
    if isinstance(node, AnyOf):
        return AnyOf(tuple(_rewrite(i, pools) for i in node.items))
    if isinstance(node, Not):
        return Not(_rewrite(node.item, pools))
    return node


class Evaluator:
    """Compiles conditions once (per condition object) and evaluates them on journey rows."""

    def __init__(self, segments: Mapping[str, Condition]):
        self._segments = segments
        #: the segments conditions may refer to (loaders follow them to find order windows)
        self.segments = segments
        self._compiled: dict[int, tuple[Condition, Callable[[Row, datetime], bool]]] = {}

    def __call__(self, cond: Condition, row: Row, now: datetime,
                 fields: Mapping[str, FieldKind] | None = None) -> bool:
        """``fields``: the subject's field kinds when it is not a customer (a
        record's form fields); a condition object always comes with the same."""
        hit = self._compiled.get(id(cond))
        if hit is None or hit[0] is not cond:
            pools: dict[str, FieldKind] = {}
            rewritten = _rewrite(cond, pools)
            kinds = {**(CUSTOMER_FIELDS if fields is None else fields), **JOURNEY_FACTS, **pools}
            predicate = compile_predicate(rewritten, segments=self._segments, kinds=kinds,
                                          defaults=CUSTOMER_DEFAULTS)
            hit = self._compiled[id(cond)] = (cond, predicate)
        return hit[1](row, now)


def collect_fields(node: Condition, out: set[str]) -> None:
    """Add to ``out`` the fields ``node`` tests (``segment:ID`` for segments, the orders key for order windows)."""
    if isinstance(node, Compare):
        out.add(node.field)
    elif isinstance(node, (All, AnyOf)):
        for item in node.items:
            collect_fields(item, out)
    elif isinstance(node, Not):
        collect_fields(node.item, out)
    elif isinstance(node, SegmentRef):
        out.add("segment:" + node.segment_id)
    elif isinstance(node, OrderWindow):
        out.add(ORDERS_KEY)


def business_now(now: datetime, rule: RuleSpec) -> datetime:
    """``now`` in the rule's time zone: the instant is the same, but calendar
    order windows (``in: this_quarter``, ``between`` days) are read in the
    zone of the ``now`` they get."""
    return now.astimezone(zone(rule.timezone))


def rule_conditions(rule: RuleSpec, *, audience: bool = True) -> list[Condition]:
    """The conditions of ``rule``: its customer audience (when ``audience``),
    ``exit_when`` and every ``if``."""
    found: list[Condition] = []
    if audience and rule.audience is not None:
        found.append(rule.audience)
    if rule.exit_when is not None:
        found.append(rule.exit_when)

    def walk(steps: tuple[Any, ...]) -> None:
        for step in steps:
            if isinstance(step.action, IfSpec):
                found.append(step.action.condition)
                walk(step.action.then)
                walk(step.action.else_)

    walk(rule.steps)
    return found


def orders_since(rules: Iterable[RuleSpec], now: datetime, segments: Mapping[str, Condition], *,
                 audience: bool = False) -> datetime | None:
    """How far back a loader must read orders for the conditions of ``rules``
    (naive UTC; each rule's calendar windows in its own zone), or None when
    none of them (nor the segments they use) tests orders. ``audience``: count
    the audiences too (event entry checks them per customer)."""
    lows = [low for rule in rules
            if (low := earliest_order_needed(rule_conditions(rule, audience=audience),
                                             business_now(now, rule), segments)) is not None]
    return min(lows) if lows else None


def facts_used(rule: RuleSpec) -> frozenset[str]:
    """The journey facts ``rule``'s ``exit_when`` and ``if`` steps test (so a
    batch loads only those)."""
    found: set[str] = set()
    if rule.exit_when is not None:
        collect_fields(rule.exit_when, found)

    def walk(steps: tuple[Any, ...]) -> None:
        for step in steps:
            if isinstance(step.action, IfSpec):
                collect_fields(step.action.condition, found)
                walk(step.action.then)
                walk(step.action.else_)

    walk(rule.steps)
    return frozenset(found & (set(JOURNEY_FACTS) | {ORDERS_KEY}))


def journey_row(customer: Mapping[str, Any], *, entered_at: datetime, coupons: list[Mapping[str, Any]],
                last_order_at: datetime | None, feedback: list[tuple[datetime, int | None]],
                clicks: list[datetime], replies: Sequence[datetime] = ()) -> dict[str, Any]:
    """The row conditions see: the customer's fields plus the journey facts
    (times naive UTC; "since entry" means at or after ``entered_at``).
    ``clicks``: first clicks of short links in this journey's rule's messages;
    ``replies``: ``message.replied`` events. A reply is not a click, nor a
    click a reply."""
    row = dict(customer)
    for c in coupons:
        row[f"coupon_issued:{c['pool_id']}"] = True
        if c.get("redeemed_at") is not None or c.get("status") == "redeemed":
            row[f"coupon_redeemed:{c['pool_id']}"] = True
    last = max((t for t in (last_order_at, customer.get("last_purchase_at")) if isinstance(t, datetime)),
               default=None)
    row["ordered_since_entry"] = last is not None and last > entered_at
    scores = [s for _, s in feedback if s is not None]
    row["feedback.score"] = scores[-1] if scores else None
    row["message_replied"] = bool(feedback) or bool(replies)
    row["message_clicked"] = any(t >= entered_at for t in clicks)
    return row
