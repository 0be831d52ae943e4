"""The pure state machine: every step type and every action, with a fixed
clock. Every scenario saves and restores the state through JSON after each
event (SpiffWorkflow's ``save_restore``), so a stored instance behaves exactly
like one kept in memory."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from engine.approvals.machine import (
    Act,
    ActionError,
    CloseTask,
    CreateTask,
    Emit,
    InstanceState,
    Notify,
    Resubmit,
    SetField,
    Start,
    StaticDirectory,
    Tick,
    Withdraw,
    event_from_json,
    event_to_json,
    step,
    task_wake_at,
)
from engine.conditions.parse import parse_condition
from engine.definitions.specs import (
    ApprovalSpec,
    Assignees,
    BranchCase,
    BranchSpec,
    OverdueSpec,
    ParallelBranch,
    ParallelSpec,
    Recipient,
    SendSpec,
    SetFieldSpec,
    WorkflowSpec,
    WorkflowStep,
)

NOW = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
DIR = StaticDirectory(
    roles={"mgr": ("m1",), "fin": ("f1", "f2", "f3"), "dir": ("d1",), "store": ("s1", "s2")},
    managers={"alice": "boss", "bob": "m1"},
    users=frozenset({"alice", "bob", "boss", "x1", "x2", "am1"}),
    account_managers={7: "am1"},
)


def cond(raw: dict) -> object:
    parsed, problems = parse_condition(raw)
    assert not problems
    return parsed


def approval(sid: str, *, role: str | None = None, users: tuple[str, ...] = (), field: str | None = None,
             manager: bool = False, mode: str = "any", threshold: int | None = None, reject_to: str | None = None,
             allow: tuple[str, ...] = ("return", "transfer", "add_approver"), **kw: object) -> WorkflowStep:
    return WorkflowStep(sid, ApprovalSpec(Assignees(role, users, field, manager), mode, threshold, allow, reject_to),
                        **kw)  # type: ignore[arg-type]


def flow(*steps: WorkflowStep, on_approve: tuple = (), on_reject: tuple = ()) -> WorkflowSpec:
    return WorkflowSpec("wf", "测试", "f", tuple(steps), on_approve=on_approve, on_reject=on_reject)


class Run:
    """Drives one instance, round-tripping the state through JSON text after every event."""

    def __init__(self, spec: WorkflowSpec, directory: StaticDirectory = DIR):
        self.spec = spec
        self.dir = directory
        self.state = InstanceState()
        self.effects: list = []
        self.events: list = []

    def send(self, event: object) -> list:
        new, effects = step(self.spec, self.state, event, self.dir)  # type: ignore[arg-type]
        restored = InstanceState.from_json(json.loads(json.dumps(new.to_json(), ensure_ascii=False)))
        assert restored == new
        again = event_from_json(json.loads(json.dumps(event_to_json(event))))  # type: ignore[arg-type]
        assert again == event
        self.state = restored
        self.effects = effects
        self.events.append(event)
        return effects

    def start(self, data: dict | None = None, submitter: str = "alice", now: datetime = NOW) -> list:
        return self.send(Start(data or {"budget": "60000.00"}, submitter, now, ("budget",)))

    def open_for(self, user: str) -> int:
        ids = [t.id for t in self.state.open_tasks if t.assignee == user]
        assert len(ids) == 1, (user, self.state.open_tasks)
        return ids[0]

    def act(self, user: str, action: str = "approve", *, comment: str | None = None, target: str | None = None,
            now: datetime = NOW) -> list:
        return self.send(Act(self.open_for(user), user, action, comment, target, now=now))

    def open_users(self) -> list[str]:
        return sorted(t.assignee for t in self.state.open_tasks)

    def replay(self) -> InstanceState:
        state = InstanceState()
        for e in self.events:
            state, _ = step(self.spec, state, e, self.dir)
        return state


def names(effects: list) -> list[str]:
    return [e.name for e in effects if isinstance(e, Emit)]


# ------------------------------------------------------------------- modes

def test_any_mode_first_approval_completes_and_cancels_the_others() -> None:
    run = Run(flow(approval("a", role="fin", mode="any")))
    effects = run.start()
    assert run.open_users() == ["f1", "f2", "f3"]
    assert names(effects) == ["task.created"] * 3
    effects = run.act("f2", comment="好")
    assert run.state.status == "approved"
    assert [e for e in effects if isinstance(e, CloseTask) and e.status == "cancelled"] != []
    assert names(effects) == ["workflow.approved"]
    assert run.state.marks == {"a": "approved"}
    assert run.replay() == run.state


def test_all_mode_needs_everyone() -> None:
    run = Run(flow(approval("a", role="fin", mode="all")))
    run.start()
    run.act("f1")
    run.act("f3")
    assert run.state.status == "running" and run.open_users() == ["f2"]
    run.act("f2")
    assert run.state.status == "approved"


def test_all_mode_one_reject_rejects() -> None:
    run = Run(flow(approval("a", role="fin", mode="all")))
    run.start()
    run.act("f1")
    effects = run.act("f2", "reject", comment="预算太高")
    assert run.state.status == "rejected"
    assert names(effects) == ["workflow.rejected"]
    assert run.state.open_tasks == ()
    assert run.state.history[-1].comment == "预算太高"


def test_sequential_mode_one_after_another() -> None:
    run = Run(flow(approval("a", users=("x1", "x2", "bob"), mode="sequential")))
    run.start()
    assert run.open_users() == ["x1"]
    run.act("x1")
    assert run.open_users() == ["x2"]
    run.act("x2")
    assert run.open_users() == ["bob"]
    run.act("bob")
    assert run.state.status == "approved"


def test_threshold_two_of_three() -> None:
    run = Run(flow(approval("a", role="fin", mode="threshold", threshold=2)))
    run.start()
    run.act("f1", "reject")
    assert run.state.status == "running"
    run.act("f2")
    assert run.state.status == "running"
    run.act("f3")
    assert run.state.status == "approved"


def test_threshold_rejects_when_it_can_no_longer_be_reached() -> None:
    run = Run(flow(approval("a", role="fin", mode="threshold", threshold=2)))
    run.start()
    run.act("f1", "reject")
    run.act("f2", "reject")
    assert run.state.status == "rejected"
    assert run.state.open_tasks == ()


# ------------------------------------------------------------------- assignees

def test_assignees_by_users_field_customer_field_and_manager() -> None:
    spec = flow(approval("by_field", field="owner"), approval("by_customer", field="customer"),
                approval("by_manager", manager=True))
    run = Run(spec)
    run.send(Start({"owner": "bob", "customer": 7}, "alice", NOW))
    assert run.open_users() == ["bob"]
    run.act("bob")
    assert run.open_users() == ["am1"]
    run.act("am1")
    assert run.open_users() == ["boss"]
    run.act("boss")
    assert run.state.status == "approved"


def test_a_step_without_anyone_to_approve_is_skipped_and_logged() -> None:
    run = Run(flow(approval("a", role="nobody"), approval("b", role="mgr")))
    run.start()
    assert run.open_users() == ["m1"]
    assert run.state.marks == {"a": "skipped"}
    assert [h.action for h in run.state.history] == ["submit", "no_approver"]


# ------------------------------------------------------------------- when / branch / parallel

def test_when_false_skips_the_step_money_is_compared_as_a_number() -> None:
    spec = flow(approval("a", role="mgr"), approval("fin", role="fin", mode="all", when=cond({"budget": {"gt": 50000}})))
    small = Run(spec)
    small.start({"budget": "9000.00"})
    small.act("m1")
    assert small.state.status == "approved"
    assert small.state.marks["fin"] == "skipped"
    big = Run(spec)
    big.start({"budget": "60000.00"})
    big.act("m1")
    assert big.state.current_steps == ("fin",)


def test_branch_takes_the_first_matching_case_else_default() -> None:
    spec = flow(WorkflowStep("route", BranchSpec(
        cases=(BranchCase(cond({"budget": {"gt": 100000}}), (approval("big", role="dir"),)),
               BranchCase(cond({"budget": {"gt": 10000}}), (approval("mid", role="mgr"),))),
        default=(approval("small", users=("bob",)),))), approval("after", role="store"))
    for budget, first in (("200000", "d1"), ("60000", "m1"), ("10", "bob")):
        run = Run(spec)
        run.start({"budget": budget})
        assert run.open_users() == [first]
        run.act(first)
        assert run.state.current_steps == ("after",)
        assert run.state.marks["route"] == "done"


def test_parallel_lanes_join_when_all_finish() -> None:
    spec = flow(WorkflowStep("par", ParallelSpec((
        ParallelBranch("legal", (approval("l1", users=("x1",)), approval("l2", users=("x2",)))),
        ParallelBranch("money", (approval("m", role="fin", mode="any"),)),
    ))), approval("final", role="mgr"))
    run = Run(spec)
    run.start()
    assert set(run.state.current_steps) == {"l1", "m"}
    run.act("f1")
    assert set(run.state.current_steps) == {"l1"}
    run.act("x1")
    assert run.state.current_steps == ("l2",)
    run.act("x2")
    assert run.state.current_steps == ("final",)
    assert run.state.joins == ()
    run.act("m1")
    assert run.state.status == "approved"
    assert run.replay() == run.state


def test_rejection_inside_a_parallel_lane_rejects_the_flow_and_closes_every_task() -> None:
    spec = flow(WorkflowStep("par", ParallelSpec((
        ParallelBranch("a", (approval("x", users=("x1",)),)),
        ParallelBranch("b", (approval("y", users=("x2",)),)),
    ))))
    run = Run(spec)
    run.start()
    run.act("x1", "reject")
    assert run.state.status == "rejected"
    assert run.state.open_tasks == () and run.state.active == () and run.state.joins == ()


# ------------------------------------------------------------------- send / set_field / cc

def test_send_set_field_and_cc_steps_produce_effects() -> None:
    spec = flow(
        approval("a", role="mgr"),
        WorkflowStep("mark", SetFieldSpec({"status": "approved"})),
        WorkflowStep("tell", SendSpec("wecom", "activity_approved", Recipient("role", "store"))),
        WorkflowStep("copy", Assignees(users=("bob",))),
    )
    run = Run(spec)
    run.start()
    effects = run.act("m1")
    assert run.state.status == "approved"
    assert [e.values for e in effects if isinstance(e, SetField)] == [{"status": "approved"}]
    sends = [e for e in effects if isinstance(e, Notify) and e.kind == "send"]
    assert [(e.channel, e.template, e.to) for e in sends] == [("wecom", "activity_approved", ("s1", "s2"))]
    assert sends[0].ctx["record"]["status"] == "approved"
    assert [e.to for e in effects if isinstance(e, Notify) and e.kind == "cc"] == [("bob",)]
    cc_tasks = [t for t in run.state.tasks if t.kind == "cc"]
    assert [(t.assignee, t.status) for t in cc_tasks] == [("bob", "cc")]
    assert run.state.record["status"] == "approved"
    keys = [e.key for e in effects if isinstance(e, Notify)]
    assert len(keys) == len(set(keys))



def test_send_to_named_people_skips_those_who_left() -> None:
    spec = flow(
        approval("a", role="mgr"),
        WorkflowStep("tell", SendSpec("wecom", "activity_approved", Recipient("users", ("x1", "gone", "x2")))),
    )
    run = Run(spec)
    run.start()
    effects = run.act("m1")
    sends = [e for e in effects if isinstance(e, Notify) and e.kind == "send"]
    assert [e.to for e in sends] == [("x1", "x2")]

def test_on_reject_actions_run_with_the_comment() -> None:
    spec = flow(approval("a", role="mgr"), on_reject=(SetFieldSpec({"status": "rejected"}),
                                                      SendSpec("email", "activity_rejected", Recipient("submitter"))))
    run = Run(spec)
    run.start()
    effects = run.act("m1", "reject", comment="不行")
    notes = [e for e in effects if isinstance(e, Notify)]
    assert [(n.template, n.to, n.ctx["task"]["comment"]) for n in notes] == [("activity_rejected", ("alice",), "不行")]
    assert [e.values for e in effects if isinstance(e, SetField)] == [{"status": "rejected"}]


# ------------------------------------------------------------------- actions

def test_reject_to_an_earlier_step_runs_it_again() -> None:
    spec = flow(approval("a", role="mgr"), approval("b", role="fin", mode="all", reject_to="a"))
    run = Run(spec)
    run.start()
    run.act("m1")
    run.act("f1")
    effects = run.act("f2", "reject", comment="重新看")
    assert run.state.status == "running"
    assert run.open_users() == ["m1"]
    assert run.state.current_steps == ("a",)
    assert [t.assignee for t in run.state.tasks if t.status == "cancelled"] == ["f3"]
    assert any(isinstance(e, CreateTask) for e in effects)
    assert run.state.history[-1].action == "rejected_to"
    run.act("m1")
    assert run.open_users() == ["f1", "f2", "f3"]  # a fresh round for finance


def test_reject_to_inside_a_lane_leaves_the_other_lane_running() -> None:
    spec = flow(WorkflowStep("par", ParallelSpec((
        ParallelBranch("a", (approval("a1", users=("x1",)), approval("a2", users=("x2",), reject_to="a1"))),
        ParallelBranch("b", (approval("b1", users=("bob",)),)),
    ))))
    run = Run(spec)
    run.start()
    run.act("x1")
    run.act("x2", "reject")
    assert set(run.state.current_steps) == {"a1", "b1"}
    run.act("bob")
    run.act("x1")
    run.act("x2")
    assert run.state.status == "approved"


def test_return_waits_for_resubmit_and_restarts_on_the_new_data() -> None:
    spec = flow(approval("a", role="mgr"), approval("fin", role="fin", when=cond({"budget": {"gt": 50000}})))
    run = Run(spec)
    run.start({"budget": "60000.00"})
    effects = run.act("m1", "return", comment="请补充物料")
    assert run.state.status == "returned" and run.state.open_tasks == ()
    assert names(effects) == ["workflow.returned"]
    assert [n.to for n in effects if isinstance(n, Notify) and n.kind == "returned"] == [("alice",)]
    with pytest.raises(ActionError) as err:
        run.send(Act(1, "m1", "approve", now=NOW))
    assert err.value.code == "task_closed"
    run.send(Resubmit({"budget": "100.00"}, NOW + timedelta(hours=1)))
    assert run.state.status == "running" and run.open_users() == ["m1"]
    run.act("m1")
    assert run.state.status == "approved"  # finance skipped on the new budget
    assert run.replay() == run.state


def test_withdraw_only_by_the_submitter_and_only_before_anyone_acted() -> None:
    spec = flow(approval("a", role="fin", mode="all"))
    run = Run(spec)
    run.start()
    with pytest.raises(ActionError) as err:
        run.send(Withdraw("bob", NOW))
    assert err.value.code == "not_submitter"
    run.act("f1", "comment", comment="看一下")  # a comment is not a decision
    effects = run.send(Withdraw("alice", NOW))
    assert run.state.status == "withdrawn"
    assert names(effects) == ["workflow.withdrawn"]
    late = Run(spec)
    late.start()
    late.act("f1")
    with pytest.raises(ActionError) as err:
        late.send(Withdraw("alice", NOW))
    assert err.value.code == "already_acted"


def test_transfer_hands_the_vote_to_another_user() -> None:
    run = Run(flow(approval("a", role="fin", mode="all")))
    run.start()
    run.act("f1", "transfer", target="bob", comment="休假")
    assert run.open_users() == ["bob", "f2", "f3"]
    transferred = [t for t in run.state.tasks if t.action == "transfer"]
    assert [t.assignee for t in transferred] == ["f1"]
    new = next(t for t in run.state.tasks if t.origin == "transfer")
    assert new.slot == transferred[0].slot and new.due_at == transferred[0].due_at
    for user in ("bob", "f2", "f3"):
        run.act(user)
    assert run.state.status == "approved"


def test_add_approver_adds_a_vote_to_the_current_step() -> None:
    run = Run(flow(approval("a", role="mgr", mode="any"), approval("b", users=("x1",), mode="all")))
    run.start()
    run.act("m1", "add_approver", target="bob")
    assert run.open_users() == ["bob", "m1"]  # any: either may now decide
    run.act("bob")
    assert run.open_users() == ["x1"]
    run.act("x1", "add_approver", target="x2")
    run.act("x1")
    assert run.state.status == "running" and run.open_users() == ["x2"]  # all: the added one too
    run.act("x2")
    assert run.state.status == "approved"


def test_add_approver_in_sequential_mode_comes_next() -> None:
    run = Run(flow(approval("a", users=("x1", "x2"), mode="sequential")))
    run.start()
    run.act("x1", "add_approver", target="bob")
    run.act("x1")
    assert run.open_users() == ["bob"]
    run.act("bob")
    assert run.open_users() == ["x2"]


@pytest.mark.parametrize(("action", "target", "code"), [
    ("return", None, "not_allowed"), ("transfer", "x1", "not_allowed"), ("dance", None, "bad_action"),
])
def test_actions_the_step_does_not_allow_are_refused(action: str, target: str | None, code: str) -> None:
    run = Run(flow(approval("a", role="mgr", allow=())))
    run.start()
    with pytest.raises(ActionError) as err:
        run.act("m1", action, target=target)
    assert err.value.code == code


def test_refusals_not_assigned_closed_bad_target() -> None:
    run = Run(flow(approval("a", role="fin", mode="all")))
    run.start()
    task = run.open_for("f1")
    with pytest.raises(ActionError) as err:
        run.send(Act(task, "f2", "approve", now=NOW))
    assert err.value.code == "not_assigned"
    with pytest.raises(ActionError) as err:
        run.act("f1", "transfer", target="nobody")
    assert err.value.code == "bad_target"
    with pytest.raises(ActionError) as err:
        run.act("f1", "transfer", target="f2")
    assert err.value.code == "bad_target"
    run.act("f1")
    with pytest.raises(ActionError) as err:
        run.send(Act(task, "f1", "approve", now=NOW))
    assert err.value.code == "task_closed"
    with pytest.raises(ActionError):
        run.send(Act(999, "f1", "approve", now=NOW))


def test_comments_are_history_and_leave_the_task_open() -> None:
    run = Run(flow(approval("a", role="mgr")))
    run.start()
    effects = run.act("m1", "comment", comment="<b>先看预算</b>")
    assert effects == []
    assert run.open_users() == ["m1"]
    assert run.state.history[-1].comment == "<b>先看预算</b>"


# ------------------------------------------------------------------- time

def overdue_flow(**overdue: object) -> WorkflowSpec:
    return flow(approval("a", role="mgr", due=timedelta(hours=48), remind_every=overdue.pop("every", None),
                         on_overdue=OverdueSpec(**overdue) if overdue else None))  # type: ignore[arg-type]


def test_due_reminds_once_at_due_by_default_and_tick_is_idempotent() -> None:
    run = Run(overdue_flow())
    run.start()
    task = run.state.open_tasks[0]
    assert task.due_at == NOW + timedelta(hours=48)
    assert task_wake_at(run.spec, task) == task.due_at
    assert run.send(Tick(NOW + timedelta(hours=47))) == []
    effects = run.send(Tick(NOW + timedelta(hours=49)))
    assert [(e.kind, e.to) for e in effects if isinstance(e, Notify)] == [("reminder", ("m1",))]
    assert run.send(Tick(NOW + timedelta(hours=49))) == []
    assert run.send(Tick(NOW + timedelta(days=30))) == []
    assert task_wake_at(run.spec, run.state.open_tasks[0]) is None


def test_remind_every_repeats_without_catching_up() -> None:
    run = Run(overdue_flow(every=timedelta(hours=24)))
    run.start()
    assert len(run.send(Tick(NOW + timedelta(hours=48)))) == 1
    assert run.send(Tick(NOW + timedelta(hours=60))) == []
    assert len(run.send(Tick(NOW + timedelta(hours=200)))) == 1  # one reminder, not seven
    assert run.state.open_tasks[0].next_remind_at == NOW + timedelta(hours=216)


def test_escalation_adds_the_escalation_approver_to_the_same_vote() -> None:
    run = Run(overdue_flow(escalate_to=Assignees(role="dir")))
    run.start()
    effects = run.send(Tick(NOW + timedelta(hours=48, minutes=1)))
    assert run.open_users() == ["d1", "m1"]
    assert "task.created" in names(effects)
    assert run.send(Tick(NOW + timedelta(hours=49))) == []  # escalates once
    run.act("d1")
    assert run.state.status == "approved"
    assert [t.status for t in run.state.tasks] == ["cancelled", "done"]


@pytest.mark.parametrize("auto", ["approve", "reject"])
def test_auto_decision_when_overdue(auto: str) -> None:
    run = Run(overdue_flow(remind=False, auto=auto))
    run.start()
    run.send(Tick(NOW + timedelta(hours=48)))
    assert run.state.status == ("approved" if auto == "approve" else "rejected")
    assert run.state.history[-2].actor == "system"


def test_a_finished_instance_ignores_ticks_and_actions() -> None:
    run = Run(overdue_flow())
    run.start()
    task = run.open_for("m1")
    run.act("m1")
    assert run.send(Tick(NOW + timedelta(days=9))) == []
    with pytest.raises(ActionError):
        run.send(Act(task, "m1", "reject", now=NOW))
    with pytest.raises(ActionError):
        run.send(Withdraw("alice", NOW))


def test_state_format_key_and_newer_formats_are_refused() -> None:
    run = Run(flow(approval("a", role="mgr")))
    run.start()
    data = run.state.to_json()
    assert data["format"] == 1
    with pytest.raises(ValueError):
        InstanceState.from_json({**data, "format": 99})


# ------------------------------------------------------------------- separation of duties

@pytest.mark.parametrize("action", ["transfer", "add_approver"])
def test_a_task_is_never_handed_to_the_submitter(action: str) -> None:
    """The incident: a manager transferred the task to the staff member who
    submitted the request, and he approved his own request."""
    run = Run(flow(approval("a", role="mgr"), approval("b", role="fin")))
    run.start(submitter="bob")
    before = run.state
    with pytest.raises(ActionError) as err:
        run.act("m1", action, target="bob")
    assert err.value.code == "target_is_submitter" and "bob" in err.value.message
    assert run.state == before and run.open_users() == ["m1"]


@pytest.mark.parametrize("action", ["transfer", "add_approver"])
def test_nor_to_someone_who_already_decided_on_the_instance(action: str) -> None:
    run = Run(flow(approval("a", role="mgr"), approval("b", role="fin", mode="all")))
    run.start(submitter="alice")
    run.act("m1")                      # m1 decided in step a
    run.act("f1")                      # f1 decided in this step
    for decided in ("m1", "f1"):
        with pytest.raises(ActionError) as err:
            run.act("f2", action, target=decided)
        assert err.value.code == "target_already_decided"
    run.act("f2", action, target="x1")   # someone new is fine
    assert "x1" in run.open_users()


def test_a_decision_in_an_earlier_round_still_counts() -> None:
    run = Run(flow(approval("a", role="mgr"), approval("b", role="dir")))
    run.start(submitter="alice")
    run.act("m1")
    run.act("d1", "return", comment="补充预算明细")
    run.send(Resubmit({"budget": "50000.00"}, now=NOW))
    with pytest.raises(ActionError) as err:
        run.act("m1", "transfer", target="alice")
    assert err.value.code == "target_is_submitter"
    run.act("m1")
    with pytest.raises(ActionError) as err:
        run.act("d1", "transfer", target="m1")
    assert err.value.code == "target_already_decided"


def test_a_workflow_or_a_step_may_allow_it_explicitly() -> None:
    from dataclasses import replace

    permissive = replace(flow(approval("a", role="mgr")), allow_self_approval=True)
    run = Run(permissive)
    run.start(submitter="bob")
    run.act("m1", "transfer", target="bob")
    run.act("bob")
    assert run.state.status == "approved"

    step_a = approval("a", role="mgr")
    allowed_here = replace(step_a, action=replace(step_a.action, allow_self_approval=True))
    step_b = approval("b", role="dir")
    strict_here = replace(step_b, action=replace(step_b.action, allow_self_approval=False))
    run = Run(replace(flow(allowed_here, step_b), allow_self_approval=False))
    run.start(submitter="bob")
    run.act("m1", "add_approver", target="bob")          # step a allows it
    assert sorted(run.open_users()) == ["bob", "m1"]
    run = Run(replace(flow(approval("a", role="mgr"), strict_here), allow_self_approval=True))
    run.start(submitter="bob")
    run.act("m1", "transfer", target="bob")              # the workflow allows it on step a
    run.act("bob")
    with pytest.raises(ActionError) as err:              # but step b says no
        run.act("d1", "transfer", target="bob")
    assert err.value.code == "target_is_submitter"
