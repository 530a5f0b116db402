"""``WandbBackend``: the Backend seam implemented with the real ``wandb`` client.

This is the only module of reconcile that imports ``wandb``. Every GraphQL document it
sends is built only from types, fields, arguments and input fields that the official
client's own documents use (``tests/unit/test_schema_subset.py`` checks it against the
installed client), never aliased and with at most one mutation field. Reads select just
what ``LiveRun`` holds, with each run's files inside the batched ``Runs`` query when asked.
Documents run through the client's own GraphQL executor so that wandb-core does auth,
headers and retries exactly as it does for ``wandb.Api``. See ``../shared/wandb-protocol.md``
for the wire details cited below.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import dataclasses
import http
import json
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote, urlsplit

import requests
import structlog
import urllib3
import wandb
from humanfriendly.text import pluralize
from wandb import env as wandb_env
from wandb import util as wandb_util
from wandb.apis.public.runs import Run
from wandb.errors import AuthenticationError, CommError, UsageError
from wandb.proto import wandb_api_pb2 as apb
from wandb.proto import wandb_internal_pb2 as ipb
from wandb.sdk import wandb_setup
from wandb.sdk.artifacts._generated import (
    ARTIFACT_BY_ID_GQL,
    DELETE_ARTIFACT_GQL,
    GET_ARTIFACT_MEMBERSHIP_FILE_URLS_GQL,
    RUN_OUTPUT_ARTIFACTS_GQL,
    UPDATE_ARTIFACT_GQL,
)
from wandb.sdk.lib import wbauth
from wandb.sdk.lib.paths import LogicalPath
from wandb.sdk.lib.service.service_connection import WandbApiFailedError

from reconcile.backend import HistoryPosition, RunCreate, RunUpdate
from reconcile.backend.retry import with_retries
from reconcile.errors import AuthError, BackendError, NotFound, RetryableError
from reconcile.log import register_secret
from reconcile.models import LiveArtifact, LiveFile, LiveRun, VersionTTL

log = structlog.get_logger(__name__)

DEFAULT_PER_PAGE = 500
"""Runs per Runs request; the client's default of 50 costs 10x the round trips."""

PER_PAGE_WITH_FILES = 100
"""Runs per Runs request that carries files (each up to FILES_PER_RUN_IN_PAGE): one page's answer
stays a few thousand file nodes, well inside the client's request timeout."""

FILES_PER_PAGE = 500
"""Files per RunFiles request."""

FILES_PER_RUN_IN_PAGE = 50
"""Files of each run carried inside a batched Runs read; a run with more continues with RunFiles."""

IDS_PER_REQUEST = 100
"""Run ids per ``{"name": {"$in": [...]}}`` re-read (keeps the filter string small)."""

FILE_STREAM_TIMEOUT = 60.0
"""Seconds one file_stream request may take (a chunk of history rows)."""

CONNECT_TIMEOUT = 10.0
"""Seconds the reachability check waits for the server to accept a TCP connection."""

SERVICE_EXIT_WAIT = 5.0
"""Seconds the process waits at exit for wandb-core to end before ending it (``_end_service``)."""

DIAGNOSIS_TIMEOUT = 5.0
"""Seconds the plain request sent after a client timeout (``answer_of``) waits for the server's answer."""

DIAGNOSIS_QUERY = "query Viewer {\n    viewer {\n        id\n    }\n}\n"
"""What that plain request asks: the client's own first question (``viewer``), sent without credentials."""

RUNS_ORDER = "+created_at"
"""The client's default order (protocol §2); a stable order keeps paging predictable."""

_HTTP_CODE = re.compile(r"\bHTTP (\d{3})\b")
_TIMEOUT_MARKERS = ("did not respond in time", "timed out", "timeout")
# A connection cut mid-response: wandb-core reports "unexpected EOF" with no HTTP status.
# Transient like a timeout, and like one the request may or may not have been applied.
_DROPPED_MARKERS = ("unexpected eof", "connection reset", "broken pipe", "connection aborted")
_KEY_HINT = "Set WANDB_API_KEY or run `wandb login`."
# What wandb-core says when the answer is not JSON at all: an empty body ("EOF") or an HTML
# page ("invalid character '<' ..."), i.e. something other than W&B answers at that URL.
_NOT_GRAPHQL = re.compile(r"^EOF$|invalid character .* looking for beginning of value", re.I)

# One UpsertBucket variable per RunUpdate field: (variable, GraphQL type, input field).
# Names and types are the ones the client declares: run.update() (protocol §4a) for the
# metadata, HTTPSummary._write (§5) for summaryMetrics. The id is declared ``String!``
# as in run.update().
_UPSERT_FIELDS: dict[str, tuple[str, str, str]] = {
    "display_name": ("display_name", "String", "displayName"),
    "notes": ("notes", "String", "notes"),
    "tags": ("tags", "[String!]", "tags"),
    "config": ("config", "JSONString!", "config"),
    "group": ("groupName", "String", "groupName"),
    "job_type": ("jobType", "String", "jobType"),
    "summary": ("summaryMetrics", "JSONString", "summaryMetrics"),
    # wandb-core's UpsertBucket (the create form wandb.init sends) declares ``$state: String``.
    "state": ("state", "String", "state"),
}

# UpsertBucket's create form as wandb-core sends it for wandb.init (protocol §13b): the run is named
# by ``name`` in ``modelName``/``entityName`` (variables ``$project``/``$entity`` as wandb-core
# declares them), no ``id``; the server creates the run (and the project) if absent.
_CREATE_FIELDS: dict[str, tuple[str, str, str]] = {
    "display_name": ("displayName", "String", "displayName"),
    "notes": ("notes", "String", "notes"),
    "tags": ("tags", "[String!]", "tags"),
    "config": ("config", "JSONString", "config"),
    "group": ("groupName", "String", "groupName"),
    "job_type": ("jobType", "String", "jobType"),
}

HISTORY_FILE = "wandb-history.jsonl"
"""The file_stream file that carries history rows (one JSON object a line)."""

EVENTS_FILE = "wandb-events.jsonl"
"""The file_stream file that carries system-metric rows."""

HISTORY_TAIL_QUERY = """
query RunHistoryTail($project: String!, $entity: String!, $name: String!) {
    project(name: $project, entityName: $entity) {
        run(name: $name) {
            historyLineCount
            historyTail
            eventsLineCount
        }
    }
}
"""
"""Where a run's history ends: the fields wandb-core's RunResumeStatus reads to resume a run."""

HISTORY_PAGE_QUERY = """
query HistoryPage($entity: String!, $project: String!, $run: String!, $minStep: Int64!, $maxStep: Int64!,
        $pageSize: Int!) {
    project(name: $project, entityName: $entity) {
        run(name: $run) {
            history(minStep: $minStep, maxStep: $maxStep, samples: $pageSize)
        }
    }
}
"""
"""A window of history rows, ``maxStep`` exclusive (wandb-core's HistoryPage, as ``scan_history`` pages)."""

EVENTS_QUERY = """
query RunEvents($project: String!, $entity: String!, $name: String!, $samples: Int) {
    project(name: $project, entityName: $entity) {
        run(name: $name) {
            events(samples: $samples)
        }
    }
}
"""
"""A run's system-metric rows (``run.history(stream="events")``'s field), all of them when ``samples``
is the run's eventsLineCount."""

HISTORY_PAGE_SIZE = 1000
"""Steps per HistoryPage request."""

# Run.upload_file's mutation (protocol §7), sent with every file of a batch at once.
CREATE_RUN_FILES_MUTATION = """
mutation CreateRunFiles($entity: String!, $project: String!, $run: String!, $files: [String!]!) {
    createRunFiles(input: {entityName: $entity, projectName: $project, runName: $run, files: $files}) {
        runID
        uploadHeaders
        files {
            name
            uploadUrl
        }
    }
}
"""

# File.delete()'s mutation (protocol §6.1), sent with every id of the run at once.
DELETE_FILES_MUTATION = """
mutation deleteFiles($files: [ID!]!, $projectId: Int) {
    deleteFiles(input: {
        files: $files
        projectId: $projectId
    }) {
        success
    }
}
"""


def _wrapped_config(config: Mapping[str, Any]) -> str:
    """Run.json_config: every value wrapped, desc reset, default separators."""
    return json.dumps({k: {"value": v, "desc": None} for k, v in config.items()})


def _declare_set_fields(source: RunCreate | RunUpdate, fields: Mapping[str, tuple[str, str, str]],
                        declarations: list[str], inputs: list[str], variables: dict[str, Any]) -> None:
    """Declare and send each of ``fields`` that ``source`` sets; a field left ``None`` is neither."""
    for attr, (var, gql_type, field) in fields.items():
        value = getattr(source, attr)
        if value is None:
            continue
        declarations.append(f"${var}: {gql_type}")
        inputs.append(f"{field}: ${var}")
        if attr == "tags":
            value = list(value)
        elif attr == "config":
            value = _wrapped_config(value)
        elif attr == "summary":
            # HTTPSummary._write: the client's own compact encoder (NaN/inf as constants).
            value = wandb_util.json_dumps_safer(dict(value))
        variables[var] = value


def create_run_document(create: RunCreate) -> tuple[str, dict[str, Any]]:
    """UpsertBucket's create form for ``create``: only the fields set are declared and sent."""
    declarations = ["$name: String", "$project: String", "$entity: String"]
    inputs = ["name: $name", "modelName: $project", "entityName: $entity"]
    variables: dict[str, Any] = {"name": create.run_id, "project": create.project, "entity": create.entity}
    _declare_set_fields(create, _CREATE_FIELDS, declarations, inputs, variables)
    document = (
        f"mutation UpsertBucket({', '.join(declarations)}) {{\n"
        f"    upsertBucket(input: {{{', '.join(inputs)}}}) {{\n"
        "        bucket {\n            id\n            name\n        }\n"
        "        inserted\n"
        "    }\n}\n"
    )
    return document, variables


def upsert_bucket_document(update: RunUpdate) -> tuple[str, dict[str, Any]]:
    """The UpsertBucket document and variables for ``update``: only the set fields.

    The shape is the client's ``upsertBucket(input: {...}) { bucket { id } }``; a field
    left ``None`` is neither declared nor sent, so the server leaves it unchanged.
    """
    declarations = ["$id: String!"]
    inputs = ["id: $id"]
    variables: dict[str, Any] = {"id": update.storage_id}
    _declare_set_fields(update, _UPSERT_FIELDS, declarations, inputs, variables)
    document = (
        f"mutation UpsertBucket({', '.join(declarations)}) {{\n"
        f"    upsertBucket(input: {{{', '.join(inputs)}}}) {{\n"
        "        bucket {\n            id\n        }\n"
        "    }\n}\n"
    )
    return document, variables


# The fields of a run that LiveRun holds (a subset of the client's RunFragment).
RUN_FIELDS_FRAGMENT = """
fragment LiveRunFields on Run {
    id
    name
    displayName
    projectId
    state
    config
    group
    jobType
    createdAt
    notes
    tags
    summaryMetrics
}
"""

def _file_fields(name: str, *, urls: bool) -> str:
    """A fragment selecting what LiveFile holds (the client's RunFilesFragment selects these fields);
    the download URL only where it is used: an argument per file costs the server on every node."""
    url = "\n            url" if urls else ""
    return (f"\nfragment {name} on FileConnection {{\n    edges {{\n        node {{\n            id\n"
            f"            name\n            sizeBytes\n            updatedAt\n            md5{url}\n"
            "        }\n        cursor\n    }\n"
            "    pageInfo {\n        endCursor\n        hasNextPage\n    }\n}\n")


# Listings and batched re-reads: no URLs (the plan and the staleness check never download).
FILE_FIELDS_FRAGMENT = _file_fields("LiveFileFields", urls=False)
# RunFiles: with the URL File.download uses (backups download through it).
FILE_URLS_FRAGMENT = _file_fields("LiveFileUrls", urls=True)


@cache
def runs_query(*, with_files: bool = False) -> str:
    """A page of a project's runs (the client's ``Runs`` shape), with each run's first files if asked."""
    files_variable = ", $fileLimit: Int" if with_files else ""
    files = "\n                    files(first: $fileLimit) { ...LiveFileFields }" if with_files else ""
    return (
        f"query Runs($project: String!, $entity: String!, $cursor: String, $perPage: Int, $order: String, "
        f"$filters: JSONString{files_variable}) {{\n"
        "    project(name: $project, entityName: $entity) {\n"
        "        runs(filters: $filters, after: $cursor, first: $perPage, order: $order) {\n"
        "            edges {\n"
        "                node {\n"
        f"                    ...LiveRunFields{files}\n"
        "                }\n"
        "                cursor\n"
        "            }\n"
        "            pageInfo {\n                endCursor\n                hasNextPage\n            }\n"
        "        }\n"
        "    }\n"
        "}\n" + RUN_FIELDS_FRAGMENT + (FILE_FIELDS_FRAGMENT if with_files else "")
    )


@cache
def run_files_query() -> str:
    """One page of a run's files (the client's ``RunFiles`` shape)."""
    return (
        "query RunFiles($project: String!, $entity: String!, $name: String!, $fileCursor: String, "
        "$fileLimit: Int) {\n"
        "    project(name: $project, entityName: $entity) {\n"
        "        run(name: $name) {\n"
        "            files(after: $fileCursor, first: $fileLimit) { ...LiveFileUrls }\n"
        "        }\n"
        "    }\n"
        "}\n" + FILE_URLS_FRAGMENT
    )


def documents() -> list[str]:
    """Every GraphQL document shape this module sends (for the schema-subset check)."""
    everything = RunUpdate(storage_id="x", display_name="", notes="", tags=(), group="", job_type="",
                           config={}, summary={}, state="")
    created = RunCreate(entity="e", project="p", run_id="r", display_name="", notes="", tags=(), group="",
                        job_type="", config={})
    return [runs_query(with_files=False), runs_query(with_files=True), run_files_query(),
            upsert_bucket_document(everything)[0], create_run_document(created)[0], HISTORY_TAIL_QUERY,
            HISTORY_PAGE_QUERY, EVENTS_QUERY, DELETE_FILES_MUTATION, CREATE_RUN_FILES_MUTATION,
            DIAGNOSIS_QUERY]



def upload_name(name: str) -> str:
    """``name`` if the wandb client would upload a file under exactly that name, else a BackendError.

    The client names an upload by a made-safe, normalised path (``make_file_path_upload_safe``, then
    ``LogicalPath``): ``ck//c`` or ``ck/./c`` would land on ``ck/c`` and replace that file, ``/abs`` on
    ``abs``, ``..`` on ``__``. Both upload paths (``upload_file`` and the batched ``upload_files``) refuse
    such a name before anything is sent, rather than write another file than the one planned."""
    sent = str(LogicalPath(wandb_util.make_file_path_upload_safe(name)))
    if sent != name:
        raise BackendError(f"refusing to upload {name!r}: the wandb client would upload it as {sent!r}, "
                           "another name (and replace a file of that name).")
    return sent

class WandbBackend:
    """The Backend protocol over one ``wandb.Api`` (shared by all threads).

    One Api runs about ten requests at once (protocol §11); callers may use it from
    several threads. Nothing read here is cached, so every read is fresh.
    """

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 timeout: int | None = None, files_per_page: int = FILES_PER_PAGE,
                 files_per_run: int = FILES_PER_RUN_IN_PAGE) -> None:
        """Connect to W&B; ``None`` arguments use W&B's own conventions.

        ``base_url`` defaults to WANDB_BASE_URL (else the wandb settings), ``api_key`` to
        WANDB_API_KEY or the netrc entry ``wandb login`` writes; ``timeout`` (seconds,
        wandb-core's retries included) to WANDB_HTTP_TIMEOUT or 19.
        """
        self.files_per_page = files_per_page
        self.files_per_run = files_per_run
        if base_url is None and "WANDB_BASE_URL" in os.environ:
            _check_url(os.environ["WANDB_BASE_URL"])  # wandb's own settings would fail on it obscurely
        try:
            resolved = base_url or wandb_env.get_base_url(wandb_setup.singleton().settings.base_url)
        except Exception as exc:
            raise BackendError(f"wandb could not load its settings: {_redacted(str(exc), ())}") from exc
        self.base_url: str = _check_url(str(resolved)).rstrip("/")
        self._secret = api_key or _stored_api_key(self.base_url)
        if self._secret:
            register_secret(self._secret)  # a netrc key too is redacted by value, whatever its shape
        # wandb-core retries a refused connection for its whole timeout (20 s) and then
        # reports a busy service; one plain TCP connect says what is wrong at once.
        check_reachable(self.base_url)

        def connect() -> wandb.Api:
            try:
                return wandb.Api(overrides={"base_url": self.base_url}, api_key=self._secret, timeout=timeout)
            except Exception as exc:
                _bound_service_exit()  # the Api started wandb-core before its first request failed
                raise translate_error(exc, f"connect to W&B at {self.base_url}", secrets=(self._secret,),
                                      connecting=True, base_url=self.base_url) from exc

        # A 5xx or 429 on the credential check is worth another try; a timeout is not (an
        # unreachable WANDB_BASE_URL would otherwise take minutes to report).
        self._api: wandb.Api | None = with_retries(connect, retry_unknown_outcome=False, doing="connect")
        _bound_service_exit()
        self._http = requests.Session()  # file_stream (imports): plain HTTP, as wandb-core sends it

    @classmethod
    def from_env(cls) -> WandbBackend:
        """A backend configured only by the environment (WANDB_BASE_URL, WANDB_API_KEY, netrc)."""
        return cls()

    def close(self) -> None:
        """Drop the Api; wandb-core frees the session when it is garbage collected."""
        self._api = None
        self._http.close()

    # ------------------------------------------------------------------ reads

    def iter_runs(
        self, entity: str, project: str, filters: Mapping[str, Any] | None = None, *,
        per_page: int | None = None, with_files: bool = False,
    ) -> Iterator[LiveRun]:
        """Stream the runs matching ``filters``, one Runs request per page (with files: every file).

        The next page is fetched while the caller works through this one. A run repeated across
        pages (wandb/wandb#6614) is yielded once.
        """
        if per_page is None:
            per_page = PER_PAGE_WITH_FILES if with_files else DEFAULT_PER_PAGE
        seen: set[str] = set()
        for run in self._run_pages(entity, project, filters or {}, per_page, with_files, prefetch=True):
            if run.id not in seen:
                seen.add(run.id)
                yield run

    def get_runs(self, entity: str, project: str, run_ids: Sequence[str], *,
                 with_files: bool = False) -> dict[str, LiveRun]:
        """Fresh reads of these runs: one Runs request per 100 ids, never cached."""
        wanted = list(dict.fromkeys(run_ids))
        found: dict[str, LiveRun] = {}
        for start in range(0, len(wanted), IDS_PER_REQUEST):
            chunk = wanted[start:start + IDS_PER_REQUEST]
            chunk_ids = set(chunk)
            for run in self._run_pages(entity, project, {"name": {"$in": chunk}}, len(chunk), with_files):
                if run.id in chunk_ids:
                    found.setdefault(run.id, run)
        return found

    def list_files(self, run: LiveRun) -> tuple[LiveFile, ...]:
        """Every file of the run, one RunFiles request per page."""
        return tuple(self._file_pages(run, None))

    def _file_pages(self, run: LiveRun, cursor: str | None) -> Iterator[LiveFile]:
        """The run's files after ``cursor`` (None: from the first), page by page."""
        variables: dict[str, Any] = {"project": run.project, "entity": run.entity, "name": run.id,
                                     "fileLimit": self.files_per_page, "fileCursor": cursor}
        while True:
            data = self._execute(run_files_query(), variables, f"list the files of {run.path}")
            project = (data or {}).get("project") or {}
            run_data = project.get("run")
            if run_data is None:
                raise NotFound(f"run {run.path} not found: check the entity, project and run id.")
            files, cursor = _parse_files(run_data.get("files"))
            yield from files
            if cursor is None:
                return
            variables["fileCursor"] = cursor

    # ------------------------------------------------------------------ writes

    def update_run(self, update: RunUpdate) -> None:
        """Send one UpsertBucket carrying only the fields set in ``update``."""
        document, variables = upsert_bucket_document(update)
        data = self._execute(document, variables, f"update run {update.storage_id}")
        bucket = ((data or {}).get("upsertBucket") or {}).get("bucket") or {}
        if not bucket.get("id"):
            # HTTPSummary._write asserts the same: no bucket id means nothing was written.
            raise BackendError(f"W&B did not confirm the update of run {update.storage_id}; "
                               "re-run to check its state.")

    def create_run(self, create: RunCreate) -> str:
        """Send UpsertBucket's create form (wandb.init's); the server confirms with the run's storage id,
        which is returned."""
        document, variables = create_run_document(create)
        path = f"{create.entity}/{create.project}/{create.run_id}"
        data = self._execute(document, variables, f"create run {path}")
        bucket = ((data or {}).get("upsertBucket") or {}).get("bucket") or {}
        if not bucket.get("id"):
            raise BackendError(f"W&B did not confirm the creation of run {path}; re-run to check its state.")
        return str(bucket["id"])

    def history_position(self, run: LiveRun) -> HistoryPosition:
        """historyLineCount and the last row's ``_step`` from historyTail, as wandb-core reads them to
        resume a run (its RunResumeStatus)."""
        variables = {"project": run.project, "entity": run.entity, "name": run.id}
        data = self._execute(HISTORY_TAIL_QUERY, variables, f"read the history position of {run.path}")
        node = ((data or {}).get("project") or {}).get("run")
        if node is None:
            raise NotFound(f"run {run.path} not found: check the entity, project and run id.")
        return parse_history_position(node)

    def history_rows(self, run: LiveRun, *, events: bool = False,
                     position: HistoryPosition | None = None) -> Iterator[dict[str, Any]]:
        """Every history row by HistoryPage windows of steps up to the last step (``events``: every
        system-metric row, in one request asking for eventsLineCount samples); ``position``: the
        ``history_position`` the caller just read (else it is read here)."""
        if position is None:
            position = self.history_position(run)
        doing = f"read the history of {run.path}"
        if events:
            variables: dict[str, Any] = {"project": run.project, "entity": run.entity, "name": run.id,
                                         "samples": position.events_lines}
            if position.events_lines:
                node = ((self._execute(EVENTS_QUERY, variables, doing) or {}).get("project") or {}).get("run")
                yield from (_json_object(line) for line in (node or {}).get("events") or [])
            return
        if position.last_step is None:
            return
        low = 0
        while low <= position.last_step:
            variables = {"entity": run.entity, "project": run.project, "run": run.id, "minStep": low,
                         "maxStep": low + HISTORY_PAGE_SIZE, "pageSize": HISTORY_PAGE_SIZE}
            data = self._execute(HISTORY_PAGE_QUERY, variables, doing) or {}
            node = (data.get("project") or {}).get("run")
            if node is None:
                raise NotFound(f"run {run.path} not found: check the entity, project and run id.")
            yield from (_json_object(line) for line in node.get("history") or [])
            low += HISTORY_PAGE_SIZE

    def append_history(self, run: LiveRun, offset: int, rows: Sequence[Mapping[str, Any]], *,
                       exitcode: int | None = None, events: bool = False) -> None:
        """POST ``/files/<entity>/<project>/<run>/file_stream`` as wandb-core's filestream does:
        ``{"files": {"wandb-history.jsonl": {"offset": N, "content": [line, ...]}}}``, plus
        ``complete``/``exitcode`` to finish (protocol §13b). Lines land at their offsets, so sending
        the same lines again at the same offset rewrites them instead of adding rows."""
        body: dict[str, Any] = {}
        if rows:
            lines = [json.dumps(dict(row), separators=(",", ":")) for row in rows]
            body["files"] = {EVENTS_FILE if events else HISTORY_FILE: {"offset": offset, "content": lines}}
        if exitcode is not None:
            body.update(complete=True, exitcode=exitcode)
        if not body:
            return
        quoted = "/".join(quote(part, safe="") for part in (run.entity, run.project, run.id))
        url = f"{self.base_url}/files/{quoted}/file_stream"
        doing = f"stream history to {run.path}"
        if not self._secret:
            raise AuthError(f"cannot {doing}: importing history needs an API key (WANDB_API_KEY or "
                            "`wandb login`), not an identity token.")
        try:
            answer = self._http.post(url, json=body, auth=("api", self._secret), timeout=FILE_STREAM_TIMEOUT)
            answer.raise_for_status()
        except requests.RequestException as exc:
            self._raise(exc, doing)

    def delete_files(self, run: LiveRun, file_ids: Sequence[str]) -> None:
        """Delete these files with one deleteFiles request (the client sends one per file)."""
        if not file_ids:
            return
        # projectId must be the numeric id: a base64 one gets a 500 (wandb/wandb#9338).
        variables = {"files": list(file_ids), "projectId": run.project_internal_id}
        self._execute(DELETE_FILES_MUTATION, variables, f"delete files of {run.path}")

    def download_file(self, run: LiveRun, file: LiveFile, dest: Path) -> None:
        """Download through wandb-core (as ``File.download`` does) and check the size."""
        if not file.url:
            raise BackendError(f"W&B gave no download URL for {file.name} of {run.path}.")
        # Absolute: wandb-core writes it, and its working directory need not be ours.
        partial = dest.absolute().with_name(f".{dest.name}.partial")
        # The request File.download sends; wandb-core adds auth for base_url hosts (§6.2).
        request = apb.ApiRequest(  # type: ignore[attr-defined]  # generated protobuf module
            download_file_request=apb.DownloadFileRequest(  # type: ignore[attr-defined]
                path=str(partial), url=file.url, size=file.size))
        try:
            self._client().send_api_request(request)
        except Exception as exc:
            partial.unlink(missing_ok=True)
            self._raise(exc, f"download {file.name} of {run.path}")
        got = partial.stat().st_size if partial.exists() else -1
        if got != file.size:
            partial.unlink(missing_ok=True)
            gave = pluralize(got, "byte") if got >= 0 else "no file"
            raise RetryableError(f"download of {file.name} from {run.path} gave {gave}, expected "
                                 f"{file.size}; try again.")
        os.replace(partial, dest)

    def upload_file(self, run: LiveRun, source: Path, name: str) -> None:
        """Upload ``source`` as run file ``name`` through the client's ``run.upload_file``."""
        upload_name(name)
        with tempfile.TemporaryDirectory(prefix="reconcile-upload-") as root:
            # run.upload_file names the file relpath(path, root) and re-reads it by that
            # name (protocol §7), so stage it at <root>/<name>.
            staged = Path(root, name)
            if Path(root).resolve() not in staged.resolve().parents:
                raise BackendError(f"refusing to upload {name!r}: the name leaves the run directory.")
            staged.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, staged)
            attrs = {"id": run.storage_id, "name": run.id, "state": run.state,
                     "projectId": run.project_internal_id}
            try:
                # Built from what we already read: api.run() would spend a Run query.
                handle = Run(self._client(), run.entity, run.project, run.id, attrs, lazy=True)
                handle.upload_file(str(staged), root=root)
            except Exception as exc:
                self._raise(exc, f"upload {name} to {run.path}")

    def upload_files(self, run: LiveRun, files: Sequence[tuple[Path, str]]) -> None:
        """Upload each ``(source, name)`` as ``run.upload_file`` does (protocol §7), with one CreateRunFiles
        for all of them: wandb-core PUTs each file to its upload URL (with the answer's headers, and auth
        only on the base_url host), then MarkRunFilesUploaded names them all where the server asks for
        it. The files are not listed again here: the caller reads the run back."""
        if not files:
            return
        names = [upload_name(name) for _, name in files]
        doing = f"upload {pluralize(len(files), 'file')} to {run.path}"
        variables = {"entity": run.entity, "project": run.project, "run": run.id, "files": names}
        data = self._execute(CREATE_RUN_FILES_MUTATION, variables, doing)
        result = (data or {}).get("createRunFiles") or {}
        if not result.get("runID"):
            raise BackendError(f"W&B did not accept uploads to {run.path}: check that the run exists and "
                               "that your key can write to its project.")
        urls = {f.get("name"): f.get("uploadUrl") for f in result.get("files") or ()}
        headers = dict(h.split(":", 1) for h in result.get("uploadHeaders") or ())
        client = self._client()
        for (source, _), name in zip(files, names, strict=True):
            url = urls.get(name)
            if not url:
                raise BackendError(f"W&B gave no upload URL for {name} of {run.path}; try again.")
            if url.startswith("/"):
                url = f"{self.base_url}{url}"
            request = apb.ApiRequest(  # type: ignore[attr-defined]  # generated protobuf module
                upload_file_request=apb.UploadFileRequest(  # type: ignore[attr-defined]
                    url=url, path=str(source.absolute()), headers=headers))
            try:
                client.send_api_request(request)
            except Exception as exc:
                self._raise(exc, f"upload {name} to {run.path}")
        try:
            if client.feature_enabled(ipb.MARK_RUN_FILES_UPLOADED):  # type: ignore[attr-defined]
                client.send_api_request(apb.ApiRequest(  # type: ignore[attr-defined]
                    mark_run_files_uploaded_request=apb.MarkRunFilesUploadedRequest(  # type: ignore[attr-defined]
                        entity=run.entity, project=run.project, run_id=run.id, files=names)))
        except Exception as exc:
            self._raise(exc, doing)

    # ------------------------------------------------------------------ artifacts

    def list_artifacts(self, run: LiveRun) -> tuple[LiveArtifact, ...]:
        """The versions the run logged through the client's RunOutputArtifacts (``run.logged_artifacts``)."""
        variables: dict[str, Any] = {"entity": run.entity, "project": run.project, "run": run.id,
                                     "cursor": None, "perPage": self.files_per_page}
        found: list[LiveArtifact] = []
        while True:
            data = self._execute(RUN_OUTPUT_ARTIFACTS_GQL, variables, f"list the artifacts of {run.path}")
            run_data = ((data or {}).get("project") or {}).get("run")
            if run_data is None:
                raise NotFound(f"run {run.path} not found: check the entity, project and run id.")
            connection = run_data.get("artifacts") or {}
            edges = connection.get("edges") or []
            found.extend(parse_artifact(e["node"]) for e in edges
                         if e.get("node") and e["node"].get("state") != "DELETED")
            page = connection.get("pageInfo") or {}
            if not edges or not page.get("hasNextPage"):
                return tuple(found)
            variables["cursor"] = page.get("endCursor")

    def get_artifact(self, run: LiveRun, artifact_id: str) -> LiveArtifact | None:
        """A fresh read of one version through the client's ArtifactByID."""
        data = self._execute(ARTIFACT_BY_ID_GQL, {"id": artifact_id},
                             f"read artifact {artifact_id} of {run.path}")
        node = (data or {}).get("artifact")
        return None if node is None or node.get("state") == "DELETED" else parse_artifact(node)

    def delete_artifact(self, run: LiveRun, artifact: LiveArtifact, *, delete_aliases: bool) -> None:
        """``artifact.delete(delete_aliases=...)``: the client's DeleteArtifact mutation."""
        variables = {"input": {"artifactID": artifact.id, "deleteAliases": delete_aliases}}
        self._execute(DELETE_ARTIFACT_GQL, variables, f"delete artifact {artifact.name} of {run.path}")

    def set_artifact_ttl(self, run: LiveRun, artifact: LiveArtifact, ttl: VersionTTL) -> None:
        """``artifact.ttl = ...; artifact.save()``: the client's UpdateArtifact with only the fields that
        change (the client itself leaves out the ones it has no value for)."""
        variables = {"input": {"artifactID": artifact.id, "ttlDurationSeconds": ttl.to_wire()}}
        self._execute(UPDATE_ARTIFACT_GQL, variables,
                      f"set the TTL of artifact {artifact.name} of {run.path}")

    def download_artifact(self, run: LiveRun, artifact: LiveArtifact, dest: Path) -> list[tuple[str, int]]:
        """Every file of the version (the client's GetArtifactMembershipFileUrls), each size-checked."""
        variables: dict[str, Any] = {"entity": run.entity, "project": run.project,
                                     "collection": artifact.collection, "alias": f"v{artifact.version_index}",
                                     "cursor": None, "perPage": self.files_per_page}
        done: list[tuple[str, int]] = []
        # Downloads in flight go beside ``dest``, never inside it: no member's name can reach them.
        partials = Path(tempfile.mkdtemp(prefix=".partials-", dir=dest.absolute().parent))
        try:
            while True:
                data = self._execute(GET_ARTIFACT_MEMBERSHIP_FILE_URLS_GQL, variables,
                                     f"list the files of artifact {artifact.name}")
                collection = ((data or {}).get("project") or {}).get("artifactCollection") or {}
                files = (collection.get("artifactMembership") or {}).get("files") or {}
                edges = files.get("edges") or []
                for edge in edges:
                    name, url = edge["node"]["name"], edge["node"]["directUrl"]
                    target = dest / name
                    if dest.resolve() not in target.resolve().parents:
                        raise BackendError(f"refusing to back up {name!r} of {artifact.name}: the name "
                                           "leaves the backup directory.")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    done.append((name, self._download_url(url, target, f"{name} of artifact {artifact.name}",
                                                          partials / f"{len(done)}.partial")))
                page = files.get("pageInfo") or {}
                if not edges or not page.get("hasNextPage"):
                    return done
                variables["cursor"] = page.get("endCursor")
        finally:
            shutil.rmtree(partials, ignore_errors=True)

    def _download_url(self, url: str, dest: Path, what: str, partial: Path) -> int:
        """Download ``url`` through wandb-core to ``partial``, then move it to ``dest``; the byte count."""
        partial = partial.absolute()
        request = apb.ApiRequest(  # type: ignore[attr-defined]  # generated protobuf module
            download_file_request=apb.DownloadFileRequest(path=str(partial), url=url))  # type: ignore[attr-defined]
        try:
            self._client().send_api_request(request)
        except Exception as exc:
            partial.unlink(missing_ok=True)
            self._raise(exc, f"download {what}")
        if not partial.exists():
            raise RetryableError(f"download of {what} gave no file; try again.")
        os.replace(partial, dest)
        return dest.stat().st_size

    # ------------------------------------------------------------------ internals

    def _client(self) -> Any:
        """The Api's GraphQL executor (wandb 0.31: ``ServiceApi``, routed through wandb-core)."""
        if self._api is None:
            raise BackendError("this W&B backend is closed.")
        return self._api._service_api

    def _execute(self, document: str, variables: Mapping[str, Any], doing: str) -> Any:
        """Run one GraphQL document; returns its ``data``; errors become ours."""
        try:
            return self._client().execute_graphql(document, dict(variables))
        except Exception as exc:
            self._raise(exc, doing)

    def _run_pages(self, entity: str, project: str, filters: Mapping[str, Any],
                   per_page: int, with_files: bool, *, prefetch: bool = False) -> Iterator[LiveRun]:
        """Page through the Runs query by the last edge's cursor (protocol §2).

        ``prefetch``: the next page is requested (on a helper thread) before this page's runs are
        yielded, so the server prepares it while the caller plans.
        """
        variables: dict[str, Any] = {
            "project": project, "entity": entity, "order": RUNS_ORDER,
            "filters": json.dumps(filters), "perPage": per_page, "cursor": None,
        }
        if with_files:
            variables["fileLimit"] = self.files_per_run
        document = runs_query(with_files=with_files)

        def fetch(cursor: str | None) -> Mapping[str, Any]:
            doing = f"list runs of {entity}/{project}"
            data = self._execute(document, {**variables, "cursor": cursor}, doing)
            project_data = (data or {}).get("project")
            if project_data is None:
                raise NotFound(f"project {entity}/{project} not found: check the entity and "
                               "project names and that your key can see them.")
            runs: Mapping[str, Any] = project_data.get("runs") or {}
            return runs

        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="runs-page") if prefetch else None
        try:
            page = fetch(None)
            while True:
                edges = page.get("edges") or []
                # The client re-sends cursor null on an empty page and loops; we stop.
                more = bool(edges) and bool((page.get("pageInfo") or {}).get("hasNextPage"))
                ahead = pool.submit(fetch, edges[-1]["cursor"]) if more and pool is not None else None
                for edge in edges:
                    yield self._live_run(entity, project, edge["node"], with_files)
                if not more:
                    return
                page = ahead.result() if ahead is not None else fetch(edges[-1]["cursor"])
        finally:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    def _live_run(self, entity: str, project: str, node: Mapping[str, Any], with_files: bool) -> LiveRun:
        """A Runs node as a LiveRun; with files, all of them (RunFiles continues past the first page)."""
        run = parse_run(entity, project, node)
        if not with_files:
            return run
        files, more = _parse_files(node.get("files"))
        if more is not None:  # more files than one page holds: continue with RunFiles
            files.extend(self._file_pages(run, more))
        return dataclasses.replace(run, files=tuple(files))

    def _raise(self, exc: BaseException, doing: str) -> NoReturn:
        """Translate a wandb/requests failure into a ``reconcile.errors`` one."""
        raise translate_error(exc, doing, secrets=(self._secret,), base_url=self.base_url) from exc


# ---------------------------------------------------------------------- parsing


def parse_run(entity: str, project: str, node: Mapping[str, Any]) -> LiveRun:
    """A Runs/Run node with the full RunFragment as a ``LiveRun``.

    Config is unwrapped from ``{"value": v}`` exactly once and keeps ``_wandb`` (the
    client's ``lazy=False`` path unwraps twice and drops it, protocol §12.1).
    """
    raw_config = _json_object(node.get("config"))
    config = {k: v["value"] if isinstance(v, dict) and "value" in v else v
              for k, v in raw_config.items()}
    project_id = node.get("projectId")
    return LiveRun(
        entity=entity,
        project=project,
        id=node["name"],
        storage_id=node["id"],
        name=node.get("displayName"),
        state=node.get("state") or "not found",
        created_at=parse_time(node.get("createdAt")),
        config=config,
        summary=_json_object(node.get("summaryMetrics")),
        tags=tuple(node.get("tags") or ()),
        group=node.get("group"),
        job_type=node.get("jobType"),
        notes=node.get("notes"),
        project_internal_id=int(project_id) if project_id is not None else None,
    )


def parse_history_position(node: Mapping[str, Any]) -> HistoryPosition:
    """historyLineCount and the ``_step`` of the last historyTail line (a JSON list of JSON rows)."""
    lines = int(node.get("historyLineCount") or 0)
    last_step: int | None = None
    tail = node.get("historyTail")
    rows = json.loads(tail) if isinstance(tail, str) and tail else tail or []
    if rows:
        last = rows[-1]
        row = json.loads(last) if isinstance(last, str) else last
        step = row.get("_step") if isinstance(row, dict) else None
        last_step = step if isinstance(step, int) and not isinstance(step, bool) else None
    events = int(node.get("eventsLineCount") or 0)
    return HistoryPosition(lines=lines, last_step=last_step, events_lines=events)


def parse_artifact(node: Mapping[str, Any]) -> LiveArtifact:
    """A LiveArtifact from the client's ArtifactFragment."""
    return LiveArtifact(
        id=node["id"], collection=(node.get("artifactSequence") or {}).get("name") or "",
        type=(node.get("artifactType") or {}).get("name") or "",
        version_index=int(node.get("versionIndex") or 0),
        size=int(node.get("size") or 0), created_at=parse_time(node.get("createdAt")),
        aliases=tuple(sorted(a["alias"] for a in node.get("aliases") or [] if a and a.get("alias"))),
        ttl=VersionTTL.from_wire(node.get("ttlDurationSeconds"), bool(node.get("ttlIsInherited"))),
    )


def _parse_files(connection: Mapping[str, Any] | None) -> tuple[list[LiveFile], str | None]:
    """A FileConnection's files, and the cursor to continue from if it has more (else None)."""
    edges = (connection or {}).get("edges") or []
    files = [_parse_file(edge["node"]) for edge in edges]
    more = edges and ((connection or {}).get("pageInfo") or {}).get("hasNextPage")
    return files, (edges[-1]["cursor"] if more else None)


def _parse_file(node: Mapping[str, Any]) -> LiveFile:
    """A RunFiles node as a ``LiveFile`` (download URL: ``url``, as ``File.download`` uses)."""
    return LiveFile(
        id=node["id"],
        name=node["name"],
        size=int(node.get("sizeBytes") or 0),
        updated_at=parse_time(node.get("updatedAt")),
        url=node.get("url"),
        md5=node.get("md5"),
    )


def parse_time(value: str | None) -> datetime:
    """W&B's ISO timestamps (zone-less means UTC, protocol §13.9) as aware UTC."""
    if not value:
        return datetime.fromtimestamp(0, timezone.utc)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def _json_object(value: Any) -> dict[str, Any]:
    """A JSON-string (or already decoded) object as a dict, like the client's _convert_to_dict."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return value
    try:
        decoded = json.loads(value)
    except json.JSONDecodeError:
        decoded = json.loads(value, strict=False)  # control characters, as the client allows
    return decoded if isinstance(decoded, dict) else {}


# ---------------------------------------------------------------------- the service process


def _bound_service_exit() -> None:
    """Make the process end promptly, whatever wandb-core is doing: once wandb.Api has started
    wandb-core (and registered wandb's own exit hook, which waits for it without a limit),
    register ``_end_service`` to run before it (atexit runs hooks last registered first; registered
    again on each connect, so it stays after the hook of a service started since)."""
    atexit.unregister(_end_service)
    atexit.register(_end_service)


def _teardown_quietly() -> None:
    """wandb.teardown, whose failure at exit has nothing left to tell (the process is ending)."""
    with contextlib.suppress(Exception):
        wandb.teardown()


def _end_service(wait: float = SERVICE_EXIT_WAIT) -> None:
    """At exit: tear wandb-core down as wandb does, but end it after ``wait`` seconds, or at once on
    Ctrl-C, instead of waiting for ever. wandb-core keeps retrying requests to a server that answers
    5xx (and flushes its own metrics there) before it exits, which held the process for minutes; a
    Ctrl-C in wandb's exit hook printed a traceback. reconcile leaves no work in wandb-core (its
    writes are synchronous requests, already answered), so ending it loses nothing."""
    setup = wandb_setup._singleton  # wandb's only handle on the service it started
    connection = getattr(setup, "_connection", None) if setup is not None else None
    if setup is None or getattr(setup, "_pid", None) != os.getpid() or connection is None:
        return
    process = getattr(getattr(connection, "_proc", None), "_process", None)
    if process is None or getattr(connection, "_torn_down", False):  # not ours to end, or ended already
        return

    def end(*_: object) -> None:
        if process.poll() is None:
            process.kill()

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, end) if main_thread else None
    try:
        # wandb.teardown: the teardown message, then wandb-core's exit (it unregisters wandb's hook)
        ender = threading.Thread(target=_teardown_quietly, name="wandb-teardown", daemon=True)
        ender.start()
        ender.join(wait)
        end()
        ender.join(wait)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


# ---------------------------------------------------------------------- errors


def _check_url(url: str) -> str:
    """``url`` if it is an http(s) URL; otherwise a BackendError saying what to set."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BackendError(f"WANDB_BASE_URL {url!r} is not an http(s) URL; set it to e.g. "
                           "https://api.wandb.ai, or http://127.0.0.1:8080 for the emulator")
    return url.strip()


def check_reachable(base_url: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Open (and close) one TCP connection to the server of ``base_url``; a BackendError saying
    what went wrong (refused, unknown host, no answer) if that fails.

    Skipped when a proxy carries the requests: then only the proxy can reach the server.
    """
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if _proxied(parts.scheme, host):
        return
    where = f"{host}:{port}"
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except ConnectionRefusedError as exc:
        raise BackendError(f"cannot connect to W&B at {base_url}: connection refused (nothing is listening "
                           f"on {where}). Check WANDB_BASE_URL and that the server is running.") from exc
    except socket.gaierror as exc:
        raise BackendError(f"cannot connect to W&B at {base_url}: the host {host!r} is unknown "
                           f"({exc.strerror}). Check WANDB_BASE_URL.") from exc
    except TimeoutError as exc:
        raise BackendError(f"cannot connect to W&B at {base_url}: {where} did not accept a connection within "
                           f"{timeout:g} s. Check WANDB_BASE_URL, the network and any firewall.") from exc
    except OSError as exc:
        raise BackendError(f"cannot connect to W&B at {base_url}: {exc.strerror or exc}. Check "
                           "WANDB_BASE_URL and the network.") from exc


def _proxied(scheme: str, host: str) -> bool:
    """Whether requests to ``host`` go through a proxy (environment or wandb settings)."""
    if any(os.environ.get(name) for name in ("WANDB_HTTP_PROXY", "WANDB_HTTPS_PROXY", "WANDB__PROXIES")):
        return True
    proxies = urllib.request.getproxies()
    return bool(proxies.get(scheme) or proxies.get("all")) and not urllib.request.proxy_bypass(host)


def _stored_api_key(base_url: str) -> str | None:
    """The key W&B would use for ``base_url`` (env, netrc, settings) without prompting."""
    try:
        auth = wbauth.authenticate_session(host=base_url, source="reconcile", prompt=False,
                                           update_session=False)
    except AuthenticationError as exc:
        raise AuthError(f"the W&B API key is not valid: {_redacted(str(exc), ()).rstrip('.')}. "
                        f"{_KEY_HINT}") from exc
    if auth is None:
        raise AuthError(f"no W&B API key found for {base_url}. {_KEY_HINT}")
    # An identity-token login has no key: wandb.Api() picks it up again by itself.
    return str(auth.api_key) if isinstance(auth, wbauth.AuthApiKey) else None


def _redacted(message: str, secrets: Sequence[str | None]) -> str:
    """``message`` without any of ``secrets`` (raw or as the Basic-auth token)."""
    for secret in secrets:
        if secret:
            token = base64.b64encode(f"api:{secret}".encode()).decode()
            message = message.replace(secret, "***").replace(token, "***")
    return message.strip()


def translate_error(exc: BaseException, doing: str, *, secrets: Sequence[str | None] = (),  # noqa: PLR0912 - one case each
                    connecting: bool = False, base_url: str | None = None) -> BackendError:
    """The ``reconcile.errors`` exception for a wandb/requests failure while ``doing``.

    wandb-core has already retried 429/5xx (honouring Retry-After), so a RetryableError
    here means its retries ran out ("giving up after") or a timeout fired; ``status`` is
    None for a timeout, when the request may or may not have been applied. Only an HTTP
    401 (or a key wandb itself finds malformed) blames the API key. ``connecting``: the
    first request to the server, where an HTTP 404 means the base URL is wrong.

    ``base_url``: after a timeout, one plain request of our own to that server says what it answers
    (wandb-core retries a 5xx for longer than the client waits and then reports only a busy service).
    """
    if isinstance(exc, BackendError):
        return exc
    cause = _transport_cause(exc)
    message = getattr(exc, "message", None) or str(exc)
    status: int | None = None
    timed_out = False
    if isinstance(cause, WandbApiFailedError):
        timed_out = cause.response is None  # the Python-side timeout (protocol §9)
        message = str(cause)
        if cause.response is not None:
            status = cause.response.http_status or None
            message = cause.response.message or message
    elif isinstance(cause, requests.HTTPError) and cause.response is not None:
        status = cause.response.status_code
    elif isinstance(cause, (requests.ConnectionError, requests.Timeout)):
        timed_out = True
    message = _shortened(_redacted(message, secrets) or type(exc).__name__).rstrip(".")
    if status is None and (match := _HTTP_CODE.search(message)):
        status = int(match.group(1))  # "giving up after N attempt(s) ... HTTP 503: ..."
    lowered = message.lower()
    timed_out = timed_out or (status is None and any(m in lowered for m in _TIMEOUT_MARKERS))
    what = f"while trying to {doing}: {message}"
    if status is None and "connection refused" in lowered:
        # Nothing listens there: the request was never received, so trying again is safe.
        return RetryableError(f"W&B refused the connection {what}. Check WANDB_BASE_URL and that the "
                              "server is up.")
    if status is None and not timed_out and any(m in lowered for m in _DROPPED_MARKERS):
        return RetryableError(f"the connection to W&B broke {what}. Try again.")
    if status is None and not timed_out and _NOT_GRAPHQL.search(message):
        return BackendError(f"the server did not answer like W&B's API {what}. Check WANDB_BASE_URL: it is "
                            "the server's address without a path (e.g. https://api.wandb.ai).")
    key_check = isinstance(exc, (AuthenticationError, UsageError)) and cause is exc
    if connecting and status == 404:
        return BackendError(f"no W&B API at this address (HTTP 404) {what}. Check WANDB_BASE_URL: it is "
                            "the server's address without a path (e.g. https://api.wandb.ai).", status=404)
    if timed_out and status is None and base_url is not None:
        diagnosed = _diagnosed_timeout(base_url, doing)
        if diagnosed is not None:
            return diagnosed
    error = _classify(status, timed_out, key_check, what)
    if type(error) is BackendError:
        error.refusal = message  # the server answered and said no: its words, for the caller to place
    return error


def answer_of(base_url: str, timeout: float = DIAGNOSIS_TIMEOUT) -> tuple[int, str] | None:
    """The HTTP status and body that the server at ``base_url`` gives one plain GraphQL request
    (``DIAGNOSIS_QUERY``, no credentials, to ``/graphql`` as the client sends): ``(0, "")`` if it
    gives no answer within ``timeout``, None if the request fails otherwise (the error already says why).
    """
    try:
        with requests.post(f"{base_url.rstrip('/')}/graphql", json={"query": DIAGNOSIS_QUERY},
                           timeout=timeout, stream=True) as answer:
            body = answer.raw.read(2048, decode_content=True) or b""
            return answer.status_code, body.decode("utf-8", errors="replace")
    except (requests.Timeout, urllib3.exceptions.TimeoutError):
        return 0, ""
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError):
        # urllib3's own errors (a body cut short: ProtocolError) come from reading ``raw`` directly
        return None


def _diagnosed_timeout(base_url: str, doing: str) -> RetryableError | None:
    """The error that says what the server answers when the client timed out while ``doing``, if that
    explains it: an HTTP 5xx or 429 (wandb-core retries those until the client gives up waiting, then
    reports only a busy service process), or no answer at all. None: the answer explains nothing."""
    answer = answer_of(base_url)
    if answer is None:
        return None
    status, body = answer
    asked = "W&B's client retried until its timeout; reconcile then asked the server once itself"
    if status == 0:
        return RetryableError(f"W&B did not answer in time while trying to {doing}. {asked}: {base_url} "
                              "accepted the request but gave no answer within "
                              f"{DIAGNOSIS_TIMEOUT:g} s either. Check that the server is up, then try again "
                              "(WANDB_HTTP_TIMEOUT raises the timeout).")
    if status != 429 and status < 500:
        return None
    try:
        reason = f" ({http.HTTPStatus(status).phrase})"
    except ValueError:
        reason = ""
    said = _shortened(body).rstrip(".") or "an empty body"
    return RetryableError(f"the server at {base_url} answered HTTP {status}{reason} while trying to "
                          f"{doing}: {said}. {asked}. The server, or a proxy in front of it, is failing: "
                          "check WANDB_BASE_URL and any proxy, then try again later.")


def _shortened(message: str, limit: int = 300) -> str:
    """A server message fit for one error line (an HTML error page is cut short)."""
    text = " ".join(message.split()) if message.lstrip().startswith("<") else message.strip()
    return text if len(text) <= limit else text[:limit].rstrip() + "..."


def _transport_cause(exc: BaseException) -> BaseException:
    """The wandb-core/requests failure behind ``exc`` (CommError.exc, or ``raise ... from``)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (WandbApiFailedError, requests.RequestException)):
            return current
        inner = getattr(current, "exc", None) if isinstance(current, CommError) else None
        current = inner if isinstance(inner, BaseException) else current.__cause__
    return exc


def _classify(status: int | None, timed_out: bool, key_check: bool, what: str) -> BackendError:
    """Pick the error class from the HTTP status and the kind of failure."""
    if timed_out:
        return RetryableError(f"W&B did not answer in time {what}. Check WANDB_BASE_URL and that the "
                              "server is up, then try again (WANDB_HTTP_TIMEOUT raises the timeout).")
    if status == 401 or (status is None and key_check):
        code = " (HTTP 401)" if status else ""
        return AuthError(f"W&B rejected the API key{code} {what}. Check WANDB_API_KEY (or run "
                         "`wandb login`) for this WANDB_BASE_URL.", status=status)
    if status == 403:
        return AuthError(f"W&B denied access (HTTP 403) {what}. The key was accepted but may not do this: "
                         "check the entity and project and your role in them.", status=status)
    if status == 429 or (status is not None and status >= 500) or "giving up after" in what:
        code = f" (HTTP {status})" if status else ""
        return RetryableError(f"W&B failed{code} {what}. The server is having trouble; try again later.",
                              status=status)
    if status == 404 or "not found" in what.lower() or "could not find" in what.lower():
        return NotFound(f"not found {what}", status=status)
    return BackendError(f"W&B refused the request {what}", status=status)
