"""Signed, expiring unsubscribe links (the ``unsubscribe_url`` in a message).

A customer who clicks "退订 / unsubscribe" must not need a login, and nobody
must be able to opt somebody else out by editing a number in a URL. The token
(:mod:`.signed_tokens`) carries ``customer_id|channel|expires`` (expires: Unix
seconds; channel ``*`` means every marketing channel).

Two keys sign such tokens:

* links that rules put in messages (``{{ unsubscribe_url }}``) use a key
  *derived* from the instance secret (:func:`instance_key`), so the same
  secret's other uses — session cookies, survey links — never validate here;
* the SMTP connector's ``List-Unsubscribe`` links use the connector's own
  ``unsubscribe_key`` secret (``connectors.unsubscribe`` signs them with this
  module), so a relay configured elsewhere can share it.

The engine reads no clock: ``now`` is passed in.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from .signed_tokens import BadToken, pack, unpack

__all__ = ["ALL_CHANNELS", "InvalidUnsubscribeToken", "ExpiredUnsubscribeToken", "instance_key",
           "sign_unsubscribe", "unsubscribe_path", "verify_unsubscribe"]

#: The channel written in a token that opts out of every marketing channel.
ALL_CHANNELS = "*"

_PURPOSE = b"promoflow.unsubscribe.v1"


class InvalidUnsubscribeToken(ValueError):
    """Malformed or tampered with (the page answers 403)."""


class ExpiredUnsubscribeToken(InvalidUnsubscribeToken):
    """Genuine but past its expiry (the page answers 410)."""


def instance_key(secret: str) -> bytes:
    """The key for links that rules put in messages, derived from the instance secret."""
    return hmac.new(secret.encode(), _PURPOSE, hashlib.sha256).digest()


def _key(key: str | bytes) -> bytes:
    return key if isinstance(key, bytes) else key.encode()


def _ts(value: datetime | float) -> int:
    return int(value.timestamp()) if isinstance(value, datetime) else int(value)


def sign_unsubscribe(customer_id: str | int, channel: str, key: str | bytes, expires: datetime | float) -> str:
    """A token that opts ``customer_id`` out of ``channel`` (or ``*``) until ``expires``."""
    customer, chan = str(customer_id), str(channel)
    if "|" in customer or "|" in chan:
        raise ValueError("customer id and channel must not contain '|'")
    return pack(f"{customer}|{chan}|{_ts(expires)}".encode(), _key(key))


def verify_unsubscribe(token: str, key: str | bytes, now: datetime | float) -> tuple[str, str]:
    """``(customer_id, channel)`` of a valid token.

    Raises:
        InvalidUnsubscribeToken: malformed or wrong signature.
        ExpiredUnsubscribeToken: the signature holds but ``now`` is past the expiry.
    """
    try:
        payload = unpack(token, _key(key))
    except BadToken as exc:
        raise InvalidUnsubscribeToken(str(exc)) from None
    try:
        customer, channel, expires = payload.decode().split("|")
        expiry = int(expires)
    except (ValueError, UnicodeDecodeError):
        raise InvalidUnsubscribeToken("malformed payload") from None
    if _ts(now) >= expiry:
        raise ExpiredUnsubscribeToken("token expired")
    return customer, channel


def unsubscribe_path(customer_id: str | int, channel: str, secret: str, expires: datetime | float) -> str:
    """The site-relative link (``/u/<token>``) a rule puts in a message; the
    caller prefixes the installation's base URL."""
    return f"/u/{sign_unsubscribe(customer_id, channel, instance_key(secret), expires)}"
