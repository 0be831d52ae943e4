"""The survey-tool webhook: HMAC over timestamp and body, a timestamp window,
answer ids stored once (replay → 200 duplicate, same id with another body →
409), 422 with field errors for bad bodies."""

from __future__ import annotations

from sqlalchemy import func, select

from engine.storage.database import transaction
from engine.storage.models import Event, Feedback

from .support import NOW, add_customer, dumps, survey_hook_headers

TS = int(NOW.timestamp())
URL = "/hooks/feedback/test_survey"


def _count(services, model=Feedback) -> int:
    with services.session_factory() as s:
        return int(s.execute(select(func.count()).select_from(model)).scalar() or 0)


def test_signed_answer_stored_once(app, services) -> None:
    with transaction(services.session_factory) as s:
        add_customer(s, 7, now=NOW, external_id="C007")
    client = app.test_client()
    body = dumps({"id": "resp-1", "external_id": "C007", "campaign": "spring_sale", "score": 3,
                  "comment": "产品质量不行，包装破损"})
    first = client.post(URL, data=body, headers=survey_hook_headers(body, TS))
    assert first.status_code == 200, first.text
    assert first.json["status"] == "stored" and first.json["results"][0]["tags"] == ["产品问题"]
    with services.session_factory() as s:
        fb = s.execute(select(Feedback)).scalar_one()
        assert (fb.customer_id, fb.campaign, fb.score, fb.source) == (7, "spring_sale", 3, "test_survey")
        assert s.execute(select(func.count()).select_from(Event).where(Event.name == "feedback.received")).scalar() == 1
    # the same delivery again (a retry, or a replay inside the window): nothing new
    replay = client.post(URL, data=body, headers=survey_hook_headers(body, TS + 5))
    assert replay.status_code == 200 and replay.json["status"] == "duplicate"
    # the same answer id with another body: a conflict, nothing overwritten
    changed = dumps({"id": "resp-1", "external_id": "C007", "campaign": "spring_sale", "score": 10})
    conflict = client.post(URL, data=changed, headers=survey_hook_headers(changed, TS))
    assert conflict.status_code == 409
    assert _count(services) == 1
    with services.session_factory() as s:
        assert s.execute(select(Feedback.score)).scalar_one() == 3


def test_signature_and_window(app, services) -> None:
    client = app.test_client()
    body = dumps({"id": "r2", "customer_id": 1, "score": 9})
    assert client.post(URL, data=body).status_code == 401                               # unsigned
    assert client.post(URL, data=body, headers=survey_hook_headers(body, TS, "wrong")).status_code == 401
    headers = survey_hook_headers(body, TS)
    assert client.post(URL, data=body + b" ", headers=headers).status_code == 401        # body changed
    old = TS - 301
    assert client.post(URL, data=body, headers=survey_hook_headers(body, old)).status_code == 401
    assert client.post("/hooks/feedback/nope", data=body, headers=headers).status_code == 404
    assert client.post("/hooks/feedback/test_wecom", data=body, headers=headers).status_code == 404
    assert _count(services) == 0


def test_bad_bodies_get_field_errors(app, services) -> None:
    client = app.test_client()
    for raw, field in [
        (b"not json", "$"),
        (dumps({"customer_id": 1, "score": 9}), "id"),
        (dumps({"id": "r3", "score": 11, "customer_id": 1}), "score"),
        (dumps({"id": "r3", "score": 5}), "customer_id"),
        (dumps({"items": [{"id": "a", "customer_id": 1, "score": 1}, {"id": "b", "customer_id": "x", "score": 1}]}),
         "items[1].customer_id"),
        (dumps({"id": "r3", "customer_id": 1, "score": 5, "answered_at": "yesterday"}), "answered_at"),
    ]:
        response = client.post(URL, data=raw, headers=survey_hook_headers(raw, TS))
        assert response.status_code == 422, raw
        assert field in [e["field"] for e in response.json["error"]["fields"]], response.json
    assert _count(services) == 0


def test_unknown_customer_is_kept_not_lost(app, services) -> None:
    body = dumps({"id": "r9", "phone": "+8613900000000", "score": 8, "comment": "还行"})
    response = app.test_client().post(URL, data=body, headers=survey_hook_headers(body, TS))
    assert response.status_code == 200
    with services.session_factory() as s:
        fb = s.execute(select(Feedback)).scalar_one()
        assert fb.customer_id is None and fb.data["phone"] == "+8613900000000" and fb.score == 8


def test_overlong_fields_are_field_errors_not_server_errors(app, services) -> None:
    body = dumps({"id": "r10", "customer_id": 1, "score": 5, "campaign": "c" * 129, "phone": "1" * 40})
    response = app.test_client().post(URL, data=body, headers=survey_hook_headers(body, TS))
    assert response.status_code == 422
    assert {e["field"] for e in response.json["error"]["fields"]} == {"campaign", "phone"}


def test_hostile_signed_bodies_never_500(app, services) -> None:
    client = app.test_client()
    bodies = [b"", b"[]", b"1", b'"x"', b"null", dumps({"items": "x"}), dumps({"items": []}), dumps({"items": [1]}),
              dumps({"id": True, "customer_id": True, "score": True}), dumps({"id": "x" * 500, "customer_id": 1}),
              b"[" * 5000 + b"]" * 5000, "\udcff".encode("utf-8", "surrogatepass"),
              dumps({"id": "z", "customer_id": 10 ** 30, "score": 1}), dumps({"id": "z", "email": 5, "score": 1})]
    for body in bodies:
        response = client.post(URL, data=body, headers=survey_hook_headers(body, TS))
        assert response.status_code in (200, 422), (body[:40], response.status_code, response.text[:200])
    assert client.post(URL, data=b"{}", headers={"X-Promoflow-Timestamp": "soon",
                                                 "X-Promoflow-Signature": "sha256=00"}).status_code == 401
