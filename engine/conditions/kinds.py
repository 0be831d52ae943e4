"""Field kinds, the operators each kind allows, and the error raised by compilers."""

from __future__ import annotations

from enum import Enum


class FieldKind(Enum):
    """What a field holds, as far as conditions are concerned."""

    TEXT = "text"
    NUMBER = "number"
    DATE = "date"
    DATETIME = "datetime"
    BOOL = "bool"
    LIST = "list"


#: Every operator the language knows, in the order messages list them.
OPERATORS: tuple[str, ...] = (
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "not_in",
    "between",
    "contains",
    "not_contains",
    "is_empty",
    "older_than",
    "within",
    "within_next",
)

#: Operators whose value is a duration (``90d``), relative to ``now``.
DURATION_OPS = frozenset({"older_than", "within", "within_next"})
#: Operators that order values.
ORDER_OPS = frozenset({"gt", "gte", "lt", "lte", "between"})
#: Operators whose value is a list of candidates.
LIST_VALUE_OPS = frozenset({"in", "not_in"})
#: Operators that are the plain negation of another operator.
NEGATED = {"ne": "eq", "not_in": "in", "not_contains": "contains"}

_DATE_OPS = frozenset(
    {"eq", "ne", "gt", "gte", "lt", "lte", "between", "is_empty"} | DURATION_OPS
)

ALLOWED_OPS: dict[FieldKind, frozenset[str]] = {
    # No ordering on text: collation differs between databases and Python.
    FieldKind.TEXT: frozenset({"eq", "ne", "in", "not_in", "is_empty"}),
    FieldKind.NUMBER: frozenset(
        {"eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "between", "is_empty"}
    ),
    FieldKind.DATE: _DATE_OPS,
    FieldKind.DATETIME: _DATE_OPS,
    FieldKind.BOOL: frozenset({"eq", "ne", "is_empty"}),
    FieldKind.LIST: frozenset({"contains", "not_contains", "is_empty"}),
}


def kinds_for_op(op: str) -> list[FieldKind]:
    """The kinds of field an operator applies to, in declaration order."""
    return [kind for kind in FieldKind if op in ALLOWED_OPS[kind]]


def describe_kinds(kinds: list[FieldKind]) -> str:
    """``"number and date"``; date and datetime together read as just "date"."""
    labels: list[str] = []
    for kind in kinds:
        label = "date" if kind is FieldKind.DATETIME and FieldKind.DATE in kinds else kind.value
        if label not in labels:
            labels.append(label)
    if len(labels) == 1:
        return labels[0]
    return ", ".join(labels[:-1]) + " and " + labels[-1]


class ConditionError(ValueError):
    """A condition cannot be compiled: unknown segment, segment cycle, bad value.

    Loaded definitions have been checked, so this means a caller skipped
    :func:`engine.conditions.check.check_condition` or passed the wrong catalog.
    """
