"""Templates accept substitution only: every other thing str.format can do is refused with a message,
at validate time and at plan time, and a missing or unrenderable value is an error, never ""."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconcile import templates
from reconcile.cli import main
from reconcile.models import LiveRun
from reconcile.templates import Field, TemplateError

RUN = LiveRun("acme", "vision", "r1", "S1", "brave", "finished", datetime(2026, 1, 2, tzinfo=timezone.utc),
              {"lr": 0.5, "opt": {"name": "adam"}, "none": None, "list": [1]}, {"acc": 0.912345}, ())


@pytest.mark.parametrize("conversion", ["r", "s", "a"])
def test_conversions_are_refused(conversion: str) -> None:
    """{id!r} and friends: refused when parsed, rendered or validated, naming the conversion."""
    text = f"x-{{id!{conversion}}}"
    with pytest.raises(TemplateError, match=f"conversions like '!{conversion}' are not allowed"):
        templates.parse(text)
    with pytest.raises(TemplateError, match="conversions"):
        templates.render(text, RUN)
    with pytest.raises(TemplateError, match="conversions"):
        templates.is_template(text)


def test_validate_reports_a_conversion_with_file_line_and_field(tmp_path: Path) -> None:
    """`reconcile validate` names the file, line and field of a template with a conversion; exit 1."""
    spec = tmp_path / "s.yaml"
    spec.write_text("version: 1\ntarget: {entity: e, project: p}\nrules:\n  - name: r\n"
                    "    match: {all: true}\n    set:\n      name: \"{id!r}\"\n")
    result = CliRunner().invoke(main, ["validate", str(spec)])
    assert result.exit_code == 1
    assert f"{spec}:7:" in result.output
    assert "rules[0].set.name" in result.output
    assert "conversions like '!r' are not allowed" in result.output


@pytest.mark.parametrize(("text", "message"), [
    ("{config.lr:{x}}", "nested fields in a format spec"),
    ("{}", "empty field"),
    ("{0}", "unknown field {0}"),
    ("{config[lr]}", "may only be a dotted key path"),
    ("{config.__class__}", "run has no config.__class__"),
    ("{name.upper}", "unknown field {name.upper}"),
    ("{config}", "needs a key"),
    ("{config.a..b}", "needs a key"),
    ("{summary.}", "needs a key"),
    ("{id", "malformed template"),
    ("}", "malformed template"),
    ("{created_at.year}", "unknown field"),
    ("{config.x y}", "may only be a dotted key path"),
])
def test_everything_but_substitution_is_refused(text: str, message: str) -> None:
    """Indexing, attributes, positional and empty fields, nesting: an error naming the template."""
    with pytest.raises(TemplateError, match=message.replace("{", r"\{").replace("[", r"\[")) as info:
        templates.render(text, RUN)
    if "run has no" not in message:
        assert repr(text) in str(info.value)


@pytest.mark.parametrize(("text", "expected"), [
    ("{id}-{name}", "r1-brave"),
    ("lr{config.lr}-{config.opt.name}", "lr0.5-adam"),
    ("{summary.acc:.3f}", "0.912"),
    ("{created_at:%Y-%m-%d}", "2026-01-02"),
    ("{{literal}} {state}", "{literal} finished"),
    ("plain", "plain"),
])
def test_substitution_renders(text: str, expected: str) -> None:
    """The allowed forms render exactly."""
    assert templates.render(text, RUN) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("{config.missing}", "the run has no config.missing"),
    ("{config.opt.name.deeper}", "the run has no config.opt.name.deeper"),
    ("{group}", "the run has no group"),
    ("{config.none}", "the run's config.none is null"),
    ("{config.opt}", "config.opt is a dict, not a single value"),
    ("{config.list}", "config.list is a list, not a single value"),
    ("{config.lr:d}", "cannot format config.lr=0.5 with 'd'"),
])
def test_a_value_the_run_cannot_give_is_an_error_never_empty(text: str, message: str) -> None:
    """Missing keys and fields, null, structured values and bad format specs raise; nothing renders ''."""
    with pytest.raises(TemplateError, match=message.replace(".", r"\.")):
        templates.render(text, RUN)


def test_fields_lists_what_a_template_reads() -> None:
    """fields() gives the fields read (for fingerprints); a plain text has none."""
    expected = (Field("config", ("a", "b"), ">3"), Field("id", (), ""))
    assert templates.fields("{config.a.b:>3}-{id}") == expected
    assert templates.fields("{config.a.b}")[0].text == "config.a.b"
    assert templates.is_template("{id}")
    assert not templates.is_template("{{id}}")


def test_any_key_name_of_letters_digits_and_dashes_is_allowed() -> None:
    """Only brackets, parentheses, quotes and spaces make a field more than a dotted key path."""
    run = LiveRun("acme", "vision", "r1", "S1", "n", "finished", RUN.created_at,
                  {"MaX": {"XX-y_1": 3}}, {}, ())
    assert templates.render("{config.MaX.XX-y_1}", run) == "3"


def test_an_unknown_field_lists_the_fields_allowed() -> None:
    """The message says exactly what may be used instead."""
    with pytest.raises(TemplateError) as info:
        templates.parse("{nme}")
    assert str(info.value) == (
        "template '{nme}': unknown field {nme}; use {id}, {name}, {group}, {job_type}, {notes}, {state}, "
        "{created_at}, {config.KEY} or {summary.KEY}")
