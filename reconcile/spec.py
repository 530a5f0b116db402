"""Load spec files: YAML with positions, the JSON Schema, semantic checks, frozen models.

The one module that imports ``yaml`` and ``jsonschema`` for specs (pre-commit's
``clientlib.py`` shape). ``schemas/reconcile.schema.json`` is the one definition of the
spec's shape; this module adds what a schema cannot say (templates, globs, durations,
sizes, key paths, conflicting operations, duplicate rule names across files) and reports
*every* problem as a ``SpecIssue`` with file, line, column and JSON path.

Several files (and directories: their ``*.yaml``/``*.yml``, sorted by name) merge into
one spec: rules are concatenated in load order; ``version`` is required in every file;
``target`` and ``limits`` may be given in any number of files but must then be equal
(the usual GitOps layout gives them once, in ``00-target.yaml``); rule names are unique
across all files. A file given twice (``-f a.yaml -f .``) is read once.

Hostile input never raises anything but ``SpecError``: the document is composed from
libyaml's event stream without recursion (libyaml's own composer crashes the process on
very deep nesting), nesting is bounded, and YAML aliases may expand to at most
``MAX_ALIAS_EXPANSION`` values beyond what the file itself holds (a "billion laughs" file
is refused instead of eating memory).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import humanfriendly
import jsonschema
import yaml
from wcmatch import fnmatch, glob

import reconcile
from reconcile import templates
from reconcile.errors import ReconcileError, SpecError, SpecIssue
from reconcile.models import (
    SPEC_VERSIONS,
    ConfigWrites,
    FilesRule,
    Goal,
    KeyPath,
    Limits,
    Location,
    Match,
    Rule,
    SetBlock,
    Spec,
    Target,
    UnlessTop,
)

SCHEMA_PATH = Path(reconcile.__file__).resolve().parent.parent / "schemas" / "reconcile.schema.json"
"""The JSON Schema of the spec (the package is installed editable, so it sits beside it)."""

MAX_DEPTH = 100
"""Deepest nesting accepted; real specs (even exported configs) stay far below it."""

MAX_ALIAS_EXPANSION = 100_000
"""How many values YAML aliases may add on top of the nodes written in the file."""

FILE_GLOB_FLAGS = glob.GLOBSTAR
"""wcmatch flags for ``files.delete``/``keep`` globs (the same as ``reconcile.retention``)."""

NAME_GLOB_FLAGS = fnmatch.CASE
"""wcmatch flags for ``match.name`` (the same as ``reconcile.selection``)."""

MAX_GLOB_LENGTH = 1024
"""Longest glob accepted (real globs are a few dozen characters)."""

JsonPath = tuple[str | int, ...]
_Pos = tuple[int, int]  # 1-based line, column

_MAX_MESSAGE = 400
_Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_TAG}{t}" for t in ("null", "bool", "int", "float", "str", "timestamp")}
_MERGE_TAG = f"{_TAG}merge"
_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}
_PATTERN_HINTS = {
    "^[^/\\s]*$": "must not contain '/' or whitespace",
    "^(\\S(.*\\S)?)?$": "must not be blank, span lines, or start or end with whitespace",
}
_ACTIONS = ("set", "add_tags", "remove_tags", "unset", "rename", "files")
_CONDITIONS = (
    "ids",
    "filters",
    "name",
    "tags",
    "state",
    "group",
    "job_type",
    "created_before",
    "created_after",
    "older_than",
)


# --------------------------------------------------------------------------- public API


@dataclass(frozen=True, slots=True)
class FileReport:
    """What loading found in one file: how many rules it holds and its problems."""

    file: str
    rules: int
    issues: tuple[SpecIssue, ...]


@dataclass(frozen=True, slots=True)
class LoadResult:
    """The merged spec (``None`` when there is any issue), per-file reports and every issue."""

    spec: Spec | None
    files: tuple[FileReport, ...]
    issues: tuple[SpecIssue, ...]


def inspect_paths(paths: Sequence[Path]) -> LoadResult:
    """Read, check and merge spec files and directories; never raises ``SpecError``."""
    files, reports, path_issues = _expand(paths)
    results: list[_FileResult] = []
    digest = hashlib.sha256()
    for name, file in files:
        try:
            data = file.read_bytes()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            results.append(
                _FileResult(name, issues=[SpecIssue(name, 0, 0, "", f"cannot read the file: {reason}")])
            )
            continue
        digest.update(data)
        results.append(_read_file(name, data))
    spec, merge_issues = _merge(results, "sha256:" + digest.hexdigest())
    all_issues = sorted([*path_issues, *merge_issues, *(i for r in results for i in r.issues)], key=_order)
    for result in results:
        mine = tuple(i for i in all_issues if i.file == result.file)
        reports.append(FileReport(result.file, len(result.raw_rules), mine))
    return LoadResult(spec if not all_issues else None, tuple(reports), tuple(all_issues))


def load_spec(paths: Sequence[Path]) -> Spec:
    """The merged spec of ``paths`` (files or directories); raises ``SpecError`` listing every issue."""
    result = inspect_paths(paths)
    if result.spec is None:
        raise SpecError(list(result.issues))
    return result.spec


def validate_paths(paths: Sequence[Path]) -> list[SpecIssue]:
    """Every problem in the spec made of ``paths``, sorted by file and position; empty if valid."""
    return list(inspect_paths(paths).issues)


def schema() -> dict[str, Any]:
    """The spec's JSON Schema, read from ``schemas/reconcile.schema.json``."""
    return dict(_validator().schema)


# --------------------------------------------------------------------------- files


def _order(issue: SpecIssue) -> tuple[str, int, int, str]:
    return (issue.file, issue.line, issue.column, issue.path)


def _expand(paths: Sequence[Path]) -> tuple[list[tuple[str, Path]], list[FileReport], list[SpecIssue]]:
    """The spec files named by ``paths`` (directories give their sorted YAML files)."""
    files: list[tuple[str, Path]] = []
    reports: list[FileReport] = []
    issues: list[SpecIssue] = []
    seen: set[Path] = set()

    def problem(name: str, message: str) -> None:
        issue = SpecIssue(name, 0, 0, "", message)
        issues.append(issue)
        reports.append(FileReport(name, 0, (issue,)))

    if not paths:
        problem("<none>", "no spec files given; name a spec file or a directory of them")
    for path in paths:
        name = str(path)
        try:
            if path.is_dir():
                members = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
                if not members:
                    problem(name, "the directory holds no .yaml or .yml files")
            elif path.exists():
                members = [path]
            else:
                problem(name, "no such file or directory; check the path")
                continue
        except OSError as exc:
            problem(name, f"cannot read: {exc.strerror or type(exc).__name__}")
            continue
        for member in members:
            key = member.resolve()
            if key not in seen:
                seen.add(key)
                files.append((str(member), member))
    return files, reports, issues


@dataclass
class _FileResult:
    """One file's part of the spec, before merging."""

    file: str
    issues: list[SpecIssue] = dataclasses.field(default_factory=list)
    raw_rules: list[Any] = dataclasses.field(default_factory=list)
    rules: list[Rule | None] = dataclasses.field(default_factory=list)
    rule_names: list[tuple[int, str, Location]] = dataclasses.field(default_factory=list)
    target: tuple[Target, Location] | None = None
    limits: tuple[Limits, Location] | None = None


def _read_file(name: str, data: bytes) -> _FileResult:
    """Parse, schema-check and build one file; every problem becomes an issue."""
    result = _FileResult(name)
    try:
        text = _decode(name, data)
        document = _Document.parse(name, text)
        _Builder(document, result).build()
        result.issues.extend(document.issues)
    except _Abort as abort:
        result.issues.append(abort.issue)
    except RecursionError:
        result.issues.append(
            SpecIssue(name, 0, 0, "", f"the document is nested too deeply (limit {MAX_DEPTH})")
        )
    return result


class _Abort(Exception):
    """Stops reading a file that cannot be read further."""

    def __init__(self, issue: SpecIssue) -> None:
        super().__init__(issue.message)
        self.issue = issue


def _decode(name: str, data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _Abort(
            SpecIssue(
                name,
                line,
                column,
                "",
                f"the file is not UTF-8 text (byte 0x{data[exc.start]:02x}); save it as UTF-8",
            )
        ) from exc


# --------------------------------------------------------------------------- YAML


def _pos(mark: Any) -> _Pos:
    return (mark.line + 1, mark.column + 1)


def _text_pos(text: str, index: int) -> _Pos:
    line = text.count("\n", 0, index) + 1
    return (line, index - (text.rfind("\n", 0, index) + 1) + 1)


@dataclass
class _Frame:
    node: yaml.Node
    key: yaml.Node | None = None


class _Document:
    """One YAML document as plain data, with the position of every value and key."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.data: Any = None
        self.marks: dict[JsonPath, _Pos] = {}
        self.key_marks: dict[JsonPath, _Pos] = {}
        self.issues: list[SpecIssue] = []
        self.bad_paths: set[JsonPath] = set()  # already reported while reading; schema errors there are noise
        self._budget = 0
        self._active: set[int] = set()
        self._constructor = yaml.constructor.SafeConstructor()

    @classmethod
    def parse(cls, file: str, text: str) -> _Document:
        """Compose and convert ``text``; raises ``_Abort`` when it cannot be read at all."""
        doc = cls(file)
        root, nodes = doc._compose(text)
        if root is None or (isinstance(root, yaml.ScalarNode) and root.tag == f"{_TAG}null"):
            raise _Abort(SpecIssue(file, 1, 1, "", "empty spec: write at least `version: 1` and some rules"))
        doc._budget = nodes + MAX_ALIAS_EXPANSION
        doc.data = doc._convert(root, (), 0)
        return doc

    def issue(self, node_or_pos: yaml.Node | _Pos, path: JsonPath, message: str) -> None:
        pos = node_or_pos if isinstance(node_or_pos, tuple) else _pos(node_or_pos.start_mark)
        self.issues.append(SpecIssue(self.file, pos[0], pos[1], render_path(path), message))
        self.bad_paths.add(path)

    def _abort(self, pos: _Pos, path: JsonPath, message: str) -> _Abort:
        return _Abort(SpecIssue(self.file, pos[0], pos[1], render_path(path), message))

    def _compose(self, text: str) -> tuple[yaml.Node | None, int]:  # noqa: PLR0912, PLR0915 - one event loop reads best
        """Build the node graph from libyaml's events with an explicit stack (no recursion)."""
        resolver = yaml.resolver.Resolver()
        anchors: dict[str, yaml.Node] = {}
        stack: list[_Frame] = []
        root: yaml.Node | None = None
        documents = nodes = 0

        def attach(node: yaml.Node) -> None:
            nonlocal root
            if not stack:
                root = node
                return
            frame = stack[-1]
            if isinstance(frame.node, yaml.SequenceNode):
                frame.node.value.append(node)
            elif frame.key is None:
                frame.key = node
            else:
                frame.node.value.append((frame.key, node))
                frame.key = None

        try:
            for event in yaml.parse(text, Loader=_Loader):
                if isinstance(event, yaml.DocumentStartEvent):
                    documents += 1
                    if documents > 1:
                        raise self._abort(
                            _pos(event.start_mark),
                            (),
                            "a spec file holds one YAML document; "
                            "move the part after '---' into its own file",
                        )
                elif isinstance(event, yaml.AliasEvent):
                    if event.anchor not in anchors:
                        raise self._abort(
                            _pos(event.start_mark),
                            (),
                            f"unknown alias *{event.anchor}; "
                            f"define the anchor &{event.anchor} before using it",
                        )
                    attach(anchors[event.anchor])
                elif isinstance(event, (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                    nodes += 1
                    node: yaml.Node
                    tag = event.tag
                    if isinstance(event, yaml.ScalarEvent):
                        if tag is None or tag == "!":
                            tag = resolver.resolve(yaml.ScalarNode, event.value, event.implicit)
                        node = yaml.ScalarNode(
                            tag, event.value, event.start_mark, event.end_mark, event.style
                        )
                    else:
                        kind = (
                            yaml.SequenceNode
                            if isinstance(event, yaml.SequenceStartEvent)
                            else yaml.MappingNode
                        )
                        if tag is None or tag == "!":
                            tag = resolver.resolve(kind, None, event.implicit)
                        node = kind(tag, [], event.start_mark, event.end_mark, event.flow_style)
                    if event.anchor is not None:
                        anchors[event.anchor] = node
                    attach(node)
                    if not isinstance(event, yaml.ScalarEvent):
                        stack.append(_Frame(node))
                        if len(stack) > MAX_DEPTH:
                            raise self._abort(
                                _pos(event.start_mark),
                                (),
                                f"the document is nested more than {MAX_DEPTH} levels deep",
                            )
                elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                    stack.pop().node.end_mark = event.end_mark
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            pos = _pos(mark) if mark is not None else (0, 0)
            problem = " ".join(filter(None, [exc.context, exc.problem]))
            raise self._abort(pos, (), f"invalid YAML: {problem or exc}") from exc
        except yaml.reader.ReaderError as exc:
            raise self._abort(
                _text_pos(text, exc.position),
                (),
                f"invalid YAML: {exc.reason} (character #x{exc.character:04x})"
                if isinstance(exc.character, int)
                else f"invalid YAML: {exc.reason}",
            ) from exc
        except yaml.YAMLError as exc:
            raise self._abort((0, 0), (), f"invalid YAML: {exc}") from exc
        return root, nodes

    def _convert(self, node: yaml.Node, path: JsonPath, depth: int) -> Any:
        """Plain data for ``node``, recording positions; aliases are expanded within the budget."""
        self._budget -= 1
        pos = _pos(node.start_mark)
        if self._budget < 0:
            raise self._abort(
                pos,
                path,
                f"YAML aliases expand this document beyond {MAX_ALIAS_EXPANSION} extra "
                "values; a spec should not need that many (is it an alias bomb?)",
            )
        if depth > MAX_DEPTH:
            raise self._abort(
                pos,
                path,
                f"the document is nested more than {MAX_DEPTH} levels deep (counting what aliases expand to)",
            )
        self.marks.setdefault(path, pos)
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path)
        if id(node) in self._active:
            raise self._abort(
                pos, path, "a YAML alias refers to a node that contains it; a spec must be a tree"
            )
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                self._check_tag(node, path, f"{_TAG}seq")
                return [self._convert(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
            self._check_tag(node, path, f"{_TAG}map")
            out: dict[str, Any] = {}
            for key, key_node, value in self._pairs(node, path, depth):
                self.key_marks.setdefault((*path, key), _pos(key_node.start_mark))
                out[key] = self._convert(value, (*path, key), depth + 1)
            return out
        finally:
            self._active.discard(id(node))

    def _check_tag(self, node: yaml.Node, path: JsonPath, expected: str) -> None:
        if node.tag != expected:
            self.issue(node, path, f"YAML tag {node.tag} is not supported in a spec; remove it")

    def _pairs(
        self, node: yaml.MappingNode, path: JsonPath, depth: int
    ) -> Iterator[tuple[str, yaml.Node, yaml.Node]]:
        """The key/value pairs of a mapping with merge keys (``<<: *base``) applied; explicit keys win."""
        seen: dict[str, yaml.Node] = {}
        merged: list[tuple[str, yaml.Node, yaml.Node]] = []
        for key_node, value in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.extend(self._merge_sources(value, path, depth))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.issue(key_node, path, "a key must be plain text, not a list or mapping")
                continue
            key = str(key_node.value)  # keys are read as written: `on:` stays "on", `1:` is "1"
            if key in seen:
                first = _pos(seen[key].start_mark)[0]
                self.issue(key_node, (*path, key), f"duplicate key {key!r}; the first is on line {first}")
                continue
            seen[key] = key_node
            yield key, key_node, value
        for key, key_node, value in merged:
            if key not in seen:
                seen[key] = key_node
                yield key, key_node, value

    def _merge_sources(
        self, value: yaml.Node, path: JsonPath, depth: int
    ) -> list[tuple[str, yaml.Node, yaml.Node]]:
        sources = value.value if isinstance(value, yaml.SequenceNode) else [value]
        out: list[tuple[str, yaml.Node, yaml.Node]] = []
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                self.issue(source, path, "a merge key '<<' takes a mapping or a list of mappings")
                continue
            if id(source) in self._active or depth > MAX_DEPTH:
                raise self._abort(
                    _pos(source.start_mark), path, "a YAML merge refers to a mapping that contains it"
                )
            self._active.add(id(source))
            try:
                self._budget -= len(source.value)
                out.extend(self._pairs(source, path, depth + 1))
            finally:
                self._active.discard(id(source))
        return out

    def _scalar(self, node: yaml.ScalarNode, path: JsonPath) -> Any:
        if node.tag not in _SCALAR_TAGS:
            self.issue(node, path, f"YAML tag {node.tag} is not supported in a spec; remove it")
            return None
        if node.tag == f"{_TAG}str":
            return node.value
        kind = node.tag.removeprefix(_TAG)
        try:
            value = self._constructor.yaml_constructors[node.tag](self._constructor, node)
        except (ValueError, TypeError, AttributeError, OverflowError, yaml.YAMLError):
            shown = node.value if len(node.value) <= 40 else node.value[:40] + "..."
            self.issue(node, path, f"{shown!r} is not a valid {kind}")
            return None
        if isinstance(value, (date, datetime)):
            # Dates stay text, as JSON has no date type; `match` parses them itself.
            return value.isoformat()
        return value


# --------------------------------------------------------------------------- schema


@functools.lru_cache(maxsize=1)
def _validator() -> jsonschema.protocols.Validator:
    try:
        document = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ReconcileError(
            f"the spec schema is missing at {SCHEMA_PATH}; reinstall reconcile "
            "(pip install -e .) from a complete checkout"
        ) from exc
    except (OSError, ValueError) as exc:
        raise ReconcileError(
            f"the spec schema at {SCHEMA_PATH} cannot be read ({exc}); restore it from the repository"
        ) from exc
    cls = jsonschema.validators.validator_for(document)
    return cls(document)


def render_path(path: JsonPath) -> str:
    """``("rules", 2, "set", "config")`` as ``rules[2].set.config``; odd keys are quoted."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_$][A-Za-z0-9_/$-]*", part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    for kind, check in (("object", dict), ("array", list), ("string", str), ("number", (int, float))):
        if isinstance(value, check):
            return _TYPE_NAMES[kind]
    return "null" if value is None else type(value).__name__


def _schema_messages(  # noqa: PLR0912 - one wording per JSON Schema keyword
    error: jsonschema.ValidationError,
) -> list[tuple[JsonPath, bool, str]]:
    """(path, at the key?, message) for one schema error, worded for a person editing YAML."""
    path: JsonPath = tuple(error.absolute_path)
    kind, expected, instance = error.validator, error.validator_value, error.instance
    if "propertyNames" in error.relative_schema_path:  # the error is about a key, reported at its mapping
        return [(path, False, f"has an invalid key {_short(instance)}: keys must not be empty")]
    if kind == "additionalProperties" and isinstance(instance, dict):
        allowed = list(error.schema.get("properties", {}))
        out = []
        for key in instance:
            if key in allowed:
                continue
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else f"; allowed keys: {', '.join(allowed)}"
            out.append(((*path, key), True, f"unknown key {key!r}{hint}"))
        return out
    if kind == "required" and isinstance(instance, dict):
        hints = {"version": "; start the file with `version: 1`"}
        return [
            (path, False, f"missing required key {k!r}{hints.get(k, '')}")
            for k in expected
            if k not in instance
        ]
    if kind in ("anyOf", "oneOf"):
        return _alternatives_messages(error, path)
    if kind == "type":
        types = [expected] if isinstance(expected, str) else list(expected)
        return [
            (
                path,
                False,
                f"must be {' or '.join(_TYPE_NAMES.get(t, t) for t in types)}, not {_type_of(instance)}",
            )
        ]
    if kind == "const":
        if path == ("version",):
            supported = ", ".join(str(v) for v in SPEC_VERSIONS)
            return [
                (
                    path,
                    False,
                    f"unsupported spec version {_short(instance)}: this build reads spec version "
                    f"{supported}; write `version: 1` or upgrade reconcile",
                )
            ]
        if path[-1:] == ("all",):
            return [
                (
                    path,
                    False,
                    "`all` can only be true (match every run); remove it to match by the other conditions",
                )
            ]
        return [(path, False, f"must be {_short(expected)}")]
    if kind == "enum":
        return [(path, False, f"must be one of {', '.join(map(str, expected))}, not {_short(instance)}")]
    if kind in ("minItems", "minLength", "minProperties"):
        return [(path, False, "must not be empty" if expected == 1 else f"needs at least {expected} items")]
    if kind == "maxLength":
        return [(path, False, f"is longer than {expected} characters")]
    if kind == "minimum":
        return [(path, False, f"must be at least {expected}, not {_short(instance)}")]
    if kind == "pattern":
        return [(path, False, _PATTERN_HINTS.get(expected, f"does not match {expected}"))]
    if kind == "uniqueItems" and isinstance(instance, list):
        dupes = [v for i, v in enumerate(instance) if v in instance[:i]]
        return [(path, False, f"lists {_short(dupes[0]) if dupes else 'an item'} more than once")]
    message = error.message
    return [(path, False, message if len(message) <= 200 else message[:197] + "...")]


def _alternatives_messages(
    error: jsonschema.ValidationError, path: JsonPath
) -> list[tuple[JsonPath, bool, str]]:
    context = list(error.context or ())
    if context and all(e.validator == "required" for e in context):
        wanted = [e.validator_value[0] for e in context]
        noun = "rule" if set(wanted) == set(_ACTIONS) else "mapping"
        return [(path, False, f"the {noun} needs at least one of: {', '.join(wanted)}")]
    # Drop the branches that fail only on the instance's type; report the deepest remaining error.
    relevant = [e for e in context if not (e.validator == "type" and not e.relative_path)]
    if relevant:
        return _schema_messages(max(relevant, key=lambda e: len(e.relative_path)))
    types = [e.validator_value for e in context if e.validator == "type"]
    names = [_TYPE_NAMES.get(t, t) for t in types if isinstance(t, str)]
    return [
        (path, False, f"must be {' or '.join(names) or 'something else'}, not {_type_of(error.instance)}")
    ]


# --------------------------------------------------------------------------- building models


class _Builder:
    """Checks one schema-checked document beyond the schema and builds its models."""

    def __init__(self, document: _Document, result: _FileResult) -> None:
        self.doc = document
        self.result = result
        # Every prefix of every path with an issue, so "is this part clean?" is one set lookup
        # (a spec exported from 100k runs has 100k rules).
        self.error_prefixes: set[JsonPath] = set()
        for path in document.bad_paths:
            self.mark_bad(path)

    def build(self) -> None:
        data = self.doc.data
        errors = list(_validator().iter_errors(data))
        # A value of the wrong type fails other keywords too (`version: "1"` is no integer and
        # not 1): say it once.
        wrong_type = {tuple(e.absolute_path) for e in errors if e.validator == "type"}
        for error in errors:
            if tuple(error.absolute_path) in wrong_type and error.validator != "type":
                continue
            for path, at_key, message in _schema_messages(error):
                if any(path[:n] in self.doc.bad_paths for n in range(len(path) + 1)):
                    continue  # already reported while reading the YAML
                self.issue(path, message, at_key=at_key)
        if not isinstance(data, dict):
            return
        rules = data.get("rules")
        self.result.raw_rules = rules if isinstance(rules, list) else []
        for i, raw in enumerate(self.result.raw_rules):
            if isinstance(raw, dict) and isinstance(raw.get("name"), str):
                self.result.rule_names.append((i, raw["name"], self.location(("rules", i, "name"))))
        if self.clean(("target",)) and "target" in data:
            self.result.target = (self.target(data["target"]), self.location(("target",)))
        if self.clean(("limits",)) and "limits" in data:
            self.result.limits = (self.limits(data["limits"]), self.location(("limits",)))
        for i, raw in enumerate(self.result.raw_rules):
            self.result.rules.append(self.rule(i, raw))

    # helpers ------------------------------------------------------------------

    def pos(self, path: JsonPath, *, at_key: bool = False) -> _Pos:
        if at_key and path in self.doc.key_marks:
            return self.doc.key_marks[path]
        for n in range(len(path), -1, -1):
            if path[:n] in self.doc.marks:
                return self.doc.marks[path[:n]]
        return (0, 0)

    def location(self, path: JsonPath) -> Location:
        line, column = self.pos(path)
        return Location(self.result.file, line, column)

    def issue(self, path: JsonPath, message: str, *, at_key: bool = False) -> None:
        line, column = self.pos(path, at_key=at_key)
        if len(message) > _MAX_MESSAGE:
            message = message[: _MAX_MESSAGE - 3] + "..."
        self.result.issues.append(SpecIssue(self.result.file, line, column, render_path(path), message))
        self.mark_bad(path)

    def mark_bad(self, path: JsonPath) -> None:
        self.error_prefixes.update(path[:n] for n in range(len(path) + 1))

    def clean(self, prefix: JsonPath) -> bool:
        """Whether nothing at or under ``prefix`` failed the schema."""
        return prefix not in self.error_prefixes

    # top level ----------------------------------------------------------------

    def target(self, raw: Mapping[str, Any]) -> Target:
        writes = raw.get("config_writes")
        return Target(
            entity=raw.get("entity"),
            project=raw.get("project"),
            config_writes=ConfigWrites(writes) if writes is not None else None,
        )

    def limits(self, raw: Mapping[str, Any]) -> Limits:
        max_bytes = self.size(("limits", "max_bytes"), raw["max_bytes"]) if "max_bytes" in raw else None
        return Limits(
            max_changed_runs=raw.get("max_changed_runs"),
            max_file_deletions=raw.get("max_file_deletions"),
            max_bytes=max_bytes,
        )

    # rules --------------------------------------------------------------------

    def get(self, raw: Any, path: JsonPath, key: str) -> Any:
        """``raw[key]`` when it is there and passed the schema, else None (so checks never see bad types)."""
        if isinstance(raw, dict) and key in raw and self.clean((*path, key)):
            return raw[key]
        return None

    def rule(self, i: int, raw: Any) -> Rule | None:
        """The rule at ``rules[i]``; every part that passed the schema is checked even if others did not."""
        if not isinstance(raw, dict):
            return None
        base: JsonPath = ("rules", i)
        schema_clean = self.clean(base)
        before = len(self.result.issues)
        unset, rename = raw.get("unset"), raw.get("rename")
        match = self.match((*base, "match"), raw.get("match"))
        set_block = self.set_block((*base, "set"), raw.get("set"))
        add_tags = self.tag_templates((*base, "add_tags"), self.get(raw, base, "add_tags") or [])
        remove_tags = self.tag_templates((*base, "remove_tags"), self.get(raw, base, "remove_tags") or [])
        unset_config = self.key_paths(
            (*base, "unset", "config"), self.get(unset, (*base, "unset"), "config") or []
        )
        unset_summary = self.key_paths(
            (*base, "unset", "summary"), self.get(unset, (*base, "unset"), "summary") or []
        )
        rename_config = self.renames(
            (*base, "rename", "config"), self.get(rename, (*base, "rename"), "config") or {}
        )
        rename_summary = self.renames(
            (*base, "rename", "summary"), self.get(rename, (*base, "rename"), "summary") or {}
        )
        files = self.files((*base, "files"), raw.get("files"))
        self.conflicts(base, "config", set_block.config, unset_config, rename_config)
        self.conflicts(base, "summary", set_block.summary, unset_summary, rename_summary)
        self.tag_conflicts(base, set_block, add_tags, remove_tags)
        if not schema_clean or match is None or len(self.result.issues) > before:
            return None
        return Rule(
            name=raw["name"],
            location=self.location(base),
            target=self.target(raw.get("target", {})),
            match=match,
            set=set_block,
            add_tags=add_tags,
            remove_tags=remove_tags,
            unset_config=unset_config,
            unset_summary=unset_summary,
            rename_config=rename_config,
            rename_summary=rename_summary,
            files=files,
        )

    def match(self, path: JsonPath, raw: Any) -> Match | None:
        if not isinstance(raw, dict):
            return None
        if not raw:  # other keys are conditions, or unknown keys the schema already reported
            self.issue(
                path,
                "match has no conditions; add one ("
                + ", ".join(_CONDITIONS)
                + ") or write `all: true` to match every run",
            )
        name = self.get(raw, path, "name")
        if name is not None:
            self.glob((*path, "name"), name, file_path=False)
        before = self.instant((*path, "created_before"), self.get(raw, path, "created_before"))
        after = self.instant((*path, "created_after"), self.get(raw, path, "created_after"))
        if before is not None and after is not None and after >= before:
            self.issue(
                (*path, "created_after"),
                "created_after is not before created_before: the rule would match no run",
            )
        older_text = self.get(raw, path, "older_than")
        older = self.duration((*path, "older_than"), older_text) if older_text is not None else None
        state = self.get(raw, path, "state")
        ids, tags = self.get(raw, path, "ids"), self.get(raw, path, "tags")
        return Match(
            ids=tuple(ids) if ids is not None else None,
            filters=self.get(raw, path, "filters"),
            name=name,
            tags=tuple(tags) if tags is not None else None,
            state=(state,) if isinstance(state, str) else tuple(state) if state is not None else None,
            group=self.get(raw, path, "group"),
            job_type=self.get(raw, path, "job_type"),
            created_before=before,
            created_after=after,
            older_than=older,
            all=raw.get("all") is True,
        )

    def set_block(self, path: JsonPath, raw: Any) -> SetBlock:
        if not isinstance(raw, dict):
            return SetBlock()
        texts = {}
        for field in ("name", "notes", "group", "job_type"):
            texts[field] = self.get(raw, path, field)
            if texts[field] is not None:
                self.template((*path, field), texts[field])
        tags = self.get(raw, path, "tags")
        return SetBlock(
            config=_flatten(self.get(raw, path, "config") or {}),
            summary=_flatten(self.get(raw, path, "summary") or {}),
            tags=self.tag_templates((*path, "tags"), tags) if tags is not None else None,
            **texts,
        )

    def files(self, path: JsonPath, raw: Any) -> FilesRule | None:
        if not isinstance(raw, dict):
            return None
        for key in ("delete", "keep"):
            for j, pattern in enumerate(self.get(raw, path, key) or []):
                self.glob((*path, key, j), pattern, file_path=True)
        top = self.get(raw, path, "unless_top")
        unless_top = None
        if top is not None:
            metric = self.key_path((*path, "unless_top", "metric"), top["metric"])
            unless_top = UnlessTop(metric=metric or (), goal=Goal(top["goal"]), count=top["count"])
        older, larger = self.get(raw, path, "older_than"), self.get(raw, path, "larger_than")
        return FilesRule(
            delete=tuple(self.get(raw, path, "delete") or ()),
            keep=tuple(self.get(raw, path, "keep") or ()),
            keep_last=self.get(raw, path, "keep_last"),
            older_than=self.duration((*path, "older_than"), older) if older is not None else None,
            larger_than=self.size((*path, "larger_than"), larger) if larger is not None else None,
            unless_top=unless_top,
            allow_system_files=raw.get("allow_system_files") is True,
            allow_delete_all=raw.get("allow_delete_all") is True,
        )

    # values -------------------------------------------------------------------

    def template(self, path: JsonPath, text: str) -> None:
        try:
            templates.parse(text)
        except templates.TemplateError as exc:
            self.issue(path, str(exc))

    def tag_templates(self, path: JsonPath, tags: Sequence[str]) -> tuple[str, ...]:
        for j, tag in enumerate(tags):
            self.template((*path, j), tag)
        return tuple(tags)

    def glob(self, path: JsonPath, pattern: str, *, file_path: bool) -> None:
        problem = _glob_problem(pattern, file_path=file_path)
        if problem:
            self.issue(path, f"glob {_short(pattern)} {problem}")

    def duration(self, path: JsonPath, text: str) -> timedelta | None:
        hint = "write a duration with a unit, such as 30d, 12h or 2w"
        if re.fullmatch(r"\s*[0-9.]+\s*", text):
            self.issue(path, f"{_short(text)} has no unit; {hint}")
            return None
        try:
            seconds = humanfriendly.parse_timespan(text)
            span = timedelta(seconds=seconds) if math.isfinite(seconds) and seconds >= 0 else None
        except (humanfriendly.InvalidTimespan, ValueError, TypeError, ArithmeticError):
            span = None
        if span is None:
            self.issue(path, f"{_short(text)} is not a duration; {hint}")
        return span

    def size(self, path: JsonPath, value: int | str) -> int | None:
        if isinstance(value, int):
            return value
        size: int | None = None
        if _SIZE.fullmatch(value):  # humanfriendly alone reads "5 parsecs" as 5 petabytes
            try:
                size = int(humanfriendly.parse_size(value))
            except (humanfriendly.InvalidSize, ValueError, TypeError, ArithmeticError):
                size = None
        if size is None or size < 0:
            self.issue(path, f"{_short(value)} is not a size; write bytes or a size such as 50MB or 1.5GiB")
            return None
        return size

    def instant(self, path: JsonPath, text: str | None) -> datetime | None:
        if text is None:
            return None
        try:
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
                day = date.fromisoformat(text.strip())
                return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
            stamp = text.strip()
            stamp = stamp[:-1] + "+00:00" if stamp[-1:] in ("Z", "z") else stamp
            when = datetime.fromisoformat(stamp)
        except ValueError:
            self.issue(path, f"{_short(text)} is not a date (2026-01-01) or a time (2026-01-01T12:00:00Z)")
            return None
        # A time without an offset is UTC, like W&B's createdAt.
        return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)

    def key_path(self, path: JsonPath, value: str | Sequence[str]) -> KeyPath | None:
        if isinstance(value, str):
            parts = tuple(value.split("."))
            if any(not p for p in parts):
                self.issue(
                    path,
                    f"key path {_short(value)} has an empty part; write `a.b`, or a list "
                    '["a.b", "c"] for a key that contains a dot',
                )
                return None
            return parts
        return tuple(value)

    def key_paths(self, path: JsonPath, values: Sequence[str | Sequence[str]]) -> tuple[KeyPath, ...]:
        out = [self.key_path((*path, j), v) for j, v in enumerate(values)]
        return tuple(p for p in out if p is not None)

    def renames(self, path: JsonPath, raw: Mapping[str, Any]) -> tuple[tuple[KeyPath, KeyPath], ...]:
        pairs: list[tuple[KeyPath, KeyPath]] = []
        for old_text, new_text in raw.items():
            old = self.key_path((*path, old_text), old_text)
            new = self.key_path((*path, old_text), new_text)
            if old is None or new is None:
                continue
            if old == new:
                self.issue((*path, old_text), f"renames {_dotted(old)} to itself", at_key=True)
            elif any(_overlap(new, n) for _, n in pairs):
                self.issue((*path, old_text), f"two renames move a value to {_dotted(new)}", at_key=True)
            pairs.append((old, new))
        for old, new in pairs:
            for other_old, _ in pairs:
                if other_old == old and _overlap(new, old) and old != new:
                    self.issue((*path, ".".join(old)), f"moves {_dotted(old)} inside itself", at_key=True)
                elif other_old != old and _overlap(new, other_old):
                    self.issue(
                        (*path, ".".join(other_old)),
                        f"chained renames: {_dotted(new)} is renamed again; "
                        "rename each key straight to its final name",
                        at_key=True,
                    )
        return tuple(pairs)

    # conflicts ----------------------------------------------------------------

    def conflicts(
        self,
        base: JsonPath,
        namespace: str,
        desired: Mapping[KeyPath, Any],
        unset: Sequence[KeyPath],
        renames: Sequence[tuple[KeyPath, KeyPath]],
    ) -> None:
        """Operations in one rule that contradict each other on the same key."""
        for j, gone in enumerate(unset):
            for key in desired:
                if _overlap(gone, key):
                    self.issue(
                        (*base, "unset", namespace, j),
                        f"unset {namespace}.{_dotted(gone)} conflicts with "
                        f"set {namespace}.{_dotted(key)} in the same rule",
                    )
        for old, new in renames:
            where = (*base, "rename", namespace, ".".join(old))
            for key in desired:
                if _overlap(new, key) or _overlap(old, key):
                    self.issue(
                        where,
                        f"rename of {namespace}.{_dotted(old)} -> {_dotted(new)} conflicts with set "
                        f"{namespace}.{_dotted(key)} in the same rule",
                        at_key=True,
                    )
            for gone in unset:
                if _overlap(new, gone) or _overlap(old, gone):
                    self.issue(
                        where,
                        f"rename of {namespace}.{_dotted(old)} -> {_dotted(new)} conflicts with "
                        f"unset {namespace}.{_dotted(gone)} in the same rule",
                        at_key=True,
                    )

    def tag_conflicts(
        self, base: JsonPath, set_block: SetBlock, add: Sequence[str], remove: Sequence[str]
    ) -> None:
        if set_block.tags is not None and (add or remove):
            self.issue(
                (*base, "set", "tags"),
                "set.tags is the exact set of tags; it cannot be combined with "
                "add_tags or remove_tags in one rule",
            )
        for j, tag in enumerate(remove):
            if tag in add:
                self.issue((*base, "remove_tags", j), f"tag {tag!r} is both added and removed by this rule")


def _flatten(mapping: Mapping[str, Any], prefix: KeyPath = ()) -> dict[KeyPath, Any]:
    """Nested mappings descended to their leaves; keys taken literally; ``{}`` is a leaf."""
    out: dict[KeyPath, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, (*prefix, key)))
        else:
            out[(*prefix, key)] = value
    return out


def _overlap(a: KeyPath, b: KeyPath) -> bool:
    """Whether one key path is the other or lies inside it."""
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def _dotted(path: KeyPath) -> str:
    return ".".join(path) if not any("." in p for p in path) else json.dumps(list(path))


_RANGE = re.compile(r"(.)-(.)")
_SIZE = re.compile(
    r"\s*\d+(\.\d+)?\s*(b|bytes?|[kmgtpe](i?b)?|(kilo|mega|giga|tera|peta|exa|kibi|mebi|gibi|tebi|pebi|exbi)"
    r"(bytes?)?)?\s*",
    re.IGNORECASE,
)


def _glob_problem(pattern: str, *, file_path: bool) -> str | None:  # noqa: PLR0912 - a list of checks
    """Why ``pattern`` is not a usable glob, or None. wcmatch accepts nearly anything, so the
    mistakes that silently match nothing are caught here."""
    if not pattern.strip():
        return "is blank"
    if len(pattern) > MAX_GLOB_LENGTH:  # wcmatch takes tens of seconds to translate a 10 MB pattern
        return f"is {len(pattern)} characters long; a glob may have at most {MAX_GLOB_LENGTH}"
    if "\x00" in pattern:
        return "contains a NUL character"
    if file_path and pattern.startswith("/"):
        return "starts with '/'; file paths in a run are relative, e.g. media/images/**"
    if file_path and ".." in pattern.split("/"):
        return "contains '..', which never matches a file of a run"
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            if i + 1 == len(pattern):
                return "ends with a lone backslash"
            i += 2
            continue
        if char == "[":
            j = i + 1
            if j < len(pattern) and pattern[j] in "!^":
                j += 1
            if j < len(pattern) and pattern[j] == "]":
                j += 1
            end = pattern.find("]", j)
            if end < 0:
                return "has an unclosed '['; write [[] for a literal '['"
            for low, high in _RANGE.findall(pattern[j if pattern[j - 1] != "]" else j - 1 : end]):
                if low > high:
                    return f"has a reversed range {low}-{high} that matches nothing"
            i = end + 1
            continue
        i += 1
    try:
        if file_path:
            glob.translate(pattern, flags=FILE_GLOB_FLAGS)
        else:
            fnmatch.translate(pattern, flags=NAME_GLOB_FLAGS)
    except Exception as exc:
        return f"is not a valid glob ({exc})"
    return None


# --------------------------------------------------------------------------- merging files


_T = TypeVar("_T")


def _one_setting(found: Sequence[tuple[_T, Location] | None], key: str, issues: list[SpecIssue],
                 message: str) -> tuple[_T, Location] | None:
    """The one value a top-level setting has across files; each different one is an issue there."""
    first: tuple[_T, Location] | None = None
    for item in found:
        if item is None:
            continue
        if first is None:
            first = item
        elif item[0] != first[0]:
            loc = item[1]
            issues.append(SpecIssue(loc.file, loc.line, loc.column, key, message.format(first=first[1])))
    return first


def _merge(results: Sequence[_FileResult], digest: str) -> tuple[Spec | None, list[SpecIssue]]:
    """One spec from several files: rules concatenated, one target/limits, unique rule names."""
    issues: list[SpecIssue] = []
    spec_target = _one_setting(
        [r.target for r in results], "target", issues,
        "differs from the spec target at {first}; give `target` in one file only (a rule can override it "
        "with its own `target`)")
    spec_limits = _one_setting(
        [r.limits for r in results], "limits", issues,
        "differ from the limits at {first}; give `limits` in one file only")
    names: dict[str, Location] = {}
    for result in results:
        for index, name, loc in result.rule_names:
            if name in names:
                issues.append(
                    SpecIssue(
                        loc.file,
                        loc.line,
                        loc.column,
                        f"rules[{index}].name",
                        f"duplicate rule name {name!r}: also at {names[name]}; rule names must be "
                        "unique across all spec files",
                    )
                )
            else:
                names[name] = loc
    if issues or any(r.issues for r in results) or not results:
        return None, issues
    target = spec_target[0] if spec_target else Target()
    rules = tuple(
        dataclasses.replace(rule, target=rule.target.over(target))
        for result in results
        for rule in result.rules
        if rule is not None
    )
    spec = Spec(
        version=SPEC_VERSIONS[-1],
        target=target,
        limits=spec_limits[0] if spec_limits else Limits(),
        rules=rules,
        digest=digest,
        sources=tuple(r.file for r in results),
    )
    return spec, issues
