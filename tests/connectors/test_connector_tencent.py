"""Tencent Cloud SMS against the fake provider, plus the published TC3 example."""

from __future__ import annotations

import pytest
from connector_support import make_spec

from connectors.registry import load_connector
from connectors.tencent_sms import TencentSmsConnector, tc3_authorization
from engine.dispatch_limits import RATE_LIMIT_CODES
from engine.ports import ConfigurationError, Outcome, OutgoingMessage

ENV = {"TC_ID": "AKIDtest", "TC_KEY": "tencent-test-key"}


def test_tc3_signature_matches_tencents_published_example() -> None:
    # "Signature v3" doc: CVM DescribeInstances, timestamp 1551113065, the EXAMPLE keys
    payload = '{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'
    auth = tc3_authorization(secret_id="AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
                             secret_key="Gu5t9xGARNpq86cd98joQYCN3EXAMPLE", service="cvm",
                             host="cvm.tencentcloudapi.com", timestamp=1551113065, payload=payload)
    assert auth == ("TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, "
                    "SignedHeaders=content-type;host, "
                    "Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168")


def connector(fake, clock, session, env=ENV, **settings) -> TencentSmsConnector:
    spec = make_spec("tencent_sms", "sms", {"base_url": fake.url, "sdk_app_id": "1400000001",
                                            "sign_name": "促销通", "read_timeout": 0.5, **settings},
                     {"secret_id": "TC_ID", "secret_key": "TC_KEY"})
    return load_connector(spec, env=env, session=session, clock=clock)  # type: ignore[return-value]


def sms(i: int, phone: str, template: str = "1001", params=None) -> OutgoingMessage:
    return OutgoingMessage(id=f"m{i}", channel="sms", recipient=phone, template_code=template,
                           params={"1": "8888"} if params is None else params)


def test_one_request_per_template_and_params_with_per_number_results(fake_tencent, clock, session) -> None:
    fake_tencent.blacklist.add("+8613800000002")
    fake_tencent.daily_limited.add("+8613800000003")
    messages = [sms(1, "13800000001"), sms(2, "+8613800000002"), sms(3, "+8613800000003"), sms(4, "+861380000000")]
    results = connector(fake_tencent, clock, session).send_batch(messages)
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.PERMANENT, Outcome.RETRYABLE, Outcome.PERMANENT]
    assert results[0].provider_id.startswith("serial-")
    assert results[1].code == "FailedOperation.PhoneNumberInBlacklist" and results[1].suppress
    assert results[2].code == "LimitExceeded.PhoneNumberDailyLimit" and results[2].retry_after
    assert results[3].code == "InvalidParameterValue.IncorrectPhoneNumber"
    assert len(fake_tencent.requests) == 1  # one request; the short number is refused per number


def test_different_params_go_in_different_requests_and_200_per_request(fake_tencent, clock, session) -> None:
    messages = [sms(i, f"+86138{i:08d}", params={"1": str(i % 2)}) for i in range(402)]
    results = connector(fake_tencent, clock, session).send_batch(messages)
    assert all(r.outcome is Outcome.ACCEPTED for r in results)
    assert len(fake_tencent.requests) == 4
    contexts = {d["context"] for d in fake_tencent.delivered}
    assert "batch:m0" in contexts


def test_same_number_twice_goes_in_two_requests(fake_tencent, clock, session) -> None:
    results = connector(fake_tencent, clock, session).send_batch([sms(1, "+8613800000001"), sms(2, "+8613800000001")])
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.ACCEPTED]
    assert len(fake_tencent.requests) == 2
    assert [d["context"] for d in fake_tencent.delivered] == ["m1", "m2"]


@pytest.mark.parametrize("env, code", [
    ({"TC_ID": "AKIDtest", "TC_KEY": "wrong"}, "AuthFailure.SignatureFailure"),
    ({"TC_ID": "AKIDnobody", "TC_KEY": "tencent-test-key"}, "AuthFailure.SecretIdNotFound"),
])
def test_bad_credentials_are_configuration_errors(fake_tencent, clock, session, env, code) -> None:
    with pytest.raises(ConfigurationError) as info:
        connector(fake_tencent, clock, session, env=env).send_batch([sms(1, "+8613800000001")])
    assert info.value.code == code


def test_unapproved_template_is_a_configuration_error(fake_tencent, clock, session) -> None:
    with pytest.raises(ConfigurationError, match="TemplateIncorrectOrUnapproved"):
        connector(fake_tencent, clock, session).send_batch([sms(1, "+8613800000001", template="9999")])


def test_request_limit_is_retryable_and_internal_timeout_unknown(fake_tencent, clock, session) -> None:
    fake_tencent.request_errors.extend(["RequestLimitExceeded", "InternalError.Timeout"])
    c = connector(fake_tencent, clock, session)
    assert c.send_batch([sms(1, "+8613800000001")])[0].outcome is Outcome.RETRYABLE
    assert c.send_batch([sms(2, "+8613800000001")])[0].outcome is Outcome.UNKNOWN


def test_signature_expiry_is_checked(fake_tencent, clock, session) -> None:
    fake_tencent.now = lambda: clock.ts() + 600
    with pytest.raises(ConfigurationError, match="SignatureExpire"):
        connector(fake_tencent, clock, session).send_batch([sms(1, "+8613800000001")])


@pytest.mark.parametrize("fault, outcome", [("timeout", Outcome.UNKNOWN), ("503", Outcome.RETRYABLE),
                                            ("malformed", Outcome.UNKNOWN), ("reset", Outcome.UNKNOWN)])
def test_transport_faults(fake_tencent, clock, session, fault, outcome) -> None:
    fake_tencent.inject(fault)
    results = connector(fake_tencent, clock, session).send_batch([sms(1, "+8613800000001"), sms(2, "+8613800000002")])
    assert [r.outcome for r in results] == [outcome, outcome]


# ------------------------------------------------------------ LimitExceeded.* windows
# The fake clock stands at 2026-03-02 10:00 UTC = 18:00 in Shanghai: the next
# calendar day there starts in 6 hours.

SIX_HOURS = 6 * 3600.0


def test_limits_per_number_wait_for_their_window(fake_tencent, clock, session) -> None:
    codes = {"+8613800000001": "LimitExceeded.PhoneNumberDailyLimit",
             "+8613800000002": "LimitExceeded.PhoneNumberOneHourLimit",
             "+8613800000003": "LimitExceeded.PhoneNumberThirtySecondLimit",
             "+8613800000004": "LimitExceeded.DeliveryFrequencyLimit",
             "+8613800000005": "LimitExceeded.AppDailyLimit",
             "+8613800000006": "LimitExceeded.DailyLimit",
             "+8613800000007": "LimitExceeded.PhoneNumberSameContentDailyLimit"}
    fake_tencent.number_codes.update(codes)
    messages = [sms(i, number) for i, number in enumerate([*codes, "+8613800000008"], start=1)]
    results = connector(fake_tencent, clock, session).send_batch(messages)
    assert len(fake_tencent.requests) == 1
    assert [(r.outcome, r.code, r.retry_after) for r in results] == [
        (Outcome.RETRYABLE, "LimitExceeded.PhoneNumberDailyLimit", SIX_HOURS),
        (Outcome.RETRYABLE, "LimitExceeded.PhoneNumberOneHourLimit", 3600.0),
        (Outcome.RETRYABLE, "LimitExceeded.PhoneNumberThirtySecondLimit", 30.0),
        (Outcome.RETRYABLE, "LimitExceeded.DeliveryFrequencyLimit", 3600.0),
        (Outcome.RETRYABLE, "LimitExceeded.AppDailyLimit", SIX_HOURS),
        (Outcome.RETRYABLE, "LimitExceeded.DailyLimit", SIX_HOURS),
        (Outcome.RETRYABLE, "LimitExceeded.PhoneNumberSameContentDailyLimit", SIX_HOURS),
        (Outcome.ACCEPTED, "Ok", None)]
    # the dispatcher gives the attempt back for these codes instead of counting a failure
    assert {r.code for r in results[:-1]} <= RATE_LIMIT_CODES


def test_a_daily_window_reopens_at_midnight_in_the_business_time_zone(fake_tencent, clock, session) -> None:
    fake_tencent.request_errors.append("LimitExceeded.AppDailyLimit")
    results = connector(fake_tencent, clock, session, timezone="Europe/Berlin").send_batch(
        [sms(1, "+8613800000001"), sms(2, "+8613800000002")])
    # 10:00 UTC = 11:00 in Berlin; midnight there is 23:00 UTC
    assert [(r.outcome, r.code, r.retry_after) for r in results] == [
        (Outcome.RETRYABLE, "LimitExceeded.AppDailyLimit", 13 * 3600.0)] * 2
    clock.advance(13 * 3600 - 1)   # 23:59:59 in Berlin
    fake_tencent.request_errors.append("LimitExceeded.DailyLimit")
    [last] = connector(fake_tencent, clock, session, timezone="Europe/Berlin").send_batch([sms(3, "+8613800000003")])
    assert (last.outcome, last.retry_after) == (Outcome.RETRYABLE, 1.0)


def test_a_number_cap_refusing_the_whole_request_holds_only_that_number(fake_tencent, clock, session) -> None:
    fake_tencent.request_errors.extend(["LimitExceeded.PhoneNumberOneHourLimit"] * 2)
    results = connector(fake_tencent, clock, session).send_batch([sms(1, "+8613800000001"), sms(2, "+8613800000002")])
    assert [(r.outcome, r.code, r.retry_after) for r in results] == [
        (Outcome.RETRYABLE, "LimitExceeded.PhoneNumberOneHourLimit", 3600.0), (Outcome.ACCEPTED, "Ok", None)]
    assert [d["number"] for d in fake_tencent.delivered] == ["+8613800000002"]


def test_caps_that_are_no_window_stay_final(fake_tencent, clock, session) -> None:
    fake_tencent.number_codes["+8613800000001"] = "LimitExceeded.AppCountryOrRegionInBlacklist"
    [result] = connector(fake_tencent, clock, session).send_batch([sms(1, "+8613800000001")])
    assert (result.outcome, result.retry_after) == (Outcome.PERMANENT, None)
    with pytest.raises(ConfigurationError, match="timezone"):
        connector(fake_tencent, clock, session, timezone="Mars/Olympus")
