"""The demo connector: writes each message to the log instead of sending it.

Recipients are masked (``138****1234``, ``a***@example.com``) and bodies cut to
200 characters, so a demo log holds no full contact data.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from typing import ClassVar

from engine.ports import Capabilities, OutgoingMessage, SendResult

from ._base import BaseConnector

log = logging.getLogger("promoflow.connectors.log")
_ids = itertools.count(1)


def mask(recipient: str) -> str:
    """Mask a phone number or e-mail address for logs."""
    if "@" in recipient:
        local, _, domain = recipient.partition("@")
        return f"{local[:1]}***@{domain}"
    if len(recipient) >= 7:
        return f"{recipient[:3]}****{recipient[-4:]}"
    return "***"


class LogConnector(BaseConnector):
    """Logs at INFO and accepts everything."""

    channel = None
    capabilities: ClassVar[Capabilities] = Capabilities(max_batch=100)

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        """Log each message; every one is accepted. Raises nothing."""
        results = []
        for message in messages:
            provider_id = f"log-{next(_ids)}"
            body = message.body if len(message.body) <= 200 else message.body[:200] + "…"
            log.info("[%s] %s → %s %s%s", self.id, message.channel or "-", mask(message.recipient),
                     f"«{message.subject}» " if message.subject else "", body)
            results.append(SendResult.accepted(message.id, provider_id, "OK"))
        return results
