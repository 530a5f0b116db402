"""The emulator's plain-leaf executor answers exactly as graphql-core's own executor does."""

from __future__ import annotations

from typing import Any

import pytest
from graphql import build_schema, execute, parse

from reconcile.emulator.execution import executor_for

SDL = """
enum Color { RED GREEN }
type File { id: ID!  name: String!  size: Int  color: Color  url(upload: Boolean): String  computed: String }
type Query { files: [File!]! }
"""


def _schema(files: list[dict[str, Any]]) -> Any:
    schema = build_schema(SDL)
    schema.query_type.fields["files"].resolve = lambda *_: files  # type: ignore[union-attr]
    schema.get_type("File").fields["computed"].resolve = lambda f, _: f"<{f['name']}>"  # type: ignore[union-attr]
    return schema


QUERY = "{ files { computed id url(upload: true) name alias: name __typename size color } }"

CASES = {
    "plain values": [{"id": "1", "name": "a", "size": 3, "color": "RED", "url": "u"}],
    "nullable fields absent": [{"id": 2, "name": "b"}],
    "a callable value is called": [{"id": "3", "name": "c", "url": lambda info, **args: f"up={args}"}],
    "a null for a non-null field is an error": [{"id": "4", "name": None}, {"id": "5", "name": "e"}],
    "a value the type refuses is an error": [{"id": "6", "name": "f", "size": "many", "color": "BLUE"}],
}


@pytest.mark.parametrize("files", CASES.values(), ids=CASES.keys())
def test_plain_leaf_executor_gives_graphql_cores_result(files: list[dict[str, Any]]) -> None:
    """Data, errors and the order of the keys are the default executor's, for every kind of field."""
    schema = _schema(files)
    document = parse(QUERY)
    fast_class = executor_for(schema)
    assert fast_class is not None
    expected = execute(schema, document)
    got = execute(schema, document, executor_class=fast_class)
    assert got.formatted == expected.formatted  # type: ignore[union-attr]
    if expected.data:  # type: ignore[union-attr]
        assert [list(f) for f in got.data["files"]] == [list(f) for f in expected.data["files"]]  # type: ignore[union-attr, index]


def test_plain_fields_are_those_without_resolver_or_arguments() -> None:
    """Only resolver-less, argument-less scalar and enum fields take the shortcut."""
    plain = executor_for(_schema([])).plain  # type: ignore[union-attr]
    assert sorted(name for type_name, name in plain if type_name == "File") == ["color", "id", "name", "size"]
