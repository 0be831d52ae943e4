"""What the scheduler runs, wired from the app's services.

`scheduler_init_app(app)` (like Flask's `celery_init_app`) starts a
:class:`~web.scheduler.SchedulerHost` for the app's database; `promoflow
worker` runs only that, `promoflow demo` runs it in the web process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from flask import Flask

from .scheduler import SchedulerHost

EXTENSION = "promoflow.scheduler"


def tick_functions(services: Any) -> list[tuple[str, Callable[[datetime], Any]]]:
    """The parts of one tick, in order: automation (due rule runs, events,
    journey steps, log deliveries), approval reminders/escalations, then
    delivery of the outbox through the configured connectors."""
    from engine.automation.configure import policy_from_settings
    from engine.automation.versions import StoredRules, tick_versions
    from connectors.registry import load_connector
    from engine.dispatch import dispatch_tick

    stored = StoredRules(services.session_factory)

    def automation(now: datetime) -> Any:
        definitions = services.registry.current()
        policy = policy_from_settings(definitions, services.settings, services.registry)
        return tick_versions(services.session_factory, now=now, definitions=definitions, policy=policy,
                             stored=stored)

    ticks: list[tuple[str, Callable[[datetime], Any]]] = [("automation", automation)]
    if getattr(services, "workflows", None) is not None:
        ticks.append(("approvals", services.workflows.tick))
    from .followups import tick as followups_tick

    ticks.append(("tasks", followups_tick(services)))  # rule tasks: the approvals' overdue rules
    ticks.append(("dispatch", dispatch_tick(services, loader=load_connector, reap_after=_reap_after(services))))
    ticks.append(("feedback", feedback_tick(services)))
    ticks.append(("loyalty", loyalty_tick(services)))
    from .api_campaigns import tick as campaigns_tick

    ticks.append(("campaigns", campaigns_tick(services)))  # issue 14: KPI snapshots whose sources moved
    from .alerts import alerts_tick
    from .campaign_reports import retrospective_tick, weekly_report_tick

    ticks.append(("alerts", alerts_tick(services)))  # 数据预警 on campaign KPIs (issue 14)
    ticks.append(("reports", weekly_report_tick(services)))  # weekly report to each running campaign's owner
    ticks.append(("retrospectives", retrospective_tick(services)))  # 复盘 record when a campaign ends
    from .refresh_hooks import refresh_tick

    ticks.append(("refresh", refresh_tick(services)))  # hooks others register (KPI snapshots), issue 17
    return ticks


def _reap_after(services: Any) -> Any:
    from datetime import timedelta

    return getattr(getattr(services, "settings", None), "dispatch_reap_after", None) or timedelta(minutes=5)


def loyalty_tick(services: Any) -> Callable[[datetime], Any]:
    """The scheduler's ``loyalty`` tick: points expiry and tier evaluation,
    each at most once per local day (:mod:`engine.loyalty.tick`)."""
    from engine.loyalty.tick import loyalty_tick as run

    def tick(now: datetime) -> Any:
        return run(services.session_factory, now=now, definitions=services.registry.current(), tz=services.tz)

    return tick


#: Connector types that are polled for feedback by cursor.
PULL_TYPES = ("survey_pull",)


def feedback_tick(services: Any, *, env: Mapping[str, str] | None = None,
                  session: Any = None) -> Callable[[datetime], Any]:
    """The scheduler's ``feedback`` tick: pull every enabled pull connector
    (``survey_pull``) from its stored cursor until it has nothing new.

    Connectors are built once per definitions version with secrets from the
    environment; one that fails to build is left out and reported as a
    ``connector.misconfigured`` event, like the dispatch tick does."""
    import os

    from connectors.registry import load_connector
    from engine.feedback.pull import pull_all
    from engine.ports import ConfigurationError
    from engine.storage.database import transaction
    from engine.storage.events_repo import append_event

    state: dict[str, Any] = {"key": None, "connectors": {}}

    def build(now: datetime) -> dict[str, Any]:
        definitions = services.registry.current()
        if state["key"] is definitions:
            return state["connectors"]  # type: ignore[no-any-return]
        built: dict[str, Any] = {}
        for spec in definitions.connectors.values():
            if not spec.enabled or spec.type not in PULL_TYPES:
                continue
            try:
                built[spec.id] = load_connector(spec, env=os.environ if env is None else env, session=session,
                                                clock=services.clock)
            except ConfigurationError as exc:
                with transaction(services.session_factory) as s:
                    append_event(s, "connector.misconfigured", "connector", spec.id,
                                 {"connector": spec.id, "code": exc.code, "error": str(exc)[:500]}, now)
        for old in state["connectors"].values():
            old.close()
        state["key"], state["connectors"] = definitions, built
        return built

    def tick(now: datetime) -> Any:
        connectors = build(now)
        if not connectors:
            return None
        return pull_all(services.session_factory, connectors, now=now, definitions=services.registry.current())

    return tick


def scheduler_init_app(app: Flask, *, interval: float = 30.0, start: bool = True,
                       celery: Any = None) -> SchedulerHost:
    """Attach (and start) the scheduler host for ``app``'s database. With
    ``celery`` (a broker is configured) the host enqueues the heavy parts
    for ``promoflow worker --celery`` processes (:mod:`web.fleet_ticks`)
    instead of running them in this process."""
    services = app.extensions["promoflow"]
    engine = services.session_factory.kw["bind"]
    if celery is not None:
        from .fleet_ticks import fleet_tick_functions

        ticks = fleet_tick_functions(services, celery)
    else:
        ticks = tick_functions(services)
    host = SchedulerHost(engine, ticks, clock=services.now, interval=interval, host_id=f"app-{id(app)}")
    app.extensions[EXTENSION] = host
    if start:
        host.start()
    return host
