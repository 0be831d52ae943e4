"""Pruning from the settings' ``retention`` windows: the CLI's ``promoflow
prune`` and the worker's daily tick share :func:`run_prune`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from engine.retention import cutoffs

log = logging.getLogger("promoflow.retention")


def run_prune(session_factory: Any, retention: dict[str, str] | Any, now: datetime, *, dry_run: bool = False,
              progress: Callable[[Any], None] | None = None) -> list[Any]:
    from engine.storage.retention import prune

    return prune(session_factory, cutoffs(dict(retention), now), dry_run=dry_run, progress=progress)


def describe(step: Any, *, dry_run: bool) -> str:
    verb = {"deleted": "would delete" if dry_run else "deleted",
            "cleared": "would clear" if dry_run else "cleared"}[step.action]
    what = "message bodies" if step.name == "message_bodies" else "rows"
    return f"{step.table}: {verb} {step.rows} {what} older than {step.cutoff:%Y-%m-%d %H:%M} UTC"


def retention_tick(services: Any) -> Callable[[datetime], Any]:
    """A worker tick part that prunes once per UTC day (the first tick of the day)."""
    state: dict[str, date | None] = {"day": None}

    def tick(now: datetime) -> Any:
        if state["day"] == now.date():
            return None
        state["day"] = now.date()
        def progress(step: Any) -> None:
            if step.rows:
                log.info(describe(step, dry_run=False))

        steps = run_prune(services.session_factory, services.settings.retention, now, progress=progress)
        return {step.name: step.rows for step in steps}

    return tick


__all__ = ["describe", "retention_tick", "run_prune"]
