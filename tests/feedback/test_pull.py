"""The survey pull connector against a local fake HTTP API, driven by the
scheduler's feedback tick: pages by cursor, the cursor persisted with the
items, a failed page or a crash before the commit neither skips nor
duplicates, invalid items recorded, a bad token reported."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from engine.definitions.loader import load_texts
from engine.feedback.pull import pull_all
from engine.storage import feedback_repo
from engine.storage.database import transaction
from engine.storage.models import Event, Feedback, FeedbackCursor
from web.worker import feedback_tick

from .fake_survey_api import FakeSurveyApi
from .support import NOW, add_customer

ROOT = Path(__file__).resolve().parents[2]
ITEMS: list[dict[str, Any]] = [
    {"id": f"a{i}", "customer_id": 1 + i % 2, "campaign": "spring_sale", "score": i, "comment": f"第{i}条 快递慢"}
    for i in range(5)
]


@pytest.fixture
def api() -> Iterator[FakeSurveyApi]:
    fake = FakeSurveyApi([dict(x) for x in ITEMS], page_size=2, token="tok-123").start()
    yield fake
    fake.stop()


class Services:
    """Just what the tick needs: sessions, definitions, a clock."""

    def __init__(self, session_factory, url: str) -> None:
        text = (f"- {{kind: connector, id: pulled, type: survey_pull, channel: feedback, "
                f"settings: {{url: '{url}', read_timeout: 2}}, secrets: {{api_token: {{env: PF_TEST_SURVEY_TOKEN}}}}}}")
        tags = (ROOT / "workflows" / "survey" / "feedback_tags.yaml").read_text(encoding="utf-8")
        self.definitions = load_texts([("sources.yaml", text), ("feedback_tags.yaml", tags)]).raise_for_errors()
        self.session_factory = session_factory
        self.registry = self
        self.clock = lambda: NOW

    def current(self):  # noqa: ANN201 - the registry API
        return self.definitions


def _rows(session_factory) -> list[tuple[str, int | None]]:
    with session_factory() as s:
        return [(k, c) for k, c in s.execute(select(Feedback.dedupe_key, Feedback.customer_id).order_by(Feedback.id))]


def _customers(session_factory) -> None:
    with transaction(session_factory) as s:
        add_customer(s, 1, now=NOW)
        add_customer(s, 2, now=NOW)


def test_tick_pulls_every_page_once(session_factory, api) -> None:
    _customers(session_factory)
    tick = feedback_tick(Services(session_factory, api.url), env={"PF_TEST_SURVEY_TOKEN": "tok-123"})
    report = tick(NOW)
    assert report.stored == 5 and not report.errors
    assert api.requests == [None, "2", "4", "5"]
    assert _rows(session_factory) == [(f"pulled:a{i}", 1 + i % 2) for i in range(5)]
    with session_factory() as s:
        assert s.execute(select(FeedbackCursor.cursor).where(FeedbackCursor.source == "pulled")).scalar() == "5"
        fb = s.execute(select(Feedback).where(Feedback.dedupe_key == "pulled:a0")).scalar_one()
        assert fb.tags == ["物流慢"]
        assert s.execute(select(func.count()).select_from(Event).where(Event.name == "feedback.received")).scalar() == 5
    # the next tick asks from the stored cursor and finds nothing new
    again = tick(NOW)
    assert again.stored == 0 and api.requests[-1] == "5"
    assert len(_rows(session_factory)) == 5


def test_failures_and_restarts_neither_skip_nor_duplicate(session_factory, api, monkeypatch) -> None:
    _customers(session_factory)
    env = {"PF_TEST_SURVEY_TOKEN": "tok-123"}
    services = Services(session_factory, api.url)
    # page 1 arrives, page 2 fails with HTTP 500: page 1 and its cursor are kept
    api.fail_after = 1
    report = feedback_tick(services, env=env)(NOW)
    api.fail_after = None
    assert report.stored == 2 and "pulled" in report.errors
    with session_factory() as s:
        assert feedback_repo.get_cursor(s, "pulled") == "2"
    # a crash between fetching page 2 and committing it: nothing of it is stored, the cursor stays
    real = feedback_repo.set_cursor
    calls = {"n": 0}

    def crash_once(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("killed before commit")
        real(*args, **kwargs)

    monkeypatch.setattr(feedback_repo, "set_cursor", crash_once)
    with pytest.raises(RuntimeError):
        feedback_tick(services, env=env)(NOW)
    assert len(_rows(session_factory)) == 2
    with session_factory() as s:
        assert feedback_repo.get_cursor(s, "pulled") == "2"
    # "restart": a new tick (new connector) continues from the stored cursor
    report = feedback_tick(services, env=env)(NOW)
    assert report.stored == 3 and not report.errors
    assert [k for k, _ in _rows(session_factory)] == [f"pulled:a{i}" for i in range(5)]
    assert api.requests == [None, "2", "2", "2", "4", "5"]


def test_invalid_items_are_recorded_and_do_not_stall(session_factory, api) -> None:
    _customers(session_factory)
    api.items = [{"id": "ok1", "customer_id": 1, "score": 9}, {"id": "bad", "customer_id": 1, "score": 42},
                 {"id": "ok2", "customer_id": 2, "comment": "不错"}]
    report = feedback_tick(Services(session_factory, api.url), env={"PF_TEST_SURVEY_TOKEN": "tok-123"})(NOW)
    assert (report.stored, report.invalid) == (2, 1)
    with session_factory() as s:
        invalid = s.execute(select(Event.payload).where(Event.name == "feedback.invalid")).scalar_one()
        assert invalid["item_id"] == "bad" and invalid["errors"][0]["field"] == "score"


def test_bad_token_and_garbage_are_reported_not_stored(session_factory, api) -> None:
    _customers(session_factory)
    services = Services(session_factory, api.url)
    report = feedback_tick(services, env={"PF_TEST_SURVEY_TOKEN": "wrong"})(NOW)
    assert "pulled" in report.errors and report.stored == 0
    assert pull_all(session_factory, {}, now=NOW).stored == 0   # no sources: nothing to do
    api.fail_next = ["garbage"]
    report = feedback_tick(services, env={"PF_TEST_SURVEY_TOKEN": "tok-123"})(NOW)
    assert "pulled" in report.errors and report.stored == 0     # the garbage page
    with session_factory() as s:
        assert feedback_repo.get_cursor(s, "pulled") is None
    # a missing secret: the connector is left out and reported
    assert feedback_tick(services, env={})(NOW) is None
    with session_factory() as s:
        assert s.execute(select(Event.subject_id).where(Event.name == "connector.misconfigured")).scalar() == "pulled"
