"""Inbound survey-tool webhook: a survey tool (or a small relay in front of
腾讯问卷 / 问卷星 / Typeform) POSTs answers to ``/hooks/feedback/<connector id>``.

**Authenticity**: ``X-Promoflow-Timestamp`` (Unix seconds) and
``X-Promoflow-Signature: sha256=<hex>``, where hex = HMAC-SHA256(secret
``signing_key``, ``<timestamp>.<raw body>``). Signing the timestamp with the
body stops a captured request from being replayed with a fresh timestamp; a
timestamp more than ``tolerance`` seconds (setting, default 300) from now is
refused, and each answer's ``id`` is stored with it (unique), so a replay
inside the window stores nothing twice.

**Body**: one item or ``{"items": [...]}`` in the format of
:mod:`connectors.survey_items`.

Settings: ``tolerance`` (s), ``signature_header``, ``timestamp_header``.
Secrets: ``signing_key``. This connector only receives (channel ``feedback``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from engine.ports import Capabilities, FeedbackItem, OutgoingMessage, SendResult, WebhookVerificationError

from ._base import BaseConnector
from .survey_items import InvalidFeedbackBody, parse_items

DEFAULT_TOLERANCE = 300


def sign(secret: str, timestamp: str | int, body: bytes) -> str:
    """The ``X-Promoflow-Signature`` value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class SurveyWebhookConnector(BaseConnector):
    """Verifies and parses survey answers POSTed by a survey tool."""

    channel = "feedback"
    required_secrets = ("signing_key",)
    capabilities: ClassVar[Capabilities] = Capabilities(webhooks=True, feedback=True)

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        """Nothing is sent through a receive-only connector."""
        return [SendResult.permanent(m.id, "inbound_only", "this connector only receives feedback")
                for m in messages]

    def _header(self, headers: Mapping[str, str], name: str) -> str:
        for key, value in headers.items():
            if key.lower() == name.lower():
                return str(value)
        return ""

    def verify_webhook(self, headers: Mapping[str, str], body: bytes,
                       query: Mapping[str, str] | None = None) -> list[FeedbackItem]:
        """The answers in a verified body.

        Raises:
            WebhookVerificationError: missing or wrong signature, or a
                timestamp outside the tolerance (``code`` says which).
            InvalidFeedbackBody: the body is signed but not valid survey data.
        """
        timestamp = self._header(headers, str(self.setting("timestamp_header", "X-Promoflow-Timestamp")))
        given = self._header(headers, str(self.setting("signature_header", "X-Promoflow-Signature")))
        if not timestamp or not given:
            raise WebhookVerificationError("signature or timestamp header missing", code="missing_signature")
        expected = sign(self.secret("signing_key"), timestamp, body)
        if not hmac.compare_digest(expected.encode(), given.strip().encode()):
            raise WebhookVerificationError("signature does not match", code="bad_signature")
        try:
            age = abs(self.now_ts() - int(timestamp))
        except ValueError:
            raise WebhookVerificationError("timestamp is not a number", code="bad_timestamp") from None
        if age > float(self.setting("tolerance", DEFAULT_TOLERANCE)):
            raise WebhookVerificationError("timestamp outside the accepted window", code="stale_timestamp")
        try:
            raw: Any = json.loads(body, parse_constant=_not_json, parse_float=_finite)
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: "[[[[…" nesting
            raise InvalidFeedbackBody([{"field": "$", "code": "json", "message": "body is not JSON (numbers must be "
                                        "finite, at most 4300 digits; NaN and Infinity are not JSON)"}]) from None
        items, errors = parse_items(raw)
        if errors:
            raise InvalidFeedbackBody(errors)
        return items


def _not_json(name: str) -> Any:
    """``NaN``/``Infinity`` are Python's extension, not JSON."""
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    """A JSON number as a float, refusing one too large for a float (1e400
    would be stored as infinity, which PostgreSQL's jsonb cannot hold)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is out of range")
    return value
