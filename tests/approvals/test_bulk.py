"""批量审批: one request approves many tasks; each keeps the guarantees of a
single approval, and a task that cannot be acted on does not undo the others."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine.records import RecordService
from engine.storage.models import AuditEntry, Event
from engine.workflows import WorkflowService

from .conftest import NOW, activity


def test_bulk_approve_moves_each_instance_on(records: RecordService, workflows: WorkflowService,
                                            published: sessionmaker[Session]) -> None:
    small = records.create("activity_request", activity(budget="3000.00"), actor="staff", now=NOW)
    big = records.create("activity_request", activity(budget="60000.00"), actor="staff2", now=NOW)
    ids = [t.id for t in workflows.tasks_for("mm")]
    assert len(ids) == 2
    with published() as s:
        audits_before = s.scalar(select(func.count()).select_from(AuditEntry))
    results = workflows.act_many(ids + ids[:1], actor="mm", comment="同意", now=NOW)  # a duplicate counts once
    assert [(r.task_id, r.ok) for r in results] == [(ids[0], True), (ids[1], True)]
    by_record = {r.record_id: r.status for r in results}
    assert by_record == {small.id: "approved", big.id: "running"}  # the big one goes on to finance
    assert records.get(small.id).status == "approved" and records.get(big.id).status == "in_review"
    assert {t.record_id for t in workflows.tasks_for("f1")} == {big.id}
    history = workflows.instance_for_record(big.id).history
    assert [(h["actor"], h["action"], h["comment"]) for h in history if h["actor"] == "mm"] == [("mm", "approve", "同意")]
    with published() as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry)) > audits_before  # audited like single acts
        assert s.scalar(select(func.count()).select_from(Event).where(Event.name == "workflow.approved")) == 1


def test_bulk_reports_refusals_without_undoing_the_rest(records: RecordService, workflows: WorkflowService) -> None:
    mine = records.create("activity_request", activity(budget="3000.00"), actor="staff", now=NOW)
    other = records.create("activity_request", activity(budget="60000.00"), actor="staff", now=NOW)
    [mm_task] = [t.id for t in workflows.tasks_for("mm") if t.record_id == mine.id]
    [other_task] = [t.id for t in workflows.tasks_for("mm") if t.record_id == other.id]
    workflows.act(other_task, actor="mm", action="approve", now=NOW)  # closed before the bulk request
    [finance_task] = [t.id for t in workflows.tasks_for("f1")]
    results = workflows.act_many([other_task, 999_999, finance_task, mm_task], actor="mm", now=NOW)
    assert [(r.ok, r.code) for r in results] == [
        (False, "task_closed"), (False, "task_not_found"), (False, "not_assigned"), (True, None)]
    assert records.get(mine.id).status == "approved"
    assert [t.id for t in workflows.tasks_for("f1")] == [finance_task]  # untouched


def test_bulk_limits(workflows: WorkflowService) -> None:
    with pytest.raises(ValueError):
        workflows.act_many([1], actor="mm", action="return", now=NOW)
    with pytest.raises(ValueError):
        workflows.act_many(list(range(1, workflows.BULK_LIMIT + 2)), actor="mm", now=NOW)


def test_a_lost_race_mid_transition_is_rolled_back_to_its_savepoint(
        records: RecordService, workflows: WorkflowService, monkeypatch: pytest.MonkeyPatch) -> None:
    """The instance row is written before the task's compare-and-set; when that
    loses, the task's writes so far are undone and the task is read again."""
    from engine.storage import workflows_repo

    rec = records.create("activity_request", activity(budget="3000.00"), actor="staff", now=NOW)
    [task] = workflows.tasks_for("mm")
    real = workflows_repo.update_task_fast
    calls = []

    def lose_once(*args, **kwargs):
        calls.append(kwargs.get("expected_version"))
        if len(calls) == 1:
            return False  # as if another request had just closed it
        return real(*args, **kwargs)

    monkeypatch.setattr(workflows_repo, "update_task_fast", lose_once)
    [result] = workflows.act_many([task.id], actor="mm", now=NOW)
    assert result.ok and result.status == "approved"
    view = workflows.instance_for_record(rec.id)
    assert view.version == 2  # one transition stored, not the lost one as well
    assert [h["action"] for h in view.history].count("approve") == 1
