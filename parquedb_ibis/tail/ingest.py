"""Ingest Cloudflare Workers tail events (``TraceItem`` dicts) into the ``TailEvents`` collection.

Three sources, one pipeline:

* :func:`ingest` takes Python dicts (a list or any iterable);
* :func:`ingest_jsonl` takes ``wrangler tail --format json`` output: a file,
  a path, or lines. Wrangler pretty-prints each object over several lines;
  one compact object per line works too;
* :func:`ingest_raw_file` / :func:`ingest_raw` take the upstream pipeline's
  raw NDJSON (``raw-events/{epochMs}-{doId}-{batchSeq}.ndjson``: a header
  line, then one item per line).

Each item is validated and normalized: ``eventTimestamp`` (epoch ms or an
ISO-8601 string) becomes an aware UTC datetime, a missing ``scriptName``
becomes ``"unknown"``, and ISO timestamps inside ``logs`` and ``exceptions``
become epoch ms. An item that fails validation is *rejected*: counted, its
reason (naming the line and the field) kept in :attr:`IngestResult.errors`, and
written with its original text to the dead-letter file when one is given. A
rejected item never stops the others.

**Idempotence.** Every item gets a deterministic ``$id``: the MD5 (32 hex
digits) of its *trace key* (:func:`trace_key`). Before writing,
the ids of a batch are looked up in the collection with one DuckDB semi-join
against an Arrow table of the candidates, so ingesting the same events again
adds nothing and counts them as duplicates. A raw file, once ingested, also
gets a small marker object (``_tail/ingested/{collection}/{key}.{etag}.json``),
so a repeat skips it without reading it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import itertools
import json
import math
import os
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson
import pyarrow as pa
from sqlglot import exp

from parquedb_ibis.documents import SYSTEM_FIELDS
from parquedb_ibis.views.seeds import TAIL_EVENTS_SCHEMA
from parquedb_ibis.errors import (
    ObjectNotFoundError,
    SchemaError,
    StorageError,
    ValidationError,
)

if TYPE_CHECKING:
    from parquedb_ibis.views.database import Database
    from parquedb_ibis.writer.collection import Collection

#: The collection tail events go to, and the ``$type`` of its documents (upstream ``src/streaming/views.ts``).
TAIL_EVENTS = "TailEvents"
TAIL_EVENT_TYPE = "TailEvent"

#: Where the raw NDJSON files of the upstream pipeline live.
RAW_PREFIX = "raw-events/"
#: Per-file markers of raw files already ingested: ``{MARKER_PREFIX}{collection}/{raw key}.{etag}.json``.
MARKER_PREFIX = "_tail/ingested/"
#: Items looked up and written per batch.
BATCH_SIZE = 10_000
#: How many rejection reasons an IngestResult keeps.
MAX_ERRORS = 100
#: How often a batch is retried when a concurrent writer published some of the same ids first.
MAX_RETRIES = 5

#: The trace key: these values, ``None`` as ``""``, joined with U+001F (see :func:`trace_key`).
TRACE_KEY_FIELDS: tuple[str, ...] = (
    "scriptName",
    "eventTimestamp",
    "outcome",
    "event.request.method",
    "event.request.url",
    "event.request.headers.cf-ray",
    "event.cron",
    "event.scheduledTime",
    "event.queue",
    "logs.0.timestamp",
    "exceptions.0.timestamp",
    "len(logs)",
    "len(exceptions)",
)
_KEY_SEPARATOR = "\x1f"

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MIN_MS = (dt.datetime(1, 1, 1, tzinfo=dt.timezone.utc) - _EPOCH) // dt.timedelta(milliseconds=1)
_MAX_MS = (dt.datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=dt.timezone.utc) - _EPOCH) // dt.timedelta(milliseconds=1)
_LIST_FIELDS = ("logs", "exceptions", "diagnosticsChannelEvents")
_STRING_FIELDS = ("entrypoint", "executionModel")
_INT_FIELDS = ("cpuTime", "wallTime")


# -- results and dead letters ---------------------------------------------------------------


@dataclass
class IngestResult:
    """What an ingest did: items written, duplicates skipped, items rejected (and why)."""

    ingested: int = 0
    duplicates: int = 0
    rejected: int = 0
    files: int = 0  # raw files read
    skipped_files: int = 0  # raw files skipped because their marker says they were ingested
    errors: list[str] = field(default_factory=list, repr=False)  # the first MAX_ERRORS rejection reasons

    @property
    def seen(self) -> int:
        """Items read: ingested + duplicates + rejected."""
        return self.ingested + self.duplicates + self.rejected

    def add(self, other: IngestResult) -> IngestResult:
        """Fold ``other`` into this result (in place) and return it."""
        self.ingested += other.ingested
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        self.files += other.files
        self.skipped_files += other.skipped_files
        self.errors.extend(other.errors[: max(0, MAX_ERRORS - len(self.errors))])
        return self

    def summary(self) -> str:
        """One line: ``'1,000 ingested, 20 duplicates, 3 rejected'`` (plus files when any)."""
        text = f"{self.ingested:,} ingested, {self.duplicates:,} duplicates, {self.rejected:,} rejected"
        if self.files or self.skipped_files:
            text += f" ({self.files:,} files read, {self.skipped_files:,} already ingested)"
        return text


class DeadLetters:
    """Where rejected items go: JSON lines ``{"source", "line", "reason", "text"}``, appended.

    ``target`` is a path (opened lazily, in append mode, on the first
    rejection), a text stream, or None (count only).
    """

    def __init__(self, target: str | os.PathLike[str] | IO[str] | DeadLetters | None) -> None:
        self._target = target
        self._fh: IO[str] | None = None
        self._owned = False
        self.count = 0

    @classmethod
    def of(cls, target: str | os.PathLike[str] | IO[str] | DeadLetters | None) -> DeadLetters:
        return target if isinstance(target, DeadLetters) else cls(target)

    def write(self, source: str, line: int | None, reason: str, text: str) -> None:
        """Record one rejected item with the original ``text``."""
        self.count += 1
        if self._target is None:
            return
        if self._fh is None:
            if isinstance(self._target, (str, os.PathLike)):
                path = Path(self._target)
                path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
                self._owned = True
            else:
                self._fh = self._target  # type: ignore[assignment]
        record = {"source": source, "line": line, "reason": reason, "text": text}
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._owned and self._fh is not None:
            self._fh.close()
        self._fh = None


class Progress:
    """A one-line progress report on a stream (stderr by default), redrawn at most twice a second."""

    def __init__(self, enabled: bool | IO[str], label: str = "ingest") -> None:
        self.stream: IO[str] | None = (sys.stderr if enabled is True else enabled) or None  # type: ignore[assignment]
        self.label = label
        self.started = time.monotonic()
        self._last = 0.0

    def update(self, result: IngestResult, *, final: bool = False) -> None:
        if self.stream is None:
            return
        now = time.monotonic()
        if not final and now - self._last < 0.5:
            return
        self._last = now
        rate = result.seen / max(now - self.started, 1e-9)
        end = "\n" if final else ""
        self.stream.write(f"\r{self.label}: {result.seen:,} read, {result.summary()} ({rate:,.0f}/s){end}")
        self.stream.flush()


# -- validation and normalization ----------------------------------------------------------


def to_epoch_ms(value: Any) -> int:
    """Epoch milliseconds from a number (ms), an ISO-8601 string or a datetime; ValueError otherwise.

    Fractions of a millisecond are floored; naive datetimes and strings are UTC.

    >>> to_epoch_ms(1735689600000), to_epoch_ms("2025-01-01T00:00:00.5Z")
    (1735689600000, 1735689600500)
    """
    if isinstance(value, bool):
        raise ValueError(f"expected epoch milliseconds or an ISO-8601 string, found {value!r}")
    if isinstance(value, int):
        ms = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number of milliseconds, found {value!r}")
        ms = math.floor(value)
    elif isinstance(value, (str, dt.datetime)):
        when = value if isinstance(value, dt.datetime) else _parse_iso(value)
        when = when.replace(tzinfo=dt.timezone.utc) if when.tzinfo is None else when
        ms = (when - _EPOCH) // dt.timedelta(milliseconds=1)
    else:
        raise ValueError(f"expected epoch milliseconds or an ISO-8601 string, found {type(value).__name__} {value!r}")
    if not _MIN_MS <= ms <= _MAX_MS:
        raise ValueError(f"{value!r} is out of range (years 1 to 9999)")
    return ms


def _parse_iso(text: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"expected epoch milliseconds or an ISO-8601 string, found {text!r}") from None


def from_epoch_ms(ms: int) -> dt.datetime:
    """The aware UTC datetime of an epoch-milliseconds value."""
    return _EPOCH + dt.timedelta(milliseconds=ms)


def _loose_ms(value: Any) -> int | None:
    """Epoch ms of a nested timestamp (a number or ISO string), None when it is not one (kept as it is).

    Looser than :func:`to_epoch_ms` (no range check), as compaction's SQL is.
    """
    kind = type(value)
    if kind is int:
        return value
    if kind is float:
        return math.floor(value) if math.isfinite(value) and abs(value) < 2**63 else None
    if kind is str:
        try:
            when = _parse_iso(value)
        except ValueError:
            return None
        when = when.replace(tzinfo=dt.timezone.utc) if when.tzinfo is None else when
        return (when - _EPOCH) // dt.timedelta(milliseconds=1)
    return None


def _key_text(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return value
    if value is None:
        return ""
    if kind is int:
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _first_ms(entries: list[Any]) -> int | None:
    if not entries:
        return None
    first = entries[0]
    return _loose_ms(first.get("timestamp")) if isinstance(first, Mapping) else None


def trace_key(item: Mapping[str, Any]) -> str:
    """The text a trace's ``$id`` hashes: :data:`TRACE_KEY_FIELDS` of a *normalized* item.

    Two items with the same key are the same invocation: the same script,
    start time (ms), outcome and request (method, URL, ``cf-ray`` header) or
    trigger (cron, scheduled time, queue), with logs and exceptions that start
    at the same instants and have the same counts. Fields the raw NDJSON does
    not carry (``cpuTime``, ``wallTime``, ``scriptVersion``...) are left out, so
    the same event has the same id whichever source it came from.
    Timestamps are epoch ms; ``None`` is ``""``; non-string values are compact JSON.
    """
    event = item.get("event")
    event = event if isinstance(event, Mapping) else {}
    request = event.get("request")
    request = request if isinstance(request, Mapping) else {}
    headers = request.get("headers")
    logs = item.get("logs") or []
    exceptions = item.get("exceptions") or []
    event_ms = item.get("eventTimestamp")
    if isinstance(event_ms, dt.datetime):
        event_ms = to_epoch_ms(event_ms)
    parts = (
        item.get("scriptName") or "unknown",
        event_ms,
        item.get("outcome"),
        request.get("method"),
        request.get("url"),
        headers.get("cf-ray") if isinstance(headers, Mapping) else None,
        event.get("cron"),
        _loose_ms(event.get("scheduledTime")),
        event.get("queue"),
        _first_ms(logs),
        _first_ms(exceptions),
        len(logs),
        len(exceptions),
    )
    return _KEY_SEPARATOR.join(_key_text(p) for p in parts)


def trace_id(item: Mapping[str, Any]) -> str:
    """A trace's id: the MD5 of :func:`trace_key`, 32 hex digits (a dedupe key, not a security measure).

    MD5 because compaction computes the same id in DuckDB for every trace,
    where it is several times cheaper than SHA-256.

    >>> trace_id({"scriptName": "api", "outcome": "ok", "eventTimestamp": 1735689600000})
    'bddb14f92c4d18dc39768d865459b12a'
    """
    return hashlib.md5(trace_key(item).encode("utf-8"), usedforsecurity=False).hexdigest()


def normalize_item(item: Any, where: str, *, require_timestamp: bool = True) -> dict[str, Any]:
    """Validate one TraceItem and return it normalized (``eventTimestamp`` as epoch ms).

    Raises :class:`ValidationError` whose ``where`` names the item (``where``)
    and the offending field. Checked: the item is an object; ``outcome`` is a
    string; ``scriptName`` a string or null (null becomes ``"unknown"``);
    ``eventTimestamp`` epoch ms or ISO-8601 (null allowed only when
    ``require_timestamp`` is false); ``event`` an object or null; ``logs``,
    ``exceptions``, ``diagnosticsChannelEvents`` arrays or null; ``cpuTime`` and
    ``wallTime`` numbers (rounded to ms); ``truncated`` a boolean;
    ``entrypoint`` and ``executionModel`` strings. Nested timestamps that are
    ISO strings become epoch ms; unreadable ones are kept as they are.
    """
    if not isinstance(item, Mapping):
        raise ValidationError(where, f"expected a JSON object, found {_type_name(item)}")
    out: dict[str, Any] = {}
    for key, value in item.items():
        if not isinstance(key, str):
            raise ValidationError(where, f"field names must be strings, found {key!r}")
        if key in SYSTEM_FIELDS or key.startswith("$"):
            continue  # system fields are ours to set
        out[key] = value
    outcome = out.get("outcome")
    if not isinstance(outcome, str):
        problem = "required field is missing" if outcome is None else f"expected a string, found {_type_name(outcome)}"
        raise ValidationError(_field(where, "outcome"), problem)
    script = out.get("scriptName")
    if script is not None and not isinstance(script, str):
        raise ValidationError(_field(where, "scriptName"), f"expected a string or null, found {_type_name(script)}")
    out["scriptName"] = script or "unknown"
    ts = out.get("eventTimestamp")
    if ts is None:
        if require_timestamp:
            raise ValidationError(_field(where, "eventTimestamp"), "required field is missing")
        out["eventTimestamp"] = None
    else:
        try:
            out["eventTimestamp"] = to_epoch_ms(ts)
        except ValueError as err:
            raise ValidationError(_field(where, "eventTimestamp"), str(err)) from None
    event = out.get("event")
    if event is not None and not isinstance(event, Mapping):
        raise ValidationError(_field(where, "event"), f"expected an object or null, found {_type_name(event)}")
    for name in _LIST_FIELDS:
        value = out.get(name)
        if value is None:
            out[name] = []
        elif not isinstance(value, list):
            raise ValidationError(_field(where, name), f"expected an array, found {_type_name(value)}")
        elif name != "diagnosticsChannelEvents" and any(_has_iso_timestamp(entry) for entry in value):
            out[name] = [_normalize_entry(entry) for entry in value]
    for name in _STRING_FIELDS:
        value = out.get(name)
        if value is not None and not isinstance(value, str):
            raise ValidationError(_field(where, name), f"expected a string, found {_type_name(value)}")
    for name in _INT_FIELDS:
        value = out.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValidationError(_field(where, name), f"expected a number of milliseconds, found {_type_name(value)} {value!r}")
        out[name] = int(round(value))
    truncated = out.get("truncated")
    if truncated is not None and not isinstance(truncated, bool):
        raise ValidationError(_field(where, "truncated"), f"expected a boolean, found {_type_name(truncated)}")
    return out


def _has_iso_timestamp(entry: Any) -> bool:
    return isinstance(entry, Mapping) and type(entry.get("timestamp")) is str


def _normalize_entry(entry: Any) -> Any:
    """A log or exception entry with an ISO ``timestamp`` turned into epoch ms (otherwise unchanged)."""
    if isinstance(entry, Mapping) and isinstance(entry.get("timestamp"), str):
        ms = _loose_ms(entry["timestamp"])
        if ms is not None:
            return {**entry, "timestamp": ms}
    return entry


def to_document(item: Any, where: str) -> dict[str, Any]:
    """The ``TailEvents`` document of one TraceItem (validated; see :func:`normalize_item`)."""
    norm = normalize_item(item, where)
    doc: dict[str, Any] = {"$id": trace_id(norm), "$type": TAIL_EVENT_TYPE}
    for key, value in norm.items():
        if value is None and key not in ("scriptName", "outcome"):
            continue  # optional fields: absent rather than null
        doc[key] = value
    doc["eventTimestamp"] = from_epoch_ms(norm["eventTimestamp"])
    return doc


def _field(where: str, name: str) -> str:
    return f"{where}, field {name!r}"


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}.get(
        type(value), type(value).__name__)


# -- the collection ----------------------------------------------------------------------------


def tail_collection(db: Database, name: str = TAIL_EVENTS) -> Collection:
    """The tail-events collection: created with :data:`TAIL_EVENTS_SCHEMA`, or as stored when it exists.

    A collection created earlier with another schema (e.g. upstream's seven
    fields) is used as it is: fields it does not declare go to its variant
    ``$data`` column.
    """
    try:
        return db.collection(name, TAIL_EVENTS_SCHEMA)
    except SchemaError:
        return db.collection(name)


def install_views(db: Database, names: Iterable[str] | None = None) -> list[str]:
    """Define the seed tail views (``WorkerLogs``, ``WorkerErrors``, ``WorkerRequests``...) on ``db``.

    Opens the ``TailEvents`` collection with :data:`TAIL_EVENTS_SCHEMA` first,
    defines the views that do not exist yet (with the views they read) and
    returns their names. Streaming views populate at once.
    """
    from parquedb_ibis.views.seeds import TAIL_VIEWS, define_seed_views

    wanted = list(TAIL_VIEWS) if names is None else list(names)
    for name in wanted:
        if name not in TAIL_VIEWS:
            raise ValidationError(f"view {name!r}", f"not a tail view; known: {', '.join(TAIL_VIEWS)}")
    tail_collection(db)
    return define_seed_views(db, wanted)


# -- ingestion -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Record:
    """One input item: where it came from, the parsed value (or why it failed), and its text."""

    source: str
    line: int | None
    where: str
    item: Any = None
    error: str | None = None
    text: str | None = None


def ingest(
    db: Database,
    items: Iterable[Mapping[str, Any]],
    *,
    collection: str = TAIL_EVENTS,
    dead_letter: str | os.PathLike[str] | IO[str] | DeadLetters | None = None,
    progress: bool | IO[str] = False,
    batch_size: int = BATCH_SIZE,
) -> IngestResult:
    """Ingest TraceItem dicts into ``collection``; returns counts of ingested, duplicate and rejected items.

    Items are validated (:func:`normalize_item`), given their deterministic
    ``$id`` (:func:`trace_id`), and written in batches of ``batch_size``; ids
    already in the collection (or earlier in the same batch) are duplicates.
    ``dead_letter`` receives every rejected item as a JSON line; ``progress``
    prints a progress line to stderr (or to the given stream).
    """
    records = (_Record("items", None, f"item {i}", item) for i, item in enumerate(items))
    return _ingest_records(db, records, collection, dead_letter, progress, batch_size)


def ingest_jsonl(
    db: Database,
    lines_or_file: str | os.PathLike[str] | IO[str] | IO[bytes] | Iterable[str | bytes],
    *,
    collection: str = TAIL_EVENTS,
    dead_letter: str | os.PathLike[str] | IO[str] | DeadLetters | None = None,
    progress: bool | IO[str] = False,
    batch_size: int = BATCH_SIZE,
    source: str | None = None,
) -> IngestResult:
    """Ingest ``wrangler tail --format json`` output: a path, an open file, or an iterable of lines.

    Accepts one compact JSON object per line and wrangler's pretty-printed
    objects (an object starting with ``{`` and ending with ``}`` at column 0);
    a top-level array contributes each element. Lines that are not JSON are
    rejected with their line number. Blank lines are skipped.
    """
    lines, label, close = _open_lines(lines_or_file, source)
    try:
        return _ingest_records(db, _parse_json_stream(lines, label), collection, dead_letter, progress, batch_size)
    finally:
        close()


def ingest_raw_file(
    db: Database,
    key_or_path: str | os.PathLike[str],
    *,
    collection: str = TAIL_EVENTS,
    dead_letter: str | os.PathLike[str] | IO[str] | DeadLetters | None = None,
    progress: bool | IO[str] = False,
    batch_size: int = BATCH_SIZE,
    force: bool = False,
) -> IngestResult:
    """Ingest one raw NDJSON file of the upstream tail pipeline: a key of ``db.store`` or a local path.

    The header line (``{"doId", "createdAt", "batchSeq"}``) is skipped. For a
    store key, a marker naming the file's ETag is written once its items are
    published, and a file with a marker for its current ETag is skipped
    without being read (``force=True`` reads it anyway; ids still dedupe).
    """
    store = db.store
    key: str | None = None if isinstance(key_or_path, os.PathLike) else str(key_or_path)
    info = _head(store, key) if key is not None else None
    if info is None:
        path = Path(key_or_path)
        if not path.is_file():
            raise ObjectNotFoundError(f"{store.config.url}/{key_or_path}", "no such raw file in the store or on disk")
        records = _parse_raw_lines(path.read_bytes().decode("utf-8", errors="replace"), str(path))
        result = _ingest_records(db, records, collection, dead_letter, progress, batch_size)
        result.files = 1
        return result
    if not force and store.head(_marker_key(collection, key, info.etag)) is not None:
        return IngestResult(skipped_files=1)
    blob = store.get_blob(key)
    return _ingest_raw_group(db, [(key, blob)], collection, dead_letter, progress, batch_size)


def ingest_raw(
    db: Database,
    *,
    prefix: str = RAW_PREFIX,
    collection: str = TAIL_EVENTS,
    dead_letter: str | os.PathLike[str] | IO[str] | DeadLetters | None = None,
    progress: bool | IO[str] = False,
    batch_size: int = BATCH_SIZE,
) -> IngestResult:
    """Ingest every ``*.ndjson`` raw file under ``prefix`` of ``db.store`` not ingested yet.

    One listing of the markers tells which files (at which ETag) were
    ingested; those are skipped without being read. The others are read and
    ingested together, about ``batch_size`` items per batch whatever the file
    sizes (TailDO writes files of 100 to 1000 items), and each file's marker is
    written once its batch is published.
    """
    store = db.store
    base = f"{MARKER_PREFIX}{collection}/"
    done = {info.key[len(base):-len(".json")] for info in store.list(base + prefix) if info.key.endswith(".json")}
    letters = DeadLetters.of(dead_letter)
    total = IngestResult()
    report = Progress(progress, "ingest-raw")
    group: list[tuple[str, Any]] = []
    lines = 0
    try:
        for info in store.list(prefix):
            if not info.key.endswith(".ndjson"):
                continue
            if info.etag and f"{info.key}.{info.etag}" in done:
                total.skipped_files += 1
                continue
            try:
                blob = store.get_blob(info.key)
            except ObjectNotFoundError:
                continue  # deleted since the listing (compacted with delete_raw)
            if f"{info.key}.{blob.etag}" in done:
                total.skipped_files += 1
                continue
            group.append((info.key, blob))
            lines += blob.data.count(b"\n") + 1
            if lines >= batch_size:
                total.add(_ingest_raw_group(db, group, collection, letters, False, batch_size))
                report.update(total)
                group, lines = [], 0
        if group:
            total.add(_ingest_raw_group(db, group, collection, letters, False, batch_size))
    finally:
        if not isinstance(dead_letter, DeadLetters):
            letters.close()
    report.update(total, final=True)
    return total


def _ingest_raw_group(db: Database, group: list[tuple[str, Any]], collection: str,
                      dead_letter: str | os.PathLike[str] | IO[str] | DeadLetters | None,
                      progress: bool | IO[str], batch_size: int) -> IngestResult:
    """Ingest raw files read from the store together, then write one marker per file."""
    records = itertools.chain.from_iterable(
        _parse_raw_lines(blob.data.decode("utf-8", errors="replace"), key) for key, blob in group)
    result = _ingest_records(db, records, collection, dead_letter, progress, batch_size)
    result.files = len(group)
    at = dt.datetime.now(dt.timezone.utc).isoformat()
    for key, blob in group:
        body = {"key": key, "etag": blob.etag, "collection": collection, "at": at}
        db.store.put(_marker_key(collection, key, blob.etag), json.dumps(body).encode())
    return result


def _head(store: Any, key: str) -> Any:
    """The store's ObjectInfo for ``key``, or None when it is absent or not a valid key (a local path)."""
    try:
        return store.head(key)
    except StorageError:
        return None


def _marker_key(collection: str, key: str, etag: str) -> str:
    """``_tail/ingested/{collection}/{raw key}.{etag}.json``: listing the markers tells what was ingested at which ETag."""
    return f"{MARKER_PREFIX}{collection}/{key}.{etag}.json"


def _ingest_records(
    db: Database,
    records: Iterable[_Record],
    collection: str,
    dead_letter: str | os.PathLike[str] | IO[str] | DeadLetters | None,
    progress: bool | IO[str],
    batch_size: int,
) -> IngestResult:
    coll = tail_collection(db, collection)
    letters = DeadLetters.of(dead_letter)
    result = IngestResult()
    report = Progress(progress)
    batch: list[dict[str, Any]] = []
    try:
        for record in records:
            if record.error is None:
                try:
                    batch.append(to_document(record.item, record.where))
                except ValidationError as err:
                    _reject(result, letters, record, str(err))
            else:
                _reject(result, letters, record, record.error)
            if len(batch) >= batch_size:
                _write_batch(db, coll, batch, result)
                batch = []
                report.update(result)
        if batch:
            _write_batch(db, coll, batch, result)
    finally:
        if not isinstance(dead_letter, DeadLetters):
            letters.close()
    report.update(result, final=True)
    return result


def _reject(result: IngestResult, letters: DeadLetters, record: _Record, reason: str) -> None:
    result.rejected += 1
    if len(result.errors) < MAX_ERRORS:
        result.errors.append(reason)
    text = record.text
    if text is None:
        try:
            text = json.dumps(record.item, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            text = repr(record.item)
    letters.write(record.source, record.line, reason, text)


def _write_batch(db: Database, coll: Collection, docs: list[dict[str, Any]], result: IngestResult) -> None:
    """Write the docs whose ids are new; count the others as duplicates. Retries lost races."""
    unique: dict[str, dict[str, Any]] = {}
    for doc in docs:
        unique.setdefault(doc["$id"], doc)
    result.duplicates += len(docs) - len(unique)
    for attempt in range(MAX_RETRIES):
        existing = existing_ids(db, coll, list(unique))
        fresh = [doc for local, doc in unique.items() if local not in existing]
        if fresh:
            try:
                coll.insert_many(fresh)
                coll.flush()
            except ValidationError:
                # Another writer published some of these ids after our lookup: the
                # writer rejected the whole batch and kept nothing; look up again.
                if attempt == MAX_RETRIES - 1:
                    raise
                continue
        result.ingested += len(fresh)
        result.duplicates += len(unique) - len(fresh)
        return


def existing_ids(db: Database, coll: Collection, ids: list[str]) -> set[str]:
    """Which of ``ids`` (local ids) the collection already holds, soft-deleted ones included.

    One query: the candidates are registered as an Arrow table and semi-joined
    with the collection's ``$id`` column.
    """
    if not ids:
        return set()
    relation = coll.relation(include_deleted=True)
    if not coll.head.version:
        return set()
    prefix = f"{coll.ns}/"
    table_name = f"_tail_ids_{uuid.uuid4().hex}"
    candidates = pa.table({"id": [prefix + i for i in ids]})
    ident = exp.column("$id", table="s", quoted=True)
    query = (
        exp.select(ident)
        .from_(exp.alias_(exp.Subquery(this=relation), "s"))
        .where(ident.isin(query=exp.select("id").from_(exp.to_table(table_name, quoted=True))))
    )
    with db.session() as con:
        con.register(table_name, candidates)
        try:
            rows = con.execute(query.sql("duckdb")).fetchall()
        finally:
            con.unregister(table_name)
    return {row[0][len(prefix):] for row in rows}


# -- parsing ---------------------------------------------------------------------------------------


def _open_lines(
    lines_or_file: str | os.PathLike[str] | IO[str] | IO[bytes] | Iterable[str | bytes], source: str | None
) -> tuple[Iterator[str], str, Any]:
    if isinstance(lines_or_file, (str, os.PathLike)):
        fh = open(lines_or_file, encoding="utf-8", errors="replace")  # noqa: SIM115 - closed by the caller
        return iter(fh), source or str(lines_or_file), fh.close
    if isinstance(lines_or_file, (bytes, bytearray)):
        text = bytes(lines_or_file).decode("utf-8", errors="replace")
        return iter(text.splitlines()), source or "<bytes>", lambda: None
    label = source or getattr(lines_or_file, "name", None) or "<lines>"
    close: Any = lambda: None  # noqa: E731 - the caller's stream stays open
    if isinstance(lines_or_file, io.BufferedIOBase) or "b" in str(getattr(lines_or_file, "mode", "")):
        wrapper = io.TextIOWrapper(lines_or_file, encoding="utf-8", errors="replace")  # type: ignore[arg-type]
        lines_or_file, close = wrapper, wrapper.detach  # detach: do not close the caller's stream
    decoded = (line.decode("utf-8", errors="replace") if isinstance(line, (bytes, bytearray)) else line
               for line in lines_or_file)
    return decoded, str(label), close


#: A pretty-printed object larger than this many lines is rejected (a runaway, unterminated object).
MAX_OBJECT_LINES = 100_000


def _parse_json_stream(lines: Iterable[str], source: str) -> Iterator[_Record]:
    """Records from JSON lines and wrangler's pretty-printed objects, with line numbers.

    A line that parses on its own is one record. A line that opens an object
    or array at column 0 without closing it starts a multi-line value that
    ends at the line holding only the matching ``}`` or ``]`` at column 0
    (how ``JSON.stringify(value, null, 2)`` prints). A new value opening at
    column 0 first ends an unterminated one, which is rejected.
    """
    buffer: list[str] = []
    closer = ""
    start = 0
    for lineno, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        if buffer:
            if line[:1] in ("{", "["):
                yield from _parse_buffer(buffer, start, source)  # the open value never closed
                buffer = []
            else:
                buffer.append(line)
                if line.rstrip() in (closer, closer + ",") or len(buffer) > MAX_OBJECT_LINES:
                    yield from _parse_buffer(buffer, start, source)
                    buffer = []
                continue
        stripped = line.strip()
        if not stripped:
            continue
        try:
            value = _loads(stripped)
        except json.JSONDecodeError as err:
            if line[:1] in ("{", "["):
                buffer, start, closer = [line], lineno, "}" if line[0] == "{" else "]"
                continue
            yield _Record(source, lineno, f"{source} line {lineno}", text=line,
                          error=f"{source} line {lineno}: invalid JSON ({err.msg} at column {err.colno})")
            continue
        yield from _values(value, source, lineno, line)
    if buffer:
        yield from _parse_buffer(buffer, start, source)


def _parse_buffer(buffer: list[str], start: int, source: str) -> Iterator[_Record]:
    text = "\n".join(buffer)
    try:
        value = _loads(text)
    except json.JSONDecodeError as err:
        yield _Record(source, start, f"{source} line {start}", text=text,
                      error=f"{source} line {start + err.lineno - 1}: invalid JSON ({err.msg} at column {err.colno})")
        return
    yield from _values(value, source, start, text)


def _values(value: Any, source: str, lineno: int, text: str) -> Iterator[_Record]:
    where = f"{source} line {lineno}"
    if isinstance(value, list):
        for i, element in enumerate(value):
            yield _Record(source, lineno, f"{where}, element {i}", element,
                          text=json.dumps(element, ensure_ascii=False, default=str))
    else:
        yield _Record(source, lineno, where, value, text=text)


#: ASCII digits to ``0``, every other byte to a space: after translating, a run of 19 zeros marks
#: an integer literal that orjson may read as a float (it has integers from -2**63 to 2**64 - 1 only).
_DIGITS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_WIDE_INT = b"0" * 19


def _loads(text: str) -> Any:
    """``json.loads(text)``, computed by orjson (several times faster) whenever that gives the same value.

    orjson reads an integer outside [-2**63, 2**64) as a float and rejects ``NaN``
    and ``Infinity``; such text, and text that is not JSON at all, goes to
    ``json.loads``, so values and error messages are the standard library's.
    """
    if _WIDE_INT not in text.encode("utf-8", "surrogatepass").translate(_DIGITS):  # 10x faster than a regex
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def is_header(value: Any) -> bool:
    """True for the header line of a raw NDJSON file (``{"doId", "createdAt", "batchSeq"}``, no outcome)."""
    return isinstance(value, Mapping) and "doId" in value and value.get("outcome") is None


def _parse_raw_lines(text: str, source: str) -> Iterator[_Record]:
    """Records from a raw NDJSON file: one item per line, the header skipped."""
    for lineno, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        try:
            value = _loads(stripped)
        except json.JSONDecodeError as err:
            yield _Record(source, lineno, f"{source} line {lineno}", text=line,
                          error=f"{source} line {lineno}: invalid JSON ({err.msg} at column {err.colno})")
            continue
        if is_header(value):
            continue
        yield _Record(source, lineno, f"{source} line {lineno}", value, text=line)


__all__ = [
    "BATCH_SIZE",
    "RAW_PREFIX",
    "TAIL_EVENTS",
    "TAIL_EVENTS_SCHEMA",
    "TRACE_KEY_FIELDS",
    "DeadLetters",
    "IngestResult",
    "existing_ids",
    "from_epoch_ms",
    "ingest",
    "ingest_jsonl",
    "ingest_raw",
    "ingest_raw_file",
    "install_views",
    "is_header",
    "normalize_item",
    "tail_collection",
    "to_document",
    "to_epoch_ms",
    "trace_id",
    "trace_key",
]
