"""What the scheduler runs, wired from the app's services.

`scheduler_init_app(app)` (like Flask's `celery_init_app`) starts a
:class:`~web.scheduler.SchedulerHost` for the app's database; `promoflow
worker` runs only that, `promoflow demo` runs it in the web process.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import Flask

from .scheduler import SchedulerHost

EXTENSION = "promoflow.scheduler"


def tick_functions(services: Any) -> list[tuple[str, Callable[[datetime], Any]]]:
    """The parts of one tick, in order: automation (due rule runs, events,
    journey steps, log deliveries), approval reminders/escalations, then
    delivery of the outbox through the configured connectors."""
    from engine.automation.configure import build_policy
    from engine.automation.versions import StoredRules, tick_versions
    from engine.dispatch import dispatch_tick

    stored = StoredRules(services.session_factory)

    def automation(now: datetime) -> Any:
        definitions = services.registry.current()
        policy = build_policy(definitions, calendar_id=services.settings.calendar,
                              version_of=lambda rule_id: services.registry.version_of("rule", rule_id))
        return tick_versions(services.session_factory, now=now, definitions=definitions, policy=policy,
                             stored=stored)

    ticks: list[tuple[str, Callable[[datetime], Any]]] = [("automation", automation)]
    if getattr(services, "workflows", None) is not None:
        ticks.append(("approvals", services.workflows.tick))
    ticks.append(("dispatch", dispatch_tick(services)))
    return ticks


def scheduler_init_app(app: Flask, *, interval: float = 30.0, start: bool = True) -> SchedulerHost:
    """Attach (and start) the scheduler host for ``app``'s database."""
    services = app.extensions["promoflow"]
    engine = services.session_factory.kw["bind"]
    host = SchedulerHost(engine, tick_functions(services), clock=services.now, interval=interval,
                         host_id=f"app-{id(app)}")
    app.extensions[EXTENSION] = host
    if start:
        host.start()
    return host
