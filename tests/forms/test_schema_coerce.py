"""JSON Schema of every shipped form, and HTML form data coerced into the API payload shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from werkzeug.datastructures import MultiDict

from engine.definitions.loader import load_paths
from engine.definitions.specs import FormSpec
from engine.forms import (
    coerce_form_data,
    compiled_validator,
    form_json_schema,
    validate_submission,
)

from .conftest import NOW

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = load_paths([ROOT / "forms", ROOT / "workflows", ROOT / "config"], relative_to=ROOT).raise_for_errors()

SAMPLES: dict[str, dict[str, Any]] = {
    "activity_request": {
        "name": "春季促销", "channel": "wecom", "budget": "60000.00", "start_date": "2026-03-02",
        "end_date": "2026-03-05", "discount_type": "coupon", "coupon_value": 20,
        "materials": [{"item": "海报", "qty": 10, "unit_cost": "5.50"}], "target_store": "all",
        "attachments": {"id": "f1", "name": "plan.pdf", "size": 10, "content_type": "application/pdf"},
    },
    "store_redemption": {"customer": 7, "coupon_code": "WB20-8F3K2Q9A", "order_amount": 199, "store": "gz_tianhe"},
    "nps_survey": {"score": 6, "reason": ["price", "other"], "comment": "还行", "contact_ok": True},
    "launch_reservation": {"customer": 7, "product": "spring_tea", "quantity": 2, "referrer_code": "P123"},
    "o2o_campaign": {"name": "国庆到店礼", "holiday": "national_day", "start_date": "2026-10-01",
                     "end_date": "2026-10-07", "coupon_value": 30, "budget": "150000.00"},
    "clearance_plan": {"name": "夏季清仓", "start_date": "2026-06-05", "end_date": "2026-06-07",
                       "member_only": True, "discount_percent": 50, "bundle": "两件套"},
    "dealer_target": {"dealer": 9, "quarter": "2026Q3", "target": "500000.00", "achieved": "620000.00",
                      "tier": "silver"},
    "community_event": {"name": "21天打卡", "kind": "signin", "group": "上海会员1群", "start_date": "2026-05-11"},
}


def test_every_shipped_form_has_a_sample() -> None:
    assert set(SHIPPED.forms) == set(SAMPLES)


@pytest.mark.parametrize("form_id", sorted(SAMPLES))
def test_schema_is_valid_and_accepts_the_sample(form_id: str) -> None:
    form = SHIPPED.forms[form_id]
    schema = form_json_schema(form)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    validator = compiled_validator(form, 1)
    assert compiled_validator(form, 1) is validator
    assert list(validator.iter_errors(SAMPLES[form_id])) == []
    clean, errors = validate_submission(form, SAMPLES[form_id], now=NOW, user="alice")
    assert errors == []
    assert list(validator.iter_errors(clean)) == []  # stored data passes too


def test_schema_rejects_wrong_shapes() -> None:
    form = SHIPPED.forms["activity_request"]
    validator = compiled_validator(form, 1)
    bad = {**SAMPLES["activity_request"], "channel": "fax", "extra": 1, "materials": [{"qty": "x"}]}
    messages = {e.json_path for e in validator.iter_errors(bad)}
    assert {"$.channel", "$", "$.materials"} <= messages  # optional fields are anyOf [value, null]
    assert "name" in form_json_schema(form)["required"]
    assert "coupon_value" not in form_json_schema(form)["required"]  # conditional


def test_coerce_html_form_data(form: FormSpec) -> None:
    data = MultiDict([
        ("csrf_token", "t"), ("text", "abc"), ("int", "7"), ("num", "12.5"), ("money", "60000"),
        ("day", "2026-03-02"), ("at", "2026-03-01T10:30"), ("sel", "3"), ("multi", "x"), ("multi", "y"),
        ("ok", "on"), ("cust", "7"), ("created", "2000-01-01T00:00"),
        ("lines-0-item", "海报"), ("lines-0-qty", "2"), ("lines-1-item", ""), ("lines-1-qty", ""),
        ("lines-2-item", "旗"), ("lines-2-qty", "x"), ("value", "10.5"), ("int2", "ignored"),
    ])
    payload = coerce_form_data(form, data)
    assert payload["int"] == 7 and payload["num"] == 12.5 and payload["money"] == "60000"
    assert payload["sel"] == 3 and payload["multi"] == ["x", "y"] and payload["ok"] is True and payload["cust"] == 7
    assert payload["lines"] == [{"item": "海报", "qty": 2}, {"item": "旗", "qty": "x"}]
    assert "created" not in payload and "csrf_token" not in payload
    clean, errors = validate_submission(form, payload, now=NOW, user="alice")
    assert [(e.field, e.code) for e in errors] == [("lines[1].qty", "integer_type")]
    assert clean["at"] == "2026-03-01T02:30:00"
    unchecked = coerce_form_data(form, {"text": "abc", "int": ""})
    assert unchecked["ok"] is False and unchecked["int"] is None and unchecked["lines"] == []


def test_coerce_then_validate_matches_api_errors() -> None:
    form = SHIPPED.forms["activity_request"]
    html = coerce_form_data(form, MultiDict([("name", "x"), ("budget", "12.345"), ("channel", "sms")]))
    api = {"name": "x", "budget": "12.345", "channel": "sms"}
    assert validate_submission(form, html, now=NOW)[1] == validate_submission(form, {**api, "materials": []}, now=NOW)[1]
