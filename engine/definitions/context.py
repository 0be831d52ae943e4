"""What cross-reference checks see: every definition of the load, by kind and id."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from engine.conditions.ast import Condition

from .errors import Problem
from .source import RawDefinition


@dataclass
class Context:
    """All definitions being loaded together (a publish is checked as a whole).

    ``raw`` holds every definition with a usable id, valid or not, so that one
    broken file does not cause "unknown form" errors everywhere else.
    ``valid`` holds the (kind, id) pairs that passed their schema.
    """

    raw: dict[str, dict[str, RawDefinition]] = field(default_factory=dict)
    valid: set[tuple[str, str]] = field(default_factory=set)
    form_fields: dict[str, list[dict]] = field(default_factory=dict)
    segment_conditions: dict[str, Condition] = field(default_factory=dict)

    def ids(self, kind: str) -> set[str]:
        return set(self.raw.get(kind, {}))

    def get(self, kind: str, def_id: str) -> dict | None:
        raw = self.raw.get(kind, {}).get(def_id)
        return raw.data if raw is not None and (kind, def_id) in self.valid else None

    def each(self, kind: str) -> Iterator[RawDefinition]:
        for def_id, raw in self.raw.get(kind, {}).items():
            if (kind, def_id) in self.valid:
                yield raw

    def connectors_for(self, channel: str) -> list[dict]:
        return [r.data for r in self.each("connector") if r.data.get("channel") == channel]


Problems = list[Problem]
