"""The checkable rule: reconcile's documents and the emulator's schema use only what the installed
``wandb`` client's own documents use (types, fields, arguments, input fields).

``tests/wandb_vocabulary.py`` extracts that vocabulary from the installed client (the Python package's
GraphQL strings and the documents compiled into wandb-core); see its docstring.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import graphql
import pytest

from reconcile.backend.wandb_api import documents
from reconcile.emulator.resolvers import schema_sdl
from tests.wandb_vocabulary import Usage, client_documents, client_usage, outside, schema_parts, usage


@cache
def emulator_schema() -> graphql.GraphQLSchema:
    """The emulator's schema, as the emulator loads it."""
    text = resources.files("reconcile.emulator").joinpath("schema.graphql").read_text(encoding="utf-8")
    return graphql.build_schema(text)


@cache
def full_emulator_schema() -> graphql.GraphQLSchema:
    """``schema.graphql`` with the feature modules' extensions (history, artifacts, ...), as served."""
    return graphql.build_schema(schema_sdl())


def test_the_clients_documents_are_found_in_python_and_in_wandb_core() -> None:
    """Both sources are read: the documents reconcile builds on come from each, and all of them parse."""
    docs = client_documents()
    origins = {origin.split(" ")[0] for origin, _ in docs.parsed}
    assert any(o.endswith("wandb/bin/wandb-core") for o in origins), "no document found in wandb-core"
    assert any(o.startswith("wandb/apis/public/") for o in origins)
    names = docs.operation_names()
    python_client = {"Runs", "RunFiles", "RunFragment", "RunFilesFragment", "deleteFiles", "UpsertBucket"}
    wandb_core = {"RunResumeStatus", "CreateRunFiles", "ServerFeaturesQuery", "Viewer"}
    assert python_client | wandb_core <= names
    assert docs.unparsed == [], [text[:120] for _, text in docs.unparsed]


def test_the_emulator_schema_declares_nothing_the_client_does_not_use() -> None:
    """Every field, argument and input field of reconcile/emulator/schema.graphql is one the client uses."""
    schema = emulator_schema()
    extra = outside(schema_parts(schema), client_usage(schema))
    assert extra == [], "the emulator's schema goes beyond the client's documents:\n  " + "\n  ".join(extra)


def test_the_artifact_modules_declare_nothing_the_client_does_not_use() -> None:
    """Every field, argument and input field the artifact modules' SDL (``artifact*.graphql``) declares or
    extends is one the client uses: selected by its documents (directly, or on an interface the type
    implements), or sent by wandb-core inside a variable it passes whole (see ``core_input_fields``)."""
    schema = full_emulator_schema()
    package = resources.files("reconcile.emulator")
    names = set()
    for entry in package.iterdir():
        if entry.name.startswith("artifact") and entry.name.endswith(".graphql"):
            sdl = graphql.parse(entry.read_text(encoding="utf-8"))
            names |= {d.name.value for d in sdl.definitions if hasattr(d, "name")}  # type: ignore[attr-defined]
    assert {"Artifact", "ArtifactSequence", "CreateArtifactInput", "UpdateArtifactInput"} <= names
    extra = [line for line in outside(schema_parts(schema), client_usage(schema))
             if line.split(" ")[-1].split(".")[0] in names]
    assert extra == [], "the artifact SDL goes beyond the client's documents:\n  " + "\n  ".join(extra)


@pytest.mark.parametrize("document", documents(), ids=lambda d: d.split("(")[0].split("{")[0].strip())
def test_every_document_reconcile_sends_stays_inside_the_clients_vocabulary(document: str) -> None:
    """Valid against the emulator's schema, only parts the client uses, no aliases, one mutation field."""
    schema = full_emulator_schema()
    parsed = graphql.parse(document)
    assert graphql.validate(schema, parsed) == []
    assert outside(usage(parsed, schema), client_usage(schema)) == []
    assert_default_shape(parsed)


def assert_default_shape(document: graphql.DocumentNode) -> None:
    """No aliases anywhere, and at most one mutation field (W&B's limits on either are unknown)."""
    aliases: list[str] = []

    class Aliases(graphql.Visitor):
        def enter_field(self, node: graphql.FieldNode, *_: object) -> None:
            if node.alias is not None:
                aliases.append(f"{node.alias.value}: {node.name.value}")

    graphql.visit(document, Aliases())
    assert aliases == []
    for definition in document.definitions:
        if isinstance(definition, graphql.OperationDefinitionNode) \
                and definition.operation is graphql.OperationType.MUTATION:
            assert len(definition.selection_set.selections) == 1


def test_the_check_fails_on_parts_the_client_never_uses() -> None:
    """A field, an argument and an input field the client's documents never use are each reported."""
    schema = graphql.build_schema(
        "scalar JSONString\n"
        "type Query { project(name: String, entityName: String, secret: Int): Project }\n"
        "type Project { name: String! runs(first: Int): RunConnection storagePlan: String }\n"
        "type RunConnection { pageInfo: PageInfo! }\n"
        "type PageInfo { hasNextPage: Boolean! }\n"
        "type Mutation { deleteFiles(input: DeleteFilesInput!): Payload }\n"
        "input DeleteFilesInput { files: [ID!]! projectId: Int purge: Boolean }\n"
        "type Payload { success: Boolean }\n")
    extra = outside(schema_parts(schema), client_usage(schema))
    assert extra == ["field Project.storagePlan", "argument Query.project(secret:)",
                     "input field DeleteFilesInput.purge"]
    foreign = graphql.parse("query Q { project(name: \"p\", secret: 1) { storagePlan } }")
    assert outside(usage(foreign, schema), client_usage(schema)) == [
        "field Project.storagePlan", "argument Query.project(secret:)"]
    unknown = usage(graphql.parse("query Q { project(name: \"p\") { nope } }"), schema)
    assert outside(unknown, Usage()) == ["field Query.project", "argument Query.project(name:)",
                                          "unknown to the schema: Project.nope"]


def test_the_shape_check_refuses_aliases_and_several_mutations() -> None:
    """Valid GraphQL that W&B's limits make unknown is refused by default."""
    with pytest.raises(AssertionError):
        assert_default_shape(graphql.parse("query Q { a: viewer { id } }"))
    with pytest.raises(AssertionError):
        assert_default_shape(graphql.parse(
            "mutation M { deleteFiles(input: {files: []}) { success } "
            "upsertBucket(input: {id: \"x\"}) { inserted } }"))
