"""validate_submission: every field type and rule, valid and invalid, with exact codes."""

from __future__ import annotations

from typing import Any

import pytest

from engine.definitions.specs import FormSpec
from engine.forms import FieldError, ValidationFailed, to_json, validate_submission

from .conftest import NOW

BASE: dict[str, Any] = {"lines": [{"item": "海报", "qty": 1}], "value": "10"}


def run(form: FormSpec, **values: Any) -> tuple[dict[str, Any], list[FieldError]]:
    return validate_submission(form, {**BASE, **values}, now=NOW, user="alice", customer_exists=lambda i: i == 7)


def codes(form: FormSpec, **values: Any) -> list[tuple[str, str]]:
    return [(e.field, e.code) for e in run(form, **values)[1]]


def clean_of(form: FormSpec, key: str, value: Any) -> Any:
    clean, errors = run(form, **{key: value})
    assert errors == [], errors
    return clean.get(key)


def test_minimal_payload_and_defaults(form: FormSpec) -> None:
    clean, errors = run(form)
    assert errors == []
    assert clean == {"owner": "alice", "created": "2026-03-01T02:00:00", "kind": "coupon", "value": "10.00",
                     "lines": [{"item": "海报", "qty": 1}]}


@pytest.mark.parametrize(("key", "value", "stored"), [
    ("text", "<b>x", "<b>x"),  # HTML stored as typed
    ("code", "ABC", "ABC"),
    ("area", "多行\n文本" * 100, "多行\n文本" * 100),
    ("int", 3, 3), ("int", 4.0, 4), ("int", 10, 10),
    ("num", 1.25, 1.25), ("num", -1.5, -1.5), ("num", 7, 7),
    ("money", "60000", "60000.00"), ("money", 12.5, "12.50"), ("money", "0.1", "0.10"), ("money", 0, "0.00"),
    ("money", "12.30", "12.30"),
    ("day", "2026-03-01", "2026-03-01"),
    ("at", "2026-03-01T10:00", "2026-03-01T10:00:00"),  # naive is UTC, as stored
    ("at", "2026-03-01T10:00:00+08:00", "2026-03-01T02:00:00"),
    ("at", "2026-03-01T02:00:00Z", "2026-03-01T02:00:00"),
    ("sel", "a", "a"), ("sel", 3, 3),
    ("multi", ["x", "z", "x"], ["x", "z"]),
    ("ok", True, True), ("ok", False, False),
    ("phone", "138 0013 8000", "13800138000"), ("phone", "+8613800138000", "13800138000"),
    ("intl", "+14155552671", "+14155552671"),
    ("anyphone", "13800138000", "13800138000"), ("anyphone", "+442071838750", "+442071838750"),
    ("mail", "li.lei@example.com", "li.lei@example.com"),
    ("site", "https://example.com/a?b=1", "https://example.com/a?b=1"),
    ("cust", 7, 7), ("cust", "7", 7),
    ("owner", "bob", "bob"),
    ("doc", {"id": "f1", "name": "plan.PDF", "size": 100, "content_type": "application/pdf"},
     {"id": "f1", "name": "plan.PDF", "size": 100, "content_type": "application/pdf"}),
    ("doc", [{"id": "f2", "name": "a.png", "size": 1024 * 1024, "content_type": "image/png"}],
     [{"id": "f2", "name": "a.png", "size": 1024 * 1024, "content_type": "image/png"}]),
])
def test_valid_values(form: FormSpec, key: str, value: Any, stored: Any) -> None:
    assert clean_of(form, key, value) == stored


@pytest.mark.parametrize(("key", "value", "code"), [
    ("text", "x", "too_short"), ("text", "toolong", "too_long"), ("text", 5, "string_type"),
    ("text", ["a"], "string_type"), ("text", "a\x00b", "invalid_chars"), ("text", "x" * 10_001, "too_long"),
    ("area", "x" * 100_001, "too_long"),
    ("code", "abc", "pattern"), ("code", "ABCD", "pattern"),
    ("int", 1.5, "integer_type"), ("int", "3", "integer_type"), ("int", True, "integer_type"),
    ("int", 0, "min"), ("int", 11, "max"), ("int", 2**60, "out_of_range"), ("int", float("nan"), "integer_type"),
    ("num", float("inf"), "number_type"), ("num", float("nan"), "number_type"), ("num", False, "number_type"),
    ("num", -2, "min"), ("num", 100.5, "max"), ("num", {"a": 1}, "number_type"),
    ("money", "12.345", "decimal_places"), ("money", 0.001, "decimal_places"), ("money", "1e5", "money_type"),
    ("money", "abc", "money_type"), ("money", -1, "min"), ("money", True, "money_type"),
    ("money", float("nan"), "money_type"), ("money", "1" * 13, "out_of_range"),
    ("day", "2026-02-28", "min"), ("day", "2026-02-30", "date_type"), ("day", "01/03/2026", "date_type"),
    ("day", 20260301, "date_type"), ("day", "2026-03-01T00:00", "date_type"),
    ("at", "yesterday", "datetime_type"), ("at", "2026-13-01T00:00", "datetime_type"), ("at", 1, "datetime_type"),
    ("sel", "c", "option"), ("sel", "3", "option"), ("sel", ["a"], "option"), ("sel", True, "option"),
    ("multi", "x", "list_type"), ("multi", ["x", "w"], "option"), ("multi", [["x"]], "option"),
    ("ok", "on", "bool_type"), ("ok", 1, "bool_type"),
    ("phone", "12345678901", "phone"), ("phone", "+14155552671", "phone"), ("intl", "13800138000", "phone"),
    ("anyphone", "110", "phone"), ("phone", 13800138000, "string_type"),
    ("mail", "not-an-email", "email"), ("mail", "a@b", "email"),
    ("site", "javascript:alert(1)", "url"), ("site", "ftp://example.com", "url"), ("site", "http://", "url"),
    ("site", "http://exa mple.com", "url"),
    ("cust", 8, "customer_not_found"), ("cust", -1, "customer"), ("cust", "abc", "customer"), ("cust", 1.5, "customer"),
    ("owner", "two words", "user"),
    ("doc", {"id": "f1", "name": "x.exe", "size": 1, "content_type": "application/octet-stream"}, "file_type"),
    ("doc", {"id": "f1", "name": "x.pdf", "size": 1024 * 1024 + 1, "content_type": "application/pdf"}, "file_size"),
    ("doc", {"id": "../etc", "name": "x.pdf", "size": 1}, "file"), ("doc", "x.pdf", "file"),
    ("doc", {"id": "f", "name": "x.pdf", "size": 1, "extra": 1}, "file"),
    ("created", "2020-01-01T00:00", "readonly"),
    ("lines", {"item": "x"}, "list_type"),
])
def test_invalid_values(form: FormSpec, key: str, value: Any, code: str) -> None:
    assert codes(form, **{key: value}) == [(key, code)]


def test_empty_values_mean_missing(form: FormSpec) -> None:
    clean, errors = run(form, text="", int=None, multi=[], mail="  ")
    assert errors == [] and not {"text", "int", "multi", "mail"} & set(clean)


def test_unknown_fields_and_non_object_payload(form: FormSpec) -> None:
    assert codes(form, nope=1) == [("nope", "unknown_field")]
    assert validate_submission(form, ["not", "an", "object"], now=NOW)[1] == [FieldError("", "object_type")]  # type: ignore[arg-type]
    assert len(validate_submission(form, {str(i): i for i in range(10_000)}, now=NOW)[1]) < 50
    long_key = "k" * 5000
    assert len(codes(form, **{long_key: 1})[0][0]) < 300


def test_messages_in_both_languages(form: FormSpec) -> None:
    _, errors = run(form, int=0, money="x", code="abc", until="2026-03-01", day="2026-03-02")
    by_field = {e.field: e for e in errors}
    assert by_field["int"].message("zh") == "不能小于 1" and by_field["int"].message("en") == "Must be at least 1"
    assert by_field["money"].message("en") == "Expected an amount such as 12.50"
    assert by_field["code"].message("zh") == "三个大写字母"  # pattern_message wins
    assert by_field["until"].message("zh") == "必须晚于「日期」"
    assert by_field["until"].message("en") == "Must be after 日期"
    required = FieldError("x", "required")
    assert (required.message("zh"), required.message("en")) == ("必填", "This field is required")
    assert to_json([required], "en") == [{"field": "x", "code": "required", "message": "This field is required"}]
    assert "x: required" in str(ValidationFailed([required]))


def test_visible_if_and_required_if(form: FormSpec) -> None:
    # kind defaults to coupon: value is visible and required.
    assert codes(form, value=None) == [("value", "required")]
    # kind gift: value hidden (dropped, errors dropped), gift_name required.
    clean, errors = run(form, kind="gift", value="nonsense")
    assert [(e.field, e.code) for e in errors] == [("gift_name", "required")]
    assert "value" not in clean
    clean, errors = run(form, kind="gift", gift_name="杯子")
    assert errors == [] and clean["gift_name"] == "杯子" and "value" not in clean


def test_table_rows(form: FormSpec) -> None:
    assert codes(form, lines=[]) == [("lines", "min_rows")]
    assert codes(form, lines=[{"item": "a", "qty": 1}] * 4) == [("lines", "max_rows")]
    got = codes(form, lines=[{"qty": 0, "bad": 1}, "junk", {"item": "b", "qty": 6}])
    assert got == [("lines[0].bad", "unknown_field"), ("lines[0].item", "required"), ("lines[0].qty", "min"),
                   ("lines[1]", "object_type"), ("lines[2].gift", "required")]
    clean = clean_of(form, "lines", [{"item": "a", "qty": 6, "gift": "g"}, {"item": "b", "qty": 2, "gift": "hidden"}])
    assert clean == [{"item": "a", "qty": 6, "gift": "g"}, {"item": "b", "qty": 2}]


def test_after_and_before(form: FormSpec) -> None:
    assert codes(form, day="2026-03-05", until="2026-03-05") == [("until", "after")]
    assert codes(form, day="2026-03-05", until="2026-03-06") == []
    assert codes(form, at="2026-03-01T10:00", deadline="2026-03-01T11:00") == [("deadline", "before")]
    assert codes(form, at="2026-03-01T10:00", deadline="2026-03-01T09:59") == []
    # A missing or invalid other field is not compared.
    assert codes(form, until="2026-01-01") == []
    assert codes(form, day="bad", until="2026-01-01") == [("day", "date_type")]


def test_readonly_keeps_its_value(form: FormSpec) -> None:
    assert codes(form, created=NOW.isoformat()) == []
    clean, errors = validate_submission(form, {**BASE, "created": "2020-01-01T00:00"}, now=NOW, allow_readonly=True)
    assert errors == [] and clean["created"] == "2020-01-01T00:00:00"


def test_partial_merges_onto_existing(form: FormSpec) -> None:
    existing, errors = run(form, text="abc", int=3)
    assert errors == []
    clean, errors = validate_submission(form, {"int": 5, "text": None}, now=NOW, existing=existing, partial=True)
    assert errors == [] and clean["int"] == 5 and "text" not in clean and clean["lines"] == existing["lines"]
    _, errors = validate_submission(form, {"int": "x"}, now=NOW, existing=existing, partial=True)
    assert [(e.field, e.code) for e in errors] == [("int", "integer_type")]
    _, errors = validate_submission(form, {"kind": "gift"}, now=NOW, existing=existing, partial=True)
    assert [(e.field, e.code) for e in errors] == [("gift_name", "required")]


def test_user_lookup(form: FormSpec) -> None:
    _, errors = validate_submission(form, {**BASE, "owner": "ghost"}, now=NOW, user_exists=lambda u: u == "alice")
    assert [(e.field, e.code) for e in errors] == [("owner", "user_not_found")]
