"""One YAML document as plain data, with the position of every value and key.

The document is composed from libyaml's event stream with an explicit stack, not
recursion (libyaml's own composer crashes the process on very deep nesting); nesting is
bounded by ``MAX_DEPTH`` and aliases may expand to at most ``MAX_ALIAS_EXPANSION`` values
beyond what the file itself holds (a "billion laughs" file is refused).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import yaml

from reconcile.errors import SpecIssue

MAX_DEPTH = 100
"""Deepest nesting accepted; real specs (even exported configs) stay far below it."""

MAX_ALIAS_EXPANSION = 100_000
"""How many values YAML aliases may add on top of the nodes written in the file."""

JsonPath = tuple[str | int, ...]
Pos = tuple[int, int]  # 1-based line, column

_Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_TAG}{t}" for t in ("null", "bool", "int", "float", "str", "timestamp")}
_MERGE_TAG = f"{_TAG}merge"
# The line breaks YAML counts (a position's line is counted by these).
_YAML_LINE_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")


class Abort(Exception):
    """Stops reading a file that cannot be read further."""

    def __init__(self, issue: SpecIssue) -> None:
        super().__init__(issue.message)
        self.issue = issue


def _pos(mark: Any) -> Pos:
    return (mark.line + 1, mark.column + 1)


def _within(text: str, pos: Pos) -> Pos:
    """``pos``, or the end of ``text`` if libyaml placed it past the last line (at the end of the stream,
    it counts a line break the text does not have)."""
    lines = _YAML_LINE_BREAK.split(text)
    if pos[0] <= len(lines):
        return pos
    return (len(lines), len(lines[-1]) + 1)


def _text_pos(text: str, index: int) -> Pos:
    line = text.count("\n", 0, index) + 1
    return (line, index - (text.rfind("\n", 0, index) + 1) + 1)


@dataclass
class _Frame:
    node: yaml.Node
    key: yaml.Node | None = None


class Document:
    """One YAML document as plain data, with the position of every value and key."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.data: Any = None
        self.marks: dict[JsonPath, Pos] = {}
        self.key_marks: dict[JsonPath, Pos] = {}
        self.issues: list[SpecIssue] = []
        self.bad_paths: set[JsonPath] = set()  # already reported while reading; schema errors there are noise
        self._budget = 0
        self._active: set[int] = set()
        self._constructor = yaml.constructor.SafeConstructor()

    @classmethod
    def parse(cls, file: str, text: str) -> Document:
        """Compose and convert ``text``; raises ``Abort`` when it cannot be read at all."""
        doc = cls(file)
        root, nodes = doc._compose(text)
        if root is None or (isinstance(root, yaml.ScalarNode) and root.tag == f"{_TAG}null"):
            raise Abort(SpecIssue(file, 1, 1, "", "empty spec: write at least `version: 1` and some rules"))
        doc._budget = nodes + MAX_ALIAS_EXPANSION
        doc.data = doc._convert(root, (), 0)
        return doc

    def issue(self, node_or_pos: yaml.Node | Pos, path: JsonPath, message: str) -> None:
        pos = node_or_pos if isinstance(node_or_pos, tuple) else _pos(node_or_pos.start_mark)
        self.issues.append(SpecIssue(self.file, pos[0], pos[1], render_path(path), message))
        self.bad_paths.add(path)

    def _abort(self, pos: Pos, path: JsonPath, message: str) -> Abort:
        return Abort(SpecIssue(self.file, pos[0], pos[1], render_path(path), message))

    def _compose(self, text: str) -> tuple[yaml.Node | None, int]:  # noqa: PLR0912, PLR0915 - one event loop reads best
        """Build the node graph from libyaml's events with an explicit stack (no recursion)."""
        resolver: Any = yaml.resolver.Resolver()  # untyped in the stubs
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
                    # libyaml's marks or PyYAML's: the stubs tell them apart, the nodes take either.
                    start: Any = event.start_mark
                    end: Any = event.end_mark
                    if isinstance(event, yaml.ScalarEvent):
                        if tag is None or tag == "!":
                            tag = resolver.resolve(yaml.ScalarNode, event.value, event.implicit)
                        node = yaml.ScalarNode(tag, event.value, start, end, event.style)
                    else:
                        kind = (
                            yaml.SequenceNode
                            if isinstance(event, yaml.SequenceStartEvent)
                            else yaml.MappingNode
                        )
                        if tag is None or tag == "!":
                            tag = resolver.resolve(kind, None, event.implicit)
                        node = kind(tag, [], start, end, event.flow_style)
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
            pos = _within(text, _pos(mark)) if mark is not None else (0, 0)
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
        self, node: yaml.Node, path: JsonPath, depth: int
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


def short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
