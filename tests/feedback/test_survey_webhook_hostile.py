"""Absurd values in a correctly signed survey-webhook body get a 4xx with
field errors, never a 500 (issue 16), and nothing is stored."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from engine.storage.models import Feedback

from .support import NOW, survey_hook_headers

TS = int(NOW.timestamp())
URL = "/hooks/feedback/test_survey"

BODIES = [
    (b'{"id": "h1", "customer_id": 1, "score": 1e400}', "$"),
    (b'{"id": "h2", "customer_id": 1e400, "score": 5}', "$"),
    (b'{"id": "h3", "customer_id": ' + b"9" * 40 + b', "score": 5}', "customer_id"),
    (b'{"id": "h4", "customer_id": 1, "message_id": 18446744073709551616, "score": 5}', "message_id"),
    (b'{"id": "h5", "customer_id": 1, "score": 5, "answered_at": "0001-01-01T00:00:00+14:00"}', "answered_at"),
    (b'{"id": "h6", "customer_id": 1, "score": 5, "answered_at": "9999-12-31T23:59:59-14:00"}', "answered_at"),
    (b'{"id": "h7", "customer_id": 1, "score": -9223372036854775809}', "score"),
    (b'{"id": "h8", "customer_id": 1, "score": 5, "answers": {"q": 1e400}}', "$"),
    (b'{"id": "h9", "customer_id": 1, "score": 5, "answers": {"q": ' + b"[" * 5000 + b"]" * 5000 + b"}}", "$"),
    (b'{"id": "h10", "customer_id": 1, "score": ' + b"9" * 5000 + b"}", "$"),
    (b'{"id": NaN, "customer_id": 1, "score": 5}', "$"),
]


@pytest.mark.parametrize(("body", "field"), BODIES, ids=[b[1] + str(i) for i, b in enumerate(BODIES)])
def test_absurd_values_in_a_signed_body_are_field_errors(app, services, body: bytes, field: str) -> None:
    response = app.test_client().post(URL, data=body, headers=survey_hook_headers(body, TS))
    assert response.status_code == 422, (response.status_code, response.text[:300])
    assert field in [e["field"] for e in response.json["error"]["fields"]], response.json
    with services.session_factory() as s:
        assert s.execute(select(func.count()).select_from(Feedback)).scalar() == 0
