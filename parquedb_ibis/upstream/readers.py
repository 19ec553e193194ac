"""Documents, events and tail-pipeline rows, read from what the TypeScript ParqueDB wrote.

Entities (:func:`read_namespace`) come back the way upstream's ``find()``
returns them, per family (upstream-format.md §5.6, §6, §14):

**Worker DO (A).** Fold ``data/{ns}/events/*.parquet`` in checkpoint-ULID
order, then row order, with the DO's ``applyEventToEntity`` rules and the
faithful UPDATE rule of §5.6 (an UPDATE's ``after`` is the full new state and
*replaces* the user data, so ``$unset`` keys stay gone; an UPDATE whose
``before`` has ``deletedAt`` is a restore). A CREATE on an existing id
replaces the entity (Sqids id reuse, §5.2). ``ts`` is repaired from the
event's ULID (§5.9). Then:

* the root ``{ns}.parquet`` snapshot is a copy of the DO's SQLite ``entities``
  table at the last flush. Where it holds an entity at the same ``version`` as
  the fold, its values win: they are exactly what the Worker's ``find``
  returns (its ``updatedAt`` comes from a separate clock read, a few ms before
  the event's ``ts``). Entities only in the snapshot are kept;
* bulk-created entities (``data/{ns}/pending/*``) that no event covers are
  added (``include_pending``), with the pending file's ULID time as
  ``createdAt``. The DO itself never merges them (§6);
* documents have the SQLite shape ``$id, $type, name, version, createdAt,
  createdBy, updatedAt, updatedBy[, deletedAt, deletedBy], ...data`` and come
  newest first (``ORDER BY created_at DESC``; ties: later-created first).

**Node (B).** What a freshly opened ``ParqueDB`` returns
(``EventSourcedBackend.reconstructAllEntities`` + ``findEntities``): every
``events/batch-*.parquet`` in seq order, de-duplicated by event id (a
compaction leaves its inputs behind until it deletes them), stably sorted by
``ts``, folded per target with upstream's ``applyEvent`` (CREATE = the
``after`` entity; UPDATE = merge, ``version + 1``, ``updatedAt = ts``; DELETE
= ``deletedAt``). The entity store is an LRU map iterated most recent first,
so documents come in **reverse** order of their first event. Without batch
files, the root ``data.parquet`` snapshot is read instead.

**Native (C).** ``data/{ns}/data.parquet`` rows in file order through
upstream's ``rowToEntity`` (audit dates become datetimes, user dates stay ISO
strings, as upstream returns them).

Deleted entities are left out unless ``include_deleted``. Soft and hard
deletes emit the same DELETE event in families A and B, so there
``include_deleted`` shows both; NativeBackend removes hard-deleted rows from
its file, so they never appear.

Tail pipeline rows (:func:`read_worker_logs`, :func:`read_worker_errors`)
come back as Arrow tables with ``eventTimestamp``/``timestamp``/``ts``
repaired from the flush time in the file name; :func:`tail_logs_relation`
puts them in DuckDB. Nothing here writes to the store.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from parquedb_ibis.documents import parse_datetime
from parquedb_ibis.errors import UpstreamFormatError, ValidationError, ViewNotFoundError
from parquedb_ibis.upstream import vcodec
from parquedb_ibis.upstream.files import table_from_bytes
from parquedb_ibis.upstream.layouts import Family, Layouts, LogFile, NamespaceLayout, detect_layouts
from parquedb_ibis.upstream.timestamps import is_ulid, ulid_ms, unwrap_array, unwrap_nearest, unwrap_not_after
from parquedb_ibis.upstream.vcodec import datetime_to_ms, ms_to_datetime

if TYPE_CHECKING:
    import duckdb

    from parquedb_ibis.store import ObjectStore

Document = dict[str, Any]

#: The actor the DO and the Node library record when the caller gives none.
DEFAULT_ACTOR = "system/anonymous"

CREATE, UPDATE, DELETE = "CREATE", "UPDATE", "DELETE"

#: System fields of a Worker-DO document, in the order the DO's SQLite find returns them.
DO_SYSTEM_FIELDS = ("$id", "$type", "name", "version", "createdAt", "createdBy", "updatedAt", "updatedBy")


# -- reading files (cached, parallel) ---------------------------------------------------


class TableCache:
    """Reads upstream objects into Arrow tables once each; fetches in parallel."""

    def __init__(self, store: ObjectStore, *, max_workers: int = 8) -> None:
        self.store = store
        self.max_workers = max_workers
        self._tables: dict[str, pa.Table] = {}

    def __call__(self, key: str) -> pa.Table:
        return self.table(key)

    def table(self, key: str) -> pa.Table:
        if key not in self._tables:
            self._tables[key] = table_from_bytes(self.store.get(key), key)
        return self._tables[key]

    def tables(self, keys: Sequence[str]) -> list[pa.Table]:
        """The tables of ``keys`` (in that order), fetching the missing ones concurrently."""
        missing = [k for k in dict.fromkeys(keys) if k not in self._tables]
        if len(missing) > 1 and self.max_workers > 1:
            with ThreadPoolExecutor(max_workers=min(self.max_workers, len(missing))) as pool:
                blobs = list(pool.map(self.store.get, missing))
            for key, data in zip(missing, blobs, strict=True):
                self._tables[key] = table_from_bytes(data, key)
        return [self.table(k) for k in keys]

    def clear(self) -> None:
        self._tables.clear()


# -- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpstreamEvent:
    """One persisted upstream event, decoded, with its timestamp repaired."""

    id: str
    ts_ms: int  # epoch ms, repaired (§5.9)
    op: str
    target: str
    before: Any = None
    after: Any = None
    actor: str | None = None
    key: str = ""  # the file it came from
    stored_ts: int | None = field(default=None, compare=False)  # the raw cell (wrapped INT32 for family A)

    @property
    def ts(self) -> dt.datetime:
        return ms_to_datetime(self.ts_ms)

    @property
    def ns(self) -> str:
        return self.target.split(":", 1)[0]

    @property
    def entity_id(self) -> str:
        """The entity part of the target (``ns:id`` → ``id``; relationship targets → the from-id)."""
        parts = self.target.split(":")
        return parts[1] if len(parts) > 1 else ""

    @property
    def is_relationship(self) -> bool:
        """Upstream's ``isRelationshipTarget``-like test: more than ``ns:id``."""
        return self.target.count(":") > 1

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "ts": self.ts, "op": self.op, "target": self.target, "before": self.before,
                "after": self.after, "actor": self.actor, "file": self.key}


def read_do_events(cache: TableCache, files: Sequence[str]) -> list[UpstreamEvent]:
    """Family-A events of ``files`` (entity or relationship), in file order then row order.

    ``ts`` is INT32-wrapped: an event with a ULID id is repaired to the value
    nearest its ULID time; others (``rel_N``) to the latest value not after the
    file's checkpoint ULID (the flush).
    """
    out: list[UpstreamEvent] = []
    for key, table in zip(files, cache.tables(files), strict=True):
        base = key.rsplit("/", 1)[-1].split(".", 1)[0]
        flush_ms = ulid_ms(base) if is_ulid(base) else None
        for index, row in enumerate(table.to_pylist()):
            where = f"{key} row {index}"
            event_id = str(row.get("id") or "")
            stored = row.get("ts")
            if is_ulid(event_id):
                reference = ulid_ms(event_id)
                ts = reference if stored is None else unwrap_nearest(int(stored), reference)
            elif flush_ms is not None:
                ts = flush_ms if stored is None else unwrap_not_after(int(stored), flush_ms)
            elif stored is not None:
                ts = int(stored)  # no reference to repair from: kept as stored
            else:
                raise UpstreamFormatError(where, "event has neither ts nor a ULID to take it from")
            out.append(
                UpstreamEvent(
                    id=event_id,
                    ts_ms=ts,
                    op=str(row.get("op") or ""),
                    target=str(row.get("target") or ""),
                    before=_json_cell(row.get("before"), where),
                    after=_json_cell(row.get("after"), where),
                    actor=row.get("actor"),
                    key=key,
                    stored_ts=stored,
                )
            )
    return out


def read_node_events(cache: TableCache, files: Sequence[str]) -> list[UpstreamEvent]:
    """Family-B events: batch files in seq order, de-duplicated by id, stably sorted by ``ts``."""
    seen: set[str] = set()
    out: list[UpstreamEvent] = []
    for key, table in zip(files, cache.tables(files), strict=True):
        for index, row in enumerate(table.to_pylist()):
            where = f"{key} row {index}"
            event_id = str(row.get("id") or "")
            if event_id in seen:
                continue
            seen.add(event_id)
            stored = row.get("ts")
            if stored is None:
                raise UpstreamFormatError(where, "event without ts")
            out.append(
                UpstreamEvent(
                    id=event_id,
                    ts_ms=int(stored),
                    op=str(row.get("op") or ""),
                    target=str(row.get("target") or ""),
                    before=_variant_cell(row.get("before"), where),
                    after=_variant_cell(row.get("after"), where),
                    actor=row.get("actor"),
                    key=key,
                    stored_ts=stored,
                )
            )
    out.sort(key=lambda e: e.ts_ms)  # stable, like upstream's Array.prototype.sort
    return out


def _json_cell(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (dict, list)):
        return value
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if value == "":
        return None
    try:
        return json.loads(value)
    except ValueError as err:
        raise UpstreamFormatError(where, "payload is not valid JSON") from err


def _variant_cell(value: Any, where: str) -> Any:
    if value is None or value == "":
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    return vcodec.decode_base64(value, where=where)


# -- family A: the Worker Durable Object -------------------------------------------------


def fold_worker_do(
    ns: str,
    events: Iterable[UpstreamEvent],
    snapshot: Sequence[Mapping[str, Any]] = (),
    pending: Sequence[tuple[Mapping[str, Any], int | None]] = (),
    *,
    include_deleted: bool = False,
) -> list[Document]:
    """Family-A documents of ``ns`` (see the module docstring).

    ``snapshot`` holds root ``{ns}.parquet`` rows (``$id``, ``$data`` JSON);
    ``pending`` holds ``(row, file_ulid_ms)`` pairs of bulk files (``$id``, ``data`` JSON).
    """
    state: dict[str, dict[str, Any]] = {}
    order: dict[str, int] = {}
    counter = 0
    for event in events:
        if event.is_relationship or event.ns != ns:
            continue
        local = event.entity_id
        current = state.get(local)
        after = event.after if isinstance(event.after, Mapping) else None
        actor = event.actor or DEFAULT_ACTOR
        if event.op == CREATE:
            if after is None:
                continue
            data = dict(after)
            kind, name = data.pop("$type", None), data.pop("name", None)
            data.pop("$id", None)
            state[local] = {
                "$id": f"{ns}/{local}", "$type": kind or "Unknown", "name": name or local, "version": 1,
                "createdAt": event.ts, "createdBy": actor, "updatedAt": event.ts, "updatedBy": actor, "data": data,
            }
            order[local] = counter  # a CREATE on a live id replaces it (id reuse): it is new
            counter += 1
        elif event.op == UPDATE:
            if current is None or after is None:
                continue
            data = dict(after)
            kind, name = data.pop("$type", None), data.pop("name", None)
            data.pop("$id", None)
            current["$type"] = kind or current["$type"]
            current["name"] = name or current["name"]
            current["updatedAt"], current["updatedBy"] = event.ts, actor
            current["version"] += 1
            if isinstance(event.before, Mapping) and "deletedAt" in event.before:  # restore: after is {$type, name}
                current.pop("deletedAt", None)
                current.pop("deletedBy", None)
                current["data"].update(data)
            else:
                current["data"] = data  # after is the full new state
        elif event.op == DELETE:
            if current is None:
                continue
            current["deletedAt"], current["deletedBy"] = event.ts, actor
            current["version"] += 1

    documents: dict[str, tuple[Document, int]] = {}
    for local, entity in state.items():
        data = entity.pop("data")
        documents[entity["$id"]] = (_do_document(entity, data), order[local])

    for row in snapshot:
        doc = _do_snapshot_document(row)
        found = documents.get(doc["$id"])
        if found is None:
            documents[doc["$id"]] = (doc, -1)
        elif found[0].get("version") == doc.get("version") and "deletedAt" not in found[0]:
            documents[doc["$id"]] = (doc, found[1])  # same state; the snapshot has SQLite's exact audit values

    for row, file_ms in pending:
        entity_id = str(row.get("$id") or "")
        if not entity_id or entity_id in documents:
            continue
        data = _json_cell(row.get("data", row.get("$data")), f"pending {entity_id}") or {}
        data = dict(data) if isinstance(data, Mapping) else {}
        created = ms_to_datetime(file_ms) if file_ms is not None else None
        system = {"$id": entity_id, "$type": data.pop("$type", None) or "Unknown",
                  "name": data.pop("name", None) or entity_id.split("/", 1)[-1], "version": 1,
                  "createdAt": created, "createdBy": None, "updatedAt": created, "updatedBy": None}
        documents[entity_id] = (_do_document(system, data), counter)
        counter += 1

    ranked = sorted(documents.values(), key=lambda pair: pair[1], reverse=True)  # later-created first
    ranked.sort(key=lambda pair: _sort_ms(pair[0].get("createdAt")), reverse=True)  # stable: ties keep that
    return [doc for doc, _ in ranked if include_deleted or not doc.get("deletedAt")]


def _do_document(system: Mapping[str, Any], data: Mapping[str, Any]) -> Document:
    doc = {key: system.get(key) for key in DO_SYSTEM_FIELDS}
    if system.get("deletedAt"):
        doc["deletedAt"], doc["deletedBy"] = system["deletedAt"], system.get("deletedBy")
    for key, value in data.items():
        if key != "$id":
            doc[key] = value
    return doc


def _do_snapshot_document(row: Mapping[str, Any]) -> Document:
    entity_id = str(row.get("$id") or "")
    data = _json_cell(row.get("$data"), f"snapshot {entity_id}") or {}
    data = dict(data) if isinstance(data, Mapping) else {}
    system = {"$id": entity_id}
    for key in DO_SYSTEM_FIELDS[1:]:
        value = data.pop(key, None)
        system[key] = _js_date(value) if key in ("createdAt", "updatedAt") else value
    return _do_document(system, data)


def _sort_ms(value: Any) -> int:
    if isinstance(value, dt.datetime):
        return datetime_to_ms(value)
    return -(2**63)


# -- family B: the Node library ------------------------------------------------------------


def fold_node(ns: str, events: Iterable[UpstreamEvent], *, include_deleted: bool = False) -> list[Document]:
    """Family-B documents of ``ns`` as a cold-started upstream ``find`` returns them."""
    groups: dict[str, list[UpstreamEvent]] = {}
    for event in events:
        if event.is_relationship:
            continue
        groups.setdefault(event.target, []).append(event)
    out: list[Document] = []
    for target, group in groups.items():
        if target.split(":", 1)[0] != ns:
            continue
        entity: Document | None = None
        for event in group:
            entity = _apply_node_event(entity, event)
        if entity is not None and (include_deleted or not entity.get("deletedAt")):
            out.append(entity)
    out.reverse()  # the LRU entity store iterates most recently set first
    return out


def _apply_node_event(entity: Document | None, event: UpstreamEvent) -> Document | None:
    """Upstream ``EventSourcedBackend.applyEvent``."""
    after = event.after if isinstance(event.after, Mapping) else None
    if event.op == CREATE:
        return _variant_to_entity(after, event.target) if after is not None else entity
    if event.op == UPDATE:
        if entity is None or after is None:
            return entity
        version = entity.get("version")
        merged = {**entity, **after}
        merged["version"] = (version if isinstance(version, int) and not isinstance(version, bool) else 0) + 1
        merged["updatedAt"] = event.ts
        return merged
    if event.op == DELETE:
        if entity is None:
            return None
        return {**entity, "deletedAt": event.ts, "deletedBy": event.actor}
    return entity


def _variant_to_entity(after: Mapping[str, Any], target: str) -> Document:
    """Upstream ``variantToEntity``: defaults first, then every key of ``after`` (its order wins for new keys)."""
    parts = target.split(":")
    ns, local = parts[0], (parts[1] if len(parts) > 1 else "")
    defaults: Document = {
        "$id": f"{ns}/{local}",
        "$type": after.get("$type") or "Unknown",
        "name": after.get("name") or "",
        "version": 1,
        "createdAt": None,  # upstream: new Date() at read time; the after state always carries it
        "createdBy": "",
        "updatedAt": None,
        "updatedBy": "",
    }
    return {**defaults, **after}


def row_to_entity(row: Mapping[str, Any], *, where: str = "row") -> Document:
    """Upstream ``rowToEntity`` for format-A rows (``$id``, ``$type``, ``$name``, base64 "V" ``$data``)."""
    raw = row.get("$data")
    decoded = _variant_cell(raw, where) if isinstance(raw, (str, bytes)) else raw
    data = dict(decoded) if isinstance(decoded, Mapping) else {}
    audit = {key: data.pop(key, None) for key in
             ("createdAt", "createdBy", "updatedAt", "updatedBy", "deletedAt", "deletedBy", "version")}
    doc: Document = {
        "$id": row.get("$id"),
        "$type": row.get("$type"),
        "name": row.get("$name"),
        "createdAt": _js_date(audit["createdAt"]),
        "createdBy": audit["createdBy"] if audit["createdBy"] is not None else "",
        "updatedAt": _js_date(audit["updatedAt"]),
        "updatedBy": audit["updatedBy"] if audit["updatedBy"] is not None else "",
    }
    if audit["deletedAt"]:
        doc["deletedAt"] = _js_date(audit["deletedAt"])
    if audit["deletedBy"]:
        doc["deletedBy"] = audit["deletedBy"]
    doc["version"] = audit["version"] if audit["version"] is not None else 1
    doc.update(data)
    return doc


def _js_date(value: Any) -> Any:
    """``typeof v === 'string' ? new Date(v) : v``: ISO strings become datetimes (unparsable ones stay)."""
    if isinstance(value, str):
        try:
            return parse_datetime(value)
        except ValueError:
            return value
    return value


# -- family C: NativeBackend -------------------------------------------------------------------


def read_native(table: pa.Table, *, key: str = "data.parquet", include_deleted: bool = False) -> list[Document]:
    """NativeBackend ``find``: rows in file order (the last row of an id wins, in the first one's place)."""
    entities: dict[Any, Document] = {}
    for index, row in enumerate(table.to_pylist()):
        entity = row_to_entity(row, where=f"{key} row {index}")
        entities[entity["$id"]] = entity
    return [e for e in entities.values() if include_deleted or not e.get("deletedAt")]


# -- one namespace, any family -------------------------------------------------------------------


def pick_layout(layouts: Layouts, ns: str, family: Family | str | None = None) -> NamespaceLayout:
    """The layout :func:`read_namespace` reads for ``ns`` (``family`` picks one when several hold it)."""
    candidates = layouts.for_namespace(ns)
    if family is not None:
        wanted = Family(family)
        candidates = tuple(c for c in candidates if c.family == wanted)
    if not candidates:
        raise ViewNotFoundError(ns, layouts.names(), kind="upstream namespace")
    if len(candidates) > 1:
        kinds = ", ".join(repr(str(c.family)) for c in candidates)
        raise ValidationError(f"upstream namespace {ns!r}", f"held by several layouts ({kinds}); pass family=")
    return candidates[0]


def read_namespace(
    store: ObjectStore,
    ns: str,
    *,
    include_deleted: bool = False,
    include_pending: bool = True,
    family: Family | str | None = None,
    layouts: Layouts | None = None,
    cache: TableCache | None = None,
) -> list[Document]:
    """Every document of ``ns``, as upstream's ``find(ns, {})`` returns them (module docstring)."""
    cache = cache or TableCache(store)
    layouts = layouts if layouts is not None else detect_layouts(store, cache)
    layout = pick_layout(layouts, ns, family)
    if layout.family == Family.WORKER_DO:
        events = read_do_events(cache, layout.event_files)
        snapshot = cache.table(layout.snapshot).to_pylist() if layout.snapshot else []
        pending: list[tuple[Mapping[str, Any], int | None]] = []
        if include_pending:
            for key, table in zip(layout.pending_files, cache.tables(layout.pending_files), strict=True):
                base = key.rsplit("/", 1)[-1].split(".", 1)[0]
                file_ms = ulid_ms(base) if is_ulid(base) else None
                pending.extend((row, file_ms) for row in table.to_pylist())
        return fold_worker_do(ns, events, snapshot, pending, include_deleted=include_deleted)
    if layout.family == Family.NODE:
        if layout.event_files:
            return fold_node(ns, read_node_events(cache, layout.event_files), include_deleted=include_deleted)
        if layout.snapshot is None:
            return []
        rows = [r for r in cache.table(layout.snapshot).to_pylist() if str(r.get("$id", "")).startswith(f"{ns}/")]
        docs = [row_to_entity(r, where=layout.snapshot) for r in rows]
        return [d for d in docs if include_deleted or not d.get("deletedAt")]
    assert layout.data_file is not None
    return read_native(cache.table(layout.data_file), key=layout.data_file, include_deleted=include_deleted)


def read_events(store: ObjectStore, layout: NamespaceLayout, cache: TableCache | None = None) -> list[UpstreamEvent]:
    """The entity events of ``layout`` (families A and B), repaired, in fold order."""
    cache = cache or TableCache(store)
    if layout.family == Family.WORKER_DO:
        return [e for e in read_do_events(cache, layout.event_files) if e.ns == layout.ns]
    if layout.family == Family.NODE:
        return [e for e in read_node_events(cache, layout.event_files) if e.ns == layout.ns]
    return []


def read_relationships(store: ObjectStore, layout: NamespaceLayout, cache: TableCache | None = None) -> list[Document]:
    """Live links from ``layout.ns``: fold CREATE (link) / DELETE (unlink) relationship events.

    Targets are ``{fromNs}:{fromId}:{predicate}:{toNs}:{toId}``; each link is
    ``{from, predicate, to, createdAt, createdBy}`` plus ``matchMode``,
    ``similarity`` and ``data`` when the event carries them. Family C keeps
    links inside the entities, so it has none here.
    """
    cache = cache or TableCache(store)
    if layout.family == Family.WORKER_DO:
        events = read_do_events(cache, layout.rel_event_files)
    elif layout.family == Family.NODE:
        events = read_node_events(cache, layout.event_files)
    else:
        return []
    links: dict[tuple[str, str, str], Document] = {}
    for event in events:
        parts = event.target.split(":")
        if len(parts) < 5 or parts[0] != layout.ns:
            continue
        source, predicate, to = f"{parts[0]}/{parts[1]}", parts[2], f"{parts[3]}/{':'.join(parts[4:])}"
        link_key = (source, predicate, to)
        if event.op == CREATE:
            link = {"from": source, "predicate": predicate, "to": to, "createdAt": event.ts, "createdBy": event.actor}
            if isinstance(event.after, Mapping):
                link.update({k: event.after[k] for k in ("matchMode", "similarity", "data") if k in event.after})
            links[link_key] = link
        elif event.op == DELETE:
            links.pop(link_key, None)
    return list(links.values())


# -- family F: the tail pipeline ----------------------------------------------------------------

#: WorkerLogsMV columns and their Arrow types (upstream ``WORKER_LOGS_SCHEMA``; timestamps repaired).
WORKER_LOGS_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("scriptName", pa.string()),
    ("eventTimestamp", pa.timestamp("ms", tz="UTC")),
    ("timestamp", pa.timestamp("ms", tz="UTC")),
    ("level", pa.string()),
    ("message", pa.string()),
    ("httpMethod", pa.string()),
    ("httpUrl", pa.string()),
    ("httpStatus", pa.int32()),
    ("outcome", pa.string()),
    ("isException", pa.bool_()),
    ("exceptionName", pa.string()),
    ("colo", pa.string()),
    ("country", pa.string()),
    ("requestId", pa.string()),
    ("fetchCount", pa.int32()),
    ("flushedAt", pa.timestamp("ms", tz="UTC")),
    ("file", pa.string()),
])

#: WorkerErrorsMV columns (upstream ``WORKER_ERRORS_SCHEMA``; ``ts`` repaired).
WORKER_ERRORS_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("ts", pa.timestamp("ms", tz="UTC")),
    ("category", pa.string()),
    ("severity", pa.string()),
    ("code", pa.string()),
    ("message", pa.string()),
    ("stack", pa.string()),
    ("path", pa.string()),
    ("method", pa.string()),
    ("requestId", pa.string()),
    ("workerName", pa.string()),
    ("colo", pa.string()),
    ("metadata", pa.string()),
    ("flushedAt", pa.timestamp("ms", tz="UTC")),
    ("file", pa.string()),
])

TimeLike = dt.datetime | int | None


def read_worker_logs(
    cache: TableCache,
    files: Sequence[LogFile],
    *,
    reference: TimeLike = None,
    since: TimeLike = None,
    until: TimeLike = None,
) -> pa.Table:
    """WorkerLogs rows of ``files`` with ``eventTimestamp``/``timestamp`` repaired.

    By default each file's values are repaired to the latest instant not after
    its flush time (``logs-{ms}``), which is right whenever events are flushed
    less than 2**32 ms (49.7 days) after they happen: the production case. For
    backfills or replays pass ``reference`` (a time within ±24.8 days of the
    events) to take the nearest value to it instead. ``since``/``until`` keep
    rows with ``since <= eventTimestamp < until`` and skip files flushed before ``since``.
    """
    return _read_tail(cache, files, WORKER_LOGS_SCHEMA, ("eventTimestamp", "timestamp"), "eventTimestamp",
                      reference, since, until)


def read_worker_errors(
    cache: TableCache,
    files: Sequence[LogFile],
    *,
    reference: TimeLike = None,
    since: TimeLike = None,
    until: TimeLike = None,
) -> pa.Table:
    """WorkerErrors rows of ``files`` with ``ts`` repaired (same rules as :func:`read_worker_logs`)."""
    return _read_tail(cache, files, WORKER_ERRORS_SCHEMA, ("ts",), "ts", reference, since, until)


def read_log_file(cache: TableCache, key: str, *, flush_ms: int | None = None, reference: TimeLike = None,
                  kind: str = "logs") -> pa.Table:
    """One tail file whose name carries no flush time (pass ``flush_ms`` or ``reference``)."""
    if flush_ms is None and reference is None:
        raise ValidationError(key, "no flush time in the file name; pass flush_ms= or reference=")
    log = LogFile(key, kind, flush_ms if flush_ms is not None else _to_ms(reference), "")
    reader = read_worker_logs if kind == "logs" else read_worker_errors
    return reader(cache, [log], reference=reference)


def _read_tail(
    cache: TableCache,
    files: Sequence[LogFile],
    schema: pa.Schema,
    time_columns: tuple[str, ...],
    event_column: str,
    reference: TimeLike,
    since: TimeLike,
    until: TimeLike,
) -> pa.Table:
    since_ms, until_ms = _to_ms(since), _to_ms(until)
    if since_ms is not None:
        files = [f for f in files if f.flush_ms >= since_ms]  # every row happened before its flush
    reference_ms = _to_ms(reference)
    parts = []
    for log, table in zip(files, cache.tables([f.key for f in files]), strict=True):
        parts.append(_canonical(table, log, schema, time_columns, reference_ms))
    result = pa.concat_tables(parts) if parts else schema.empty_table()
    if since_ms is not None or until_ms is not None:
        values = result.column(event_column).cast(pa.int64()).to_numpy(zero_copy_only=False)
        mask = np.ones(len(values), dtype=bool)
        if since_ms is not None:
            mask &= values >= since_ms
        if until_ms is not None:
            mask &= values < until_ms
        result = result.filter(pa.array(mask))
    return result


def _canonical(table: pa.Table, log: LogFile, schema: pa.Schema, time_columns: tuple[str, ...],
               reference_ms: int | None) -> pa.Table:
    columns = []
    for target in schema:
        name = target.name
        if name == "flushedAt":
            columns.append(pa.array(np.full(table.num_rows, log.flush_ms, dtype=np.int64)).cast(target.type))
        elif name == "file":
            columns.append(pa.array([log.key] * table.num_rows, pa.string()))
        elif name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, target.type))
        elif name in time_columns:
            raw = table.column(name).cast(pa.int64()).combine_chunks()
            stored = raw.fill_null(0).to_numpy(zero_copy_only=False)
            if reference_ms is None:
                repaired = unwrap_array(stored, log.flush_ms, nearest=False)
            else:
                repaired = unwrap_array(stored, reference_ms, nearest=True)
            mask = raw.is_null().to_numpy(zero_copy_only=False) if raw.null_count else None
            columns.append(pa.array(repaired, pa.int64(), mask=mask).cast(target.type))
        else:
            column = table.column(name)
            if name == "metadata" and not (pa.types.is_string(column.type) or pa.types.is_binary(column.type)):
                column = pa.array([None if v is None else json.dumps(v) for v in column.to_pylist()], pa.string())
            try:
                columns.append(column.cast(target.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
                raise UpstreamFormatError(log.key, f"column {name!r} of type {column.type} does not cast to {target.type}") from err
    return pa.Table.from_arrays(columns, schema=schema)


def _to_ms(value: TimeLike) -> int | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return datetime_to_ms(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError("tail logs", f"expected a datetime or epoch milliseconds, found {value!r}")
    return int(value)


def tail_logs_relation(
    store: ObjectStore,
    con: duckdb.DuckDBPyConnection | None = None,
    *,
    layouts: Layouts | None = None,
    cache: TableCache | None = None,
    **options: Any,
) -> duckdb.DuckDBPyRelation:
    """The store's WorkerLogs rows (repaired) as a DuckDB relation.

    The files are read with pyarrow (upstream writes them with the Hadoop LZ4
    codec, which DuckDB 1.5 cannot decode) and handed to DuckDB as an Arrow
    table; ``options`` are those of :func:`read_worker_logs`.
    """
    from parquedb_ibis.store import connect_duckdb

    cache = cache or TableCache(store)
    layouts = layouts if layouts is not None else detect_layouts(store, cache)
    table = read_worker_logs(cache, layouts.worker_logs, **options)
    con = con if con is not None else connect_duckdb(None)
    return con.from_arrow(table)

