"""Shared pieces of delivery receipts: the normalised status words, the
shared-secret check for providers whose callbacks are not signed, and
provider-local times.

Aliyun's SmsReport push and Tencent's status callback carry no signature, so
their callback URL holds a random secret (``?token=…``, the connector's
``receipt_token`` secret) compared in constant time. A receipt can only move a
message's delivery status, never cause a send, and is applied by the provider
id we stored, so a forged one can at worst mislabel a message.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from engine.ports import UnsupportedOperation, WebhookVerificationError

#: Receipt statuses as the engine stores them.
PENDING, DELIVERED, UNDELIVERED, FAILED = "pending", "delivered", "undelivered", "failed"
CHINA = ZoneInfo("Asia/Shanghai")


def check_token(connector: Any, query: Mapping[str, str] | None) -> None:
    """Accept the callback only with the connector's ``receipt_token``.

    Raises:
        UnsupportedOperation: no ``receipt_token`` secret is configured (the
            endpoint is closed rather than open to anyone).
        WebhookVerificationError: the token is missing or wrong.
    """
    if "receipt_token" not in getattr(connector, "_secrets", {}):
        raise UnsupportedOperation(f"connector `{connector.id}` has no receipt_token secret: receipts are off")
    given = str((query or {}).get("token") or "")
    expected = connector.secret("receipt_token")
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise WebhookVerificationError("wrong or missing receipt token", code="token")


def json_list(body: bytes) -> list[Mapping[str, Any]]:
    """The callback body as a list of JSON objects (one object is a list of one).

    Raises:
        WebhookVerificationError: not JSON, or not objects.
    """
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise WebhookVerificationError("receipt body is not JSON", code="body") from None
    if isinstance(data, Mapping):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(x, Mapping) for x in data):
        raise WebhookVerificationError("receipt body is not a list of objects", code="body")
    return data


def china_time(text: Any) -> datetime | None:
    """``"2026-03-02 12:00:05"`` in China time → aware UTC (None if unreadable)."""
    try:
        return datetime.strptime(str(text), "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA).astimezone(UTC)
    except ValueError:
        return None


def digits(number: str) -> str:
    """The last 11 digits of a phone number: ``+8613800000000`` and
    ``13800000000`` compare equal."""
    return "".join(ch for ch in str(number) if ch.isdigit())[-11:]
