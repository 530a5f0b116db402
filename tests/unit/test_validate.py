"""``reconcile validate``: offline checks through the real CLI, exit codes and output lines."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconcile.cli import main
from reconcile.commands import validate

GOOD = "version: 1\nrules:\n  - name: r\n    match: {all: true}\n    add_tags: [x]\n"


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["validate", *args])
    return result.exit_code, result.stdout, result.stderr


def test_validate_valid_files_exit_0_with_one_line_each(tmp_path: Path) -> None:
    """Each valid file gets `<file>: valid (N rules)` and the exit code is 0."""
    one = tmp_path / "one.yaml"
    one.write_text(GOOD)
    none = tmp_path / "none.yaml"
    none.write_text("version: 1\n")
    code, out, err = invoke(str(one), str(none))
    assert code == 0, err
    assert out.splitlines() == [f"{one}: valid (1 rule)", f"{none}: valid (0 rules)"]
    assert err == ""


def test_validate_errors_exit_1_with_file_line_col_path_message(tmp_path: Path) -> None:
    """Problems are `file:line:col: path: message` lines on stderr, and the exit code is 1."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - name: r\n    match: {all: true}\n    add_tgs: [x]\n")
    code, out, err = invoke(str(bad))
    assert code == 1
    assert out == ""
    lines = err.splitlines()
    assert lines[0] == (
        f"{bad}:3:5: rules[0]: the rule needs at least one of: set, add_tags, remove_tags, unset, "
        "rename, files, artifacts"
    )
    assert lines[1] == f"{bad}:5:5: rules[0].add_tgs: unknown key 'add_tgs'; did you mean 'add_tags'?"
    assert re.fullmatch(r"2 problems in 1 file;.*", lines[2])
    assert "Traceback" not in err


def test_validate_checks_each_argument_as_its_own_spec(tmp_path: Path) -> None:
    """Two independent specs with the same rule name are both valid; a directory is one merged spec."""
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text(GOOD)
    code, out, _ = invoke(str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml"))
    assert code == 0
    assert len(out.splitlines()) == 2
    code, _, err = invoke(str(tmp_path))
    assert code == 1
    assert f"{tmp_path / 'b.yaml'}:3:11: rules[0].name: duplicate rule name 'r'" in err


def test_validate_reports_good_files_even_when_others_fail(tmp_path: Path) -> None:
    """A missing file fails the run while the valid ones are still listed."""
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    code, out, err = invoke(str(good), str(tmp_path / "missing.yaml"))
    assert code == 1
    assert out.splitlines() == [f"{good}: valid (1 rule)"]
    assert f"{tmp_path / 'missing.yaml'}:0:0: <document>: no such file or directory" in err


def test_validate_needs_no_credentials_and_no_network(tmp_path: Path) -> None:
    """validate runs in a fresh interpreter without importing wandb (so no key and no network)."""
    spec = tmp_path / "s.yaml"
    spec.write_text(GOOD)
    code = (
        "import sys; from pathlib import Path; from reconcile.commands import validate; "
        f"rc = validate.run([Path({str(spec)!r})], color=False); "
        "print(rc, any(m == 'wandb' or m.startswith('wandb.') for m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.splitlines()[-1] == "0 False"


def test_validate_color_marks_valid_in_green(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With color on, the status word is green and problems are red; without it, the output is plain."""
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 9\n")
    assert validate.run([good, bad], color=True) == 1
    captured = capsys.readouterr()
    assert captured.out == f"{good}: \x1b[32mvalid\x1b[0m (1 rule)\n"
    assert captured.err.startswith(f"\x1b[31m{bad}:1:10: version: unsupported spec version 9")
    assert validate.run([good], color=False) == 0
    assert capsys.readouterr().out == f"{good}: valid (1 rule)\n"


def test_validate_accepts_preempting_and_preempted_states(tmp_path: Path) -> None:
    """The client's Run.state lists preempting and preempted; a rule may match them."""
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "version: 1\ntarget: {entity: e, project: p}\nrules:\n"
        "  - name: requeue\n    match: {state: [preempting, preempted]}\n    add_tags: [preempted]\n"
    )
    result = CliRunner().invoke(main, ["validate", str(spec)])
    assert result.exit_code == 0, result.output


FILTERS = """\
version: 1
rules:
  - name: low-lr
    match:
      filters: {"config.lr": {"$gtt": 0.1}}
    add_tags: [low]
  - name: nested
    match:
      filters:
        $or:
          - {"tags": {"$in": "a"}}
          - {"state": {"$exists": 1}}
        $not: {"state": "running"}
    add_tags: [n]
"""


def test_validate_checks_filter_operators_offline_with_line_and_column(tmp_path: Path) -> None:
    """An operator W&B does not document, or a malformed operand, is named at its line and column."""
    spec = tmp_path / "filters.yaml"
    spec.write_text(FILTERS)
    code, _, err = invoke(str(spec))
    assert code == 1
    lines = err.splitlines()
    assert lines[0].startswith(f"{spec}:5:31: rules[0].match.filters[\"config.lr\"].$gtt: '$gtt' is not a "
                               "filter operator W&B documents on a key; did you mean '$gt'?")
    assert lines[1] == f"{spec}:11:23: rules[1].match.filters.$or[0].tags.$in: $in takes a list of values"
    assert lines[2] == (f"{spec}:12:24: rules[1].match.filters.$or[1].state.$exists: $exists takes true "
                        "or false")
    assert lines[3].startswith(f"{spec}:13:9: rules[1].match.filters.$not: '$not' is not a filter operator")
    assert lines[4].startswith("4 problems in 1 file")


@pytest.mark.parametrize(("condition", "at", "said"), [
    ('{"tags": {"$gt": "a"}}', 'tags.$gt', "tags are compared only by $eq, $ne, $in, $nin, $regex"),
    ('{"config.lr": {}}', '"config.lr"', "an empty condition"),
    ('{"config.opt": {"name": "adam"}}', '"config.opt"', "a whole sub-document"),
    ('{"config.lr": {"$gt": 1, "x": 2}}', '"config.lr"', "mixes operators with plain keys"),
    ('{"config.lr": {"$lt": [1]}}', '["config.lr"].$lt', "$lt takes a number or a string"),
    ('{"createdAt": {"$gt": 5}}', 'createdAt.$gt', "an ISO-8601 date or time"),
    ('{"createdAt": "yesterday"}', 'createdAt', "an ISO-8601 date or time"),
    ('{"state": ["finished"]}', 'state', "state takes one string"),
])
def test_validate_refuses_what_wandb_refuses_though_reconcile_could_evaluate_it(
        condition: str, at: str, said: str, tmp_path: Path) -> None:
    """Conditions W&B refuses (as the emulator does), which reconcile's own check would evaluate to
    something (tags ordered as strings, {} matching nothing): refused offline at their line and column,
    so neither validate nor plan (whose read may send no filter at all) accepts them."""
    spec = tmp_path / "f.yaml"
    spec.write_text(f"version: 1\nrules:\n  - name: r\n    match:\n      filters: {condition}\n"
                    "    add_tags: [x]\n")
    code, _, err = invoke(str(spec))
    assert code == 1, err
    first = err.splitlines()[0]
    assert re.match(rf"{re.escape(str(spec))}:5:\d+: rules\[0\]\.match\.filters", first), first
    assert at in first, first
    assert said in first, first


@pytest.mark.parametrize("condition", [
    '{"$and": [{"state": "finished"}, {"$or": [{"tags": "a"}, {"$nor": [{"group": "g"}]}]}]}',
    '{"config.lr": {"$gt": 0.1, "$gte": 0, "$lt": 1, "$lte": 1, "$ne": 0.5, "$eq": 0.2}}',
    '{"tags": {"$in": ["a"], "$nin": ["b"]}, "summary_metrics.acc": {"$exists": true}}',
    '{"displayName": {"$regex": "^resnet"}, "createdAt": {"$gt": "2026-01-01T00:00:00"}}',
])
def test_validate_accepts_every_operator_wandb_documents(condition: str, tmp_path: Path) -> None:
    """$and $or $nor $eq $ne $gt $gte $lt $lte $in $nin $exists $regex all pass."""
    spec = tmp_path / "ok.yaml"
    spec.write_text(f"version: 1\nrules:\n  - name: r\n    match:\n      filters: {condition}\n"
                    "    add_tags: [x]\n")
    code, _, err = invoke(str(spec))
    assert code == 0, err
