"""What every shipped connector shares: secret handling, settings, the clock,
HTTP with timeouts and transport-error classification, and rate limiters.

Transport errors are classified by whether the request can have reached the
provider: a refused connection, a DNS failure or a connect timeout happened
before anything was sent (``retryable``); a read timeout or a reset after the
request was written may have been processed (``unknown``).
"""

from __future__ import annotations

import logging
import re
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import requests
from urllib3.exceptions import (
    ConnectTimeoutError,
    NameResolutionError,
    NewConnectionError,
)

from engine.ports import (
    Clock,
    ConfigurationError,
    Connector,
    OutgoingMessage,
    SendResult,
)

log = logging.getLogger("promoflow.connectors")

DEFAULT_TIMEOUT = (3.05, 10.0)


def system_clock() -> datetime:
    """The wall clock, aware UTC (the default when no clock is passed)."""
    return datetime.now(UTC)


class Secret:
    """A secret value that never shows itself in ``repr``/``str``/logs."""

    __slots__ = ("_value", "name")

    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self._value = value

    def reveal(self) -> str:
        """The value, for the one place that signs or sends it."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.name!r}, '***')"

    __str__ = __repr__

    def __reduce__(self) -> Any:  # no pickling into a task queue by accident
        raise TypeError("secrets are not picklable")


# ------------------------------------------------------------ log redaction

_SENSITIVE_QUERY = re.compile(r"(?i)\b(key|access_token|corpsecret|secret|token|signature|password)=([^&\s\"']+)")


class RedactQueryFilter(logging.Filter):
    """Masks credential-bearing query parameters in log records (urllib3 logs
    request lines such as ``POST /cgi-bin/webhook/send?key=…`` at DEBUG)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a broken record is not ours to fix
            return True
        redacted = _SENSITIVE_QUERY.sub(lambda m: f"{m.group(1)}=***", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def redact(text: str) -> str:
    """``text`` with credential-bearing query parameters masked."""
    return _SENSITIVE_QUERY.sub(lambda m: f"{m.group(1)}=***", text)


_filter_installed = False
_filter_lock = threading.Lock()


def install_log_redaction() -> None:
    """Attach :class:`RedactQueryFilter` to urllib3's request logger once."""
    global _filter_installed
    with _filter_lock:
        if not _filter_installed:
            logging.getLogger("urllib3.connectionpool").addFilter(RedactQueryFilter())
            _filter_installed = True


# ------------------------------------------------------------ base classes

class BaseConnector(Connector):
    """Holds the spec, secrets (as :class:`Secret`), settings and clock."""

    def __init__(self, spec: Any, secrets: Mapping[str, str], *,
                 session: requests.Session | None = None, clock: Clock | None = None) -> None:
        self.spec = spec
        self.id: str = getattr(spec, "id", type(self).__name__)
        self.settings: Mapping[str, Any] = dict(getattr(spec, "settings", {}) or {})
        self._secrets = {name: Secret(name, value) for name, value in secrets.items()}
        self.clock: Clock = clock or system_clock
        for name in self.required_secrets:
            if not self._secrets.get(name) or not self._secrets[name].reveal():
                raise ConfigurationError(f"connector `{self.id}`: secret `{name}` is not configured",
                                         code="missing_secret")
        for name in self.required_settings:
            if self.settings.get(name) in (None, ""):
                raise ConfigurationError(f"connector `{self.id}`: setting `{name}` is required",
                                         code="missing_setting")

    def secret(self, name: str) -> str:
        """The value of secret ``name``."""
        return self._secrets[name].reveal()

    def setting(self, name: str, default: Any = None) -> Any:
        return self.settings.get(name, default)

    def now_ts(self) -> float:
        return self.clock().timestamp()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} id={self.id!r}>"


def send_each(messages: Sequence[OutgoingMessage],
              send: Callable[[OutgoingMessage], SendResult]) -> list[SendResult]:
    """``send`` each message in turn, for providers without a batch API. A
    :class:`ConfigurationError` stops the batch and carries the results of
    the messages settled before it (the port's contract: the rest were not sent)."""
    results: list[SendResult] = []
    for message in messages:
        try:
            results.append(send(message))
        except ConfigurationError as exc:
            exc.results = results
            raise
    return results


class TransportFailure(Exception):
    """A request that got no usable HTTP answer; ``result_for`` turns it into a
    per-message result."""

    def __init__(self, code: str, detail: str, sent: bool) -> None:
        super().__init__(detail)
        self.code, self.detail, self.sent = code, detail, sent

    def result_for(self, message_id: str) -> SendResult:
        if self.sent:
            return SendResult.unknown(message_id, self.code, self.detail)
        return SendResult.retryable(message_id, self.code, self.detail)


def _before_sending(exc: requests.ConnectionError) -> bool:
    """True when the failure happened while connecting (nothing was written)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason: Any = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)
    return isinstance(reason, (NewConnectionError, ConnectTimeoutError, NameResolutionError))


class HttpConnector(BaseConnector):
    """A connector speaking HTTP through one shared ``requests.Session``.

    Settings: ``connect_timeout`` (s, default 3.05), ``read_timeout`` (s, default
    10), ``base_url`` (the provider's endpoint; tests point it at a local fake).
    """

    default_base_url: str = ""

    def __init__(self, spec: Any, secrets: Mapping[str, str], *,
                 session: requests.Session | None = None, clock: Clock | None = None) -> None:
        super().__init__(spec, secrets, session=session, clock=clock)
        install_log_redaction()
        self._own_session = session is None
        self.session = session or requests.Session()
        self.timeout = (float(self.setting("connect_timeout", DEFAULT_TIMEOUT[0])),
                        float(self.setting("read_timeout", DEFAULT_TIMEOUT[1])))
        self.base_url = str(self.setting("base_url") or self.default_base_url).rstrip("/")

    def request(self, method: str, url: str, *, via: requests.Session | None = None,
                **kwargs: Any) -> requests.Response:
        """Send one request with the connector's timeouts and no redirects
        (through ``via`` instead of the shared session when given).

        Raises:
            TransportFailure: no HTTP answer (``sent`` tells whether it may have
                been processed).
        """
        kwargs.setdefault("timeout", self.timeout)
        kwargs.setdefault("allow_redirects", False)
        try:
            return (via or self.session).request(method, url, **kwargs)
        except requests.ConnectionError as exc:
            if _before_sending(exc):
                raise TransportFailure("connection", "could not connect to the provider", sent=False) from None
            raise TransportFailure("connection_lost", "connection lost after the request was sent",
                                   sent=True) from None
        except requests.Timeout:
            raise TransportFailure("timeout", "no answer before the read timeout", sent=True) from None
        except requests.RequestException as exc:
            raise TransportFailure("request_error", type(exc).__name__, sent=False) from None

    def json_body(self, response: requests.Response) -> Mapping[str, Any]:
        """The response's JSON object.

        Raises:
            TransportFailure: the body is not a JSON object; for a 2xx answer the
                request was processed, so the outcome is unknown.
        """
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, Mapping):
            sent = response.status_code < 500 or response.status_code in (500, 502, 504)
            raise TransportFailure(f"http_{response.status_code}" if response.status_code >= 300 else "bad_response",
                                   f"unreadable answer (HTTP {response.status_code})",
                                   sent=sent and response.status_code != 503)
        return data

    def close(self) -> None:
        if self._own_session:
            self.session.close()


def http_status_result(message_id: str, response: requests.Response) -> SendResult | None:
    """Result for an HTTP status that has no provider code in its body, or None
    when the status alone does not decide."""
    status = response.status_code
    if status == 429:
        return SendResult.retryable(message_id, "http_429", "rate limited", retry_after_seconds(response))
    if status == 503:
        return SendResult.retryable(message_id, "http_503", "service unavailable", retry_after_seconds(response))
    if status >= 500:
        # 500/502/504: a gateway may have forwarded the request; we cannot know.
        return SendResult.unknown(message_id, f"http_{status}", "provider error after the request was sent")
    return None


def retry_after_seconds(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def chunks(messages: Sequence[OutgoingMessage], size: int) -> list[Sequence[OutgoingMessage]]:
    return [messages[i:i + size] for i in range(0, len(messages), size)]


# ------------------------------------------------------------ rate limiting

class SlidingWindowLimiter:
    """Per-key limits over rolling windows, e.g. ``[(30, 60), (1000, 3600)]``.

    ``acquire(key, now)`` takes a slot and returns 0, or takes none and returns
    how many seconds until one frees. Thread-safe; time comes from the caller, so
    tests move a fake clock instead of sleeping.
    """

    def __init__(self, limits: Sequence[tuple[float, float]]) -> None:
        self.limits = [(int(count), float(period)) for count, period in limits if count]
        self._longest = max((p for _, p in self.limits), default=0.0)
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str, now: float) -> float:
        if not self.limits:
            return 0.0
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self._longest:
                hits.popleft()
            wait = 0.0
            for count, period in self.limits:
                in_window = [t for t in hits if t > now - period]
                if len(in_window) >= count:
                    wait = max(wait, in_window[-count] + period - now)
            if wait > 0:
                return wait
            hits.append(now)
            return 0.0

    def release(self, key: str, now: float) -> None:
        """Give back the slot taken at ``now`` (the request was never sent)."""
        with self._lock:
            hits = self._hits.get(key)
            if hits and now in hits:
                hits.remove(now)
