"""Pure parts: keyword tag rules and opt-out words, survey link signing, NPS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.definitions.specs import FeedbackTagRule, FeedbackTagsSpec
from engine.feedback.links import ExpiredSurveyLink, InvalidSurveyLink, sign_survey, verify_survey
from engine.feedback.nps import Nps
from engine.feedback.tagging import TagRules

NOW = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)

RULES = TagRules.from_specs([FeedbackTagsSpec(
    id="t", title="t",
    rules=(FeedbackTagRule("物流慢", ("快递", "慢", "delivery")), FeedbackTagRule("客服态度", ("客服",)),
           FeedbackTagRule("差评跟进", ("退款",), score_at_most=6)),
    opt_out_keywords=("TD", "退订", "unsubscribe"), opt_out_channels=("sms", "wecom"))])


@pytest.mark.parametrize("text, score, tags", [
    ("快递太慢，客服也不理人", None, ["物流慢", "客服态度"]),
    ("Late DELIVERY again", None, ["物流慢"]),
    ("ｄｅｌｉｖｅｒｙ", None, ["物流慢"]),               # full-width letters
    ("要退款", 3, ["差评跟进"]),
    ("要退款", 9, []),                                  # the rule is for low scores only
    ("", None, []),
    (None, None, []),
])
def test_tags(text, score, tags) -> None:
    assert RULES.tags_for(text, score) == tags


@pytest.mark.parametrize("text, opt_out", [
    ("TD", True), ("td", True), (" T D ", True), ("ＴＤ", True), ("退订", True), ("退订。", True),
    ("请帮我退订", True), ("Unsubscribe!", True),
    ("TDD", False), ("STD", False), ("我不想退订", True), ("谢谢", False), ("", False), (None, False),
])
def test_opt_out_words(text, opt_out) -> None:
    # a Chinese opt-out word inside a reply counts ("我不想退订" is a known false positive:
    # the customer can opt in again; missing a real opt-out is the worse error)
    assert RULES.is_opt_out(text) is opt_out


def test_defaults_without_definitions() -> None:
    rules = TagRules.from_specs([])
    assert rules.is_opt_out("退订") and rules.opt_out_channels == ("sms", "email", "wecom")
    assert rules.tags_for("anything") == []
    assert RULES.opt_out_channels == ("sms", "wecom")


def test_survey_link_round_trip_and_refusals() -> None:
    token = sign_survey("k", customer_id=5, campaign="春季", expires=NOW + timedelta(days=1), message_id=9,
                        form_id="nps_survey")
    link = verify_survey(token, "k", NOW)
    assert (link.customer_id, link.campaign, link.message_id, link.form_id) == (5, "春季", 9, "nps_survey")
    with pytest.raises(ExpiredSurveyLink):
        verify_survey(token, "k", NOW + timedelta(days=1))
    with pytest.raises(InvalidSurveyLink):
        verify_survey(token, "other", NOW)
    payload, sig = token.split(".")
    with pytest.raises(InvalidSurveyLink):
        verify_survey(payload[:-2] + "xx." + sig, "k", NOW)
    for junk in ("", ".", "a.b.c", "!!.!!"):
        with pytest.raises(InvalidSurveyLink):
            verify_survey(junk, "k", NOW)


def test_nps() -> None:
    assert Nps(5, 3, 2).score == 30.0 and Nps(5, 3, 2).n == 10 and Nps(5, 3, 2).small_sample
    assert Nps(0, 0, 0).score is None
    assert Nps(0, 0, 40).score == -100.0 and not Nps(0, 0, 40).small_sample
