"""The spec loader: models built from YAML, merging several files, and hostile input."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from reconcile.errors import ReconcileError, SpecError
from reconcile.models import ConfigWrites, Goal, Limits, Target
from reconcile.spec import MAX_DEPTH, inspect_paths, load_spec, render_path, validate_paths
from reconcile.spec import validation as spec_validation

TESTDATA = Path(__file__).resolve().parent.parent / "testdata" / "specs"


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    return path


def only_issue(paths: list[Path]) -> tuple[str, int, int, str, str]:
    found = validate_paths(paths)
    assert len(found) == 1, found
    i = found[0]
    return (i.file, i.line, i.column, i.path, i.message)


# --------------------------------------------------------------------------- models


def test_load_spec_builds_every_model_from_the_contract_example() -> None:
    """The contract's full example loads into frozen models with parsed values."""
    spec = load_spec([TESTDATA / "full.yaml"])
    assert spec.version == 1
    assert spec.target == Target("acme", "vision", None)
    assert spec.limits == Limits(max_changed_runs=500, max_file_deletions=10000, max_bytes=5 * 2**30)
    (rule,) = spec.rules
    assert rule.name == "label-resnet-baselines"
    assert (rule.location.line, rule.location.column) == (7, 5)
    assert rule.target == Target("acme", "vision-archive", None)
    m = rule.match
    assert m.ids == ("abc123", "def456")
    assert m.filters == {"config.model": "resnet50"}
    assert m.name == "baseline-*"
    assert m.tags == ("sweep-3",)
    assert m.state == ("finished", "crashed")
    assert (m.group, m.job_type) == ("g1", "train")
    assert m.created_before == datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert m.created_after == datetime(2025, 6, 1, 10, 30, tzinfo=timezone.utc)
    assert m.older_than == timedelta(days=90)
    assert m.all is True
    assert rule.set.config == {("dataset",): "cifar10", ("optimizer", "lr"): 0.1, ("empty",): {}, ("a.b",): 1}
    assert rule.set.summary == {("best/val_acc",): 0.93}
    assert rule.set.name == "{config.model}-lr{config.lr}"
    assert (rule.set.notes, rule.set.group, rule.set.job_type) == ("...", "baselines", "train")
    assert rule.add_tags == ("baseline", "lr-{config.lr}")
    assert rule.remove_tags == ("wip",)
    assert rule.unset_config == (("debug",), ("optimizer", "momentum"), ("x.y", "z"))
    assert rule.unset_summary == (("tmp_metric",),)
    assert rule.rename_config == ((("lr",), ("learning_rate",)),)
    assert rule.rename_summary == ((("val_acc",), ("val", "accuracy")),)
    files = rule.files
    assert files is not None
    assert files.delete == ("*.ckpt", "media/images/**")
    assert files.keep == ("model-best.*",)
    assert files.keep_last == 3
    assert files.older_than == timedelta(days=30)
    assert files.larger_than == 50_000_000
    assert files.unless_top is not None
    assert (files.unless_top.metric, files.unless_top.goal, files.unless_top.count) == (
        ("val_acc",),
        Goal.MAXIMIZE,
        3,
    )
    assert (files.allow_system_files, files.allow_delete_all) == (False, False)
    assert spec.sources == (str(TESTDATA / "full.yaml"),)


def test_load_spec_reads_offsets_and_naive_times_as_utc(tmp_path: Path) -> None:
    """A time with an offset is converted to UTC; one without an offset is taken as UTC."""
    spec = load_spec(
        [
            write(
                tmp_path / "s.yaml",
                (
                    "version: 1\nrules:\n  - name: r\n    match:\n"
                    "      created_after: 2026-01-01T12:00:00+02:00\n"
                    "      created_before: '2026-02-01 08:00:00'\n    add_tags: [x]\n"
                ),
            )
        ]
    )
    m = spec.rules[0].match
    assert m.created_after == datetime(2026, 1, 1, 10, tzinfo=timezone.utc)
    assert m.created_before == datetime(2026, 2, 1, 8, tzinfo=timezone.utc)
    assert m.created_after.tzinfo is timezone.utc


def test_load_spec_defaults_when_optional_parts_are_missing(tmp_path: Path) -> None:
    """No target, no limits, a bare rule: everything optional is None/empty."""
    spec = load_spec(
        [
            write(
                tmp_path / "s.yaml",
                "version: 1\nrules:\n  - name: r\n    match: {state: killed}\n    remove_tags: [x]\n",
            )
        ]
    )
    assert spec.target == Target()
    assert spec.limits == Limits()
    rule = spec.rules[0]
    assert rule.match.state == ("killed",)
    assert rule.match.all is False
    assert rule.set.config == {}
    assert rule.set.tags is None
    assert rule.files is None
    assert rule.target == Target()


def test_load_spec_target_config_writes_and_rule_override(tmp_path: Path) -> None:
    """config_writes is an enum; a rule's target is merged over the spec's target."""
    spec = load_spec(
        [
            write(
                tmp_path / "s.yaml",
                (
                    "version: 1\ntarget: {entity: e, project: p, config_writes: replace}\nrules:\n"
                    "  - name: r\n    target: {project: q, config_writes: merge}\n"
                    "    match: {all: true}\n    add_tags: [x]\n"
                ),
            )
        ]
    )
    assert spec.target.config_writes is ConfigWrites.REPLACE
    assert spec.rules[0].target == Target("e", "q", ConfigWrites.MERGE)


def test_load_spec_digest_is_sha256_of_file_bytes_in_load_order(tmp_path: Path) -> None:
    """The digest hashes the files' bytes in load order (directory members sorted by name)."""
    a = write(
        tmp_path / "d" / "b.yaml",
        "version: 1\nrules:\n  - name: b\n    match: {all: true}\n    add_tags: [b]\n",
    )
    b = write(
        tmp_path / "d" / "a.yml",
        "version: 1\nrules:\n  - name: a\n    match: {all: true}\n    add_tags: [a]\n",
    )
    write(tmp_path / "d" / "notes.txt", "not a spec")
    spec = load_spec([tmp_path / "d"])
    assert [r.name for r in spec.rules] == ["a", "b"]
    assert spec.sources == (str(b), str(a))
    assert spec.digest == "sha256:" + hashlib.sha256(b.read_bytes() + a.read_bytes()).hexdigest()


def test_load_spec_raises_spec_error_with_every_issue_sorted(tmp_path: Path) -> None:
    """SpecError carries all issues of all files, sorted by file and position."""
    one = write(tmp_path / "1.yaml", "version: 1\nfoo: 1\nbar: 2\n")
    two = write(tmp_path / "2.yaml", "version: 3\n")
    with pytest.raises(SpecError) as info:
        load_spec([two, one])
    assert [(i.file, i.line, i.path) for i in info.value.issues] == [
        (str(one), 2, "foo"),
        (str(one), 3, "bar"),
        (str(two), 1, "version"),
    ]


def test_render_path_quotes_keys_that_are_not_plain() -> None:
    """JSON paths read like rules[2].set.config; keys with dots or spaces are quoted."""
    assert render_path(("rules", 2, "set", "config")) == "rules[2].set.config"
    assert render_path(("rules", 0, "set", "summary", "best/val_acc")) == "rules[0].set.summary.best/val_acc"
    assert render_path(("filters", "config.model")) == 'filters["config.model"]'
    assert render_path(()) == ""


# --------------------------------------------------------------------------- merging files


def test_merge_concatenates_rules_and_applies_the_one_target(tmp_path: Path) -> None:
    """A target given in one file is the default for rules in the other files."""
    spec = load_spec([TESTDATA / "gitops"])
    assert spec.target == Target("acme", "vision", ConfigWrites.REPLACE)
    assert [r.name for r in spec.rules] == ["tags", "retention"]
    assert all(r.target == spec.target for r in spec.rules)
    assert spec.limits == Limits(max_changed_runs=10)


def test_merge_duplicate_rule_names_across_files_name_both_places() -> None:
    """A rule name used in two files is an error at the second, naming the first."""
    first = TESTDATA / "duplicates" / "a.yaml"
    second = TESTDATA / "duplicates" / "b.yaml"
    assert only_issue([first, second]) == (
        str(second),
        6,
        11,
        "rules[1].name",
        f"duplicate rule name 'shared': also at {first}:3:11; "
        "rule and import names must be unique across all spec files",
    )


def test_merge_equal_targets_are_fine_but_different_ones_are_an_error(tmp_path: Path) -> None:
    """target (and limits) may repeat identically; a different one is an error naming the first."""
    a = write(tmp_path / "a.yaml", "version: 1\ntarget: {entity: e}\nlimits: {max_bytes: 1KB}\n")
    b = write(tmp_path / "b.yaml", "version: 1\ntarget: {entity: e}\nlimits: {max_bytes: 1000}\n")
    c = write(tmp_path / "c.yaml", "version: 1\ntarget: {entity: f}\n")
    assert validate_paths([a, b]) == []
    assert only_issue([a, c]) == (
        str(c),
        2,
        9,
        "target",
        f"differs from the spec target at {a}:2:9; give "
        "`target` in one file only (a rule can override it with its own `target`)",
    )


def test_merge_reads_a_file_named_twice_once(tmp_path: Path) -> None:
    """-f a.yaml -f DIR containing a.yaml does not duplicate its rules."""
    a = write(
        tmp_path / "a.yaml", "version: 1\nrules:\n  - name: r\n    match: {all: true}\n    add_tags: [x]\n"
    )
    spec = load_spec([a, tmp_path])
    assert [r.name for r in spec.rules] == ["r"]


def test_missing_paths_and_empty_directories_are_issues(tmp_path: Path) -> None:
    """A path that does not exist, an empty directory, or no path at all is an issue, not a crash."""
    (tmp_path / "empty").mkdir()
    found = validate_paths([tmp_path / "nope.yaml", tmp_path / "empty"])
    assert [(i.file, i.line, i.message) for i in found] == [
        (str(tmp_path / "empty"), 0, "the directory holds no .yaml or .yml files"),
        (str(tmp_path / "nope.yaml"), 0, "no such file or directory; check the path"),
    ]
    assert validate_paths([])[0].message.startswith("no spec files given")


def test_inspect_paths_reports_rule_counts_per_file(tmp_path: Path) -> None:
    """Per-file reports carry the number of rules and that file's issues."""
    good = write(
        tmp_path / "good.yaml", "version: 1\nrules:\n  - name: r\n    match: {all: true}\n    add_tags: [x]\n"
    )
    bad = write(tmp_path / "bad.yaml", "version: 1\nrules: []\noops: 1\n")
    result = inspect_paths([good, bad])
    assert result.spec is None
    assert [(r.file, r.rules, len(r.issues)) for r in result.files] == [(str(good), 1, 0), (str(bad), 0, 1)]


def test_missing_schema_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without the schema file, loading says where it looked and how to fix it."""
    monkeypatch.setattr(spec_validation, "SCHEMA_FILE", "missing.json")
    spec_validation.validator.cache_clear()
    try:
        with pytest.raises(ReconcileError, match=r"missing\.json in the package reconcile\.schemas.*install"):
            load_spec([write(tmp_path / "s.yaml", "version: 1\n")])
    finally:
        spec_validation.validator.cache_clear()


# --------------------------------------------------------------------------- hostile input


HOSTILE: dict[str, tuple[bytes, int, int, str]] = {
    "empty": (b"", 1, 1, "empty spec"),
    "only-comments": (b"# nothing here\n", 1, 1, "empty spec"),
    "null-document": (b"---\n~\n", 1, 1, "empty spec"),
    "non-utf8": (b"version: 1\nrules: \xff\n", 2, 8, "not UTF-8 text (byte 0xff)"),
    "binary-garbage": (bytes(range(256)) * 4, 2, 118, "not UTF-8 text (byte 0x80)"),  # 0x0a is byte 10
    "control-characters": (b"version: 1\nname: \x01\x02\n", 2, 7, "invalid YAML"),
    "syntax-error": (b"version: 1\nrules: [a, b\n", 3, 1, "invalid YAML"),
    "bad-indent": (b"version: 1\n  rules: []\n", 2, 8, "invalid YAML"),
    # libyaml places this error past the end of a last line with no line break: the end of that line
    "error-at-end-of-unterminated-line": (b"ersion: 1\n\nrules []", 3, 9, "invalid YAML"),
    "two-documents": (b"version: 1\n---\nversion: 1\n", 2, 1, "a spec file holds one YAML document"),
    "scalar-top": (b"hello\n", 1, 1, "must be a mapping, not a string"),
    "unknown-alias": (b"version: 1\nrules: *nope\n", 2, 8, "unknown alias *nope"),
    "recursive-alias": (b"version: 1\nrules: &r [*r]\n", 2, 8, "refers to a node that contains it"),
    "recursive-merge": (b"version: 1\nx: &m {<<: *m}\n", 2, 4, "merge refers to a mapping that contains it"),
    "deep-flow": (
        b"[" * (MAX_DEPTH + 5) + b"]" * (MAX_DEPTH + 5),
        1,
        MAX_DEPTH + 1,
        f"nested more than {MAX_DEPTH} levels",
    ),
    "deep-block": (
        b"".join(b"  " * i + b"k:\n" for i in range(MAX_DEPTH + 5)),
        MAX_DEPTH + 1,
        2 * MAX_DEPTH + 1,
        f"nested more than {MAX_DEPTH} levels",
    ),
    "custom-tag": (b"version: !!python/object:os.system 1\n", 1, 10, "YAML tag"),
    "huge-int": (b"version: " + b"9" * 5000 + b"\n", 1, 10, "is not a valid int"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_input_is_an_issue_never_an_exception(tmp_path: Path, name: str) -> None:
    """Garbage, bombs and oddities give one positioned issue and no traceback."""
    data, line, column, message = HOSTILE[name]
    path = write(tmp_path / "s.yaml", data)
    found = validate_paths([path])
    assert found, "expected an issue"
    assert (found[0].file, found[0].line, found[0].column) == (str(path), line, column), found
    assert message in found[0].message
    with pytest.raises(SpecError):
        load_spec([path])


@pytest.mark.parametrize("opener", [b"[", b"{", b"- "])
def test_hostile_nesting_far_past_any_parser_limit_is_one_issue(tmp_path: Path, opener: bytes) -> None:
    """100,000 levels: whichever layer refuses first (ours at MAX_DEPTH, or the YAML parser's own
    limit, which differs between PyYAML releases), the result is one issue on that file's first line,
    never a RecursionError or a traceback, and load_spec refuses the spec."""
    closer = {b"[": b"]", b"{": b"}", b"- ": b""}[opener]
    path = write(tmp_path / "s.yaml", opener * 100_000 + closer * 100_000 + b"\n")
    found = validate_paths([path])
    assert [(issue.file, issue.line) for issue in found] == [(str(path), 1)], found
    assert 1 <= found[0].column <= 2 * 100_000, found
    with pytest.raises(SpecError):
        load_spec([path])


def test_hostile_alias_bomb_is_refused(tmp_path: Path) -> None:
    """A billion-laughs document is refused with a clear message instead of being expanded."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    path = write(tmp_path / "bomb.yaml", "\n".join(lines) + "\n")
    (issue,) = validate_paths([path])
    assert "YAML aliases expand this document beyond" in issue.message
    assert issue.path.startswith("a")
    assert issue.path.count("[") >= 3  # deep inside the expansion


def test_hostile_aliases_within_budget_are_expanded(tmp_path: Path) -> None:
    """Ordinary anchors and merge keys (shared match blocks) still work."""
    spec = load_spec(
        [
            write(
                tmp_path / "s.yaml",
                (
                    "version: 1\nrules:\n  - name: a\n    match: &m {state: finished, tags: [t]}\n"
                    "    add_tags: &tags [x]\n"
                    "  - name: b\n    match: {<<: *m, state: crashed}\n    add_tags: *tags\n"
                ),
            )
        ]
    )
    assert spec.rules[1].match.state == ("crashed",)
    assert spec.rules[1].match.tags == ("t",)
    assert spec.rules[1].add_tags == ("x",)


def test_hostile_ten_megabyte_string_gives_a_short_message(tmp_path: Path) -> None:
    """A 10 MB value is checked without a traceback and the message stays short."""
    path = write(
        tmp_path / "s.yaml",
        "version: 1\nrules:\n  - name: r\n    match: {all: true}\n"
        "    set: {name: '{" + "x" * 10_000_000 + "'}\n",
    )
    (issue,) = validate_paths([path])
    assert (issue.line, issue.column, issue.path) == (5, 17, "rules[0].set.name")
    assert len(issue.message) <= 400


def test_hostile_yaml_11_keys_stay_text(tmp_path: Path) -> None:
    """Keys such as `on`/`yes`/`1` are read as written, not as booleans or numbers."""
    spec = load_spec(
        [
            write(
                tmp_path / "s.yaml",
                "version: 1\nrules:\n  - name: r\n    match: {all: true}\n"
                "    set: {summary: {on: 1, 2: two, null: 3}}\n",
            )
        ]
    )
    assert spec.rules[0].set.summary == {("on",): 1, ("2",): "two", ("null",): 3}
