"""Property: hostile payloads never make validation raise, and whatever it accepts
the service stores and reads back unchanged (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine.definitions.specs import FieldSpec, FormSpec
from engine.forms import ValidationFailed, validate_submission
from engine.records import RecordService

from .conftest import NOW, activity, redemption

JSON_LEAF = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
    | st.text() | st.sampled_from(["", " ", "<script>alert(1)</script>", "x" * 100_001, "中" * 10_001,
                                   "\x00", "NaN", "1e309", "-0", "２０", "2026-02-30", "9999-12-31T23:59:59"])
)
HOSTILE = st.recursive(JSON_LEAF, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                       max_leaves=12)


def plausible(f: FieldSpec) -> st.SearchStrategy[Any]:
    """Values that usually fit ``f``, so accepted payloads reach the database."""
    t = f.type
    if t in ("text", "textarea"):
        if f.pattern:
            return st.from_regex(f.pattern, fullmatch=True)
        return st.text(min_size=1, max_size=f.max_length or 80)
    if t == "integer":
        lo = f.min if isinstance(f.min, int) else -1000
        hi = f.max if isinstance(f.max, int) else 10**6
        return st.integers(lo, hi)
    if t in ("number", "money"):
        lo = f.min if isinstance(f.min, (int, float)) else -1000
        dec = st.decimals(min_value=Decimal(str(lo)), max_value=Decimal("99999999.99"), places=2,
                          allow_nan=False, allow_infinity=False)
        return dec.map(str) | st.integers(int(lo) + 1, 10**9)
    if t == "date":
        near = st.dates(min_value=NOW.date(), max_value=NOW.date().replace(year=2027))
        return (near | st.dates()).map(lambda d: d.isoformat())
    if t == "datetime":
        return st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(9999, 12, 30)).map(lambda d: d.isoformat())
    if t == "select":
        return st.sampled_from(f.option_values)
    if t == "multiselect":
        return st.lists(st.sampled_from(f.option_values), max_size=len(f.options) + 1)
    if t == "checkbox":
        return st.booleans()
    if t == "customer":
        return st.just(7)
    if t == "user":
        return st.sampled_from(["alice", "bob"])
    if t == "phone":
        return st.from_regex(r"1[3-9]\d{9}", fullmatch=True)
    if t == "file":
        return st.fixed_dictionaries({"id": st.just("f1"), "name": st.sampled_from(["a.pdf", "b.exe"]),
                                      "size": st.integers(0, 20 * 1024 * 1024), "content_type": st.just("application/pdf")})
    if t == "table":
        row = st.fixed_dictionaries({}, optional={c.key: field_value(c) for c in f.fields})
        return st.lists(row, max_size=4)
    return HOSTILE


def field_value(f: FieldSpec) -> st.SearchStrategy[Any]:
    return st.one_of(plausible(f), plausible(f), HOSTILE)


def payloads(form: FormSpec) -> st.SearchStrategy[Any]:
    fields = st.fixed_dictionaries({}, optional={f.key: field_value(f) for f in form.fields})
    extra = st.dictionaries(st.text(max_size=20), HOSTILE, max_size=2)
    shaped = st.tuples(fields, extra, st.integers(0, 9)).map(lambda t: {**t[0], **t[1]} if t[2] == 0 else t[0])
    return st.one_of(shaped, shaped, shaped, HOSTILE)


FORM_IDS = ["activity_request", "store_redemption", "nps_survey"]
VALID = {"activity_request": activity(), "store_redemption": redemption(), "nps_survey": {"score": 9}}


@pytest.mark.parametrize("form_id", FORM_IDS)
def test_validation_never_raises(shipped: Any, form_id: str) -> None:
    form = shipped.forms[form_id]

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(payloads(form), st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)))
    def check(payload: Any, when: datetime) -> None:
        clean, errors = validate_submission(form, payload, now=when.replace(tzinfo=UTC), user="alice")
        if not errors:
            again, errors2 = validate_submission(form, clean, now=when.replace(tzinfo=UTC), user="alice")
            assert errors2 == [] and again == clean  # stored data re-validates to itself

    check()


@pytest.mark.parametrize("form_id", FORM_IDS)
def test_accepted_payloads_are_stored_and_read_back(service: RecordService, shipped: Any, form_id: str) -> None:
    form = shipped.forms[form_id]
    accepted = 0

    @settings(max_examples=60, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(payloads(form))
    @example(VALID[form_id])
    def check(payload: Any) -> None:
        nonlocal accepted
        clean, errors = validate_submission(form, payload, now=NOW, user="alice", customer_exists=lambda i: i == 7)
        try:
            view = service.create(form_id, payload, actor="alice", now=NOW)
        except ValidationFailed as exc:
            codes = {e.code for e in exc.errors}
            # The service sees the same errors, plus uniqueness against earlier examples.
            assert errors or codes == {"unique"}, exc.errors
            return
        assert errors == [], errors
        accepted += 1
        assert view.data == clean
        stored = service.get(view.id)
        assert stored is not None and stored.data == clean

    check()
    assert accepted > 0
