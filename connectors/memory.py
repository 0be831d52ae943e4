"""An in-memory connector that ships in the product (demo and tests), like
kombu's memory transport: it records every message it "sends" and can be told
to fail.

Settings: ``fail_recipients`` (list: these recipients fail permanently),
``max_batch`` (default 100).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import requests

from engine.ports import (
    Capabilities,
    Clock,
    ConfigurationError,
    FeedbackItem,
    Outcome,
    OutgoingMessage,
    SendResult,
)

from ._base import BaseConnector


@dataclass(frozen=True)
class Sent:
    """One recorded send."""

    message: OutgoingMessage
    provider_id: str
    at: float


class MemoryConnector(BaseConnector):
    """Records sends in :attr:`sent`; :meth:`fail_next` and
    :meth:`fail_configuration` inject failures. The latest instance per connector
    id is reachable through :meth:`named` (the demo's messages page reads it)."""

    channel = None
    capabilities: ClassVar[Capabilities] = Capabilities(max_batch=100, receipts=True)
    _instances: ClassVar[dict[str, MemoryConnector]] = {}
    _instances_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, spec: Any, secrets: Mapping[str, str], *,
                 session: requests.Session | None = None, clock: Clock | None = None) -> None:
        super().__init__(spec, secrets, session=session, clock=clock)
        self.sent: list[Sent] = []
        self._lock = threading.Lock()
        self._faults: deque[SendResult] = deque()
        self._config_error: str | None = None
        self._fail_recipients = frozenset(self.setting("fail_recipients") or ())
        self._counter = 0
        with self._instances_lock:
            MemoryConnector._instances[self.id] = self

    @classmethod
    def named(cls, connector_id: str) -> MemoryConnector | None:
        """The latest memory connector built for ``connector_id``."""
        with cls._instances_lock:
            return cls._instances.get(connector_id)

    @property
    def max_batch(self) -> int:
        return int(self.setting("max_batch", self.capabilities.max_batch))

    def fail_next(self, outcome: Outcome | str, code: str = "injected", count: int = 1,
                  retry_after: float | None = None) -> None:
        """Make the next ``count`` messages end with ``outcome`` (not recorded as
        sent, except ``unknown``, which records them: the provider got them)."""
        with self._lock:
            for _ in range(count):
                self._faults.append(SendResult(
                    "", Outcome(outcome), None, code, "injected failure",
                    retry_after if Outcome(outcome) is Outcome.RETRYABLE else None))

    def reconcile(self, messages: Sequence[tuple[OutgoingMessage, datetime | None]]) -> list[FeedbackItem]:
        """The status query of the in-memory "provider": a message it recorded
        (an ``unknown`` fault records it, like a provider that got the request)
        is ``delivered`` under its provider id; others are not on record."""
        with self._lock:
            recorded = {s.message.id: s.provider_id for s in self.sent}
        return [FeedbackItem("receipt", provider_id=recorded[m.id], message_id=m.id, status="delivered")
                for m, _ in messages if m.id in recorded]

    def fail_configuration(self, reason: str | None = "injected configuration error") -> None:
        """Make every send raise :class:`ConfigurationError` until called with None."""
        self._config_error = reason

    def clear(self) -> None:
        with self._lock:
            self.sent.clear()
            self._faults.clear()

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        """Record ``messages``; see the class doc for injected failures.

        Raises:
            ConfigurationError: after :meth:`fail_configuration`.
        """
        if self._config_error:
            raise ConfigurationError(f"connector `{self.id}`: {self._config_error}", code="injected")
        results = []
        now = self.now_ts()
        with self._lock:
            for message in messages:
                fault = self._faults.popleft() if self._faults else None
                if fault is None and message.recipient in self._fail_recipients:
                    fault = SendResult("", Outcome.PERMANENT, None, "invalid_recipient", "recipient refused")
                if fault is not None and fault.outcome is not Outcome.ACCEPTED:
                    if fault.outcome is Outcome.UNKNOWN:
                        self._counter += 1
                        self.sent.append(Sent(message, f"mem-{self._counter}", now))
                    results.append(SendResult(message.id, fault.outcome, None, fault.code, fault.detail,
                                              fault.retry_after))
                    continue
                self._counter += 1
                provider_id = f"mem-{self._counter}"
                self.sent.append(Sent(message, provider_id, now))
                results.append(SendResult.accepted(message.id, provider_id, "OK"))
        return results
