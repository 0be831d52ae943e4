"""Structural parse of condition data (YAML/JSON) into the :mod:`.ast` tree.

Conditions are data, never code. This step knows nothing about which fields
exist; :mod:`.check` does that against a field catalog.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from engine.definitions.errors import Problem, unknown
from engine.durations import DurationError, parse_duration

from .ast import All, Any, Compare, Condition, Not, Path, SegmentRef
from .kinds import DURATION_OPS, LIST_VALUE_OPS, OPERATORS
from .order_windows import is_order_window, parse_order_window

KEYWORDS = ("all", "any", "not", "segment")

_SHAPE = "condition_shape"

#: How deeply ``all``/``any``/``not`` may nest. Real conditions use a handful of
#: levels; hostile ones (40+) overflowed the parser of SQLite ("parser stack
#: overflow", a 500 and a CSV export cut off after its header) or Python's stack.
MAX_NESTING = 16


#: What people write for our operators (from SQL, spreadsheets, other tools).
OPERATOR_ALIASES: Mapping[str, str] = {
    "greater_than": "gt", ">": "gt", "more_than": "gt", "above": "gt",
    "greater_or_equal": "gte", ">=": "gte", "at_least": "gte", "min": "gte",
    "less_than": "lt", "<": "lt", "below": "lt",
    "less_or_equal": "lte", "<=": "lte", "at_most": "lte", "max": "lte",
    "equals": "eq", "equal": "eq", "is": "eq", "=": "eq", "==": "eq",
    "not_equal": "ne", "not_equals": "ne", "!=": "ne", "is_not": "ne",
    "one_of": "in", "any_of": "in", "not_one_of": "not_in", "none_of": "not_in",
    "has": "contains", "includes": "contains", "excludes": "not_contains",
    "empty": "is_empty", "is_null": "is_empty", "blank": "is_empty",
    "before_days": "older_than", "last": "within", "next": "within_next",
}


def parse_condition(raw: object, path: Path = ()) -> tuple[Condition | None, list[Problem]]:
    """Parse condition data into a tree, reporting every structural problem.

    ``path`` is where ``raw`` sits in its definition; problems carry the path of
    the offending node. Returns ``(None, problems)`` when anything is wrong, so a
    caller never compiles half a condition.
    """
    problems: list[Problem] = []
    if _nesting(raw) > MAX_NESTING:
        problems.append(Problem(tuple(path), "condition_too_deep",
                                f"a condition may nest `all`/`any`/`not` at most {MAX_NESTING} levels deep"))
        return None, problems
    cond = _parse(raw, tuple(path), problems)
    return (None if problems else cond), problems


def _nesting(raw: object) -> int:
    """How deeply ``all``/``any``/``not`` nest in ``raw`` (counted without
    recursion, and only up to one level past the limit)."""
    deepest = 0
    stack: list[tuple[object, int]] = [(raw, 0)]
    while stack and deepest <= MAX_NESTING:
        node, depth = stack.pop()
        if not isinstance(node, Mapping):
            continue
        deepest = max(deepest, depth)
        for key, value in node.items():
            if key == "not":
                stack.append((value, depth + 1))
            elif key in ("all", "any") and isinstance(value, list):
                stack.extend((item, depth + 1) for item in value)
    return deepest


def _parse(raw: object, path: Path, problems: list[Problem]) -> Condition | None:
    if not isinstance(raw, Mapping):
        problems.append(
            Problem(
                path,
                _SHAPE,
                f"a condition is a mapping such as `{{field: value}}`, `all: [...]` "
                f"or `segment: id`, not {_describe(raw)}",
            )
        )
        return None
    if not raw:
        problems.append(Problem(path, "empty_condition", "empty condition; write at least one test"))
        return None
    parts = [_parse_pair(key, value, path, problems) for key, value in raw.items()]
    if len(parts) == 1:
        return parts[0]
    # Several keys in one mapping: an implicit `all`.
    return All(tuple(p for p in parts if p is not None), path=path)


def _parse_pair(key: object, value: object, path: Path, problems: list[Problem]) -> Condition | None:
    if key in ("all", "any"):
        return _parse_list(str(key), value, path, problems)
    if key == "not":
        item = _parse(value, path + ("not",), problems)
        return None if item is None else Not(item, path=path)
    if key == "segment":
        here = path + ("segment",)
        if not isinstance(value, str) or not value.strip():
            problems.append(
                Problem(here, _SHAPE, f"`segment` takes a segment id, not {_describe(value)}")
            )
            return None
        return SegmentRef(value, path=here)
    if is_order_window(key, value):
        return parse_order_window(value, path + (str(key),), problems)  # type: ignore[arg-type]
    if not isinstance(key, str) or not key.strip():
        problems.append(
            Problem(
                path + (str(key),),
                "bad_field_name",
                f"a field name must be text, not {_describe(key)}; quote it",
                at_key=True,
            )
        )
        return None
    return _parse_field(key, value, path, problems)


def _parse_list(kw: str, value: object, path: Path, problems: list[Problem]) -> Condition | None:
    here = path + (kw,)
    if not isinstance(value, list):
        problems.append(
            Problem(here, _SHAPE, f"`{kw}` takes a list of conditions, not {_describe(value)}")
        )
        return None
    if not value:
        problems.append(Problem(here, "empty_condition", f"`{kw}` needs at least one condition"))
        return None
    items = [_parse(item, here + (i,), problems) for i, item in enumerate(value)]
    kept = tuple(i for i in items if i is not None)
    return All(kept, path=path) if kw == "all" else Any(kept, path=path)


def _parse_field(name: str, value: object, path: Path, problems: list[Problem]) -> Condition | None:
    key_path = path + (name,)
    if not isinstance(value, Mapping):
        normalized = _operand("eq", value, key_path, problems)
        if normalized is _BAD:
            return None
        return Compare(name, "eq", normalized, path=key_path, key_path=key_path)
    if not value:
        problems.append(
            Problem(
                key_path,
                "empty_condition",
                f"no operator for `{name}`; write e.g. `{{eq: ...}}` or `{{in: [...]}}`",
            )
        )
        return None
    tests: list[Condition] = []
    for op, operand in value.items():
        op_path = key_path + (str(op),)
        if op not in OPERATORS:
            alias = OPERATOR_ALIASES.get(str(op).lower().replace("-", "_").replace(" ", "_"))
            message = (f"unknown operator `{op}`; did you mean `{alias}`?" if alias
                       else unknown("operator", op, OPERATORS))
            if op in ("all", "any", "not", "segment"):
                message += f"; `{op}` belongs at the level of the field, not inside it"
            problems.append(Problem(op_path, "unknown_operator", message, at_key=True))
            continue
        normalized = _operand(str(op), operand, op_path, problems)
        if normalized is not _BAD:
            tests.append(Compare(name, str(op), normalized, path=op_path, key_path=key_path))
    if len(tests) == len(value) and len(tests) == 1:
        return tests[0]
    return All(tuple(tests), path=key_path) if tests else None


_BAD = object()


def _operand(op: str, operand: object, path: Path, problems: list[Problem]) -> object:
    if op in DURATION_OPS:
        if isinstance(operand, timedelta):
            return operand
        try:
            return parse_duration(operand)
        except DurationError as exc:
            problems.append(Problem(path, "bad_duration", f"`{op}`: {exc}"))
            return _BAD
    if op == "between":
        if not isinstance(operand, (list, tuple)) or len(operand) != 2:
            problems.append(
                Problem(path, "bad_value", f"`between` takes two values `[low, high]`, not {_describe(operand)}")
            )
            return _BAD
        if any(v is None or isinstance(v, (list, tuple, Mapping)) for v in operand):
            problems.append(Problem(path, "bad_value", "`between` takes two single values `[low, high]`"))
            return _BAD
        return tuple(operand)
    if op in LIST_VALUE_OPS:
        if not isinstance(operand, (list, tuple)):
            problems.append(
                Problem(path, "bad_value", f"`{op}` takes a list of values, not {_describe(operand)}; write `[{_short(operand)}]`")
            )
            return _BAD
        if any(v is None or isinstance(v, (list, tuple, Mapping)) for v in operand):
            problems.append(Problem(path, "bad_value", f"`{op}` takes a list of single values"))
            return _BAD
        return tuple(operand)
    if op == "is_empty":
        if not isinstance(operand, bool):
            problems.append(Problem(path, "bad_value", f"`is_empty` takes true or false, not {_describe(operand)}"))
            return _BAD
        return operand
    if operand is None:
        problems.append(
            Problem(path, "bad_value", f"`{op}` needs a value; to test for a missing value write `is_empty: true`")
        )
        return _BAD
    if isinstance(operand, (list, tuple, Mapping)):
        hint = "; for one of several values use `in`" if op in ("eq", "ne") and not isinstance(operand, Mapping) else ""
        problems.append(Problem(path, "bad_value", f"`{op}` takes a single value, not {_describe(operand)}{hint}"))
        return _BAD
    return operand


def _short(value: object) -> str:
    return str(value) if not isinstance(value, (list, tuple, Mapping)) else "..."


def _describe(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"`{value}`"
