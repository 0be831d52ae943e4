"""Templates render in the sandbox; the outbox writes one row per idempotency key."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.definitions.specs import TemplateSpec
from engine.outbox import OutboxError, deliver_log, enqueue, pick_connector
from engine.storage.models import OutboxMessage
from engine.templates import TemplateRenderError, render, render_string

NOW = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


def _t(body: str, **kw: object) -> TemplateSpec:
    return TemplateSpec(id="t", channels=("email",), body=body, **kw)  # type: ignore[arg-type]


def test_plain_text_is_not_escaped_and_html_is() -> None:
    msg = render(_t("Hi {{ customer.name }}", subject="For {{ customer.name }}"),
                 {"customer": {"name": "<Tom & Jerry>"}}, channel="email")
    assert msg.body == "Hi <Tom & Jerry>"
    assert msg.subject == "For <Tom & Jerry>"
    assert msg.html == "Hi &lt;Tom &amp; Jerry&gt;"
    html = render(_t("x", html="<p>{{ customer.name }}</p>"), {"customer": {"name": "<b>"}}, channel="email")
    assert html.html == "<p>&lt;b&gt;</p>"


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__ }}",
    "{{ customer.__class__ }}",
    "{{ render.__globals__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{% for c in ().__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
])
def test_sandbox_refuses_internals(source: str) -> None:
    with pytest.raises(TemplateRenderError):
        render_string(source, {"customer": {"name": "x"}, "render": render})


def test_undefined_values_are_errors_naming_the_template() -> None:
    with pytest.raises(TemplateRenderError, match="template `t`.*coupon"):
        render(_t("{{ coupon.code }}"), {"customer": {}}, channel="sms")
    with pytest.raises(TemplateRenderError):
        render_string("{% if %}", {})


def test_sms_params_and_wecom_parts(definitions) -> None:
    ctx = {"customer": {"name": "王芳", "id": 3, "contract_end": "2026-06-01"},
           "coupon": {"value": 20, "code": "WB20X"}}
    sms = render(definitions.templates["winback_sms"], ctx, channel="sms")
    assert sms.params["name"] == "王芳" and sms.params["code"] == "WB20X" and sms.params["value"] == "20"
    assert "王芳" in sms.body and "WB20X" in sms.body
    wecom = render(definitions.templates["renewal_due"], {**ctx, "base_url": "https://promo.example.com"},
                   channel="wecom")
    assert wecom.params["url"] == "https://promo.example.com/customers/3"
    assert wecom.params["msgtype"] == "textcard"


def test_connector_choice(definitions) -> None:
    assert pick_connector(definitions, "wecom").id == "wecom_app"
    assert pick_connector(definitions, "wecom", "wecom_customer").id == "wecom_customer"
    assert pick_connector(definitions, "webhook").id == "hook_log"  # the only one
    with pytest.raises(OutboxError):
        pick_connector(definitions, "fax")
    with pytest.raises(OutboxError):
        pick_connector(definitions, "sms", "wecom_app")


def test_enqueue_is_idempotent_and_log_delivers(session: Session, definitions) -> None:
    ctx = {"customer": {"name": "李四"}, "coupon": {"value": 20, "code": "C1"}}
    args = {"channel": "sms", "to": "13800000000", "template_id": "winback_sms", "context": ctx, "now": NOW,
            "definitions": definitions, "delivery_class": "marketing", "rule_id": "winback_90d",
            "customer_id": 5}
    first = enqueue(session, idempotency_key="k1", **args)  # type: ignore[arg-type]
    again = enqueue(session, idempotency_key="k1", **args)  # type: ignore[arg-type]
    assert isinstance(first, int) and again is None
    row = session.execute(select(OutboxMessage)).scalar_one()
    assert (row.status, row.connector, row.customer_id, row.template_id) == ("queued", "sms_aliyun", 5, "winback_sms")
    assert row.next_attempt_at == NOW.replace(tzinfo=None)
    assert deliver_log(session, NOW, definitions=definitions) == 1
    assert deliver_log(session, NOW, definitions=definitions) == 0
    assert session.execute(select(OutboxMessage.status, OutboxMessage.sent_at)).one() == ("sent", NOW.replace(tzinfo=None))
    assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 1


def test_enqueue_unknown_template(session: Session, definitions) -> None:
    with pytest.raises(OutboxError):
        enqueue(session, channel="sms", to="1", template_id="nope", context={}, now=NOW,
                idempotency_key="k", definitions=definitions)
    with pytest.raises(OutboxError):
        enqueue(session, channel="sms", to="1", template_id="nope", context={}, now=NOW, idempotency_key="k")


def test_non_log_connectors_stay_queued(session: Session, definitions) -> None:
    real = replace(definitions.connectors["sms_aliyun"], type="aliyun_sms")
    from engine.definitions.loader import DefinitionSet
    specs = {k: dict(v) for k, v in definitions.specs.items()}
    specs["connector"]["sms_aliyun"] = real
    defs = DefinitionSet(documents=definitions.documents, specs=specs)
    enqueue(session, channel="sms", to="1", template_id="birthday_sms", now=NOW, idempotency_key="b",
            context={"customer": {"name": "x"}, "coupon": {"value": 30}}, definitions=defs)
    assert deliver_log(session, NOW, definitions=defs) == 0
