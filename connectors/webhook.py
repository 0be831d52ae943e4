"""A generic outgoing webhook: the message as JSON, signed with HMAC-SHA256.

Body: ``{"id", "channel", "recipient", "subject", "body", "params",
"idempotency_key", "attempt", "sent_at"}`` (compact JSON, UTF-8). Headers:
``X-Promoflow-Signature: sha256=<hex HMAC-SHA256(signing_key, body)>``,
``X-Promoflow-Delivery`` (our message id) and ``Idempotency-Key``; the receiver
checks the signature over the raw body and may reject old ``sent_at`` values.

SSRF guard: only http(s); the host is resolved once and every address must be
public — loopback, private (RFC 1918, ULA), link-local (169.254/16, fe80::/10,
so cloud metadata), CGNAT, multicast, reserved, unspecified and IPv4-mapped
forms of those are refused, whatever spelling the URL used (decimal, octal, hex
hosts resolve to the address that is checked). The request then goes to the
checked address (no second lookup, so no DNS rebinding) and redirects are not
followed. ``allow_private: true`` in the settings lifts the address check (for
an intranet receiver); the scheme check stays.

Settings: ``url``, ``allow_private``, timeouts. Secrets: ``signing_key``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
from collections.abc import Sequence
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from engine.ports import Capabilities, ConfigurationError, OutgoingMessage, SendResult

from ._base import (
    HttpConnector,
    TransportFailure,
    http_status_result,
    retry_after_seconds,
    send_each,
)

SIGNATURE_HEADER = "X-Promoflow-Signature"


class UnsafeTarget(ConfigurationError):
    """The webhook URL points somewhere we refuse to send to."""


def sign_body(signing_key: str, body: bytes) -> str:
    """The ``X-Promoflow-Signature`` value for ``body``."""
    return "sha256=" + hmac.new(signing_key.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(signing_key: str, body: bytes, header: str) -> bool:
    """True when ``header`` is the signature of ``body`` (constant time)."""
    return hmac.compare_digest(sign_body(signing_key, body).encode(), (header or "").encode())


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return _is_public(mapped)
        if address.teredo:
            return False
    return bool(address.is_global) and not (address.is_multicast or address.is_reserved
                                            or address.is_loopback or address.is_link_local
                                            or address.is_private or address.is_unspecified)


def resolve_target(url: str, *, allow_private: bool = False, port_default: int | None = None) -> list[str]:
    """The addresses ``url``'s host resolves to, all checked.

    Raises:
        UnsafeTarget: not http(s), no host, unresolvable, or (without
            ``allow_private``) any address that is not public.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeTarget(f"webhook URL scheme {parts.scheme!r} is not http or https", code="ssrf_scheme")
    host = parts.hostname
    if not host:
        raise UnsafeTarget("webhook URL has no host", code="ssrf_host")
    port = parts.port or port_default or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise UnsafeTarget(f"webhook host {host!r} does not resolve", code="ssrf_resolve") from None
    addresses = []
    for info in infos:
        text = str(info[4][0]).split("%", 1)[0]
        address = ipaddress.ip_address(text)
        if not allow_private and not _is_public(address):
            raise UnsafeTarget(f"webhook host {host!r} resolves to a non-public address ({address}); "
                               "set allow_private: true to allow it", code="ssrf_private")
        addresses.append(text)
    if not addresses:
        raise UnsafeTarget(f"webhook host {host!r} has no address", code="ssrf_resolve")
    return addresses


class _PinnedHostAdapter(HTTPAdapter):
    """Connects to a checked IP while TLS still verifies the original name."""

    def __init__(self, hostname: str, **kwargs: Any) -> None:
        self._hostname = hostname
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["server_hostname"] = self._hostname
        kwargs["assert_hostname"] = self._hostname
        super().init_poolmanager(*args, **kwargs)


class WebhookConnector(HttpConnector):
    """POSTs each message to the ``url`` setting."""

    channel = "webhook"
    required_secrets = ("signing_key",)
    required_settings = ("url",)
    capabilities: ClassVar[Capabilities] = Capabilities(max_batch=20)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.url = str(self.setting("url"))
        self.allow_private = bool(self.setting("allow_private", False))
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UnsafeTarget(f"connector `{self.id}`: webhook url must be http(s)://host/…", code="ssrf_scheme")
        self._pinned: requests.Session | None = None

    def _target(self) -> tuple[requests.Session, str, dict[str, str]]:
        """Session, URL with the checked IP, and the Host header."""
        parts = urlsplit(self.url)
        address = resolve_target(self.url, allow_private=self.allow_private)[0]
        host_port = f"[{address}]" if ":" in address else address
        if parts.port:
            host_port += f":{parts.port}"
        pinned_url = urlunsplit((parts.scheme, host_port, parts.path or "/", parts.query, ""))
        host_header = parts.netloc.rsplit("@", 1)[-1]
        if parts.scheme == "https":
            if self._pinned is None:
                self._pinned = requests.Session()
                self._pinned.mount("https://", _PinnedHostAdapter(str(parts.hostname)))
            return self._pinned, pinned_url, {"Host": host_header}
        return self.session, pinned_url, {"Host": host_header}

    def payload(self, message: OutgoingMessage) -> bytes:
        return json.dumps({
            "id": message.id, "channel": message.channel, "recipient": message.recipient,
            "subject": message.subject, "body": message.body, "params": dict(message.params),
            "idempotency_key": message.idempotency_key, "attempt": message.attempt,
            "sent_at": self.clock().isoformat(),
        }, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        """One POST per message.

        Raises:
            UnsafeTarget: the URL's host is not public (and not allowed) or
                does not resolve; nothing was sent.
        """
        return send_each(messages, self._send)

    def _send(self, message: OutgoingMessage) -> SendResult:
        session, url, headers = self._target()
        body = self.payload(message)
        headers |= {
            "Content-Type": "application/json; charset=utf-8",
            SIGNATURE_HEADER: sign_body(self.secret("signing_key"), body),
            "X-Promoflow-Delivery": message.id,
            "Idempotency-Key": message.idempotency_key or message.id,
        }
        try:
            response = self.request("POST", url, via=session, data=body, headers=headers, stream=True)
        except TransportFailure as failure:
            return failure.result_for(message.id)
        try:
            status = response.status_code
            if 200 <= status < 300:
                return SendResult.accepted(message.id, response.headers.get("X-Request-Id"), str(status))
            if status in (408, 425, 429):
                return SendResult.retryable(message.id, f"http_{status}", "receiver asked to retry later",
                                            retry_after_seconds(response))
            if 300 <= status < 400:
                return SendResult.permanent(message.id, f"http_{status}", "redirects are not followed")
            return http_status_result(message.id, response) or SendResult.permanent(
                message.id, f"http_{status}", "receiver refused the message")
        finally:
            response.close()
