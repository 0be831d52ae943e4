"""The staff feedback list: marketing roles only, filters, NPS of a campaign."""

from __future__ import annotations

from datetime import timedelta

from engine.feedback.service import Incoming, store
from engine.feedback.tagging import TagRules
from engine.storage.database import transaction

from .support import NOW, add_customer


def _answers(services) -> None:
    rules = TagRules.from_specs(services.registry.current().feedback_tags.values())
    with transaction(services.session_factory) as s:
        add_customer(s, 1, now=NOW)
        for i, (campaign, score, comment) in enumerate([
            ("spring", 10, "很好"), ("spring", 9, None), ("spring", 7, None), ("spring", 3, "快递太慢"),
            ("autumn", 0, "<script>alert(1)</script>客服太差"),
        ]):
            store(s, Incoming(source="survey", dedupe_key=f"k{i}", received_at=NOW + timedelta(minutes=i),
                              customer_id=1, campaign=campaign, score=score, comment=comment), rules)


def test_list_filters_and_nps(app, services, login) -> None:
    _answers(services)
    client = login("marketer")
    page = client.get("/feedback?campaign=spring")
    assert page.status_code == 200
    assert page.text.count("data-feedback=") == 4
    assert 'data-nps="25.0"' in page.text          # (2 promoters − 1 detractor) / 4
    slow = client.get("/feedback?tag=物流慢")
    assert slow.text.count("data-feedback=") == 1 and "快递太慢" in slow.text
    low = client.get("/feedback?max_score=6")
    assert low.text.count("data-feedback=") == 2
    assert "&lt;script&gt;" in low.text and "<script>alert" not in low.text
    assert client.get("/feedback?min_score=abc").status_code == 200   # a bad score filter is ignored
    bad_page = client.get("/feedback?page=x")   # a bad page number is said (issue 16: 4xx, never a 500)
    assert bad_page.status_code == 400 and "page" in bad_page.text
    assert client.get("/feedback?lang=en").status_code == 200


def test_list_needs_a_marketing_role(app, login) -> None:
    assert login("staff").get("/feedback").status_code == 403
    assert app.test_client().get("/feedback").status_code == 302   # to the sign-in page


def test_nav_link_for_marketing_only(app, login) -> None:
    assert 'class="nav-feedback"' in login("marketer").get("/feedback").text
    assert 'class="nav-feedback"' not in login("staff").get("/").text
