"""SMS rows carry the provider's pre-approved template code for the chosen
connector (Aliyun and Tencent send only approved templates)."""

from datetime import UTC, datetime

from engine.definitions.loader import load_texts
from engine.outbox import OutboxItem, provider_template_code, row_for
from engine.templates import render

DEFS = """
- {kind: connector, id: ali, type: aliyun_sms, channel: sms, settings: {sign_name: 促销},
   secrets: {access_key_id: {env: A}, access_key_secret: {env: B}}}
- kind: template
  id: hello
  channels: [sms]
  class: transactional
  body: "{{ name }}，您好"
  sms: {sign_name: 促销, aliyun_template_code: SMS_123456, tencent_template_id: "998877", params: [name]}
"""


def test_row_carries_the_code_of_the_chosen_provider() -> None:
    defs = load_texts([("d.yaml", DEFS)]).raise_for_errors()
    template, connector = defs.templates["hello"], defs.connectors["ali"]
    assert provider_template_code(template, connector) == "SMS_123456"
    item = OutboxItem(channel="sms", to="13800138000", template_id="hello", context={"name": "李雷"},
                      idempotency_key="k1")
    row = row_for(item, render(template, {"name": "李雷"}, channel="sms"), connector,
                  datetime(2025, 1, 1, tzinfo=UTC), template)
    assert row["payload"]["template_code"] == "SMS_123456"
    assert row["payload"]["params"]["name"] == "李雷"
