"""The condition language: data → tree → checks → Python predicate (and SQL in storage).

Conditions are data, never code: nothing here evaluates strings.
"""

from .ast import All, Any, Compare, Condition, Not, OrderWindow, SegmentRef
from .check import (
    check_condition,
    referenced_fields,
    referenced_segments,
    required_true_fields,
)
from .customer_fields import CONSENT_CHANNELS, CUSTOMER_DEFAULTS, CUSTOMER_FIELDS
from .kinds import ALLOWED_OPS, OPERATORS, ConditionError, FieldKind
from .parse import parse_condition
from .predicate import compile_predicate

__all__ = [
    "ALLOWED_OPS",
    "CONSENT_CHANNELS",
    "CUSTOMER_DEFAULTS",
    "CUSTOMER_FIELDS",
    "OPERATORS",
    "All",
    "Any",
    "Compare",
    "Condition",
    "ConditionError",
    "FieldKind",
    "Not",
    "OrderWindow",
    "SegmentRef",
    "check_condition",
    "compile_predicate",
    "parse_condition",
    "referenced_fields",
    "referenced_segments",
    "required_true_fields",
]
