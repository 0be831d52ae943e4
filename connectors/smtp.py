"""E-mail over SMTP (smtplib): STARTTLS (port 587, default) or implicit TLS
(``ssl: true``, port 465); multipart text + HTML; one-click unsubscribe.

Each message gets ``Message-ID: <id@from-domain>``, and, when the connector can
build an unsubscribe link, ``List-Unsubscribe: <https://…?token=…>`` and
``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058). The link is
``options.unsubscribe_url`` if the message carries one, else the
``unsubscribe_url`` setting plus a token signed for ``options.customer_id``
with the ``unsubscribe_key`` secret (see ``connectors.unsubscribe``).

Replies: 4xx → retryable, 5xx → permanent (per recipient: the refused dict /
``SMTPRecipientsRefused``); authentication failure (535), a refused sender, or
a server without STARTTLS when it is required → :class:`ConfigurationError`.
A connection lost after the message data went out → ``unknown``.

Each message is isolated: header values are cleaned (CR, LF and other control
characters become spaces, so a customer's name cannot inject a header or make
``email`` refuse the message), and a message that still cannot be built or
sent fails alone (``permanent`` ``bad_message``) while the rest of the batch
goes on and is recorded as the server answered.

``List-Unsubscribe`` and ``List-Unsubscribe-Post`` go on the wire verbatim, on
one line (folded only at the ", " between ``<…>`` items when the line would pass
RFC 5322's 998 octets): the ``email`` package's default folding turns a header
line over 78 characters into RFC 2047 encoded words, and a receiving server
then finds no ``<https://…>`` and offers no one-click unsubscribe. A link with
non-ASCII characters is percent-encoded first.

Settings: ``host``, ``port``, ``starttls`` (default true unless ``ssl``),
``ssl``, ``username`` (default: no login), ``from_address``, ``from_name``,
``reply_to``, ``unsubscribe_url``, ``unsubscribe_days`` (default 90),
``unsubscribe_mailto``, ``timeout`` (s, default 30), ``ca_file`` (a CA bundle,
e.g. for a private relay). Secrets: ``password``; optional ``unsubscribe_key``.
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
from collections.abc import Sequence
from datetime import timedelta
from email.errors import MessageError
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import formatdate, parseaddr
from typing import Any, ClassVar
from urllib.parse import quote

from engine.ports import Capabilities, ConfigurationError, OutgoingMessage, SendResult

from ._base import BaseConnector
from .unsubscribe import sign_unsubscribe


log = logging.getLogger("promoflow.connectors.smtp")

#: headers written exactly as set (see the module doc)
VERBATIM_HEADERS = frozenset({"list-unsubscribe", "list-unsubscribe-post"})
#: RFC 5322 §2.1.1: a line MUST NOT exceed 998 characters (without CRLF)
MAX_LINE = 998
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
#: bidi embeddings/overrides/isolates (a name with U+202E shows the header's text reversed)
_BIDI = re.compile(r"[\u202a-\u202e\u2066-\u2069]")
#: characters a URL keeps when a non-ASCII link is percent-encoded
_URL_SAFE = ";/?:@&=+$,-_.!~*'()#%[]"


def clean_header(value: object) -> str:
    """``value`` fit for one header line: CR, LF, tabs and other control
    characters (also U+2028/U+2029) become one space, bidi overrides are
    dropped; the ends are trimmed."""
    return " ".join(_CONTROL.sub(" ", _BIDI.sub("", str(value))).split())


def _ascii_link(link: str) -> str:
    """The link as ASCII (an IRI's non-ASCII characters percent-encoded), with
    no ``<``, ``>``, ``,`` or whitespace that would end the ``<…>`` item."""
    return quote(clean_header(link), safe=_URL_SAFE).replace(",", "%2C")


class _MailPolicy(EmailPolicy):
    """``email.policy.default`` except that the headers in
    :data:`VERBATIM_HEADERS` are written as set: one line, or folded at the
    ", " between ``<…>`` items when it would pass :data:`MAX_LINE`; never as
    RFC 2047 encoded words."""

    def fold(self, name: str, value: str) -> str:
        if name.lower() in VERBATIM_HEADERS:
            return self._verbatim(name, value)
        return super().fold(name, value)

    def fold_binary(self, name: str, value: str) -> bytes:
        if name.lower() in VERBATIM_HEADERS:
            return self._verbatim(name, value).encode("ascii")
        return super().fold_binary(name, value)

    def _verbatim(self, name: str, value: str) -> str:
        linesep = self.linesep
        text = clean_header(value)
        if len(name) + 2 + len(text) <= MAX_LINE:
            return f"{name}: {text}{linesep}"
        items = [item.strip() for item in text.split(", ")]
        lines = [f"{name}: {items[0]}"]
        for item in items[1:]:
            lines[-1] += ","
            lines.append(f" {item}")
        return linesep.join(lines) + linesep


#: the policy of every message this connector builds
MAIL_POLICY = _MailPolicy()


def _reply_result(message_id: str, code: int, text: bytes | str) -> SendResult:
    detail = (text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text))[:200]
    if 400 <= code < 500:
        return SendResult.retryable(message_id, str(code), detail, 60.0)
    return SendResult.permanent(message_id, str(code), detail)


class SmtpConnector(BaseConnector):
    """SMTP submission; one connection per batch."""

    channel = "email"
    required_secrets = ("password",)
    required_settings = ("host", "from_address")
    capabilities: ClassVar[Capabilities] = Capabilities(max_batch=50)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.pop("session", None)
        super().__init__(*args, **kwargs)
        self.use_ssl = bool(self.setting("ssl", False))
        self.starttls = bool(self.setting("starttls", not self.use_ssl))
        self.port = int(self.setting("port", 465 if self.use_ssl else 587))
        self.timeout = float(self.setting("timeout", 30))
        if self.setting("unsubscribe_url") and "unsubscribe_key" not in self._secrets:
            raise ConfigurationError(f"connector `{self.id}`: `unsubscribe_url` needs the secret `unsubscribe_key`",
                                     code="missing_secret")

    def _tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.setting("ca_file"))

    def _connect(self) -> smtplib.SMTP:
        host = str(self.setting("host"))
        client: smtplib.SMTP
        if self.use_ssl:
            client = smtplib.SMTP_SSL(host, self.port, timeout=self.timeout, context=self._tls_context())
        else:
            client = smtplib.SMTP(host, self.port, timeout=self.timeout)
        try:
            client.ehlo()
            if self.starttls and not self.use_ssl:
                if not client.has_extn("starttls"):
                    raise ConfigurationError(f"connector `{self.id}`: server {host} offers no STARTTLS; "
                                             "refusing to send in clear text", code="no_starttls")
                client.starttls(context=self._tls_context())
                client.ehlo()
            if self.setting("username"):
                self._login(client)
        except BaseException:
            _quietly_close(client)
            raise
        return client

    def _login(self, client: smtplib.SMTP) -> None:
        """AUTH with one mechanism (PLAIN, else LOGIN), so a wrong password is
        a clear 535 rather than smtplib falling through mechanisms until the
        server hangs up."""
        client.user, client.password = str(self.setting("username")), self.secret("password")
        offered = (client.esmtp_features.get("auth") or "").upper().split()
        mechanism = str(self.setting("auth_mechanism") or ("PLAIN" if "PLAIN" in offered or not offered else "LOGIN"))
        handler = {"PLAIN": client.auth_plain, "LOGIN": client.auth_login}.get(mechanism.upper())
        if handler is None:
            raise ConfigurationError(f"connector `{self.id}`: auth mechanism {mechanism} is not supported",
                                     code="auth_mechanism")
        client.auth(mechanism.upper(), handler, initial_response_ok=True)

    def unsubscribe_link(self, message: OutgoingMessage) -> str | None:
        if message.options.get("unsubscribe_url"):
            return str(message.options["unsubscribe_url"])
        base = self.setting("unsubscribe_url")
        customer = message.options.get("customer_id")
        if not base or customer is None:
            return None
        expires = self.clock() + timedelta(days=int(self.setting("unsubscribe_days", 90)))
        token = sign_unsubscribe(str(customer), "email", self.secret("unsubscribe_key"), expires)
        return f"{base}{'&' if '?' in str(base) else '?'}token={quote(token)}"

    def envelope_address(self, message: OutgoingMessage) -> str:
        """The bare address of ``message.recipient`` (which may be written
        ``Name <address>``)."""
        return parseaddr(clean_header(message.recipient))[1]

    def build(self, message: OutgoingMessage) -> EmailMessage:
        """The MIME message for ``message``; every header value is cleaned
        (:func:`clean_header`). The ``To`` display name is
        ``options.recipient_name``, else the name written in the recipient.

        Raises:
            ValueError, MessageError: the message cannot be expressed (the
                caller fails this one message).
        """
        sender = str(self.setting("from_address"))
        mail = EmailMessage(policy=MAIL_POLICY)
        # Address objects, not formataddr strings: the policy re-parses and
        # re-folds a string and drops the quotes around a display name that has
        # both non-ASCII text and specials such as ":" or "@"
        try:
            mail["From"] = Address(display_name=clean_header(self.setting("from_name") or ""), addr_spec=sender)
        except (ValueError, MessageError):
            # let the server judge the configured sender (a refusal is a ConfigurationError)
            mail["From"] = clean_header(sender)
        written_name, address = parseaddr(clean_header(message.recipient))
        try:
            mail["To"] = Address(display_name=clean_header(message.options.get("recipient_name") or written_name),
                                 addr_spec=address)
        except (ValueError, MessageError):
            # an internationalised local part (SMTPUTF8): the bare address, as is
            mail["To"] = address
        mail["Subject"] = clean_header(message.subject or "")
        mail["Date"] = formatdate(self.now_ts(), usegmt=True)
        mail["Message-ID"] = f"<{clean_header(message.id)}@{sender.rpartition('@')[2] or 'promoflow'}>"
        if self.setting("reply_to"):
            mail["Reply-To"] = clean_header(self.setting("reply_to"))
        link = self.unsubscribe_link(message)
        if link:
            targets = [f"<{_ascii_link(link)}>"]
            if self.setting("unsubscribe_mailto"):
                targets.append(f"<mailto:{_ascii_link(str(self.setting('unsubscribe_mailto')))}>")
            mail["List-Unsubscribe"] = ", ".join(targets)
            mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        mail.set_content(message.body or "")
        if message.html:
            mail.add_alternative(message.html, subtype="html")
            _add_inline_images(mail, message.options.get("inline_images") or ())
        return mail

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        """Send over one connection; reconnects once if the server drops it
        between messages.

        Raises:
            ConfigurationError: login rejected, sender refused, STARTTLS missing
                (``results``: messages settled before).
        """
        results: list[SendResult] = []
        client: smtplib.SMTP | None = None
        try:
            for index, message in enumerate(messages):
                if "@" not in self.envelope_address(message):
                    results.append(SendResult.permanent(message.id, "invalid_address", "not an e-mail address"))
                    continue
                try:
                    mail = self.build(message)
                except (ValueError, TypeError, MessageError) as exc:
                    # nothing of it went out: this message fails alone
                    results.append(SendResult.permanent(message.id, "bad_message",
                                                        f"cannot build the message: {type(exc).__name__}"))
                    continue
                if client is None:
                    failure = self._open()
                    if isinstance(failure, SendResult):
                        # the server is unreachable: nothing of the rest was sent
                        results.extend(SendResult.retryable(m.id, failure.code, failure.detail, failure.retry_after)
                                       for m in messages[index:])
                        break
                    client = failure
                result, keep = self._send_one(client, message, mail)
                results.append(result)
                if not keep:
                    _quietly_close(client)
                    client = None
        except ConfigurationError as exc:
            exc.results = results
            raise
        finally:
            if client is not None:
                _quietly_quit(client)
        return results

    def _open(self) -> smtplib.SMTP | SendResult:
        """A logged-in connection, or a retryable result saying why not.

        Raises:
            ConfigurationError: login refused or STARTTLS missing.
        """
        try:
            return self._connect()
        except ConfigurationError:
            raise
        except smtplib.SMTPAuthenticationError as exc:
            raise ConfigurationError(f"connector `{self.id}`: SMTP login refused ({exc.smtp_code})",
                                     code=str(exc.smtp_code)) from None
        except smtplib.SMTPResponseException as exc:
            return SendResult.retryable("", str(exc.smtp_code), "server refused the connection", 60.0)
        except ssl.SSLError as exc:
            return SendResult.retryable("", "tls", f"TLS failed: {exc.reason}", 60.0)
        except (OSError, smtplib.SMTPException) as exc:
            return SendResult.retryable("", "connection", f"could not connect: {type(exc).__name__}", 30.0)

    def _send_one(self, client: smtplib.SMTP, message: OutgoingMessage,
                  mail: EmailMessage) -> tuple[SendResult, bool]:
        """(result, connection still usable). Whatever goes wrong with this
        message is its own result; the batch goes on."""
        try:
            refused = client.send_message(mail, from_addr=str(self.setting("from_address")),
                                          to_addrs=[self.envelope_address(message)])
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()), (550, b"refused"))
            return _reply_result(message.id, code, text), True
        except smtplib.SMTPSenderRefused as exc:
            if exc.smtp_code >= 500:
                raise ConfigurationError(f"connector `{self.id}`: sender address refused ({exc.smtp_code})",
                                         code=str(exc.smtp_code)) from None
            return _reply_result(message.id, exc.smtp_code, exc.smtp_error), True
        except smtplib.SMTPDataError as exc:
            return _reply_result(message.id, exc.smtp_code, exc.smtp_error), True
        except smtplib.SMTPServerDisconnected:
            # smtplib cannot tell whether the final "." went through
            return SendResult.unknown(message.id, "disconnected", "connection lost during the send"), False
        # smtplib's exceptions are OSErrors: the SMTP ones are caught before OSError
        except smtplib.SMTPResponseException as exc:
            return _reply_result(message.id, exc.smtp_code, exc.smtp_error), True
        except smtplib.SMTPNotSupportedError as exc:
            # e.g. a non-ASCII address and a server without SMTPUTF8: refused before MAIL FROM
            return SendResult.permanent(message.id, "not_supported", str(exc)[:200]), True
        except smtplib.SMTPException as exc:
            log.warning("smtp %s: message %s failed: %s", self.id, message.id, type(exc).__name__)
            return SendResult.unknown(message.id, "smtp_error", type(exc).__name__), False
        except TimeoutError:
            return SendResult.unknown(message.id, "timeout", "no answer during the send"), False
        except OSError as exc:
            return SendResult.unknown(message.id, "connection_lost", type(exc).__name__), False
        except (ValueError, MessageError) as exc:
            # smtplib could not serialise it before MAIL FROM; start a fresh
            # connection all the same, in case the dialogue was left mid-way
            return SendResult.permanent(message.id, "bad_message", f"cannot send: {type(exc).__name__}"), False
        if refused:
            code, text = next(iter(refused.values()))
            return _reply_result(message.id, code, text), True
        return SendResult.accepted(message.id, mail["Message-ID"], "250"), True


def _quietly_quit(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (OSError, smtplib.SMTPException):
        _quietly_close(client)


def _quietly_close(client: smtplib.SMTP) -> None:
    try:
        client.close()
    except OSError:
        pass


def _add_inline_images(mail: EmailMessage, images: Any) -> None:
    """Attach ``options.inline_images`` (``[{cid, content_type, data (base64), title}]``,
    e.g. report charts, issue 14) to the HTML part, which shows them as
    ``<img src="cid:…">``.

    Raises:
        ValueError: an image is not valid base64 or not an image type.
    """
    import base64
    import binascii

    html_part = list(mail.iter_parts())[-1]  # called after add_alternative: the mail is multipart
    for image in images:
        maintype, _, subtype = str(image.get("content_type") or "image/png").partition("/")
        if maintype != "image" or not subtype:
            raise ValueError("inline images must be image/* types")
        try:
            data = base64.b64decode(str(image["data"]), validate=True)
        except (KeyError, binascii.Error) as exc:
            raise ValueError("an inline image is not base64") from exc
        html_part.add_related(data, maintype=maintype, subtype=subtype, cid=f"<{clean_header(str(image['cid']))}>")
