"""The read side: which projects and runs a plan reads, with files only where a file rule needs them."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from reconcile.backend.memory import MemoryBackend
from reconcile.errors import PlanError
from reconcile.reader import RunReader, reads
from reconcile.spec import load_spec
from tests.unit.apply_helpers import live_file, live_run

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)

SPEC = """
version: 1
target: {entity: acme, project: vision}
rules:
  - name: prune
    match: {tags: [wip]}
    files: {delete: ["*.pt"]}
  - name: audit
    target: {project: audio}
    match: {all: true}
    add_tags: [audited]
"""


def spec(tmp_path: Path, text: str = SPEC) -> object:
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    return load_spec([path])


def backend() -> MemoryBackend:
    files = (live_file("f1", "a.pt"), live_file("f2", "b.txt"))
    return MemoryBackend([
        live_run("r1", files=files, tags=("wip",)),
        live_run("r2", files=files, tags=("done",)),
        live_run("s1", project="audio", storage_id="sid-s1", files=files),
    ])


def test_reads_one_per_project_with_files_only_where_a_file_rule_is(tmp_path: Path) -> None:
    got = {(r.entity, r.project): r for r in reads(spec(tmp_path), [], NOW)}  # type: ignore[arg-type]
    assert got[("acme", "vision")].with_files and not got[("acme", "audio")].with_files
    assert got[("acme", "vision")].filters == {"tags": {"$in": ["wip"]}}
    assert got[("acme", "audio")].filters is None


def test_runs_come_with_files_from_the_listing_and_none_where_no_file_rule_applies(tmp_path: Path) -> None:
    source = backend()
    runs = {r.id: r for r in RunReader(spec(tmp_path), [], NOW).runs(source)}  # type: ignore[arg-type]
    assert [f.name for f in runs["r1"].files or ()] == ["a.pt", "b.txt"]
    assert runs["s1"].files is None
    assert "r2" not in runs  # the server filter (tags) left it out
    # Files came inside the listing: no per-run file request.
    assert [name for name, _ in source.calls] == ["iter_runs", "iter_runs"]


def test_target_restricts_the_read_and_a_missing_target_is_an_error(tmp_path: Path) -> None:
    reader = RunReader(spec(tmp_path), ["acme/vision/r1"], NOW)  # type: ignore[arg-type]
    assert [r.project for r in reader.reads] == ["vision"]
    assert reader.reads[0].filters == {"$and": [{"tags": {"$in": ["wip"]}}, {"name": {"$in": ["r1"]}}]}
    assert [r.id for r in reader.runs(backend())] == ["r1"]
    missing = RunReader(spec(tmp_path), ["acme/vision/nope"], NOW)  # type: ignore[arg-type]
    with pytest.raises(PlanError, match="acme/vision/nope"):
        list(missing.runs(backend()))


RANKED = SPEC.replace('files: {delete: ["*.pt"]}',
                      'files: {delete: ["*.pt"], unless_top: {metric: acc, goal: maximize, count: 1}}')


def test_target_a_project_reads_every_run_of_it(tmp_path: Path) -> None:
    """--target ENTITY/PROJECT plans that project's runs (its rules' filter, no id restriction) only."""
    reader = RunReader(spec(tmp_path), ["acme/audio"], NOW)  # type: ignore[arg-type]
    assert [(r.project, r.filters, r.run_ids) for r in reader.reads] == [("audio", None, None)]
    assert [r.id for r in reader.runs(backend())] == ["s1"]


def test_target_a_project_no_rule_targets_or_a_malformed_target_is_an_error(tmp_path: Path) -> None:
    """A project no rule targets names the spec's projects; a target of one or four parts is refused."""
    with pytest.raises(PlanError, match=r"acme/elsewhere: no rule of the spec targets that project "
                                        r"\(the spec's projects: acme/audio, acme/vision\)"):
        RunReader(spec(tmp_path), ["acme/elsewhere"], NOW)  # type: ignore[arg-type]
    for bad in ("acme", "acme/vision/r1/x", "acme//r1"):
        with pytest.raises(PlanError, match="is not ENTITY/PROJECT/RUN_ID or ENTITY/PROJECT"):
            RunReader(spec(tmp_path), [bad], NOW)  # type: ignore[arg-type]


def test_target_with_a_ranking_rule_also_reads_the_rest_of_its_match_without_files(tmp_path: Path) -> None:
    """unless_top ranks the rule's whole match: after the targeted run (with files), the others it
    matches are read once more without files, for the planner to rank; only the target counts as found."""
    runs = [live_run("r1", files=(live_file("f1", "a.pt"),), tags=("wip",)),
            live_run("r2", files=(live_file("f2", "b.pt"),), tags=("wip",))]
    reader = RunReader(spec(tmp_path, RANKED), ["acme/vision/r1"], NOW)  # type: ignore[arg-type]
    assert [(r.filters, r.context, r.with_files) for r in reader.reads] == [
        ({"$and": [{"tags": {"$in": ["wip"]}}, {"name": {"$in": ["r1"]}}]}, False, True),
        ({"tags": {"$in": ["wip"]}}, True, False),
    ]
    got = [(r.id, r.files is not None) for r in reader.runs(MemoryBackend(runs))]
    assert got == [("r1", True), ("r2", False)]
    assert reader.found == {("acme", "vision", "r1")}
