"""Which upstream layouts a store holds, found from its listing.

The TypeScript ParqueDB has several independent writers (upstream-format.md
§1). This module recognises the ones we read, by key pattern:

=====================  ====================================================  ==========================
family                 keys                                                  upstream writer
=====================  ====================================================  ==========================
``worker-do`` (A)      ``data/{ns}/events/{ULID}.parquet``                   ``ParqueDBDO`` flush (production)
                       ``rels/{ns}/events/{ULID}.parquet``                   relationship events
                       ``data/{ns}/pending/{ULID}.parquet[.json]``           ``createMany`` bulk files
                       ``{ns}.parquet`` (bucket root)                        the DO's snapshot
``node`` (B)           ``events/batch-{ms}-{seq}.parquet``                   ``EventSourcedBackend``
                       ``data.parquet`` (root; ``events.parquet`` legacy)    format-A snapshot, all namespaces
``native`` (C)         ``data/{ns}/data.parquet``                            ``NativeBackend``
tail pipeline (F)      ``{prefix}/year=/month=/day=/hour=/logs-{ms}.parquet`` ``WorkerLogsMV`` flush
                       ``{prefix}/year=/…/errors-{ms}.parquet``              ``WorkerErrorsMV`` flush
=====================  ====================================================  ==========================

A namespace with ``data/{ns}/_head.json`` is one of **our own** collections
(parquedb_ibis.writer, see writer/manifest.py) and is excluded whole. Transient
upstream files (``*.tmp.*``, ``*.tmp``, ``*.backup``, ``*.compacting``) are
ignored. Family-B namespaces are not visible in key names: they are the
``ns`` parts of the events' ``target`` column (and of root ``data.parquet``
ids), so detecting them reads those files; pass a caching reader to share the
reads with the folds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from parquedb_ibis.upstream.timestamps import is_ulid

if TYPE_CHECKING:
    import pyarrow as pa

    from parquedb_ibis.store import ObjectStore

#: Marks one of our own collections (parquedb_ibis.writer.manifest.head_key); we never read those here.
OWN_HEAD = "_head.json"

#: Root files of family B (and the legacy event log); a DO namespace can collide with them.
NODE_ROOT_FILES = ("data.parquet", "rels.parquet", "events.parquet")

_NS = r"(?P<ns>[^/_$.][^/]*)"
_DO_EVENTS = re.compile(rf"^data/{_NS}/events/(?P<ulid>[^/]+)\.parquet$")
_DO_PENDING = re.compile(rf"^data/{_NS}/pending/(?P<ulid>[^/]+)\.parquet(?:\.json)?$")
_DO_RELS = re.compile(rf"^rels/{_NS}/events/(?P<ulid>[^/]+)\.parquet$")
_DO_SNAPSHOT = re.compile(rf"^{_NS}\.parquet$")
_NODE_BATCH = re.compile(r"^events/batch-(?P<ms>\d+)-(?P<seq>\d+)\.parquet$")
_NATIVE = re.compile(rf"^data/{_NS}/data\.parquet$")
_OWN = re.compile(rf"^data/(?P<ns>[^/]+)/{re.escape(OWN_HEAD)}$")
_TAIL = re.compile(
    r"^(?P<prefix>(?:.+/)?)year=(?P<year>\d{4})/month=(?P<month>\d{2})/day=(?P<day>\d{2})/hour=(?P<hour>\d{2})/"
    r"(?P<kind>logs|errors)-(?P<ms>\d+)\.parquet$"
)
_TRANSIENT = re.compile(r"\.tmp\.|\.tmp$|\.backup$|\.compacting$|\.tmp-")


class Family(StrEnum):
    """An upstream writer family (upstream-format.md §0)."""

    WORKER_DO = "worker-do"  # A: the production Worker's Durable Object
    NODE = "node"  # B: the Node ParqueDB class with EventSourcedBackend
    NATIVE = "native"  # C: NativeBackend


@dataclass(frozen=True)
class NamespaceLayout:
    """What one family holds for one namespace: the keys a reader folds, in fold order."""

    ns: str
    family: Family
    event_files: tuple[str, ...] = ()  # A: this ns's event files; B: the shared batch files
    rel_event_files: tuple[str, ...] = ()  # A only: rels/{ns}/events/*
    pending_files: tuple[str, ...] = ()  # A only
    snapshot: str | None = None  # A: root {ns}.parquet; B: root data.parquet
    data_file: str | None = None  # C: data/{ns}/data.parquet

    @property
    def keys(self) -> tuple[str, ...]:
        """Every key this layout reads."""
        extra = tuple(k for k in (self.snapshot, self.data_file) if k)
        return self.event_files + self.rel_event_files + self.pending_files + extra


@dataclass(frozen=True)
class LogFile:
    """One tail-pipeline Parquet file: its key, kind and the flush time its name carries."""

    key: str
    kind: str  # "logs" (WorkerLogsMV) | "errors" (WorkerErrorsMV)
    flush_ms: int
    prefix: str  # e.g. "logs/workers/"


@dataclass(frozen=True)
class Layouts:
    """Everything upstream-shaped found in one store."""

    namespaces: tuple[NamespaceLayout, ...] = ()
    worker_logs: tuple[LogFile, ...] = ()
    worker_errors: tuple[LogFile, ...] = ()
    own_namespaces: tuple[str, ...] = ()  # our own collections, excluded
    node_event_files: tuple[str, ...] = field(default=(), repr=False)

    @property
    def families(self) -> tuple[Family, ...]:
        return tuple(dict.fromkeys(layout.family for layout in self.namespaces))

    def names(self) -> list[str]:
        """The upstream namespaces, sorted."""
        return sorted({layout.ns for layout in self.namespaces})

    def for_namespace(self, ns: str) -> tuple[NamespaceLayout, ...]:
        return tuple(layout for layout in self.namespaces if layout.ns == ns)

    def __bool__(self) -> bool:
        return bool(self.namespaces or self.worker_logs or self.worker_errors)


TableReader = Callable[[str], "pa.Table"]


def detect_layouts(store: ObjectStore, reader: TableReader | None = None, *, keys: Iterable[str] | None = None) -> Layouts:
    """List ``store`` once and describe the upstream layouts in it.

    ``reader(key) -> pyarrow.Table`` reads family-B files to learn their
    namespaces (default: a plain, uncached read). ``keys`` replaces the
    listing (for tests and for callers that listed already).
    """
    if keys is None:
        keys = [info.key for info in store.list("")]
    if reader is None:
        from parquedb_ibis.upstream.files import read_table

        def reader(key: str) -> pa.Table:
            return read_table(store, key)

    return classify(sorted(keys), reader)


def classify(keys: Sequence[str], reader: TableReader) -> Layouts:
    """:func:`detect_layouts` on an explicit, sorted key list."""
    keys = [k for k in keys if not _TRANSIENT.search(k.rsplit("/", 1)[-1])]
    own = sorted({m["ns"] for k in keys if (m := _OWN.match(k))})
    own_set = set(own)

    events: dict[str, list[str]] = {}
    rels: dict[str, list[str]] = {}
    pending: dict[str, list[str]] = {}
    snapshots: dict[str, str] = {}
    native: dict[str, str] = {}
    batches: list[tuple[int, str]] = []
    logs: list[LogFile] = []
    errors: list[LogFile] = []
    root_node: dict[str, str] = {}
    for key in keys:
        if (m := _NODE_BATCH.match(key)) is not None:
            batches.append((int(m["seq"]), key))
        elif (m := _TAIL.match(key)) is not None:
            target = logs if m["kind"] == "logs" else errors
            target.append(LogFile(key, m["kind"], int(m["ms"]), m["prefix"]))
        elif (m := _DO_EVENTS.match(key)) is not None and m["ns"] not in own_set:
            events.setdefault(m["ns"], []).append(key)
        elif (m := _DO_PENDING.match(key)) is not None and m["ns"] not in own_set:
            pending.setdefault(m["ns"], []).append(key)
        elif (m := _DO_RELS.match(key)) is not None:
            rels.setdefault(m["ns"], []).append(key)
        elif (m := _NATIVE.match(key)) is not None and m["ns"] not in own_set:
            native[m["ns"]] = key
        elif key in NODE_ROOT_FILES:
            root_node[key] = key
        elif (m := _DO_SNAPSHOT.match(key)) is not None:
            snapshots[m["ns"]] = key

    # Family B: upstream reads the batch files in numeric seq order, then the legacy file it migrates.
    node_files = tuple(key for _seq, key in sorted(batches))
    if "events.parquet" in root_node:
        node_files += ("events.parquet",)
    node_snapshot = root_node.get("data.parquet")
    if node_snapshot and not node_files and "data" in events:
        snapshots["data"] = node_snapshot  # the DO's snapshot of a namespace called "data"
        node_snapshot = None
    if node_snapshot and not node_files and not _is_format_a(reader(node_snapshot)):
        snapshots["data"] = node_snapshot
        node_snapshot = None

    for ns, key in list(snapshots.items()):
        # A lone root parquet is a DO snapshot only if it has the snapshot's columns ($id, $data JSON).
        if ns not in events and ns not in pending and not _is_do_snapshot(reader(key)):
            del snapshots[ns]

    layouts: list[NamespaceLayout] = []
    for ns in sorted(set(events) | set(pending) | set(snapshots) | set(rels)):
        if ns in own_set or not (ns in events or ns in pending or ns in snapshots):
            continue
        layouts.append(
            NamespaceLayout(
                ns,
                Family.WORKER_DO,
                event_files=tuple(_by_ulid(events.get(ns, ()))),
                rel_event_files=tuple(_by_ulid(rels.get(ns, ()))),
                pending_files=tuple(_by_ulid(pending.get(ns, ()))),
                snapshot=snapshots.get(ns),
            )
        )
    for ns in sorted(_node_namespaces(node_files, node_snapshot, reader) - own_set):
        layouts.append(NamespaceLayout(ns, Family.NODE, event_files=node_files, snapshot=node_snapshot))
    for ns in sorted(native):
        layouts.append(NamespaceLayout(ns, Family.NATIVE, data_file=native[ns]))
    return Layouts(
        namespaces=tuple(layouts),
        worker_logs=tuple(sorted(logs, key=lambda f: (f.flush_ms, f.key))),
        worker_errors=tuple(sorted(errors, key=lambda f: (f.flush_ms, f.key))),
        own_namespaces=tuple(own),
        node_event_files=node_files,
    )


def _by_ulid(keys: Iterable[str]) -> list[str]:
    """Family-A files in checkpoint order: by the ULID in the file name (then by key)."""

    def name(key: str) -> str:
        base = key.rsplit("/", 1)[-1].split(".", 1)[0]
        return base.upper() if is_ulid(base) else base

    return sorted(keys, key=lambda k: (name(k), k))


def _is_format_a(table: pa.Table) -> bool:
    """Root ``data.parquet`` of family B has ``$type``/``$name``; the DO snapshot only ``$id``/``$data``."""
    return "$name" in table.column_names or "$type" in table.column_names


def _is_do_snapshot(table: pa.Table) -> bool:
    names = set(table.column_names)
    return {"$id", "$data"} <= names and not names & {"$type", "$name"}


def _node_namespaces(files: Sequence[str], snapshot: str | None, reader: TableReader) -> set[str]:
    found: set[str] = set()
    prefetch = getattr(reader, "tables", None)  # a TableCache downloads them concurrently
    if prefetch is not None and files:
        prefetch(list(files))
    for key in files:
        table = reader(key)
        if "target" not in table.column_names:
            continue
        for target in table.column("target").to_pylist():
            parts = str(target).split(":")
            if len(parts) == 2 and parts[0]:
                found.add(parts[0])
    if snapshot:
        table = reader(snapshot)
        if "$id" in table.column_names:
            found.update(str(i).split("/", 1)[0] for i in table.column("$id").to_pylist() if i and "/" in str(i))
    return found
