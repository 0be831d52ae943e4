"""Parse and check problems: exact messages, codes and paths."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from engine.conditions import (
    CUSTOMER_FIELDS,
    All,
    Any,
    Compare,
    FieldKind,
    Not,
    SegmentRef,
    check_condition,
    parse_condition,
    referenced_fields,
    referenced_segments,
    required_true_fields,
)
from engine.definitions.errors import Problem

BASE = ("audience", "customer")


def test_design_example_parses_to_the_tree():
    raw = {"all": [
        {"last_purchase_at": {"older_than": "90d"}},
        {"consent.sms": True},
        {"tags": {"not_contains": "vip_blocked"}},
    ]}
    cond, problems = parse_condition(raw, BASE)
    assert problems == []
    assert cond == All((
        Compare("last_purchase_at", "older_than", timedelta(days=90)),
        Compare("consent.sms", "eq", True),
        Compare("tags", "not_contains", "vip_blocked"),
    ))
    assert cond.items[0].path == BASE + ("all", 0, "last_purchase_at", "older_than")
    assert cond.items[0].key_path == BASE + ("all", 0, "last_purchase_at")
    assert cond.items[1].path == BASE + ("all", 1, "consent.sms")
    assert check_condition(cond, CUSTOMER_FIELDS) == []


def test_shorthands_and_implicit_all():
    cond, problems = parse_condition({"discount_type": "coupon", "budget": {"gt": 5, "lte": 10}})
    assert problems == []
    assert cond == All((
        Compare("discount_type", "eq", "coupon"),
        All((Compare("budget", "gt", 5), Compare("budget", "lte", 10))),
    ))
    cond, _ = parse_condition({"not": {"segment": "vip"}}, ("when",))
    assert cond == Not(SegmentRef("vip"))
    assert cond.item.path == ("when", "not", "segment")
    cond, _ = parse_condition({"any": [{"a": 1}, {"b": {"in": [1, 2]}}]})
    assert cond == Any((Compare("a", "eq", 1), Compare("b", "in", (1, 2))))


@pytest.mark.parametrize(
    ("raw", "problems"),
    [
        ({"budget": {"gtt": 5}}, [Problem(("w", "budget", "gtt"), "unknown_operator", "unknown operator `gtt`; did you mean `gt`?", at_key=True)]),
        ({"tags": {"all": ["x"]}}, [Problem(("w", "tags", "all"), "unknown_operator", "unknown operator `all`; `all` belongs at the level of the field, not inside it", at_key=True)]),
        ({"all": {"a": 1}}, [Problem(("w", "all"), "condition_shape", "`all` takes a list of conditions, not a mapping")]),
        ({"any": []}, [Problem(("w", "any"), "empty_condition", "`any` needs at least one condition")]),
        ({}, [Problem(("w",), "empty_condition", "empty condition; write at least one test")]),
        ([{"a": 1}], [Problem(("w",), "condition_shape", "a condition is a mapping such as `{field: value}`, `all: [...]` or `segment: id`, not a list")]),
        ({"x": {}}, [Problem(("w", "x"), "empty_condition", "no operator for `x`; write e.g. `{eq: ...}` or `{in: [...]}`")]),
        ({"d": {"within": "3 days"}}, [Problem(("w", "d", "within"), "bad_duration", "`within`: `3 days` is not a duration; write a number and a unit, e.g. 90d, 48h, 15m, 2w")]),
        ({"n": {"between": [1]}}, [Problem(("w", "n", "between"), "bad_value", "`between` takes two values `[low, high]`, not a list")]),
        ({"n": {"in": 5}}, [Problem(("w", "n", "in"), "bad_value", "`in` takes a list of values, not `5`; write `[5]`")]),
        ({"n": {"is_empty": "yes"}}, [Problem(("w", "n", "is_empty"), "bad_value", "`is_empty` takes true or false, not `yes`")]),
        ({"n": None}, [Problem(("w", "n"), "bad_value", "`eq` needs a value; to test for a missing value write `is_empty: true`")]),
        ({"n": ["a", "b"]}, [Problem(("w", "n"), "bad_value", "`eq` takes a single value, not a list; for one of several values use `in`")]),
        ({"segment": 3}, [Problem(("w", "segment"), "condition_shape", "`segment` takes a segment id, not `3`")]),
        ({1: "x"}, [Problem(("w", "1"), "bad_field_name", "a field name must be text, not `1`; quote it", at_key=True)]),
    ],
)
def test_parse_problems(raw, problems):
    cond, found = parse_condition(raw, ("w",))
    assert found == problems
    assert cond is None


def test_parse_reports_every_problem_at_once():
    _, problems = parse_condition({"all": [{"a": {"gtt": 1}}, {"b": {"within": "x"}}, 7]})
    assert [p.path for p in problems] == [("all", 0, "a", "gtt"), ("all", 1, "b", "within"), ("all", 2)]


FORM = {"budget": FieldKind.NUMBER, "name": FieldKind.TEXT, "start": FieldKind.DATE,
        "due": FieldKind.DATETIME, "urgent": FieldKind.BOOL, "channels": FieldKind.LIST}


def checked(raw, fields=FORM, **kw):
    cond, problems = parse_condition(raw, ("when",))
    assert problems == []
    return check_condition(cond, fields, **kw)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"budgt": {"gt": 5}}, Problem(("when", "budgt"), "unknown_field", "unknown field `budgt`; did you mean `budget`?", at_key=True)),
        ({"name": {"older_than": "90d"}}, Problem(("when", "name", "older_than"), "operator_not_allowed", "`older_than` does not apply to text field `name`; it applies to date fields", at_key=True)),
        ({"name": {"gt": "a"}}, Problem(("when", "name", "gt"), "operator_not_allowed", "`gt` does not apply to text field `name`; it applies to number and date fields", at_key=True)),
        ({"channels": "sms"}, Problem(("when", "channels"), "operator_not_allowed", "`eq` does not apply to list field `channels`; it applies to text, number, date and bool fields; for a list use `contains` or `not_contains`")),
        ({"budget": {"contains": 1}}, Problem(("when", "budget", "contains"), "operator_not_allowed", "`contains` does not apply to number field `budget`; it applies to list fields", at_key=True)),
        ({"budget": {"gt": "5万"}}, Problem(("when", "budget", "gt"), "bad_value", "a number expected for number field `budget`, not '5万'")),
        ({"budget": {"in": [1, "x"]}}, Problem(("when", "budget", "in", 1), "bad_value", "a number expected for number field `budget`, not 'x'")),
        ({"start": {"gt": "June 1"}}, Problem(("when", "start", "gt"), "bad_value", "an ISO date (YYYY-MM-DD) expected for date field `start`, not 'June 1'")),
        ({"due": {"lt": "soon"}}, Problem(("when", "due", "lt"), "bad_value", "an ISO date or datetime (YYYY-MM-DDTHH:MM:SS) expected for datetime field `due`, not 'soon'")),
        ({"urgent": "true"}, Problem(("when", "urgent"), "bad_value", "true or false expected for bool field `urgent`, not 'true'; write it without quotes")),
        ({"name": 138}, Problem(("when", "name"), "bad_value", "text expected for text field `name`, not `138`; quote it: '138'")),
        ({"budget": {"between": [10, 1]}}, Problem(("when", "budget", "between"), "bad_value", "`between`: the low end `10` is above the high end `1`")),
        ({"segment": "vipp"}, Problem(("when", "segment"), "unknown_segment", "unknown segment `vipp`; did you mean `vip`?")),
    ],
)
def test_check_problems(raw, problem):
    assert checked(raw, segments=["vip"]) == [problem]


def test_check_accepts_well_typed_values():
    assert checked({"all": [
        {"start": {"between": [date(2025, 1, 1), "2025-12-31"]}},
        {"due": {"gte": "2025-01-01T08:00:00+08:00"}},
        {"budget": {"in": [1, 2.5]}},
        {"channels": {"contains": "sms"}},
        {"urgent": {"is_empty": False}},
    ]}) == []


def test_check_uses_what_in_messages():
    cond, _ = parse_condition({"cty": "上海"})
    assert check_condition(cond, CUSTOMER_FIELDS, what="customer field")[0].message == (
        "unknown customer field `cty`; did you mean `city`?"
    )


def test_references_and_required_true_fields():
    cond, _ = parse_condition({"all": [
        {"consent.sms": True},
        {"all": [{"consent.email": {"eq": True}}, {"segment": "s"}]},
        {"any": [{"consent.wecom": True, "a": 1}, {"consent.wecom": {"ne": False}}]},
        {"any": [{"x": True}, {"y": True}]},
        {"not": {"z": True}},
    ]})
    assert referenced_fields(cond) == {"consent.sms", "consent.email", "consent.wecom", "a", "x", "y", "z"}
    assert referenced_segments(cond) == {"s"}
    assert required_true_fields(cond) == {"consent.sms", "consent.email", "consent.wecom"}
    seg, _ = parse_condition({"vip": True})
    assert required_true_fields(cond, {"s": seg}) == {"consent.sms", "consent.email", "consent.wecom", "vip"}
    loop, _ = parse_condition({"segment": "s"})
    assert required_true_fields(loop, {"s": loop}) == set()
