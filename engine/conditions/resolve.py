"""Segment references resolved for the compilers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

from engine.definitions.errors import unknown

from .ast import Condition
from .kinds import ConditionError

T = TypeVar("T")


class SegmentResolver(Generic[T]):
    """Compiles each referenced segment once, detecting missing ones and cycles.

    ``compile_one(cond)`` builds the compiled form of a condition and calls
    :meth:`get` for each ``SegmentRef`` it meets.
    """

    def __init__(self, segments: Mapping[str, Condition], compile_one: Callable[[Condition], T]):
        self._segments = segments
        self._compile = compile_one
        self._done: dict[str, T] = {}
        self._stack: list[str] = []

    def get(self, segment_id: str) -> T:
        """The compiled condition of ``segment_id``.

        Raises:
            ConditionError: the segment does not exist, or refers back to itself.
        """
        if segment_id in self._done:
            return self._done[segment_id]
        if segment_id in self._stack:
            cycle = self._stack[self._stack.index(segment_id):] + [segment_id]
            raise ConditionError("segments refer to each other in a cycle: " + " → ".join(cycle))
        if segment_id not in self._segments:
            raise ConditionError(unknown("segment", segment_id, self._segments))
        self._stack.append(segment_id)
        try:
            compiled = self._compile(self._segments[segment_id])
        finally:
            self._stack.pop()
        self._done[segment_id] = compiled
        return compiled
