"""Fixtures: fake providers on 127.0.0.1, a fake clock, connector specs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from connector_support import FakeClock
from fakes.aliyun import FakeAliyun
from fakes.tencent import FakeTencent
from fakes.twilio import FakeTwilio
from fakes.wecom import FakeWecom


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
