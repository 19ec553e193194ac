"""Compact the tail pipeline's raw NDJSON into WorkerLogs Parquet, partitioned by event time.

Upstream (upstream-format.md §8) has TailDO write ``raw-events/{epochMs}-{doId}-{batchSeq}.ndjson``
and a queue consumer turn each file into ``logs/workers/year=/month=/day=/hour=/logs-{ms}.parquet``.
This module does the same job, with four differences on purpose:

* ``eventTimestamp`` and ``timestamp`` are real Parquet ``TIMESTAMP(MILLIS, UTC)``
  (INT64) columns, not wrapped INT32;
* the ``year=/month=/day=/hour=`` partition is the trace's **event** time
  (``eventTimestamp``), not the flush time, so a query on a time range reads
  only the hours it names;
* each file is immutable and uniquely named
  ``logs-{flushMs}-{batchId}-{n}.parquet``, sorted by hour then ``timestamp``,
  in row groups of :data:`ROW_GROUP_ROWS` and at most :data:`MAX_FILE_ROWS` rows;
* ``id`` is deterministic (``{traceId}-{n}``, where ``traceId`` is the trace's
  ``TailEvents`` id, see :func:`parquedb_ibis.tail.ingest.trace_key`), and the
  ``traceId`` column is added. ``fetchCount`` counts ``diagnosticsChannelEvents``
  (upstream's queue path always writes 0).

Rows: one per console log, one per exception (level ``error``, message
``"{name}: {message}"``), and one synthetic row for a trace with neither
(level ``info`` if the outcome is ``ok``, else ``error``; message
``"Worker execution: {outcome}"``), as upstream's WorkerLogsMV does.

**Exactly once per raw file.** Which raw files were compacted is recorded in
marker objects ``{out_prefix}_compaction/{YYYY-MM-DDTHH}.json``, one per hour
of the raw files' names, published by compare-and-swap (``put_if_absent``,
then ``put_if_match`` on the ETag read). A compactor writes its Parquet files
first, then commits the marker; when the swap loses and another compactor
took some of the same raw files, it deletes its own files and redoes only what
is left. Before writing, it records the names it will write in
``{out_prefix}_compaction/pending/{batchId}.json``; a later run deletes the
files of a batch that never committed (a crashed compactor) once that record
is older than ``stale_after``. Raw files are kept unless ``delete_raw=True``;
they are deleted only after the commit that covers them.

Raw files are parsed by DuckDB's ``read_json`` with a fixed column list; one
query (:data:`_TRACES`) gives one row per trace with its ``traceId`` and its
logs and exceptions as typed lists, and :func:`_explode` turns those into the
sorted WorkerLogs rows with pyarrow, without a Python loop over rows. A batch
in which any line is not valid JSON or not a valid TraceItem is parsed again
line by line in Python, so every bad line is counted and written to the
dead-letter file with its reason and line number, and every good one is kept.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from parquedb_ibis.upstream.readers import WORKER_LOGS_SCHEMA as UPSTREAM_WORKER_LOGS
from parquedb_ibis.errors import (
    CommitConflictError,
    ObjectNotFoundError,
    PreconditionFailedError,
    StorageError,
    ValidationError,
)
from parquedb_ibis.store import connect_duckdb
from parquedb_ibis.store.objectstore import ObjectInfo, ObjectStore
from parquedb_ibis.tail.ingest import MAX_ERRORS, DeadLetters, is_header, normalize_item
from parquedb_ibis.writer.ids import new_ulid

RAW_PREFIX = "raw-events/"
OUT_PREFIX = "logs/workers/"
#: Compaction state (markers, pending batches) lives here, below ``out_prefix``.
STATE_DIR = "_compaction/"
#: Parquet row-group size and the most rows one output file holds.
ROW_GROUP_ROWS = 100_000
MAX_FILE_ROWS = 1_000_000
#: Raw files compacted together (one commit): at most this many files or bytes.
MAX_BATCH_FILES = 2_000
MAX_BATCH_BYTES = 512 << 20
#: A pending batch older than this with no commit belongs to a crashed compactor.
STALE_AFTER = dt.timedelta(hours=1)
#: Threads for object-store I/O (marker reads and swaps, Parquet encoding and uploads).
IO_THREADS = 4
#: How often a commit is retried after losing the marker swap.
MAX_COMMIT_ATTEMPTS = 20
#: Marker format version.
MARKER_FORMAT = 1

#: The WorkerLogs columns we write: upstream's (§8.2, real timestamps) plus ``traceId``, without the reader's
#: provenance columns (``flushedAt``, ``file``).
WORKER_LOGS_SCHEMA = pa.schema([
    UPSTREAM_WORKER_LOGS.field("id"),
    ("traceId", pa.string()),
    *(UPSTREAM_WORKER_LOGS.field(n) for n in UPSTREAM_WORKER_LOGS.names[1:] if n not in ("flushedAt", "file")),
])

#: R2 event-notification types that create an object (``eventType`` in upstream's queue, ``action`` in R2's payload).
CREATE_EVENTS = frozenset({"object-create", "PutObject", "CopyObject", "CompleteMultipartUpload"})

_RAW_NAME = re.compile(r"(?:^|/)(?P<ms>\d{10,16})-[^/]*\.ndjson$")
_HOUR_MS = 3_600_000

# -- DuckDB: the TraceItem columns and the flattening query (constant SQL; values are bound or registered) --

#: The TraceItem fields compaction reads, as DuckDB types (the ``columns`` of ``read_json``).
TRACE_COLUMNS: dict[str, str] = {
    "doId": "JSON",
    "scriptName": "JSON",
    "outcome": "JSON",
    "eventTimestamp": "JSON",
    "event": 'STRUCT(request STRUCT(url VARCHAR, method VARCHAR, headers STRUCT("cf-ray" VARCHAR), '
             "cf STRUCT(colo VARCHAR, country VARCHAR)), response STRUCT(status JSON), "
             "scheduledTime JSON, cron VARCHAR, queue VARCHAR)",
    "logs": 'STRUCT("timestamp" JSON, level VARCHAR, message JSON)[]',
    "exceptions": 'STRUCT(name VARCHAR, message VARCHAR, "timestamp" JSON)[]',
    "diagnosticsChannelEvents": "JSON[]",
}

_MACROS = (
    # epoch ms of a JSON number (ms) or ISO-8601 string, NULL otherwise (as ingest.to_epoch_ms). Each WHEN
    # calls json_type again, so the usual case (an integer, cast exactly) comes first.
    """CREATE OR REPLACE TEMP MACRO tail_ms(j) AS CASE
        WHEN json_type(j) = 'BIGINT' THEN TRY_CAST(j AS BIGINT)
        WHEN json_type(j) = 'VARCHAR' THEN epoch_ms(TRY_CAST(json_extract_string(j, '$') AS TIMESTAMPTZ))
        WHEN json_type(j) IN ('UBIGINT', 'DOUBLE') THEN TRY_CAST(floor(TRY_CAST(j AS DOUBLE)) AS BIGINT)
    END""",
)

#: The fast source: the rows of ``read_json`` (registered as ``tail_json``).
_FAST_SOURCE = """CREATE OR REPLACE TEMP VIEW tail_source AS
SELECT filename AS url, CAST(NULL AS BIGINT) AS lineno, TRUE AS converted, doId, scriptName, outcome,
       eventTimestamp, event, logs, exceptions, diagnosticsChannelEvents
FROM tail_json"""

#: The line-by-line source: lines already validated in Python (registered as ``tail_lines``).
_SLOW_SOURCE = """CREATE OR REPLACE TEMP VIEW tail_source AS
SELECT url, lineno, t IS NOT NULL AS converted, t.doId AS doId, t.scriptName AS scriptName, t.outcome AS outcome,
       t.eventTimestamp AS eventTimestamp, t.event AS event, t.logs AS logs, t.exceptions AS exceptions,
       t.diagnosticsChannelEvents AS diagnosticsChannelEvents
FROM (SELECT url, lineno, TRY_CAST(TRY_CAST(line AS JSON) AS STRUCT(
        "doId" JSON, "scriptName" JSON, "outcome" JSON, "eventTimestamp" JSON,
        "event" STRUCT(request STRUCT(url VARCHAR, method VARCHAR, headers STRUCT("cf-ray" VARCHAR),
                       cf STRUCT(colo VARCHAR, country VARCHAR)), response STRUCT(status JSON),
                       scheduledTime JSON, cron VARCHAR, queue VARCHAR),
        "logs" STRUCT("timestamp" JSON, level VARCHAR, message JSON)[],
        "exceptions" STRUCT(name VARCHAR, message VARCHAR, "timestamp" JSON)[],
        "diagnosticsChannelEvents" JSON[])) AS t
      FROM tail_lines)"""

#: One row per trace (headers dropped): its file, line, validity, WorkerLogs columns, trace id (ingest.trace_key,
#: in SQL) and its logs and exceptions as typed lists; Python explodes them into rows (see :func:`_explode`).
#: The lambdas read only their element, never an outer column, so a missing log timestamp stays NULL here
#: and becomes the trace's time in :func:`_explode`. The id reads the first log's and exception's time from
#: the typed lists, so each timestamp is parsed once. The query is read with ``con.sql(...).to_arrow_table()``,
#: which collects Arrow batches on every thread (``execute().to_arrow_table()`` converts on one).
_TRACES = """WITH t AS (
    SELECT
        f.file,
        s.lineno,
        coalesce(s.converted
                 AND json_type(s.outcome) = 'VARCHAR'
                 AND coalesce(json_type(s.scriptName), 'NULL') IN ('NULL', 'VARCHAR')
                 AND (coalesce(json_type(s.eventTimestamp), 'NULL') = 'NULL'
                      OR tail_ms(s.eventTimestamp) BETWEEN -62135596800000 AND 253402300799999), FALSE) AS valid,
        coalesce(nullif(s.scriptName ->> '$', ''), 'unknown') AS scriptName,
        s.outcome ->> '$' AS outcome,
        tail_ms(s.eventTimestamp) AS event_ms_raw,
        f.fallback_ms,
        s.event.request.method AS httpMethod,
        s.event.request.url AS httpUrl,
        TRY_CAST(s.event.response.status AS INTEGER) AS httpStatus,
        s.event.request.cf.colo AS colo,
        s.event.request.cf.country AS country,
        s.event.request.headers."cf-ray" AS requestId,
        s.event.cron AS cron,
        tail_ms(s.event.scheduledTime) AS scheduled_ms,
        s.event.queue AS queue,
        list_transform(coalesce(s.logs, []), lambda l: {
            'ts_ms': tail_ms(l."timestamp"),
            'level': coalesce(l.level, 'log'),
            'message': CASE json_type(l.message) WHEN 'VARCHAR' THEN l.message ->> '$' ELSE CAST(l.message AS VARCHAR) END
        }) AS logs,
        list_transform(coalesce(s.exceptions, []), lambda e: {
            'ts_ms': tail_ms(e."timestamp"),
            'message': coalesce(e.name, 'Error') || ': ' || coalesce(e.message, ''),
            'name': e.name
        }) AS exceptions,
        CAST(len(coalesce(s.diagnosticsChannelEvents, [])) AS INTEGER) AS fetchCount
    FROM tail_source AS s JOIN tail_files AS f ON f.url = s.url
    WHERE NOT (s.doId IS NOT NULL AND s.outcome IS NULL)
)
SELECT file, lineno, valid, scriptName, outcome, coalesce(event_ms_raw, fallback_ms) AS event_ms,
    httpMethod, httpUrl, httpStatus, colo, country, requestId, fetchCount,
    md5(concat_ws(chr(31),
        scriptName, coalesce(CAST(event_ms_raw AS VARCHAR), ''), coalesce(outcome, ''),
        coalesce(httpMethod, ''), coalesce(httpUrl, ''), coalesce(requestId, ''),
        coalesce(cron, ''), coalesce(CAST(scheduled_ms AS VARCHAR), ''), coalesce(queue, ''),
        coalesce(CAST(logs[1].ts_ms AS VARCHAR), ''), coalesce(CAST(exceptions[1].ts_ms AS VARCHAR), ''),
        CAST(len(logs) AS VARCHAR), CAST(len(exceptions) AS VARCHAR))) AS traceId,
    logs, exceptions
FROM t"""

#: The WorkerLogs columns that come from the trace (the others come from its logs and exceptions).
_TRACE_COLUMNS = ("traceId", "scriptName", "event_ms", "httpMethod", "httpUrl", "httpStatus", "outcome", "colo",
                  "country", "requestId", "fetchCount")
#: Columns with (almost) one value per row: dictionary pages would only be built and thrown away.
_NO_DICTIONARY = frozenset({"id", "traceId", "requestId"})


# -- results -------------------------------------------------------------------------------------


@dataclass
class CompactResult:
    """What a compaction did."""

    files: int = 0  # raw files compacted (committed by this call)
    items: int = 0  # trace items in them
    rows: int = 0  # WorkerLogs rows written
    rejected: int = 0  # lines that were not valid TraceItems (see errors / the dead-letter file)
    skipped: int = 0  # raw files another run had compacted already
    ignored: int = 0  # notifications that name no raw file to compact (deletes, other prefixes, missing objects)
    deleted: int = 0  # raw files deleted (delete_raw=True)
    conflicts: int = 0  # commits retried after another compactor moved a marker
    recovered: int = 0  # uncommitted batches of crashed compactors cleaned up
    outputs: list[str] = field(default_factory=list)  # Parquet keys written
    errors: list[str] = field(default_factory=list, repr=False)  # the first rejection reasons

    def summary(self) -> str:
        return (f"{self.files:,} raw files compacted ({self.items:,} items -> {self.rows:,} rows in "
                f"{len(self.outputs):,} files), {self.skipped:,} already compacted, {self.rejected:,} rejected")


@dataclass(frozen=True)
class Notification:
    """One R2 event notification: ``{account, bucket, object: {key, size, eTag}, eventType, eventTime}``."""

    key: str
    event_type: str
    bucket: str | None = None
    size: int | None = None
    etag: str | None = None
    event_time: str | None = None

    @property
    def creates(self) -> bool:
        return self.event_type in CREATE_EVENTS


def parse_notification(message: Any) -> Notification:
    """Read an R2 event-notification message (a dict, JSON text/bytes, or a queue message with ``body``).

    >>> parse_notification({"account": "a", "bucket": "logs", "eventType": "object-create",
    ...     "object": {"key": "raw-events/1-a-0.ndjson", "size": 10, "eTag": "e"}, "eventTime": "t"}).key
    'raw-events/1-a-0.ndjson'
    """
    if isinstance(message, (bytes, bytearray, str)):
        try:
            message = json.loads(message)
        except json.JSONDecodeError as err:
            raise ValidationError("notification", f"not JSON ({err.msg} at column {err.colno})") from None
    if isinstance(message, Mapping) and "object" not in message and isinstance(message.get("body"), (Mapping, str, bytes)):
        return parse_notification(message["body"])
    if not isinstance(message, Mapping):
        raise ValidationError("notification", f"expected an object, found {type(message).__name__}")
    obj = message.get("object")
    if not isinstance(obj, Mapping) or not isinstance(obj.get("key"), str) or not obj["key"]:
        raise ValidationError("notification, field 'object.key'", "required string is missing")
    event_type = message.get("eventType", message.get("action"))
    if not isinstance(event_type, str):
        raise ValidationError("notification, field 'eventType'", "required string is missing")
    etag = obj.get("eTag")
    return Notification(
        key=obj["key"], event_type=event_type, bucket=message.get("bucket"),
        size=obj.get("size") if isinstance(obj.get("size"), int) else None,
        etag=etag.strip('"') if isinstance(etag, str) else None, event_time=message.get("eventTime"),
    )


# -- public entry points -------------------------------------------------------------------------


def compact(
    store_or_db: Any,
    *,
    raw_prefix: str = RAW_PREFIX,
    out_prefix: str = OUT_PREFIX,
    delete_raw: bool = False,
    dead_letter: str | os.PathLike[str] | IO[str] | DeadLetters | None = None,
    stale_after: dt.timedelta = STALE_AFTER,
) -> CompactResult:
    """Compact every raw ``*.ndjson`` file under ``raw_prefix`` not compacted yet into ``out_prefix``.

    Safe to run twice (the second run finds nothing to do), from several
    processes at once (each raw file is committed by exactly one of them), and
    while raw files keep arriving (they are picked up by the next run).
    ``store_or_db`` is an ObjectStore or a Database (its store is used).
    """
    store = _store_of(store_or_db)
    with _Compactor(store, out_prefix, delete_raw, dead_letter) as compactor:
        compactor.recover(stale_after)
        raw = [info for info in store.list(raw_prefix) if info.key.endswith(".ndjson")]
        compactor.run(raw)
        return compactor.result


def handle_notification(
    store_or_db: Any,
    message: Any,
    *,
    raw_prefix: str = RAW_PREFIX,
    out_prefix: str = OUT_PREFIX,
    delete_raw: bool = False,
    dead_letter: str | os.PathLike[str] | IO[str] | DeadLetters | None = None,
    stale_after: dt.timedelta = STALE_AFTER,
) -> CompactResult:
    """The queue-consumer form: compact exactly the raw file(s) named by R2 event notification(s).

    ``message`` is one notification or a list of them (a queue batch; one
    commit per hour of raw files). Deletes, objects outside ``raw_prefix`` or
    not ``*.ndjson``, and objects that no longer exist count as ``ignored``; a
    file compacted already counts as ``skipped``. Keys are bucket keys; a
    store opened on ``bucket/prefix`` strips its prefix.
    """
    store = _store_of(store_or_db)
    messages = message if isinstance(message, (list, tuple)) else [message]
    notes = [parse_notification(m) for m in messages]
    with _Compactor(store, out_prefix, delete_raw, dead_letter) as compactor:
        wanted: dict[str, ObjectInfo] = {}
        for note in notes:
            key = _store_key(store, note)
            if key is None or not note.creates or not key.startswith(raw_prefix) or not key.endswith(".ndjson"):
                compactor.result.ignored += 1
                continue
            info = store.head(key)
            if info is None:
                compactor.result.ignored += 1
                continue
            wanted[key] = info
        compactor.recover(stale_after)
        compactor.run(list(wanted.values()))
        return compactor.result


def compacted_files(store_or_db: Any, *, out_prefix: str = OUT_PREFIX) -> list[str]:
    """The committed WorkerLogs files under ``out_prefix`` (from the markers), sorted.

    Reading exactly these never shows the files of a compactor that is still
    running or that lost a race (a glob over ``out_prefix`` may, briefly).
    """
    store = _store_of(store_or_db)
    out: set[str] = set()
    base = out_prefix + STATE_DIR
    for info in store.list(base):
        rest = info.key[len(base):]
        if "/" in rest or not rest.endswith(".json"):
            continue
        marker = json.loads(store.get(info.key))
        for commit in marker.get("commits", ()):
            out.update(commit.get("outputs", ()))
    return sorted(out)


# -- the compactor -----------------------------------------------------------------------------------


@dataclass
class _Batch:
    """Raw files parsed together, per shard: their rows, item counts and rejected lines."""

    files: dict[str, list[ObjectInfo]]  # shard -> raw files
    tables: dict[str, pa.Table]  # shard -> WorkerLogs rows
    items: dict[str, int]  # shard -> valid trace items
    rejects: dict[str, list[tuple[str, int | None, str, str]]]  # shard -> (key, line, reason, text)


class _Compactor:
    """One compaction run: plans batches, parses them in DuckDB, writes Parquet, commits markers."""

    def __init__(self, store: ObjectStore, out_prefix: str, delete_raw: bool,
                 dead_letter: str | os.PathLike[str] | IO[str] | DeadLetters | None) -> None:
        if out_prefix and not out_prefix.endswith("/"):
            out_prefix += "/"
        self.store = store
        self.out_prefix = out_prefix
        self.state = out_prefix + STATE_DIR
        self.delete_raw = delete_raw
        self.letters = DeadLetters.of(dead_letter)
        self._owns_letters = not isinstance(dead_letter, DeadLetters)
        self.result = CompactResult()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._texts: dict[str, list[str]] = {}

    def __enter__(self) -> _Compactor:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._con is not None:
            self._con.close()
        if self._owns_letters:
            self.letters.close()

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            self._con = connect_duckdb(self.store.config)
            for statement in _MACROS:
                self._con.execute(statement)
        return self._con

    # -- planning --------------------------------------------------------------------------------

    def run(self, raw: Sequence[ObjectInfo]) -> None:
        """Compact the raw files no marker records, in batches spanning shards (one commit per shard)."""
        by_shard: dict[str, list[ObjectInfo]] = {}
        for info in raw:
            by_shard.setdefault(_shard(info.key), []).append(info)
        shards = sorted(by_shard)
        with concurrent.futures.ThreadPoolExecutor(max_workers=IO_THREADS) as pool:
            markers = list(pool.map(self._load, shards))
        todo: list[ObjectInfo] = []
        for shard, (marker, _etag) in zip(shards, markers, strict=True):
            fresh = [info for info in by_shard[shard] if info.key not in marker["files"]]
            self.result.skipped += len(by_shard[shard]) - len(fresh)
            todo += fresh
        for batch in _batches(todo):
            self._compact(batch, MAX_COMMIT_ATTEMPTS)

    def _compact(self, files: list[ObjectInfo], attempts: int) -> None:
        """Parse and write ``files``, then commit each shard's marker; a shard that lost a race is redone.

        The shards' markers are independent objects, so they are swapped concurrently; the results are
        then folded in here, in shard order, and the first error (if any) is raised once every
        committed shard has been finished.
        """
        if not files:
            return
        if attempts <= 0:
            raise CommitConflictError(f"{self.state}", expected="a quiet marker", found="constant updates",
                                      hint=f"gave up after {MAX_COMMIT_ATTEMPTS} attempts; run compaction again")
        batch = self._parse(files)
        batch_id = new_ulid().lower()
        outputs = self._write(batch, batch_id)
        shards = sorted(batch.files)
        with concurrent.futures.ThreadPoolExecutor(max_workers=IO_THREADS) as pool:
            futures = [pool.submit(self._commit_shard, batch, shard, batch_id, outputs.get(shard, [])) for shard in shards]
        redo: list[ObjectInfo] = []
        finished: list[ObjectInfo] = []
        error: BaseException | None = None
        for shard, future in zip(shards, futures, strict=True):
            if future.exception() is not None:
                error = error or future.exception()
                continue
            taken, conflicts = future.result()
            self.result.conflicts += conflicts
            if taken is None:
                finished += self._finish(batch, shard, outputs.get(shard, []))
                continue
            self.result.skipped += len(taken)
            self.store.delete_many(outputs.get(shard, []))  # never published: ours alone
            redo += [f for f in batch.files[shard] if f.key not in taken]
        if self.delete_raw and finished:
            self.store.delete_many([f.key for f in finished])  # after the commits that cover them
            self.result.deleted += len(finished)
        if error is not None:
            raise error
        self.store.delete(self._pending_key(batch_id))
        if redo:
            self._compact(redo, attempts - 1)

    def _commit_shard(self, batch: _Batch, shard: str, batch_id: str, outputs: list[str]) -> tuple[set[str] | None, int]:
        """Publish one shard's files by compare-and-swap.

        Returns the keys of the shard's raw files another compactor committed first (None when this
        one committed them all) and how many swaps were lost to commits of other files. Runs in a
        worker thread: it reads ``batch`` and changes nothing but the marker.
        """
        files = batch.files[shard]
        conflicts = 0
        for _attempt in range(MAX_COMMIT_ATTEMPTS):
            marker, etag = self._load(shard)
            taken = {f.key for f in files if f.key in marker["files"]}
            if taken:
                return taken, conflicts
            try:
                self._commit(shard, marker, etag, batch, batch_id, outputs)
            except PreconditionFailedError:
                conflicts += 1  # the marker moved for other files: swap again on top
                continue
            return None, conflicts
        raise CommitConflictError(self._marker_key(shard), expected="a quiet marker", found="constant updates",
                                  hint=f"gave up after {MAX_COMMIT_ATTEMPTS} attempts; run compaction again")

    # -- parsing ---------------------------------------------------------------------------------

    def _parse(self, files: list[ObjectInfo]) -> _Batch:
        """Read ``files`` in one DuckDB query (line by line in Python only when a line is bad) into WorkerLogs rows."""
        con = self.con
        urls = [self.store.url_for(f.key) for f in files]
        shards = sorted({_shard(f.key) for f in files})
        code = {shard: i for i, shard in enumerate(shards)}
        con.register("tail_files", pa.table({
            "url": pa.array(urls, pa.string()), "file": pa.array(range(len(files)), pa.int32()),
            "fallback_ms": pa.array([_fallback_ms(f) for f in files], pa.int64()),
        }))
        rejects: list[tuple[str, int | None, str, str]] = []
        traces: pa.Table | None = None
        try:
            if any(char in url for url in urls for char in "*?[{"):
                raise duckdb.InvalidInputException("a key looks like a glob pattern")  # read it line by line
            rel = con.read_json(urls, columns=TRACE_COLUMNS, format="newline_delimited", filename=True)
            rel.create_view("tail_json", replace=True)
            con.execute(_FAST_SOURCE)
            traces = con.sql(_TRACES).to_arrow_table()
        except duckdb.Error:
            traces = None
        if traces is not None and traces.num_rows and not pc.all(traces.column("valid")).as_py():
            traces = None
        present = files
        if traces is None:  # a bad line somewhere: find every bad line, keep every good one
            present = self._parse_lines(files, urls, rejects)
            traces = con.sql(_TRACES).to_arrow_table()
            valid = traces.column("valid").to_numpy(zero_copy_only=False)
            bad = traces.filter(pa.array(~valid)).sort_by([("file", "ascending"), ("lineno", "ascending")])
            for index, lineno in zip(bad.column("file").to_pylist(), bad.column("lineno").to_pylist(), strict=True):
                key = files[index].key
                reason = f"{key} line {lineno}: does not convert to the TraceItem columns"
                rejects.append((key, lineno, reason, self._line_text(key, lineno)))
            traces = traces.filter(pa.array(valid))
        con.unregister("tail_files")
        con.unregister("tail_lines")
        file_shard = np.array([code[_shard(f.key)] for f in files], dtype=np.int32)
        rows, row_shards = _explode(traces, file_shard)
        batch = _Batch(files={}, tables={}, items={}, rejects={})
        for info in present:
            batch.files.setdefault(_shard(info.key), []).append(info)
        items = np.bincount(file_shard[traces.column("file").to_numpy(zero_copy_only=False)], minlength=len(shards))
        for shard in batch.files:
            batch.items[shard] = int(items[code[shard]])
        for key, lineno, reason, text in rejects:
            batch.rejects.setdefault(_shard(key), []).append((key, lineno, reason, text))
        batch.tables = _split_by_shard(rows, row_shards, shards, list(batch.files))
        return batch

    def _parse_lines(self, files: list[ObjectInfo], urls: list[str],
                     rejects: list[tuple[str, int | None, str, str]]) -> list[ObjectInfo]:
        """The slow path: validate every line in Python, hand the good ones to DuckDB by line."""
        keep_url: list[str] = []
        keep_line: list[int] = []
        keep_text: list[str] = []
        present = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            blobs = list(pool.map(self._get_or_none, [f.key for f in files]))
        for info, url, data in zip(files, urls, blobs, strict=True):
            if data is None:
                continue  # deleted since the listing (another compactor with delete_raw): not ours
            present.append(info)
            lines = data.decode("utf-8", errors="replace").split("\n")
            self._texts[info.key] = lines
            for lineno, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                where = f"{info.key} line {lineno}"
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as err:
                    rejects.append((info.key, lineno, f"{where}: invalid JSON ({err.msg} at column {err.colno})", line))
                    continue
                if is_header(value):
                    continue
                try:
                    normalize_item(value, where, require_timestamp=False)
                except ValidationError as err:
                    rejects.append((info.key, lineno, str(err), line))
                    continue
                keep_url.append(url)
                keep_line.append(lineno)
                keep_text.append(line)
        con = self.con
        con.register("tail_lines", pa.table({"url": pa.array(keep_url, pa.string()),
                                             "lineno": pa.array(keep_line, pa.int64()),
                                             "line": pa.array(keep_text, pa.string())}))
        con.execute(_SLOW_SOURCE)
        return present

    def _line_text(self, key: str, lineno: int | None) -> str:
        lines = self._texts.get(key, [])
        return lines[lineno - 1] if lineno and 0 < lineno <= len(lines) else ""

    def _get_or_none(self, key: str) -> bytes | None:
        try:
            return self.store.get(key)
        except ObjectNotFoundError:
            return None

    # -- writing and committing ------------------------------------------------------------------

    def _write(self, batch: _Batch, batch_id: str) -> dict[str, list[str]]:
        """Write each shard's rows, one or more files per event hour; the names are recorded first."""
        flush_ms = int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000)
        parts: list[tuple[str, pa.Table]] = []
        outputs: dict[str, list[str]] = {}
        n = 0
        for shard in sorted(batch.tables):
            table = batch.tables[shard]
            if not table.num_rows:
                continue
            event_ms = table.column("eventTimestamp").cast(pa.int64()).to_numpy(zero_copy_only=False)
            hours = np.floor_divide(event_ms, _HOUR_MS)  # sorted by _split_by_shard
            cuts = np.flatnonzero(np.diff(hours)) + 1
            for start, end in zip([0, *cuts.tolist()], [*cuts.tolist(), len(hours)], strict=True):
                directory = _partition(int(hours[start]))
                for offset in range(start, end, MAX_FILE_ROWS):
                    key = f"{self.out_prefix}{directory}/logs-{flush_ms}-{batch_id}-{n}.parquet"
                    n += 1
                    parts.append((key, table.slice(offset, min(MAX_FILE_ROWS, end - offset))))
                    outputs.setdefault(shard, []).append(key)
        if not parts:
            return outputs
        self.store.put(self._pending_key(batch_id), json.dumps({
            "batch": batch_id, "outputs": outputs, "at": _now_text(),
        }).encode())
        with concurrent.futures.ThreadPoolExecutor(max_workers=IO_THREADS) as pool:
            list(pool.map(lambda part: self.store.put_if_absent(part[0], _parquet(part[1])), parts))
        return outputs

    def _commit(self, shard: str, marker: dict[str, Any], etag: str | None, batch: _Batch, batch_id: str,
                outputs: list[str]) -> None:
        files = dict(marker["files"])
        for info in batch.files[shard]:
            files[info.key] = {"etag": info.etag or None, "batch": batch_id}
        commit = {"batch": batch_id, "at": _now_text(), "files": len(batch.files[shard]),
                  "items": batch.items.get(shard, 0), "rows": batch.tables[shard].num_rows,
                  "rejected": len(batch.rejects.get(shard, ())), "outputs": outputs}
        body = {"format": MARKER_FORMAT, "shard": shard, "files": files, "commits": [*marker["commits"], commit]}
        data = json.dumps(body, separators=(",", ":")).encode()
        key = self._marker_key(shard)
        if etag is None:
            self.store.put_if_absent(key, data)
        else:
            self.store.put_if_match(key, data, etag)

    def _finish(self, batch: _Batch, shard: str, outputs: list[str]) -> list[ObjectInfo]:
        """Count a committed shard and dead-letter its rejected lines; returns its raw files."""
        result = self.result
        files = batch.files[shard]
        result.files += len(files)
        result.items += batch.items.get(shard, 0)
        result.rows += batch.tables[shard].num_rows
        result.outputs.extend(outputs)
        for key, line, reason, text in batch.rejects.get(shard, ()):
            result.rejected += 1
            if len(result.errors) < MAX_ERRORS:
                result.errors.append(reason)
            self.letters.write(key, line, reason, text)
        return files

    # -- markers -----------------------------------------------------------------------------------

    def _marker_key(self, shard: str) -> str:
        return f"{self.state}{shard}.json"

    def _pending_key(self, batch_id: str) -> str:
        return f"{self.state}pending/{batch_id}.json"

    def _load(self, shard: str) -> tuple[dict[str, Any], str | None]:
        try:
            blob = self.store.get_blob(self._marker_key(shard))
        except ObjectNotFoundError:
            return {"format": MARKER_FORMAT, "shard": shard, "files": {}, "commits": []}, None
        marker = json.loads(blob.data)
        if marker.get("format") != MARKER_FORMAT:
            raise StorageError(self._marker_key(shard), f"unknown marker format {marker.get('format')!r}",
                               f"expected {MARKER_FORMAT}; written by a newer parquedb-ibis?")
        return marker, blob.etag

    def recover(self, stale_after: dt.timedelta) -> None:
        """Delete the files of batches whose compactor died before committing them."""
        cutoff = dt.datetime.now(dt.timezone.utc) - stale_after
        for info in list(self.store.list(f"{self.state}pending/")):
            try:
                record = json.loads(self.store.get(info.key))
            except ObjectNotFoundError:
                continue  # finished meanwhile
            at = dt.datetime.fromisoformat(record["at"])
            if at > cutoff:
                continue
            for shard, outputs in record["outputs"].items():
                marker, _ = self._load(shard)
                if record["batch"] not in {c["batch"] for c in marker["commits"]}:
                    self.store.delete_many(list(outputs))
            self.store.delete(info.key)
            self.result.recovered += 1


# -- helpers -------------------------------------------------------------------------------------------


def _store_of(store_or_db: Any) -> ObjectStore:
    return store_or_db.store if hasattr(store_or_db, "store") and hasattr(store_or_db, "collection") else store_or_db


def _store_key(store: ObjectStore, note: Notification) -> str | None:
    """The store key of a bucket key (None when the bucket or the store's prefix does not match)."""
    config = store.config
    if config.bucket and note.bucket and note.bucket != config.bucket:
        return None
    root = "" if config.is_local else config.root.strip("/")
    if not root:
        return note.key
    return note.key[len(root) + 1:] if note.key.startswith(root + "/") else None


def _raw_ms(key: str) -> int | None:
    m = _RAW_NAME.search(key)
    return int(m["ms"]) if m else None


def _shard(key: str) -> str:
    """The marker a raw file is recorded in: the UTC hour of the ms in its name (``unnamed`` without one)."""
    ms = _raw_ms(key)
    if ms is None:
        return "unnamed"
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H")


def _fallback_ms(info: ObjectInfo) -> int:
    """The time given to items without an ``eventTimestamp``: the file's name, else its mtime, else now."""
    ms = _raw_ms(info.key)
    if ms is not None:
        return ms
    when = info.last_modified or dt.datetime.now(dt.timezone.utc)
    return int(when.timestamp() * 1000)


def _batches(files: list[ObjectInfo]) -> Iterable[list[ObjectInfo]]:
    batch: list[ObjectInfo] = []
    size = 0
    for info in sorted(files, key=lambda f: f.key):
        if batch and (len(batch) >= MAX_BATCH_FILES or size + info.size > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(info)
        size += info.size
    if batch:
        yield batch


def _partition(hour: int) -> str:
    when = dt.datetime.fromtimestamp(hour * 3600, tz=dt.timezone.utc)
    return f"year={when.year:04d}/month={when.month:02d}/day={when.day:02d}/hour={when.hour:02d}"


def _explode(traces: pa.Table, file_shard: np.ndarray) -> tuple[pa.Table, np.ndarray]:
    """The WorkerLogs rows of the valid ``traces`` (the trace query's result), sorted by shard, event hour, timestamp.

    One row per log (``n`` = 1, 2, ...), then one per exception (``n`` continues after the logs), and one
    synthetic row (``n`` = 0) for a trace with neither. Returns the rows and each row's shard code
    (``file_shard`` maps a file index to its shard code). Vectorized: no Python loop over rows.
    """
    traces = traces.combine_chunks()
    logs = traces.column("logs").chunk(0) if traces.num_rows else pa.array([], traces.schema.field("logs").type)
    excs = traces.column("exceptions").chunk(0) if traces.num_rows else pa.array([], traces.schema.field("exceptions").type)
    n_logs = pc.list_value_length(logs).to_numpy(zero_copy_only=False).astype(np.int64)
    n_excs = pc.list_value_length(excs).to_numpy(zero_copy_only=False).astype(np.int64)
    log_parent, log_n, log_items = _flatten(logs)
    exc_parent, exc_n, exc_items = _flatten(excs)
    bare = np.flatnonzero((n_logs == 0) & (n_excs == 0))
    parent = np.concatenate([log_parent, exc_parent, bare])
    event_ms = traces.column("event_ms").to_numpy(zero_copy_only=False)
    own_ms = pa.concat_arrays([log_items.field("ts_ms"), exc_items.field("ts_ms"), pa.nulls(len(bare), pa.int64())])
    ts_ms = pc.coalesce(own_ms, pa.array(event_ms[parent])).to_numpy(zero_copy_only=False)
    shard = file_shard[traces.column("file").to_numpy(zero_copy_only=False)][parent]
    order = np.lexsort((ts_ms, np.floor_divide(event_ms[parent], _HOUR_MS), shard))
    take = pa.array(order)
    parent = pa.array(parent[order])
    bare_outcome = traces.column("outcome").take(pa.array(bare))
    per_row = {
        "n": pa.array(np.concatenate([log_n, n_logs[exc_parent] + exc_n, np.zeros(len(bare), np.int64)])),
        "timestamp": pa.array(ts_ms),
        "level": pa.concat_arrays([
            log_items.field("level").cast(pa.string()),
            pa.array(np.full(len(exc_parent), "error", dtype=object), pa.string()),
            pc.if_else(pc.equal(bare_outcome, "ok"), "info", "error").combine_chunks().cast(pa.string()),
        ]),
        "message": pa.concat_arrays([
            log_items.field("message").cast(pa.string()), exc_items.field("message").cast(pa.string()),
            pc.binary_join_element_wise("Worker execution: ", bare_outcome, "").combine_chunks().cast(pa.string()),
        ]),
        "isException": pa.array(np.concatenate([np.zeros(len(log_parent), bool), np.ones(len(exc_parent), bool),
                                                np.zeros(len(bare), bool)])),
        "exceptionName": pa.concat_arrays([pa.nulls(len(log_parent), pa.string()), exc_items.field("name").cast(pa.string()),
                                           pa.nulls(len(bare), pa.string())]),
    }
    per_row = {name: column.take(take) for name, column in per_row.items()}
    per_trace = {name: traces.column(name).take(parent) for name in _TRACE_COLUMNS}
    trace_ids = per_trace["traceId"]
    columns = {
        **per_trace, **per_row,
        "id": pc.binary_join_element_wise(trace_ids, per_row["n"].cast(pa.string()), "-"),
        "eventTimestamp": per_trace["event_ms"],
    }
    arrays = [columns[target.name].cast(target.type) for target in WORKER_LOGS_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=WORKER_LOGS_SCHEMA), shard[order]


def _flatten(lists: pa.Array) -> tuple[np.ndarray, np.ndarray, pa.StructArray]:
    """A list column's elements, with each one's row (parent) and 1-based position in its list."""
    parent = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False).astype(np.int64)
    items = pc.list_flatten(lists)
    offsets = lists.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
    position = np.arange(len(parent), dtype=np.int64) - (offsets[parent] - offsets[0]) + 1
    return parent, position, items


def _split_by_shard(rows: pa.Table, row_shards: np.ndarray, codes: list[str], shards: list[str]) -> dict[str, pa.Table]:
    """The sorted rows as one WorkerLogs table per shard (``codes[code]`` names a shard); empty for ``shards`` without rows."""
    out = {shard: WORKER_LOGS_SCHEMA.empty_table() for shard in shards}
    cuts = np.flatnonzero(np.diff(row_shards)) + 1
    for start, end in zip([0, *cuts.tolist()], [*cuts.tolist(), len(row_shards)], strict=True):
        if end > start:
            out[codes[row_shards[start]]] = rows.slice(start, end - start)
    return out


def _parquet(table: pa.Table) -> bytes:
    """One WorkerLogs file: zstd row groups of ROW_GROUP_ROWS, dictionaries only where values repeat.

    Written to an Arrow buffer, not a Python file object, so the writer never needs the GIL and the
    files of a batch are encoded on every core.
    """
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", row_group_size=ROW_GROUP_ROWS, write_statistics=True,
                   use_dictionary=[name for name in table.column_names if name not in _NO_DICTIONARY])
    return sink.getvalue().to_pybytes()


def _now_text() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


__all__ = [
    "CREATE_EVENTS",
    "MAX_FILE_ROWS",
    "OUT_PREFIX",
    "RAW_PREFIX",
    "ROW_GROUP_ROWS",
    "TRACE_COLUMNS",
    "WORKER_LOGS_SCHEMA",
    "CompactResult",
    "Notification",
    "compact",
    "compacted_files",
    "handle_notification",
    "parse_notification",
]
