"""Separation of duties (职责分离, the four-eyes rule) on one approval instance.

Why: a marketing manager could transfer a task to the staff member who had
submitted the request, who then approved his own request. Transfer (转交) and
add-approver (加签) therefore refuse, as the new holder of a task, the
submitter and anyone who already decided (approved or rejected) on the same
instance, in any step and any round; the task page leaves them out of its
choices. A workflow may allow it explicitly with ``allow_self_approval: true``
on the workflow, or on one approval step (the step's value wins over the
workflow's).

Pure functions over the machine's history entries or the views' dicts, so the
machine (which refuses) and the web layer (which does not offer) apply the
same rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from engine.definitions.specs import ApprovalSpec, BranchSpec, ParallelSpec, WorkflowSpec, WorkflowStep

#: History actions by which a person decided on an instance.
DECISIONS = frozenset({"approve", "reject"})
#: The refusal codes (``ActionError.code``).
TARGET_IS_SUBMITTER = "target_is_submitter"
TARGET_ALREADY_DECIDED = "target_already_decided"


def _field(entry: Any, name: str) -> Any:
    return entry.get(name) if isinstance(entry, Mapping) else getattr(entry, name, None)


def _find(steps: Iterable[WorkflowStep], step_id: str) -> WorkflowStep | None:
    for step in steps:
        if step.id == step_id:
            return step
        action = step.action
        inner: list[tuple[WorkflowStep, ...]] = []
        if isinstance(action, BranchSpec):
            inner = [case.steps for case in action.cases] + [action.default]
        elif isinstance(action, ParallelSpec):
            inner = [branch.steps for branch in action.branches]
        for seq in inner:
            found = _find(seq, step_id)
            if found is not None:
                return found
    return None


def self_approval_allowed(spec: WorkflowSpec | None, step_id: str | None) -> bool:
    """Does the workflow (or this step of it) explicitly allow handing a task
    to the submitter or to someone who already decided?"""
    if spec is None:
        return False
    step = _find(spec.steps, step_id) if step_id else None
    if step is not None and isinstance(step.action, ApprovalSpec) and step.action.allow_self_approval is not None:
        return step.action.allow_self_approval
    return spec.allow_self_approval


def deciders(history: Iterable[Any]) -> frozenset[str]:
    """Everyone who approved or rejected on the instance (history entries or
    their dicts; the engine's own ``system`` steps do not count)."""
    return frozenset(str(_field(e, "actor")) for e in history
                     if _field(e, "action") in DECISIONS and _field(e, "actor") not in (None, "", "system"))


def target_refusal(target: str, *, submitter: str | None, history: Iterable[Any]) -> str | None:
    """Why ``target`` may not be handed a task of this instance (a code of
    this module), or None when they may."""
    if submitter and target == submitter:
        return TARGET_IS_SUBMITTER
    if target in deciders(history):
        return TARGET_ALREADY_DECIDED
    return None


def barred_targets(spec: WorkflowSpec | None, step_id: str | None, *, submitter: str | None,
                   history: Iterable[Any]) -> frozenset[str]:
    """The people a transfer or add-approver on ``step_id`` may not name
    (empty when the workflow allows self-approval there)."""
    if self_approval_allowed(spec, step_id):
        return frozenset()
    return deciders(history) | ({submitter} if submitter else frozenset())


__all__ = ["DECISIONS", "TARGET_ALREADY_DECIDED", "TARGET_IS_SUBMITTER", "barred_targets", "deciders",
           "self_approval_allowed", "target_refusal"]
