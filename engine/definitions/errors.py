"""Problems found in definitions, reported as ``file:line:col: message``.

Checks never know files or lines: they report a :class:`Problem` against a
*path* inside a definition (``("fields", 2, "type")``); the loader maps the path
to the YAML node it came from. That keeps every check testable on plain data.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Iterable, Sequence

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """A problem found by a check, located by a path inside one definition.

    ``at_key`` asks for the position of the mapping key itself (e.g. an unknown
    key) rather than of its value.
    """

    path: Path
    code: str
    message: str
    at_key: bool = False
    #: lines below the node (a line inside a multi-line text value)
    line_offset: int = 0


@dataclass(frozen=True, order=True)
class DefinitionError:
    """One problem, located in a file; ``str()`` gives ``file:line:col: message``."""

    file: str
    line: int
    col: int
    message: str = field(compare=True)
    code: str = field(default="invalid", compare=False)
    path: Path = field(default=(), compare=False)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class DefinitionsInvalid(Exception):
    """Raised when definitions must be valid (publish) and are not."""

    def __init__(self, errors: Sequence[DefinitionError]):
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return ``"; did you mean `x`?"`` for a near-miss name, or ``""``."""
    close = difflib.get_close_matches(str(name), sorted(set(map(str, candidates))), n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


def unknown(what: str, name: object, candidates: Iterable[str]) -> str:
    """Message for an unknown reference: ``unknown field `budgt`; did you mean `budget`?``"""
    return f"unknown {what} `{name}`{did_you_mean(str(name), candidates)}"
