"""Publishing definitions: versions by content hash, all or nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from engine.storage.database import transaction
from engine.storage.definitions_repo import (
    PublishedChange,
    canonical_hash,
    definition_versions,
    get_definition,
    list_definitions,
    publish_definitions,
)
from engine.storage.models import Definition

T0 = datetime(2025, 1, 1, 9, 0, tzinfo=UTC)
FORM: dict[str, Any] = {"kind": "form", "id": "activity_request", "fields": [{"key": "name"}]}
RULE: dict[str, Any] = {"kind": "rule", "id": "winback_90d", "once_per": "180d"}


def _publish(
    factory: sessionmaker[Session],
    docs: list[tuple[str, str, dict[str, Any], str]],
    now: datetime = T0,
) -> list[PublishedChange]:
    with transaction(factory) as session:
        return publish_definitions(session, docs, now=now, by="ops")


def test_canonical_hash_ignores_key_order_but_not_values() -> None:
    assert canonical_hash({"a": 1, "b": [1, 2]}) == canonical_hash({"b": [1, 2], "a": 1})
    assert canonical_hash({"a": 1}) != canonical_hash({"a": 2})
    assert canonical_hash({"t": "促销"}) == canonical_hash({"t": "促销"})
    assert len(canonical_hash({})) == 64


def test_new_unchanged_changed(session_factory: sessionmaker[Session]) -> None:
    assert _publish(session_factory, [("form", "activity_request", FORM, "forms/a.yaml")]) == [
        PublishedChange("form", "activity_request", 1, "new")
    ]
    reordered = dict(reversed(list(FORM.items())))
    assert _publish(session_factory, [("form", "activity_request", reordered, "forms/a.yaml")]) == [
        PublishedChange("form", "activity_request", 1, "unchanged")
    ]
    edited = {**FORM, "title": "促销活动申请"}
    later = T0 + timedelta(hours=1)
    assert _publish(
        session_factory, [("form", "activity_request", edited, "forms/a.yaml")], later
    ) == [PublishedChange("form", "activity_request", 2, "changed")]
    with session_factory() as session:
        latest = get_definition(session, "form", "activity_request")
        assert latest is not None
        assert (latest.version, latest.body, latest.published_at) == (2, edited, later)
        assert latest.published_by == "ops" and latest.is_latest
        first = get_definition(session, "form", "activity_request", version=1)
        assert first is not None and first.body == FORM and not first.is_latest
        assert first.published_at == T0 and first.published_at.tzinfo is not None
        assert [d.version for d in definition_versions(session, "form", "activity_request")] == [
            1,
            2,
        ]
        assert get_definition(session, None, "activity_request") == latest
        assert get_definition(session, "rule", "activity_request") is None
        assert get_definition(session, "form", "activity_request", version=3) is None


def test_mixed_batch(session_factory: sessionmaker[Session]) -> None:
    _publish(
        session_factory,
        [("form", "activity_request", FORM, "a.yaml"), ("rule", "winback_90d", RULE, "r.yaml")],
    )
    changes = _publish(
        session_factory,
        [
            ("form", "activity_request", FORM, "a.yaml"),
            ("rule", "winback_90d", {**RULE, "once_per": "90d"}, "r.yaml"),
            ("rule", "renewal_reminder", {"id": "renewal_reminder"}, "r.yaml"),
        ],
    )
    assert changes == [
        PublishedChange("form", "activity_request", 1, "unchanged"),
        PublishedChange("rule", "winback_90d", 2, "changed"),
        PublishedChange("rule", "renewal_reminder", 1, "new"),
    ]
    with session_factory() as session:
        latest = [(d.kind, d.def_id, d.version) for d in list_definitions(session)]
        assert latest == [
            ("form", "activity_request", 1),
            ("rule", "renewal_reminder", 1),
            ("rule", "winback_90d", 2),
        ]
        assert [d.def_id for d in list_definitions(session, "form")] == ["activity_request"]
        assert session.scalar(select(func.count()).select_from(Definition)) == 4


def test_same_id_in_different_kinds_is_two_definitions(
    session_factory: sessionmaker[Session],
) -> None:
    changes = _publish(
        session_factory, [("form", "x", {"a": 1}, "f"), ("workflow", "x", {"a": 1}, "w")]
    )
    assert [c.status for c in changes] == ["new", "new"]


def test_failing_batch_leaves_nothing(session_factory: sessionmaker[Session]) -> None:
    _publish(session_factory, [("form", "activity_request", FORM, "a.yaml")])
    with pytest.raises(RuntimeError, match="boom"), transaction(session_factory) as session:
        publish_definitions(
            session,
            [
                ("form", "activity_request", {**FORM, "title": "v2"}, "a.yaml"),
                ("rule", "winback_90d", RULE, "r.yaml"),
            ],
            now=T0,
            by="ops",
        )
        assert session.scalar(select(func.count()).select_from(Definition)) == 3
        raise RuntimeError("boom")  # e.g. a later validation step failed
    with session_factory() as session:
        rows = session.scalars(select(Definition)).all()
        assert [(r.kind, r.def_id, r.version, r.is_latest) for r in rows] == [
            ("form", "activity_request", 1, True)
        ]


def test_duplicate_in_one_batch_is_refused(session: Session) -> None:
    with pytest.raises(ValueError, match="more than once"):
        publish_definitions(
            session, [("form", "a", {}, "x"), ("form", "a", {"b": 1}, "y")], now=T0, by=None
        )


def test_database_allows_one_latest_row_per_definition(
    session_factory: sessionmaker[Session],
) -> None:
    _publish(session_factory, [("form", "a", {"v": 1}, "f")])
    with pytest.raises(IntegrityError), transaction(session_factory) as session:
        session.add(
            Definition(
                kind="form",
                def_id="a",
                version=2,
                is_latest=True,
                content_hash="0" * 64,
                body={},
                source_file=None,
                published_at=T0.replace(tzinfo=None),
                published_by=None,
            )
        )
