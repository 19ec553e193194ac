"""Read-only access to what the TypeScript ParqueDB writes (docs/upstream.md).

>>> up = open_upstream("r2://my-bucket")                      # doctest: +SKIP
>>> up.layouts.families                                       # doctest: +SKIP
(<Family.WORKER_DO: 'worker-do'>,)
>>> up.find("posts", {"views": {"$gte": 2}}, sort={"createdAt": -1})  # doctest: +SKIP
>>> up.worker_logs()                                          # doctest: +SKIP

Nothing in this package writes to the store: it only lists and reads.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from parquedb_ibis.store import ObjectStore, open_store
from parquedb_ibis.upstream.layouts import Family, Layouts, LogFile, NamespaceLayout, detect_layouts
from parquedb_ibis.upstream.readers import (
    TableCache,
    TimeLike,
    UpstreamEvent,
    pick_layout,
    read_events,
    read_log_file,
    read_namespace,
    read_relationships,
    read_worker_errors,
    read_worker_logs,
    tail_logs_relation,
)

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from parquedb_ibis.compile.filters import Filter

__all__ = [
    "Family",
    "Layouts",
    "LogFile",
    "NamespaceLayout",
    "UpstreamEvent",
    "UpstreamStore",
    "detect_layouts",
    "open_upstream",
    "read_namespace",
    "tail_logs_relation",
]


class UpstreamStore:
    """One store (a bucket or directory) read as upstream ParqueDB data.

    Files are read once and kept; :meth:`refresh` forgets them and lists again.
    """

    def __init__(self, store: ObjectStore, *, max_workers: int = 8) -> None:
        self.store = store
        self._cache = TableCache(store, max_workers=max_workers)
        self._layouts: Layouts | None = None

    def __repr__(self) -> str:
        return f"UpstreamStore({self.store.config.url!r})"

    @property
    def layouts(self) -> Layouts:
        """What the store holds (detected from one listing, on first use)."""
        if self._layouts is None:
            self._layouts = detect_layouts(self.store, self._cache)
        return self._layouts

    def refresh(self) -> None:
        """Forget cached files and the detected layouts (the next call lists the store again)."""
        self._cache.clear()
        self._layouts = None

    def namespaces(self) -> list[str]:
        """The upstream namespaces in the store, sorted (our own collections excluded)."""
        return self.layouts.names()

    def documents(
        self,
        ns: str,
        *,
        include_deleted: bool = False,
        include_pending: bool = True,
        family: Family | str | None = None,
    ) -> list[dict[str, Any]]:
        """Every document of ``ns`` in upstream's ``find`` order (see :mod:`.readers`)."""
        return read_namespace(
            self.store, ns, include_deleted=include_deleted, include_pending=include_pending, family=family,
            layouts=self.layouts, cache=self._cache,
        )

    def find(
        self,
        ns: str,
        filter: Filter | None = None,
        *,
        sort: dict[str, Any] | None = None,
        limit: int | None = None,
        skip: int | None = None,
        cursor: str | None = None,
        project: dict[str, Any] | None = None,
        include_deleted: bool = False,
        include_pending: bool = True,
        family: Family | str | None = None,
    ) -> list[dict[str, Any]]:
        """ParqueDB ``find`` over ``ns``: filter → sort → cursor → skip → limit → projection.

        Filtering uses :func:`parquedb_ibis.query.find_in` (ParqueDB's matcher
        semantics); without a sort, documents keep upstream's order.
        """
        docs = self.documents(ns, include_deleted=include_deleted, include_pending=include_pending, family=family)
        if not (filter or sort or limit or skip or cursor is not None or project):
            return docs
        from parquedb_ibis.query import find_in

        return find_in(docs, filter, sort=sort, limit=limit, skip=skip, cursor=cursor, project=project)

    def events(self, ns: str, *, family: Family | str | None = None) -> list[UpstreamEvent]:
        """The entity events of ``ns`` with repaired timestamps, in fold order."""
        return read_events(self.store, pick_layout(self.layouts, ns, family), self._cache)

    def relationships(self, ns: str, *, family: Family | str | None = None) -> list[dict[str, Any]]:
        """Live links from entities of ``ns`` (families A and B)."""
        return read_relationships(self.store, pick_layout(self.layouts, ns, family), self._cache)

    def worker_logs(self, *, reference: TimeLike = None, since: TimeLike = None, until: TimeLike = None) -> pa.Table:
        """Every WorkerLogs row (tail pipeline) with repaired timestamps, as an Arrow table."""
        return read_worker_logs(self._cache, self.layouts.worker_logs, reference=reference, since=since, until=until)

    def worker_errors(self, *, reference: TimeLike = None, since: TimeLike = None, until: TimeLike = None) -> pa.Table:
        """Every WorkerErrors row with a repaired ``ts``, as an Arrow table."""
        return read_worker_errors(self._cache, self.layouts.worker_errors, reference=reference, since=since, until=until)

    def worker_logs_relation(self, con: duckdb.DuckDBPyConnection | None = None, **options: Any) -> duckdb.DuckDBPyRelation:
        """:meth:`worker_logs` as a DuckDB relation on ``con`` (a fresh UTC session by default)."""
        return tail_logs_relation(self.store, con, layouts=self.layouts, cache=self._cache, **options)

    def read_log_file(self, key: str, *, flush_ms: int | None = None, reference: TimeLike = None,
                      kind: str = "logs") -> pa.Table:
        """One WorkerLogs (or ``kind="errors"``) file whose name has no flush time."""
        return read_log_file(self._cache, key, flush_ms=flush_ms, reference=reference, kind=kind)


def open_upstream(url_or_store: str | os.PathLike[str] | ObjectStore | None = None, *, max_workers: int = 8, **options: Any) -> UpstreamStore:
    """Open a store URL (``r2://bucket/prefix``, ``s3://…``, a directory) or an ObjectStore for reading upstream data.

    ``options`` are :func:`parquedb_ibis.store.open_store`'s (credentials,
    endpoint, account id…); ``max_workers`` bounds concurrent downloads.
    """
    if url_or_store is None or isinstance(url_or_store, (str, os.PathLike)):
        store = open_store(url_or_store, **options)
    else:
        store = url_or_store
    return UpstreamStore(store, max_workers=max_workers)
