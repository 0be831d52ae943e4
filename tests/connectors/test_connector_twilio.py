"""Twilio against the fake provider; status callback signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac
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


def documented_signature(token: str, url: str, pairs: list[tuple[str, str]]) -> str:
    """Twilio's documented algorithm, written out here independently of the
    connector: the full URL, then each POST parameter sorted by name (a
    repeated name once per distinct value, values sorted), name then value,
    no delimiters; HMAC-SHA1 with the auth token; Base64."""
    text = url
    for name, value in sorted(set(pairs)):
        text += name + value
    return base64.b64encode(hmac.new(token.encode(), text.encode(), hashlib.sha1).digest()).decode()


RECEIPT = [("MessageSid", "SM9"), ("MessageStatus", "undelivered"), ("ErrorCode", "30003"), ("To", "+14155550101"),
           ("ChannelStatusMessage", "b"), ("ChannelStatusMessage", "a"), ("ChannelStatusMessage", "b")]


@pytest.mark.parametrize(("configured", "signed"), [
    (CALLBACK, CALLBACK),
    (CALLBACK, "https://promo.example.com:443/hooks/twilio/status"),
    ("https://promo.example.com:443/hooks/twilio/status", CALLBACK),
    ("http://promo.example.com/hooks/twilio/status?c=1", "http://promo.example.com:80/hooks/twilio/status?c=1"),
])
def test_callback_signed_over_either_port_form_with_a_repeated_key_is_accepted(
        fake_twilio, clock, session, configured, signed) -> None:
    c = connector(fake_twilio, clock, session, status_callback=configured)
    signature = documented_signature("twilio-test-token", signed, RECEIPT)
    [item] = c.verify_webhook({"X-Twilio-Signature": signature}, urlencode(RECEIPT).encode())
    assert (item.provider_id, item.status, item.data["code"]) == ("SM9", "undelivered", "30003")


def test_callback_signature_refused_for_another_port_url_or_values(fake_twilio, clock, session) -> None:
    c = connector(fake_twilio, clock, session)
    body = urlencode(RECEIPT).encode()
    for url, pairs in [("https://promo.example.com:8443/hooks/twilio/status", RECEIPT),
                       ("https://promo.example.com/hooks/twilio/other", RECEIPT),
                       ("http://promo.example.com/hooks/twilio/status", RECEIPT),
                       (CALLBACK, [p for p in RECEIPT if p != ("ChannelStatusMessage", "a")]),
                       (CALLBACK, [*RECEIPT, ("ChannelStatusMessage", "c")])]:
        with pytest.raises(WebhookVerificationError):
            c.verify_webhook({"X-Twilio-Signature": documented_signature("twilio-test-token", url, pairs)}, body)
    assert twilio_signature("twilio-test-token", CALLBACK, RECEIPT) == documented_signature(
        "twilio-test-token", CALLBACK, RECEIPT)
