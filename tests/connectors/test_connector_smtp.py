"""SMTP against an in-process aiosmtpd server (STARTTLS with a self-signed
certificate made here, implicit TLS, AUTH), and unsubscribe tokens."""

from __future__ import annotations

import datetime as dt
import email
import ipaddress
import socket
import ssl
from collections import deque
from email import policy
from urllib.parse import parse_qs, urlsplit

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from connector_support import make_spec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from connectors.registry import load_connector
from connectors.smtp import SmtpConnector
from connectors.unsubscribe import (
    InvalidUnsubscribeToken,
    sign_unsubscribe,
    verify_unsubscribe,
)
from engine.ports import ConfigurationError, Outcome, OutgoingMessage

ENV = {"SMTP_PASSWORD": "smtp-test-password", "UNSUB_KEY": "unsub-test-key"}


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


class Handler:
    def __init__(self) -> None:
        self.messages: list = []
        self.rcpt_codes: dict[str, str] = {}
        self.data_codes: deque[str] = deque()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.rcpt_codes:
            return self.rcpt_codes[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_codes:
            return self.data_codes.popleft()
        self.messages.append((session.ssl is not None or session.extended_smtp, envelope))
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _auth(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login == b"promo@example.com" and auth_data.password == b"smtp-test-password"
    return AuthResult(success=ok, handled=False)


def _starttls_server(certificate, **options) -> Controller:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    handler = Handler()
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port(), tls_context=context,
                            require_starttls=True, authenticator=_auth, auth_require_tls=True, **options)
    controller.start()
    controller.handler_ref = handler
    return controller


@pytest.fixture
def server(certificate):
    controller = _starttls_server(certificate)
    yield controller
    controller.stop()


def smtp(controller, clock, cafile, env=ENV, **settings) -> SmtpConnector:
    spec = make_spec("smtp", "email", {"host": "127.0.0.1", "port": controller.port, "starttls": True,
                                       "username": "promo@example.com", "from_address": "promo@example.com",
                                       "from_name": "促销通", "ca_file": cafile, "timeout": 5,
                                       "unsubscribe_url": "https://promo.example.com/u", **settings},
                     {"password": "SMTP_PASSWORD", "unsubscribe_key": "UNSUB_KEY"})
    return load_connector(spec, env=env, clock=clock)  # type: ignore[return-value]


def mail(i: int, to: str = "li@example.com") -> OutgoingMessage:
    return OutgoingMessage(id=f"m{i}", channel="email", recipient=to, subject="春季会员日", body="满100减20",
                           html="<p>满100减<b>20</b></p>", options={"customer_id": 42})


def test_starttls_login_multipart_and_one_click_unsubscribe(server, clock, certificate) -> None:
    [result] = smtp(server, clock, certificate[0]).send_batch([mail(1)])
    assert result.outcome is Outcome.ACCEPTED and result.provider_id == "<m1@example.com>"
    [(_, envelope)] = server.handler_ref.messages
    assert envelope.rcpt_tos == ["li@example.com"]
    parsed = email.message_from_bytes(envelope.content, policy=policy.default)
    assert parsed.get_body(("plain",)).get_content().strip() == "满100减20"
    assert "<b>20</b>" in parsed.get_body(("html",)).get_content()
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = parsed["List-Unsubscribe"].strip("<>")
    token = parse_qs(urlsplit(link).query)["token"][0]
    assert verify_unsubscribe(token, "unsub-test-key", clock()) == ("42", "email")


def test_recipient_and_data_replies_4xx_retryable_5xx_permanent(server, clock, certificate) -> None:
    h = server.handler_ref
    h.rcpt_codes = {"gone@example.com": "550 5.1.1 User unknown", "busy@example.com": "450 4.2.1 Mailbox busy"}
    h.data_codes.append("451 4.3.0 Try again later")
    results = smtp(server, clock, certificate[0]).send_batch(
        [mail(1, "gone@example.com"), mail(2, "busy@example.com"), mail(3), mail(4), mail(5, "not-an-address")])
    assert [(r.outcome, r.code) for r in results] == [
        (Outcome.PERMANENT, "550"), (Outcome.RETRYABLE, "450"), (Outcome.RETRYABLE, "451"),
        (Outcome.ACCEPTED, "250"), (Outcome.PERMANENT, "invalid_address")]
    assert len(h.messages) == 1


def test_wrong_password_is_a_configuration_error(server, clock, certificate) -> None:
    c = smtp(server, clock, certificate[0], env=ENV | {"SMTP_PASSWORD": "wrong-password"})
    with pytest.raises(ConfigurationError) as info:
        c.send_batch([mail(1)])
    assert "wrong-password" not in str(info.value) and info.value.code == "535"


def test_untrusted_certificate_is_not_accepted(server, clock) -> None:
    [result] = smtp(server, clock, None).send_batch([mail(1)])
    assert result.outcome is Outcome.RETRYABLE and result.code == "tls"
    assert server.handler_ref.messages == []


def test_server_without_starttls_is_refused(clock) -> None:
    handler = Handler()
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        with pytest.raises(ConfigurationError, match="STARTTLS"):
            smtp(controller, clock, None).send_batch([mail(1)])
    finally:
        controller.stop()
    assert handler.messages == []


def test_implicit_tls(certificate, clock) -> None:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    handler = Handler()
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port(), ssl_context=context)
    controller.start()
    try:
        [result] = smtp(controller, clock, cert, ssl=True, starttls=False, username=None).send_batch([mail(1)])
    finally:
        controller.stop()
    assert result.outcome is Outcome.ACCEPTED and len(handler.messages) == 1


def test_unreachable_server_leaves_every_message_retryable(clock) -> None:
    spec_port = _free_port()

    class Closed:
        port = spec_port
    results = smtp(Closed, clock, None).send_batch([mail(1), mail(2)])
    assert [(r.outcome, r.code) for r in results] == [(Outcome.RETRYABLE, "connection")] * 2


# ------------------------------------------------------------ unsubscribe tokens

def test_unsubscribe_token_round_trip_expiry_and_tampering() -> None:
    now = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    token = sign_unsubscribe(42, "email", "k", now + dt.timedelta(days=30))
    assert verify_unsubscribe(token, "k", now) == ("42", "email")
    with pytest.raises(InvalidUnsubscribeToken, match="expired"):
        verify_unsubscribe(token, "k", now + dt.timedelta(days=30))
    with pytest.raises(InvalidUnsubscribeToken, match="signature"):
        verify_unsubscribe(token, "other-key", now)
    _payload, signature = token.split(".")
    forged = sign_unsubscribe(43, "email", "k", now + dt.timedelta(days=30)).split(".")[0]
    with pytest.raises(InvalidUnsubscribeToken):
        verify_unsubscribe(f"{forged}.{signature}", "k", now)
    for garbage in ("", "abc", "a.b.c", "!!!.???"):
        with pytest.raises(InvalidUnsubscribeToken):
            verify_unsubscribe(garbage, "k", now)


# ------------------------------------------------------------ headers on the wire

def _raw_headers(content: bytes) -> list[bytes]:
    """The header block of a message as received, one entry per header with
    its continuation lines kept (unfolded neither by us nor by a parser)."""
    block = content.split(b"\r\n\r\n", 1)[0]
    headers: list[bytes] = []
    for line in block.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and headers:
            headers[-1] += b"\r\n" + line
        else:
            headers.append(line)
    return headers


def _raw_header(content: bytes, name: bytes) -> list[bytes]:
    return [h for h in _raw_headers(content) if h.lower().startswith(name.lower() + b":")]


LONG_LINK = ("https://promo.example.com/marketing/preferences/unsubscribe/one-click"
             "?list=spring-member-day-2026&token=" + "Zm9vYmFy" * 12)


def test_list_unsubscribe_is_one_line_on_the_wire_even_for_a_long_link(server, clock, certificate) -> None:
    message = OutgoingMessage(id="m1", channel="email", recipient="li@example.com", subject="春季会员日",
                              body="满100减20", options={"unsubscribe_url": LONG_LINK})
    signed = mail(2)   # the connector's own signed-token link
    results = smtp(server, clock, certificate[0], unsubscribe_mailto="unsubscribe@promo.example.com").send_batch(
        [message, signed])
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 2
    (_, first), (_, second) = server.handler_ref.messages
    assert len(LONG_LINK) > 78
    [header] = _raw_header(first.content, b"List-Unsubscribe")
    assert header == (b"List-Unsubscribe: <" + LONG_LINK.encode() + b">, <mailto:unsubscribe@promo.example.com>")
    assert _raw_header(first.content, b"List-Unsubscribe-Post") == [b"List-Unsubscribe-Post: List-Unsubscribe=One-Click"]
    [own] = _raw_header(second.content, b"List-Unsubscribe")
    assert b"\r\n" not in own and b"=?" not in own and len(own) > 78
    link = own.split(b"<", 1)[1].split(b">", 1)[0].decode()
    assert link.startswith("https://promo.example.com/u?token=")
    token = parse_qs(urlsplit(link).query)["token"][0]
    assert verify_unsubscribe(token, "unsub-test-key", clock()) == ("42", "email")


def test_list_unsubscribe_past_998_octets_folds_between_items_never_encoded_words(
        server, clock, certificate) -> None:
    huge = "https://promo.example.com/u?token=" + "x" * 930   # alone it fits in 998, with the mailto not
    message = OutgoingMessage(id="m1", channel="email", recipient="li@example.com", subject="s", body="b",
                              options={"unsubscribe_url": huge})
    [result] = smtp(server, clock, certificate[0], unsubscribe_mailto="u@promo.example.com").send_batch([message])
    assert result.outcome is Outcome.ACCEPTED
    [(_, envelope)] = server.handler_ref.messages
    [header] = _raw_header(envelope.content, b"List-Unsubscribe")
    assert header == b"List-Unsubscribe: <" + huge.encode() + b">,\r\n <mailto:u@promo.example.com>"
    assert b"=?" not in header


def test_a_cr_lf_in_a_customer_name_is_cleaned_and_fails_no_other_message(server, clock, certificate) -> None:
    tricky = OutgoingMessage(id="m2", channel="email", recipient="wang@example.com",
                             subject="王\r\nBcc: evil@example.com 的春季礼遇",
                             body="满100减20", options={"customer_id": 7,
                                                       "recipient_name": "王\r\nBcc: evil@example.com\x00"})
    results = smtp(server, clock, certificate[0]).send_batch([mail(1), tricky, mail(3, "zhao@example.com")])
    assert [(r.message_id, r.outcome) for r in results] == [
        ("m1", Outcome.ACCEPTED), ("m2", Outcome.ACCEPTED), ("m3", Outcome.ACCEPTED)]
    received = {e.rcpt_tos[0]: e for _, e in server.handler_ref.messages}
    assert set(received) == {"li@example.com", "wang@example.com", "zhao@example.com"}
    content = received["wang@example.com"].content
    assert not any(h.lower().startswith(b"bcc:") for h in _raw_headers(content))
    parsed = email.message_from_bytes(content, policy=policy.default)
    assert parsed["To"].addresses[0].display_name == "王 Bcc: evil@example.com"
    assert parsed["To"].addresses[0].addr_spec == "wang@example.com"
    assert parsed["Subject"] == "王 Bcc: evil@example.com 的春季礼遇"



def test_a_written_display_name_and_bidi_overrides(server, clock, certificate) -> None:
    """A recipient written ``Name <address>`` goes to the address only; a
    right-to-left override in a name is dropped, not shown reversed."""
    message = OutgoingMessage(id="m1", channel="email", recipient="王\u202e五 <wang@example.com>",
                              subject="\u202e春季\u202c会员日", body="满100减20")
    [result] = smtp(server, clock, certificate[0]).send_batch([message])
    assert result.outcome is Outcome.ACCEPTED
    [(_, envelope)] = server.handler_ref.messages
    assert envelope.rcpt_tos == ["wang@example.com"]
    parsed = email.message_from_bytes(envelope.content, policy=policy.default)
    assert (parsed["To"].addresses[0].display_name, parsed["Subject"]) == ("王五", "春季会员日")


def test_a_message_the_server_cannot_take_fails_alone(certificate, clock) -> None:
    """A non-ASCII address needs SMTPUTF8, which this server does not offer:
    that message is refused before MAIL FROM, the others go through."""
    controller = _starttls_server(certificate, enable_SMTPUTF8=False)
    try:
        results = smtp(controller, clock, certificate[0]).send_batch([mail(1), mail(2, "用户@example.com"), mail(3)])
    finally:
        controller.stop()
    assert [(r.outcome, r.code) for r in results] == [
        (Outcome.ACCEPTED, "250"), (Outcome.PERMANENT, "not_supported"), (Outcome.ACCEPTED, "250")]
    assert [e.rcpt_tos for _, e in controller.handler_ref.messages] == [["li@example.com"]] * 2


def test_an_internationalised_address_goes_to_a_server_with_smtputf8(server, clock, certificate) -> None:
    [result] = smtp(server, clock, certificate[0]).send_batch([mail(1, "用户@example.com")])
    assert result.outcome is Outcome.ACCEPTED
    assert [e.rcpt_tos for _, e in server.handler_ref.messages] == [["用户@example.com"]]
