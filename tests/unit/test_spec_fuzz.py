"""Property tests: thousands of generated spec documents, well-shaped and mutated, through the
loader and ``reconcile validate``. No exception may escape, and every issue names its file and path."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconcile.commands import validate
from reconcile.errors import SpecError
from reconcile.spec import load_spec

# derandomize: CI sees the same 2,000 documents every run, so a failure always reproduces.
SETTINGS = {"deadline": None, "derandomize": True,
            "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}
YAML_LINE_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")

words = st.sampled_from(
    [
        "a",
        "lr",
        "model",
        "val_acc",
        "x.y",
        "best/acc",
        "",
        " ",
        "{id}",
        "{config.lr:.2f}",
        "{bad",
        "*.ckpt",
        "**/*.pt",
        "[abc",
        "/abs",
        "30d",
        "2w",
        "-1d",
        "50MB",
        "1.5GiB",
        "5 parsecs",
        "2026-01-01",
        "2026-13-40",
        "finished",
        "running",
        "maximize",
        "merge",
        "replace",
        "a..b",
        "médaille",
        "\t",
        "0",
    ]
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True), words, st.text(max_size=8)
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(words, inner, max_size=3)),
    max_leaves=3,
)


def mapping(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A mapping with a random subset of ``fields``, and now and then a stray key."""
    return st.fixed_dictionaries({}, optional={**fields, "oops": st.just(1)})


tag_lists = st.lists(words, max_size=3)
target = mapping(
    {"entity": words, "project": words, "config_writes": st.sampled_from(["merge", "replace", "x"])}
)
limits = mapping(
    {
        "max_changed_runs": st.integers(-1, 5),
        "max_file_deletions": st.integers(0, 5),
        "max_bytes": st.one_of(st.integers(-1, 10**9), words),
    }
)
match = mapping(
    {
        "ids": tag_lists,
        "filters": values,
        "name": words,
        "tags": tag_lists,
        "state": st.one_of(words, tag_lists),
        "group": words,
        "job_type": words,
        "created_before": st.one_of(words, st.dates()),
        "created_after": st.one_of(words, st.datetimes()),
        "older_than": words,
        "all": st.booleans(),
    }
)
set_block = mapping(
    {
        "config": st.dictionaries(words, values, max_size=3),
        "summary": st.dictionaries(words, values, max_size=3),
        "tags": tag_lists,
        "name": words,
        "notes": words,
        "group": words,
        "job_type": words,
    }
)
key_paths = st.lists(st.one_of(words, st.lists(words, max_size=2)), max_size=3)
files = mapping(
    {
        "delete": tag_lists,
        "keep": tag_lists,
        "keep_last": st.integers(-1, 4),
        "older_than": words,
        "larger_than": st.one_of(st.integers(-1, 100), words),
        "unless_top": mapping({"metric": words, "goal": words, "count": st.integers(-1, 3)}),
        "allow_system_files": st.booleans(),
        "allow_delete_all": values,
    }
)
rule = mapping(
    {
        "name": st.sampled_from(["r1", "r2", "r3", "", "dup"]),
        "target": target,
        "match": match,
        "set": set_block,
        "add_tags": tag_lists,
        "remove_tags": tag_lists,
        "unset": mapping({"config": key_paths, "summary": key_paths}),
        "rename": mapping(
            {
                "config": st.dictionaries(words, words, max_size=2),
                "summary": st.dictionaries(words, st.one_of(words, st.lists(words)), max_size=2),
            }
        ),
        "files": files,
    }
)
documents = st.tuples(
    st.sampled_from([1, 1, 1, 2, "1"]),
    mapping({"target": target, "limits": limits}),
    st.lists(rule, max_size=4),
).map(lambda t: {"version": t[0], **t[1], "rules": t[2]})

ISSUE_LINE = re.compile(r"(?P<file>.+):(?P<line>\d+):(?P<column>\d+): (?P<path>\S.*?): (?P<message>.+)")


def check(spec: Path, text: str | bytes) -> None:
    """Validate and load ``spec``: no exception escapes; issues are well-formed; both agree."""
    spec.write_bytes(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    code = validate.run([spec], color=False)
    try:
        loaded = load_spec([spec])
    except SpecError as exc:
        issues = exc.issues
    else:
        assert code == 0
        assert loaded.sources == (str(spec),)
        return
    assert code == 1
    assert issues
    # Positions follow YAML's own line breaks (\r, \x85, \u2028 and \u2029 count too).
    decoded = text if isinstance(text, str) else text.decode("utf-8", "replace")
    lines = len(YAML_LINE_BREAK.findall(decoded)) + 1
    for issue in issues:
        assert issue.file == str(spec)
        assert issue.message
        assert 0 <= issue.line <= lines, issue
        match = ISSUE_LINE.fullmatch(str(issue))
        assert match is not None, str(issue)
        assert match["file"] == str(spec)
        assert match["path"] == (issue.path or "<document>")


@settings(max_examples=1100, **SETTINGS)
@given(doc=documents)
def test_fuzz_generated_specs_never_raise(
    tmp_path_factory: pytest.TempPathFactory, doc: dict[str, Any]
) -> None:
    """Well-shaped (and subtly wrong) documents load or give positioned issues, never a traceback."""
    spec = tmp_path_factory.getbasetemp() / "fuzz-doc.yaml"
    check(spec, yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


mutations = st.lists(
    st.tuples(
        st.sampled_from(["delete", "insert", "swap", "dup", "indent"]),
        st.integers(0, 10**6),
        st.sampled_from([*":-[]{}&*!|>'\"#%@`\t\n ,?<", "\x00", "\xff", "<<", "*a", "&a "]),
    ),
    min_size=1,
    max_size=4,
)


def mutate(text: str, ops: list[tuple[str, int, str]]) -> str:
    for op, where, char in ops:
        lines = text.split("\n")
        i = where % (len(text) + 1)
        if op == "delete":
            text = text[:i] + text[i + 1 :]
        elif op == "insert":
            text = text[:i] + char + text[i:]
        elif op == "swap" and len(lines) > 1:
            j = where % (len(lines) - 1)
            lines[j], lines[j + 1] = lines[j + 1], lines[j]
            text = "\n".join(lines)
        elif op == "dup":
            j = where % len(lines)
            text = "\n".join([*lines[: j + 1], lines[j], *lines[j + 1 :]])
        elif op == "indent":
            j = where % len(lines)
            lines[j] = "  " + lines[j]
            text = "\n".join(lines)
    return text


@settings(max_examples=900, **SETTINGS)
@given(doc=documents, ops=mutations, as_bytes=st.booleans())
def test_fuzz_mutated_specs_never_raise(
    tmp_path_factory: pytest.TempPathFactory,
    doc: dict[str, Any],
    ops: list[tuple[str, int, str]],
    as_bytes: bool,
) -> None:
    """Documents with characters deleted, inserted, lines swapped or re-indented never raise."""
    text = mutate(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), ops)
    spec = tmp_path_factory.getbasetemp() / "fuzz-mutated.yaml"
    check(spec, text.encode("latin-1", "replace") if as_bytes else text)
