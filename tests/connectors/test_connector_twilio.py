"""Twilio against the fake provider; status callback signatures."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from connector_support import make_spec

from connectors.registry import load_connector
from connectors.twilio import TwilioConnector, twilio_signature
from engine.ports import (
    ConfigurationError,
    Outcome,
    OutgoingMessage,
    WebhookVerificationError,
)

ENV = {"TW_SID": "ACtest0000000000000000000000000000", "TW_TOKEN": "twilio-test-token"}
CALLBACK = "https://promo.example.com/hooks/twilio/status"


def connector(fake, clock, session, env=ENV, **settings) -> TwilioConnector:
    spec = make_spec("twilio", "sms", {"base_url": fake.url, "from_number": "+15005550006",
                                       "status_callback": CALLBACK, "read_timeout": 0.5, **settings},
                     {"account_sid": "TW_SID", "auth_token": "TW_TOKEN"})
    return load_connector(spec, env=env, session=session, clock=clock)  # type: ignore[return-value]


def sms(i: int, to: str) -> OutgoingMessage:
    return OutgoingMessage(id=f"m{i}", channel="sms", recipient=to, body="Your coupon: SAVE20")


def test_send_classifies_every_documented_case(fake_twilio, clock, session) -> None:
    fake_twilio.stopped.add("+14155550102")
    fake_twilio.unroutable.add("+14155550103")
    results = connector(fake_twilio, clock, session).send_batch(
        [sms(1, "+14155550101"), sms(2, "+14155550102"), sms(3, "+14155550103"), sms(4, "4155550104")])
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.PERMANENT, Outcome.PERMANENT, Outcome.PERMANENT]
    assert results[0].provider_id.startswith("SM")
    assert results[1].code == "21610" and results[1].suppress
    assert results[2].code == "21612"
    assert results[3].code == "21211"
    assert len(fake_twilio.requests) == 3  # the non-E.164 number never left


def test_rate_limit_is_retryable(fake_twilio, clock, session) -> None:
    fake_twilio.rate_limited = 1
    [result] = connector(fake_twilio, clock, session).send_batch([sms(1, "+14155550101")])
    assert result.outcome is Outcome.RETRYABLE and result.code == "20429"


def test_bad_token_and_from_are_configuration_errors(fake_twilio, clock, session) -> None:
    with pytest.raises(ConfigurationError) as info:
        connector(fake_twilio, clock, session, env=ENV | {"TW_TOKEN": "nope"}).send_batch([sms(1, "+14155550101")])
    assert info.value.code == "20003" and "nope" not in str(info.value)
    with pytest.raises(ConfigurationError, match="21606"):
        connector(fake_twilio, clock, session, from_number="+15550000000").send_batch([sms(1, "+14155550101")])


@pytest.mark.parametrize("fault, outcome", [("timeout", Outcome.UNKNOWN), ("503", Outcome.RETRYABLE),
                                            ("500", Outcome.UNKNOWN), ("malformed", Outcome.UNKNOWN)])
def test_transport_faults(fake_twilio, clock, session, fault, outcome) -> None:
    fake_twilio.inject(fault)
    [result] = connector(fake_twilio, clock, session).send_batch([sms(1, "+14155550101")])
    assert result.outcome is outcome


def test_status_callback_signature(fake_twilio, clock, session) -> None:
    c = connector(fake_twilio, clock, session)
    form = {"MessageSid": "SM1", "MessageStatus": "delivered", "To": "+14155550101"}
    signature = twilio_signature("twilio-test-token", CALLBACK, form)
    [item] = c.verify_webhook({"X-Twilio-Signature": signature}, urlencode(form).encode())
    assert (item.kind, item.provider_id, item.status) == ("receipt", "SM1", "delivered")
    with pytest.raises(WebhookVerificationError):
        c.verify_webhook({"X-Twilio-Signature": signature}, urlencode(form | {"MessageStatus": "failed"}).encode())
    with pytest.raises(WebhookVerificationError):
        c.verify_webhook({}, urlencode(form).encode())
