"""A rule's nested steps flattened into a program of numbered instructions.

A journey row stores where it is as ``step_index`` (the program counter) and
``step_id`` (the author's or derived id, for migrating to a new version). An
``if`` is one instruction with two targets; every other step has one ``next``.
The numbering depends only on the rule spec, so a journey pinned to a rule
version always resumes at the same instruction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.definitions.specs import IfSpec, JourneyStep, RuleSpec

__all__ = ["END", "Instruction", "Program", "RuleLookup", "compile_program"]

#: A rule spec by (id, version): journeys run on the version they entered (see engine.automation.versions).
RuleLookup = Callable[[str, int], "RuleSpec | None"]

#: The program counter of a finished journey.
END = -1


@dataclass(frozen=True)
class Instruction:
    step_id: str
    #: The step's spec: a built-in ``JourneyAction`` or a plug-in step's own spec (engine/steps/registry.py).
    action: Any
    next: int
    else_next: int = END  # only for ``if``: where a false condition goes


@dataclass(frozen=True)
class Program:
    start: int
    instructions: tuple[Instruction, ...]

    def at(self, pc: int) -> Instruction | None:
        return self.instructions[pc] if 0 <= pc < len(self.instructions) else None

    def pc_of(self, step_id: str) -> int | None:
        """The instruction of a step id (for ``migrate`` to a new version)."""
        for pc, instr in enumerate(self.instructions):
            if instr.step_id == step_id:
                return pc
        return None


# Specs with mappings (set_field, webhook) are not hashable: cache by identity,
# holding the spec so its id is not reused while cached.
_cache: dict[int, tuple[RuleSpec, Program]] = {}


def compile_program(rule: RuleSpec) -> Program:
    """Flatten ``rule.steps``; instructions are numbered in order of emission
    (innermost last steps first), which is stable for a given spec."""
    hit = _cache.get(id(rule))
    if hit is not None and hit[0] is rule:
        return hit[1]
    program = _compile(rule)
    if len(_cache) > 512:
        _cache.clear()
    _cache[id(rule)] = (rule, program)
    return program


def _compile(rule: RuleSpec) -> Program:
    out: list[Instruction] = []

    def emit(steps: tuple[JourneyStep, ...], cont: int) -> int:
        nxt = cont
        for step in reversed(steps):
            if isinstance(step.action, IfSpec):
                then_pc = emit(step.action.then, nxt)
                else_pc = emit(step.action.else_, nxt)
                out.append(Instruction(step.id, step.action, then_pc, else_pc))
            else:
                out.append(Instruction(step.id, step.action, nxt))
            nxt = len(out) - 1
        return nxt

    start = emit(rule.steps, END)
    return Program(start, tuple(out))
