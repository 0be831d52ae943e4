"""What an installation decides about automation, and the counters runs report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import timedelta

from engine.automation.timing import DEFAULT_GRACE, Calendar

__all__ = ["Counters", "FrequencyCap", "Policy"]


@dataclass(frozen=True)
class FrequencyCap:
    """At most ``limit`` messages of ``delivery_class`` per customer and channel
    within any ``per`` window, across all rules."""

    delivery_class: str = "marketing"
    limit: int = 2
    per: timedelta = timedelta(days=7)


@dataclass(frozen=True)
class Policy:
    """Installation-wide automation settings (the web app builds one from settings).

    ``cap_action``: ``defer`` (default: the message waits until the window has
    room; caps, like quiet hours and calendars, never drop a message) or
    ``skip``. ``loop_limit`` journeys of one rule for one subject within
    ``loop_window`` stop an event chain. ``version_of`` gives a rule's
    published version for new journeys. ``base_url`` prefixes the links put in
    template context (``unsubscribe_url``, ``survey_url``), signed with
    ``link_secret`` (:mod:`engine.automation.links`). ``entry_chunk``:
    customer ids per transaction of a set-based entry (a crash loses at most
    one chunk's work, which the repeated run redoes; memory stays flat
    anyway). Few and large. ``entry_chunk_postgresql``: the same on
    PostgreSQL, larger (one chunk up to 2M customer ids): there each chunk's
    audience is hash-joined against whole tables (consents, tags), so every
    further chunk costs another scan, and a long entry transaction blocks no
    other writer (row locks and the rule's advisory lock, not SQLite's
    database-wide write lock).
    """

    caps: tuple[FrequencyCap, ...] = (FrequencyCap(),)
    cap_action: str = "defer"
    calendar: Calendar = field(default_factory=Calendar)
    grace: timedelta = DEFAULT_GRACE
    loop_limit: int = 3
    loop_window: timedelta = timedelta(hours=1)
    base_url: str = ""
    #: The instance secret that signs those links (empty: no links).
    link_secret: str = field(default="", repr=False)
    version_of: Callable[[str], int] = field(default=lambda _rule_id: 1)
    form_version_of: Callable[[str], int] = field(default=lambda _form_id: 1)
    entry_chunk: int = 500_000
    entry_chunk_postgresql: int = 2_000_000


@dataclass
class Counters:
    """What a run did; the columns of ``rule_runs``."""

    entered: int = 0
    advanced: int = 0
    sent: int = 0
    skipped_consent: int = 0
    skipped_cap: int = 0
    skipped_other: int = 0
    deferred_quiet: int = 0
    deferred_cap: int = 0
    exited: int = 0
    completed: int = 0
    errors: int = 0

    def add(self, other: Counters) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __bool__(self) -> bool:
        return any(self.as_dict().values())
