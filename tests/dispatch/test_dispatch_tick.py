"""The scheduler's dispatch tick (web/worker.py wires it in)."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

from connectors.memory import MemoryConnector
from engine.definitions.specs import ConnectorSpec
from engine.dispatch import dispatch_tick
from engine.ports import ConfigurationError

from .support import NOW, add_rows, events, statuses


def test_tick_reaps_and_dispatches_through_loaded_connectors(session_factory):
    specs = {
        "mem": ConnectorSpec(id="mem", type="memory", channel="sms"),
        "log": ConnectorSpec(id="log", type="log", channel="sms"),
        "broken": ConnectorSpec(id="broken", type="memory", channel="email"),
    }
    definitions = SimpleNamespace(connectors=specs)
    services = SimpleNamespace(session_factory=session_factory,
                               registry=SimpleNamespace(current=lambda: definitions),
                               settings=SimpleNamespace(timezone="Asia/Shanghai"))
    loaded = []

    def loader(spec, *, env):
        if spec.id == "broken":
            raise ConfigurationError("connector `broken`: environment variable X is not set", code="missing_secret")
        loaded.append(spec.id)
        return MemoryConnector(spec, {})

    add_rows(session_factory, 30)
    add_rows(session_factory, 2, connector="log", prefix="l")
    tick = dispatch_tick(services, loader=loader, env={})
    report = tick(NOW)
    assert report.sent == 30 and loaded == ["mem"]
    assert statuses(session_factory) == {"sent": 30, "queued": 2}  # log rows are the automation tick's
    assert [e.subject_id for e in events(session_factory, "connector.misconfigured")] == ["broken"]
    tick(NOW + timedelta(minutes=1))
    assert loaded == ["mem"]  # built once per definitions version


def test_tick_reconciles_unknown_rows_from_the_providers_record(session_factory):
    spec = ConnectorSpec(id="mem", type="memory", channel="sms")
    definitions = SimpleNamespace(connectors={"mem": spec})
    services = SimpleNamespace(session_factory=session_factory, registry=SimpleNamespace(current=lambda: definitions),
                               settings=SimpleNamespace(timezone="Asia/Shanghai"))
    built = {}

    def loader(spec, *, env):
        built["mem"] = MemoryConnector(spec, {})
        built["mem"].fail_next("unknown", code="timeout", count=2)
        return built["mem"]

    add_rows(session_factory, 3)
    tick = dispatch_tick(services, loader=loader, env={})
    report = tick(NOW)
    assert (report.sent, report.unknown) == (1, 2)
    assert statuses(session_factory) == {"sent": 1, "unknown": 2}
    tick(NOW + timedelta(minutes=3))  # the provider has both on record: settled, not resent
    assert statuses(session_factory) == {"sent": 3}
    assert len(built["mem"].sent) == 3
