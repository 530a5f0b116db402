"""Per-field digests: a stale run names the fields that drifted since the plan."""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timezone

import pytest

from reconcile.fingerprint import drifted, field_digests, fingerprint
from reconcile.models import LiveFile, LiveRun

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
FIELDS = (("config", "lr"), ("config", "model"), ("files",), ("notes",), ("tags",))


def _run(**over: object) -> LiveRun:
    base = LiveRun(entity="e", project="p", id="r", storage_id="s", name="n", state="finished",
                   created_at=NOW, config={"lr": 0.1, "model": "resnet"}, summary={}, tags=("a",), notes="",
                   files=(LiveFile(id="f1", name="x.pt", size=1, updated_at=NOW),))
    return dataclasses.replace(base, **over)  # type: ignore[arg-type]


def test_drifted_names_exactly_the_fields_that_changed() -> None:
    """tags, config.lr and files changed; config.model and notes did not."""
    planned = _run()
    digests = field_digests(planned, FIELDS)
    later = _run(tags=("a", "b"), config={"lr": 0.2, "model": "resnet"},
                 files=(LiveFile(id="f2", name="y.pt", size=1, updated_at=NOW),))
    assert fingerprint(later, FIELDS) != fingerprint(planned, FIELDS)
    assert drifted(later, FIELDS, digests) == ("config.lr", "files", "tags")
    assert drifted(planned, FIELDS, digests) == ()


def test_drifted_tells_a_removed_key_from_a_null_one() -> None:
    """A config key set to null and a key removed are different drifts from a present value."""
    digests = field_digests(_run(config={"lr": None, "model": "resnet"}), FIELDS)
    assert drifted(_run(config={"model": "resnet"}), FIELDS, digests) == ("config.lr",)


def test_drifted_without_recorded_digests_names_nothing() -> None:
    """A plan written before per-field digests existed: no field can be named."""
    assert drifted(_run(tags=("z",)), FIELDS, ()) == ()


def test_a_fingerprint_covers_the_runs_identity() -> None:
    """Two runs with the same fingerprinted fields but another entity, project, id or storage id have
    different fingerprints: a fingerprint copied from one run onto another never matches it."""
    same = fingerprint(_run(), FIELDS)
    assert fingerprint(_run(), FIELDS) == same
    for other in (_run(entity="e2"), _run(project="p2"), _run(id="r2"), _run(storage_id="s2")):
        assert fingerprint(other, FIELDS) != same


def test_a_fingerprint_reads_values_not_their_order_or_spelling() -> None:
    """The same config in another key order has the same fingerprint; a removed key is not a null one;
    NaN and values JSON cannot hold (a time) are fingerprinted, not an error; a tag changed is seen."""
    fields = [("config",), ("tags",), ("created_at",)]
    one = fingerprint(_run(config={"lr": 0.1, "model": "resnet"}), fields)
    assert fingerprint(_run(config={"model": "resnet", "lr": 0.1}), fields) == one
    assert fingerprint(_run(config={"lr": 0.1}), [("config", "model")]) != \
        fingerprint(_run(config={"lr": 0.1, "model": None}), [("config", "model")])
    odd = _run(config={"lr": float("nan"), "when": NOW})
    assert fingerprint(odd, fields) == fingerprint(odd, fields)
    assert fingerprint(_run(tags=("b",)), fields) != one
    assert fingerprint(_run(created_at=datetime(2026, 6, 2, tzinfo=timezone.utc)), fields) != one


def test_a_drifted_file_is_named_as_a_file_with_its_path() -> None:
    """A field of one named file (an undo's re-upload depends on it) reads ``file ckpt/1.pt`` in a stale
    run's message, whether its path is one part or split at its slashes; the whole listing reads
    ``files`` and a config key its dotted path."""
    fields = (("files", "ckpt/1.pt"), ("files", "ckpt", "2.pt"), ("files", "kept.pt"), ("files",),
              ("config", "opt", "lr"))
    kept = LiveFile(id="f0", name="kept.pt", size=1, updated_at=NOW)
    planned = _run(config={"opt": {"lr": 0.1}}, files=(kept,))
    later = _run(config={"opt": {"lr": 0.2}},
                 files=(kept, LiveFile(id="f1", name="ckpt/1.pt", size=1, updated_at=NOW),
                        LiveFile(id="f2", name="ckpt/2.pt", size=1, updated_at=NOW)))
    assert drifted(later, fields, field_digests(planned, fields)) == (
        "file ckpt/1.pt", "file ckpt/2.pt", "files", "config.opt.lr")


def test_a_fingerprint_does_not_depend_on_the_order_of_tags() -> None:
    """The server may list a run's tags in another order: the same tags are the same fingerprint."""
    assert fingerprint(_run(tags=("a", "b")), FIELDS) == fingerprint(_run(tags=("b", "a")), FIELDS)
    assert fingerprint(_run(tags=("a", "b")), FIELDS) != fingerprint(_run(tags=("a", "c")), FIELDS)


def test_a_removed_key_is_not_a_key_holding_any_value() -> None:
    """A missing key is hashed as no value can be: a config key holding the text ``<absent>``, or the
    object ``{"<absent>": true}`` that was once the marker (it hashed like a removed key), is not a
    removed one."""
    removed = fingerprint(_run(config={"model": "resnet"}), FIELDS)
    for value in ("<absent>", {"<absent>": True}, {"<absent>": 1}, None, []):
        assert fingerprint(_run(config={"lr": value, "model": "resnet"}), FIELDS) != removed


def test_an_unknown_field_is_a_programming_error_naming_it() -> None:
    """A field reference nothing reads (a bug in the planner) is refused naming it, never hashed as
    nothing."""
    with pytest.raises(ValueError, match=re.escape("unknown fingerprint field ('bogus', 'x')")):
        fingerprint(_run(), [("bogus", "x")])
