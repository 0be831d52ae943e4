"""The Celery side of the scale-out (issue 17): the app and its tasks.

Every task is a thin wrapper around what the in-process scheduler runs
(:mod:`web.worker`): a set-based entry chunk
(:func:`engine.automation.setentry.run_chunk`), due journey batches
(:func:`engine.automation.runner.advance_all`), delivery of one connector
(:func:`engine.dispatch.dispatch_tick` with ``only=``), the feedback pull
(:func:`web.worker.feedback_tick`) and registered refresh hooks
(:mod:`web.refresh_hooks`). Only the active scheduler enqueues them
(:mod:`web.fleet_ticks`); any number of ``promoflow worker --celery``
processes run them.

Why they may run twice: tasks are acknowledged late (after they return) and
a task of a worker that dies is handed to another (``task_reject_on_worker_lost``;
on Redis after ``task_visibility`` seconds). That is safe because each unit of
work is already idempotent in the engine: entry by the journey key and the
``once_per`` window, journey batches by their claim in one transaction,
messages by the outbox claim (a dead worker's claims are settled by the
reaper, marketing at most once) and the idempotency keys.

Like Flask's ``celery_init_app``, each task runs inside the worker's Flask
app context; the app is built once per worker process from the settings.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import Any

from celery import Celery, signals

from engine.settings import Settings

log = logging.getLogger("promoflow.celery")

#: The task names (stable: queued messages name them).
RULE_CHUNK = "promoflow.rule_chunk"
ADVANCE = "promoflow.advance"
DELIVER = "promoflow.deliver"
FEEDBACK = "promoflow.feedback"
REFRESH = "promoflow.refresh"

#: The scheduler enqueues one more delivery task per connector for every so
#: many rows waiting (up to ``fleet_parts``).
ROWS_PER_TASK = 2000
#: Seconds one delivery task keeps claiming at most (and at most a third of
#: the broker's visibility timeout).
TASK_SECONDS = 60.0

_state: dict[str, Any] = {"settings": None, "app": None, "ticks": {}, "budget": {}}
_lock = threading.RLock()


def result_backend(broker_url: str) -> str:
    """Where the scheduler reads its tasks' answers: the Redis itself, or
    RabbitMQ's reply queues (``rpc://``)."""
    if broker_url.startswith(("redis://", "rediss://")):
        return broker_url
    return "rpc://"


def make_celery(settings: Settings) -> Celery:
    """The Celery app for ``settings.broker_url``, with late acks, one task
    prefetched at a time, and a task of a lost worker handed on."""
    if not settings.broker_url:
        raise ValueError("PROMOFLOW_BROKER_URL is not set: without a broker everything runs in-process")
    celery = Celery("promoflow", broker=settings.broker_url, backend=result_backend(settings.broker_url),
                    set_as_current=False)
    celery.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=3600,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": settings.task_visibility},
        result_backend_transport_options={"visibility_timeout": settings.task_visibility},
        worker_hijack_root_logger=False,
        task_default_queue=settings.task_queue,
    )
    _state["settings"] = settings
    _register(celery)
    return celery


# --- the worker process's app ------------------------------------------------------


def flask_app() -> Any:
    """This worker process's Flask app (built on first use, once per process)."""
    with _lock:
        if _state["app"] is None:
            from web import create_app

            _state["app"] = create_app(settings=_state["settings"])
        return _state["app"]


def services() -> Any:
    return flask_app().extensions["promoflow"]


@signals.worker_process_init.connect
def _fresh_process(**_: Any) -> None:
    """A forked pool process must not share the parent's database connections."""
    with _lock:
        _state["app"] = None
        _state["ticks"] = {}


@signals.task_prerun.connect
def _task_log_id(task_id: str | None = None, **_: Any) -> None:
    """Every log line a task writes carries its task id (in the tick id field)."""
    from .logs import tick_id

    tick_id.set(f"task:{task_id}")


def _now(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _policy(svc: Any, definitions: Any) -> Any:
    from engine.automation.configure import policy_from_settings

    return policy_from_settings(definitions, svc.settings, svc.registry)


def _rule(svc: Any, definitions: Any, policy: Any, rule_id: str, version: int) -> Any:
    """The spec of ``rule_id`` at ``version``: the published one, or the
    stored older one (a publish may have landed since the scheduler enqueued)."""
    from engine.automation.versions import StoredRules

    try:
        current = policy.version_of(rule_id)
    except KeyError:
        current = None
    if current == version and rule_id in definitions.rules:
        return definitions.rules[rule_id]
    with _lock:
        stored = _state.setdefault("stored", StoredRules(svc.session_factory))
    return stored.get(rule_id, version)


# --- the tasks ---------------------------------------------------------------------


def rule_chunk(rule_id: str, version: int, now: str, occurrence: str, lo: int, hi: int) -> list[Any]:
    """Enter customers ``lo`` ≤ id < ``hi`` of a scheduled rule run and run
    their set-based first steps; [entered, counters]."""
    from engine.automation.setentry import run_chunk

    with flask_app().app_context():
        svc = services()
        definitions = svc.registry.current()
        policy = _policy(svc, definitions)
        rule = _rule(svc, definitions, policy, rule_id, version)
        if rule is None:
            raise LookupError(f"rule `{rule_id}` version {version} is not stored")
        entered, counters = run_chunk(svc.session_factory, rule, version, now=_now(now), definitions=definitions,
                                      policy=policy, occurrence=_now(occurrence), id_range=(lo, hi))
        return [entered, counters.as_dict()]


def advance(now: str, rule_ids: list[str] | None = None, batch: int = 2000) -> dict[str, dict[str, int]]:
    """Advance due journeys batch after batch (each claimed ``SKIP LOCKED``,
    one transaction) until none is due; counters per rule."""
    from engine.automation.runner import advance_all
    from engine.automation.versions import StoredRules, rule_lookup

    with flask_app().app_context():
        svc = services()
        definitions = svc.registry.current()
        policy = _policy(svc, definitions)
        with _lock:
            stored = _state.setdefault("stored", StoredRules(svc.session_factory))
        totals = advance_all(svc.session_factory, now=_now(now), definitions=definitions, batch=batch,
                             policy=policy, rule_ids=rule_ids, rule_of=rule_lookup(definitions, policy, stored))
        return {rule: counters.as_dict() for rule, counters in totals.items()}


def deliver(connector_id: str, now: str) -> dict[str, Any]:
    """Deliver the due outbox rows of one connector (the dispatch tick with
    ``only=``); the connector-wide rate window is shared by all workers."""
    from dataclasses import asdict

    from connectors.registry import load_connector
    from engine.dispatch import dispatch_tick

    from .shared_limits import limits_url, redis_windows

    with flask_app().app_context():
        svc = services()
        key = (connector_id, threading.get_ident())  # a Dispatcher is one pass at a time: one per pool thread
        with _lock:
            tick = _state["ticks"].get(key)
            if tick is None:
                url = limits_url(svc.settings.broker_url, svc.settings.limits_url)
                budget = _state["budget"]
                limit = min(TASK_SECONDS, svc.settings.task_visibility / 3)
                # A task delivers until nothing is due or its time is up, so it
                # ends well within the broker's visibility timeout; the next
                # tick goes on where it stopped.
                tick = dispatch_tick(svc, loader=load_connector, only=connector_id,
                                     windows=redis_windows(url) if url else None,
                                     reap_after=svc.settings.dispatch_reap_after,
                                     batch=_connector_batch(svc, connector_id), max_passes=100_000,
                                     keep_going=lambda: time.monotonic() - budget[threading.get_ident()] < limit)
                _state["ticks"][key] = tick
        _state["budget"][threading.get_ident()] = time.monotonic()
        return asdict(tick(_now(now)))


def _connector_batch(svc: Any, connector_id: str) -> int:
    """Claim one provider batch at a time: a worker killed mid-send then
    leaves at most that batch in doubt."""
    from connectors.registry import resolve_type

    spec = svc.registry.current().connectors.get(connector_id)
    try:
        size = int(getattr(resolve_type(spec.type).capabilities, "max_batch", 1) or 1) if spec else 100
    except Exception:  # noqa: BLE001 - an unknown type is reported by the dispatch tick itself
        size = 100
    return max(size, 50)


def feedback(now: str) -> Any:
    """Pull every pull connector from its cursor (the scheduler's feedback tick)."""
    from .worker import feedback_tick

    with flask_app().app_context():
        svc = services()
        key = ("__feedback__", threading.get_ident())
        with _lock:
            tick = _state["ticks"].get(key)
            if tick is None:
                tick = _state["ticks"][key] = feedback_tick(svc)
        result = tick(_now(now))
        return None if result is None else str(result)


def refresh(name: str, now: str) -> Any:
    """Run the refresh hook ``name`` (e.g. KPI snapshots) registered in :mod:`web.refresh_hooks`."""
    from .refresh_hooks import run_hook

    with flask_app().app_context():
        result = run_hook(name, services(), _now(now))
        return None if result is None else str(result)


def _register(celery: Celery) -> None:
    options = {"acks_late": True, "reject_on_worker_lost": True}
    celery.task(name=RULE_CHUNK, **options)(rule_chunk)
    celery.task(name=ADVANCE, **options)(advance)
    celery.task(name=DELIVER, **options)(deliver)
    celery.task(name=FEEDBACK, **options)(feedback)
    celery.task(name=REFRESH, **options)(refresh)


__all__ = ["ADVANCE", "DELIVER", "FEEDBACK", "REFRESH", "RULE_CHUNK", "flask_app", "make_celery", "result_backend"]
