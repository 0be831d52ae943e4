"""Building the automation :class:`Policy` of an installation from its settings
and published definitions (the worker, the CLI and the rules page share it)."""

from __future__ import annotations

from collections.abc import Callable

from engine.automation.policy import Policy
from engine.automation.timing import Calendar
from engine.definitions.loader import DefinitionSet
from engine.definitions.specs import CalendarSpec

__all__ = ["build_policy", "calendar_of", "pick_calendar"]


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
                 version_of: Callable[[str], int] | None = None, base_url: str = "") -> Policy:
    """A Policy with the installation's calendar and the published rule versions."""
    kwargs: dict = {"calendar": pick_calendar(definitions, calendar_id), "base_url": base_url}
    if version_of is not None:
        kwargs["version_of"] = version_of
    return Policy(**kwargs)
