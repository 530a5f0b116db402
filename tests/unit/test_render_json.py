"""Tests of the JSON renderer and of format dispatch."""

from __future__ import annotations

import io
import json

import pytest

from reconcile.errors import PlanError
from reconcile.planfile import plan_from_dict, plan_to_dict
from reconcile.render import FORMATS, render
from tests.unit.test_planfile import representative_plan


def test_render_json_is_the_saved_plan_document() -> None:
    """--format json prints exactly plan_to_dict, indented by 2, and reads back as the same plan."""
    plan = representative_plan()
    out = io.StringIO()
    render(plan, out, "json", color=True)
    text = out.getvalue()
    assert text.startswith('{\n  "format_version": 1,')
    doc = json.loads(text)
    assert json.dumps(doc, allow_nan=True) == json.dumps(plan_to_dict(plan), allow_nan=True)
    assert plan_from_dict(doc).runs[0] == plan.runs[0]
    assert "\x1b" not in text


def test_render_dispatches_every_format() -> None:
    """Each advertised format writes something; an unknown one is a PlanError listing the choices."""
    for fmt in FORMATS:
        out = io.StringIO()
        render(representative_plan(), out, fmt)
        assert out.getvalue()
    with pytest.raises(PlanError, match="text, json, markdown"):
        render(representative_plan(), io.StringIO(), "yaml")
