"""The registry of journey step types: one module per step, found by its YAML key.

A rule's ``steps:`` list is made of step types (``send``, ``issue_coupon``,
``wait`` …). Each one is a :class:`StepType` in a module of its own that
declares everything the product needs to know about it, in one place:

* ``key``, ``spec_type``: the YAML key (``issue_coupon:``) and the frozen spec
  it builds (:meth:`StepType.build`);
* ``schema``: its part of the rule JSON Schema (the value under ``key``); the
  loader assembles ``rule.schema.json``'s step object from these fragments;
* ``label`` / ``help``: zh and en titles and help, read by the docs, the
  journey page and the designer;
* ``emits``: the event the step appends (for the static loop check);
* :meth:`StepType.check`: its static checks (problems by path: the loader
  turns them into ``file:line:col`` errors);
* :meth:`StepType.run`: the runtime, one call over a batch of journeys at
  this step, returning typed writes (:class:`engine.steps.runtime.Writes`);
  running one journey is a batch of one;
* :meth:`StepType.sql_form`: optionally, the set-based SQL form of the step
  for a scheduled rule's first segment (:mod:`engine.automation.setentry`);
  the step decides when it applies and says why not.

How to add a step type (the long version is ``docs/steps.md``):

1. write one module with a frozen spec dataclass and a ``StepType`` subclass,
   and end it with ``STEP = YourStep()``;
2. list it: built-in steps in :data:`BUILTIN`; a third party declares the
   entry point ``promoflow.steps`` (``name = package.module:STEP``) in its
   package metadata, as connectors use ``promoflow.connectors``;
3. test it (its checks, its runtime through a rule run).

Nothing else changes: the loader, the checks, the schema, the runtime and the
docs find the step here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar

from engine.definitions.errors import Path, Problem, did_you_mean

if TYPE_CHECKING:
    from engine.automation.program import Instruction
    from engine.definitions.context import Context
    from engine.steps.runtime import Batch, Cursor, Writes
    from engine.steps.sql import SqlPlanner

__all__ = ["BUILTIN", "ENTRY_POINT_GROUP", "BuildSite", "CheckSite", "StepType", "UnknownStepError", "keys",
           "labels", "register", "reload", "schema_properties", "step", "step_of", "steps"]

#: The step types that ship with the product, in the order docs and the designer list them.
BUILTIN = (
    "engine.steps.send", "engine.steps.issue_coupon", "engine.steps.add_tag", "engine.steps.remove_tag",
    "engine.steps.set_field", "engine.steps.wait", "engine.steps.branch", "engine.steps.webhook",
    "engine.steps.create_record", "engine.steps.create_task", "engine.steps.add_points",
)
#: The entry point group third-party packages register step types in.
ENTRY_POINT_GROUP = "promoflow.steps"


class UnknownStepError(LookupError):
    """No step type of that key (the message carries "did you mean")."""


@dataclass(frozen=True)
class BuildSite:
    """What :meth:`StepType.build` may need beyond the step's own value.

    ``step``: the whole step mapping (an ``if`` reads its ``then``/``else``);
    ``step_id``: its id; ``build_steps(list, prefix)``: builds nested steps."""

    step: Mapping[str, Any]
    step_id: str
    build_steps: Callable[[Sequence[Mapping[str, Any]], str], tuple[Any, ...]]


@dataclass
class CheckSite:
    """Where a step is checked: the definitions (``ctx``), the rule's raw data,
    the path of the step's value, the condition kinds an ``if`` may test,
    and the conditions of enclosing ``if`` steps (``guards``, paths into
    ``conditions``), which a ``send`` reads for consent."""

    ctx: Context
    rule: Mapping[str, Any]
    step: Mapping[str, Any]
    path: Path
    journey_kinds: Mapping[str, Any]
    audience: Any
    guards: Sequence[tuple[Any, Path]]
    conditions: dict[Path, Any] = field(default_factory=dict)


class StepType:
    """One kind of journey step; subclass it once per step module (see the module notes)."""

    key: ClassVar[str]
    spec_type: ClassVar[type]
    label: ClassVar[Mapping[str, str]]          # {"zh": …, "en": …}
    help: ClassVar[Mapping[str, str]]           # {"zh": …, "en": …}
    schema: ClassVar[Mapping[str, Any]]         # JSON Schema of the value under ``key``
    emits: ClassVar[str | None] = None          # the event the step appends
    nested: ClassVar[tuple[str, ...]] = ()      # keys beside ``key`` holding nested steps (``then``/``else``)
    #: Extra properties of the step object besides ``key`` and ``id`` (``then``/``else`` of an ``if``).
    siblings: ClassVar[Mapping[str, Any]] = {}

    def owns(self, spec: Any) -> bool:
        """Whether ``spec`` is this step's (two YAML keys may share a spec type)."""
        return isinstance(spec, self.spec_type)

    def build(self, body: Any, site: BuildSite) -> Any:
        """The frozen spec of a schema-valid step value ``body``."""
        raise NotImplementedError

    def check(self, body: Any, site: CheckSite) -> list[Problem]:
        """Problems of a schema-valid step value (cross references, meaning); none by default."""
        return []

    def run(self, batch: Batch, instr: Instruction, cursors: list[Cursor]) -> Writes:
        """Run this step for every journey of ``cursors`` (all at ``instr``):
        set each cursor's outcome (:meth:`Cursor.go`, :meth:`Cursor.resume_at`,
        :meth:`Cursor.fail`) and return what the batch must write."""
        raise NotImplementedError

    def sql_form(self, planner: SqlPlanner, instr: Instruction) -> Any:
        """The step in a scheduled rule's SQL first segment (a value
        :class:`engine.steps.sql.SqlPlanner` understands), or a
        :class:`engine.steps.sql.NoSql` saying why not. Default: never."""
        from engine.steps.sql import NoSql

        return NoSql(f"`{self.key}` has no SQL form")

    def summary(self, spec: Any, lang: str) -> str:
        """One line about a step of this type, for pages (its title by default)."""
        return self.label.get(lang) or self.label["en"]


_steps: dict[str, StepType] = {}
_loaded = False


def register(step_type: StepType) -> StepType:
    """Add a step type (its key must be new); returns it."""
    if step_type.key in _steps and _steps[step_type.key] is not step_type:
        raise ValueError(f"step type `{step_type.key}` is registered twice")
    _steps[step_type.key] = step_type
    return step_type


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in BUILTIN:
        register(importlib.import_module(name).STEP)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found = ep.load()
        register(found() if isinstance(found, type) else found)


def reload() -> None:
    """Forget what was loaded: the next use reads the built-ins and the entry
    points again (after installing a package that declares steps)."""
    global _loaded
    _loaded = False
    _steps.clear()
    _by_spec.clear()
    from engine.definitions.schema_check import validator

    validator.cache_clear()


def steps() -> tuple[StepType, ...]:
    """Every registered step type, built-ins first."""
    _load()
    return tuple(_steps.values())


def keys() -> tuple[str, ...]:
    """The YAML keys of every step type."""
    return tuple(s.key for s in steps())


def step(key: str) -> StepType:
    """The step type of a YAML key.

    Raises:
        UnknownStepError: no such step ("did you mean" for a near miss)."""
    _load()
    found = _steps.get(key)
    if found is None:
        raise UnknownStepError(f"unknown step `{key}`{did_you_mean(key, _steps)}")
    return found


_by_spec: dict[type, tuple[StepType, ...]] = {}


def step_of(spec: Any) -> StepType:
    """The step type a built spec belongs to."""
    kinds = _by_spec.get(type(spec))
    if kinds is None:
        kinds = _by_spec[type(spec)] = tuple(s for s in steps() if isinstance(spec, s.spec_type))
    for kind in kinds:
        if kind.owns(spec):
            return kind
    raise UnknownStepError(f"no step type for {type(spec).__name__}")


def schema_properties() -> dict[str, Any]:
    """The step object's properties for the rule JSON Schema: every step's fragment and siblings."""
    props: dict[str, Any] = {}
    for s in steps():
        props[s.key] = dict(s.schema)
        props.update(s.siblings)
    return props


def labels(lang: str) -> dict[str, str]:
    """Step titles by key in ``lang`` (``zh`` or ``en``)."""
    return {s.key: s.label.get(lang) or s.label["en"] for s in steps()}
