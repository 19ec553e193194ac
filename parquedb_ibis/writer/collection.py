"""A collection: event-sourced writes buffered into Parquet segments, and snapshot reads.

Each write (create, update, replace, delete) is turned into one
:class:`~parquedb_ibis.writer.events.Event` at once, against the latest state
(committed or staged), so errors surface on the call and the caller gets the
new document back. Events are staged in memory (and in the optional WAL) and
published by :meth:`Collection.flush`: one immutable segment file, then one
compare-and-swap of the head. Flushes also happen by count, bytes and age.

When another writer published first, the flush reloads the head. If no entity
this flush touched has changed it simply re-publishes on top (the segment is
already written); otherwise it re-derives its events from the recorded
intents against the new state — so ``$inc`` never loses an update — and an
``expected_version`` that no longer holds raises
:class:`~parquedb_ibis.errors.VersionConflictError`. Nothing is half-published.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import gc
import io
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlglot import exp

from parquedb_ibis import query
from parquedb_ibis.documents import DATA_COLUMN, encode_document, encode_documents_utf8, format_datetime
from parquedb_ibis.errors import (
    CommitConflictError,
    EntityNotFoundError,
    ParqueDBError,
    ValidationError,
    VersionConflictError,
)
from parquedb_ibis.schema import Schema, from_row, to_columns, to_row
from parquedb_ibis.updates import PROTECTED_FIELDS, apply_update, validate_update
from parquedb_ibis.writer import bulk, reader
from parquedb_ibis.writer.events import (
    EVENT_COLUMNS,
    Columns,
    Event,
    columns_table,
    event_columns,
    state_schema,
    string_array,
    table_to_parquet,
)
from parquedb_ibis.writer.ids import new_ulid, new_ulids
from parquedb_ibis.writer.manifest import Head, SegmentRef, segment_key
from parquedb_ibis.writer.transaction import AppendSegments, AssertEntitiesUnchanged, SetSchema, commit, load_head
from parquedb_ibis.writer.wal import WalRecord, WriteAheadLog

if TYPE_CHECKING:
    from parquedb_ibis.writer.database import Database

#: Fields the writer sets on create; a document's own values for them are ignored.
_WRITER_FIELDS = frozenset({"$id", "$type", "createdAt", "updatedAt", "createdBy", "updatedBy", "version", "deletedAt"})

#: How often a flush re-derives its events after losing to concurrent writers.
MAX_REBASES = 50

#: A flush is split into parallel segment parts only when each part gets at least this many (Arrow) bytes.
PART_BYTES = 4 << 20
_WORKERS = os.cpu_count() or 1
_POOL: tuple[int, concurrent.futures.ThreadPoolExecutor] | None = None


def _encoder_pool() -> concurrent.futures.ThreadPoolExecutor:
    """The threads that encode and store segment parts (Parquet encoding and I/O release the GIL).

    One pool per process: a forked child makes its own (the parent's threads do not exist there).
    """
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():
        _POOL = (os.getpid(), concurrent.futures.ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="parquedb-segment"))
    return _POOL[1]


@dataclass
class _Batch:
    """The events one write call derived (one per intent, in order), ready to be written.

    ``intents`` are kept to re-derive the events after losing a commit race;
    ``columns`` are the events' segment rows (see events.Columns); ``afters``
    the documents after each event (None: hard-deleted). All events of a batch
    share the timestamp ``ts``.
    """

    intents: list[dict[str, Any]]
    event_ids: list[str]
    full_ids: list[str]
    afters: list[dict[str, Any] | None]
    ts: dt.datetime
    columns: Columns
    creates_only: bool
    nbytes: int


@dataclass
class _Buffer:
    batches: list[_Batch] = field(default_factory=list)
    states: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # $id -> latest staged doc (None: hard-deleted)
    events: int = 0
    nbytes: int = 0
    since: float | None = None
    base_len: int | None = None  # history length of the oldest head these events were derived against
    known: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # committed states looked up at that head


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for a block (as it was before, after)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _constant_or_list(values: list[str]) -> pa.Array | list[str]:
    """A run of one repeated string as a repeat array (cheap to convert and to encode), else the list."""
    if values and values.count(values[0]) == len(values):
        return pa.repeat(pa.scalar(values[0], pa.string()), len(values))
    return values


class Collection:
    """The writes and reads of one namespace. Get one with ``db.collection(name)``."""

    def __init__(self, db: Database, ns: str, schema: Schema) -> None:
        self.db = db
        self.ns = ns
        self.schema = schema
        self._buffer = _Buffer()
        self._lock = threading.RLock()
        self._head, self._etag = load_head(db.store, ns)
        self._wal = WriteAheadLog(db.wal_dir, ns, sync=db.wal_sync) if db.wal_dir else None
        self._timer: threading.Timer | None = None
        self._segment_cache: dict[str, dict[str, dict[str, Any] | None]] = {}
        self._ids = iter(())
        if self._wal:
            self._replay_wal()

    def __repr__(self) -> str:
        return f"Collection({self.ns!r}, version={self._head.version}, staged={self._buffer.events})"

    # -- ids and time ------------------------------------------------------------

    def full_id(self, entity_id: str) -> str:
        """``'abc'`` or ``'ns/abc'`` -> ``'ns/abc'`` (another namespace is an error)."""
        if not isinstance(entity_id, str) or not entity_id:
            raise ValidationError(f"{self.ns}", f"entity id must be a non-empty string, found {entity_id!r}")
        if "/" in entity_id:
            ns, _, local = entity_id.partition("/")
            if ns != self.ns or not local or "/" in local:
                raise ValidationError(f"{self.ns}", f"entity id {entity_id!r} does not belong to collection {self.ns!r}")
            return entity_id
        return f"{self.ns}/{entity_id}"

    @staticmethod
    def _now() -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)

    # -- reading state -----------------------------------------------------------

    @property
    def head(self) -> Head:
        return self._head

    def refresh(self) -> Head:
        """Reload the head (see other writers' commits)."""
        with self._lock:
            self._head, self._etag = load_head(self.db.store, self.ns)
            return self._head

    def relation(self, *, as_of: dt.datetime | None = None, include_deleted: bool = False) -> exp.Select:
        """The collection's state as a sqlglot SELECT over the files one head names.

        Pending writes are flushed first, so a read sees every acknowledged write.
        """
        self.flush()
        head = self.refresh()
        if as_of is not None:
            return reader.as_of_relation(head, as_of, self.db.store.url_for, include_deleted=include_deleted)
        return reader.head_relation(head, self.db.store.url_for, include_deleted=include_deleted)

    def _committed_states(self, ids: Iterable[str], head: Head) -> dict[str, dict[str, Any]]:
        """Latest committed documents (soft-deleted included) for ``ids``."""
        ids = sorted(set(ids))
        if not ids or head.version == 0:
            return {}
        rel = reader.head_relation(head, self.db.store.url_for, include_deleted=True)
        query = exp.select("*").from_(exp.alias_(exp.Subquery(this=rel), "s"))
        tables = {}
        if len(ids) <= 64:
            query = query.where(exp.column("$id", quoted=True).isin(*(exp.Literal.string(i) for i in ids)))
        else:  # a semi-join against the ids as a table, not a huge IN list
            tables = {"__pq_lookup_ids": pa.table({"id": ids})}
            query = query.where(exp.column("$id", quoted=True).isin(query=exp.select("id").from_("__pq_lookup_ids")))
        schema = Schema.parse(head.schema)
        rows = self.db.query_rows(query, tables=tables)
        return {row["$id"]: from_row(row, schema) for row in rows}

    def _state(self, full_id: str, base: Mapping[str, dict[str, Any] | None]) -> dict[str, Any] | None:
        if full_id in self._buffer.states:
            return self._buffer.states[full_id]
        return base.get(full_id)

    def get(self, entity_id: str, *, as_of: dt.datetime | int | None = None, include_deleted: bool = False) -> dict[str, Any]:
        """The entity's document; ``as_of`` a datetime (state then) or an int (that version)."""
        full = self.full_id(entity_id)
        with self._lock:
            if as_of is None and full in self._buffer.states:
                doc = self._buffer.states[full]
            elif as_of is None:
                doc = self._committed_states([full], self._head).get(full)
            else:
                doc = self._get_as_of(full, as_of)
        if doc is None or (doc.get("deletedAt") is not None and not include_deleted):
            raise EntityNotFoundError(self.ns, full)
        return doc

    def _get_as_of(self, full: str, as_of: dt.datetime | int) -> dict[str, Any] | None:
        self.flush()
        head = self.refresh()
        if isinstance(as_of, bool) or not isinstance(as_of, (int, dt.datetime)):
            raise ValidationError(f"{full}", f"as_of must be a datetime or a version number, found {as_of!r}")
        if isinstance(as_of, dt.datetime):
            rel = reader.as_of_relation(head, as_of, self.db.store.url_for, include_deleted=True)
            query = exp.select("*").from_(exp.alias_(exp.Subquery(this=rel), "s")).where(
                exp.column("$id", quoted=True).eq(exp.Literal.string(full)))
        else:
            if not head.history:
                return None
            files = [self.db.store.url_for(s.key) for s in head.history]
            cols = [exp.column(c, quoted=True) for c in reader.state_columns(Schema.parse(head.schema))]
            query = exp.select(*cols).from_(reader.read_parquet(files, union_by_name=True)).where(
                exp.and_(exp.column("$id", quoted=True).eq(exp.Literal.string(full)),
                         exp.column("version", quoted=True).eq(exp.Literal.number(as_of)))
            ).limit(1)
        rows = self.db.query_rows(query)
        return from_row(rows[0], Schema.parse(head.schema)) if rows else None

    # -- finding -------------------------------------------------------------------

    def _read_schema(self) -> Schema:
        return Schema.parse(self._head.schema) if self._head.version else self.schema

    def find(self, filter: Mapping[str, Any] | None = None, *, sort: Mapping[str, Any] | None = None,
             limit: int | None = None, skip: int | None = None, cursor: str | None = None,
             project: Mapping[str, Any] | None = None, as_of: dt.datetime | None = None,
             include_deleted: bool = False) -> list[dict[str, Any]]:
        """Documents matching a Mongo-style ``filter`` (see docs/filters.md), in ParqueDB find order."""
        rel = self.relation(as_of=as_of, include_deleted=include_deleted)
        with self.db.session() as con:
            return query.find(con, rel, self._read_schema(), filter, sort, limit, skip, cursor, project)

    def find_one(self, filter: Mapping[str, Any] | None = None, *, sort: Mapping[str, Any] | None = None,
                 project: Mapping[str, Any] | None = None, as_of: dt.datetime | None = None) -> dict[str, Any] | None:
        """The first document matching ``filter`` in sort order, or None."""
        found = self.find(filter, sort=sort, limit=1, project=project, as_of=as_of)
        return found[0] if found else None

    def count(self, filter: Mapping[str, Any] | None = None, *, as_of: dt.datetime | None = None,
              include_deleted: bool = False) -> int:
        """How many documents match ``filter``."""
        rel = self.relation(as_of=as_of, include_deleted=include_deleted)
        with self.db.session() as con:
            return query.count(con, rel, self._read_schema(), filter)

    def distinct(self, field: str, filter: Mapping[str, Any] | None = None, *, as_of: dt.datetime | None = None) -> list[Any]:
        """The distinct values of ``field`` among documents matching ``filter``."""
        rel = self.relation(as_of=as_of)
        with self.db.session() as con:
            return query.distinct(con, rel, self._read_schema(), field, filter)

    def explain(self, filter: Mapping[str, Any] | None = None, **options: Any) -> query.Explanation:
        """The SQL a find runs and DuckDB's plan for it (pushed-down filters show in the scans)."""
        rel = self.relation()
        with self.db.session() as con:
            return query.explain(con, rel, self._read_schema(), filter, **options)

    # -- writing -----------------------------------------------------------------

    def create(self, doc: Mapping[str, Any], *, actor: str | None = None) -> dict[str, Any]:
        """Create one entity; returns it with its system fields."""
        return self._write([{"op": "create", "doc": doc, "actor": actor}])[0]

    def insert_many(self, docs: Iterable[Mapping[str, Any]], *, actor: str | None = None) -> list[dict[str, Any]]:
        """Create many entities in one batch (all or nothing)."""
        with _gc_paused():  # many new dicts and none garbage: no collector passes over the heap meanwhile
            return self._write([{"op": "create", "doc": d, "actor": actor} for d in docs])

    def insert_arrow(self, table: pa.Table, *, actor: str | None = None, skip_existing: bool = False) -> int:
        """Create one entity per row of an Arrow table, in one commit; returns how many were created.

        The bulk-load path: no Python document is built per row. Columns are
        the declared fields (see :mod:`parquedb_ibis.writer.bulk` for the Arrow
        types each accepts; variant fields as JSON text), and optionally
        ``$id`` (local or ``ns/local`` ids; generated when left out), ``$type``
        and ``$data`` (a JSON object of the undeclared fields). Staged writes
        are flushed first; the rows are then written as their own segment(s)
        and published by one head commit, after which the flush hooks run
        (streaming views refresh). Given ids that exist already or repeat in
        the table raise :class:`ValidationError`, or with ``skip_existing``
        are skipped (the first of repeats is kept). Bad input raises
        :class:`ValidationError` naming the column and row; nothing is written.
        """
        where = f"{self.ns}.insert_arrow"
        if not isinstance(table, pa.Table):
            raise ValidationError(where, f"expected a pyarrow Table, found {type(table).__name__}")
        with self._lock:
            self.flush()
            state = bulk.conform(table, self.schema, where)
            checks, query = bulk.json_checks(state, self.schema)
            (found,) = self.db.query_rows(query, tables={bulk.TABLE: checks})
            for name, row in found.items():
                if row is not None:
                    raise ValidationError(f"{where} column {name!r} row {row}", bulk.json_problem(name, self.schema))
            given = bulk.ID in table.column_names
            ids = bulk.full_ids(table[bulk.ID], self.ns, where) if given else None
            types = table[bulk.TYPE].cast(pa.string()) if bulk.TYPE in table.column_names else None
            for _attempt in range(MAX_REBASES):
                keep = self._new_rows(ids, skip_existing, where) if given else None
                rows = table.num_rows if keep is None else len(keep)
                if rows == 0:
                    return 0
                event_ids = new_ulids(rows)
                if given:
                    row_ids = ids.take(keep) if keep is not None else ids
                else:
                    row_ids = pc.binary_join_element_wise(f"{self.ns}/", pc.utf8_lower(pa.array(event_ids)), "")
                kinds = pc.fill_null(types, self.ns) if types is not None else pa.repeat(pa.scalar(self.ns), table.num_rows)
                part = {name: column.take(keep) if keep is not None else column for name, column in state.items()}
                columns = bulk.create_columns(self.ns, event_ids, row_ids,
                                              kinds.take(keep) if keep is not None else kinds,
                                              actor or self.db.actor, self._now(), part)
                segments = self._write_segments(columns_table([columns], self.schema))
                updates: list[object] = [AppendSegments(segments)]
                if self._head.version == 0 or self._head.schema != self.schema.to_spec():
                    updates.append(SetSchema(self.schema.to_spec()))
                requirements = [AssertEntitiesUnchanged(frozenset(row_ids.to_pylist()), len(self._head.history),
                                                        self._segment_ids)] if given else []
                try:
                    self._head, self._etag = commit(self.db.store, self._head, self._etag, updates, requirements)
                    break
                except CommitConflictError:  # another writer created one of the given ids: check them again
                    self.db.store.delete_many([s.key for s in segments])
                    self.refresh()
            else:
                raise CommitConflictError(self.ns, expected="a quiet head", found=f"version {self._head.version}",
                                          hint=f"gave up after {MAX_REBASES} attempts; retry later")
            self.db.after_flush(self, segments)
            return rows

    def _new_rows(self, ids: pa.ChunkedArray, skip_existing: bool, where: str) -> pa.Array | None:
        """Row numbers to create among given ``ids`` (None: all); raises for existing or repeated ids
        unless ``skip_existing``."""
        values = ids.to_pylist()
        existing = self._existing_ids(values)
        seen: set[str] = set()
        keep = []
        for row, full in enumerate(values):
            if full in existing or full in seen:
                if not skip_existing:
                    what = "exists already" if full in existing else "repeats an earlier row"
                    raise ValidationError(f"{where} column '$id' row {row}", f"{full!r} {what}; "
                                          "pass skip_existing=True to skip such rows")
                continue
            seen.add(full)
            keep.append(row)
        return None if len(keep) == len(values) else pa.array(keep, pa.int64())

    def _existing_ids(self, ids: list[str]) -> set[str]:
        """Which of ``ids`` name an entity of the committed state (soft-deleted ones included)."""
        if not ids or self._head.version == 0:
            return set()
        rel = reader.head_relation(self._head, self.db.store.url_for, include_deleted=True)
        lookup = "__pq_lookup_ids"
        query = exp.select(exp.column("$id", quoted=True)).from_(exp.alias_(exp.Subquery(this=rel), "s")).where(
            exp.column("$id", quoted=True).isin(query=exp.select("id").from_(lookup)))
        return {row["$id"] for row in self.db.query_rows(query, tables={lookup: pa.table({"id": ids})})}

    def _segment_ids(self, segment: SegmentRef) -> frozenset[str]:
        """The ``$id`` values of a committed segment (read from its ``$id`` column only)."""
        table = pq.read_table(io.BytesIO(self.db.store.get(segment.key)), columns=["$id"])
        return frozenset(table.column(0).to_pylist())

    def update(self, entity_id: str, update: Mapping[str, Any], *, expected_version: int | None = None,
               upsert: bool = False, actor: str | None = None) -> dict[str, Any]:
        """Apply update operators to one entity; returns the new document."""
        validate_update(update, protected=PROTECTED_FIELDS)
        intent = {"op": "update", "id": self.full_id(entity_id), "update": dict(update),
                  "expected_version": expected_version, "upsert": upsert, "actor": actor}
        return self._write([intent])[0]

    def replace(self, entity_id: str, doc: Mapping[str, Any], *, expected_version: int | None = None,
                actor: str | None = None) -> dict[str, Any]:
        """Replace an entity's fields (system fields are kept and advanced)."""
        intent = {"op": "replace", "id": self.full_id(entity_id), "doc": dict(doc),
                  "expected_version": expected_version, "actor": actor}
        return self._write([intent])[0]

    def delete(self, entity_id: str, *, hard: bool = False, expected_version: int | None = None,
               actor: str | None = None) -> bool:
        """Soft-delete (``deletedAt``) or, with ``hard=True``, remove an entity. False if it did not exist."""
        intent = {"op": "delete", "id": self.full_id(entity_id), "hard": hard,
                  "expected_version": expected_version, "actor": actor}
        try:
            self._write([intent])
        except EntityNotFoundError:
            return False
        return True

    def _write(self, intents: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not intents:
            return []
        with self._lock, _gc_paused():
            batch = self._derive(intents, self._head, self._buffer.states)
            buffer = self._buffer
            if buffer.base_len is None:
                buffer.base_len = len(self._head.history)
            for intent, after in zip(intents, batch.afters, strict=True):
                if intent["op"] == "create":  # our own copy, with the generated id: a replay or rebase keeps it
                    intent["doc"] = after
            buffer.batches.append(batch)
            buffer.states.update(zip(batch.full_ids, batch.afters, strict=True))
            buffer.events += len(intents)
            buffer.nbytes += batch.nbytes
            if self._wal:
                for intent, event_id in zip(intents, batch.event_ids, strict=True):
                    self._wal.append(WalRecord(intent, (event_id,)))
            if buffer.since is None:
                buffer.since = self._now().timestamp()
                self._arm_timer()
            if buffer.events >= self.db.flush_every or buffer.nbytes >= self.db.flush_bytes:
                self.flush()
            return [after if after is not None else {"$id": full} for full, after in zip(batch.full_ids, batch.afters)]

    def _derive(self, intents: list[dict[str, Any]], head: Head,
                overlay: Mapping[str, dict[str, Any] | None]) -> _Batch:
        """Turn intents into one batch of events against ``head`` plus the staged ``overlay`` (pure but for reads)."""
        ids = [i["id"] for i in intents if "id" in i]
        given = [self._created_id(i["doc"]) for i in intents if i["op"] == "create" and "$id" in i["doc"]]
        lookups = [x for x in (*ids, *given) if x not in overlay and x not in self._buffer.known]
        found = self._committed_states(lookups, head)
        self._buffer.known.update({x: found.get(x) for x in lookups})
        states: dict[str, dict[str, Any] | None] = {**self._buffer.known, **overlay}
        now = self._now()
        if all(i["op"] == "create" for i in intents):
            return self._derive_creates(intents, states, now)
        self._ids = iter(new_ulids(2 * len(intents)))  # event and entity ids for this batch, made in one go
        events, rows = [], []
        for intent in intents:
            event = self._event(intent, states, now)
            states[event.full_id] = event.after
            events.append(event)
            try:
                rows.append(to_row(event.after, self.schema) if event.after is not None else {"$id": event.full_id})
            except TypeError as err:
                raise ValidationError(event.full_id, str(err)) from None
        full_ids = [e.full_id for e in events]
        return _Batch(
            intents=intents, event_ids=[e.id for e in events], full_ids=full_ids, afters=[e.after for e in events],
            ts=now, columns=event_columns(events, self.schema, rows),
            creates_only=all(e.op == "CREATE" for e in events) and len(set(full_ids)) == len(full_ids),
            nbytes=sum(len(r.get(DATA_COLUMN) or "") + 200 for r in rows),
        )

    def _given_id(self, doc: Mapping[str, Any], event_id: str, states: Mapping[str, dict[str, Any] | None],
                  seen: set[str]) -> str:
        """The ``$id`` of a created document: its own (checked to be new) or one made from the event id."""
        if "$id" not in doc:
            return f"{self.ns}/{event_id.lower()}"
        full = self.full_id(str(doc["$id"]))
        if states.get(full) is not None or full in seen:
            raise ValidationError(f"{full}", "an entity with this id already exists; use update() or replace()")
        seen.add(full)
        return full

    @staticmethod
    def _encoded(full: str, rest: Mapping[str, Any]) -> str:
        try:
            return encode_document(rest)
        except TypeError as err:
            raise ValidationError(f"{full}", str(err)) from None

    def _validated_columns(self, full_ids: list[str], afters: list[dict[str, Any] | None]) -> dict[str, list[Any]]:
        """The typed and ``$data`` columns one document at a time: coerces values (``afters`` are
        replaced by the coerced documents) or raises naming the first bad document and field."""
        columns: dict[str, list[Any]] = {name: [] for name in (*self.schema.names, DATA_COLUMN)}
        for i, (full, after) in enumerate(zip(full_ids, afters, strict=True)):
            bad = next((k for k in after if type(k) is not str), None)
            if bad is not None:
                raise ValidationError(f"{full}", f"field names must be strings, found {bad!r}")
            after = afters[i] = self.schema.validate(after, full)
            try:
                row = to_row(after, self.schema)
            except TypeError as err:
                raise ValidationError(f"{full}", str(err)) from None
            for name, values in columns.items():
                values.append(row[name])
        return columns

    def _derive_creates(self, intents: list[dict[str, Any]], states: Mapping[str, dict[str, Any] | None],
                        now: dt.datetime) -> _Batch:
        """A batch of creates, built column by column (the bulk-insert path).

        One ULID per create is both the event id and, lower-cased, the
        generated local id of a document without ``$id``.
        """
        ns, schema, default_actor = self.ns, self.schema, self.db.actor
        event_ids = new_ulids(len(intents))
        full_ids: list[str] = []
        afters: list[dict[str, Any] | None] = []
        types: list[str] = []
        actors: list[str] = []
        rests: list[Mapping[str, Any]] = []
        typed: dict[str, list[Any]] = {}
        seen: set[str] = set()
        prefix, disjoint = f"{ns}/", _WRITER_FIELDS.isdisjoint
        for intent, event_id in zip(intents, event_ids, strict=True):
            doc = intent["doc"]
            if type(doc) is not dict and not isinstance(doc, Mapping):
                raise ValidationError(ns, f"a document must be an object, found {type(doc).__name__}")
            if disjoint(doc):  # no $id, $type or other writer field: the common case
                full, kind, rest = prefix + event_id.lower(), ns, doc
            else:
                full, kind = self._given_id(doc, event_id, states, seen), doc.get("$type") or ns
                kind = kind if isinstance(kind, str) else str(kind)
                rest = {k: v for k, v in doc.items() if k not in _WRITER_FIELDS}
            actor = intent.get("actor") or default_actor
            afters.append({"$id": full, "$type": kind, "createdAt": now, "updatedAt": now,
                           "createdBy": actor, "updatedBy": actor, "version": 1, **rest})
            rests.append(rest)
            full_ids.append(full)
            types.append(kind)
            actors.append(actor)
        if schema.fields:
            typed = to_columns(afters, schema) or self._validated_columns(full_ids, afters)
            data = typed.pop(DATA_COLUMN)
            nbytes = sum(map(len, data)) + 200 * len(data)
        else:
            encoded = encode_documents_utf8(rests)
            if encoded is None:
                encoded = [self._encoded(full, rest).encode() for full, rest in zip(full_ids, rests, strict=True)]
            data = string_array(encoded)
            nbytes = sum(map(len, encoded)) + 200 * len(encoded)
        n = len(intents)
        when = pa.scalar(now, EVENT_COLUMNS["ts"])
        ids = pa.array(full_ids, pa.string())
        actor_column = _constant_or_list(actors)
        columns: Columns = {
            "id": event_ids, "ts": pa.repeat(when, n), "op": pa.repeat(pa.scalar("CREATE"), n),
            "ns": pa.repeat(pa.scalar(ns), n), "entity_id": pc.utf8_slice_codeunits(ids, len(ns) + 1),
            "before": pa.nulls(n, pa.string()), "actor": actor_column, "metadata": pa.nulls(n, pa.string()),
            "$id": ids, "$type": _constant_or_list(types), "createdAt": pa.repeat(when, n),
            "updatedAt": pa.repeat(when, n), "createdBy": actor_column, "updatedBy": actor_column,
            "version": pa.repeat(pa.scalar(1, pa.int64()), n), "deletedAt": pa.nulls(n, EVENT_COLUMNS["ts"]),
            **typed, DATA_COLUMN: data,
        }
        return _Batch(intents=intents, event_ids=event_ids, full_ids=full_ids, afters=afters, ts=now,
                      columns=columns, creates_only=True, nbytes=nbytes)

    def _created_id(self, doc: Mapping[str, Any]) -> str:
        return self.full_id(str(doc["$id"]))

    def _event(self, intent: dict[str, Any], states: Mapping[str, dict[str, Any] | None], now: dt.datetime) -> Event:
        op = intent["op"]
        actor = intent.get("actor") or self.db.actor
        if op == "create":
            return self._create_event(intent["doc"], states, now, actor)
        full = intent["id"]
        current = states.get(full)
        live = current is not None and current.get("deletedAt") is None
        expected = intent.get("expected_version")
        if expected is not None and (current or {}).get("version") != expected:
            raise VersionConflictError(self.ns, full.partition("/")[2], expected, (current or {}).get("version"))
        if op == "update":
            if not live:
                if not intent.get("upsert"):
                    raise EntityNotFoundError(self.ns, full)
                seed = {"$id": full}
                doc = apply_update(seed, intent["update"], now=now, is_insert=True, protected=PROTECTED_FIELDS)
                return self._create_event(doc, {**states, full: None}, now, actor)
            doc = apply_update(current, intent["update"], now=now, protected=PROTECTED_FIELDS)
            return self._change_event("UPDATE", full, current, doc, now, actor)
        if not live:
            raise EntityNotFoundError(self.ns, full)
        if op == "replace":
            fresh = {k: v for k, v in intent["doc"].items() if k not in PROTECTED_FIELDS and k != "deletedAt"}
            keep = {k: current[k] for k in ("$id", "createdAt", "createdBy", "version") if k in current}
            doc = {**keep, "$type": current.get("$type"), **fresh}
            return self._change_event("UPDATE", full, current, doc, now, actor)
        if intent.get("hard"):
            return Event(self._next_id(), now, "DELETE", self.ns, full.partition("/")[2], current, None, actor)
        return self._change_event("DELETE", full, current, {**current, "deletedAt": now}, now, actor)

    def _create_event(self, doc: dict[str, Any], states: Mapping[str, dict[str, Any] | None],
                      now: dt.datetime, actor: str) -> Event:
        if not isinstance(doc, Mapping):
            raise ValidationError(self.ns, f"a document must be an object, found {type(doc).__name__}")
        full = self._given_id(doc, self._next_id(), states, set())
        if not all(type(key) is str for key in doc):
            raise ValidationError(f"{full}", f"field names must be strings, found {next(k for k in doc if type(k) is not str)!r}")
        kind = doc.get("$type") or self.ns
        after = {"$id": full, "$type": kind if isinstance(kind, str) else str(kind), "createdAt": now, "updatedAt": now,
                 "createdBy": actor, "updatedBy": actor, "version": 1}
        after.update((k, v) for k, v in doc.items() if k not in _WRITER_FIELDS)
        if self.schema.fields:
            after = self.schema.validate(after, full)
        return Event(self._next_id(), now, "CREATE", self.ns, full.partition("/")[2], None, after, actor)

    def _change_event(self, op: str, full: str, before: dict[str, Any], doc: dict[str, Any],
                      now: dt.datetime, actor: str) -> Event:
        after = {**doc, "$id": full, "updatedAt": now, "updatedBy": actor, "version": int(before.get("version") or 0) + 1}
        after = self.schema.validate(after, full)
        return Event(self._next_id(), now, op, self.ns, full.partition("/")[2], before, after, actor)

    def _next_id(self) -> str:
        """The next of the ULIDs made for the batch being derived."""
        return next(self._ids)

    # -- flushing ----------------------------------------------------------------

    def _arm_timer(self) -> None:
        if self.db.flush_age is None or self._timer is not None:
            return
        self._timer = threading.Timer(self.db.flush_age, self._flush_by_age)
        self._timer.daemon = True
        self._timer.start()

    def _flush_by_age(self) -> None:
        self._timer = None
        try:
            self.flush()
        except Exception as err:  # noqa: BLE001 - a background flush reports and keeps the writes staged
            self.db.background_errors.append(err)

    def flush(self) -> Head:
        """Publish staged writes as segments and one head commit; return the new head.

        When this returns, every write before it is durable and visible to new readers.
        """
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if not self._buffer.batches:
                return self._head
            batches = self._buffer.batches
            since = self._buffer.base_len if self._buffer.base_len is not None else len(self._head.history)
            for _attempt in range(MAX_REBASES):
                segments = self._write_segments(columns_table([b.columns for b in batches], self.schema))
                ids = frozenset(full for b in batches for full in b.full_ids)
                updates: list[object] = [AppendSegments(segments)]
                if self._head.version == 0 or self._head.schema != self.schema.to_spec():
                    updates.append(SetSchema(self.schema.to_spec()))
                try:
                    self._head, self._etag = commit(
                        self.db.store, self._head, self._etag, updates,
                        [AssertEntitiesUnchanged(ids, since, lambda seg: frozenset(self._segment_states(seg)))],
                    )
                    break
                except CommitConflictError:
                    # Another writer changed an entity we touched: re-derive from intents on the new state.
                    self.db.store.delete_many([s.key for s in segments])  # ours alone, never published
                    self._head, self._etag = load_head(self.db.store, self.ns)
                    for newer in self._head.history[since:]:  # roll our known states forward
                        self._buffer.known.update(self._segment_states(newer))
                    since = len(self._head.history)
                    try:
                        batches = [self._derive([i for b in batches for i in b.intents], self._head, {})]
                    except ParqueDBError:
                        self._discard()  # the batch no longer applies (e.g. expected_version): reject it whole
                        raise
            else:
                raise CommitConflictError(self.ns, expected="a quiet head", found=f"version {self._head.version}",
                                          hint=f"gave up after {MAX_REBASES} rebases; retry later")
            self._discard()
            self.db.after_flush(self, segments)
            return self._head

    def _discard(self) -> None:
        """Forget the staged writes (after they were published, or rejected)."""
        self._buffer = _Buffer()
        if self._wal:
            self._wal.truncate()

    def _write_segments(self, table: pa.Table) -> tuple[SegmentRef, ...]:
        """Write a segment table's events as segment files, in order; a large table is split into parts
        that are encoded and stored in parallel (one per core, at least :data:`PART_BYTES` each)."""
        parts = max(1, min(_WORKERS, table.nbytes // PART_BYTES))
        step = -(-table.num_rows // parts)
        slices = [table.slice(start, step) for start in range(0, table.num_rows, step)]
        keys = [segment_key(self.ns, segment_id, self._now()) for segment_id in new_ulids(len(slices))]
        if len(slices) == 1:
            return (self._write_part(keys[0], slices[0]),)
        futures = [_encoder_pool().submit(self._write_part, key, part) for key, part in zip(keys, slices, strict=True)]
        try:
            return tuple(f.result() for f in futures)
        except BaseException:
            concurrent.futures.wait(futures)
            self.db.store.delete_many(keys)  # none was published; leave no part behind
            raise

    def _write_part(self, key: str, part: pa.Table) -> SegmentRef:
        data = table_to_parquet(part, compression=self.db.compression)
        self.db.store.put(key, data)
        ts = pc.min_max(part["ts"])
        entities = pc.count_distinct(part["$id"]).as_py()
        return SegmentRef(
            key=key, rows=part.num_rows, first_event=part["id"][0].as_py(), last_event=part["id"][-1].as_py(),
            min_ts=format_datetime(ts["min"].as_py()), max_ts=format_datetime(ts["max"].as_py()),
            writer=self.db.writer_id(self), entities=entities, bytes=len(data),
            creates_only=entities == part.num_rows and pc.all(pc.equal(part["op"], "CREATE")).as_py(),
        )

    def _segment_states(self, segment: SegmentRef) -> dict[str, dict[str, Any] | None]:
        """The latest after-state per ``$id`` in a committed segment (None: hard-deleted); cached."""
        cached = self._segment_cache.get(segment.key)
        if cached is None:
            table = pq.read_table(io.BytesIO(self.db.store.get(segment.key)))
            schema = Schema.parse(self._head.schema)
            cached = {}
            for row in table.to_pylist():
                cached[row["$id"]] = from_row(row, schema) if row.get(DATA_COLUMN) is not None else None
            if len(self._segment_cache) > 256:
                self._segment_cache.clear()
            self._segment_cache[segment.key] = cached
        return cached

    # -- write-ahead log -----------------------------------------------------------

    def _replay_wal(self) -> None:
        assert self._wal is not None
        records = self._wal.records()
        if not records:
            return
        committed = max((s.last_event for s in self._head.history if s.writer == self._wal.writer_id), default="")
        pending = [r.intent for r in records if max(r.event_ids) > committed]
        self._wal.truncate()
        if pending:
            self._write(pending)
            self.flush()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._wal:
            self._wal.close()

    # -- state Arrow schema (for the reader and tests) ------------------------------

    def arrow_schema(self) -> pa.Schema:
        return state_schema(self.schema)
