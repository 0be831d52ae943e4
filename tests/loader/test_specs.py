"""The loader yields immutable, typed specs; nothing downstream sees raw dicts."""

import dataclasses
from datetime import time, timedelta
from decimal import Decimal

import pytest

from engine.conditions.ast import All, Compare
from engine.definitions import specs as s
from engine.definitions.loader import load_texts

TEXT = """
- {kind: role, id: staff, title: 员工}
- {kind: role, id: finance, title: 财务}
- {kind: role, id: store_manager, title: 店长}
- kind: fieldset
  id: contact
  fields:
    - {key: phone, type: phone, phone_region: cn}
- kind: form
  id: req
  title: 申请
  submit_roles: [staff]
  fields:
    - {key: budget, type: money, min: 0, required: true}
    - {key: kind, type: select, options: [{value: a, label: 甲, label_en: A}, b], default: b}
    - {key: start, type: date}
    - {key: end, type: date, after: start}
    - {key: note, type: text, visible_if: {kind: a}}
    - include: contact
    - key: items
      type: table
      min_rows: 1
      fields: [{key: sku, type: text}, {key: qty, type: integer, min: 1}]
- {kind: coupon_pool, id: c20, title: 20元券, value: 20, expires_in: 14d}
- {kind: connector, id: sms, type: log, channel: sms}
- {kind: connector, id: wx, type: log, channel: wecom}
- kind: template
  id: t_sms
  channels: [sms, wecom]
  body: "{{ customer.name }} 您好"
- kind: workflow
  id: flow
  title: 审批
  form: req
  steps:
    - id: a1
      approval: {mode: threshold, threshold: 2, users: [x, y]}
      due: 48h
      on_overdue: {escalate_to: {role: store_manager}}
    - id: br
      branch:
        cases:
          - when: {budget: {gt: 100}}
            steps: [{id: big, approval: {role: finance}}]
        default: [{id: small, set_field: {kind: a}}]
    - id: par
      parallel:
        - steps: [{id: p1, cc: {role: staff}}]
        - {id: right, steps: [{id: p2, send: {channel: wecom, to: {role: store_manager}, template: t_sms}}]}
- kind: rule
  id: r
  title: 规则
  trigger: {date_field: contract_end, before: 90d, at: "09:30"}
  audience: {customer: {all: [{consent.sms: true}, {consent.wecom: true}]}}
  once_per: 180d
  quiet_hours: "21:00-09:00"
  steps:
    - issue_coupon: {pool: c20, value: 20}
    - send: {channel: sms, template: t_sms}
    - wait: {for: 3d, until: "10:00", on: workdays}
    - if: {coupon_redeemed: c20}
      else:
        - send: {channel: wecom, template: t_sms}
"""


@pytest.fixture(scope="module")
def defs():
    result = load_texts([("x.yaml", TEXT)])
    assert [str(e) for e in result.errors] == []
    return result.definitions


def test_form_spec(defs):
    form = defs.forms["req"]
    assert isinstance(form, s.FormSpec)
    assert [f.key for f in form.fields] == ["budget", "kind", "start", "end", "note", "phone", "items"]
    assert form.field("kind").options[0] == s.OptionSpec("a", "甲", "A")
    assert form.field("kind").default == "b"
    assert form.field("end").after == "start"
    assert form.field("note").visible_if == Compare("note" if False else "kind", "eq", "a")
    assert form.field("phone").phone_region == "cn"   # from the included fieldset
    assert [c.key for c in form.field("items").fields] == ["sku", "qty"]
    assert "items" not in form.field_kinds() and "budget" in form.field_kinds()
    with pytest.raises(dataclasses.FrozenInstanceError):
        form.title = "x"  # type: ignore[misc]


def test_workflow_spec(defs):
    flow = defs.workflows["flow"]
    a1, br, par = flow.steps
    assert a1.type == "approval" and a1.action.mode == "threshold" and a1.action.threshold == 2
    assert a1.action.assignees == s.Assignees(users=("x", "y"))
    assert a1.due == timedelta(hours=48) and a1.on_overdue.escalate_to.role == "store_manager"
    assert br.type == "branch" and br.action.cases[0].when == Compare("budget", "gt", 100)
    assert br.action.default[0].action.values["kind"] == "a"
    assert [b.id for b in par.action.branches] == ["branch_1", "right"]
    send = par.action.branches[1].steps[0].action
    assert send == s.SendSpec("wecom", "t_sms", s.Recipient("role", "store_manager"))


def test_rule_spec(defs):
    rule = defs.rules["r"]
    assert rule.trigger == s.DateFieldTrigger("contract_end", timedelta(days=90), False, time(9, 30), "Asia/Shanghai")
    assert isinstance(rule.audience, All)
    assert rule.once_per == timedelta(days=180) and not rule.once_ever
    assert rule.quiet_hours == (time(21), time(9))
    coupon, send, wait, branch = rule.steps
    assert [st.id for st in rule.steps] == ["s1", "s2", "s3", "s4"]
    assert coupon.action == s.IssueCouponSpec("c20", Decimal("20"), None)
    assert wait.action == s.WaitSpec(timedelta(days=3), time(10), "workdays")
    assert branch.action.then == () and branch.action.else_[0].id == "s4_else_1"
    assert defs.coupon_pools["c20"].expires_in == timedelta(days=14)


def test_documents_keep_source_lines(defs):
    lines = {(d.kind, d.id): d.line for d in defs.documents}
    assert lines[("form", "req")] == 9
    assert defs.forms["req"].source == s.Source("x.yaml", 9)
