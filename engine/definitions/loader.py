"""Load definitions from files and folders: read → schema → cross-checks → specs.

Every problem of every file is collected (not only the first) and reported as
``file:line:col: message`` at the node that is wrong. Specs are built only when
nothing is wrong, so a :class:`DefinitionSet` is always consistent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Sequence

from . import specs as s
from .build import BUILDERS
from .catalog import CONNECTOR_TYPES, ConnectorType
from .check_calendar import check_calendar
from .check_flows import check_rule, check_workflow
from .check_forms import check_form, expand_fields
from .check_campaigns import check_campaign, check_form_campaign
from .check_coupons import check_coupon_pool, check_form_redemption
from .check_misc import check_connector, check_segment, check_template, segment_cycles
from .context import Context
from .errors import DefinitionError, DefinitionsInvalid, did_you_mean
from .loyalty import PointsPolicySpec, TierSpec, check_points_policy, check_tier
from .prune import Pruned
from .schema_check import kinds as schema_kinds
from .schema_check import schema_problems
from .source import RawDefinition, read_source

SUFFIXES = (".yaml", ".yml", ".json")
SETTINGS_PREFIX = "settings"
#: Checked in this order, so that e.g. segments are known before rules use them.
KIND_ORDER = ("role", "fieldset", "form", "coupon_pool", "connector", "template", "segment", "calendar", "workflow",
              "rule", "feedback_tags", "tier", "points_policy", "campaign", "alert")


@dataclass(frozen=True)
class LoadedDocument:
    """A valid definition as written (plain data), for publishing and display."""

    kind: str
    id: str
    body: Mapping[str, object]
    file: str
    line: int


@dataclass(frozen=True)
class DefinitionSet:
    """Everything one load produced, by kind and id."""

    documents: tuple[LoadedDocument, ...] = ()
    specs: Mapping[str, Mapping[str, s.Spec]] = field(default_factory=dict)

    def of(self, kind: str) -> Mapping[str, s.Spec]:
        return self.specs.get(kind, MappingProxyType({}))

    @property
    def forms(self) -> Mapping[str, s.FormSpec]:
        return self.of("form")  # type: ignore[return-value]

    @property
    def workflows(self) -> Mapping[str, s.WorkflowSpec]:
        return self.of("workflow")  # type: ignore[return-value]

    @property
    def rules(self) -> Mapping[str, s.RuleSpec]:
        return self.of("rule")  # type: ignore[return-value]

    @property
    def segments(self) -> Mapping[str, s.SegmentSpec]:
        return self.of("segment")  # type: ignore[return-value]

    @property
    def templates(self) -> Mapping[str, s.TemplateSpec]:
        return self.of("template")  # type: ignore[return-value]

    @property
    def connectors(self) -> Mapping[str, s.ConnectorSpec]:
        return self.of("connector")  # type: ignore[return-value]

    @property
    def roles(self) -> Mapping[str, s.RoleSpec]:
        return self.of("role")  # type: ignore[return-value]

    @property
    def calendars(self) -> Mapping[str, s.CalendarSpec]:
        return self.of("calendar")  # type: ignore[return-value]

    @property
    def feedback_tags(self) -> Mapping[str, s.FeedbackTagsSpec]:
        return self.of("feedback_tags")  # type: ignore[return-value]

    @property
    def alerts(self) -> Mapping[str, Any]:
        """``kind: alert`` definitions (:class:`engine.alerts.spec.AlertSpec`), issue 14."""
        return self.of("alert")

    @property
    def coupon_pools(self) -> Mapping[str, s.CouponPoolSpec]:
        return self.of("coupon_pool")  # type: ignore[return-value]

    @property
    def points_policy(self) -> PointsPolicySpec | None:
        """The enabled points policy (the loader allows one), or None: orders earn nothing."""
        return next((p for p in self.of("points_policy").values() if isinstance(p, PointsPolicySpec) and p.enabled),
                    None)

    @property
    def tier(self) -> TierSpec | None:
        """The tier definition (the loader allows one), or None: nobody has a tier."""
        return next(iter(self.of("tier").values()), None)  # type: ignore[return-value]

    @property
    def campaigns(self) -> Mapping[str, s.CampaignSpec]:
        return self.of("campaign")  # type: ignore[return-value]


@dataclass(frozen=True)
class LoadResult:
    definitions: DefinitionSet
    errors: tuple[DefinitionError, ...]

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_for_errors(self) -> DefinitionSet:
        if self.errors:
            raise DefinitionsInvalid(self.errors)
        return self.definitions


def definition_files(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[DefinitionError]]:
    """Files to load: each file as given, each folder recursively (sorted, so
    errors come out in a stable order). Hidden files and folders, and settings
    files (``settings*.yaml``) found in folders, are skipped."""
    files: list[Path] = []
    errors: list[DefinitionError] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                rel = found.relative_to(path)
                if found.is_file() and found.suffix.lower() in SUFFIXES and not found.name.startswith(
                        SETTINGS_PREFIX) and not any(part.startswith(".") for part in rel.parts):
                    files.append(found)
        elif path.is_file():
            files.append(path)
        else:
            errors.append(DefinitionError(str(path), 1, 1, "no such file or folder", "missing_file"))
    return files, errors


def load_paths(
    paths: Sequence[str | os.PathLike], *, connector_types: Mapping[str, ConnectorType] | None = None,
    relative_to: str | os.PathLike | None = None,
) -> LoadResult:
    """Load every definition under ``paths`` as one consistent set.

    File names in messages are shown relative to ``relative_to`` (default: the
    current directory) when they are inside it.
    """
    files, errors = definition_files(paths)
    base = Path(relative_to or os.getcwd()).resolve()
    sources = []
    for path in files:
        shown = _shown(path, base)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            errors.append(DefinitionError(shown, 1, 1, f"not UTF-8 text: {exc.reason}", "encoding"))
            continue
        sources.append((shown, text))
    result = load_texts(sources, connector_types=connector_types)
    return LoadResult(result.definitions, tuple(sorted(errors + list(result.errors), key=_order)))


def _shown(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base))
    except ValueError:
        return str(path)


def _order(e: DefinitionError) -> tuple:
    return (e.file, e.line, e.col, e.message)


def _cross_check(ctx: Context, kind: str, raw: RawDefinition, types: Mapping[str, ConnectorType]) -> list:
    if kind in ("form", "fieldset"):
        problems = check_form(ctx, raw.data, kind=kind)
        if kind == "form":
            ctx.form_fields[raw.data["id"]] = [f for f, _ in expand_fields(ctx, raw.data["fields"], ("fields",), [])]
            problems = [*problems, *check_form_redemption(raw.data, ctx.form_fields[raw.data["id"]]),
                        *check_form_campaign(raw.data, ctx.form_fields[raw.data["id"]])]
        return problems
    if kind == "segment":
        return check_segment(ctx, raw.data)
    if kind == "template":
        return check_template(ctx, raw)
    if kind == "connector":
        return check_connector(ctx, raw.data, types)
    if kind == "workflow":
        return check_workflow(ctx, raw.data)
    if kind == "rule":
        return check_rule(ctx, raw.data)
    if kind == "calendar":
        return check_calendar(ctx, raw.data)
    if kind == "coupon_pool":
        return check_coupon_pool(ctx, raw.data)
    if kind == "points_policy":
        return check_points_policy(ctx, raw.data)
    if kind == "tier":
        return check_tier(ctx, raw.data)
    if kind == "campaign":
        return check_campaign(ctx, raw.data)
    if kind == "alert":
        from engine.alerts.spec import check_alert  # issue 14

        return check_alert(ctx, raw.data)
    return []


def load_texts(
    sources: Sequence[tuple[str, str]], *, connector_types: Mapping[str, ConnectorType] | None = None
) -> LoadResult:
    """Load definitions from ``(file name, text)`` pairs (the designer and tests
    use this directly)."""
    errors: list[DefinitionError] = []
    raws: list[RawDefinition] = []
    for file, text in sources:
        docs, read_errors = read_source(file, text)
        errors.extend(read_errors)
        raws.extend(docs)
    ctx = Context()
    pruned: dict[tuple[str, str], Pruned] = {}
    known_kinds = schema_kinds()
    first_seen: dict[tuple[str, str], RawDefinition] = {}
    for raw in raws:
        kind = raw.data.get("kind")
        if kind is None:
            errors.append(raw.error((), f"missing `kind`: one of {', '.join(known_kinds)}", "missing_kind"))
            continue
        if kind not in known_kinds:
            errors.append(raw.error(("kind",), f"unknown kind `{kind}`{did_you_mean(str(kind), known_kinds)}", "unknown_kind"))
            continue
        problems = schema_problems(kind, raw.data)
        errors.extend(raw.problem(p) for p in problems)
        def_id = raw.data.get("id")
        if not isinstance(def_id, str):
            continue
        key = (kind, def_id)
        if key in first_seen:
            first = first_seen[key]
            errors.append(raw.error(("id",), f"duplicate {kind} id `{def_id}` (first defined at "
                                             f"{first.file}:{first.positions.locate(('id',))[0]})", "duplicate_id"))
            continue
        first_seen[key] = raw
        ctx.raw.setdefault(kind, {})[def_id] = raw
        if not problems:
            ctx.valid.add(key)
        else:
            # a key missing at the top cuts nothing; the guarded checks cope
            pruned[key] = Pruned(raw.data, [p.path for p in problems if p.path or p.code != "missing"])

    types = dict(CONNECTOR_TYPES) | dict(connector_types or {})
    for kind in KIND_ORDER:
        for raw in ctx.each(kind):
            errors.extend(raw.problem(p) for p in _cross_check(ctx, kind, raw, types))
        # Definitions that failed their schema are checked too, on a copy without
        # the broken parts, so one run shows every problem; a crash on such
        # partial data only means there is nothing more to say about it yet.
        for def_id, raw in ctx.raw.get(kind, {}).items():
            cut = pruned.get((kind, def_id))
            if cut is None or cut.unusable:
                continue
            try:
                found = _cross_check(ctx, kind, RawDefinition(raw.file, cut.data, raw.positions), types)
            except (KeyError, TypeError, AttributeError, ValueError, IndexError):
                continue
            errors.extend(raw.problem(cut.original(p)) for p in found if cut.reliable(p))
        if kind == "segment":
            for sid, problem in segment_cycles(ctx).items():
                errors.append(ctx.raw["segment"][sid].problem(problem))

    errors = sorted(set(errors), key=_order)
    if errors:
        return LoadResult(DefinitionSet(), tuple(errors))
    documents = []
    built: dict[str, dict[str, s.Spec]] = {}
    for kind in KIND_ORDER:
        for def_id, raw in ctx.raw.get(kind, {}).items():
            line = raw.positions.locate(())[0]
            documents.append(LoadedDocument(kind, def_id, raw.data, raw.file, line))
            built.setdefault(kind, {})[def_id] = BUILDERS[kind](ctx, raw.data, s.Source(raw.file, line))
    frozen = MappingProxyType({k: MappingProxyType(v) for k, v in built.items()})
    return LoadResult(DefinitionSet(tuple(documents), frozen), ())
