"""Signed one-click unsubscribe tokens (RFC 8058 links in e-mail).

A token is ``<payload>.<signature>``, both URL-safe Base64 without padding:
payload = ``customer_id|channel|expires`` (expires: Unix seconds), signature =
HMAC-SHA256(secret, payload). Nothing in it is secret, and nothing can be
changed without the secret. The web layer verifies a POST to the link and opts
the customer out of the channel; a GET only shows a confirmation page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import datetime


class InvalidUnsubscribeToken(ValueError):
    """Malformed, tampered with, or expired."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _ts(value: datetime | float) -> int:
    return int(value.timestamp()) if isinstance(value, datetime) else int(value)


def sign_unsubscribe(customer_id: str | int, channel: str, secret: str, expires: datetime | float) -> str:
    """A token that opts ``customer_id`` out of ``channel`` until ``expires``."""
    customer, chan = str(customer_id), str(channel)
    if "|" in customer or "|" in chan:
        raise ValueError("customer id and channel must not contain '|'")
    payload = f"{customer}|{chan}|{_ts(expires)}".encode()
    return f"{_b64(payload)}.{_b64(hmac.new(secret.encode(), payload, hashlib.sha256).digest())}"


def verify_unsubscribe(token: str, secret: str, now: datetime | float) -> tuple[str, str]:
    """``(customer_id, channel)`` of a valid token.

    Raises:
        InvalidUnsubscribeToken: malformed, wrong signature, or expired at ``now``.
    """
    try:
        payload_part, signature_part = token.split(".")
        payload, given = _unb64(payload_part), _unb64(signature_part)
    except (ValueError, binascii.Error):
        raise InvalidUnsubscribeToken("malformed token") from None
    expected = hmac.new(secret.encode(), payload, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, given):
        raise InvalidUnsubscribeToken("bad signature")
    try:
        customer, channel, expires = payload.decode().split("|")
        expiry = int(expires)
    except (ValueError, UnicodeDecodeError):
        raise InvalidUnsubscribeToken("malformed payload") from None
    if _ts(now) >= expiry:
        raise InvalidUnsubscribeToken("token expired")
    return customer, channel
