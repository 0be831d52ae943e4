"""The public survey page: signed, expiring links; the shipped NPS form through
the form runtime; CSRF; one answer per customer and campaign; zh/en."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from engine.feedback.links import sign_survey
from engine.storage.database import transaction
from engine.storage.models import Event, Feedback

from .support import NOW, SECRET_KEY, add_customer, csrf_from


def _link(customer_id: int = 1, campaign: str = "spring_sale", days: int = 7, **kw) -> str:
    return "/survey/" + sign_survey(SECRET_KEY, customer_id=customer_id, campaign=campaign,
                                    expires=NOW + timedelta(days=days), **kw)


def _setup(services) -> None:
    with transaction(services.session_factory) as s:
        add_customer(s, 1, now=NOW)


def test_answer_is_stored_tagged_and_emits_feedback_received(app, services) -> None:
    _setup(services)
    client = app.test_client()
    url = _link()
    page = client.get(url)
    assert page.status_code == 200 and "满意度调查" in page.text and 'name="score"' in page.text
    assert 'name="viewport"' in page.text  # phone-friendly layout from base.html
    response = client.post(url, data={"csrf_token": csrf_from(page.text), "score": "4",
                                      "reason": ["logistics", "service"], "comment": "快递三天才到"})
    assert response.status_code == 200 and "感谢" in response.text
    with services.session_factory() as s:
        fb = s.execute(select(Feedback)).scalar_one()
        assert (fb.customer_id, fb.campaign, fb.score, fb.source) == (1, "spring_sale", 4, "survey")
        assert fb.tags == ["物流慢", "客服态度"]  # picked reasons, then keyword rules (no repeats)
        assert fb.data["answers"]["reason"] == ["logistics", "service"]
        event = s.execute(select(Event).where(Event.name == "feedback.received")).scalar_one()
        assert (event.subject_type, event.subject_id) == ("customer", "1")
        assert event.payload["score"] == 4 and event.payload["feedback_id"] == fb.id

    # one answer per customer and campaign: the page says so, a second POST is refused
    again = client.get(url)
    assert again.status_code == 200 and "已经回答过" in again.text
    second = client.post(url, data={"csrf_token": csrf_from(page.text), "score": "10"})
    assert second.status_code == 409
    with services.session_factory() as s:
        assert s.execute(select(func.count()).select_from(Feedback)).scalar() == 1
    # another campaign is another answer
    other = client.get(_link(campaign="autumn"))
    assert other.status_code == 200 and 'name="score"' in other.text


def test_invalid_answers_are_shown_with_field_errors(app, services) -> None:
    _setup(services)
    client = app.test_client()
    url = _link()
    page = client.get(url)
    response = client.post(url, data={"csrf_token": csrf_from(page.text), "score": "11"})
    assert response.status_code == 422 and "has-error" in response.text
    with services.session_factory() as s:
        assert s.execute(select(func.count()).select_from(Feedback)).scalar() == 0


def test_csrf_is_required(app, services) -> None:
    _setup(services)
    response = app.test_client().post(_link(), data={"score": "9"})
    assert response.status_code == 400
    with services.session_factory() as s:
        assert s.execute(select(func.count()).select_from(Feedback)).scalar() == 0


def test_bad_expired_and_foreign_links(app, services, clock) -> None:
    _setup(services)
    client = app.test_client()
    url = _link()
    tampered = url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB")
    assert client.get(tampered).status_code == 403
    assert client.get("/survey/not-a-token").status_code == 403
    assert client.post("/survey/x.y", data={"score": "9"}).status_code in (400, 403)
    forged = "/survey/" + sign_survey("another-secret", customer_id=1, campaign="c", expires=NOW + timedelta(days=1))
    assert client.get(forged).status_code == 403
    clock.now = NOW + timedelta(days=8)
    expired = client.get(url)
    assert expired.status_code == 410 and "过期" in expired.text
    clock.now = NOW
    assert client.get(_link(customer_id=999)).status_code == 410          # no such customer
    assert client.get(_link(form_id="no_such_form")).status_code == 404


def test_english_page(app, services) -> None:
    _setup(services)
    page = app.test_client().get(_link() + "?lang=en")
    assert page.status_code == 200 and "Satisfaction survey" in page.text


def test_low_score_starts_the_shipped_detractor_follow_up(app, services) -> None:
    """``feedback.received`` is the event the automation consumes: the shipped
    rule ``nps_detractor_followup`` (score ≤ 6) tags the customer."""
    from engine.automation import tick
    from engine.automation.configure import build_policy
    from engine.storage.models import CustomerTag, Journey

    _setup(services)
    client = app.test_client()
    url = _link()
    page = client.get(url)
    assert client.post(url, data={"csrf_token": csrf_from(page.text), "score": "2"}).status_code == 200
    definitions = services.registry.current()
    policy = build_policy(definitions, version_of=lambda rule_id: services.registry.version_of("rule", rule_id))
    tick(services.session_factory, now=NOW, definitions=definitions, policy=policy, deliver=False)
    with services.session_factory() as s:
        journeys = [(j.rule_id, j.subject_id) for j in s.execute(select(Journey)).scalars()]
        assert ("nps_detractor_followup", 1) in journeys
        assert "nps_detractor" in {t for (t,) in s.execute(select(CustomerTag.tag).where(CustomerTag.customer_id == 1))}


def test_staff_forms_are_not_survey_forms(app, services) -> None:
    _setup(services)
    assert app.test_client().get(_link(form_id="activity_request")).status_code == 404


def test_survey_link_helper_makes_a_working_link(app, services) -> None:
    from web.feedback import survey_link

    _setup(services)
    with app.test_request_context("/"):
        url = survey_link(1, "spring_sale", external=False)
    assert url.startswith("/survey/")
    assert app.test_client().get(url).status_code == 200


def test_unsigned_automation_links_are_refused_clearly(app) -> None:
    response = app.test_client().get("/s/post_campaign_nps/1")
    assert response.status_code == 403 and "链接无效" in response.text


def test_engine_survey_url_is_served_by_the_page(app, services) -> None:
    from engine.feedback.links import survey_url

    _setup(services)
    url = survey_url("https://promo.example.com/", SECRET_KEY, customer_id=1, campaign="c", now=NOW)
    assert url.startswith("https://promo.example.com/survey/")
    assert app.test_client().get(url.removeprefix("https://promo.example.com")).status_code == 200
