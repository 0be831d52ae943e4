"""Reading YAML and JSON definition files into plain data *with positions*.

PyYAML's safe composer gives us nodes with marks; we build plain Python values
ourselves so that (a) every value's and key's line/column is remembered by its
path, (b) duplicate keys are errors instead of silently winning, and (c) scalars
follow YAML 1.2's core schema: ``on``/``yes``/``no`` stay text (``on: workdays``
must not become ``True: workdays``) and dates stay ISO strings, exactly as JSON
Schema expects them.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import DefinitionError, Path, Problem

Position = tuple[int, int]  # 1-based line, 1-based column

_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL_TRUE = re.compile(r"^(?:true|True|TRUE)$")
_BOOL_FALSE = re.compile(r"^(?:false|False|FALSE)$")
_INT = re.compile(r"^[-+]?[0-9][0-9_]*$")
_INT_OCT = re.compile(r"^0o[0-7]+$")
_INT_HEX = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?$")
_INF = re.compile(r"^[-+]?\.(?:inf|Inf|INF)$")
_NAN = re.compile(r"^\.(?:nan|NaN|NAN)$")

_STR_TAG = "tag:yaml.org,2002:str"
_KNOWN_TAGS = {
    _STR_TAG,
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
}


@dataclass
class Positions:
    """Where each path of a document sits: the value's position and, for mapping
    entries, the key's position."""

    values: dict[Path, Position] = field(default_factory=dict)
    keys: dict[Path, Position] = field(default_factory=dict)
    #: paths whose value is a block scalar (``|`` or ``>``): its text starts a line below
    blocks: set[Path] = field(default_factory=set)
    #: a block scalar's lines as written in the file (indentation removed)
    block_text: dict[Path, str] = field(default_factory=dict)

    def locate(self, path: Path, *, at_key: bool = False) -> Position:
        """The position of ``path``, or of its nearest known ancestor."""
        probe = tuple(path)
        if at_key and probe in self.keys:
            return self.keys[probe]
        while True:
            if probe in self.values:
                return self.values[probe]
            if not probe:
                return (1, 1)
            probe = probe[:-1]

    def sub(self, prefix: Path) -> "Positions":
        """Positions re-rooted at ``prefix`` (one definition inside a file)."""
        n = len(prefix)
        out = Positions()
        out.values = {p[n:]: v for p, v in self.values.items() if p[:n] == prefix}
        out.keys = {p[n:]: v for p, v in self.keys.items() if p[:n] == prefix}
        out.blocks = {p[n:] for p in self.blocks if p[:n] == prefix}
        out.block_text = {p[n:]: v for p, v in self.block_text.items() if p[:n] == prefix}
        return out


@dataclass
class RawDefinition:
    """One definition as written: plain data plus where each part came from."""

    file: str
    data: Any
    positions: Positions

    def error(
        self, path: Path, message: str, code: str = "invalid", *, at_key: bool = False, line_offset: int = 0
    ) -> DefinitionError:
        line, col = self.positions.locate(path, at_key=at_key)
        if line_offset:
            key_line, key_col = self.positions.locate(path, at_key=True)
            line, col = line + line_offset, key_col + 2
        return DefinitionError(self.file, line, col, message, code, tuple(path))

    def problem(self, problem: "Problem") -> DefinitionError:
        return self.error(problem.path, problem.message, problem.code, at_key=problem.at_key,
                          line_offset=problem.line_offset)


class _Builder:
    """Turns composed nodes into plain values, recording positions and problems."""

    def __init__(self, file: str, positions: Positions, errors: list[DefinitionError]):
        self.file = file
        self.positions = positions
        self.errors = errors

    def _err(self, mark: yaml.Mark, message: str, code: str) -> None:
        self.errors.append(DefinitionError(self.file, mark.line + 1, mark.column + 1, message, code))

    def build(self, node: yaml.Node, path: Path, depth: int = 0) -> Any:
        self.positions.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if depth > 64:
            self._err(node.start_mark, "nesting is too deep (more than 64 levels)", "too_deep")
            return None
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or (
                    isinstance(key_node, yaml.ScalarNode) and key_node.value == "<<" and key_node.style is None
                ):
                    self._err(key_node.start_mark, "merge keys (`<<`) are not supported; repeat the keys or use include", "merge_key")
                    continue
                if not isinstance(key_node, yaml.ScalarNode):
                    self._err(key_node.start_mark, "a key must be plain text, not a list or mapping", "complex_key")
                    continue
                key = key_node.value if key_node.style is None else key_node.value
                key = str(key)
                kpos = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                if key in out:
                    first = self.positions.keys.get(path + (key,))
                    where = f" (first at line {first[0]})" if first else ""
                    self._err(key_node.start_mark, f"duplicate key `{key}`{where}", "duplicate_key")
                    continue
                self.positions.keys[path + (key,)] = kpos
                out[key] = self.build(value_node, path + (key,), depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (i,), depth + 1) for i, item in enumerate(node.value)]
        self._path = path
        assert isinstance(node, yaml.ScalarNode), node  # YAML has no fourth kind of node
        return self._scalar(node)

    def _block_source(self, node: yaml.ScalarNode) -> str:
        buffer = node.start_mark.buffer or ""
        raw = buffer[node.start_mark.index:node.end_mark.index].rstrip("\0")
        lines = raw.split("\n")[1:]  # the first line holds the indicator
        return "\n".join(line.strip() for line in lines)

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        if node.style in ("|", ">"):
            self.positions.blocks.add(self._path)
            self.positions.block_text[self._path] = self._block_source(node)
        if node.style is not None:
            # quoted and block scalars are always text
            return node.value
        if node.tag not in _KNOWN_TAGS:
            self._err(node.start_mark, f"unsupported tag `{node.tag}`", "tag")
            return node.value
        return _resolve_plain(node.value)


def _resolve_plain(text: str) -> Any:
    """YAML 1.2 core schema resolution of a plain scalar."""
    if _NULL.match(text):
        return None
    if _BOOL_TRUE.match(text):
        return True
    if _BOOL_FALSE.match(text):
        return False
    if _INT.match(text):
        return int(text.replace("_", ""))
    if _INT_OCT.match(text):
        return int(text[2:], 8)
    if _INT_HEX.match(text):
        return int(text[2:], 16)
    if _FLOAT.match(text) and any(ch.isdigit() for ch in text):
        return float(text.replace("_", ""))
    if _INF.match(text):
        return -math.inf if text.startswith("-") else math.inf
    if _NAN.match(text):
        return math.nan
    return text


class _PlainComposerLoader(yaml.SafeLoader):
    """SafeLoader whose implicit resolvers are turned off: every plain scalar is
    tagged ``str`` and re-resolved by :func:`_resolve_plain` (YAML 1.2 core)."""


_PlainComposerLoader.yaml_implicit_resolvers = {}


def _syntax_message(exc: yaml.MarkedYAMLError, text: str) -> tuple[int, int, str]:
    mark = exc.problem_mark or exc.context_mark
    line = (mark.line + 1) if mark else 1
    col = (mark.column + 1) if mark else 1
    problem = exc.problem or "invalid YAML"
    lines = text.splitlines()
    ch = ""
    if mark and mark.line < len(lines) and mark.column < len(lines[mark.line]):
        ch = lines[mark.line][mark.column]
    if "\\t" in problem or ch == "\t" or "'\\t'" in problem:
        return line, col, "tab character; YAML is indented with spaces, not tabs"
    if exc.context and exc.problem:
        started = f" started at line {exc.context_mark.line + 1}" if exc.context_mark else ""
        return line, col, f"YAML syntax error: {exc.problem} ({exc.context}{started})"
    return line, col, f"YAML syntax error: {problem}"


def _tab_indentation(text: str, file: str) -> list[DefinitionError]:
    """Tabs in indentation: PyYAML sometimes accepts them silently inside flow
    context or reports them far away; we point at each one."""
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip(" ")
        if stripped.startswith("\t"):
            col = len(line) - len(stripped) + 1
            out.append(DefinitionError(file, number, col, "tab character; YAML is indented with spaces, not tabs", "tab"))
    return out


def read_source(file: str, text: str) -> tuple[list[RawDefinition], list[DefinitionError]]:
    """Split one file's text into raw definitions (one per mapping; a document
    may also be a list of mappings) with positions; syntax problems are errors.

    ``file`` is only used in messages.
    """
    errors: list[DefinitionError] = []
    is_json = file.lower().endswith(".json")
    if is_json:
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            before = text[: exc.pos].rstrip()
            if before.endswith(",") and text[exc.pos: exc.pos + 1] in ("}", "]"):
                comma = len(before) - 1
                line = text.count("\n", 0, comma) + 1
                col = comma - (text.rfind("\n", 0, comma) + 1) + 1
                return [], [DefinitionError(file, line, col, "JSON syntax error: trailing comma is not allowed in JSON", "syntax")]
            return [], [DefinitionError(file, exc.lineno, exc.colno, f"JSON syntax error: {exc.msg}", "syntax")]
        # JSON allows tabs as whitespace outside strings (inside strings they
        # must be escaped), and YAML does not: swapping each for one space keeps
        # every column where it was.
        text = text.replace("\t", " ")
    else:
        tabs = _tab_indentation(text, file)
        if tabs:
            return [], tabs
    if text.startswith("\ufeff"):
        text = text[1:]
    docs: list[RawDefinition] = []
    try:
        nodes = list(yaml.compose_all(text, Loader=_PlainComposerLoader))
    except yaml.MarkedYAMLError as exc:
        line, col, message = _syntax_message(exc, text)
        return [], [DefinitionError(file, line, col, message, "syntax")]
    except yaml.YAMLError as exc:  # pragma: no cover - PyYAML raises marked errors for text input
        return [], [DefinitionError(file, 1, 1, f"YAML error: {exc}", "syntax")]
    for doc_index, node in enumerate(nodes):
        if node is None:
            continue
        positions = Positions()
        data = _Builder(file, positions, errors).build(node, (doc_index,))
        if isinstance(data, dict):
            docs.append(RawDefinition(file, data, positions.sub((doc_index,))))
        elif isinstance(data, list):
            for i, item in enumerate(data):
                sub = positions.sub((doc_index, i))
                if isinstance(item, dict):
                    docs.append(RawDefinition(file, item, sub))
                else:
                    line, col = sub.locate(())
                    errors.append(DefinitionError(file, line, col, "each definition must be a mapping with `kind` and `id`", "not_mapping"))
        elif data is not None:
            line, col = positions.locate((doc_index,))
            errors.append(DefinitionError(file, line, col, "a definition must be a mapping with `kind` and `id`", "not_mapping"))
    return docs, errors
