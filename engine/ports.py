"""The Connector port: what the engine's dispatcher asks of a channel.

Pure types only: the engine imports this module and never a concrete connector.
Concrete connectors live in the ``connectors`` package and are found by name
through the ``promoflow.connectors`` entry point group (see
``connectors.registry``).

The contract in one paragraph: the dispatcher claims outbox rows, turns each
into an :class:`OutgoingMessage` (:meth:`OutgoingMessage.from_outbox`), splits
them into chunks of at most :attr:`Connector.max_batch`, and calls
:meth:`Connector.send_batch`. It gets back exactly one :class:`SendResult` per
message, in order. Per-message problems never raise: they come back as
``retryable`` (nothing was sent; try again, not before ``retry_after``),
``permanent`` (never retry; ``suppress`` says the recipient opted out) or
``unknown`` (the request left and no answer came: the message may have been
delivered — a marketing message must not be resent blindly). Only a problem of
the connector as a whole raises: :class:`ConfigurationError` (bad secret,
unknown sign name …: stop using this connector and alert; retrying will not help)
or :class:`ConnectorError` (a bug or a broken provider). Either exception
carries ``results`` for the messages settled before it was raised; every other
message of the batch was not sent.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, ClassVar

EMPTY: Mapping[str, Any] = MappingProxyType({})

#: The connectors' clock: returns the current time as an aware UTC datetime.
#: Connectors read time only through it, so tests run on a fake clock.
Clock = Callable[[], datetime]


class Outcome(StrEnum):
    """What became of one message after one send attempt."""

    ACCEPTED = "accepted"    # the provider took it; ``provider_id`` identifies it there
    RETRYABLE = "retryable"  # not sent (or certainly not accepted); safe to send again
    PERMANENT = "permanent"  # will never succeed as it is; don't retry
    UNKNOWN = "unknown"      # the request left and the answer was lost; may have been sent


class DeliveryClass(StrEnum):
    """How hard the dispatcher tries: at most once, or at least once."""

    MARKETING = "marketing"          # at most once: an ``unknown`` outcome is reconciled, not resent
    TRANSACTIONAL = "transactional"  # at least once: ``unknown`` may be resent


@dataclass(frozen=True)
class OutgoingMessage:
    """One outbox message as a connector sees it.

    ``recipient`` is the channel's address: E.164 phone number (SMS), e-mail
    address, WeCom userid (``|``-joined for several), robot/webhook: free text.
    ``params`` are template parameters (Aliyun ``TemplateParam``, Tencent
    ``TemplateParamSet`` in template order, also used for the webhook payload);
    ``template_code`` is the provider's approved template (SMS only).
    ``options`` carries channel-specific presentation that has no field here:
    WeCom ``msgtype`` (text | markdown | textcard), ``url`` and ``btntxt`` for a
    textcard, an SMS ``sign_name`` overriding the connector's, an e-mail
    ``customer_id`` / ``unsubscribe_url`` … Each connector documents the keys it
    reads; unknown keys are ignored.
    """

    id: str
    channel: str
    recipient: str
    body: str = ""
    subject: str | None = None
    html: str | None = None
    params: Mapping[str, Any] = field(default_factory=lambda: EMPTY)
    template_code: str | None = None
    delivery_class: str = DeliveryClass.MARKETING
    idempotency_key: str | None = None
    attempt: int = 1
    options: Mapping[str, Any] = field(default_factory=lambda: EMPTY)

    @classmethod
    def from_outbox(cls, row: Mapping[str, Any]) -> OutgoingMessage:
        """Build a message from an outbox row (a mapping of its columns).

        Reads ``id, channel, recipient, subject, body, delivery_class,
        idempotency_key, attempts, customer_id`` and the ``payload`` JSON (a dict
        or its JSON text) with the optional keys ``html``, ``params``,
        ``template_code`` and ``options``. Presentation keys that the template
        renderer leaves in ``params`` move to ``options``: for ``wecom``
        ``msgtype, title, url, btntxt``, for ``sms`` ``sign_name``.
        ``customer_id`` goes to ``options`` (the e-mail unsubscribe link needs it).
        ``attempts`` counts attempts *including* this one (the claim increments
        it first); a missing or zero value counts as 1.

        Raises:
            ValueError: ``payload`` is text that is not JSON.
            TypeError: ``payload`` is not a JSON object.
        """
        payload: Any = row.get("payload") or {}
        if isinstance(payload, (str, bytes)):
            payload = json.loads(payload)
        if not isinstance(payload, Mapping):
            raise TypeError("outbox payload must be a JSON object")
        channel = str(row.get("channel") or "")
        params = dict(payload.get("params") or {})
        options = dict(payload.get("options") or {})
        for key in _PRESENTATION_KEYS.get(channel, ()):
            if key in params:
                options.setdefault(key, params.pop(key))
        if row.get("customer_id") is not None:
            options.setdefault("customer_id", row["customer_id"])
        return cls(
            id=str(row["id"]),
            channel=channel,
            recipient=str(row.get("recipient") or ""),
            body=str(row.get("body") or ""),
            subject=row.get("subject"),
            html=payload.get("html"),
            params=MappingProxyType(params),
            template_code=payload.get("template_code"),
            delivery_class=str(row.get("delivery_class") or DeliveryClass.MARKETING),
            idempotency_key=row.get("idempotency_key"),
            attempt=max(1, int(row.get("attempts") or 1)),
            options=MappingProxyType(options),
        )


_PRESENTATION_KEYS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "wecom": ("msgtype", "title", "url", "btntxt"),
    "sms": ("sign_name",),
})


@dataclass(frozen=True)
class SendResult:
    """The outcome of one message. ``code`` is the provider's own code (``OK``,
    ``isv.MOBILE_NUMBER_ILLEGAL``, ``45009``, ``550`` …) or one of ours
    (``throttled``, ``timeout``, ``connection``, ``http_503``, ``bad_response``);
    ``detail`` is a short human text without secrets or message bodies.
    ``retry_after``: seconds before a retry makes sense (rate limits).
    ``suppress``: permanent because the recipient opted out or blocked us — the
    dispatcher should add them to the suppression list."""

    message_id: str
    outcome: Outcome
    provider_id: str | None = None
    code: str | None = None
    detail: str | None = None
    retry_after: float | None = None
    suppress: bool = False

    @classmethod
    def accepted(cls, message_id: str, provider_id: str | None = None, code: str | None = None,
                 detail: str | None = None) -> SendResult:
        return cls(message_id, Outcome.ACCEPTED, provider_id, code, detail)

    @classmethod
    def retryable(cls, message_id: str, code: str | None = None, detail: str | None = None,
                  retry_after: float | None = None) -> SendResult:
        return cls(message_id, Outcome.RETRYABLE, None, code, detail, retry_after)

    @classmethod
    def permanent(cls, message_id: str, code: str | None = None, detail: str | None = None,
                  suppress: bool = False) -> SendResult:
        return cls(message_id, Outcome.PERMANENT, None, code, detail, None, suppress)

    @classmethod
    def unknown(cls, message_id: str, code: str | None = None, detail: str | None = None) -> SendResult:
        return cls(message_id, Outcome.UNKNOWN, None, code, detail)


@dataclass(frozen=True)
class FeedbackItem:
    """Something a provider told us after the send: a delivery receipt, a reply,
    an opt-out, a survey answer. ``kind`` is ``receipt``, ``reply``, ``opt_out``
    or ``survey``; ``message_id`` is our id when the provider echoed it."""

    kind: str
    provider_id: str | None = None
    message_id: str | None = None
    sender: str | None = None
    status: str | None = None
    text: str | None = None
    occurred_at: datetime | None = None
    data: Mapping[str, Any] = field(default_factory=lambda: EMPTY)


class ConnectorError(Exception):
    """The connector as a whole failed (not one message).

    ``results`` holds the results of the messages of the current batch that were
    settled before the failure; the other messages of the batch were not sent.
    """

    def __init__(self, message: str, *, code: str | None = None,
                 results: Sequence[SendResult] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.results: list[SendResult] = list(results)


class ConfigurationError(ConnectorError):
    """The connector's configuration or credentials are wrong (a missing
    environment variable, a rejected secret, an unapproved sign name).

    Retrying cannot help: the dispatcher should stop this connector, alert a
    person and leave unsent messages pending. Messages never contain secret
    values, only the names of settings or environment variables.
    """


class UnsupportedOperation(ConnectorError):
    """The connector does not offer this optional operation."""


class WebhookVerificationError(ConnectorError):
    """An inbound callback failed its signature, timestamp or decryption check.
    The web layer answers 401/403 and stores nothing."""


@dataclass(frozen=True)
class Capabilities:
    """What the dispatcher may rely on when planning sends.

    ``max_batch``: most messages one ``send_batch`` call handles well in one
    provider request (bigger lists are still accepted and chunked inside).
    ``dedupe_window``: seconds during which the provider drops a byte-identical
    resend (WeCom ``enable_duplicate_check``), None if it has none.
    ``per_recipient_per_minute``: the provider's documented cap per recipient.
    """

    max_batch: int = 1
    dedupe_window: float | None = None
    receipts: bool = False
    feedback: bool = False
    webhooks: bool = False
    per_recipient_per_minute: float | None = None


class Connector(ABC):
    """A channel adapter. Thread-safe: one instance serves every dispatcher
    thread of a process.

    Construction (what the registry calls)::

        ConnectorClass(spec, secrets, *, session=None, clock=None)

    ``spec`` is the ``engine.definitions.specs.ConnectorSpec``, ``secrets`` the
    secret values by their names in the spec (already read from the environment),
    ``session`` a shared ``requests.Session`` for HTTP connectors, ``clock`` a
    :data:`Clock`. A constructor raises :class:`ConfigurationError` for a missing
    setting.
    """

    #: The channel this connector serves; None for any channel (log, memory).
    channel: ClassVar[str | None] = None
    #: Names of the secrets the connector needs (keys of ``spec.secrets``).
    required_secrets: ClassVar[tuple[str, ...]] = ()
    #: Names of the settings the connector needs.
    required_settings: ClassVar[tuple[str, ...]] = ()
    capabilities: ClassVar[Capabilities] = Capabilities()

    @abstractmethod
    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        """Send ``messages``; return one result per message, in the same order.

        Raises:
            ConfigurationError: the credentials or settings are rejected; stop
                the connector. ``results`` lists messages already settled.
            ConnectorError: any other failure of the connector as a whole.
        """

    @property
    def max_batch(self) -> int:
        """How many messages the dispatcher should hand over at once."""
        return self.capabilities.max_batch

    def pull_feedback(self, cursor: str | None) -> tuple[list[FeedbackItem], str | None]:
        """Fetch receipts, replies or answers that arrived after ``cursor``
        (None: from the start the provider keeps). Returns the items and the
        cursor to pass next time; persist the cursor only after the items are
        stored.

        Raises:
            UnsupportedOperation: this connector has no feedback to pull.
            ConfigurationError: credentials rejected.
            ConnectorError: the provider failed; try again later with the same cursor.
        """
        raise UnsupportedOperation(f"{type(self).__name__} does not pull feedback")

    def reconcile(self, messages: Sequence[tuple[OutgoingMessage, datetime | None]]) -> list[FeedbackItem]:
        """Ask the provider what became of ``messages`` whose send outcome is
        unknown (each with the time it was handed over, for date-keyed status
        queries). Returns ``receipt`` items: one per message the provider has
        on record (``message_id`` set, ``provider_id``, ``status`` one of
        ``pending``, ``delivered``, ``undelivered``, ``failed``); messages it
        has no record of are left out. It may also return receipts of other
        messages (``message_id`` None, ``provider_id`` set) when the
        provider's query hands out reports only once.

        Raises:
            UnsupportedOperation: the provider has no status query.
            ConfigurationError: credentials rejected.
            ConnectorError: the provider failed; ask again later.
        """
        raise UnsupportedOperation(f"{type(self).__name__} cannot look messages up")

    def verify_webhook(self, headers: Mapping[str, str], body: bytes,
                       query: Mapping[str, str] | None = None) -> Any:
        """Check an inbound callback's authenticity and parse it.

        Returns the connector's parsed form (documented per connector), e.g. a
        list of :class:`FeedbackItem` or a URL-check echo string.

        Raises:
            UnsupportedOperation: this connector takes no callbacks.
            WebhookVerificationError: signature, timestamp or decryption failed.
        """
        raise UnsupportedOperation(f"{type(self).__name__} takes no webhooks")

    def close(self) -> None:
        """Release connections. The connector must not be used afterwards.

        A no-op by default: a connector that holds no connections need not override it.
        """
        return None


#: What an entry point in ``promoflow.connectors`` resolves to.
ConnectorFactory = Callable[..., Connector]

__all__ = [
    "EMPTY", "Capabilities", "Clock", "ConfigurationError", "Connector", "ConnectorError",
    "ConnectorFactory", "DeliveryClass", "FeedbackItem", "Outcome", "OutgoingMessage",
    "SendResult", "UnsupportedOperation", "WebhookVerificationError",
]
