"""Building the automation :class:`Policy` of an installation from its settings
and published definitions (the worker, the CLI and the rules page share it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.automation.policy import Policy
from engine.automation.timing import Calendar
from engine.definitions.loader import DefinitionSet
from engine.definitions.specs import CalendarSpec

__all__ = ["build_policy", "calendar_of", "pick_calendar", "policy_from_settings"]


def calendar_of(spec: CalendarSpec) -> Calendar:
    """The runtime calendar of a ``calendar`` definition."""
    return Calendar(holidays=spec.holidays, workdays=spec.workdays, weekend=spec.weekend)


def pick_calendar(definitions: DefinitionSet, calendar_id: str = "") -> Calendar:
    """The calendar named ``calendar_id``; else the only published one; else
    plain weekends (Saturday and Sunday).

    Raises:
        KeyError: ``calendar_id`` names no published calendar.
    """
    calendars = definitions.calendars
    if calendar_id:
        if calendar_id not in calendars:
            raise KeyError(f"unknown calendar `{calendar_id}` (settings `calendar`); "
                           f"published: {', '.join(sorted(calendars)) or 'none'}")
        return calendar_of(calendars[calendar_id])
    if len(calendars) == 1:
        return calendar_of(next(iter(calendars.values())))
    return Calendar()


def build_policy(definitions: DefinitionSet, *, calendar_id: str = "",
                 version_of: Callable[[str], int] | None = None, base_url: str = "",
                 link_secret: str = "") -> Policy:
    """A Policy with the installation's calendar and the published rule versions."""
    kwargs: dict = {"calendar": pick_calendar(definitions, calendar_id), "base_url": base_url,
                    "link_secret": link_secret}
    if version_of is not None:
        kwargs["version_of"] = version_of
    return Policy(**kwargs)


def policy_from_settings(definitions: DefinitionSet, settings: Any, registry: Any) -> Policy:
    """The policy every runner of rules in an installation uses (worker, rules
    page, CLI): its calendar, its public address and secret for the links in
    messages, and the registry's published rule versions.

    Raises:
        KeyError: the settings name a calendar that is not published.
    """
    return build_policy(definitions, calendar_id=settings.calendar,
                        version_of=lambda rule_id: registry.version_of("rule", rule_id),
                        base_url=settings.base_url, link_secret=settings.secret_key)
