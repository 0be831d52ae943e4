"""Rate limits the dispatcher keeps so that providers never have to enforce them.

Why here and not only in the connectors: WeCom *silently drops* app messages
beyond 30 a minute to one member, a robot takes 20 a minute, Tencent refuses
marketing SMS outside 08:00–22:00. A message held back by a limit has not been
attempted, so it must wait (``next_attempt_at``) without using up one of its
attempts — something only the dispatcher, which owns the row, can do.

Two kinds of limit:

* **connector-wide** (``per_second``, ``per_minute``): a sliding window. The
  dispatcher reserves its budget *before* claiming, so it claims no more rows
  than it may send now, and gives back what it did not claim. In one process
  the window is a :class:`WindowCounter`; several processes (Celery workers)
  share one window through anything with the same three methods, e.g.
  :class:`web.shared_limits.RedisWindow` (the dispatcher takes a factory).
* **per recipient** (``per_recipient``: ``[(count, seconds), …]``): counted in
  the database from the rows' ``claimed_at`` so that every dispatcher process
  sees the same sends (see :func:`engine.storage.dispatch_repo.recent_claims`).

Defaults come from each provider's documented limits (:data:`DEFAULTS`, by the
connector's ``type``); a connector definition's ``rate_limit`` replaces the
connector-wide values and adds a tighter per-recipient cap; ``send_window``
replaces the default marketing window.

No wall clock: every method takes ``now`` (seconds, or an aware datetime).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import time
from typing import Any

__all__ = ["DEFAULTS", "RATE_LIMIT_CODES", "RatePolicy", "WindowCounter", "policy_for", "recipient_waits"]


@dataclass(frozen=True)
class RatePolicy:
    """The limits of one connector. ``window`` is the local-time window in
    which marketing messages may be sent (None: any time)."""

    per_second: float | None = None
    per_minute: float | None = None
    per_recipient: tuple[tuple[int, float], ...] = ()
    window: tuple[time, time] | None = None
    #: the separator of a recipient list (WeCom ``touser`` is ``a|b|c``): each
    #: member counts against the per-recipient limit
    recipient_separator: str | None = None

    def connector_limits(self) -> list[tuple[int, float]]:
        out = []
        if self.per_second:
            out.append((max(1, int(self.per_second)), 1.0))
        if self.per_minute:
            out.append((max(1, int(self.per_minute)), 60.0))
        return out


#: Documented provider limits by connector type (see
#: /docs reference "providers-and-reliability", §1–2):
#: WeCom app: same member ≤30/min and ≤1000/h per app, corp ≤10,000 calls/min
#: per API; robot ≤20/min; Tencent SMS 3,000 req/s and marketing SMS only
#: 08:00–22:00; Aliyun SendSms QPS 5,000; Twilio a long code sends 1 segment/s
#: (a messaging service's pool varies: configure it).
DEFAULTS: Mapping[str, RatePolicy] = {
    "wecom_app": RatePolicy(per_minute=10_000, per_recipient=((30, 60.0), (1000, 3600.0)), recipient_separator="|"),
    "wecom_robot": RatePolicy(per_minute=20),
    "wecom_external": RatePolicy(per_minute=10_000),
    "tencent_sms": RatePolicy(per_second=3000, window=(time(8, 0), time(22, 0))),
    "aliyun_sms": RatePolicy(per_second=5000),
    "twilio": RatePolicy(per_second=1),
}

#: Result codes that mean "not now, too fast": the provider (or the
#: connector's own limiter, ``throttled``) did not take the message because of
#: a rate, so the attempt is given back and the row waits ``retry_after``.
RATE_LIMIT_CODES = frozenset({
    "throttled", "http_429",
    "45009", "45033", "45047",                                    # WeCom frequency/concurrency
    "20429",                                                      # Twilio too many requests
    "Throttling", "Throttling.User", "isv.BUSINESS_LIMIT_CONTROL",  # Aliyun
    "RequestLimitExceeded", "LimitExceeded.PhoneNumberThirtySecondLimit",
    "LimitExceeded.PhoneNumberOneHourLimit", "LimitExceeded.PhoneNumberDailyLimit",
    "LimitExceeded.DeliveryFrequencyLimit", "FailedOperation.MarketingSendTimeConstraint",  # Tencent
    "LimitExceeded.PhoneNumberSameContentDailyLimit", "LimitExceeded.AppDailyLimit", "LimitExceeded.DailyLimit",
    "LimitExceeded.AppGlobalDailyLimit", "LimitExceeded.AppMainlandChinaDailyLimit",
    "LimitExceeded.AppCountryOrRegionDailyLimit",                 # Tencent daily caps: wait for the next day
})


def policy_for(spec: Any) -> RatePolicy:
    """The policy of a connector from its ``ConnectorSpec`` (or None): the
    type's :data:`DEFAULTS`, with the definition's ``rate_limit`` values
    replacing the connector-wide ones, a ``per_recipient_per_minute`` added
    as an extra (tighter) per-recipient window, and its ``send_window``
    replacing the default window."""
    kind = str(getattr(spec, "type", "") or "")
    base = DEFAULTS.get(kind, RatePolicy())
    if kind == "twilio" and (getattr(spec, "settings", None) or {}).get("messaging_service_sid"):
        base = replace(base, per_second=None)
    per_second = getattr(spec, "per_second", None)
    per_minute = getattr(spec, "per_minute", None)
    per_recipient = list(base.per_recipient)
    recipient_minute = getattr(spec, "per_recipient_per_minute", None)
    if recipient_minute:
        per_recipient.append((max(1, int(recipient_minute)), 60.0))
    window = getattr(spec, "send_window", None) or base.window
    return RatePolicy(per_second=per_second if per_second else base.per_second,
                      per_minute=per_minute if per_minute else base.per_minute,
                      per_recipient=tuple(per_recipient), window=window,
                      recipient_separator=base.recipient_separator)


@dataclass
class WindowCounter:
    """Sliding windows over one key (a connector): ``[(count, seconds), …]``.

    :meth:`available` is how many sends fit now; :meth:`take` records sends;
    :meth:`wait` is how long until one more fits. Thread-safe.
    """

    limits: Sequence[tuple[int, float]]
    _hits: deque[float] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _trim(self, now: float) -> None:
        longest = max((p for _, p in self.limits), default=0.0)
        while self._hits and self._hits[0] <= now - longest:
            self._hits.popleft()

    def _in_window(self, now: float, period: float) -> int:
        # hits are appended in time order: count from the right
        n = 0
        for t in reversed(self._hits):
            if t <= now - period:
                break
            n += 1
        return n

    def available(self, now: float) -> int | None:
        """How many sends fit at ``now`` (None: unlimited)."""
        if not self.limits:
            return None
        with self._lock:
            self._trim(now)
            return max(0, min(count - self._in_window(now, period) for count, period in self.limits))

    def reserve(self, n: int, now: float) -> int | None:
        """Take up to ``n`` slots at ``now`` at once; how many were granted
        (None: unlimited). Unused ones go back with :meth:`give_back`."""
        if not self.limits:
            return None
        with self._lock:
            self._trim(now)
            granted = max(0, min([n] + [count - self._in_window(now, period) for count, period in self.limits]))
            self._hits.extend([now] * granted)
            return granted

    def take(self, n: int, now: float) -> None:
        if self.limits and n > 0:
            with self._lock:
                self._hits.extend([now] * n)

    def give_back(self, n: int, now: float) -> None:
        """Return ``n`` slots taken at ``now`` (rows claimed but not sent)."""
        with self._lock:
            for _ in range(n):
                if self._hits and self._hits[-1] == now:
                    self._hits.pop()

    def wait(self, now: float) -> float:
        """Seconds until one more send fits (0 if it fits now)."""
        with self._lock:
            self._trim(now)
            wait = 0.0
            hits = list(self._hits)
            for count, period in self.limits:
                inside = [t for t in hits if t > now - period]
                if len(inside) >= count:
                    wait = max(wait, inside[len(inside) - count] + period - now)
            return wait


def recipient_waits(claimed: Sequence[Mapping[str, Any]], recent: Mapping[str, Sequence[tuple[float, int]]],
                    limits: Sequence[tuple[int, float]], now: float) -> dict[int, float]:
    """Which of the just-claimed rows must wait for a per-recipient limit.

    ``claimed``: the rows this pass claimed (``id``, ``recipient``).
    ``recent``: per recipient, ``(claimed_at seconds, id)`` of every row of the
    connector claimed within the longest window — sent, in flight (by any
    dispatcher) and this pass's own claims. Rows are ranked by (time, id), the
    same order every dispatcher sees, so two processes agree on who goes.
    Returns ``{row id: seconds to wait}`` for the rows over a limit.
    """
    waits: dict[int, float] = {}
    mine = {int(r["id"]) for r in claimed}
    for entries in recent.values():
        ordered = sorted(entries)
        for count, period in limits:
            inside = [e for e in ordered if e[0] > now - period]
            kept = 0
            # earlier rows that already hold a slot (sent or in flight elsewhere)
            # fill the window first; this pass's rows take what is left in order
            for index, (_stamp, row_id) in enumerate(inside):
                if row_id in mine and row_id in waits:
                    continue
                if kept < count:
                    kept += 1
                    continue
                if row_id in mine:
                    oldest = inside[index - count][0] if index >= count else now
                    waits[row_id] = max(waits.get(row_id, 0.0), oldest + period - now, 1.0)
    return waits

