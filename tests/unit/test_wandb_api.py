"""Unit tests of reconcile.backend.wandb_api without a server: documents, parsing, errors.

The GraphQL documents reconcile sends are checked against the ones the installed wandb
client sends, extracted from its own source text.
"""

from __future__ import annotations

import inspect
import json
import re
from datetime import datetime, timezone
from typing import Any

import graphql
import pytest
from wandb.apis.public.files import File
from wandb.apis.public.runs import RUN_FRAGMENT, Run
from wandb.apis.public.summary import HTTPSummary
from wandb.errors import AuthenticationError, CommError
from wandb.proto import wandb_api_pb2 as apb
from wandb.sdk.lib.service.service_connection import WandbApiFailedError

from reconcile.backend import RunUpdate
from reconcile.backend.wandb_api import (
    DELETE_FILES_MUTATION,
    answer_of,
    parse_run,
    parse_time,
    run_files_query,
    runs_query,
    translate_error,
    upsert_bucket_document,
)
from reconcile.errors import AuthError, BackendError, NotFound, RetryableError

KEY = "local-" + "f" * 40


def client_documents(function: Any) -> list[graphql.DocumentNode]:
    """The GraphQL documents in a client function's source, formatted as it formats them."""
    source = inspect.getsource(function)
    documents = []
    for raw in re.findall(r'"""(.*?)"""', source, flags=re.S):
        if "mutation" not in raw and "query" not in raw:
            continue  # a docstring
        text = raw
        if "{{" in raw:  # a str.format template: the only placeholder is RUN_FRAGMENT
            text = raw.replace("{{", "{").replace("}}", "}").replace("{}", RUN_FRAGMENT)
        documents.append(graphql.parse(text))
    return documents


def operation(document: graphql.DocumentNode) -> graphql.OperationDefinitionNode:
    """The one operation of a document."""
    (op,) = [d for d in document.definitions if isinstance(d, graphql.OperationDefinitionNode)]
    return op


def shape(document: graphql.DocumentNode) -> dict[str, Any]:
    """Operation name/type, declared variables with types, input fields, selected bucket fields."""
    op = operation(document)
    (root,) = op.selection_set.selections
    assert isinstance(root, graphql.FieldNode)
    inputs: dict[str, str] = {}
    for argument in root.arguments:
        assert isinstance(argument.value, graphql.ObjectValueNode)
        for field in argument.value.fields:
            assert isinstance(field.value, graphql.VariableNode)
            inputs[field.name.value] = field.value.name.value
    selected = {s.name.value for s in root.selection_set.selections}  # type: ignore[union-attr]
    return {
        "operation": (op.operation.value, op.name.value if op.name else None, root.name.value),
        "variables": {v.variable.name.value: graphql.print_ast(v.type) for v in op.variable_definitions},
        "inputs": inputs,
        "selected": selected,
    }


CLIENT_UPSERTS = [shape(d) for f in (Run.update, HTTPSummary._write) for d in client_documents(f)]


@pytest.mark.parametrize("update", [
    RunUpdate("S1", notes="n"),
    RunUpdate("S1", config={"a": 1}),
    RunUpdate("S1", summary={"acc": 1.0}),
    RunUpdate("S1", display_name="x", notes="n", tags=("a",), group="g", job_type="j", config={"a": {"b": 1}},
              summary={"s": 1}),
])
def test_upsert_bucket_document_is_a_subset_of_the_clients(update: RunUpdate) -> None:
    """Our UpsertBucket uses the client's operation, variable names/types and input fields."""
    ours = shape(graphql.parse(upsert_bucket_document(update)[0]))
    assert len(CLIENT_UPSERTS) == 2
    assert {c["operation"] for c in CLIENT_UPSERTS} == {ours["operation"]}
    client_vars = {**CLIENT_UPSERTS[1]["variables"], **CLIENT_UPSERTS[0]["variables"]}  # id: String!
    assert ours["variables"].items() <= client_vars.items()
    client_inputs = {**CLIENT_UPSERTS[0]["inputs"], **CLIENT_UPSERTS[1]["inputs"]}
    assert ours["inputs"].items() <= client_inputs.items()
    assert ours["selected"] <= CLIENT_UPSERTS[0]["selected"] | CLIENT_UPSERTS[1]["selected"]


def test_upsert_bucket_document_sends_only_set_fields() -> None:
    """Only the set fields are declared and sent; config wrapped, summary compact."""
    document, variables = upsert_bucket_document(
        RunUpdate("S1", tags=(), config={"opt": {"lr": 0.1}, "_wandb": {"x": 1}}, summary={"a": 1, "b": [1]}))
    assert set(variables) == {"id", "tags", "config", "summaryMetrics"}
    assert set(shape(graphql.parse(document))["variables"]) == set(variables)
    assert variables["tags"] == []
    assert variables["config"] == json.dumps(
        {"opt": {"value": {"lr": 0.1}, "desc": None}, "_wandb": {"value": {"x": 1}, "desc": None}})
    assert variables["summaryMetrics"] == '{"a":1,"b":[1]}'


def test_delete_files_document_matches_the_clients() -> None:
    """deleteFiles is the client's File.delete mutation, unchanged in shape."""
    (client,) = [shape(d) for d in client_documents(File.delete)]
    assert shape(graphql.parse(DELETE_FILES_MUTATION)) == client


def test_read_queries_select_what_live_runs_hold_and_files_only_when_asked() -> None:
    """Runs selects the run fields LiveRun holds; with files, each run's first file page; RunFiles pages."""
    for with_files in (False, True):
        runs = graphql.parse(runs_query(with_files=with_files))
        assert operation(runs).name.value == "Runs"  # type: ignore[union-attr]
        fragments = {d.name.value: d for d in runs.definitions
                     if isinstance(d, graphql.FragmentDefinitionNode)}
        selections = fragments["LiveRunFields"].selection_set.selections
        fields = {s.name.value for s in selections}  # type: ignore[attr-defined]
        assert {"id", "name", "displayName", "config", "summaryMetrics", "tags", "createdAt",
                "projectId"} <= fields
        assert ("LiveFileFields" in fragments) is with_files
        assert ("files(first: $fileLimit)" in runs_query(with_files=with_files)) is with_files
    files = run_files_query()
    assert operation(graphql.parse(files)).name.value == "RunFiles"  # type: ignore[union-attr]
    for field in ("sizeBytes", "updatedAt", "url", "md5", "hasNextPage"):
        assert field in files
    # Batched reads never download: no URL (an argument the server resolves on every file).
    assert "url" not in runs_query(with_files=True)


def test_parse_run_unwraps_config_exactly_once() -> None:
    """{"value": v} is unwrapped once, _wandb kept, a stored dict holding "value" survives."""
    node = {
        "id": "UnVuOnYx", "name": "r1", "displayName": "one", "state": "finished",
        "createdAt": "2024-01-02T03:04:05", "projectId": "17", "tags": None,
        "config": json.dumps({"opt": {"value": {"value": 3, "x": 1}, "desc": None},
                              "_wandb": {"value": {"t": 1}}, "bare": 5}),
        "summaryMetrics": '{"acc": 0.9, "nested": {"p": 1}}',
        "group": None, "jobType": "train", "notes": "",
    }
    run = parse_run("ent", "proj", node)
    assert run.config == {"opt": {"value": 3, "x": 1}, "_wandb": {"t": 1}, "bare": 5}
    assert run.summary == {"acc": 0.9, "nested": {"p": 1}}
    assert (run.id, run.storage_id, run.name, run.project_internal_id) == ("r1", "UnVuOnYx", "one", 17)
    assert run.tags == ()
    assert run.created_at == datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert run.files is None


def test_parse_time_makes_aware_utc() -> None:
    """Zone-less means UTC; an offset is converted to UTC."""
    assert parse_time("2024-01-01T00:00:00").tzinfo == timezone.utc
    assert parse_time("2024-01-01T02:00:00+02:00") == datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert parse_time("2024-01-01T00:00:00Z") == datetime(2024, 1, 1, tzinfo=timezone.utc)


def failed(message: str, status: int | None) -> WandbApiFailedError:
    """A WandbApiFailedError as wandb-core reports it (status None: no response at all)."""
    response = None if status is None else apb.ApiErrorResponse(message=message, http_status=status)  # type: ignore[attr-defined]
    return WandbApiFailedError(message, response)


# Only failures classified by HTTP status or exception type are built here; anything classified by
# wandb-core's wording is produced by the real client in tests/integration/test_backend_errors.py.
@pytest.mark.parametrize(("exc", "kind", "status"), [
    (failed("no response", None), RetryableError, None),  # the Python-side timeout: no response at all
    (failed("x", 401), AuthError, 401),
    (failed("x", 403), AuthError, 403),
    (failed("x", 400), BackendError, 400),
    (failed("x", 404), NotFound, 404),
    (failed("x", 503), RetryableError, 503),
    (failed("x", 429), RetryableError, 429),
    (AuthenticationError("x"), AuthError, None),
])
def test_translate_error_classifies(exc: BaseException, kind: type[BackendError], status: int | None) -> None:
    """Each wandb failure becomes the right reconcile error, keeping the server's message."""
    error = translate_error(exc, "do a thing")
    assert type(error) is kind
    assert error.status == status
    assert "do a thing" in str(error)


def verify_failed(inner: WandbApiFailedError) -> AuthenticationError:
    """What ``wandb.Api()`` raises when its credential check fails for any reason."""
    try:
        raise AuthenticationError(f"Failed to verify credentials with http://x: {inner}") from inner
    except AuthenticationError as exc:
        return exc


@pytest.mark.parametrize(("inner", "kind", "status", "says"), [
    (failed("invalid api key", 401), AuthError, 401, "WANDB_API_KEY"),
    (failed("POST http://x/graphql giving up after 4 attempt(s)\nwhile retrying: HTTP 500: boom", 0),
     RetryableError, 500, "HTTP 500"),
    (failed("EOF", 0), BackendError, None, "WANDB_BASE_URL"),
    (failed("invalid character '<' looking for beginning of value", 0), BackendError, None, "WANDB_BASE_URL"),
    (failed("<html><body>Not Found</body></html>", 404), BackendError, 404, "WANDB_BASE_URL"),
    (failed("POST http://x/graphql giving up after 4 attempt(s): dial tcp: connect: connection refused", 0),
     RetryableError, None, "refused the connection"),
])
def test_translate_error_blames_the_key_only_on_a_401(inner: WandbApiFailedError, kind: type[BackendError],
                                                      status: int | None, says: str) -> None:
    """A failed credential check is classified by what the server answered; only a 401 names the key."""
    error = translate_error(verify_failed(inner), "connect to W&B", connecting=True)
    assert type(error) is kind
    assert error.status == status
    assert says in str(error)
    assert ("WANDB_API_KEY" in str(error)) == (status == 401)
    assert "credentials" not in str(error)


def test_translate_error_unwraps_comm_error_and_redacts_the_key() -> None:
    """A CommError wrapping a 429 is retryable; the API key never appears in the message."""
    inner = failed(f"key {KEY} throttled", 429)
    error = translate_error(CommError(str(inner), inner), "list runs", secrets=(KEY,))
    assert isinstance(error, RetryableError)
    assert error.status == 429
    assert KEY not in str(error)
    assert "throttled" in str(error)


def test_the_diagnosis_request_copes_with_an_answer_cut_short() -> None:
    """A server (or proxy) that drops the connection halfway through its answer to reconcile's own
    diagnosis request: ``answer_of`` says it learnt nothing (None), it does not raise urllib3's
    ProtocolError (that crashed an apply under the fault storm), and a server that answers whole is read."""
    import socket
    import threading

    def serve(body: bytes, declared: int) -> tuple[str, threading.Thread]:
        listener = socket.create_server(("127.0.0.1", 0))

        def answer() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\n"
                             b"Content-Length: %d\r\nConnection: close\r\n\r\n" % declared + body)
            listener.close()

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        return f"http://127.0.0.1:{listener.getsockname()[1]}", thread

    url, thread = serve(b"bad gateway", declared=90)
    assert answer_of(url, timeout=5) is None
    thread.join(5)
    url, thread = serve(b"bad gateway", declared=11)
    assert answer_of(url, timeout=5) == (502, "bad gateway")
    thread.join(5)
