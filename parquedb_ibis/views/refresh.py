"""Refreshing views: full, incremental and per-group recomputation; schedules, staleness, watching.

A refresh reads the view's head, compares its per-source watermarks with the
sources' heads, writes new immutable Parquet files under ``_views/{name}/data/``
and publishes them with one compare-and-swap of the view head. Which work it
does (recorded as ``last_refresh_mode``):

* ``full`` — first refresh, ``full=True``, a definition change, an ``$expand``
  target changed, a source view was rewritten, or a global aggregate with a
  non-decomposable operator: recompute from the sources' current state;
* ``incremental`` — the source only gained entities since the watermark (the
  new segments hold only ``CREATE`` events, or the strategy is ``append``, or
  a source view only appended files): non-grouped views append a file with
  the new rows; grouped views merge partial aggregates of the new rows into
  the stored groups (``$count $sum $avg $min $max``; ``$avg`` keeps its sum
  and count in hidden columns);
* ``recompute-groups`` — the new segments update or delete entities, or a
  grouped view uses ``$countDistinct $percentile $first $last $stdDev``: the
  affected groups (old keys from each entity's ``before`` document, new keys
  from its latest state) are recomputed exactly from the sources and replace
  the stored rows of those groups; for a non-grouped view the "groups" are the
  touched source entities, whose rows are replaced;
* ``none`` — nothing changed.

A refresh that loses the compare-and-swap to another one deletes its files
and starts again from the newer head.
"""

from __future__ import annotations

import datetime as dt
import os
import time
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from parquedb_ibis.compile import sql
from parquedb_ibis.compile.rewrite import share_json_parses
from parquedb_ibis.compile.views import (
    DEFAULT_GRACE_PERIOD,
    SOURCE_COLUMN,
    ViewPlan,
    from_item,
    parse_duration,
    select_from,
    typed_cast,
    typed_try_cast,
)
from parquedb_ibis.documents import ABSENT_KEY, DATA_COLUMN, parse_datetime
from parquedb_ibis.errors import CommitConflictError, ParqueDBError
from parquedb_ibis.schema import SYSTEM_COLUMN_TYPES, FieldType, Schema
from parquedb_ibis.store.local import LocalStore
from parquedb_ibis.views.catalog import (
    AssertViewVersion,
    ForgetRetired,
    PublishRefresh,
    SetState,
    ViewHead,
    data_key,
    due_retired,
)
from parquedb_ibis.writer import reader
from parquedb_ibis.writer.ids import new_ulid
from parquedb_ibis.writer.manifest import Head, SegmentRef

if TYPE_CHECKING:
    from parquedb_ibis.views.database import Database

#: How often a refresh starts over after losing the compare-and-swap of the view head.
MAX_ATTEMPTS = 8
#: A non-grouped view whose file count reaches this merges its newest files into one.
COMPACT_FILES = 32
#: Row group size of view files.
ROW_GROUP_SIZE = 122_880


@dataclass(frozen=True)
class RefreshResult:
    """What one refresh did: ``mode`` is ``full``, ``incremental``, ``recompute-groups`` or ``none``."""

    view: str
    mode: str
    reason: str
    document_count: int
    version: int
    duration_ms: float


class _Source:
    """A source's state as read at the start of a refresh; its full relation is built on first use."""

    def __init__(self, name: str, kind: str, position: int, head: Head | ViewHead,
                 relation: Callable[[], exp.Expr], plan: ViewPlan | None = None) -> None:
        self.name = name
        self.kind = kind  # "collection" | "view"
        self.position = position  # a collection's history length, a view's version
        self.head = head
        self.plan = plan
        self._relation = relation
        self._built: exp.Expr | None = None

    @property
    def relation(self) -> exp.Expr:
        """Its current rows in stored-row layout (a fresh tree each time)."""
        if self._built is None:
            self._built = self._relation()
        return self._built.copy()


@dataclass
class _Outcome:
    mode: str
    reason: str
    files: tuple[str, ...]
    document_count: int
    watermarks: dict[str, int]
    change: str | None = None
    added: tuple[str, ...] = ()
    written: list[str] = field(default_factory=list)


# -- relations over files -------------------------------------------------------------------


def read_parquet(urls: Iterable[str], **options: bool) -> exp.Expr:
    """``read_parquet([...], option = true, ...)`` over file URLs (literals, never spliced)."""
    args: list[exp.Expr] = [exp.Array(expressions=[sql.string(u) for u in urls])]
    for key, value in options.items():
        args.append(exp.EQ(this=exp.var(key), expression=sql.boolean(value)))
    return exp.Anonymous(this="read_parquet", expressions=args)


def stored_relation(db: Database, head: ViewHead, plan: ViewPlan) -> exp.Expr:
    """The rows a view head names (every stored column), or an empty relation with those columns."""
    if not head.files:
        return plan.empty()
    columns = [sql.column(c) for c in plan.stored_columns]
    source = read_parquet([db.store.url_for(k) for k in head.files], union_by_name=True)
    return exp.select(*columns, copy=False).from_(exp.alias_(source, "$files", copy=False), copy=False)


def _union(*queries: exp.Expr) -> exp.Expr:
    node = queries[0]
    for q in queries[1:]:
        node = exp.Union(this=node, expression=q, distinct=False, by_name=True)
    return select_from([exp.Star()], node, "$u")


def before_states(urls: list[str], schema: Schema) -> exp.Select:
    """The state each entity touched by these segments had before them, in stored-row layout.

    It is the ``before`` document of each entity's first event (NULL for
    entities created in the segments, which are left out); soft-deleted
    entities are left out like the collection's state leaves them out.
    """
    doc = sql.column("$before")
    order = sql.func("list_position", exp.Array(expressions=[sql.string(u) for u in urls]), sql.column("filename"))
    first = exp.Window(this=exp.RowNumber(), partition_by=[sql.column("$id")],
                       order=exp.Order(expressions=[exp.Ordered(this=order), exp.Ordered(this=sql.column("id"))]))
    before = exp.alias_(typed_cast(sql.column("before"), "JSON"), "$before", quoted=True, copy=False)
    events = select_from([sql.column("$id"), before], read_parquet(urls, filename=True, union_by_name=True), "$e")
    events = events.qualify(sql.eq(first, sql.number(1)), copy=False)
    columns: list[exp.Expr] = []
    for name, sql_type in SYSTEM_COLUMN_TYPES.items():
        columns.append(exp.alias_(_from_json(doc, name, _system_field(name, sql_type)), name, quoted=True, copy=False))
    absent = []
    for f in schema.fields:
        columns.append(exp.alias_(_from_json(doc, f.name, f), f.name, quoted=True, copy=False))
        if not f.is_variant:
            missing = sql.is_null(sql.json_type(doc.copy(), sql.json_pointer([f.name])))
            absent.append(exp.Case(ifs=[exp.If(this=missing, true=sql.string(f.name))]))
    data: exp.Expr = doc.copy()
    if absent:
        names = exp.ArrayFilter(this=exp.Array(expressions=absent),
                                expression=sql.lambda_(sql.lambda_variable(1), sql.is_not_null(sql.lambda_variable(1))))
        patch = sql.func("json_object", sql.string(ABSENT_KEY), sql.func("to_json", names))
        data = sql.func("json_merge_patch", doc.copy(), patch)
    columns.append(exp.alias_(typed_cast(data, "VARCHAR"), DATA_COLUMN, quoted=True, copy=False))
    states = select_from(columns, events, "$first")
    states = states.where(sql.is_not_null(doc.copy()), copy=False)
    outer = select_from([exp.Star()], states, "$b")
    return outer.where(sql.is_null(sql.column("deletedAt")), copy=False)


def _system_field(name: str, sql_type: str) -> FieldType:
    kind = {"VARCHAR": "string", "TIMESTAMPTZ": "timestamp", "BIGINT": "int"}[sql_type]
    return FieldType(name, kind, kind)


def _from_json(doc: exp.Expr, name: str, f: FieldType) -> exp.Expr:
    """A typed column's value read back from a document's variant JSON (the inverse of schema.to_row)."""
    pointer = sql.json_pointer([name])
    value = sql.json_value(doc.copy(), pointer)
    if f.is_variant:
        return typed_cast(value, "VARCHAR")
    if f.array:
        element = sql.lambda_variable(2)
        inner = _json_scalar(element.copy(), f)
        items = typed_try_cast(value, "JSON[]")
        return typed_cast(exp.Transform(this=items, expression=sql.lambda_(element, inner)), f.duckdb_type)
    return _json_scalar(value, f)


def _json_scalar(node: exp.Expr, f: FieldType) -> exp.Expr:
    tag = {"timestamp": "$date", "date": "$dateonly", "decimal": "$decimal"}.get(f.kind)
    base = f.duckdb_type.removesuffix("[]")
    if tag:
        return typed_try_cast(sql.json_text(node, sql.json_pointer([tag])), base)
    if f.kind in ("string", "relation"):
        return sql.json_text(node)
    return typed_try_cast(node, base)


# -- writing ----------------------------------------------------------------------------------


def write_file(db: Database, query: exp.Expr, key: str) -> int:
    """``COPY (query) TO <key>`` as Parquet; returns the row count."""
    url = db.store.url_for(key)
    query = share_json_parses(query)  # one JSON parse per row for the many paths views take from a variant
    if isinstance(db.store, LocalStore):
        os.makedirs(os.path.dirname(url), exist_ok=True)
    copy = exp.Copy(
        this=exp.Subquery(this=query),
        kind=False,
        files=[sql.string(url)],
        params=[
            exp.CopyParameter(this=exp.var("FORMAT"), expression=exp.var("parquet")),
            exp.CopyParameter(this=exp.var("COMPRESSION"), expression=exp.var(db.compression)),
            exp.CopyParameter(this=exp.var("ROW_GROUP_SIZE"), expression=sql.number(ROW_GROUP_SIZE)),
        ],
    )
    (row,) = run(db, copy)
    return int(row["Count"])


def run(db: Database, query: exp.Expr) -> list[dict[str, Any]]:
    """Run a tree we built (rendered without the defensive copy: the tree is ours and used once)."""
    return db.query_rows(query.sql(dialect=sql.DIALECT, copy=False))


# -- the refresher ---------------------------------------------------------------------------------


class Refresher:
    """Refreshes the views of one :class:`~parquedb_ibis.views.database.Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def refresh(self, name: str, *, full: bool = False) -> RefreshResult:
        """Bring one view up to date with its sources' current heads (see the module docstring)."""
        catalog = self.db.view_catalog
        for _attempt in range(MAX_ATTEMPTS):
            head, etag = catalog.require(name)
            plan = self.db.plan(name, head.definition)
            self._flush_sources(plan)
            head, etag = catalog.require(name)
            started = time.perf_counter()
            try:
                outcome = self._compute(head, plan, full)
            except ParqueDBError as err:
                self._record_error(name, err)
                raise
            duration = (time.perf_counter() - started) * 1000
            if outcome.mode == "none" and outcome.watermarks == head.watermarks:
                return RefreshResult(name, "none", outcome.reason, head.document_count, head.version, duration)
            due = due_retired(head)
            if outcome.files == head.files:
                size = head.size_bytes
            elif outcome.files[: len(head.files)] == head.files:  # appended files only
                size = head.size_bytes + self._size(outcome.files[len(head.files):])
            else:
                size = self._size(outcome.files)
            publish = PublishRefresh(
                files=outcome.files, document_count=outcome.document_count, size_bytes=size,
                watermarks=outcome.watermarks,
                mode=outcome.mode if outcome.mode != "none" else head.last_refresh_mode or "none",
                duration_ms=duration, change=outcome.change, added=outcome.added,
            )
            try:
                new, _ = catalog.commit(head, etag, [publish, ForgetRetired(due)], [AssertViewVersion(head.version)])
            except CommitConflictError:
                self.db.store.delete_many(outcome.written)  # never published
                continue
            self.db.store.delete_many(sorted(due))
            return RefreshResult(name, outcome.mode, outcome.reason, new.document_count, new.version, duration)
        raise CommitConflictError(f"view {name}", expected="a quiet view head", found="concurrent refreshes",
                                  hint=f"gave up after {MAX_ATTEMPTS} attempts; retry later")

    def _size(self, keys: Iterable[str]) -> int:
        return sum(info.size for k in keys if (info := self.db.store.head(k)) is not None)

    def _record_error(self, name: str, err: Exception) -> None:
        head, etag = self.db.view_catalog.load(name)
        if head is None or etag is None:
            return
        try:
            self.db.view_catalog.commit(head, etag, [SetState("error", f"{type(err).__name__}: {err}")])
        except ParqueDBError:
            pass  # the error itself is what the caller sees

    def _flush_sources(self, plan: ViewPlan) -> None:
        for name in (plan.source, *plan.lookups) if plan.source_kind == "collection" else plan.lookups:
            coll = self.db.existing_collection(name)
            if coll is not None:
                coll.flush()

    # -- sources --------------------------------------------------------------------------

    def sources(self, plan: ViewPlan) -> dict[str, _Source]:
        """The current state of a plan's ``$from`` source and ``$expand`` targets."""
        out = {plan.source: self._source(plan.source, plan.source_kind)}
        for name in plan.lookups:
            out[name] = self._source(name, "collection")
        return out

    def _source(self, name: str, kind: str) -> _Source:
        if kind == "collection":
            head = self.db.collection_head(name)
            schema = self.db.collection_schema(name)  # the declared one, also before the first commit
            url_for = self.db.store.url_for
            return _Source(name, kind, len(head.history), head,
                           lambda: reader.state_relation(schema, head.checkpoint, head.live_segments, url_for))
        vhead, _ = self.db.view_catalog.require(name)
        vplan = self.db.plan(name, vhead.definition)
        return _Source(name, kind, vhead.version, vhead,
                       lambda: vplan.readable(stored_relation(self.db, vhead, vplan)), vplan)

    # -- deciding --------------------------------------------------------------------------------

    def _compute(self, head: ViewHead, plan: ViewPlan, full: bool) -> _Outcome:
        sources = self.sources(plan)
        marks = {s.name: s.position for s in sources.values()}
        reason = None
        if full:
            reason = "full refresh requested"
        elif head.state == "pending" or plan.source not in head.watermarks:
            reason = "first refresh"
        elif any(head.watermarks.get(name) != sources[name].position for name in plan.lookups):
            reason = "an $expand target changed"
        if reason:
            return self._full(head, plan, sources, marks, reason)
        src = sources[plan.source]
        mark = head.watermarks[plan.source]
        if src.kind == "collection":
            assert isinstance(src.head, Head)
            history = src.head.history
            if mark > len(history):
                return self._full(head, plan, sources, marks, "the source history is shorter than the watermark")
            if mark == len(history):
                return _Outcome("none", "up to date", head.files, head.document_count, head.watermarks)
            return self._from_segments(head, plan, sources, marks, history[mark:])
        assert isinstance(src.head, ViewHead) and src.plan is not None
        if src.position == mark:
            return _Outcome("none", "up to date", head.files, head.document_count, head.watermarks)
        changes = src.head.changes_since(mark)
        if changes is None:
            return self._full(head, plan, sources, marks, f"source view {src.name!r} changed too often since the watermark")
        if any(c.kind == "rewrite" for c in changes):
            return self._full(head, plan, sources, marks, f"source view {src.name!r} was rewritten")
        added = [f for c in changes if c.kind == "append" for f in c.files]
        readable = set(src.head.files) | {k for k, _ in src.head.retired}
        if not set(added) <= readable:
            return self._full(head, plan, sources, marks, f"files appended to {src.name!r} were compacted away")
        if not added:
            return _Outcome("none", "source view only compacted", head.files, head.document_count, marks)
        delta = src.plan.readable(read_parquet([self.db.store.url_for(k) for k in added], union_by_name=True))
        return self._append(head, plan, sources, marks, delta, f"source view {src.name!r} appended {len(added)} file(s)")

    def _from_segments(self, head: ViewHead, plan: ViewPlan, sources: dict[str, _Source], marks: dict[str, int],
                       segments: tuple[SegmentRef, ...]) -> _Outcome:
        src = sources[plan.source]
        assert isinstance(src.head, Head)
        urls = [self.db.store.url_for(s.key) for s in segments]
        events = exp.alias_(read_parquet(urls, union_by_name=True), "$events", copy=False)
        not_create = exp.Filter(this=exp.Count(this=exp.Star()),
                                expression=exp.Where(this=exp.NEQ(this=sql.column("op"), expression=sql.string("CREATE"))))
        (row,) = run(self.db, select_from([exp.alias_(not_create, "changed", quoted=True, copy=False)], events, "$events"))
        schema = Schema.parse(src.head.schema)
        appending = plan.refresh.get("strategy") == "append"
        if row["changed"] == 0 or appending:
            columns = [sql.column(c) for c in reader.state_columns(schema)]
            delta = select_from(columns, read_parquet(urls, union_by_name=True), "$events")
            delta = delta.where(sql.eq(sql.column("op"), sql.string("CREATE")), copy=False)
            why = "append strategy: new entities only" if appending and row["changed"] else "only new entities"
            return self._append(head, plan, sources, marks, delta, f"{why} in {len(segments)} segment(s)")
        return self._recompute(head, plan, sources, marks, segments, urls, schema, int(row["changed"]))

    # -- the three kinds of work -------------------------------------------------------------------

    def _lookups(self, plan: ViewPlan, sources: Mapping[str, _Source]) -> dict[str, exp.Expr]:
        return {name: sources[name].relation for name in plan.lookups}

    def _write(self, head: ViewHead, query: exp.Expr, outcome_files: list[str]) -> tuple[str, int]:
        key = data_key(head.name, new_ulid(), len(outcome_files))
        outcome_files.append(key)
        return key, write_file(self.db, query, key)

    def _full(self, head: ViewHead, plan: ViewPlan, sources: dict[str, _Source], marks: dict[str, int],
              reason: str) -> _Outcome:
        written: list[str] = []
        query = plan.output(sources[plan.source].relation, self._lookups(plan, sources))
        key, rows = self._write(head, query, written)
        return _Outcome("full", reason, (key,), rows, marks, "rewrite", written=written)

    def _append(self, head: ViewHead, plan: ViewPlan, sources: dict[str, _Source], marks: dict[str, int],
                delta: exp.Expr, reason: str) -> _Outcome:
        lookups = self._lookups(plan, sources)
        written: list[str] = []
        stored = stored_relation(self.db, head, plan)
        if not plan.grouped:
            key, rows = self._write(head, plan.output(delta, lookups), written)
            files = (*head.files, key)
            if len(files) >= COMPACT_FILES:  # merge the newest files; the appended one stays readable while retired
                tail = files[-COMPACT_FILES:]
                urls = [self.db.store.url_for(k) for k in tail]
                columns = [sql.column(c) for c in plan.stored_columns]
                merged = select_from(columns, read_parquet(urls, union_by_name=True), "$tail")
                compacted, _ = self._write(head, merged, written)
                files = (*files[:-COMPACT_FILES], compacted)
            return _Outcome("incremental", reason, files, head.document_count + rows, marks, "append", (key,), written)
        pre = plan.pre(plan.rows(delta, lookups))
        if plan.decomposable:
            key, rows = self._write(head, plan.merge(_union(stored, plan.aggregate(pre))), written)
            return _Outcome("incremental", reason, (key,), rows, marks, "rewrite", written=written)
        if not plan.keys:
            return self._full(head, plan, sources, marks, "a global aggregate with a non-decomposable operator")
        return self._regroup(head, plan, sources, marks, stored, plan.key_values(pre),
                             f"{reason}; non-decomposable aggregates recomputed for affected groups", written)

    def _recompute(self, head: ViewHead, plan: ViewPlan, sources: dict[str, _Source], marks: dict[str, int],
                   segments: tuple[SegmentRef, ...], urls: list[str], schema: Schema, changed: int) -> _Outcome:
        lookups = self._lookups(plan, sources)
        written: list[str] = []
        stored = stored_relation(self.db, head, plan)
        current = reader.state_relation(schema, None, segments, self.db.store.url_for)
        reason = f"{changed} update/delete event(s) in {len(segments)} segment(s)"
        if not plan.grouped:
            touched = select_from([sql.column("$id")], read_parquet(urls, union_by_name=True), "$e").distinct(copy=False)
            on = sql.eq(sql.column(SOURCE_COLUMN, "$v"), sql.column("$id", "$t"))
            kept = select_from([exp.Star()], stored, "$v")
            kept = kept.join(from_item(touched, "$t"), on=on, join_type="anti", copy=False)
            key, rows = self._write(head, _union(kept, plan.output(current, lookups)), written)
            return _Outcome("recompute-groups", f"{reason}; rows of touched entities replaced", (key,), rows, marks,
                            "rewrite", written=written)
        if not plan.keys:
            return self._full(head, plan, sources, marks, f"{reason} in a global aggregate")
        old = plan.key_values(plan.pre(plan.rows(before_states(urls, schema), lookups)))
        new = plan.key_values(plan.pre(plan.rows(current, lookups)))
        keys = exp.Union(this=old, expression=new, distinct=True)
        return self._regroup(head, plan, sources, marks, stored, keys, f"{reason}; affected groups recomputed", written)

    def _regroup(self, head: ViewHead, plan: ViewPlan, sources: dict[str, _Source], marks: dict[str, int],
                 stored: exp.Expr, keys: exp.Expr, reason: str, written: list[str]) -> _Outcome:
        """Replace the stored rows of the groups in ``keys`` by their exact recomputation from the sources."""
        lookups = self._lookups(plan, sources)
        keys_rel = select_from([exp.Star()], keys, "$keys")
        bounds_query = plan.key_bounds(keys_rel.copy())
        bounds = run(self.db, bounds_query)[0] if bounds_query is not None else {}
        full_rows = plan.prune(plan.rows(sources[plan.source].relation, lookups), bounds)
        full_pre = plan.pre(full_rows)
        fresh = plan.aggregate(plan.restrict(full_pre, keys_rel.copy()))
        kept = plan.without_keys(stored, plan.key_outputs(keys_rel))
        key, rows = self._write(head, _union(kept, fresh), written)
        return _Outcome("recompute-groups", reason, (key,), rows, marks, "rewrite", written=written)


# -- staleness and schedules --------------------------------------------------------------------


@dataclass(frozen=True)
class Lag:
    """How far a view is behind its sources: per-source lag and the time of the oldest change it misses."""

    behind: dict[str, int]
    since: dt.datetime | None

    @property
    def stale(self) -> bool:
        return bool(self.behind)


def lag(db: Database, head: ViewHead, plan: ViewPlan, *, seen: frozenset[str] = frozenset()) -> Lag:
    """Per-source lag of a view (segments or versions not yet reflected), through chained views."""
    behind: dict[str, int] = {}
    since: list[dt.datetime] = []
    if head.state == "pending":
        return Lag({plan.source: -1}, parse_datetime(head.created_at))
    for name in (plan.source, *plan.lookups):
        mark = head.watermarks.get(name, 0)
        if name == plan.source and plan.source_kind == "view":
            src, _ = db.view_catalog.require(name)
            if src.version > mark:
                behind[name] = src.version - mark
                first = next((c for c in src.changes if c.version > mark and c.at), None)
                since.append(parse_datetime(first.at if first else src.committed_at))
            if name not in seen:
                upstream = lag(db, src, db.plan(name, src.definition), seen=seen | {head.name})
                if upstream.stale:
                    behind[name] = behind.get(name, 0) + sum(max(v, 1) for v in upstream.behind.values())
                    if upstream.since:
                        since.append(upstream.since)
            continue
        chead = db.collection_head(name)
        if len(chead.history) > mark:
            behind[name] = len(chead.history) - mark
            since.append(parse_datetime(chead.history[mark].min_ts))
    return Lag(behind, min(since) if since else None)


def grace_period(head: ViewHead) -> dt.timedelta:
    """``$refresh.gracePeriod`` (default 15 minutes)."""
    return parse_duration(head.refresh.get("gracePeriod", DEFAULT_GRACE_PERIOD))


def next_refresh_at(head: ViewHead) -> dt.datetime | None:
    """The next cron firing after the last refresh (or creation), for scheduled views; UTC."""
    refresh = head.refresh
    if refresh.get("mode") != "scheduled" or not refresh.get("schedule"):
        return None
    from croniter import croniter

    tz = zoneinfo.ZoneInfo(refresh.get("timezone") or "UTC")
    marks = [parse_datetime(t) for t in (head.last_refreshed_at or head.created_at, head.schedule_mark) if t]
    base = max(marks).astimezone(tz)
    nxt = croniter(refresh["schedule"], base).get_next(dt.datetime)
    return nxt.astimezone(dt.timezone.utc)


def watch(db: Database, interval: float, stop_after: float | None = None,
          on_refresh: Callable[[RefreshResult], Any] | None = None) -> int:
    """Keep views fresh: every ``interval`` seconds run due scheduled refreshes and catch up stale streaming views.

    Streaming views written by *this* process refresh on flush already; the
    watch loop also covers writes made by other processes. Runs until
    ``stop_after`` seconds have passed (forever when None) and returns how
    many refreshes did work. ``on_refresh`` is called with each result.
    """
    deadline = None if stop_after is None else time.monotonic() + stop_after
    done = 0
    while True:
        for result in (*db.refresh_due(), *db.refresh_stale()):
            if result.mode != "none":
                done += 1
            if on_refresh is not None:
                on_refresh(result)
        if deadline is not None and time.monotonic() >= deadline:
            return done
        pause = interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic()))
        time.sleep(pause)


__all__ = [
    "COMPACT_FILES",
    "Lag",
    "RefreshResult",
    "Refresher",
    "before_states",
    "grace_period",
    "lag",
    "next_refresh_at",
    "read_parquet",
    "run",
    "stored_relation",
    "watch",
    "write_file",
]
