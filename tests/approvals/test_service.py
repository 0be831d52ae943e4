"""The approval service on both databases: the shipped activity flow end to
end, refusals, withdraw/resubmit, versions, the tick, and the audit trail
replaying to the stored state."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine.approvals.machine import (
    ActionError,
    InstanceState,
    StaticDirectory,
    event_from_json,
    step,
)
from engine.definitions.loader import load_texts
from engine.publishing import publish_set
from engine.records import RecordService
from engine.registry import DefinitionRegistry
from engine.storage import workflows_repo
from engine.storage.models import AuditEntry, Event, OutboxMessage, Record, Task
from engine.workflows import (
    NotAssigned,
    StaleTask,
    TaskClosed,
    TaskNotFound,
    WorkflowService,
)

from .conftest import NOW, PEOPLE, ROOT, activity


def events(sf: sessionmaker[Session], prefix: str = "") -> list[tuple[str, dict]]:
    with sf() as s:
        rows = s.execute(select(Event.name, Event.payload).order_by(Event.id)).all()
    return [(n, p) for n, p in rows if n.startswith(prefix)]


def outbox(sf: sessionmaker[Session], template: str | None = None) -> list[tuple[str, str, str]]:
    """(channel, recipient, body) of the queued messages, of one template if given."""
    stmt = select(OutboxMessage.channel, OutboxMessage.recipient, OutboxMessage.body).order_by(OutboxMessage.id)
    if template is not None:
        stmt = stmt.where(OutboxMessage.template_id == template)
    with sf() as s:
        return [tuple(r) for r in s.execute(stmt)]


def only_task(wf: WorkflowService, user: str) -> int:
    tasks = wf.tasks_for(user)
    assert len(tasks) == 1, tasks
    return tasks[0].id


def test_shipped_activity_flow_end_to_end(records: RecordService, workflows: WorkflowService,
                                          published: sessionmaker[Session]) -> None:
    rec = records.create("activity_request", activity(budget="60000.00"), actor="staff", now=NOW)
    view = workflows.instance_for_record(rec.id)
    assert view is not None and view.status == "running" and view.current_steps == ("manager_review",)
    assert view.workflow_version == 1 and view.submitter == "staff"
    assert records.get(rec.id).status == "in_review"  # type: ignore[union-attr]
    [task] = workflows.tasks_for("mm", now=NOW + timedelta(hours=49))
    assert (task.step_title, task.form_id, task.record_id, task.overdue) == ("市场经理审批", "activity_request", rec.id, True)
    assert workflows.task_counts("mm", NOW)["open"] == 1

    view = workflows.act(task.id, actor="mm", action="approve", comment="同意", now=NOW + timedelta(hours=1))
    assert view.current_steps == ("finance_review",)
    assert sorted(t.assignee for t in view.tasks if t.status == "open") == ["f1", "f2"]  # 会签: every finance user
    workflows.act(only_task(workflows, "f1"), actor="f1", action="approve", now=NOW + timedelta(hours=2))
    view = workflows.act(only_task(workflows, "f2"), actor="f2", action="approve", now=NOW + timedelta(hours=3))

    assert view.status == "approved" and view.current_steps == ()
    record = records.get(rec.id)
    assert record is not None and record.data["status"] == "approved" and record.status == "approved"
    assert [h["action"] for h in view.history] == [
        "submit", "approve", "step_approved", "approve", "approve", "step_approved", "approved"]
    assert view.history[1]["comment"] == "同意" and view.history[1]["actor"] == "mm"
    names = [n for n, _ in events(published, "task.") + events(published, "workflow.")]
    assert names.count("task.created") == 3 and names.count("workflow.approved") == 1
    approved = dict(events(published, "workflow.approved"))["workflow.approved"]
    assert approved["record_id"] == rec.id and approved["actor"] == "f2"
    [(channel, to, body)] = outbox(published, "activity_approved")
    assert (channel, to) == ("wecom", "s1") and "春季促销" in body and "全部门店" in body
    # every approver heard of their task (the shipped workflow_task_assigned notice)
    assert [(c, to) for c, to, _ in outbox(published, "workflow_task_assigned")] == [
        ("wecom", "mm"), ("wecom", "f1"), ("wecom", "f2")]
    assert workflows.tasks_for("mm") == [] and len(workflows.tasks_for("mm", status="done")) == 1


def test_a_small_budget_skips_finance(records: RecordService, workflows: WorkflowService) -> None:
    rec = records.create("activity_request", activity(budget="3000.00"), actor="staff", now=NOW)
    view = workflows.act(only_task(workflows, "mm"), actor="mm", action="approve", now=NOW)
    assert view.status == "approved" and view.marks["finance_review"] == "skipped"
    assert workflows.tasks_for("f1") == []
    assert rec.id == view.record_id


def test_reject_runs_on_reject_and_reject_to_goes_back(records: RecordService, workflows: WorkflowService,
                                                       published: sessionmaker[Session]) -> None:
    rec = records.create("activity_request", activity(), actor="staff", now=NOW)
    workflows.act(only_task(workflows, "mm"), actor="mm", action="approve", now=NOW)
    view = workflows.act(only_task(workflows, "f1"), actor="f1", action="reject", comment="预算再议", now=NOW)
    assert view.status == "running" and view.current_steps == ("manager_review",)  # reject_to: manager_review
    assert workflows.tasks_for("f2") == []
    view = workflows.act(only_task(workflows, "mm"), actor="mm", action="reject", comment="不做了", now=NOW)
    assert view.status == "rejected"
    record = records.get(rec.id)
    assert record is not None and record.data["status"] == "rejected" and record.status == "rejected"
    [(channel, to, body)] = outbox(published, "activity_rejected")
    assert (channel, to) == ("email", "staff@example.com") and "不做了" in body and "STAFF" in body
    assert [n for n, _ in events(published, "workflow.")] == ["workflow.rejected"]


def test_refusals(records: RecordService, workflows: WorkflowService) -> None:
    records.create("activity_request", activity(), actor="staff", now=NOW)
    task = only_task(workflows, "mm")
    with pytest.raises(NotAssigned):
        workflows.act(task, actor="f1", action="approve", now=NOW)
    with pytest.raises(TaskNotFound):
        workflows.act(999, actor="mm", action="approve", now=NOW)
    with pytest.raises(ActionError) as err:
        workflows.act(task, actor="mm", action="add_approver", target="f1", now=NOW)  # not in the step's allow
    assert err.value.code == "not_allowed" and err.value.current.status == "running"  # type: ignore[attr-defined]
    with pytest.raises(StaleTask) as stale:
        workflows.act(task, actor="mm", action="approve", now=NOW, expected_version=7)
    assert stale.value.current is not None and stale.value.current.current_steps == ("manager_review",)
    version = workflows.get_task(task).version  # type: ignore[union-attr]
    workflows.act(task, actor="mm", action="approve", now=NOW, expected_version=version)
    with pytest.raises(TaskClosed) as closed:
        workflows.act(task, actor="mm", action="approve", now=NOW)
    assert closed.value.current is not None and closed.value.current.current_steps == ("finance_review",)
    with pytest.raises(StaleTask):
        workflows.act(task, actor="mm", action="approve", now=NOW, expected_version=version)


def test_transfer_and_comment(records: RecordService, workflows: WorkflowService) -> None:
    rec = records.create("activity_request", activity(), actor="staff", now=NOW)
    task = only_task(workflows, "mm")
    workflows.act(task, actor="mm", action="comment", comment="稍等", now=NOW)
    view = workflows.act(task, actor="mm", action="transfer", target="director", comment="请代批", now=NOW)
    assert [t.assignee for t in view.tasks if t.status == "open"] == ["director"]
    assert [t.origin for t in view.tasks] == ["assigned", "transfer"]
    workflows.act(only_task(workflows, "director"), actor="director", action="approve", now=NOW)
    assert workflows.instance_for_record(rec.id).current_steps == ("finance_review",)  # type: ignore[union-attr]


def test_return_then_resubmit_with_edits(records: RecordService, workflows: WorkflowService,
                                         published: sessionmaker[Session]) -> None:
    rec = records.create("activity_request", activity(budget="60000.00"), actor="staff", now=NOW)
    view = workflows.act(only_task(workflows, "mm"), actor="mm", action="return", comment="请补充", now=NOW)
    assert view.status == "returned" and records.get(rec.id).status == "returned"  # type: ignore[union-attr]
    assert view.can_withdraw
    with pytest.raises(ActionError) as err:
        workflows.resubmit(rec.id, {"budget": "100.00"}, actor="staff2", now=NOW)
    assert err.value.code == "not_submitter"
    view = workflows.resubmit(rec.id, {"budget": "100.00"}, actor="staff", now=NOW + timedelta(hours=1))
    assert view.status == "running" and view.current_steps == ("manager_review",)
    assert records.get(rec.id).data["budget"] == "100.00"  # type: ignore[union-attr]
    view = workflows.act(only_task(workflows, "mm"), actor="mm", action="approve", now=NOW + timedelta(hours=2))
    assert view.status == "approved"  # the new budget skips finance
    assert "workflow.returned" in [n for n, _ in events(published, "workflow.")]


def test_withdraw(records: RecordService, workflows: WorkflowService, published: sessionmaker[Session]) -> None:
    rec = records.create("activity_request", activity(), actor="staff", now=NOW)
    with pytest.raises(ActionError) as err:
        workflows.withdraw(rec.id, actor="mm", now=NOW)
    assert err.value.code == "not_submitter"
    view = workflows.withdraw(rec.id, actor="staff", now=NOW)
    assert view.status == "withdrawn" and all(t.status != "open" for t in view.tasks)
    assert records.get(rec.id).status == "withdrawn"  # type: ignore[union-attr]
    assert workflows.tasks_for("mm") == []
    other = records.create("activity_request", activity(name="二号"), actor="staff", now=NOW)
    workflows.act(only_task(workflows, "mm"), actor="mm", action="approve", now=NOW)
    with pytest.raises(ActionError) as err:
        workflows.withdraw(other.id, actor="staff", now=NOW)
    assert err.value.code == "already_acted"


def test_a_form_without_a_workflow_starts_nothing(registry: DefinitionRegistry) -> None:
    assert registry.workflow_for_form("store_redemption") is None
    assert registry.workflow_for_form("activity_request")[1] == 1  # type: ignore[index]


def test_a_failing_start_rolls_back_the_record(published: sessionmaker[Session], registry: DefinitionRegistry) -> None:
    def boom(*args: object) -> None:
        raise RuntimeError("boom")

    service = RecordService(published, registry, on_created=[boom])
    with pytest.raises(RuntimeError):
        service.create("activity_request", activity(), actor="staff", now=NOW)
    with published() as s:
        assert s.scalars(select(Record)).all() == []


# ------------------------------------------------------------------- versions

def test_an_instance_finishes_on_the_version_it_started_with(
        records: RecordService, workflows: WorkflowService, published: sessionmaker[Session], shipped) -> None:
    rec = records.create("activity_request", activity(), actor="staff", now=NOW)
    # v2: manager review is gone; finance decides alone, with any one approval.
    path = ROOT / "workflows" / "activity" / "activity_approval.yaml"
    body = yaml.safe_load(path.read_text(encoding="utf-8"))
    body["steps"] = [s for s in body["steps"] if s["id"] != "manager_review"]
    body["steps"][0]["approval"] = {"role": "finance", "mode": "any"}
    others = [d for d in shipped.documents if not (d.kind == "workflow" and d.id == "activity_approval")]
    v2 = load_texts([(f"{d.kind}/{d.id}.json", json.dumps(dict(d.body), ensure_ascii=False, default=str))
                     for d in others] + [("workflow/activity_approval.yaml", yaml.safe_dump(body, allow_unicode=True))])
    publish_set(published, v2.raise_for_errors(), now=NOW + timedelta(minutes=5), by="test")
    assert workflows._registry.version_of("workflow", "activity_approval") == 2

    new = records.create("activity_request", activity(name="新版"), actor="staff", now=NOW + timedelta(minutes=6))
    assert workflows.instance_for_record(new.id).workflow_version == 2  # type: ignore[union-attr]
    assert workflows.instance_for_record(new.id).current_steps == ("finance_review",)  # type: ignore[union-attr]

    view = workflows.act(only_task(workflows, "mm"), actor="mm", action="approve", now=NOW + timedelta(minutes=7))
    assert view.workflow_version == 1 and view.current_steps == ("finance_review",)
    old_tasks = [t for t in workflows.tasks_for("f1") if t.record_id == rec.id]
    workflows.act(old_tasks[0].id, actor="f1", action="approve", now=NOW + timedelta(minutes=8))
    view = workflows.instance_for_record(rec.id)
    assert view is not None and view.status == "running"  # v1 finance is 会签: f2 still has to sign
    f2 = next(t for t in workflows.tasks_for("f2") if t.record_id == rec.id)
    view = workflows.act(f2.id, actor="f2", action="approve", now=NOW + timedelta(minutes=9))
    assert view.status == "approved" and view.workflow_version == 1


# ------------------------------------------------------------------- tick

def test_tick_reminds_once_escalates_and_is_idempotent(
        records: RecordService, workflows: WorkflowService, published: sessionmaker[Session]) -> None:
    rec = records.create("activity_request", activity(), actor="staff", now=NOW)
    assert workflows.tick(NOW + timedelta(hours=47)).instances == 0
    report = workflows.tick(NOW + timedelta(hours=48))
    assert (report.instances, report.reminders, report.escalations) == (1, 1, 1)
    assert workflows.tick(NOW + timedelta(hours=48)).instances == 0  # the same now: nothing
    view = workflows.instance_for_record(rec.id)
    assert view is not None
    assert sorted(t.assignee for t in view.tasks if t.status == "open") == ["director", "mm"]
    assert [(c, to) for c, to, _ in outbox(published, "workflow_reminder")] == [("wecom", "mm")]
    # remind_every 24h: one more reminder a day later, then nothing until the next day
    report = workflows.tick(NOW + timedelta(hours=72))
    assert (report.reminders, report.escalations) == (1, 0)  # mm's second one
    assert workflows.tick(NOW + timedelta(hours=73)).instances == 0
    report = workflows.tick(NOW + timedelta(hours=96))  # mm's third, the director's first (due 48 h after escalation)
    assert (report.reminders, report.escalations) == (2, 0)
    # the director decides for the overdue vote
    view = workflows.act(only_task(workflows, "director"), actor="director", action="approve",
                         now=NOW + timedelta(hours=97))
    assert view.current_steps == ("finance_review",)
    assert workflows.tasks_for("mm") == []


def test_tick_batches_many_instances(records: RecordService, workflows: WorkflowService) -> None:
    for i in range(7):
        records.create("activity_request", activity(name=f"活动{i}"), actor="staff", now=NOW)
    report = workflows.tick(NOW + timedelta(hours=49), batch=3)
    assert report.instances == 7 and report.escalations == 7
    assert workflows.tick(NOW + timedelta(hours=49), batch=3).instances == 0


# ------------------------------------------------------------------- audit replay

def test_the_audit_trail_replays_to_the_stored_state(records: RecordService, workflows: WorkflowService,
                                                     published: sessionmaker[Session]) -> None:
    rec = records.create("activity_request", activity(), actor="staff", now=NOW)
    workflows.act(only_task(workflows, "mm"), actor="mm", action="approve", now=NOW)
    workflows.act(only_task(workflows, "f1"), actor="f1", action="return", comment="改", now=NOW)
    workflows.resubmit(rec.id, {"budget": "70000.00"}, actor="staff", now=NOW)
    workflows.tick(NOW + timedelta(hours=60))
    assert_replays(workflows, published, rec.id)


def directory_of(sf: sessionmaker[Session]) -> StaticDirectory:
    roles: dict[str, list[str]] = {}
    for user, (user_roles, _) in PEOPLE.items():
        for role in user_roles:
            roles.setdefault(role, []).append(user)
    return StaticDirectory(roles={k: tuple(sorted(v)) for k, v in roles.items()},
                           managers={u: m for u, (_, m) in PEOPLE.items() if m}, users=frozenset(PEOPLE))


def assert_replays(workflows: WorkflowService, sf: sessionmaker[Session], record_id: int) -> None:
    """Every transition's event is in the audit log; stepping them from an
    empty state reproduces the stored state exactly, and the task rows agree."""
    with sf() as s:
        inst = workflows_repo.instance_for_record(s, record_id)
        assert inst is not None
        rows = s.scalars(select(AuditEntry).where(AuditEntry.entity_type == "workflow_instance",
                                                  AuditEntry.entity_id == str(inst.id)).order_by(AuditEntry.id)).all()
        tasks = {t.seq: t for t in s.scalars(select(Task).where(Task.instance_id == inst.id))}
    spec, _ = workflows._registry.workflow(inst.workflow_id, inst.workflow_version)
    state = InstanceState()
    for row in rows:
        state, _ = step(spec, state, event_from_json(row.diff["event"]), directory_of(sf))
    stored = InstanceState.from_json(inst.state)
    assert state == stored
    assert {t.id: (t.status, t.assignee, t.action) for t in stored.tasks} == {
        seq: (t.status, t.assignee_name, t.action) for seq, t in tasks.items()}


def test_notices_link_to_the_stored_task_and_the_record(published: sessionmaker[Session],
                                                       registry: DefinitionRegistry) -> None:
    """The machine numbers tasks per instance; the approver's text card must
    open the stored task (/tasks/<row id>), under the installation's address."""
    workflows = WorkflowService(published, registry, base_url="https://promo.example.com/")
    records = RecordService(published, registry, on_created=[workflows.start_in])
    records.create("activity_request", activity(budget="3000.00"), actor="staff", now=NOW)  # another instance first
    rec = records.create("activity_request", activity(), actor="staff2", now=NOW)
    task_id = next(t.id for t in workflows.tasks_for("mm") if t.record_id == rec.id)
    with published() as s:
        cards = [(m.recipient, m.body, m.payload) for m in s.scalars(
            select(OutboxMessage).where(OutboxMessage.template_id == "workflow_task_assigned")
            .order_by(OutboxMessage.id))]
    recipient, body, payload = cards[-1]
    assert recipient == "mm" and "STAFF2" in body and "春季促销" in body and "市场经理审批" in body
    params = payload.get("params") or {}
    link = params.get("url") or (payload.get("options") or {}).get("url")
    assert link == f"https://promo.example.com/tasks/{task_id}", payload
    assert task_id != 1  # the instance-local number would have been 1

    workflows.act(task_id, actor="mm", action="return", comment="补充物料清单", now=NOW)
    with published() as s:
        returned = s.scalars(select(OutboxMessage)
                             .where(OutboxMessage.template_id == "workflow_returned")).one()
    assert returned.recipient == "staff2" and "补充物料清单" in (returned.body or "")
    params = returned.payload.get("params") or {}
    assert (params.get("url") or returned.payload.get("options", {}).get("url")) == \
        f"https://promo.example.com/records/{rec.id}"
