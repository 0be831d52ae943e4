"""``edit.until``: a record stops being editable once its approval flow has
started (or finished), and is editable again while it is back with its
submitter (returned, withdrawn)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from engine.records import RecordLocked, RecordService, editable
from engine.registry import DefinitionRegistry
from engine.storage import records_repo
from engine.storage.database import transaction
from engine.workflows import WorkflowService

from .conftest import NOW, activity

STATUSES = ("submitted", "in_review", "returned", "withdrawn", "approved", "rejected")


@pytest.mark.parametrize(("until", "open_in"), [
    ("workflow_started", {"submitted", "returned", "withdrawn"}),
    ("workflow_finished", {"submitted", "in_review", "returned", "withdrawn"}),
    ("always", set(STATUSES)),
])
def test_editable_by_status(registry: DefinitionRegistry, until: str, open_in: set[str]) -> None:
    form, _ = registry.form("activity_request")
    form = dataclasses.replace(form, edit_until=until)
    assert {s for s in STATUSES if editable(form, s)} == open_in


def only_task(workflows: WorkflowService, user: str) -> int:
    [task] = workflows.tasks_for(user)
    return task.id


def test_update_refused_in_review_allowed_when_returned(records: RecordService, workflows: WorkflowService) -> None:
    rec = records.create("activity_request", activity(), actor="staff", now=NOW)
    assert rec.status == "in_review"
    with pytest.raises(RecordLocked) as caught:
        records.update(rec.id, {"name": "改名"}, actor="staff", now=NOW)
    assert (caught.value.status, caught.value.until) == ("in_review", "workflow_started")
    assert "approval flow has started" in str(caught.value)
    assert records.get(rec.id).data["name"] == "春季促销" and records.get(rec.id).version == 1  # nothing written
    # returned to the submitter: editable again (and resubmit goes through the same update)
    workflows.act(only_task(workflows, "mm"), actor="mm", action="return", comment="补充材料", now=NOW)
    updated = records.update(rec.id, {"name": "改名"}, actor="staff", now=NOW + timedelta(minutes=1))
    assert (updated.data["name"], updated.version, updated.status) == ("改名", 2, "returned")
    workflows.resubmit(rec.id, {"name": "再改"}, actor="staff", now=NOW + timedelta(minutes=2))
    assert records.get(rec.id).status == "in_review"
    with pytest.raises(RecordLocked):
        records.update(rec.id, {"name": "又改"}, actor="staff", now=NOW + timedelta(minutes=3))


def test_the_write_is_conditional_on_the_status_it_checked(published: sessionmaker[Session],
                                                           records: RecordService) -> None:
    """A flow that moves the record on between the check and the write wins:
    the write matches no row (no version bump for a status change alone)."""
    rec = records.create("activity_request", activity(), actor="staff", now=NOW)
    with transaction(published) as session:
        assert not records_repo.update_record_data(session, rec.id, expected_version=1, data={"name": "x"},
                                                   now=NOW, expected_status="returned")
        assert records_repo.update_record_data(session, rec.id, expected_version=1, data={**rec.data, "name": "y"},
                                               now=NOW, expected_status="in_review")
    assert records.get(rec.id).data["name"] == "y"
