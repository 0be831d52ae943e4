"""Separation of duties as a workflow definition says it: the
``allow_self_approval`` flag on the workflow and on a step (loaded from YAML),
and who is barred from a transfer or add-approver."""

from __future__ import annotations

from engine.approvals.duties import barred_targets, deciders, self_approval_allowed, target_refusal
from engine.definitions.loader import load_texts

DEFS = """\
kind: role
id: marketing_manager
title: 市场经理
---
kind: role
id: finance
title: 财务
---
kind: form
id: activity_request
title: 促销活动申请
fields:
  - {key: name, label: 活动名称, type: text}
---
kind: workflow
id: small_shop
title: 小店审批
form: activity_request
allow_self_approval: true
steps:
  - id: manager_review
    approval: {role: marketing_manager}
  - id: finance_review
    approval: {role: finance, allow_self_approval: false}
"""

HISTORY = [{"actor": "staff", "action": "submit"}, {"actor": "m1", "action": "approve"},
           {"actor": "f1", "action": "return"}, {"actor": "staff", "action": "resubmit"},
           {"actor": "m2", "action": "reject"}, {"actor": "system", "action": "approve"},
           {"actor": "m3", "action": "transfer", "target": "m4"}]


def test_the_flag_loads_per_workflow_and_per_step() -> None:
    result = load_texts([("defs.yaml", DEFS)])
    assert result.ok, [str(e) for e in result.errors]
    spec = result.definitions.workflows["small_shop"]
    assert spec.allow_self_approval is True
    assert self_approval_allowed(spec, "manager_review") is True     # inherits the workflow's
    assert self_approval_allowed(spec, "finance_review") is False    # the step says no
    assert barred_targets(spec, "manager_review", submitter="staff", history=HISTORY) == frozenset()
    assert barred_targets(spec, "finance_review", submitter="staff", history=HISTORY) == {"staff", "m1", "m2"}


def test_default_is_separation_and_only_decisions_count() -> None:
    result = load_texts([("defs.yaml", DEFS.replace("allow_self_approval: true\n", "")
                          .replace(", allow_self_approval: false", ""))])
    assert result.ok, [str(e) for e in result.errors]
    spec = result.definitions.workflows["small_shop"]
    assert spec.allow_self_approval is False and not self_approval_allowed(spec, "manager_review")
    assert deciders(HISTORY) == {"m1", "m2"}          # not a return, a transfer, nor the engine
    assert target_refusal("staff", submitter="staff", history=HISTORY) == "target_is_submitter"
    assert target_refusal("m2", submitter="staff", history=HISTORY) == "target_already_decided"
    assert target_refusal("f1", submitter="staff", history=HISTORY) is None
    assert target_refusal("m4", submitter="staff", history=HISTORY) is None
