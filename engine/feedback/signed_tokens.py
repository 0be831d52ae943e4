"""The one token shape of the links customers click without a login (survey,
unsubscribe): ``<payload>.<signature>``, both URL-safe Base64 without padding,
signature = HMAC-SHA256 over the payload bytes. Nothing in a payload is
secret, and nothing can be changed without the key."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac


class BadToken(ValueError):
    """Malformed or not signed with the key."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def pack(payload: bytes, key: bytes) -> str:
    """``payload`` signed with ``key``, as URL-safe text."""
    return f"{_b64(payload)}.{_b64(hmac.new(key, payload, hashlib.sha256).digest())}"


def unpack(token: str, key: bytes) -> bytes:
    """The payload of a token signed with ``key``.

    Raises:
        BadToken: malformed, or the signature does not match (compared in constant time).
    """
    try:
        payload_part, signature_part = token.split(".")
        payload, given = _unb64(payload_part), _unb64(signature_part)
    except (ValueError, binascii.Error):
        raise BadToken("malformed token") from None
    if not hmac.compare_digest(hmac.new(key, payload, hashlib.sha256).digest(), given):
        raise BadToken("bad signature")
    return payload
