"""Generic webhook: HMAC signature, SSRF refusals, outcome classification."""

from __future__ import annotations

import json

import pytest
from connector_support import make_spec
from fakes.base import FakeProvider, json_response
from werkzeug.wrappers import Request, Response

from connectors.registry import load_connector
from connectors.webhook import (
    SIGNATURE_HEADER,
    UnsafeTarget,
    WebhookConnector,
    resolve_target,
    verify_signature,
)
from engine.ports import Outcome, OutgoingMessage

ENV = {"HOOK_KEY": "hook-signing-key"}


class Receiver(FakeProvider):
    def __init__(self) -> None:
        super().__init__()
        self.status = 200

    def handle(self, request: Request) -> Response:
        return json_response({"ok": True}, self.status)


@pytest.fixture
def receiver(clock):
    fake = Receiver()
    fake.now = clock.ts
    fake.start()
    yield fake
    fake.stop()


def hook(url: str, clock, session, **settings) -> WebhookConnector:
    spec = make_spec("webhook", "webhook", {"url": url, "read_timeout": 0.5, **settings}, {"signing_key": "HOOK_KEY"})
    return load_connector(spec, env=ENV, session=session, clock=clock)  # type: ignore[return-value]


MESSAGE = OutgoingMessage(id="m1", channel="webhook", recipient="crm", body="hello", params={"coupon": "SAVE20"},
                          idempotency_key="rule:1:c9")


def test_posts_signed_json_when_private_targets_are_allowed(receiver, clock, session) -> None:
    [result] = hook(receiver.url + "/in", clock, session, allow_private=True).send_batch([MESSAGE])
    assert result.outcome is Outcome.ACCEPTED
    request = receiver.requests[0]
    body = request.get_data()
    assert verify_signature("hook-signing-key", body, request.headers[SIGNATURE_HEADER])
    assert request.headers[SIGNATURE_HEADER].startswith("sha256=")
    assert request.headers["Idempotency-Key"] == "rule:1:c9"
    assert json.loads(body)["params"] == {"coupon": "SAVE20"}
    assert request.host.startswith("127.0.0.1")


@pytest.mark.parametrize("status, outcome", [(400, Outcome.PERMANENT), (410, Outcome.PERMANENT),
                                             (429, Outcome.RETRYABLE), (503, Outcome.RETRYABLE),
                                             (500, Outcome.UNKNOWN), (302, Outcome.PERMANENT)])
def test_status_classification(receiver, clock, session, status, outcome) -> None:
    receiver.status = status
    [result] = hook(receiver.url, clock, session, allow_private=True).send_batch([MESSAGE])
    assert result.outcome is outcome


def test_timeout_after_sending_is_unknown(receiver, clock, session) -> None:
    receiver.inject("timeout")
    [result] = hook(receiver.url, clock, session, allow_private=True).send_batch([MESSAGE])
    assert result.outcome is Outcome.UNKNOWN


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/x", "http://localhost/x", "http://[::1]/x", "http://10.0.0.5/x", "http://192.168.1.1/x",
    "http://172.16.0.1/x", "http://169.254.169.254/latest/meta-data/", "http://2852039166/",  # decimal 169.254.169.254
    "http://0x7f000001/", "http://0177.0.0.1/", "http://100.64.0.1/", "http://[fd00::1]/", "http://[fe80::1]/",
    "http://[::ffff:127.0.0.1]/", "http://224.0.0.1/", "http://0.0.0.0/", "http://[::]/",
])
def test_ssrf_targets_are_refused(url, clock, session, receiver) -> None:
    c = hook(url, clock, session)
    with pytest.raises(UnsafeTarget) as info:
        c.send_batch([MESSAGE])
    assert info.value.code in ("ssrf_private", "ssrf_resolve")
    assert receiver.requests == []


def test_the_loopback_fake_itself_is_refused_without_allow_private(receiver, clock, session) -> None:
    with pytest.raises(UnsafeTarget):
        hook(receiver.url, clock, session).send_batch([MESSAGE])
    assert receiver.requests == []


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "gopher://x/"])
def test_other_schemes_are_refused_at_construction(url, clock, session) -> None:
    with pytest.raises(UnsafeTarget):
        hook(url, clock, session)


def test_public_addresses_pass_the_check() -> None:
    assert resolve_target("https://93.184.216.34/hook") == ["93.184.216.34"]
    assert resolve_target("http://[2606:4700:4700::1111]/") == ["2606:4700:4700::1111"]
