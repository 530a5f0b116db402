"""graphql-core's executor with a shortcut for plain leaf fields, the bulk of every big response.

A page of 100 runs with their files is ~20,000 fields, most of them a scalar read from a dict
(``File.name``, ``File.sizeBytes``...). graphql-core completes each through ``execute_field``
(resolve info, default resolver, non-null and leaf completion): ~80% of the emulator's CPU on the
benchmark. A field with no resolver, no arguments and a scalar or enum type is completed here
directly from the source dict with the type's own ``coerce_output_value``; anything else (a null
for a non-null field, a value the type refuses, a callable) goes the normal way, so results and
errors are exactly graphql-core's.
"""

from __future__ import annotations

from typing import Any, ClassVar

from graphql import (
    GraphQLLeafType,
    GraphQLObjectType,
    GraphQLSchema,
    Undefined,
    is_leaf_type,
    is_non_null_type,
)

try:  # graphql-core 3.3: ``execute`` builds an IncrementalExecutor unless given another class
    from graphql.execution.executor import default_field_resolver
    from graphql.execution.incremental.incremental_executor import IncrementalExecutor
except ImportError:  # pragma: no cover - graphql-core 3.2 executes every field the normal way
    IncrementalExecutor = None  # type: ignore[assignment,misc]

_NOT_PLAIN = (None, False)


def _plain_fields(schema: GraphQLSchema) -> dict[tuple[str, str], tuple[GraphQLLeafType, bool]]:
    """(type, field) -> (leaf type, nullable) for every object field with no resolver and no arguments
    whose type is a scalar or enum (possibly non-null)."""
    out: dict[tuple[str, str], tuple[GraphQLLeafType, bool]] = {}
    for type_ in schema.type_map.values():
        if not isinstance(type_, GraphQLObjectType) or type_.name.startswith("__"):
            continue
        for name, field in type_.fields.items():
            if field.resolve is not None or field.args:
                continue
            inner, nullable = field.type, True
            if is_non_null_type(inner):
                inner, nullable = inner.of_type, False
            if is_leaf_type(inner):
                out[(type_.name, name)] = (inner, nullable)
    return out


class PlainLeafExecutor(IncrementalExecutor or object):  # type: ignore[misc]
    """``Executor`` completing plain leaf fields of dict sources without the per-field machinery."""

    plain: ClassVar[dict[tuple[str, str], tuple[GraphQLLeafType, bool]]] = {}
    """Set per schema by ``executor_for``."""

    def execute_fields(self, parent_type: GraphQLObjectType, source_value: Any, path: Any,
                       grouped_field_set: Any, position_context: Any) -> Any:
        normal = super().execute_fields
        if not isinstance(source_value, dict) or self.field_resolver is not default_field_resolver \
                or self.middleware_manager is not None:
            return normal(parent_type, source_value, path, grouped_field_set, position_context)
        plain, type_name = self.plain, parent_type.name
        rest: dict[str, Any] = {}
        done: dict[str, Any] = {}
        for response_name, details in grouped_field_set.items():
            node = details[0].node
            leaf, nullable = plain.get((type_name, node.name.value), _NOT_PLAIN)
            if leaf is not None and not node.arguments:
                value = source_value.get(node.name.value)
                if value is None:
                    if nullable:
                        done[response_name] = None
                        continue
                elif not callable(value):
                    try:
                        coerced = leaf.coerce_output_value(value)
                    except Exception:  # the normal path reports it as graphql-core does
                        coerced = None
                    if coerced is not None and coerced is not Undefined:
                        done[response_name] = coerced
                        continue
            rest[response_name] = details
        if not rest:
            return done
        others = normal(parent_type, source_value, path, rest, position_context)
        if self.is_awaitable(others):  # pragma: no cover - every resolver is synchronous
            raise TypeError("async resolvers are not supported")
        # Keep the selection's order, as graphql-core's own result does.
        return {name: done[name] if name in done else others[name]
                for name in grouped_field_set if name in done or name in others}


def executor_for(schema: GraphQLSchema) -> type[PlainLeafExecutor] | None:
    """A ``PlainLeafExecutor`` class for ``schema`` (its plain leaf fields found once); None where
    graphql-core has no executor class to extend (3.2: the default executor is used)."""
    if IncrementalExecutor is None:  # pragma: no cover
        return None
    return type("SchemaPlainLeafExecutor", (PlainLeafExecutor,), {"plain": _plain_fields(schema)})
