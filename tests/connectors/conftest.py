"""Fixtures: fake providers on 127.0.0.1, a fake clock, connector specs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import pytest
import requests

from engine.definitions.specs import ConnectorSpec

from .fakes.aliyun import FakeAliyun
from .fakes.tencent import FakeTencent
from .fakes.twilio import FakeTwilio
from .fakes.wecom import FakeWecom


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


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def _serve(fake: Any, clock: FakeClock) -> Iterator[Any]:
    fake.now = clock.ts
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def fake_aliyun(clock: FakeClock) -> Iterator[FakeAliyun]:
    yield from _serve(FakeAliyun(), clock)


@pytest.fixture
def fake_tencent(clock: FakeClock) -> Iterator[FakeTencent]:
    yield from _serve(FakeTencent(), clock)


@pytest.fixture
def fake_twilio(clock: FakeClock) -> Iterator[FakeTwilio]:
    yield from _serve(FakeTwilio(), clock)


@pytest.fixture
def fake_wecom(clock: FakeClock) -> Iterator[FakeWecom]:
    yield from _serve(FakeWecom(), clock)
