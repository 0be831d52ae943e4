"""Property tests: random sequences of actions by random users (assignees or
not, open tasks or closed ones, ticks far in the future, withdraws and
resubmits) through every shipped flow, and through a synthetic flow that has
every step type. After every event:

* the instance is in exactly one state: terminal (approved, rejected,
  withdrawn) with nothing open, returned (waiting on the submitter) with
  nothing open, or running with at least one open task;
* no task is acted on twice: a closed task never changes again;
* the events replay through ``step`` to the stored state.

The service variant runs on both databases and also checks the task rows and
the audit trail against the state.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from engine.approvals.machine import (
    TERMINAL,
    Act,
    ActionError,
    InstanceState,
    Resubmit,
    Start,
    Tick,
    Withdraw,
    step,
)
from engine.definitions.loader import load_paths
from engine.definitions.specs import WorkflowSpec
from engine.forms.errors import ValidationFailed
from engine.records import RecordService
from engine.workflows import WorkflowService

from .conftest import NOW, PEOPLE, ROOT, activity
from .test_machine import DIR, approval, cond
from .test_service import assert_replays, directory_of

SHIPPED = load_paths([ROOT / "forms", ROOT / "workflows", ROOT / "config"], relative_to=ROOT).raise_for_errors()
USERS = sorted(PEOPLE) + ["ghost"]
ACTIONS = ("approve", "approve", "approve", "reject", "return", "transfer", "add_approver", "comment")
OPS = ("act", "act", "act", "act", "act_closed", "tick", "withdraw", "resubmit")
BUDGETS = ("100.00", "50000.00", "50000.01", "60000.00", "999999.99")


def synthetic() -> WorkflowSpec:
    from engine.definitions.specs import (
        Assignees,
        BranchCase,
        BranchSpec,
        OverdueSpec,
        ParallelBranch,
        ParallelSpec,
        Recipient,
        SendSpec,
        SetFieldSpec,
        WorkflowStep,
    )

    return WorkflowSpec("synthetic", "合成", "activity_request", (
        approval("first", role="marketing_manager", due=timedelta(hours=24),
                 on_overdue=OverdueSpec(escalate_to=Assignees(role="marketing_director"))),
        WorkflowStep("route", BranchSpec(
            (BranchCase(cond({"budget": {"gt": 50000}}), (
                WorkflowStep("par", ParallelSpec((
                    ParallelBranch("money", (approval("fin", role="finance", mode="threshold", threshold=2),)),
                    ParallelBranch("people", (
                        approval("seq", users=("mm", "director"), mode="sequential"),
                        approval("again", role="finance", mode="all", reject_to="seq"),
                    )),
                ))),
            )),),
            (approval("boss", manager=True, due=timedelta(hours=5), on_overdue=OverdueSpec(auto="approve")),),
        )),
        WorkflowStep("copy", Assignees(users=("s1",))),
        WorkflowStep("mark", SetFieldSpec({"status": "approved"})),
        WorkflowStep("tell", SendSpec("wecom", "activity_approved", Recipient("role", "store_manager"))),
    ), on_reject=(SetFieldSpec({"status": "rejected"}),))


FLOWS = [*SHIPPED.workflows.values(), synthetic()]
MACHINE_DIR = directory_of(None)  # type: ignore[arg-type]


def check_invariants(state: InstanceState, closed: dict[int, object]) -> None:
    open_tasks = state.open_tasks
    if state.status in TERMINAL:
        assert not open_tasks and not state.active and not state.joins
    elif state.status == "returned":
        assert not open_tasks and not state.active
    else:
        assert state.status == "running"
        assert open_tasks, "a running instance must wait on at least one open task"
        assert {t.step_id for t in open_tasks} <= set(state.current_steps)
    for task in state.tasks:
        if task.id in closed:
            assert closed[task.id] == task, f"task {task.id} changed after it was closed"
        elif task.status != "open":
            closed[task.id] = task


op_strategy = st.tuples(st.sampled_from(OPS), st.integers(0, 50), st.sampled_from(ACTIONS),
                        st.sampled_from(USERS), st.integers(0, 80), st.sampled_from(BUDGETS))


@pytest.mark.parametrize("spec", FLOWS, ids=[f.id for f in FLOWS])
@settings(max_examples=250, deadline=None)
@given(budget=st.sampled_from(BUDGETS), ops=st.lists(op_strategy, max_size=30))
def test_machine_invariants(spec: WorkflowSpec, budget: str, ops: list) -> None:
    form = SHIPPED.forms[spec.form]
    money = tuple(f.key for f in form.fields if f.type == "money")
    now = NOW
    state, _ = step(spec, InstanceState(), Start({"budget": budget, "name": "x"}, "staff", now, money), MACHINE_DIR)
    events: list = [Start({"budget": budget, "name": "x"}, "staff", now, money)]
    closed: dict[int, object] = {}
    check_invariants(state, closed)
    for op, pick, action, user, hours, new_budget in ops:
        now += timedelta(hours=hours)
        tasks = state.open_tasks if op == "act" else state.tasks
        if op in ("act", "act_closed"):
            if not tasks:
                continue
            task = tasks[pick % len(tasks)]
            actor = task.assignee if pick % 5 else user
            event: object = Act(task.id, actor, action, f"c{pick}", user, now=now)
        elif op == "tick":
            event = Tick(now)
        elif op == "withdraw":
            event = Withdraw("staff" if pick % 3 else user, now)
        else:
            event = Resubmit({"budget": new_budget, "name": "y"}, now)
        try:
            new, _ = step(spec, state, event, MACHINE_DIR)  # type: ignore[arg-type]
        except ActionError:
            continue
        state = InstanceState.from_json(new.to_json())
        assert state == new
        events.append(event)
        check_invariants(state, closed)
    replayed = InstanceState()
    for e in events:
        replayed, _ = step(spec, replayed, e, MACHINE_DIR)
    assert replayed == state


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(budget=st.sampled_from(BUDGETS), ops=st.lists(op_strategy, max_size=12))
def test_service_invariants(records: RecordService, workflows: WorkflowService, published: sessionmaker[Session],
                            budget: str, ops: list) -> None:
    now = NOW
    rec = records.create("activity_request", activity(budget=budget), actor="staff", now=now)
    closed: dict[int, object] = {}
    for op, pick, action, user, hours, new_budget in ops:
        now += timedelta(hours=hours)
        view = workflows.instance_for_record(rec.id)
        assert view is not None
        tasks = [t for t in view.tasks if t.kind == "approval" and (op != "act" or t.status == "open")]
        try:
            if op in ("act", "act_closed"):
                if not tasks:
                    continue
                task = tasks[pick % len(tasks)]
                actor = task.assignee if pick % 5 else user
                workflows.act(task.id, actor=str(actor), action=action, comment=f"c{pick}", target=user, now=now)
            elif op == "tick":
                workflows.tick(now)
            elif op == "withdraw":
                workflows.withdraw(rec.id, actor="staff" if pick % 3 else user, now=now)
            else:
                workflows.resubmit(rec.id, {"budget": new_budget}, actor="staff" if pick % 3 else user, now=now)
        except (ActionError, ValidationFailed):
            pass
        state = workflows.state_of(rec.id)
        assert state is not None
        check_invariants(state, closed)
    view = workflows.instance_for_record(rec.id)
    assert view is not None
    assert view.status in TERMINAL or view.status == "returned" or any(t.status == "open" for t in view.tasks)
    if view.status == "approved":
        assert records.get(rec.id).data["status"] == "approved"  # type: ignore[union-attr]
        assert Decimal(records.get(rec.id).data["budget"]) >= 0  # type: ignore[union-attr]
    assert_replays(workflows, published, rec.id)


def test_synthetic_flow_is_a_valid_definition_shape() -> None:
    # every step id is unique (the machine's positions are step ids)
    from engine.approvals.machine import _index

    spec = synthetic()
    assert len(_index(spec).pos) == 10
    assert DIR.exists("bob")
