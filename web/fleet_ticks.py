"""The active scheduler's ticks when work runs on Celery workers (issue 17).

Same tick parts, same order, same ``now`` as :func:`web.worker.tick_functions`;
only the heavy parts are handed out as tasks (:mod:`web.celery_app`):

* ``automation``: the engine's tick with a :class:`~engine.automation.runner.Fanout`:
  a scheduled run's set-based entry becomes one task per ``fleet_chunk``
  customer ids, due journey steps ``fleet_parts`` tasks that claim disjoint
  batches (``SKIP LOCKED``). Events and the ``log`` connector stay here.
* ``dispatch``: one delivery task per enabled connector, more for a
  connector with many rows waiting (up to ``fleet_parts``).
* ``feedback``: one pull task; ``refresh``: one task per registered hook.

The scheduler waits for each part's tasks (``task_timeout``) before the
next part, as the in-process tick does. A run's occurrence is claimed only
after every chunk committed: when a chunk fails or the scheduler dies while
waiting, the occurrence stays open and the next active scheduler repeats it,
and idempotent entry adds only who is missing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from celery import Celery, group

from engine.automation.policy import Counters

from . import celery_app as tasks

#: Outbox rows waiting per extra delivery task of one connector.
ROWS_PER_PART = tasks.ROWS_PER_TASK


def _join(celery: Celery, signatures: Sequence[Any], timeout: float) -> list[Any]:
    """Enqueue ``signatures`` and wait for all their answers (raises the first failure)."""
    if not signatures:
        return []
    result = group(list(signatures)).apply_async()
    return list(result.get(timeout=timeout, propagate=True, disable_sync_subtasks=False))


def fleet_tick_functions(services: Any, celery: Celery) -> list[tuple[str, Callable[[datetime], Any]]]:
    """The tick parts of a scheduler that enqueues (``PROMOFLOW_BROKER_URL`` set)."""
    from engine.automation.configure import policy_from_settings
    from engine.automation.runner import Fanout
    from engine.automation.versions import StoredRules, tick_versions

    from .followups import tick as followups_tick
    from .refresh_hooks import names as hook_names

    settings = services.settings
    timeout = float(settings.task_timeout)
    parts = int(settings.fleet_parts)
    stored = StoredRules(services.session_factory)

    def sig(name: str, *args: Any) -> Any:
        return celery.signature(name, args=args)

    def run_chunks(rule: Any, version: int, now: datetime, occurrence: datetime,
                   ranges: list[tuple[int, int]]) -> list[tuple[int, Counters]]:
        answers = _join(celery, [sig(tasks.RULE_CHUNK, rule.id, version, now.isoformat(), occurrence.isoformat(),
                                     lo, hi) for lo, hi in ranges], timeout)
        return [(int(entered), Counters(**counters)) for entered, counters in answers]

    def advance(now: datetime, rule_ids: list[str] | None) -> dict[str, Counters]:
        totals: dict[str, Counters] = {}
        for answer in _join(celery, [sig(tasks.ADVANCE, now.isoformat(), rule_ids) for _ in range(parts)], timeout):
            for rule_id, counters in answer.items():
                totals.setdefault(rule_id, Counters()).add(Counters(**counters))
        return totals

    fanout = Fanout(chunk=int(settings.fleet_chunk), run_chunks=run_chunks, advance=advance)

    def automation(now: datetime) -> Any:
        definitions = services.registry.current()
        policy = policy_from_settings(definitions, settings, services.registry)
        return tick_versions(services.session_factory, now=now, definitions=definitions, policy=policy,
                             stored=stored, fanout=fanout)

    def dispatch(now: datetime) -> dict[str, int]:
        from engine.storage.dispatch_repo import waiting_counts

        ids = [spec.id for spec in services.registry.current().connectors.values()
               if spec.enabled and spec.type != "log"]
        with services.session_factory() as session:
            waiting = waiting_counts(session, ids)
        signatures = []
        for cid in ids:
            extra = min(parts - 1, math.ceil(waiting.get(cid, 0) / ROWS_PER_PART))
            signatures += [sig(tasks.DELIVER, cid, now.isoformat()) for _ in range(1 + max(0, extra))]
        summary: dict[str, int] = {}
        for report in _join(celery, signatures, timeout):
            for key, value in report.items():
                if isinstance(value, int):
                    summary[key] = summary.get(key, 0) + value
        return summary

    def feedback(now: datetime) -> Any:
        return _join(celery, [sig(tasks.FEEDBACK, now.isoformat())], timeout)[0]

    def refresh(now: datetime) -> Any:
        names = hook_names()
        return dict(zip(names, _join(celery, [sig(tasks.REFRESH, n, now.isoformat()) for n in names], timeout), strict=True))

    ticks: list[tuple[str, Callable[[datetime], Any]]] = [("automation", automation)]
    if getattr(services, "workflows", None) is not None:
        ticks.append(("approvals", services.workflows.tick))
    ticks.append(("tasks", followups_tick(services)))
    ticks.append(("dispatch", dispatch))
    ticks.append(("feedback", feedback))
    ticks.append(("refresh", refresh))
    return ticks


__all__ = ["ROWS_PER_PART", "fleet_tick_functions"]
