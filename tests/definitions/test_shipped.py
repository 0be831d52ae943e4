"""The shipped promotion process (forms/, workflows/, config/) loads without a
single error, and says what the product owner asked for."""

from __future__ import annotations

from datetime import time, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from engine.conditions.ast import All, Compare, Not, SegmentRef
from engine.conditions.check import referenced_segments, required_true_fields
from engine.definitions import specs as s
from engine.definitions.loader import DefinitionSet, load_paths

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = [ROOT / "forms", ROOT / "workflows", ROOT / "config"]


@pytest.fixture(scope="module")
def defs() -> DefinitionSet:
    result = load_paths(FOLDERS, relative_to=ROOT)
    assert [str(e) for e in result.errors] == []
    return result.definitions


def _journey_steps(steps):
    for step in steps:
        yield step
        if isinstance(step.action, s.IfSpec):
            yield from _journey_steps(step.action.then)
            yield from _journey_steps(step.action.else_)


def _workflow_sends(wf: s.WorkflowSpec):
    for step in wf.steps:
        if isinstance(step.action, s.SendSpec):
            yield step.action
    for action in wf.on_approve + wf.on_reject:
        if isinstance(action, s.SendSpec):
            yield action


def _all_sends(defs: DefinitionSet):
    for wf in defs.workflows.values():
        for send in _workflow_sends(wf):
            yield wf.id, send
    for rule in defs.rules.values():
        for step in _journey_steps(rule.steps):
            if isinstance(step.action, s.SendSpec):
                yield rule.id, step.action


def test_every_shipped_file_is_a_definition(defs: DefinitionSet) -> None:
    files = {d.file for d in defs.documents}
    on_disk = {str(p.relative_to(ROOT)) for folder in FOLDERS for p in folder.rglob("*.yaml")
               if not p.name.startswith("settings")}
    assert files == on_disk


def test_one_folder_per_scenario(defs: DefinitionSet) -> None:
    folders = {Path(d.file).parts[1] for d in defs.documents if d.file.split("/")[0] in ("forms", "workflows")}
    assert {"activity", "redemption", "survey", "member", "renewal"} <= folders


def test_roles(defs: DefinitionSet) -> None:
    assert {r.id: r.title for r in defs.roles.values()} == {
        "staff": "门店员工", "marketing": "市场专员", "marketing_manager": "市场经理",
        "marketing_director": "市场总监", "finance": "财务", "store_manager": "店长",
        "account_manager": "客户经理", "integration": "系统对接",
    }
    assert all(r.title_en for r in defs.roles.values())


def test_connectors_take_secrets_from_the_environment(defs: DefinitionSet) -> None:
    by_channel = {c.channel: c for c in defs.connectors.values() if c.default or c.channel == "log"}
    assert by_channel["sms"].type == "aliyun_sms"
    assert dict(by_channel["sms"].secrets) == {
        "access_key_id": "ALIYUN_ACCESS_KEY_ID", "access_key_secret": "ALIYUN_ACCESS_KEY_SECRET"}
    assert by_channel["sms"].settings["sign_name"]
    assert by_channel["sms"].per_second == 50
    assert by_channel["email"].type == "smtp"
    assert dict(by_channel["email"].secrets) == {"password": "SMTP_PASSWORD"}
    assert by_channel["email"].settings["starttls"] is True
    assert by_channel["wecom"].type == "wecom_app"
    assert dict(by_channel["wecom"].secrets) == {"corp_secret": "WECOM_CORP_SECRET"}
    assert by_channel["log"].type == "log"
    for connector in defs.connectors.values():
        for value in connector.settings.values():
            assert "secret" not in str(value).lower()


def test_activity_form(defs: DefinitionSet) -> None:
    form = defs.forms["activity_request"]
    assert form.title == "促销活动申请" and form.title_en
    assert form.submit_roles == ("staff", "marketing")
    assert form.field("channel").option_values == ("wecom", "sms", "email", "store")
    assert form.field("budget").type == "money" and form.field("budget").required
    assert form.field("end_date").after == "start_date"
    assert form.field("coupon_value").visible_if == Compare(
        "discount_type", "eq", "coupon", path=("fields", 6, "visible_if", "discount_type"),
        key_path=("fields", 6, "visible_if", "discount_type"))
    table = form.field("materials")
    assert table.type == "table" and table.label == "物料清单"
    assert [(f.key, f.type) for f in table.fields] == [("item", "text"), ("qty", "integer"), ("unit_cost", "money")]
    assert (table.min_rows, table.max_rows) == (1, 50)
    attachments = form.field("attachments")
    assert attachments.type == "file" and ".pdf" in attachments.accept
    assert attachments.max_size_bytes == 10 * 1024 * 1024
    assert form.field("description").type == "textarea"
    assert form.field("target_store").type == "select"
    assert all(f.label_en for f in form.fields)


def test_redemption_and_survey_forms(defs: DefinitionSet) -> None:
    redemption = defs.forms["store_redemption"]
    assert redemption.field("customer").type == "customer"
    assert redemption.field("coupon_code").pattern
    assert redemption.field("redeemed_at").default == "now"
    assert redemption.field("staff").default == "current_user"
    survey = defs.forms["nps_survey"]
    assert survey.public is True
    score = survey.field("score")
    assert (score.type, score.min, score.max) == ("integer", 0, 10)
    assert [o.label for o in survey.field("reason").options] == ["物流慢", "客服态度", "产品问题", "价格", "其他"]
    assert survey.field("contact_ok").type == "checkbox"


def test_activity_workflow(defs: DefinitionSet) -> None:
    wf = defs.workflows["activity_approval"]
    assert wf.form == "activity_request"
    steps = {step.id: step for step in wf.steps}
    manager = steps["manager_review"]
    assert manager.action.assignees.role == "marketing_manager" and manager.action.mode == "any"
    assert manager.due == timedelta(hours=48)
    assert manager.on_overdue.remind and manager.on_overdue.escalate_to.role == "marketing_director"
    finance = steps["finance_review"]
    assert finance.action.assignees.role == "finance" and finance.action.mode == "all"
    assert finance.when is not None
    assert (finance.when.field, finance.when.op, finance.when.value) == ("budget", "gt", 50000)
    assert steps["mark_approved"].action.values == {"status": "approved"}
    announce = steps["announce"].action
    assert (announce.channel, announce.to, announce.template) == (
        "wecom", s.Recipient("role", "store_manager"), "activity_approved")
    reject_sends = [a for a in wf.on_reject if isinstance(a, s.SendSpec)]
    assert [(a.channel, a.to, a.template) for a in reject_sends] == [
        ("email", s.Recipient("submitter"), "activity_rejected")]
    assert defs.templates["activity_approved"].delivery_class == "transactional"
    assert defs.templates["activity_rejected"].delivery_class == "transactional"


def test_segments(defs: DefinitionSet) -> None:
    segs = defs.segments
    hva = segs["high_value_active"].condition
    assert isinstance(hva, All)
    assert {(c.field, c.op, c.value) for c in hva.items} == {("rfm_r", "gte", 4), ("rfm_f", "gte", 4), ("rfm_m", "gte", 4)}
    dormant = segs["dormant"].condition
    assert (dormant.field, dormant.op, dormant.value) == ("last_purchase_at", "older_than", timedelta(days=180))
    assert segs["churn_risk"].title == "流失风险"
    assert referenced_segments(segs["churn_risk"].condition) == {"dormant"}
    assert any(isinstance(i, Not) and i.item == SegmentRef("dormant", path=i.item.path)
               for i in segs["churn_risk"].condition.items)
    assert referenced_segments(segs["vip_at_risk"].condition) == {"churn_risk"}


def test_winback_rule(defs: DefinitionSet) -> None:
    rule = defs.rules["winback_90d"]
    assert rule.trigger == s.ScheduleTrigger("0 10 * * *", "Asia/Shanghai")
    assert rule.once_per == timedelta(days=180)
    assert rule.quiet_hours == (time(21, 0), time(9, 0))
    assert {"consent.sms"} <= required_true_fields(rule.audience)
    first, second, wait, branch = rule.steps
    assert first.action == s.IssueCouponSpec("winback20", Decimal(20), timedelta(days=14))
    assert (second.action.channel, second.action.template) == ("sms", "winback_sms")
    assert wait.action.duration == timedelta(days=7)
    assert isinstance(branch.action, s.IfSpec)
    assert (branch.action.condition.field, branch.action.condition.value) == ("coupon_redeemed", "winback20")
    assert branch.action.then == ()
    guard = branch.action.else_[0].action
    assert (guard.condition.field, guard.condition.value) == ("consent.wecom", True)
    assert guard.then[0].action.channel == "wecom"


def test_other_rules(defs: DefinitionSet) -> None:
    rules = defs.rules
    welcome = rules["welcome_journey"]
    assert welcome.trigger == s.EventTrigger("customer.registered")
    assert welcome.steps[0].action == s.TagSpec("new_member")
    assert any(isinstance(st.action, s.WaitSpec) and st.action.duration == timedelta(days=3) for st in welcome.steps)
    renewal = rules["renewal_reminder"]
    assert isinstance(renewal.trigger, s.DateFieldTrigger)
    assert (renewal.trigger.field, renewal.trigger.offset) == ("contract_end", timedelta(days=90))
    assert renewal.delivery_class == "transactional"
    assert renewal.steps[0].action.to == s.Recipient("account_manager")
    birthday = rules["birthday_greeting"].trigger
    assert (birthday.field, birthday.yearly, birthday.at) == ("birthday", True, time(9, 30))
    assert {"consent.sms"} <= required_true_fields(rules["birthday_greeting"].audience, {
        sid: seg.condition for sid, seg in defs.segments.items()})
    followup = rules["nps_detractor_followup"]
    assert followup.trigger.event == "feedback.received"
    assert (followup.trigger.when.field, followup.trigger.when.op, followup.trigger.when.value) == ("score", "lte", 6)
    task = followup.steps[-1].action
    assert (task.title, task.to, task.due) == ("24小时内回访不满意客户", s.Recipient("role", "store_manager"),
                                               timedelta(hours=24))
    assert task.remind_every == timedelta(hours=4) and task.on_overdue.escalate_to.role == "marketing_manager"
    assert [o.id for o in task.outcomes] == ["contacted", "resolved", "no_answer", "declined"]
    assert task.outcomes[2].label == "未接通" and task.outcomes[2].label_en == "No answer"  # known ids keep their labels
    nps = rules["post_campaign_nps"]
    channels = [st.action.channel for st in _journey_steps(nps.steps) if isinstance(st.action, s.SendSpec)]
    assert channels == ["sms", "email"]


def test_every_send_has_a_template_for_its_channel(defs: DefinitionSet) -> None:
    sends = list(_all_sends(defs))
    assert len(sends) >= 10
    for owner, send in sends:
        template = defs.templates.get(send.template)
        assert template is not None, (owner, send.template)
        assert send.channel in template.channels, (owner, send.template)
        assert any(c.channel == send.channel for c in defs.connectors.values()), (owner, send.channel)


def test_every_pool_issued_exists(defs: DefinitionSet) -> None:
    issued = {st.action.pool for rule in defs.rules.values() for st in _journey_steps(rule.steps)
              if isinstance(st.action, s.IssueCouponSpec)}
    assert issued == {"welcome10", "winback20", "birthday_gift", "early_bird50", "referral_reward20", "holiday_o2o30",
                      "flash_sale50", "signin_reward10"}
    assert issued <= set(defs.coupon_pools)


def test_templates_fit_their_channels(defs: DefinitionSet) -> None:
    for template in defs.templates.values():
        if "sms" in template.channels:
            assert template.sms and template.sms.sign_name and template.sms.aliyun_template_code.startswith("SMS_")
            assert template.sms.params
        if "email" in template.channels:
            assert template.subject
        assert "{{" in template.body
