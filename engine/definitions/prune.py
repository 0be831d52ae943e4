"""Cut the parts of a definition that failed its schema, so that the
cross-reference checks can still run on the rest (users see every problem of a
file at once), and map the checks' paths back to the original positions."""

from __future__ import annotations

import copy
from typing import Any, Iterable

from .errors import Path, Problem


class Pruned:
    """A copy of ``data`` without the nodes at ``bad`` paths.

    A bad node inside a list removes that list item (the item as a whole is
    unreliable); elsewhere the bad key is removed from its mapping. Problems the
    checks report against the copy are mapped back with :meth:`original`.
    """

    def __init__(self, data: Any, bad: Iterable[Path]):
        self.data = copy.deepcopy(data)
        self._maps: dict[Path, list[int]] = {}
        self.unusable = False
        removals: dict[Path, set[int]] = {}
        keys: set[Path] = set()
        for path in bad:
            cut = max((i for i, part in enumerate(path) if isinstance(part, int)), default=None)
            if cut is not None:
                removals.setdefault(tuple(path[:cut]), set()).add(path[cut])
            elif path:
                keys.add(tuple(path))
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
