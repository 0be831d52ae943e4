"""Helpers of the connector tests: a fake clock and spec builder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

from engine.definitions.specs import ConnectorSpec


class FakeClock:
    """A clock the test moves; connectors and fakes read the same time."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def ts(self) -> float:
        return self.now.timestamp()

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def make_spec(type_: str, channel: str, settings: dict[str, Any] | None = None,
              secrets: dict[str, str] | None = None, **extra: Any) -> ConnectorSpec:
    return ConnectorSpec(id=f"test_{type_}", type=type_, channel=channel,
                         settings=MappingProxyType(settings or {}), secrets=MappingProxyType(secrets or {}), **extra)
