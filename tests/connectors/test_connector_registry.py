"""Registry, the port types, memory/log connectors, and secrets never shown."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

import pytest
from connector_support import make_spec

from connectors.memory import MemoryConnector
from connectors.registry import (
    BUILTIN,
    GROUP,
    UnknownConnectorType,
    connector_types,
    load_connector,
    resolve_type,
)
from engine.definitions.catalog import CONNECTOR_TYPES
from engine.definitions.loader import load_paths
from engine.ports import (
    ConfigurationError,
    Connector,
    Outcome,
    OutgoingMessage,
    SendResult,
)


def test_every_shipped_type_is_an_installed_entry_point_and_loads() -> None:
    installed = {ep.name: ep.value for ep in entry_points(group=GROUP)}
    assert installed == dict(BUILTIN)
    assert set(BUILTIN) == set(CONNECTOR_TYPES)
    for name in BUILTIN:
        cls = resolve_type(name)
        assert issubclass(cls, Connector)
        assert cls.channel == CONNECTOR_TYPES[name].channel
        assert set(CONNECTOR_TYPES[name].secrets) <= set(cls.required_secrets)
        assert set(CONNECTOR_TYPES[name].settings) <= set(cls.required_settings) | {"from_number"}


def test_unknown_type_suggests_the_closest() -> None:
    with pytest.raises(UnknownConnectorType, match=r"No such connector type `aliyun_smss`; did you mean `aliyun_sms`\?"):
        resolve_type("aliyun_smss")
    with pytest.raises(UnknownConnectorType, match="known: "):
        resolve_type("carrier_pigeon")


def test_connector_types_for_the_loader() -> None:
    types = connector_types()
    assert types["wecom_app"] == CONNECTOR_TYPES["wecom_app"]
    assert set(types) >= set(CONNECTOR_TYPES)


def test_missing_variable_is_named_never_the_value() -> None:
    spec = make_spec("aliyun_sms", "sms", {"sign_name": "x"},
                     {"access_key_id": "ALIYUN_AK", "access_key_secret": "ALIYUN_SK"})
    with pytest.raises(ConfigurationError) as info:
        load_connector(spec, env={"ALIYUN_AK": "AK-VALUE-123"})
    assert "ALIYUN_SK" in str(info.value) and "access_key_secret" in str(info.value)
    assert "AK-VALUE-123" not in str(info.value)


def test_undeclared_required_secret_and_setting() -> None:
    with pytest.raises(ConfigurationError, match="secret `access_key_secret`"):
        load_connector(make_spec("aliyun_sms", "sms", {}, {"access_key_id": "A"}), env={"A": "x"})
    with pytest.raises(ConfigurationError, match="setting `sdk_app_id`"):
        load_connector(make_spec("tencent_sms", "sms", {}, {"secret_id": "A", "secret_key": "B"}),
                       env={"A": "x", "B": "y"})


def test_shipped_config_files_build() -> None:
    env = {"SMTP_PASSWORD": "p", "ALIYUN_ACCESS_KEY_ID": "a", "ALIYUN_ACCESS_KEY_SECRET": "s",
           "WECOM_CORP_SECRET": "w", "WECOM_CONTACT_SECRET": "c"}
    result = load_paths(["config/connectors"], connector_types=connector_types())
    assert not result.errors, result.errors
    built = {spec.id: load_connector(spec, env=env) for spec in result.definitions.of("connector").values()}
    assert set(built) == {"email_smtp", "demo_log", "sms_aliyun", "wecom_app", "wecom_customer"}


# ------------------------------------------------------------ memory and log

def test_memory_connector_records_and_fails_on_demand(clock) -> None:
    c = load_connector(make_spec("memory", "sms", {"fail_recipients": ["bad"]}), env={}, clock=clock)
    assert isinstance(c, MemoryConnector) and MemoryConnector.named("test_memory") is c
    c.fail_next("retryable", code="busy", retry_after=5)
    c.fail_next("unknown")
    results = c.send_batch([OutgoingMessage(str(i), "sms", "bad" if i == 3 else f"r{i}") for i in range(4)])
    assert [r.outcome for r in results] == [Outcome.RETRYABLE, Outcome.UNKNOWN, Outcome.ACCEPTED, Outcome.PERMANENT]
    assert results[0].retry_after == 5
    assert [s.message.id for s in c.sent] == ["1", "2"]  # the unknown one did reach the "provider"
    c.fail_configuration()
    with pytest.raises(ConfigurationError):
        c.send_batch([OutgoingMessage("9", "sms", "r")])


def test_log_connector_masks_recipients(caplog, clock) -> None:
    c = load_connector(make_spec("log", "log"), env={}, clock=clock)
    with caplog.at_level(logging.INFO, logger="promoflow.connectors"):
        [result] = c.send_batch([OutgoingMessage("1", "sms", "13812345678", body="hi")])
    assert result.outcome is Outcome.ACCEPTED
    assert "138****5678" in caplog.text and "13812345678" not in caplog.text


# ------------------------------------------------------------ port types

def test_from_outbox_row() -> None:
    message = OutgoingMessage.from_outbox({
        "id": 7, "channel": "wecom", "recipient": "lisi", "subject": "审批", "body": "请审批",
        "payload": '{"params": {"msgtype": "textcard", "url": "https://x/7", "title": "审批"}, "template_code": null}',
        "delivery_class": "transactional", "idempotency_key": "k", "attempts": 2, "customer_id": None})
    assert message.id == "7" and message.attempt == 2 and message.delivery_class == "transactional"
    assert dict(message.options) == {"msgtype": "textcard", "url": "https://x/7", "title": "审批"}
    assert dict(message.params) == {}
    sms = OutgoingMessage.from_outbox({"id": 1, "channel": "sms", "recipient": "1",
                                       "payload": {"params": {"code": "1", "sign_name": "S"}, "template_code": "SMS_1"},
                                       "customer_id": 5})
    assert dict(sms.params) == {"code": "1"} and sms.options["sign_name"] == "S" and sms.options["customer_id"] == 5
    assert sms.template_code == "SMS_1" and sms.attempt == 1 and sms.delivery_class == "marketing"


def test_send_result_constructors() -> None:
    assert SendResult.accepted("1", "p").outcome == "accepted"
    assert SendResult.permanent("1", "c", suppress=True).suppress
    assert SendResult.retryable("1", retry_after=3).retry_after == 3


# ------------------------------------------------------------ secrets never shown

SECRETS = {"ALIYUN_AK": "AKID-visible-id", "ALIYUN_SK": "TOPSECRET-aliyun", "WECOM_SECRET": "TOPSECRET-wecom",
           "ROBOT_KEY": "TOPSECRET-robot", "HOOK_KEY": "TOPSECRET-hook"}


def test_secrets_never_in_repr_or_logs(caplog, clock, fake_wecom, fake_aliyun, session) -> None:
    fake_wecom.secret, fake_wecom.robot_key = "TOPSECRET-wecom", "TOPSECRET-robot"
    fake_aliyun.key_id, fake_aliyun.key_secret = "AKID-visible-id", "TOPSECRET-aliyun"
    connectors = [
        load_connector(make_spec("aliyun_sms", "sms", {"base_url": fake_aliyun.url, "sign_name": "促销通"},
                                 {"access_key_id": "ALIYUN_AK", "access_key_secret": "ALIYUN_SK"}),
                       env=SECRETS, session=session, clock=clock),
        load_connector(make_spec("wecom_app", "wecom", {"base_url": fake_wecom.url, "corp_id": "ww-test-corp",
                                                        "agent_id": 1000002}, {"corp_secret": "WECOM_SECRET"}),
                       env=SECRETS, session=session, clock=clock),
        load_connector(make_spec("wecom_robot", "wecom", {"base_url": fake_wecom.url}, {"webhook_key": "ROBOT_KEY"}),
                       env=SECRETS, session=session, clock=clock),
        load_connector(make_spec("webhook", "webhook", {"url": "http://127.0.0.1:9/x"}, {"signing_key": "HOOK_KEY"}),
                       env=SECRETS, session=session, clock=clock),
    ]
    with caplog.at_level(logging.DEBUG):
        for c in connectors[:3]:
            results = c.send_batch([OutgoingMessage("1", c.channel or "", "13800000000", body="hi",
                                                    template_code="SMS_100", params={"code": "1"})])
            assert results[0].outcome is not Outcome.RETRYABLE or results[0].code != "connection"
        with pytest.raises(ConfigurationError) as info:
            connectors[3].send_batch([OutgoingMessage("1", "webhook", "x")])
        logging.getLogger("test").debug("exception: %s", info.value)
    tokens = [t for t in fake_wecom.tokens]
    texts = [caplog.text] + [repr(c) for c in connectors] + [repr(vars(c)) for c in connectors]
    for text in texts:
        for secret in [v for k, v in SECRETS.items() if "TOPSECRET" in v] + tokens:
            assert secret not in text
    assert "webhook/send?key=***" in caplog.text  # urllib3's request line, redacted
