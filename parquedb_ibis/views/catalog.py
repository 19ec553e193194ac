"""The view registry: one head per view, published by compare-and-swap, and the dependency graph.

Keys (relative to the store root)::

    _views/{name}/_head.json                       the view's head (JSON, below)
    _views/{name}/data/{commit}-{i}.parquet        immutable result files

Like a collection head (:mod:`parquedb_ibis.writer.manifest`), a view head is
the only object ever overwritten, and only by compare-and-swap: a commit is a
list of updates and requirements (:mod:`parquedb_ibis.writer.transaction`'s
pattern) applied to the newest head and published with ``If-Match``. A
reader takes one head and reads exactly the files it names.

The head carries the state metadata in ParqueDB's vocabulary
(``ViewMetadata``, upstream ``types.ts:643-757``): ``state`` (``pending``,
``building``, ``ready``, ``stale``, ``error``; ``stale`` and ``building`` are
computed when reporting, never stored), ``version``, ``created_at``,
``last_refreshed_at``, ``last_refresh_duration_ms``, ``document_count`` and
``size_bytes``, plus what incremental refresh needs: per-source watermarks
(a collection's history length, another view's version), which refresh mode
ran last (``full``, ``incremental``, ``recompute-groups``) and a short change
log downstream views read to refresh incrementally from this one.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from parquedb_ibis.compile.views import ViewSpec, detect_cycle
from parquedb_ibis.documents import format_datetime, parse_datetime
from parquedb_ibis.errors import (
    CommitConflictError,
    ObjectNotFoundError,
    PreconditionFailedError,
    StorageError,
    ViewCycleError,
    ViewDefinitionError,
    ViewNotFoundError,
)
from parquedb_ibis.store.objectstore import ObjectStore
from parquedb_ibis.writer.ids import new_ulid

FORMAT = "parquedb-ibis-view/1"
ROOT = "_views/"

#: Persisted states (ParqueDB ``ViewState``); ``building`` and ``stale`` are also reported, never stored.
STATES: tuple[str, ...] = ("pending", "building", "ready", "stale", "error", "disabled")
#: How the last refresh ran.
REFRESH_KINDS: tuple[str, ...] = ("full", "incremental", "recompute-groups")
#: Change-log entry kinds: rows appended in new files, everything replaced, or files merged without a data change.
CHANGE_KINDS: tuple[str, ...] = ("append", "rewrite", "compact")
#: Change-log entries a head keeps; a downstream view further behind refreshes in full.
CHANGE_LOG_LENGTH = 256
#: Superseded files are deleted this long after they left the head (readers of an older head may still read them).
RETIRE_AFTER = dt.timedelta(seconds=60)
#: ... and at most this many are kept waiting.
RETIRED_LIMIT = 512


def head_key(name: str) -> str:
    return f"{ROOT}{name}/_head.json"


def data_key(name: str, commit: str, part: int) -> str:
    return f"{ROOT}{name}/data/{commit}-{part:04d}.parquet"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass(frozen=True)
class Change:
    """One data change of a view: the version it produced, its kind, and the files an ``append`` added."""

    version: int
    kind: str
    files: tuple[str, ...] = ()
    at: str = ""  # when it was committed


@dataclass(frozen=True)
class ViewHead:
    """A published state of one view (see the module docstring)."""

    name: str
    definition: dict[str, Any]
    version: int = 0  # +1 per commit; 0 = never committed
    commit: str = ""
    state: str = "pending"
    files: tuple[str, ...] = ()
    document_count: int = 0
    size_bytes: int = 0
    watermarks: dict[str, int] = field(default_factory=dict)
    created_at: str = ""
    last_refreshed_at: str | None = None
    last_refresh_duration_ms: float | None = None
    last_refresh_mode: str | None = None
    error: str | None = None
    changes: tuple[Change, ...] = ()
    log_start: int = 0  # the change log is complete for versions after this one
    retired: tuple[tuple[str, str], ...] = ()  # (key, retired at) of superseded files awaiting deletion
    schedule_mark: str | None = None  # the last cron firing a scheduled refresh served
    committed_at: str = ""
    format: str = FORMAT

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True, default=str).encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> ViewHead:
        try:
            raw = json.loads(data)
            if raw.get("format") != FORMAT:
                raise StorageError(where, f"unknown view head format {raw.get('format')!r}", f"expected {FORMAT!r}")
            raw["files"] = tuple(raw.get("files", ()))
            raw["changes"] = tuple(Change(c["version"], c["kind"], tuple(c.get("files", ())), c.get("at", ""))
                                  for c in raw.get("changes", ()))
            raw["retired"] = tuple((k, t) for k, t in raw.get("retired", ()))
            return cls(**raw)
        except (KeyError, TypeError, ValueError) as err:
            problem = f"malformed view head ({type(err).__name__}: {err})"
            raise StorageError(where, problem, "the head object is corrupt") from err

    def evolve(self, **changes: Any) -> ViewHead:
        return replace(self, **changes)

    @property
    def refresh(self) -> dict[str, Any]:
        """The ``$refresh`` settings of the definition (mode, schedule, strategy, timezone, gracePeriod)."""
        return dict(self.definition.get("$refresh") or {})

    def changes_since(self, version: int) -> tuple[Change, ...] | None:
        """Data changes after ``version``; None when the log no longer reaches back that far."""
        if version < self.log_start:
            return None
        return tuple(c for c in self.changes if c.version > version)


# -- updates -------------------------------------------------------------------------


def _with_change(head: ViewHead, change: Change | None) -> ViewHead:
    if change is None:
        return head
    changes = (*head.changes, change)
    log_start = head.log_start
    if len(changes) > CHANGE_LOG_LENGTH:
        dropped = changes[: len(changes) - CHANGE_LOG_LENGTH]
        changes = changes[len(dropped):]
        log_start = dropped[-1].version
    return head.evolve(changes=changes, log_start=log_start)


def _retire(head: ViewHead, keys: Iterable[str], when: str) -> ViewHead:
    keep = set(head.files)
    fresh = tuple((k, when) for k in keys if k not in keep)
    return head.evolve(retired=head.retired + fresh)


@dataclass(frozen=True)
class SetDefinition:
    """Update: replace the definition; the data is reset (state ``pending``) and old files retire."""

    definition: dict[str, Any]

    def apply(self, head: ViewHead, version: int, when: str) -> ViewHead:
        old = head.files
        head = head.evolve(definition=dict(self.definition), state="pending", files=(), document_count=0, size_bytes=0,
                           watermarks={}, error=None, last_refresh_mode=None)
        return _with_change(_retire(head, old, when), Change(version, "rewrite", (), when))


@dataclass(frozen=True)
class PublishRefresh:
    """Update: a refresh's result: the new file list, counts, watermarks and how it ran."""

    files: tuple[str, ...]
    document_count: int
    size_bytes: int
    watermarks: dict[str, int]
    mode: str
    duration_ms: float
    change: str | None  # "append" | "rewrite" | "compact" | None (no data change)
    added: tuple[str, ...] = ()

    def apply(self, head: ViewHead, version: int, when: str) -> ViewHead:
        old = head.files
        head = head.evolve(
            files=tuple(self.files), document_count=self.document_count, size_bytes=self.size_bytes,
            watermarks=dict(self.watermarks), state="ready", error=None, last_refreshed_at=when,
            last_refresh_duration_ms=round(self.duration_ms, 3), last_refresh_mode=self.mode,
        )
        added = self.added if self.change == "append" else ()
        change = Change(version, self.change, added, when) if self.change else None
        return _with_change(_retire(head, old, when), change)


@dataclass(frozen=True)
class SetState:
    """Update: record a state (``error`` with its message) without touching the data."""

    state: str
    error: str | None = None

    def apply(self, head: ViewHead, version: int, when: str) -> ViewHead:
        return head.evolve(state=self.state, error=self.error)


@dataclass(frozen=True)
class MarkSchedule:
    """Update: a scheduled refresh served the cron firing at ``at``."""

    at: str

    def apply(self, head: ViewHead, version: int, when: str) -> ViewHead:
        return head.evolve(schedule_mark=self.at)


@dataclass(frozen=True)
class ForgetRetired:
    """Update: drop retired files from the head (they were deleted, or are about to be)."""

    keys: frozenset[str]

    def apply(self, head: ViewHead, version: int, when: str) -> ViewHead:
        return head.evolve(retired=tuple((k, t) for k, t in head.retired if k not in self.keys))


# -- requirements ------------------------------------------------------------------------


@dataclass(frozen=True)
class AssertViewVersion:
    """Requirement: nobody committed to the view since we read ``version``."""

    version: int

    def check(self, head: ViewHead) -> None:
        if head.version != self.version:
            raise CommitConflictError(f"view {head.name}", expected=self.version, found=head.version,
                                      hint="another refresh or definition change was published; reload and retry")


@dataclass(frozen=True)
class AssertDefinition:
    """Requirement: the definition is still the one a refresh was computed for."""

    definition: Mapping[str, Any]

    def check(self, head: ViewHead) -> None:
        if head.definition != dict(self.definition):
            raise CommitConflictError(f"view {head.name}", expected="the same definition", found="a new definition",
                                      hint="the view was altered during the refresh; refresh again")


# -- the catalog -----------------------------------------------------------------------------


class ViewCatalog:
    """Load, create, commit and drop view heads in one store."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def load(self, name: str) -> tuple[ViewHead | None, str | None]:
        """The view's head and its ETag, or ``(None, None)`` when no such view exists."""
        key = head_key(name)
        try:
            blob = self.store.get_blob(key)
        except ObjectNotFoundError:
            return None, None
        return ViewHead.from_json(blob.data, self.store.url_for(key)), blob.etag

    def require(self, name: str) -> tuple[ViewHead, str]:
        head, etag = self.load(name)
        if head is None or etag is None:
            raise ViewNotFoundError(name, self.names())
        return head, etag

    def names(self) -> list[str]:
        """Every defined view, sorted."""
        return sorted(info.key[len(ROOT):-len("/_head.json")] for info in self.store.list(ROOT)
                      if info.key.endswith("/_head.json") and info.key.count("/") == 2)

    def create(self, name: str, definition: Mapping[str, Any]) -> tuple[ViewHead, str]:
        """Publish a new, pending view; a name already taken is a :class:`ViewDefinitionError`."""
        now = format_datetime(_now())
        head = ViewHead(name=name, definition=dict(definition), version=1, commit=new_ulid(), created_at=now,
                        committed_at=now, changes=(Change(1, "rewrite", (), now),))
        try:
            etag = self.store.put_if_absent(head_key(name), head.to_json())
        except PreconditionFailedError:
            raise ViewDefinitionError(name, "", "a view with this name already exists; use alter_view() to change it",
                                      "VIEW_EXISTS") from None
        return head, etag

    def commit(
        self,
        head: ViewHead,
        etag: str,
        updates: Sequence[Any],
        requirements: Sequence[Any] = (),
        *,
        max_attempts: int = 20,
    ) -> tuple[ViewHead, str]:
        """Apply ``updates`` to the newest head and publish it by compare-and-swap; return it and its ETag.

        Requirements are re-checked after every reload; a failed one raises
        :class:`CommitConflictError` (nothing was published).
        """
        key = head_key(head.name)
        current, tag = head, etag
        for attempt in range(max_attempts):
            for requirement in requirements:
                requirement.check(current)
            version = current.version + 1
            now = format_datetime(_now())
            new = current
            for update in updates:
                new = update.apply(new, version, now)
            new = new.evolve(version=version, commit=new_ulid(), committed_at=now)
            try:
                return new, self.store.put_if_match(key, new.to_json(), tag)
            except PreconditionFailedError:
                reloaded, reloaded_tag = self.load(head.name)
                if reloaded is None or reloaded_tag is None:
                    raise ViewNotFoundError(head.name, self.names()) from None
                current, tag = reloaded, reloaded_tag
                time.sleep(min(0.5, 0.002 * 2**attempt) * random.random())
            except ObjectNotFoundError:
                raise ViewNotFoundError(head.name, self.names()) from None
        raise CommitConflictError(f"view {head.name}", expected=f"a free head after {max_attempts} attempts",
                                  found=f"version {current.version}", hint="too many concurrent refreshes; retry later")

    def drop(self, name: str) -> list[str]:
        """Delete the view's head, then every file under its prefix; returns the deleted keys."""
        prefix = f"{ROOT}{name}/"
        self.store.delete(head_key(name))
        keys = [info.key for info in self.store.list(prefix)]
        self.store.delete_many(keys)
        return [head_key(name), *keys]

    def collect_retired(self, head: ViewHead, etag: str, *, now: dt.datetime | None = None) -> tuple[ViewHead, str]:
        """Delete retired files that are due (see :func:`due_retired`) and forget them."""
        due = due_retired(head, now)
        if not due:
            return head, etag
        try:
            head, etag = self.commit(head, etag, [ForgetRetired(due)])
        except CommitConflictError:
            return head, etag  # somebody else will collect them
        self.store.delete_many(sorted(due))
        return head, etag


def due_retired(head: ViewHead, now: dt.datetime | None = None) -> frozenset[str]:
    """Retired files past :data:`RETIRE_AFTER`, and the oldest beyond :data:`RETIRED_LIMIT`."""
    now = now or _now()
    overflow = max(0, len(head.retired) - RETIRED_LIMIT)
    return frozenset(k for i, (k, t) in enumerate(head.retired) if i < overflow or now - parse_datetime(t) > RETIRE_AFTER)


# -- the dependency graph ------------------------------------------------------------------------


def dependency_graph(definitions: Mapping[str, ViewSpec]) -> dict[str, list[str]]:
    """``{view: [the views and collections it reads]}``: ``$from`` (``$expand`` targets are collections)."""
    return {name: [spec["$from"]] for name, spec in definitions.items() if isinstance(spec.get("$from"), str)}


def check_acyclic(graph: Mapping[str, Iterable[str]]) -> None:
    """Raise :class:`ViewCycleError` (``A → B → A``) when the graph has a cycle."""
    cycle = detect_cycle(graph)
    if cycle:
        raise ViewCycleError(cycle)


def upstream(name: str, graph: Mapping[str, Iterable[str]]) -> list[str]:
    """The views ``name`` reads, directly or through others, sources first (``name`` excluded)."""
    order: list[str] = []

    def visit(node: str) -> None:
        for src in graph.get(node, ()):
            if src in graph and src not in order:
                visit(src)
                order.append(src)

    visit(name)
    return order


def downstream(sources: Iterable[str], graph: Mapping[str, Iterable[str]]) -> list[str]:
    """The views reading any of ``sources``, directly or through others, in refresh order (sources first)."""
    wanted = set(sources)
    affected: set[str] = set()
    changed = True
    while changed:
        changed = False
        for view, reads in graph.items():
            if view not in affected and (wanted | affected) & set(reads):
                affected.add(view)
                changed = True
    return [v for v in refresh_order(graph) if v in affected]


def refresh_order(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """Every view in ``graph``, each after the views it reads (stable: by name among equals)."""
    order: list[str] = []
    for name in sorted(graph):
        for dep in upstream(name, graph):
            if dep not in order:
                order.append(dep)
        if name not in order:
            order.append(name)
    return order
