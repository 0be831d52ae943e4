"""Aliyun SMS against the fake provider, plus the published signature example."""

from __future__ import annotations

import pytest
from connector_support import make_spec

from connectors.aliyun_sms import AliyunSmsConnector, rpc_signature
from connectors.registry import load_connector
from engine.ports import ConfigurationError, Outcome, OutgoingMessage

ENV = {"ALIYUN_AK": "test-key-id", "ALIYUN_SK": "test-key-secret"}


def test_signature_matches_aliyuns_published_example() -> None:
    # Aliyun SMS doc "签名机制": AccessKeySecret testSecret, GET, this exact parameter set
    params = {
        "AccessKeyId": "testId", "Action": "SendSms", "Format": "XML", "OutId": "123",
        "PhoneNumbers": "15300000001", "RegionId": "cn-hangzhou", "SignName": "阿里云短信测试专用",
        "SignatureMethod": "HMAC-SHA1", "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
        "SignatureVersion": "1.0", "TemplateCode": "SMS_71390007", "TemplateParam": '{"customer":"test"}',
        "Timestamp": "2017-07-12T02:42:19Z", "Version": "2017-05-25",
    }
    assert rpc_signature("GET", params, "testSecret") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="


def connector(fake, clock, session, env=ENV, **settings) -> AliyunSmsConnector:
    spec = make_spec("aliyun_sms", "sms", {"base_url": fake.url, "sign_name": "促销通", "read_timeout": 0.5,
                                           **settings},
                     {"access_key_id": "ALIYUN_AK", "access_key_secret": "ALIYUN_SK"})
    c = load_connector(spec, env=env, session=session, clock=clock)
    assert isinstance(c, AliyunSmsConnector)
    return c


def sms(i: int, phone: str = "13800000000", template: str | None = "SMS_100", **params) -> OutgoingMessage:
    return OutgoingMessage(id=f"m{i}", channel="sms", recipient=phone, template_code=template,
                           params=params or {"code": "1234"})


def test_single_send_is_accepted_with_biz_id_and_out_id(fake_aliyun, clock, session) -> None:
    [result] = connector(fake_aliyun, clock, session).send_batch([sms(1, "+8613800000001")])
    assert result.outcome is Outcome.ACCEPTED and result.provider_id.startswith("biz-")
    assert fake_aliyun.delivered == [{"phone": "13800000001", "template": "SMS_100", "params": '{"code": "1234"}',
                                      "out_id": "m1", "biz_id": result.provider_id}]
    assert fake_aliyun.requests[0].form["Action"] == "SendSms"


def test_batch_uses_send_batch_sms_in_chunks_of_100(fake_aliyun, clock, session) -> None:
    messages = [sms(i, f"138{i:08d}") for i in range(150)]
    results = connector(fake_aliyun, clock, session).send_batch(messages)
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 150
    assert [r.message_id for r in results] == [m.id for m in messages]
    assert [q.form["Action"] for q in fake_aliyun.requests] == ["SendBatchSms", "SendBatchSms"]
    assert len(fake_aliyun.delivered) == 150


def test_a_bad_number_in_a_batch_fails_alone(fake_aliyun, clock, session) -> None:
    messages = [sms(1, "13800000001"), sms(2, "12345"), sms(3, "13800000003")]
    results = connector(fake_aliyun, clock, session).send_batch(messages)
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.PERMANENT, Outcome.ACCEPTED]
    assert results[1].code == "isv.MOBILE_NUMBER_ILLEGAL"
    assert sorted(d["phone"] for d in fake_aliyun.delivered) == ["13800000001", "13800000003"]


def test_flow_control_is_retryable_later_and_missing_params_permanent(fake_aliyun, clock, session) -> None:
    fake_aliyun.limited.add("13800000002")
    results = connector(fake_aliyun, clock, session).send_batch([
        sms(1, "13800000002"), OutgoingMessage("m2", "sms", "13800000003", template_code="SMS_100")])
    assert results[0].outcome is Outcome.RETRYABLE and results[0].code == "isv.BUSINESS_LIMIT_CONTROL"
    assert results[0].retry_after and results[0].retry_after >= 60
    assert results[1].outcome is Outcome.PERMANENT and results[1].code == "isv.TEMPLATE_MISSING_PARAMETERS"


def test_missing_template_code_never_reaches_the_provider(fake_aliyun, clock, session) -> None:
    [result] = connector(fake_aliyun, clock, session).send_batch([sms(1, template=None)])
    assert result.outcome is Outcome.PERMANENT and result.code == "missing_template_code"
    assert fake_aliyun.requests == []


@pytest.mark.parametrize("env, code", [
    ({"ALIYUN_AK": "test-key-id", "ALIYUN_SK": "wrong"}, "SignatureDoesNotMatch"),
    ({"ALIYUN_AK": "nobody", "ALIYUN_SK": "test-key-secret"}, "InvalidAccessKeyId.NotFound"),
])
def test_bad_credentials_stop_the_connector(fake_aliyun, clock, session, env, code) -> None:
    with pytest.raises(ConfigurationError) as info:
        connector(fake_aliyun, clock, session, env=env).send_batch([sms(1)])
    assert info.value.code == code
    assert "wrong" not in str(info.value) and "test-key-secret" not in str(info.value)


def test_clock_skew_is_a_configuration_error(fake_aliyun, clock, session) -> None:
    c = connector(fake_aliyun, clock, session)
    fake_aliyun.now = lambda: clock.ts() + 3600
    with pytest.raises(ConfigurationError, match="InvalidTimeStamp.Expired"):
        c.send_batch([sms(1)])


def test_unknown_sign_and_balance_are_configuration_errors(fake_aliyun, clock, session) -> None:
    with pytest.raises(ConfigurationError, match="isv.SMS_SIGNATURE_ILLEGAL"):
        connector(fake_aliyun, clock, session, sign_name="别的签名").send_batch([sms(1)])
    fake_aliyun.codes.append("isv.AMOUNT_NOT_ENOUGH")
    with pytest.raises(ConfigurationError, match="AMOUNT_NOT_ENOUGH"):
        connector(fake_aliyun, clock, session).send_batch([sms(2)])


def test_results_settled_before_a_configuration_error_are_kept(fake_aliyun, clock, session) -> None:
    c = connector(fake_aliyun, clock, session)
    messages = [sms(1, template=None), sms(2, template="SMS_999")]
    with pytest.raises(ConfigurationError) as info:
        c.send_batch(messages)
    assert [r.message_id for r in info.value.results] == ["m1"]


@pytest.mark.parametrize("fault, outcome", [
    ("timeout", Outcome.UNKNOWN), ("reset", Outcome.UNKNOWN), ("malformed", Outcome.UNKNOWN),
    ("503", Outcome.RETRYABLE), ("502", Outcome.UNKNOWN), ("reset_before", Outcome.UNKNOWN),
])
def test_transport_faults(fake_aliyun, clock, session, fault, outcome) -> None:
    fake_aliyun.inject(fault)
    [result] = connector(fake_aliyun, clock, session).send_batch([sms(1)])
    assert result.outcome is outcome, result


def test_system_error_is_ambiguous_and_throttling_retryable(fake_aliyun, clock, session) -> None:
    fake_aliyun.codes.extend(["isp.SYSTEM_ERROR", "Throttling.User"])
    c = connector(fake_aliyun, clock, session)
    assert c.send_batch([sms(1)])[0].outcome is Outcome.UNKNOWN
    assert c.send_batch([sms(2)])[0].outcome is Outcome.RETRYABLE


def test_connection_refused_is_retryable(clock, session) -> None:
    class Nowhere:
        url = "http://127.0.0.1:9"
    [result] = connector(Nowhere, clock, session).send_batch([sms(1)])
    assert result.outcome is Outcome.RETRYABLE and result.code == "connection"
