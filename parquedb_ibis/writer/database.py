"""A database: the collections of one store, a DuckDB session over them, checkpoints and vacuum."""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import duckdb
from sqlglot import exp

from parquedb_ibis.documents import format_datetime, parse_datetime
from parquedb_ibis.errors import (
    CommitConflictError,
    QueryError,
    SchemaError,
    ValidationError,
    ViewNotFoundError,
)
from parquedb_ibis.schema import Schema
from parquedb_ibis.store import connect_duckdb
from parquedb_ibis.store.local import LocalStore
from parquedb_ibis.store.objectstore import ObjectStore
from parquedb_ibis.writer import reader
from parquedb_ibis.writer.collection import Collection
from parquedb_ibis.writer.ids import is_valid_namespace, new_ulid
from parquedb_ibis.writer.manifest import CheckpointRef, Head, SegmentRef
from parquedb_ibis.writer.transaction import AssertCheckpoint, DropHistory, SetCheckpoint, commit, load_head

#: Rows per Parquet row group in checkpoints: small enough for min/max pruning on $id and typed columns.
CHECKPOINT_ROW_GROUP = 100_000


class Database:
    """The collections of one store. Create with :func:`parquedb_ibis.connect`.

    Writes are buffered per collection and flushed as segments every
    ``flush_every`` events, ``flush_bytes`` bytes or ``flush_age`` seconds
    (None: only on :meth:`flush`). ``wal_dir`` enables the local write-ahead
    log so acknowledged writes survive a process crash. A collection is
    checkpointed automatically once ``auto_checkpoint`` segments follow its
    last checkpoint (None: only on :meth:`checkpoint`), which bounds what every
    reader has to fold.
    """

    def __init__(
        self,
        store: ObjectStore,
        *,
        actor: str = "anonymous",
        wal_dir: str | os.PathLike[str] | None = None,
        wal_sync: bool = False,
        flush_every: int = 10_000,
        flush_bytes: int = 64 << 20,
        flush_age: float | None = 1.0,
        compression: str = "zstd",
        auto_checkpoint: int | None = 64,
    ) -> None:
        self.store = store
        self.config = store.config
        self.actor = actor
        self.wal_dir = wal_dir
        self.wal_sync = wal_sync
        self.flush_every = flush_every
        self.flush_bytes = flush_bytes
        self.flush_age = flush_age
        self.compression = compression
        self.auto_checkpoint = auto_checkpoint
        self.background_errors: list[BaseException] = []
        #: Called as hook(collection, segments) after every successful flush (streaming views use it).
        self.flush_hooks: list[Callable[[Collection, tuple[SegmentRef, ...]], None]] = []
        self._collections: dict[str, Collection] = {}
        self._lock = threading.RLock()
        self._con_lock = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._writer = f"w-{new_ulid()}"

    def __repr__(self) -> str:
        return f"Database({self.config.url!r})"

    # -- DuckDB --------------------------------------------------------------------

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The session this database reads through (httpfs and secrets set up for the store)."""
        if self._con is None:
            with self._con_lock:
                if self._con is None:
                    self._con = connect_duckdb(self.config)
        return self._con

    @contextmanager
    def session(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The DuckDB connection, held exclusively for the block (connections are not thread-safe)."""
        con = self.con
        with self._con_lock:
            yield con

    def query_rows(self, query: exp.Expression | str, params: Iterable[Any] | None = None, *,
                   tables: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run a query and return rows as dicts of Python values.

        ``tables`` are Arrow tables registered under their names for this query only.
        """
        sql = query if isinstance(query, str) else query.sql("duckdb")
        con = self.con
        with self._con_lock:
            for name, table in (tables or {}).items():
                con.register(name, table)
            try:
                return con.execute(sql, list(params) if params is not None else None).to_arrow_table().to_pylist()
            except duckdb.Error as err:
                raise QueryError(f"{self.config.url}: query failed: {err}") from err
            finally:
                for name in tables or {}:
                    con.unregister(name)

    def query_arrow(self, query: exp.Expression | str, params: Iterable[Any] | None = None):
        """Run a query and return a pyarrow Table."""
        sql = query if isinstance(query, str) else query.sql("duckdb")
        con = self.con
        with self._con_lock:
            try:
                return con.execute(sql, list(params) if params is not None else None).to_arrow_table()
            except duckdb.Error as err:
                raise QueryError(f"{self.config.url}: query failed: {err}") from err

    # -- collections -----------------------------------------------------------------

    def collection(self, name: str, schema: Mapping[str, str] | Schema | None = None) -> Collection:
        """The collection called ``name`` (created on its first write).

        ``schema`` declares typed fields; once the collection has data, the
        declared schema must match what is stored (or be omitted).
        """
        if not is_valid_namespace(name):
            raise ValidationError(
                f"collection {name!r}",
                "invalid name; use letters, digits, '_' or '-', starting with a letter or digit "
                "(no '/', '..', or leading '_' or '$')",
            )
        with self._lock:
            existing = self._collections.get(name)
            if existing is not None:
                stored, committed = existing.schema, True
            else:
                head, _ = load_head(self.store, name)
                stored, committed = Schema.parse(head.schema), bool(head.version)
            wanted = Schema.parse(schema) if schema is not None else stored
            if committed and wanted.to_spec() != stored.to_spec():
                raise SchemaError(
                    f"collection {name!r}",
                    f"declared schema {wanted.to_spec()!r} differs from the stored one {stored.to_spec()!r}",
                )
            if existing is not None:
                return existing
            coll = Collection(self, name, wanted)
            self._collections[name] = coll
            return coll

    __getitem__ = collection

    def list_collections(self) -> list[str]:
        """Names of the collections that have committed data."""
        names = {info.key.split("/")[1] for info in self.store.list("data/") if info.key.endswith("/_head.json")}
        names.update(n for n, c in self._collections.items() if c.head.version)
        return sorted(names)

    def relation(self, name: str, **options: Any) -> exp.Select:
        """The state of collection ``name`` as a sqlglot SELECT (see Collection.relation)."""
        if name not in self.list_collections():
            raise ViewNotFoundError(name, self.list_collections(), kind="collection")
        return self.collection(name).relation(**options)

    def writer_id(self, collection: Collection) -> str:
        """The writer id recorded in segments (the WAL's own id when a WAL is used)."""
        wal = getattr(collection, "_wal", None)
        return wal.writer_id if wal is not None else self._writer

    def after_flush(self, collection: Collection, segments: tuple[SegmentRef, ...]) -> None:
        if self.auto_checkpoint and len(collection.head.live_segments) >= self.auto_checkpoint:
            self._checkpoint(collection, None)
        for hook in list(self.flush_hooks):
            hook(collection, segments)

    # -- flush, checkpoint, vacuum -------------------------------------------------------

    def flush(self) -> None:
        """Publish every collection's staged writes."""
        for coll in list(self._collections.values()):
            coll.flush()

    def checkpoint(self, name: str | None = None, *, collections: Iterable[str] | None = None) -> dict[str, Head]:
        """Fold each collection's segments into a new state snapshot; ``name`` labels it."""
        self.flush()
        out = {}
        for ns in collections if collections is not None else self.list_collections():
            out[ns] = self._checkpoint(self.collection(ns), name)
        return out

    def _checkpoint(self, coll: Collection, name: str | None) -> Head:
        head = coll.refresh()
        if not head.live_segments:
            return head
        ckpt_id = new_ulid()
        relation = reader.head_relation(head, self.store.url_for, include_deleted=True)
        ordered = exp.select("*").from_(exp.alias_(exp.Subquery(this=relation), "s")).order_by(
            exp.column("$id", quoted=True))
        target_key = f"data/{coll.ns}/checkpoints/{ckpt_id}"
        if isinstance(self.store, LocalStore):
            os.makedirs(os.path.dirname(self.store.url_for(target_key)), exist_ok=True)
        copy = exp.Copy(
            this=exp.Subquery(this=ordered),
            kind=False,
            files=[exp.Literal.string(self.store.url_for(target_key))],
            params=[
                exp.CopyParameter(this=exp.var("FORMAT"), expression=exp.var("parquet")),
                exp.CopyParameter(this=exp.var("ROW_GROUP_SIZE"), expression=exp.Literal.number(CHECKPOINT_ROW_GROUP)),
                exp.CopyParameter(this=exp.var("COMPRESSION"), expression=exp.var(self.compression)),
                exp.CopyParameter(this=exp.var("FILE_SIZE_BYTES"), expression=exp.Literal.string("512MB")),
                exp.CopyParameter(this=exp.var("FILENAME_PATTERN"), expression=exp.Literal.string("part-{i}")),
                exp.CopyParameter(this=exp.var("RETURN_FILES"), expression=exp.true()),
            ],
        )
        (result,) = self.query_rows(copy)
        rows, files = result["Count"], result["Files"]
        base = self.store.url_for(target_key)
        keys = tuple(sorted(f"{target_key}{f[len(base):]}" for f in files))
        max_ts = max((parse_datetime(s.max_ts) for s in head.history), default=None)
        deleted = exp.select(exp.Count(this=exp.Star()).as_("deleted")).from_(
            reader.read_parquet([self.store.url_for(k) for k in keys], union_by_name=True)
        ).where(exp.Not(this=exp.Is(this=exp.column("deletedAt", quoted=True), expression=exp.null())))
        ref = CheckpointRef(
            id=ckpt_id, files=keys, rows=int(rows), through_segments=len(head.history),
            max_ts=format_datetime(max_ts) if max_ts else None,
            created_at=format_datetime(dt.datetime.now(dt.timezone.utc)), name=name,
            deleted=self.query_rows(deleted)[0]["deleted"] if keys else 0,
        )
        try:
            new_head, etag = commit(self.store, head, coll._etag, [SetCheckpoint(ref)],
                                    [AssertCheckpoint(head.checkpoint.id if head.checkpoint else None)])
        except CommitConflictError:
            self.store.delete_many(list(keys))  # a concurrent checkpoint won; ours was never published
            return coll.refresh()
        coll._head, coll._etag = new_head, etag
        return new_head

    def vacuum(self, *, older_than: dt.timedelta = dt.timedelta(hours=1), retain_checkpoints: int | None = None) -> list[str]:
        """Delete files no head references (left by crashed or losing writers) older than ``older_than``.

        ``retain_checkpoints`` also forgets all but that many older checkpoints
        (time travel then replays from an earlier one, or from the start).
        Returns the deleted keys.
        """
        self.flush()
        cutoff = dt.datetime.now(dt.timezone.utc) - older_than
        names = self.list_collections()
        referenced: set[str] = set()
        for ns in names:
            coll = self.collection(ns)
            head = coll.refresh()
            if retain_checkpoints is not None and len(head.checkpoints) > retain_checkpoints:
                head, coll._etag = commit(self.store, head, coll._etag, [DropHistory(retain_checkpoints)])
                coll._head = head
            referenced.update(head.files)
            referenced.add(f"data/{ns}/_head.json")
        doomed = []
        for prefix in ("data/", "events/archive/"):
            for info in self.store.list(prefix):
                if info.key in referenced or not _owned_by(info.key, names):
                    continue
                if info.last_modified is not None and info.last_modified > cutoff:
                    continue
                doomed.append(info.key)
        if isinstance(self.store, LocalStore):
            doomed += [k for k in self.store.temp_files() if _owned_by(k, names) or k.startswith("events/")]
        self.store.delete_many(doomed)
        return doomed

    def close(self) -> None:
        for coll in self._collections.values():
            coll.close()
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()
        self.close()


def _owned_by(key: str, names: list[str]) -> bool:
    """True for keys in our layout belonging to one of ``names`` (never upstream's files)."""
    parts = key.split("/")
    if parts[0] == "data" and len(parts) >= 4 and parts[1] in names and parts[2] == "checkpoints":
        return True
    return parts[:2] == ["events", "archive"] and len(parts) >= 7 and parts[5] in names
