"""Cut the parts of a definition that failed its schema, so that the
cross-reference checks can still run on the rest (users see every problem of a
file at once), and map the checks' paths back to the original positions."""

from __future__ import annotations

import copy
from typing import Any, Iterable

from .errors import Path, Problem


#: Keys without which a list item means nothing (a field without a type).
STRUCTURAL = frozenset({"key", "type", "id", "kind"})


class Pruned:
    """A copy of ``data`` without the nodes at ``bad`` paths.

    A bad value is removed from its mapping; a bad list item, or an item whose
    ``key``/``type``/``id`` is bad, is removed as a whole. Problems the
    checks report against the copy are mapped back with :meth:`original`.
    """

    def __init__(self, data: Any, bad: Iterable[Path]):
        self.data = copy.deepcopy(data)
        self._maps: dict[Path, list[int]] = {}
        self.unusable = False
        removals: dict[Path, set[int]] = {}
        keys: set[Path] = set()
        self._cut: list[Path] = []
        for path in map(tuple, bad):
            items = [i for i, part in enumerate(path) if isinstance(part, int)]
            if path and not isinstance(path[-1], int) and not (items and path[-1] in STRUCTURAL):
                keys.add(path)                      # a bad value: drop just that key
                self._cut.append(path)
            elif items:
                cut = items[-1]                     # the item itself is unreliable
                removals.setdefault(path[:cut], set()).add(int(path[cut]))
                self._cut.append(path[:cut + 1])
            else:
                self.unusable = True
        for path in sorted(keys, key=len, reverse=True):
            parent = self._node(path[:-1])
            if isinstance(parent, dict):
                parent.pop(path[-1], None)
        # deepest lists first, so that outer removals do not move inner ones
        for path in sorted(removals, key=len, reverse=True):
            node = self._node(path)
            if not isinstance(node, list):
                continue
            keep = [i for i in range(len(node)) if i not in removals[path]]
            node[:] = [node[i] for i in keep]
            self._maps[path] = keep

    def _node(self, path: Path) -> Any:
        node = self.data
        for part in path:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                return None
        return node

    def original(self, problem: Problem) -> Problem:
        """``problem`` with its path in the original (unpruned) data."""
        out: list[str | int] = []
        for part in problem.path:
            key = tuple(out)
            if isinstance(part, int) and key in self._maps and part < len(self._maps[key]):
                part = self._maps[key][part]
            out.append(part)
        if tuple(out) == problem.path:
            return problem
        return Problem(tuple(out), problem.code, problem.message, problem.at_key, problem.line_offset)

    def reliable(self, problem: Problem) -> bool:
        """False for a complaint about a container that lost some of its
        contents to pruning (e.g. "missing secret" after a bad secret was cut)."""
        path = tuple(self.original(problem).path)
        return not any(len(path) < len(cut) and cut[: len(path)] == path and path for cut in self._cut)
