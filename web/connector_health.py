"""Which connectors cannot deliver, and why: the banner on /messages and the
lines ``promoflow worker`` prints at start.

A connector whose secret's environment variable is unset (or whose type or
settings are wrong) is left out of the dispatcher, so its messages stay
queued with 0 attempts; without this nobody would be told. The check builds
each enabled sending connector exactly as the worker does (through the
registry, secrets from the environment) and reports what failed. With the
``connector_sandbox`` setting every sending connector delivers to the
sandbox instead, so there is nothing to report.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.ports import ConfigurationError
from engine.storage import dispatch_repo

__all__ = ["ConnectorProblem", "connector_problems", "waiting_counts", "worker_lines"]


@dataclass(frozen=True)
class ConnectorProblem:
    """A connector that cannot deliver: its id, title, type, an error code
    (``missing_secret``, ``unknown_type`` …) and the reason (names the
    environment variable, never a value)."""

    connector: str
    title: str | None
    type: str
    code: str
    reason: str


def connector_problems(definitions: Any, settings: Any, *, env: Mapping[str, str] | None = None,
                       loader: Callable[..., Any] | None = None) -> list[ConnectorProblem]:
    """The enabled sending connectors of ``definitions`` that fail to build."""
    if bool(getattr(settings, "connector_sandbox", False)):
        return []
    if loader is None:
        from connectors.registry import load_connector

        loader = load_connector
    env = os.environ if env is None else env
    problems = []
    for spec in definitions.connectors.values():
        if not spec.enabled or spec.type == "log" or spec.channel == "feedback":
            continue
        try:
            connector = loader(spec, env=env)
        except ConfigurationError as exc:
            problems.append(ConnectorProblem(spec.id, spec.title, spec.type, exc.code or "configuration",
                                             str(exc)[:500]))
            continue
        close = getattr(connector, "close", None)
        if callable(close):
            close()
    return problems


def waiting_counts(session_factory: Any, problems: list[ConnectorProblem]) -> dict[str, int]:
    """How many messages wait (queued or retry) per broken connector."""
    if not problems:
        return {}
    with session_factory() as session:
        return dispatch_repo.waiting_counts(session, [p.connector for p in problems])


def worker_lines(services: Any) -> list[str]:
    """What ``promoflow worker`` prints at start about connectors (English:
    a log line; the web banner is translated)."""
    problems = connector_problems(services.registry.current(), services.settings)
    waiting = waiting_counts(services.session_factory, problems)
    lines = [f"Connector {p.connector} ({p.type}) cannot deliver: {p.reason}. "
             f"{waiting.get(p.connector, 0)} message(s) wait for it; fix the configuration and restart the worker."
             for p in problems]
    if bool(getattr(services.settings, "connector_sandbox", False)):
        lines.append("Connector sandbox is on: every message is delivered to the sandbox inbox (/sandbox), "
                     "not to a provider.")
    return lines
