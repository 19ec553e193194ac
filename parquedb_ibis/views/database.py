"""A database with materialized views: define, query, refresh (streaming, scheduled, manual) and drop them.

:class:`Database` extends the writer's database. Views are registered in the
store (``_views/{name}/_head.json``, see :mod:`parquedb_ibis.views.catalog`),
so every process on the same store sees them. Streaming views refresh from a
flush hook right after their source collection publishes a segment (and after
an upstream view refreshes); scheduled views refresh through
:meth:`Database.refresh_due` (what ``parquedb-ibis refresh --watch`` calls);
manual views only through :meth:`Database.refresh_view`.

A read of a view whose sources have changes older than its ``gracePeriod``
(default 15 minutes) refreshes it first (``stale_reads="refresh"``, the
default, for streaming and scheduled views), warns (``"warn"``, and always for
manual views) or does nothing (``"ignore"``).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from parquedb_ibis import query
from parquedb_ibis.compile import sql
from parquedb_ibis.compile.views import (
    CollectionSource,
    ViewPlan,
    ViewSource,
    ViewSpec,
    is_valid_view_name,
    plan_view,
    select_from,
)
from parquedb_ibis.documents import format_datetime, parse_datetime
from parquedb_ibis.errors import ViewDefinitionError
from parquedb_ibis.schema import Schema
from parquedb_ibis.views.catalog import (
    MarkSchedule,
    SetDefinition,
    ViewCatalog,
    ViewHead,
    check_acyclic,
    dependency_graph,
    downstream,
    upstream,
)
from parquedb_ibis.views.refresh import (
    Refresher,
    RefreshResult,
    grace_period,
    lag,
    next_refresh_at,
    read_parquet,
    stored_relation,
)
from parquedb_ibis.writer.collection import Collection
from parquedb_ibis.writer.database import Database as WriterDatabase
from parquedb_ibis.writer.ids import is_valid_namespace
from parquedb_ibis.writer.manifest import Head
from parquedb_ibis.writer.transaction import load_head

#: What a read does with a view that is behind its sources by more than its grace period.
STALE_READS: tuple[str, ...] = ("refresh", "warn", "ignore")
#: How long the in-memory list of view definitions is trusted before it is re-read from the store.
CATALOG_TTL = 2.0


@dataclass(frozen=True)
class ViewState:
    """A view's state in ParqueDB's vocabulary (``ViewMetadata``) plus refresh bookkeeping.

    ``state`` is ``pending`` (never refreshed), ``building`` (a refresh is
    running in this process), ``ready``, ``stale`` (a source has changes the
    view does not reflect yet) or ``error`` (the last refresh failed; ``error``
    says why). ``watermarks`` are per source: a collection's history length
    (segments reflected) or a source view's version; ``behind`` counts what
    is missing per source (segments or versions; ``-1`` for a view never
    refreshed). ``last_refresh_mode`` is ``full``, ``incremental`` or
    ``recompute-groups``.
    """

    name: str
    state: str
    refresh_mode: str
    version: int
    created_at: dt.datetime
    last_refreshed_at: dt.datetime | None
    last_refresh_duration_ms: float | None
    last_refresh_mode: str | None
    document_count: int
    size_bytes: int
    watermarks: dict[str, int]
    behind: dict[str, int]
    stale_since: dt.datetime | None
    next_refresh_at: dt.datetime | None
    error: str | None
    files: tuple[str, ...]
    definition: dict[str, Any]


class _Sources(Mapping[str, CollectionSource | ViewSource]):
    """The catalog ``plan_view`` resolves names in, loaded on demand (``overrides`` replace view definitions)."""

    def __init__(self, db: Database, overrides: Mapping[str, ViewSpec] | None = None) -> None:
        self.db = db
        self.overrides = dict(overrides or {})

    def __getitem__(self, name: str) -> CollectionSource | ViewSource:
        definitions = {**self.db.definitions(), **self.overrides}
        if name in definitions:
            return ViewSource(definitions[name])
        if self.db.has_collection(name):
            return CollectionSource(self.db.collection_schema(name))
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        names = {*self.db.definitions(), *self.overrides, *self.db.list_collections(), *self.db._collections}
        return iter(sorted(names))

    def __len__(self) -> int:
        return sum(1 for _ in self)


class Database(WriterDatabase):
    """The collections and views of one store. Create with :func:`parquedb_ibis.connect`."""

    def __init__(self, store: Any, *, stale_reads: str = "refresh", **options: Any) -> None:
        super().__init__(store, **options)
        if stale_reads not in STALE_READS:
            raise ValueError(f"stale_reads must be one of {', '.join(STALE_READS)}, found {stale_reads!r}")
        self.stale_reads = stale_reads
        self.view_catalog = ViewCatalog(store)
        self.refresher = Refresher(self)
        self._definitions: dict[str, dict[str, Any]] = {}
        self._definitions_at = -CATALOG_TTL
        self._definitions_lock = threading.Lock()
        self._plans: dict[str, ViewPlan] = {}
        self._building: set[str] = set()
        self.flush_hooks.append(self._on_flush)

    # -- sources -------------------------------------------------------------------------

    def has_collection(self, name: str) -> bool:
        """True for a collection opened in this process or committed in the store."""
        if name in self._collections:
            return True
        if not is_valid_namespace(name):
            return False
        head, _ = load_head(self.store, name)
        return head.version > 0

    def existing_collection(self, name: str) -> Collection | None:
        return self.collection(name) if self.has_collection(name) else None

    def collection_schema(self, name: str) -> Schema:
        coll = self.collection(name)
        return Schema.parse(coll.head.schema) if coll.head.version else coll.schema

    def collection_head(self, name: str) -> Head:
        """The collection's newest committed head."""
        return self.collection(name).refresh()

    def definitions(self) -> dict[str, dict[str, Any]]:
        """Every view's (normalized) definition, re-read from the store every :data:`CATALOG_TTL` seconds."""
        with self._definitions_lock:
            if time.monotonic() - self._definitions_at > CATALOG_TTL:
                fresh = {}
                for name in self.view_catalog.names():
                    head, _ = self.view_catalog.load(name)
                    if head is not None:
                        fresh[name] = head.definition
                if fresh != self._definitions:
                    self._plans.clear()
                self._definitions = fresh
                self._definitions_at = time.monotonic()
            return dict(self._definitions)

    def _remember(self, name: str, definition: dict[str, Any] | None) -> None:
        with self._definitions_lock:
            self._plans.clear()
            if definition is None:
                self._definitions.pop(name, None)
            else:
                self._definitions[name] = definition

    def sources(self, overrides: Mapping[str, ViewSpec] | None = None) -> _Sources:
        """The catalog views are planned against (collections with their schemas, views with their definitions)."""
        return _Sources(self, overrides)

    def plan(self, name: str, definition: ViewSpec, overrides: Mapping[str, ViewSpec] | None = None) -> ViewPlan:
        """The view's plan against the current catalog (cached until a view definition changes)."""
        key = json.dumps([name, definition, overrides or {}], sort_keys=True, default=str)
        plan = self._plans.get(key)
        if plan is None:
            plan = plan_view(name, definition, self.sources(overrides))
            if len(self._plans) > 256:
                self._plans.clear()
            self._plans[key] = plan
        return plan

    def _graph(self) -> dict[str, list[str]]:
        return dependency_graph(self.definitions())

    # -- defining ----------------------------------------------------------------------------

    def define_view(self, name: str, definition: ViewSpec) -> View:
        """Register a view (validated against the current collections and views); streaming views populate at once."""
        if not is_valid_view_name(name):
            raise ViewDefinitionError(str(name), "", "invalid view name; use a letter or '_' followed by letters, "
                                      "digits or '_'", "INVALID_NAME")
        if self.has_collection(name):
            raise ViewDefinitionError(name, "", f"{name!r} is a collection; choose another view name", "VIEW_EXISTS")
        plan = self.plan(name, definition)
        self.view_catalog.create(name, plan.definition)
        self._remember(name, plan.definition)
        if plan.refresh["mode"] == "streaming":
            self.refresh_view(name)
        return View(self, name)

    def alter_view(self, name: str, definition: ViewSpec) -> View:
        """Replace a view's definition: its data is rebuilt (at once for streaming views), readers refresh in full."""
        head, etag = self.view_catalog.require(name)
        plan = self.plan(name, definition, overrides={name: definition})
        graph = {**self._graph(), name: [plan.source]}
        check_acyclic(graph)
        for dependent in downstream([name], graph):
            self.plan(dependent, self.definitions()[dependent], overrides={name: plan.definition})
        self.view_catalog.commit(head, etag, [SetDefinition(plan.definition)])
        self._remember(name, plan.definition)
        if plan.refresh["mode"] == "streaming":
            self.refresh_view(name)
        return View(self, name)

    def drop_view(self, name: str) -> None:
        """Delete a view and its files; views reading it must be dropped first."""
        self.view_catalog.require(name)
        readers = [v for v, sources in self._graph().items() if name in sources and v != name]
        if readers:
            raise ViewDefinitionError(name, "", f"views {', '.join(sorted(readers))} read this view; drop them first",
                                      "VIEW_IN_USE")
        self.view_catalog.drop(name)
        self._remember(name, None)

    def list_views(self) -> list[str]:
        """Names of every defined view."""
        return self.view_catalog.names()

    def view(self, name: str) -> View:
        """A queryable handle on a view (``find``, ``find_one``, ``count``, ``relation``)."""
        if name not in self.definitions():
            self.view_catalog.require(name)
        return View(self, name)

    def relation(self, name: str, **options: Any) -> exp.Select:
        """A collection's state or a view's rows as a sqlglot SELECT."""
        if name in self.definitions():
            return self.view(name).relation()
        return super().relation(name, **options)

    # -- refreshing ---------------------------------------------------------------------------

    def refresh_view(self, name: str, full: bool = False) -> RefreshResult:
        """Refresh a view (the views it reads first, if behind), then the streaming views that read it."""
        graph = self._graph()
        if name not in graph:
            self.view_catalog.require(name)
            graph = {**graph, name: [self.definitions().get(name, {}).get("$from", "")]}
        chain = upstream(name, graph)
        for view in (*chain, name):  # staged writes of the collections feeding the chain are published first
            definition = self.definitions().get(view)
            if definition is not None:
                coll = self.existing_collection(definition["$from"])
                if coll is not None:
                    coll.flush()
        for source in chain:
            if self._lag(source).stale:
                self._refresh_one(source)
        result = self._refresh_one(name, full=full)
        if result.mode != "none":
            self._cascade([name])
        return result

    def _refresh_one(self, name: str, full: bool = False) -> RefreshResult:
        self._building.add(name)
        try:
            return self.refresher.refresh(name, full=full)
        finally:
            self._building.discard(name)

    def _cascade(self, changed: list[str]) -> list[RefreshResult]:
        """Refresh streaming views that read ``changed`` (through streaming views only), in dependency order."""
        definitions = self.definitions()
        graph = dependency_graph(definitions)
        live: set[str] = set(changed)
        results = []
        for view in downstream(changed, graph):
            if definitions[view]["$refresh"]["mode"] != "streaming" or not live & set(graph[view]):
                continue
            results.append(self._refresh_one(view))
            live.add(view)
        return results

    def _on_flush(self, collection: Collection, segments: Any) -> None:
        """Flush hook: refresh the streaming views fed by ``collection``; failures go to ``background_errors``."""
        try:
            self._cascade([collection.ns])
        except Exception as err:  # noqa: BLE001 - the write is committed; a failed refresh is recorded, not raised
            self.background_errors.append(err)

    def refresh_due(self, now: dt.datetime | None = None) -> list[RefreshResult]:
        """Refresh every scheduled view whose cron schedule fired since its last refresh."""
        now = now or dt.datetime.now(dt.timezone.utc)
        results = []
        for name, definition in sorted(self.definitions().items()):
            if definition["$refresh"]["mode"] != "scheduled":
                continue
            head, _ = self.view_catalog.load(name)
            due = next_refresh_at(head) if head is not None else None
            if due is not None and due <= now:
                results.append(self.refresh_view(name))
                head, etag = self.view_catalog.require(name)
                self.view_catalog.commit(head, etag, [MarkSchedule(format_datetime(due))])
        return results

    def refresh_stale(self) -> list[RefreshResult]:
        """Refresh streaming views that are behind (writes by other processes never reach our flush hook)."""
        results = []
        for name, definition in sorted(self.definitions().items()):
            if definition["$refresh"]["mode"] == "streaming" and self._lag(name).stale:
                results.append(self.refresh_view(name))
        return results

    # -- state ---------------------------------------------------------------------------------

    def _lag(self, name: str):
        head, _ = self.view_catalog.require(name)
        return lag(self, head, self.plan(name, head.definition))

    def view_state(self, name: str) -> ViewState:
        """The view's state, refresh metadata and how far it is behind its sources."""
        head, _ = self.view_catalog.require(name)
        behind = lag(self, head, self.plan(name, head.definition))
        if name in self._building:
            state = "building"
        elif head.state in ("error", "pending"):
            state = head.state
        else:
            state = "stale" if behind.stale else "ready"
        return ViewState(
            name=name, state=state, refresh_mode=head.refresh.get("mode", "streaming"), version=head.version,
            created_at=_time(head.created_at), last_refreshed_at=_time(head.last_refreshed_at),
            last_refresh_duration_ms=head.last_refresh_duration_ms, last_refresh_mode=head.last_refresh_mode,
            document_count=head.document_count, size_bytes=head.size_bytes, watermarks=dict(head.watermarks),
            behind=behind.behind, stale_since=behind.since, next_refresh_at=next_refresh_at(head), error=head.error,
            files=head.files, definition=head.definition,
        )

    def fresh_head(self, name: str) -> ViewHead:
        """The view's head after applying the stale-read policy (refresh, warn or ignore)."""
        head, _ = self.view_catalog.require(name)
        if self.stale_reads == "ignore":
            return head
        behind = lag(self, head, self.plan(name, head.definition))
        if not behind.stale or behind.since is None:
            return head
        age = dt.datetime.now(dt.timezone.utc) - behind.since
        grace = grace_period(head)
        if age <= grace:
            return head
        if self.stale_reads == "refresh" and head.refresh.get("mode") != "manual":
            self.refresh_view(name)
            return self.view_catalog.require(name)[0]
        warnings.warn(
            f"view {name!r} misses source changes older than its gracePeriod ({_duration(age)} > {_duration(grace)}); "
            f"refresh it with db.refresh_view({name!r})",
            UserWarning,
            stacklevel=3,
        )
        return head


class View:
    """A queryable view: ``find``/``find_one``/``count``/``distinct`` like a collection, ``relation()`` for SQL."""

    def __init__(self, db: Database, name: str) -> None:
        self.db = db
        self.name = name

    def __repr__(self) -> str:
        return f"View({self.name!r})"

    def _read(self) -> tuple[ViewPlan, exp.Select]:
        head = self.db.fresh_head(self.name)
        plan = self.db.plan(self.name, head.definition)
        return plan, plan.readable(stored_relation(self.db, head, plan))

    @property
    def plan(self) -> ViewPlan:
        head, _ = self.db.view_catalog.require(self.name)
        return self.db.plan(self.name, head.definition)

    def relation(self) -> exp.Select:
        """The view's visible columns over the files of its current head, as a sqlglot SELECT."""
        head = self.db.fresh_head(self.name)
        plan = self.db.plan(self.name, head.definition)
        if not head.files:
            return select_from([sql.column(c) for c in plan.outputs], plan.empty(), "$empty")
        files = read_parquet([self.db.store.url_for(k) for k in head.files], union_by_name=True)
        return select_from([sql.column(c) for c in plan.outputs], files, "$files")

    def find(self, filter: Mapping[str, Any] | None = None, *, sort: Mapping[str, Any] | None = None,
             limit: int | None = None, skip: int | None = None, project: Mapping[str, Any] | None = None,
             ) -> list[dict[str, Any]]:
        """Rows matching a Mongo-style ``filter`` (docs/filters.md), as documents."""
        plan, rel = self._read()
        with self.db.session() as con:
            return query.find(con, rel, plan.layout, filter, sort, limit, skip, None, project)

    def find_one(self, filter: Mapping[str, Any] | None = None, *, sort: Mapping[str, Any] | None = None,
                 project: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        found = self.find(filter, sort=sort, limit=1, project=project)
        return found[0] if found else None

    def count(self, filter: Mapping[str, Any] | None = None) -> int:
        plan, rel = self._read()
        with self.db.session() as con:
            return query.count(con, rel, plan.layout, filter)

    def distinct(self, field: str, filter: Mapping[str, Any] | None = None) -> list[Any]:
        plan, rel = self._read()
        with self.db.session() as con:
            return query.distinct(con, rel, plan.layout, field, filter)

    def state(self) -> ViewState:
        return self.db.view_state(self.name)

    def refresh(self, full: bool = False) -> RefreshResult:
        return self.db.refresh_view(self.name, full=full)


def _time(text: str | None) -> dt.datetime | None:
    return parse_datetime(text) if text else None


def _duration(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
