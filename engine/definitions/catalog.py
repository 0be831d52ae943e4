"""Names the definition language knows that are not definitions themselves:
events, connector types, journey facts and built-in roles.

Kept as data in one place so that the loader's "did you mean" and the runtime
agree on the same names.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from engine.conditions.customer_fields import CUSTOMER_FIELDS
from engine.conditions.kinds import FieldKind

#: Roles that exist without a definition. ``admin`` may do everything.
BUILTIN_ROLES: frozenset[str] = frozenset({"admin"})

#: Events rules can be triggered by. ``custom.<name>`` events are posted through the API.
EVENTS: frozenset[str] = frozenset({
    "record.created", "record.updated",
    "workflow.approved", "workflow.rejected", "task.created", "task.done",
    "customer.registered", "customer.updated", "customer.tagged",
    "order.created", "order.refunded", "feedback.received",
    "coupon.issued", "coupon.redeemed",
    "message.sent", "message.replied", "message.clicked",
    "tier.changed",  # loyalty: payload {customer_id, from, to, direction: up|down}
})
CUSTOM_EVENT_PREFIX = "custom."

#: Events that need ``form:`` / ``workflow:`` to say whose records they are about.
RECORD_EVENTS = frozenset({"record.created", "record.updated"})
WORKFLOW_EVENTS = frozenset({"workflow.approved", "workflow.rejected", "task.created"})

#: Facts about a subject's journey that ``if`` and ``exit_when`` may test,
#: next to the customer's own fields.
JOURNEY_FACTS: Mapping[str, FieldKind] = MappingProxyType({
    "coupon_redeemed": FieldKind.TEXT,   # value: a coupon pool id
    "coupon_issued": FieldKind.TEXT,     # value: a coupon pool id
    "message_replied": FieldKind.BOOL,
    "message_clicked": FieldKind.BOOL,
    "ordered_since_entry": FieldKind.BOOL,
    "feedback.score": FieldKind.NUMBER,
})
POOL_FACTS = frozenset({"coupon_redeemed", "coupon_issued"})

#: Customer fields a rule may set (the others are computed or kept elsewhere).
WRITABLE_CUSTOMER_FIELDS: frozenset[str] = frozenset({"name", "gender", "city", "level", "birthday", "contract_end"})

#: Date fields of customers a date-relative trigger may use.
CUSTOMER_DATE_FIELDS = frozenset(k for k, v in CUSTOMER_FIELDS.items() if v in (FieldKind.DATE, FieldKind.DATETIME))


@dataclass(frozen=True)
class ConnectorType:
    """What the loader knows of a connector type before its plug-in is loaded."""

    channel: str | None  # None: any channel
    secrets: tuple[str, ...] = ()
    settings: tuple[str, ...] = ()


#: Connector types shipped with promoflow. Third-party types registered through
#: the ``promoflow.connectors`` entry point group are added at load time.
CONNECTOR_TYPES: Mapping[str, ConnectorType] = MappingProxyType({
    "log": ConnectorType(None),
    "memory": ConnectorType(None),
    "sandbox": ConnectorType(None),  # the built-in inbox of the demo (/sandbox)
    "smtp": ConnectorType("email", secrets=("password",), settings=("host", "from_address")),
    "aliyun_sms": ConnectorType("sms", secrets=("access_key_id", "access_key_secret")),
    "tencent_sms": ConnectorType("sms", secrets=("secret_id", "secret_key"), settings=("sdk_app_id",)),
    "twilio": ConnectorType("sms", secrets=("account_sid", "auth_token"), settings=("from_number",)),
    "wecom_app": ConnectorType("wecom", secrets=("corp_secret",), settings=("corp_id", "agent_id")),
    "wecom_robot": ConnectorType("wecom", secrets=("webhook_key",)),
    "wecom_external": ConnectorType("wecom", secrets=("corp_secret",), settings=("corp_id",)),
    "webhook": ConnectorType("webhook", secrets=("signing_key",), settings=("url",)),
    # Receive only (issue 7, feedback in): channel ``feedback``, never chosen to send.
    "wecom_callback": ConnectorType("feedback", secrets=("callback_token", "callback_aes_key"), settings=("corp_id",)),
    "survey_webhook": ConnectorType("feedback", secrets=("signing_key",)),
    "survey_pull": ConnectorType("feedback", settings=("url",)),
})

#: Weekday names of a calendar's ``weekends:``, Monday first (``date.weekday()`` numbers).
WEEKDAY_NAMES: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

#: Channels whose marketing messages need the customer's consent.
CONSENT_CHANNELS = frozenset({"sms", "email", "wecom"})

#: KPIs a campaign's ``targets`` may name, and whether more is better (False:
#: a target is a ceiling, e.g. the cost of a new customer). The names are
#: fields of ``engine.campaigns.kpis.CampaignKpis``.
TARGET_METRICS: Mapping[str, bool] = MappingProxyType({
    "audience": True, "sent": True, "delivered": True, "clicked": True, "replied": True,
    "coupons_issued": True, "coupons_redeemed": True, "redemption_rate": True,
    "converted_customers": True, "conversion_rate": True, "attributed_orders": True, "attributed_revenue": True,
    "average_order_value": True, "new_customers": True, "roi": True, "cac": False, "total_cost": False,
    "repurchase_rate_30d": True, "repurchase_rate_90d": True, "churn_rate": False, "nps": True,
    "nps_answers": True, "clv": True,
})
