"""What happens to subjects already in a rule's journeys when a new version is published.

Every journey row carries the ``rule_version`` it entered on. Publishing a
changed rule asks for one of three choices (``promoflow publish --journeys``):

* ``pin`` (default): journeys already under way finish on the version they
  started on; the new version takes new entries at once. The old spec stays
  reachable through the stored versions (:class:`StoredRules`).
* ``migrate``: journeys move to the step with the same id in the new version
  (authors' ``id:`` or the derived ``s3``, ``s4_else_1``); a journey waiting
  at a ``wait`` keeps waiting there. Journeys whose step no longer exists
  stay pinned (the impact report says how many move).
* ``drain``: journeys under way finish on the old version, and the rule enters
  nobody (on any version) until the last of them has finished: no subject is
  ever in two versions at once.

The choice is recorded as a ``rule_runs`` row (kind ``publish``, detail
``{"journeys": choice}``). Hosts call :func:`tick_versions` instead of
``runner.tick``: it holds draining rules and ticks with :func:`rule_lookup`,
so the journey runtime finds each journey's spec by (rule id, version).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from engine.automation.policy import Counters, Policy
from engine.automation.program import compile_program
from engine.definitions.loader import DefinitionSet, load_texts
from engine.definitions.specs import RuleSpec
from engine.storage import automation_repo as repo
from engine.storage import rule_journeys_repo as journeys_repo
from engine.storage.definitions_repo import get_definition, list_definitions
from engine.storage.times import to_db_time

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from engine.automation.program import RuleLookup
    from engine.automation.runner import Fanout, TickReport

__all__ = [
    "CHOICES", "StoredRules", "advance_old_versions", "apply_policy", "draining_rules", "journey_impact",
    "rule_lookup", "tick_versions", "with_rule",
]

CHOICES = ("pin", "migrate", "drain")


def journey_impact(session: Session, rule_id: str, new_spec: RuleSpec, *,
                   new_version: int | None = None) -> dict[str, int]:
    """How many subjects each choice affects: ``pin`` and ``drain`` the active
    journeys not on ``new_version`` (all active ones when None); ``migrate``
    those of them whose current step id exists in ``new_spec``."""
    program = compile_program(new_spec)
    ids = {instr.step_id for instr in program.instructions}
    total = matching = 0
    for step_id, n in journeys_repo.active_step_counts(session, rule_id, not_version=new_version):
        total += n
        if step_id in ids:
            matching += n
    return {"pin": total, "migrate": matching, "drain": total}


def apply_policy(session: Session, rule_id: str, new_spec: RuleSpec, new_version: int, choice: str, *,
                 now: datetime, batch: int = 2000) -> int:
    """Apply ``choice`` to the rule's journeys not on ``new_version``, in the
    caller's transaction, and record it. Returns how many journeys it affects
    (for ``migrate``: how many moved).

    Raises:
        ValueError: an unknown choice.
    """
    if choice not in CHOICES:
        raise ValueError(f"unknown journeys policy `{choice}`: one of {', '.join(CHOICES)}")
    impact = journey_impact(session, rule_id, new_spec, new_version=new_version)
    affected = impact[choice]
    if choice == "migrate":
        affected = _migrate(session, rule_id, new_spec, new_version, batch)
    repo.record_run(session, rule_id=rule_id, rule_version=new_version, kind="publish", db_now=to_db_time(now),
                    counters={}, detail={"journeys": choice, "affected": affected, "impact": impact})
    return affected


def _migrate(session: Session, rule_id: str, spec: RuleSpec, version: int, batch: int) -> int:
    program = compile_program(spec)
    moved = 0
    last_id = 0
    while True:
        rows = journeys_repo.active_to_migrate(session, rule_id, version, after_id=last_id, limit=batch)
        if not rows:
            return moved
        last_id = rows[-1][0]
        writes: list[tuple[int, int, dict[str, Any] | None]] = []
        for jid, step_id, old_pc, state in rows:
            pc = program.pc_of(step_id) if step_id is not None else None
            if pc is None:
                continue  # its step is gone: stays pinned to its version
            state = dict(state or {})
            if state.get("waiting") == old_pc:
                state["waiting"] = pc
            writes.append((jid, pc, state or None))
        journeys_repo.move_journeys(session, version, writes)
        moved += len(writes)


class StoredRules:
    """Old versions of rules, rebuilt from their stored bodies with the latest
    templates, segments, pools, forms and connectors as context; cached (a
    stored version never changes)."""

    def __init__(self, session_factory: sessionmaker[Session]):
        self._session_factory = session_factory
        self._cache: dict[tuple[str, int], RuleSpec | None] = {}

    def get(self, rule_id: str, version: int) -> RuleSpec | None:
        key = (rule_id, version)
        if key not in self._cache:
            self._cache[key] = self._load(rule_id, version)
        return self._cache[key]

    def _load(self, rule_id: str, version: int) -> RuleSpec | None:
        with self._session_factory() as session:
            stored = get_definition(session, "rule", rule_id, version)
            context = [d for d in list_definitions(session) if d.kind != "rule"]
        if stored is None:
            return None
        texts = [(f"{d.kind}/{d.def_id}.json", json.dumps(d.body, ensure_ascii=False, default=str))
                 for d in [*context, stored]]
        result = load_texts(texts)
        return result.definitions.rules.get(rule_id) if result.ok else None


def with_rule(definitions: DefinitionSet, rule: RuleSpec) -> DefinitionSet:
    """``definitions`` with ``rule`` in place of the rule of the same id."""
    rules = {**definitions.rules, rule.id: rule}
    specs: dict[str, Mapping[str, Any]] = {**definitions.specs, "rule": MappingProxyType(rules)}
    return DefinitionSet(definitions.documents, MappingProxyType(specs))


def rule_lookup(definitions: DefinitionSet, policy: Policy, stored: StoredRules) -> RuleLookup:
    """A rule spec by (id, version) for the journey runtime: the published
    version from ``definitions``, older ones rebuilt from the stored
    definitions (pinned and draining journeys finish on the version they
    entered); a version that was never stored runs on the latest spec."""
    cache: dict[tuple[str, int], RuleSpec | None] = {}

    def rule_of(rule_id: str, version: int) -> RuleSpec | None:
        key = (rule_id, version)
        if key not in cache:
            try:
                current = policy.version_of(rule_id)
            except KeyError:
                current = None
            spec = None if current is None or version == current else stored.get(rule_id, version)
            cache[key] = spec if spec is not None else definitions.rules.get(rule_id)
        return cache[key]

    return rule_of


def advance_old_versions(session_factory: sessionmaker[Session], *, now: datetime, definitions: DefinitionSet,
                         policy: Policy, stored: StoredRules, batch: int = 5000,
                         rule_ids: list[str] | None = None) -> dict[str, Counters]:
    """Advance the due journeys of ``rule_ids`` (all rules when None), each on
    the spec of the rule version it entered (:func:`rule_lookup`), batch after
    batch. Journeys of the current version advance too: one claim serves all
    versions, and a journey's spec is looked up by (rule id, version)."""
    from engine.automation.runner import advance_all

    return advance_all(session_factory, now=now, definitions=definitions, batch=batch, policy=policy,
                       rule_ids=rule_ids, rule_of=rule_lookup(definitions, policy, stored))


def draining_rules(session: Session, version_of: Callable[[str], int]) -> set[str]:
    """Rules whose latest publish chose ``drain`` and that still have active
    journeys on an older version: they enter nobody for now."""
    out = set()
    for rule_id, version, detail in journeys_repo.latest_publish_runs(session):
        if not isinstance(detail, dict) or detail.get("journeys") != "drain":
            continue
        try:
            current = version_of(rule_id)
        except KeyError:
            continue
        if version != current:
            continue
        if journeys_repo.active_before_version(session, rule_id, version):
            out.add(rule_id)
    return out


def hold_draining(definitions: DefinitionSet, draining: set[str]) -> DefinitionSet:
    """``definitions`` with draining rules disabled (no entries; journeys go on)."""
    for rule_id in draining:
        rule = definitions.rules.get(rule_id)
        if rule is not None and rule.enabled:
            definitions = with_rule(definitions, replace(rule, enabled=False))
    return definitions


def tick_versions(session_factory: sessionmaker[Session], *, now: datetime, definitions: DefinitionSet,
                  policy: Policy, stored: StoredRules, batch: int = 5000, deliver: bool = True,
                  fanout: Fanout | None = None) -> TickReport:
    """``runner.tick`` with versions honoured: draining rules enter nobody,
    and every journey advances on the spec of the version it entered."""
    from engine.automation.runner import tick

    with session_factory() as session:
        draining = draining_rules(session, policy.version_of)
    held = hold_draining(definitions, draining)
    return tick(session_factory, now=now, definitions=held, policy=policy, batch=batch, deliver=deliver,
                rule_of=rule_lookup(held, policy, stored), fanout=fanout)
