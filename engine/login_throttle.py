"""How many failed sign-ins a user name or an address gets before a lock,
and how long the locks grow.

Two keys are counted for every failed attempt: the account (``account:<name>``,
whether or not the name exists, so a lock does not reveal which names do) and
the client address (``address:<ip>``, which catches one client trying many
names). Each key has some free failures; every failure after that locks the
key for ``first_lock`` × 2^(failures − free), capped at ``max_lock``. A key
with no failure for ``forget_after`` starts again. While a key is locked,
attempts are refused *before* the password is verified (argon2 is the
expensive part), so a flood costs one indexed read per request. The counts
live in the database (:mod:`engine.storage.throttle_repo`), shared by every
process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

KEY_LENGTH = 200


@dataclass(frozen=True)
class ThrottlePolicy:
    """The numbers of the lock-out; the defaults suit a staff sign-in page."""

    account_free: int = 5
    address_free: int = 20
    first_lock: timedelta = timedelta(seconds=15)
    max_lock: timedelta = timedelta(hours=1)
    forget_after: timedelta = timedelta(hours=24)

    def lock_for(self, failures: int, free: int) -> timedelta | None:
        """How long ``failures`` failures in a row lock a key with ``free`` free failures (None: no lock)."""
        if failures < free:
            return None
        exponent = min(failures - free, 32)  # 2**32 × 15 s is far past any cap
        return min(self.max_lock, self.first_lock * (2 ** exponent))


def account_key(username: str) -> str:
    """The throttle key of a user name as typed (case and spaces ignored)."""
    return ("account:" + username.strip().lower())[:KEY_LENGTH]


def address_key(address: str) -> str:
    """The throttle key of a client address."""
    return ("address:" + address.strip())[:KEY_LENGTH]


def retry_after_seconds(until: datetime, now: datetime) -> int:
    """Whole seconds to wait from ``now`` until ``until`` (at least 1), for ``Retry-After``."""
    return max(1, math.ceil((until - now).total_seconds()))


__all__ = ["ThrottlePolicy", "account_key", "address_key", "retry_after_seconds"]
