"""Connector-wide rate windows shared by every dispatcher process (issue 17).

A :class:`~engine.dispatch_limits.WindowCounter` lives in one process: two
Celery workers would each send a provider's full ``per_second``. Here the
window is a Redis sorted set per connector (member = one reserved slot,
score = its time) and a reservation is one Lua script, so trimming,
counting and taking happen atomically for all workers together. The same
three methods as ``WindowCounter`` (``reserve``, ``give_back``,
``available``), so :class:`engine.dispatch.Dispatcher` takes either through
its ``windows`` factory.

Redis even when the broker is RabbitMQ: ``PROMOFLOW_LIMITS_URL`` names it
(default: the broker URL when that is Redis). Without one the windows stay
per process (the in-process default), which is right for one worker.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any

#: KEYS[1] the window key; ARGV: now, n, token, then count/period pairs.
#: Trims slots older than the longest period, grants min(n, room of every
#: period), adds the granted slots as "<token>:<i>", returns the grant.
_RESERVE = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local token = ARGV[3]
local longest = 0
for i = 4, #ARGV, 2 do
  local period = tonumber(ARGV[i + 1])
  if period > longest then longest = period end
end
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - longest)
local grant = n
for i = 4, #ARGV, 2 do
  local count = tonumber(ARGV[i])
  local period = tonumber(ARGV[i + 1])
  local used = redis.call('ZCOUNT', key, '(' .. (now - period), '+inf')
  local room = count - used
  if room < grant then grant = room end
end
if grant < 0 then grant = 0 end
for i = 1, grant do
  redis.call('ZADD', key, now, token .. ':' .. i)
end
redis.call('EXPIRE', key, math.ceil(longest) + 60)
return grant
"""


class RedisWindow:
    """The sliding windows ``limits`` = ``[(count, seconds), …]`` of one
    connector, shared through Redis key ``promoflow:rate:<connector>``."""

    def __init__(self, client: Any, connector_id: str, limits: Sequence[tuple[int, float]], *,
                 prefix: str = "promoflow:rate:"):
        self.client = client
        self.key = f"{prefix}{connector_id}"
        self.limits = list(limits)
        self._script = client.register_script(_RESERVE)
        self._mine: list[str] = []  # this object's most recent slots, newest last (for give_back)
        self._lock = threading.Lock()

    def _args(self, now: float, n: int, token: str) -> list[Any]:
        args: list[Any] = [repr(float(now)), int(n), token]
        for count, period in self.limits:
            args += [int(count), repr(float(period))]
        return args

    def reserve(self, n: int, now: float) -> int | None:
        """Take up to ``n`` slots at ``now`` for all processes together; the grant (None: unlimited)."""
        if not self.limits:
            return None
        token = uuid.uuid4().hex
        granted = int(self._script(keys=[self.key], args=self._args(now, n, token)))
        with self._lock:
            self._mine.extend(f"{token}:{i}" for i in range(1, granted + 1))
            del self._mine[:-10_000]
        return granted

    def give_back(self, n: int, now: float) -> None:
        """Return ``n`` of this object's newest slots (claimed but not sent)."""
        if n <= 0:
            return
        with self._lock:
            members, self._mine = self._mine[-n:], self._mine[:-n]
        if members:
            self.client.zrem(self.key, *members)

    def available(self, now: float) -> int | None:
        """How many sends fit at ``now`` (a reading, not a reservation)."""
        if not self.limits:
            return None
        room = None
        for count, period in self.limits:
            used = int(self.client.zcount(self.key, f"({now - period}", "+inf"))
            room = count - used if room is None else min(room, count - used)
        return max(0, room or 0)

    def take(self, n: int, now: float) -> None:
        self.reserve(n, now)


def limits_url(broker_url: str | None, explicit: str | None = None) -> str | None:
    """Where the shared windows live: ``explicit`` (``PROMOFLOW_LIMITS_URL``),
    else the broker when it is Redis, else None (per-process windows)."""
    if explicit:
        return explicit
    if broker_url and broker_url.startswith(("redis://", "rediss://")):
        return broker_url
    return None


def redis_windows(url: str) -> Callable[[str, list[tuple[int, float]]], RedisWindow]:
    """A ``windows`` factory for :class:`engine.dispatch.Dispatcher` on the Redis at ``url``."""
    import redis

    client = redis.Redis.from_url(url)

    def make(connector_id: str, limits: list[tuple[int, float]]) -> RedisWindow:
        return RedisWindow(client, connector_id, limits)

    return make


__all__ = ["RedisWindow", "limits_url", "redis_windows"]
