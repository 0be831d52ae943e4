"""Checks a parsed condition against a field catalog, and reads facts off it."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping

from engine.definitions.errors import Problem, unknown

from .ast import All, Any, Compare, Condition, Not, OrderWindow, SegmentRef
from .customer_fields import CUSTOMER_FIELDS
from .kinds import ALLOWED_OPS, DURATION_OPS, FieldKind, describe_kinds, kinds_for_op
from .values import expected, to_operand


def check_condition(
    cond: Condition,
    fields: Mapping[str, FieldKind],
    *,
    segments: Collection[str] = (),
    what: str = "field",
) -> list[Problem]:
    """Every problem of ``cond`` against the fields it may use.

    Reports unknown fields (with "did you mean" among ``fields``; ``what`` names
    them in messages, e.g. "customer field"), operators that do not apply to a
    field's kind, operands of the wrong type, and references to segments not in
    ``segments``. Select option values are not checked here. Order windows
    (``orders: {...}``) are about a customer, so they are allowed only where
    ``fields`` holds the customer fields (audiences, segments, a customer
    journey's ``if`` / ``exit_when``).
    """
    problems: list[Problem] = []
    about_customer = all(f in fields for f in CUSTOMER_FIELDS)
    for node in _walk(cond):
        if isinstance(node, OrderWindow):
            if not about_customer:
                problems.append(Problem(node.key_path, "operator_not_allowed",
                                        "`orders` tests a customer's purchases: it belongs in a rule's "
                                        "`audience.customer`, a segment, or the `if`/`exit_when` of a rule "
                                        "whose subjects are customers", at_key=True))
        elif isinstance(node, SegmentRef):
            if node.segment_id not in segments:
                problems.append(
                    Problem(node.path, "unknown_segment", unknown("segment", node.segment_id, segments))
                )
        elif isinstance(node, Compare):
            problems.extend(_check_compare(node, fields, what))
    return problems


def _check_compare(node: Compare, fields: Mapping[str, FieldKind], what: str) -> list[Problem]:
    kind = fields.get(node.field)
    if kind is None and node.field == "orders" and all(f in fields for f in CUSTOMER_FIELDS):
        return [Problem(node.key_path or node.path, "condition_shape",
                        "`orders` needs `count` or `amount` next to its window, e.g. "
                        "`orders: {within: 90d, count: {gte: 2}}`", at_key=True)]
    if kind is None:
        return [Problem(node.key_path or node.path, "unknown_field", unknown(what, node.field, fields), at_key=True)]
    if node.op not in ALLOWED_OPS[kind]:
        message = (
            f"`{node.op}` does not apply to {kind.value} {what} `{node.field}`; "
            f"it applies to {describe_kinds(kinds_for_op(node.op))} fields"
        )
        if kind is FieldKind.LIST and node.op in ("eq", "ne", "in", "not_in"):
            message += "; for a list use `contains` or `not_contains`"
        explicit = node.path != node.key_path
        return [Problem(node.path, "operator_not_allowed", message, at_key=explicit)]
    if node.op == "is_empty" or node.op in DURATION_OPS:
        return []  # the parser fixed these operands' types
    if isinstance(node.value, tuple):
        values = [(node.path + (i,), v) for i, v in enumerate(node.value)]
    else:
        values = [(node.path, node.value)]
    problems = []
    converted = []
    for path, value in values:
        try:
            converted.append(to_operand(kind, value))
        except (ValueError, TypeError):
            problems.append(
                Problem(
                    path,
                    "bad_value",
                    f"{expected(kind)} expected for {kind.value} {what} `{node.field}`, not {_show(value)}"
                    + _hint(kind, value),
                )
            )
    if node.op == "between" and not problems and converted[0] > converted[1]:  # type: ignore[operator]
        problems.append(
            Problem(node.path, "bad_value", f"`between`: the low end {_show(node.value[0])} is above the high end {_show(node.value[1])}")  # type: ignore[index]
        )
    return problems


def _show(value: object) -> str:
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f"'{value}'"
    return f"`{value}`"


def _hint(kind: FieldKind, value: object) -> str:
    if kind in (FieldKind.TEXT, FieldKind.LIST) and isinstance(value, (int, float, bool)):
        return f"; quote it: '{str(value).lower() if isinstance(value, bool) else value}'"
    if kind is FieldKind.BOOL and isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
        return "; write it without quotes"
    return ""


def _walk(cond: Condition) -> Iterator[Condition]:
    yield cond
    if isinstance(cond, (All, Any)):
        for item in cond.items:
            yield from _walk(item)
    elif isinstance(cond, Not):
        yield from _walk(cond.item)


def referenced_fields(cond: Condition) -> set[str]:
    """Names of the fields ``cond`` tests (not following segment references)."""
    return {n.field for n in _walk(cond) if isinstance(n, Compare)}


def referenced_segments(cond: Condition) -> set[str]:
    """Ids of the segments ``cond`` refers to directly."""
    return {n.segment_id for n in _walk(cond) if isinstance(n, SegmentRef)}


def required_true_fields(
    cond: Condition, segments: Mapping[str, Condition] | None = None
) -> set[str]:
    """Fields that must be true for ``cond`` to hold (for the consent check).

    A field counts when tested ``eq: true`` (or ``ne: false``) in a conjunctive
    position: directly, inside nested ``all``, or in every branch of an ``any``.
    Nothing under ``not`` counts. Segment references are followed when
    ``segments`` is given (each segment at most once, so cycles are harmless).
    ``ne: false`` counts because the fields this serves (consents) read a
    missing value as false.
    """
    return _required(cond, segments or {}, frozenset())


def _required(cond: Condition, segments: Mapping[str, Condition], seen: frozenset[str]) -> set[str]:
    if isinstance(cond, Compare):
        if (cond.op == "eq" and cond.value is True) or (cond.op == "ne" and cond.value is False):
            return {cond.field}
        return set()
    if isinstance(cond, All):
        out: set[str] = set()
        for item in cond.items:
            out |= _required(item, segments, seen)
        return out
    if isinstance(cond, Any):
        if not cond.items:
            return set()
        sets = [_required(item, segments, seen) for item in cond.items]
        return set.intersection(*sets)
    if isinstance(cond, SegmentRef):
        target = segments.get(cond.segment_id)
        if target is None or cond.segment_id in seen:
            return set()
        return _required(target, segments, seen | {cond.segment_id})
    return set()
