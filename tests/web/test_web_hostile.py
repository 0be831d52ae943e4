"""Property test: random and hostile payloads to the API of every shipped form
(wrong types, huge strings, unicode, lone surrogates, nested junk, missing and
unknown fields, broken bytes) never produce a 500, and nothing half-written."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web_support import bearer

FORMS = ("activity_request", "nps_survey", "store_redemption")
OK = {200, 201, 400, 413, 422}

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30),
    st.sampled_from(["", " ", "0", "-1", "1e400", "12.345", "2025-02-30", "2025-03-05", "2025-03-05T10:00",
                     "13800138000", "+8613800138000", "a@b.co", "http://x", "javascript:alert(1)",
                     "<script>alert(1)</script>", "\x00", "\u202e", "💥" * 10, "x" * 5000, "wecom", "coupon",
                     "sms", "all", "percent", "gift", "WB20-8F3K2Q9A", "admin", "staff"]),
)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)


def _payloads(keys: list[str]) -> st.SearchStrategy[Any]:
    key = st.one_of(st.sampled_from(keys), st.text(max_size=12))
    row = st.dictionaries(st.sampled_from(["item", "qty", "unit_cost", "x"]), json_values, max_size=4)
    value = st.one_of(json_values, st.lists(row, max_size=3))
    return st.one_of(
        st.dictionaries(key, value, max_size=len(keys) + 2),
        json_values,  # lists, strings, numbers as the whole body
    )


@pytest.fixture
def hostile_settings(db_url: str) -> Any:
    return settings(max_examples=150 if db_url.startswith("sqlite") else 25, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


@pytest.mark.parametrize("form_id", FORMS)
def test_random_payloads_never_500(app: Flask, tokens: dict[str, str], form_id: str, hostile_settings: Any) -> None:
    form, _ = app.extensions["promoflow"].registry.form(form_id)
    keys = [f.key for f in form.fields]
    client = app.test_client()
    headers = {**bearer(tokens["admin"]), "Content-Type": "application/json"}
    url = f"/api/v1/forms/{form_id}/records"
    records = app.extensions["promoflow"].records

    @hostile_settings
    @given(payload=_payloads(keys))
    def check(payload: Any) -> None:
        before = records.list(form_id, per_page=1).total
        response = client.post(url, data=json.dumps(payload), headers=headers)
        assert response.status_code in OK, (payload, response.status_code, response.text[:500])
        assert response.is_json
        after = records.list(form_id, per_page=1).total
        if response.status_code == 201:
            assert after == before + 1
            rid = response.get_json()["id"]
            patched = client.patch(f"/api/v1/records/{rid}", data=json.dumps(payload), headers=headers)
            assert patched.status_code in OK, (payload, patched.text[:500])
        else:
            assert after == before
            if response.status_code == 422:
                errors = response.get_json()["errors"]
                assert errors and all(set(e) == {"field", "code", "message"} for e in errors)

    check()


@pytest.mark.parametrize("form_id", FORMS)
def test_hostile_bytes_and_queries_never_500(app: Flask, tokens: dict[str, str], form_id: str,
                                             hostile_settings: Any) -> None:
    client = app.test_client()
    headers = bearer(tokens["admin"])
    url = f"/api/v1/forms/{form_id}/records"

    @hostile_settings
    @given(body=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass"))),
           query=st.dictionaries(st.sampled_from(["where", "sort", "page", "per_page", "mine", "budget", "score",
                                                  "channel", "x"]),
                                 st.one_of(st.text(max_size=40), json_values.map(json.dumps)), max_size=3))
    def check(body: bytes, query: dict[str, str]) -> None:
        posted = client.post(url, data=body, headers={**headers, "Content-Type": "application/json"})
        assert posted.status_code in OK, (body, posted.text[:300])
        listed = client.get(url, query_string=query, headers=headers)
        assert listed.status_code in OK, (query, listed.text[:300])
        assert listed.is_json and posted.is_json

    check()


def test_huge_and_deep_payloads(app: Flask, tokens: dict[str, str]) -> None:
    client = app.test_client()
    headers = {**bearer(tokens["admin"]), "Content-Type": "application/json"}
    url = "/api/v1/forms/activity_request/records"
    cases = [
        json.dumps({"name": "x" * 900_000}),
        json.dumps({"materials": [{"item": "a", "qty": 1, "unit_cost": "1"}] * 5000}),
        json.dumps({"description": ["x"] * 50_000}),
        '{"a":' * 5000 + "1" + "}" * 5000,
        '{"budget": ' + "9" * 5000 + "}",  # past Python's int digit limit
        json.dumps({"\ud800": "\udfff"}),
        json.dumps({"name": "x" * (2 * 1024 * 1024)}),
    ]
    for body in cases:
        response = client.post(url, data=body.encode("utf-8", "surrogatepass"), headers=headers)
        assert response.status_code in {400, 413, 422}, (body[:80], response.status_code, response.text[:300])
        assert response.is_json
    assert app.extensions["promoflow"].records.list("activity_request").total == 0
