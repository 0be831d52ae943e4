"""DefinitionRegistry: cached until publishing changes something; old form versions on demand."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from engine.definitions.loader import load_texts
from engine.forms.errors import ValidationFailed
from engine.publishing import publish_set
from engine.records import RecordService
from engine.registry import DefinitionRegistry, UnknownForm

from .conftest import NOW

FORM_V2 = """
kind: form
id: nps_survey
title: 满意度调查
fields:
  - {key: score, label: 推荐意愿, type: integer, required: true, min: 0, max: 10}
  - {key: comment, label: 意见, type: textarea, max_length: 10, required: true}
"""


def test_cached_until_publish(registry: DefinitionRegistry, published: sessionmaker[Session]) -> None:
    first = registry.current()
    assert registry.current() is first
    assert set(first.forms) >= {"activity_request", "store_redemption", "nps_survey"}
    assert registry.version_of("form", "nps_survey") == 1
    publish_set(published, load_texts([("survey.yaml", FORM_V2)]).raise_for_errors(), now=NOW + timedelta(days=1))
    second = registry.current()
    assert second is not first
    assert registry.version_of("form", "nps_survey") == 2
    spec, version = registry.form("nps_survey")
    assert version == 2 and [f.key for f in spec.fields] == ["score", "comment"]
    old, old_version = registry.form("nps_survey", 1)
    assert old_version == 1 and "reason" in [f.key for f in old.fields]
    assert registry.form("nps_survey", 1)[0] is old
    with pytest.raises(UnknownForm):
        registry.form("nps_survey", 9)
    with pytest.raises(UnknownForm):
        registry.form("missing")
    with pytest.raises(KeyError):
        registry.version_of("form", "missing")


def test_records_stay_on_their_form_version(service: RecordService, registry: DefinitionRegistry,
                                            published: sessionmaker[Session]) -> None:
    old = service.create("nps_survey", {"score": 6, "reason": ["price"]}, actor=None, now=NOW)
    publish_set(published, load_texts([("survey.yaml", FORM_V2)]).raise_for_errors(), now=NOW + timedelta(days=1))
    # Edited under version 1 rules: `reason` still exists, `comment` is not required.
    edited = service.update(old.id, {"score": 5}, actor="alice", now=NOW)
    assert edited.form_version == 1 and edited.data["reason"] == ["price"]
    with pytest.raises(ValidationFailed) as info:
        service.create("nps_survey", {"score": 6, "reason": ["price"]}, actor=None, now=NOW)
    assert {(e.field, e.code) for e in info.value.errors} == {("reason", "unknown_field"), ("comment", "required")}
    assert service.create("nps_survey", {"score": 9, "comment": "好"}, actor=None, now=NOW).form_version == 2


def test_staleness_window_skips_the_check_until_forced(published: sessionmaker[Session]) -> None:
    registry = DefinitionRegistry(published, max_staleness=3600)
    first = registry.current()
    publish_set(published, load_texts([("survey.yaml", FORM_V2)]).raise_for_errors(), now=NOW + timedelta(days=1))
    assert registry.current() is first            # within the window: no database round trip
    assert registry.refresh(force=True) is not first
    assert registry.version_of("form", "nps_survey") == 2


def test_concurrent_first_lookups_wait_for_the_first_load(published: sessionmaker[Session],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A server's first requests arrive together: none may see the empty set
    the registry starts with (that answered 404 for a published form)."""
    import threading
    import time

    import engine.registry as registry_module

    real = registry_module.load_texts

    def slow(texts):  # the first load takes a while, as on a cold start
        time.sleep(0.3)
        return real(texts)

    monkeypatch.setattr(registry_module, "load_texts", slow)
    registry = DefinitionRegistry(published, max_staleness=60)
    outcomes: list[object] = []

    def lookup() -> None:
        try:
            outcomes.append(registry.form("activity_request")[1])
        except Exception as exc:  # noqa: BLE001 - the failure is the assertion
            outcomes.append(exc)

    threads = [threading.Thread(target=lookup) for _ in range(4)]
    for t in threads:
        t.start()
        time.sleep(0.02)
    for t in threads:
        t.join()
    assert outcomes == [1, 1, 1, 1]
    assert registry.workflow_for_form("activity_request")[0].id == "activity_approval"
    assert registry.workflow_for_form("nps_survey") is None
