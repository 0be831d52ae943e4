"""Helpers for the campaign tests: the clock and bearer headers."""

from __future__ import annotations

from datetime import UTC, datetime

NOW = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


class Clock:
    def __init__(self, now: datetime = NOW):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
