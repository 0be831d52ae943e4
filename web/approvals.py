"""The web layer's thin adapter over the engine's ``WorkflowService``: what
the inbox, task and record pages and the task API share.

Nothing here decides a transition; it finds tasks, maps the engine's
exceptions to HTTP statuses, and turns instance and task views into what a
template or a JSON body needs (localized step titles, status labels, the
timeline, the diagram, the buttons a step allows).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from flask import g
from markupsafe import Markup

from engine.accounts import Principal
from engine.approvals import ActionError
from engine.approvals.duties import TARGET_ALREADY_DECIDED, TARGET_IS_SUBMITTER, barred_targets
from engine.definitions.specs import (
    ApprovalSpec,
    BranchSpec,
    ParallelSpec,
    WorkflowSpec,
    WorkflowStep,
)

from . import services
from .i18n import get_locale, t

#: Actions a page or API call may ask for, in button order.
ACTIONS = ("approve", "reject", "return", "transfer", "add_approver", "comment")
#: Actions that need a ``target`` user.
TARGET_ACTIONS = frozenset({"transfer", "add_approver"})
#: Actions a step always offers; the rest only when the step's ``allow`` lists them.
ALWAYS = ("approve", "reject")
#: History actions by which an approver has acted (no withdraw after one until a resubmit).
ACTED = frozenset({"approve", "reject", "return", "transfer", "add_approver"})
#: History actions that (re)start a round.
ROUND_START = frozenset({"submit", "resubmit"})
#: Actions that must say why (退回 and 驳回 send the request back or end it: the submitter needs the reason).
REASON_ACTIONS = frozenset({"reject", "return"})
#: Inbox status filters.
TASK_FILTERS = ("open", "done", "all")
#: What ``POST /api/v1/tasks/bulk`` may do to many tasks at once.
BULK_ACTIONS = ("approve", "reject")
MAX_COMMENT = 2000
#: The actor name the engine writes for its own steps.
SYSTEM = "system"


class TaskError(Exception):
    """An action was refused; ``status`` is the HTTP status (403, 404, 409, 422),
    ``current`` the instance state when the engine gave one (409)."""

    def __init__(self, status: int, code: str, message: str, current: Any = None):
        super().__init__(message)
        self.status, self.code, self.message, self.current = status, code, message, current


def workflows() -> Any:
    """The app's WorkflowService, or None when the engine is not wired."""
    return getattr(services(), "workflows", None)


def value(obj: Any, name: str, default: Any = None) -> Any:
    """``obj.name`` or ``obj[name]`` (views may be dataclasses or dicts)."""
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


# ------------------------------------------------------------------ JSON

def to_plain(obj: Any) -> Any:
    """A view (dataclass, mapping, sequence, datetime, Decimal, set) as JSON-ready data."""
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if isinstance(obj, Decimal):
        return str(obj)
    to_json = getattr(obj, "to_json", None)
    if callable(to_json):
        return to_plain(to_json())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = [to_plain(v) for v in obj]
        return sorted(items, key=str) if isinstance(obj, (set, frozenset)) else items
    return str(obj)


# ------------------------------------------------------------------ tasks

def find_task(task_id: int) -> Any | None:
    """The task with ``task_id`` (any assignee, any status), or None."""
    wf = workflows()
    if wf is None or not 0 < task_id < 2**62:
        return None
    return wf.get_task(task_id, now=services().now())


def assigned(task: Any, user: Principal) -> bool:
    return value(task, "assignee") == user.username


def act(task_id: int, action: str, *, user: Principal, comment: str | None, target: str | None,
        expected_version: int | None) -> Any:
    """Run ``action`` on the task for ``user`` and return the instance view.

    Raises:
        TaskError: 404 unknown task, 403 not assigned, 409 closed or stale
            (with the current state), 422 a bad target or action.
    """
    from engine import workflows as engine_workflows

    wf = workflows()
    if wf is None or find_task(task_id) is None:
        raise TaskError(404, "not_found", f"no task {task_id}")
    if action not in ACTIONS:
        raise TaskError(404, "not_found", f"no action `{action}`")
    if action in REASON_ACTIONS and not (comment or "").strip():
        raise TaskError(422, "reason_required", t("wf_reason_required", action=t(f"wf_button_{action}")))
    if action == "comment" and not (comment or "").strip():  # nothing to record: say so rather than log nothing
        raise TaskError(422, "reason_required", t("wf_comment_empty"))
    if action in TARGET_ACTIONS and (not target or services().accounts.by_name(target) is None):
        raise TaskError(422, "invalid_target", t("wf_pick_user") if target is None else
                            t("wf_unknown_user", name=target))
    svc = services()
    try:
        return wf.act(task_id, actor=user.username, action=action, comment=comment or None,
                      target=target if action in TARGET_ACTIONS else None, now=svc.now(),
                      expected_version=expected_version)
    except engine_workflows.NotAssigned:
        raise TaskError(403, "not_assigned", f"task {task_id} is not assigned to {user.username}") from None
    except engine_workflows.StaleTask as exc:  # before TaskClosed, in case one derives from the other
        raise TaskError(409, "stale_task", f"task {task_id} changed since version {expected_version}",
                        getattr(exc, "current", None)) from None
    except engine_workflows.TaskClosed as exc:
        raise TaskError(409, "task_closed", f"task {task_id} was already acted on",
                        getattr(exc, "current", None)) from None
    except ActionError as exc:  # the step does not allow it, an unknown target, …
        if exc.code in SEPARATION_CODES:
            raise TaskError(422, exc.code, t(f"wf_{exc.code}", name=display_name(target))) from None
        raise action_error(exc, task_id) from None
    except LookupError:  # TaskNotFound
        raise TaskError(404, "not_found", f"no task {task_id}") from None


#: The machine's separation-of-duties refusals (a ``target`` that may not hold the task).
SEPARATION_CODES = frozenset({TARGET_IS_SUBMITTER, TARGET_ALREADY_DECIDED})
#: The machine's refusal codes → HTTP status.
ACTION_STATUS = {"unknown_task": 404, "not_assigned": 403, "not_submitter": 403, "task_closed": 409,
                 "not_running": 409, "already_acted": 409, "not_allowed": 422, "bad_action": 422,
                 "bad_target": 422, TARGET_IS_SUBMITTER: 422, TARGET_ALREADY_DECIDED: 422}


def barred_targets_for(instance: Any, spec: WorkflowSpec | None, step_id: str | None) -> frozenset[str]:
    """Whom a transfer or add-approver on this instance's ``step_id`` may not
    name (the submitter, whoever already decided), so the page does not offer them."""
    if instance is None:
        return frozenset()
    return barred_targets(spec, step_id, submitter=value(instance, "submitter"),
                          history=value(instance, "history", None) or ())


def action_error(exc: ActionError, task_id: int | None = None) -> TaskError:
    """An engine refusal as a TaskError (with the current state for a 409)."""
    status = ACTION_STATUS.get(exc.code, 422)
    current = getattr(exc, "current", None)
    if current is None and status == 409 and task_id is not None:
        task = find_task(task_id)
        if task is not None:
            current = workflows().instance_for_record(value(task, "record_id"), now=services().now())
    return TaskError(status, exc.code, exc.message, current)


# ------------------------------------------------------------------ specs

def workflow_spec(instance: Any) -> WorkflowSpec | None:
    """The definition version the instance runs on (None if it cannot be loaded)."""
    wf = workflows()
    return None if wf is None else wf.spec_for(instance)  # type: ignore[no-any-return]


def walk_steps(steps: Iterable[WorkflowStep]) -> Iterator[WorkflowStep]:
    """Every step, depth first through branches and parallel paths."""
    for step in steps:
        yield step
        action = step.action
        if isinstance(action, BranchSpec):
            for case in action.cases:
                yield from walk_steps(case.steps)
            yield from walk_steps(action.default)
        elif isinstance(action, ParallelSpec):
            for branch in action.branches:
                yield from walk_steps(branch.steps)


def find_step(spec: WorkflowSpec | None, step_id: str | None) -> WorkflowStep | None:
    if spec is None or not step_id:
        return None
    return next((s for s in walk_steps(spec.steps) if s.id == step_id), None)


def step_title(spec: WorkflowSpec | None, step_id: str | None, fallback: str | None = None) -> str:
    """The step's title in the request's locale."""
    step = find_step(spec, step_id)
    if step is not None:
        if get_locale() == "en" and step.title_en:
            return step.title_en
        if step.title:
            return step.title
    if step_id in ("submitter", "resubmit", "start", None):
        key = {"submitter": "wf_step_submitter", "resubmit": "wf_step_submitter", "start": "wf_step_start"}
        return t(key.get(step_id or "start", "wf_step_start"))
    return fallback or str(step_id)


def allowed_actions(spec: WorkflowSpec | None, step_id: str | None) -> list[str]:
    """The buttons a task of this step shows: approve and reject always,
    return / transfer / add approver when the step's ``allow`` lists them."""
    step = find_step(spec, step_id)
    if step is None or not isinstance(step.action, ApprovalSpec):
        return list(ALWAYS)
    allow = set(step.action.allow)
    return [a for a in ACTIONS if a in ALWAYS or (a in allow and a != "comment")]


# ------------------------------------------------------------------ display

def outcome_message(action: str, instance: Any) -> str:
    """What an action did, for the flash after it: where the request went
    (a 驳回 that sends it back to an earlier step says so, with the step)."""
    status = value(instance, "status")
    if action == "reject" and status == "running":
        spec = workflow_spec(instance)
        steps = "、".join(step_title(spec, s) for s in value(instance, "current_steps", None) or ())
        return t("wf_done_reject_to", step=steps)
    if action == "reject" and status == "rejected":
        return t("wf_done_reject_final")
    if action == "approve" and status == "approved":
        return t("wf_done_approve_final")
    if action == "approve" and status == "running":
        spec = workflow_spec(instance)
        steps = "、".join(step_title(spec, s) for s in value(instance, "current_steps", None) or ())
        return t("wf_done_approve_next", step=steps) if steps else t("wf_done_approve")
    return t(f"wf_done_{action}")


def status_label(status: str | None) -> str:
    key = f"wf_status_{status}"
    text = t(key)
    return str(status or "") if text == key else text


def task_status_label(status: str | None) -> str:
    key = f"wf_task_{status}"
    text = t(key)
    return str(status or "") if text == key else text


def action_label(action: str | None) -> str:
    key = f"wf_action_{action}"
    text = t(key)
    return str(action or "") if text == key else text


def display_name(username: str | None) -> str:
    """A user's display name (cached per request), or the user name as given."""
    if not username:
        return ""
    cache: dict[str, str] = g.setdefault("_pf_names", {})
    if username not in cache:
        user = services().accounts.by_name(username)
        cache[username] = user.name if user is not None else username
    return cache[username]


def timeline(instance: Any, spec: WorkflowSpec | None) -> list[dict[str, Any]]:
    """The instance's history as rows for the timeline template, oldest first."""
    rows = []
    for entry in value(instance, "history", None) or ():
        actor = value(entry, "actor")
        system = not actor or actor == SYSTEM
        rows.append({
            "at": value(entry, "at"), "actor": actor, "actor_name": t("wf_system") if system else display_name(actor),
            "action": value(entry, "action"), "action_label": action_label(value(entry, "action")),
            "step": step_title(spec, value(entry, "step_id")) if value(entry, "step_id") else "",
            "comment": value(entry, "comment") or "", "target": value(entry, "target"),
        })
    return rows


def current_steps(instance: Any, spec: WorkflowSpec | None) -> list[dict[str, Any]]:
    """Each current step with its title and the assignees of its open tasks."""
    open_tasks = [task for task in value(instance, "tasks", None) or () if value(task, "status") == "open"]
    out = []
    for step_id in value(instance, "current_steps", None) or ():
        assignees = [value(task, "assignee") for task in open_tasks if value(task, "step_id") == step_id]
        out.append({"id": step_id, "title": step_title(spec, step_id),
                    "assignees": [display_name(a) for a in assignees if a]})
    return out


def diagram(instance: Any) -> Markup | None:
    """The flow as inline SVG with the current step(s) highlighted, or None."""
    wf = workflows()
    svg = None if wf is None else wf.diagram(value(instance, "record_id"), locale=get_locale())
    return None if svg is None else Markup(svg)  # the renderer escapes every text it draws


def has_acted(instance: Any) -> bool:
    """Has an approver acted since the last (re)submit (so the submitter can no longer withdraw)?"""
    acted = False
    for entry in value(instance, "history", None) or ():
        action = value(entry, "action")
        if action in ROUND_START:
            acted = False
        elif action in ACTED:
            acted = True
    return acted


def may_withdraw(instance: Any, user: Principal | None, submitter: str | None) -> bool:
    """The submitter may withdraw while the request is returned, or running and nobody has acted."""
    if user is None or submitter != user.username:
        return False
    engine_says = value(instance, "can_withdraw")
    if engine_says is not None:
        return bool(engine_says)
    status = value(instance, "status")
    return status == "returned" or (status == "running" and not has_acted(instance))


def instance_json(instance: Any, spec: WorkflowSpec | None = None) -> dict[str, Any]:
    """The instance state for the API, with the history."""
    body = to_plain(instance)
    if not isinstance(body, dict):
        body = {"instance": body}
    return body  # type: ignore[no-any-return]


def task_json(task: Any) -> dict[str, Any]:
    return to_plain(task)  # type: ignore[no-any-return]
