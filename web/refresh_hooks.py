"""Refresh hooks: periodic work other parts register, run by the scheduler
in-process or as one Celery task each (issue 17: "and, once it exists, KPI
refreshes").

A hook is ``fn(services, now)``; it must be idempotent (a task may run twice,
see :mod:`web.celery_app`). Register at import time of the module that owns
the work, e.g. ``register("kpi_snapshots", refresh_snapshots)``; the name is
what the task carries, so keep it stable.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

Hook = Callable[[Any, datetime], Any]
_HOOKS: dict[str, Hook] = {}


def register(name: str, fn: Hook) -> None:
    """Add (or replace) the hook ``name``."""
    _HOOKS[name] = fn


def unregister(name: str) -> None:
    _HOOKS.pop(name, None)


def names() -> list[str]:
    return sorted(_HOOKS)


def run_hook(name: str, services: Any, now: datetime) -> Any:
    """Run one hook.

    Raises:
        KeyError: no hook of that name is registered in this process.
    """
    if name not in _HOOKS:
        raise KeyError(f"no refresh hook `{name}` in this process; registered: {', '.join(names()) or 'none'}")
    return _HOOKS[name](services, now)


def refresh_tick(services: Any) -> Callable[[datetime], dict[str, Any]]:
    """The in-process scheduler's ``refresh`` tick: every hook once, in name order."""

    def tick(now: datetime) -> dict[str, Any]:
        return {name: run_hook(name, services, now) for name in names()}

    return tick


__all__ = ["names", "refresh_tick", "register", "run_hook", "unregister"]
