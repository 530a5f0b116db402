"""Every branch of the spec schema, valid and invalid, with the exact position of each error."""

from __future__ import annotations

import textwrap
from pathlib import Path

import jsonschema
import pytest

from reconcile.spec import schema as spec_schema
from reconcile.spec import validate_paths

HEAD = "version: 1\nrules:\n  - name: r\n    match: {all: true}\n"
"""Four lines; a rule snippet appended with 4-space indent starts on line 5, column 5."""


def rule(snippet: str) -> str:
    """A one-rule spec whose rule body continues with ``snippet`` (indented under the rule)."""
    return HEAD + textwrap.indent(textwrap.dedent(snippet).strip("\n"), "    ") + "\n"


def issues(tmp_path: Path, text: str) -> list[tuple[int, int, str, str]]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(text, encoding="utf-8")
    found = validate_paths([spec])
    assert all(i.file == str(spec) for i in found)
    return [(i.line, i.column, i.path, i.message) for i in found]


VALID = {
    "minimal": "version: 1\n",
    "empty-rules": "version: 1\nrules: []\n",
    "target-full": "version: 1\ntarget: {entity: acme, project: vision, config_writes: replace}\n",
    "target-merge": "version: 1\ntarget:\n  config_writes: merge\n",
    "limits": "version: 1\nlimits: {max_changed_runs: 0, max_file_deletions: 10, max_bytes: 1.5GiB}\n",
    "limits-int-bytes": "version: 1\nlimits: {max_bytes: 1000}\n",
    "rule-target": rule("target: {project: other}\nadd_tags: [x]"),
    "match-ids": HEAD.replace("{all: true}", "{ids: [a, b]}") + "    add_tags: [x]\n",
    "match-filters": HEAD.replace("{all: true}", '{filters: {"config.model": {"$in": [a]}}}')
    + "    add_tags: [x]\n",
    "match-name": HEAD.replace("{all: true}", '{name: "baseline-[0-9]*"}') + "    add_tags: [x]\n",
    "match-tags": HEAD.replace("{all: true}", "{tags: [a, b]}") + "    add_tags: [x]\n",
    "match-state-one": HEAD.replace("{all: true}", "{state: running}") + "    add_tags: [x]\n",
    "match-state-list": HEAD.replace("{all: true}", "{state: [pending, killed, failed]}")
    + "    add_tags: [x]\n",
    "match-group-job": HEAD.replace("{all: true}", "{group: g, job_type: train}") + "    add_tags: [x]\n",
    "match-dates": HEAD.replace(
        "{all: true}", "{created_after: 2025-01-01T10:00:00Z, created_before: 2026-01-01}"
    )
    + "    add_tags: [x]\n",
    "match-quoted-date": HEAD.replace("{all: true}", '{created_before: "2026-01-01T00:00:00+02:00"}')
    + "    add_tags: [x]\n",
    "match-older": HEAD.replace("{all: true}", "{older_than: 2w}") + "    add_tags: [x]\n",
    "match-all-and-more": HEAD.replace("{all: true}", "{all: true, state: finished}") + "    add_tags: [x]\n",
    "set-everything": rule("""
        set:
          config: {a: 1, b: {c: [1, 2]}, d: {}, "e.f": null}
          summary: {best/val_acc: 0.9}
          tags: []
          name: "{config.model}-{id}"
          notes: "{{literal}} {summary.val_acc:.3f}"
          group: "{job_type}"
          job_type: train
    """),
    "add-remove-tags": rule('add_tags: ["lr-{config.lr}"]\nremove_tags: [wip]'),
    "unset": rule('unset: {config: [a, b.c, ["d.e", f]], summary: [x]}'),
    "rename": rule("rename: {config: {lr: optimizer.lr}, summary: {val_acc: [val.acc]}}"),
    "files-everything": rule("""
        files:
          delete: ["**/*.ckpt", "media/**"]
          keep: ["model-best.*", "[!.]*"]
          keep_last: 1
          older_than: 30d
          larger_than: 50MB
          unless_top: {metric: best.val_acc, goal: minimize, count: 1}
          allow_system_files: true
          allow_delete_all: false
    """),
    "files-int-size": rule("files: {delete: ['*'], larger_than: 0}"),
    "merge-key": (
        "version: 1\nrules:\n  - name: r\n    match: &m {all: true}\n    add_tags: [x]\n"
        "  - name: s\n    match: {<<: *m, state: finished}\n    add_tags: [y]\n"
    ),
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_schema_valid_documents_have_no_issues(tmp_path: Path, name: str) -> None:
    """Each valid shape of every schema branch loads without a single issue."""
    assert issues(tmp_path, VALID[name]) == []


INVALID: dict[str, tuple[str, list[tuple[int, int, str, str]]]] = {
    "unknown-top-key": (
        "version: 1\nrulez: []\n",
        [(2, 1, "rulez", "unknown key 'rulez'; did you mean 'rules'?")],
    ),
    "missing-version": ("rules: []\n", [(1, 1, "", "missing required key 'version'")]),
    "version-2": (
        "version: 2\n",
        [(1, 10, "version", "unsupported spec version 2: this build reads spec version 1")],
    ),
    "version-string": ('version: "1"\n', [(1, 10, "version", "must be an integer, not a string")]),
    "top-not-mapping": ("- a\n- b\n", [(1, 1, "", "must be a mapping, not a list")]),
    "target-typo": (
        "version: 1\ntarget: {entity: a, projekt: b}\n",
        [(2, 21, "target.projekt", "unknown key 'projekt'; did you mean 'project'?")],
    ),
    "target-config-writes": (
        "version: 1\ntarget:\n  config_writes: mrege\n",
        [(3, 18, "target.config_writes", "must be one of merge, replace, not 'mrege'")],
    ),
    "target-entity-slash": (
        "version: 1\ntarget:\n  entity: acme/vision\n",
        [(3, 11, "target.entity", "must not contain '/' or whitespace")],
    ),
    "target-empty-project": (
        'version: 1\ntarget:\n  project: ""\n',
        [(3, 12, "target.project", "must not be empty")],
    ),
    "limits-negative": (
        "version: 1\nlimits:\n  max_changed_runs: -1\n",
        [(3, 21, "limits.max_changed_runs", "must be at least 0, not -1")],
    ),
    "limits-typo": (
        "version: 1\nlimits:\n  max_runs: 1\n",
        [(3, 3, "limits.max_runs", "unknown key 'max_runs'")],
    ),
    "limits-bytes-garbage": (
        "version: 1\nlimits:\n  max_bytes: 5 parsecs\n",
        [(3, 14, "limits.max_bytes", "'5 parsecs' is not a size")],
    ),
    "limits-bytes-float": (
        "version: 1\nlimits:\n  max_bytes: 1.5\n",
        [(3, 14, "limits.max_bytes", "must be an integer or a string, not a number")],
    ),
    "rules-not-list": ("version: 1\nrules: {}\n", [(2, 8, "rules", "must be a list, not a mapping")]),
    "rule-not-mapping": (
        "version: 1\nrules:\n  - just-a-name\n",
        [(3, 5, "rules[0]", "must be a mapping, not a string")],
    ),
    "rule-no-name": (
        "version: 1\nrules:\n  - match: {all: true}\n    add_tags: [x]\n",
        [(3, 5, "rules[0]", "missing required key 'name'")],
    ),
    "rule-blank-name": (
        'version: 1\nrules:\n  - name: " r"\n    match: {all: true}\n    add_tags: [x]\n',
        [(3, 11, "rules[0].name", "must not be blank, span lines, or start or end with whitespace")],
    ),
    "rule-no-match": (
        "version: 1\nrules:\n  - name: r\n    add_tags: [x]\n",
        [(3, 5, "rules[0]", "missing required key 'match'")],
    ),
    "rule-no-action": (
        HEAD,
        [
            (
                3,
                5,
                "rules[0]",
                "the rule needs at least one of: set, add_tags, remove_tags, unset, rename, files",
            )
        ],
    ),
    "rule-typo": (
        rule("add_tag: [x]"),
        [
            (3, 5, "rules[0]", "the rule needs at least one of"),
            (5, 5, "rules[0].add_tag", "unknown key 'add_tag'; did you mean 'add_tags'?"),
        ],
    ),
    "match-empty": (
        "version: 1\nrules:\n  - name: r\n    match: {}\n    add_tags: [x]\n",
        [(4, 12, "rules[0].match", "match has no conditions; add one")],
    ),
    "match-all-false": (
        "version: 1\nrules:\n  - name: r\n    match: {all: false}\n    add_tags: [x]\n",
        [(4, 18, "rules[0].match.all", "`all` can only be true")],
    ),
    "match-typo": (
        "version: 1\nrules:\n  - name: r\n    match: {stat: finished}\n    add_tags: [x]\n",
        [(4, 13, "rules[0].match.stat", "unknown key 'stat'; did you mean 'state'?")],
    ),
    "match-state-bad": (
        "version: 1\nrules:\n  - name: r\n    match:\n      state: finishd\n    add_tags: [x]\n",
        [(5, 14, "rules[0].match.state", "must be one of running, finished")],
    ),
    "match-state-item": (
        "version: 1\nrules:\n  - name: r\n    match:\n      state: [finished, runing]\n    add_tags: [x]\n",
        [(5, 25, "rules[0].match.state[1]", "not 'runing'")],
    ),
    "match-ids-empty": (
        "version: 1\nrules:\n  - name: r\n    match:\n      ids: []\n    add_tags: [x]\n",
        [(5, 12, "rules[0].match.ids", "must not be empty")],
    ),
    "match-ids-dupe": (
        "version: 1\nrules:\n  - name: r\n    match:\n      ids: [a, b, a]\n    add_tags: [x]\n",
        [(5, 12, "rules[0].match.ids", "lists 'a' more than once")],
    ),
    "match-filters-list": (
        "version: 1\nrules:\n  - name: r\n    match:\n      filters: [a]\n    add_tags: [x]\n",
        [(5, 16, "rules[0].match.filters", "must be a mapping, not a list")],
    ),
    "match-name-glob": (
        'version: 1\nrules:\n  - name: r\n    match:\n      name: "[abc"\n    add_tags: [x]\n',
        [(5, 13, "rules[0].match.name", "has an unclosed '['")],
    ),
    "match-name-glob-huge": (
        'version: 1\nrules:\n  - name: r\n    match:\n      name: "' + "*a" * 600 + '"\n    add_tags: [x]\n',
        [(5, 13, "rules[0].match.name", "is 1200 characters long; a glob may have at most 1024")],
    ),
    "match-date-garbage": (
        "version: 1\nrules:\n  - name: r\n    match:\n      created_before: yesterday\n    add_tags: [x]\n",
        [(5, 23, "rules[0].match.created_before", "is not a date")],
    ),
    "match-date-impossible": (
        "version: 1\nrules:\n  - name: r\n    match:\n      created_after: 2026-13-01\n    add_tags: [x]\n",
        [(5, 22, "rules[0].match.created_after", "'2026-13-01' is not a valid timestamp")],
    ),
    "match-dates-empty-range": (
        "version: 1\nrules:\n  - name: r\n    match:\n      created_before: 2025-01-01\n"
        "      created_after: 2025-01-01\n    add_tags: [x]\n",
        [(6, 22, "rules[0].match.created_after", "created_after is not before")],
    ),
    "match-older-no-unit": (
        'version: 1\nrules:\n  - name: r\n    match:\n      older_than: "30"\n    add_tags: [x]\n',
        [(5, 19, "rules[0].match.older_than", "'30' has no unit")],
    ),
    "match-older-negative": (
        "version: 1\nrules:\n  - name: r\n    match:\n      older_than: -3d\n    add_tags: [x]\n",
        [(5, 19, "rules[0].match.older_than", "'-3d' is not a duration")],
    ),
    "match-older-number": (
        "version: 1\nrules:\n  - name: r\n    match:\n      older_than: 30\n    add_tags: [x]\n",
        [(5, 19, "rules[0].match.older_than", "must be a string, not a number")],
    ),
    "set-empty": (rule("set: {}"), [(5, 10, "rules[0].set", "must not be empty")]),
    "set-typo": (
        rule("set: {tag: [a]}"),
        [(5, 11, "rules[0].set.tag", "unknown key 'tag'; did you mean 'tags'?")],
    ),
    "set-config-list": (
        rule("set:\n  config: [a]"),
        [(6, 15, "rules[0].set.config", "must be a mapping, not a list")],
    ),
    "set-config-empty-key": (
        rule('set:\n  config: {"": 1}'),
        [(6, 15, "rules[0].set.config", "keys must not be empty")],
    ),
    "set-name-template": (rule('set:\n  name: "{config.}"'), [(6, 13, "rules[0].set.name", "needs a key")]),
    "set-notes-number": (
        rule("set:\n  notes: 3"),
        [(6, 14, "rules[0].set.notes", "must be a string, not a number")],
    ),
    "set-tags-template": (
        rule('set:\n  tags: ["{nope}"]'),
        [(6, 14, "rules[0].set.tags[0]", "unknown field {nope}")],
    ),
    "add-tags-empty": (rule("add_tags: []"), [(5, 15, "rules[0].add_tags", "must not be empty")]),
    "add-tags-empty-tag": (rule('add_tags: [""]'), [(5, 16, "rules[0].add_tags[0]", "must not be empty")]),
    "remove-tags-number": (
        rule("remove_tags: [3]"),
        [(5, 19, "rules[0].remove_tags[0]", "must be a string")],
    ),
    "add-remove-same": (
        rule("add_tags: [a, b]\nremove_tags: [c, b]"),
        [(6, 22, "rules[0].remove_tags[1]", "tag 'b' is both added and removed")],
    ),
    "set-tags-with-add": (
        rule("set: {tags: [a]}\nadd_tags: [b]"),
        [(5, 17, "rules[0].set.tags", "cannot be combined with add_tags")],
    ),
    "unset-empty": (rule("unset: {}"), [(5, 12, "rules[0].unset", "must not be empty")]),
    "unset-typo": (
        rule("unset: {configs: [a]}"),
        [(5, 13, "rules[0].unset.configs", "did you mean 'config'?")],
    ),
    "unset-bad-path": (
        rule('unset:\n  summary: ["a..b"]'),
        [(6, 17, "rules[0].unset.summary[0]", "has an empty part")],
    ),
    "unset-empty-list-key": (
        rule('unset:\n  summary: [["a.b", ""]]'),
        [(6, 25, "rules[0].unset.summary[0][1]", "must not be empty")],
    ),
    "unset-not-list": (rule("unset:\n  config: debug"), [(6, 15, "rules[0].unset.config", "must be a list")]),
    "set-unset-conflict": (
        rule("set:\n  config: {optimizer: {lr: 1}}\nunset:\n  config: [optimizer]"),
        [
            (
                8,
                16,
                "rules[0].unset.config[0]",
                "unset config.optimizer conflicts with set config.optimizer.lr",
            )
        ],
    ),
    "rename-self": (
        rule("rename:\n  summary: {a: a}"),
        [(6, 17, "rules[0].rename.summary.a", "renames a to itself")],
    ),
    "rename-number": (
        rule("rename:\n  summary: {a: 3}"),
        [(6, 20, "rules[0].rename.summary.a", "must be a string or a list, not a number")],
    ),
    "rename-empty": (rule("rename:\n  config: {}"), [(6, 15, "rules[0].rename.config", "must not be empty")]),
    "rename-set-conflict": (
        rule("set:\n  summary: {b: 1}\nrename:\n  summary: {a: b}"),
        [(8, 17, "rules[0].rename.summary.a", "conflicts with set summary.b")],
    ),
    "rename-unset-conflict": (
        rule("unset:\n  summary: [b]\nrename:\n  summary: {a: b}"),
        [(8, 17, "rules[0].rename.summary.a", "conflicts with unset summary.b")],
    ),
    "rename-two-to-one": (
        rule("rename:\n  summary: {a: c, b: c}"),
        [(6, 23, "rules[0].rename.summary.b", "two renames move a value to c")],
    ),
    "files-no-delete": (
        rule("files: {keep: [a]}"),
        [(5, 12, "rules[0].files", "missing required key 'delete'")],
    ),
    "files-delete-empty": (
        rule("files: {delete: []}"),
        [(5, 21, "rules[0].files.delete", "must not be empty")],
    ),
    "files-delete-absolute": (
        rule('files:\n  delete: ["/x/*.pt"]'),
        [(6, 16, "rules[0].files.delete[0]", "starts with '/'")],
    ),
    "files-keep-dotdot": (
        rule('files:\n  delete: ["*"]\n  keep: ["a/../b"]'),
        [(7, 14, "rules[0].files.keep[0]", "contains '..'")],
    ),
    "files-reversed-range": (
        rule('files:\n  delete: ["ckpt-[9-0].pt"]'),
        [(6, 16, "rules[0].files.delete[0]", "reversed range 9-0")],
    ),
    "files-keep-last-zero": (
        rule("files:\n  delete: ['*']\n  keep_last: 0"),
        [(7, 18, "rules[0].files.keep_last", "must be at least 1, not 0")],
    ),
    "files-older-garbage": (
        rule("files:\n  delete: ['*']\n  older_than: a while"),
        [(7, 19, "rules[0].files.older_than", "'a while' is not a duration")],
    ),
    "files-larger-negative": (
        rule("files:\n  delete: ['*']\n  larger_than: -5"),
        [(7, 20, "rules[0].files.larger_than", "must be at least 0, not -5")],
    ),
    "files-larger-garbage": (
        rule("files:\n  delete: ['*']\n  larger_than: -5MB"),
        [(7, 20, "rules[0].files.larger_than", "'-5MB' is not a size")],
    ),
    "files-typo": (
        rule("files:\n  delete: ['*']\n  keep_latest: 2"),
        [(7, 7, "rules[0].files.keep_latest", "did you mean 'keep_last'?")],
    ),
    "files-flag-string": (
        rule("files:\n  delete: ['*']\n  allow_system_files: sure"),
        [(7, 27, "rules[0].files.allow_system_files", "must be true or false, not a string")],
    ),
    "unless-top-missing-goal": (
        rule("files:\n  delete: ['*']\n  unless_top: {metric: acc, count: 2}"),
        [(7, 19, "rules[0].files.unless_top", "missing required key 'goal'")],
    ),
    "unless-top-goal": (
        rule("files:\n  delete: ['*']\n  unless_top: {metric: acc, goal: best, count: 2}"),
        [(7, 39, "rules[0].files.unless_top.goal", "must be one of maximize, minimize")],
    ),
    "unless-top-count": (
        rule("files:\n  delete: ['*']\n  unless_top: {metric: acc, goal: maximize, count: 0}"),
        [(7, 56, "rules[0].files.unless_top.count", "must be at least 1")],
    ),
    "unless-top-metric": (
        rule("files:\n  delete: ['*']\n  unless_top: {metric: .acc, goal: maximize, count: 1}"),
        [(7, 28, "rules[0].files.unless_top.metric", "has an empty part")],
    ),
    "duplicate-key": (
        "version: 1\nversion: 1\n",
        [(2, 1, "version", "duplicate key 'version'; the first is on line 1")],
    ),
    "duplicate-rule-name": (
        rule("add_tags: [x]") + "  - name: r\n    match: {all: true}\n    add_tags: [y]\n",
        [(6, 11, "rules[1].name", "duplicate rule name 'r': also at ")],
    ),
    "binary-tag": (
        "version: 1\nrules: !!binary aGVsbG8=\n",
        [(2, 8, "rules", "YAML tag tag:yaml.org,2002:binary is not supported")],
    ),
    "complex-key": ("version: 1\n? [a, b]\n: 1\n", [(2, 3, "", "a key must be plain text")]),
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_schema_invalid_documents_report_exact_positions(tmp_path: Path, name: str) -> None:
    """Each invalid shape yields exactly the expected issues at their exact line and column."""
    text, expected = INVALID[name]
    found = issues(tmp_path, text)
    assert len(found) == len(expected), found
    for (line, column, path, message), want in zip(found, expected, strict=True):
        assert (line, column, path) == want[:3], (found, want)
        assert want[3] in message, (message, want)


def test_schema_is_valid_draft_2020_12_with_help_on_every_property() -> None:
    """The schema is a valid 2020-12 schema; every property has a title and a description."""
    schema = spec_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"

    def walk(node: object, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False, where
            for name, prop in node.get("properties", {}).items():
                assert prop.get("title"), f"{where}.{name}"
                assert prop.get("description"), f"{where}.{name}"
            for key, value in node.items():
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    walk(schema, "$")
