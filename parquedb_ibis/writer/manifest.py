"""The head of a collection: the one small object that names its live files.

Everything else a collection stores is immutable and uniquely named; only the
head is ever overwritten, and only by compare-and-swap. A reader takes one
head and reads exactly the files it names, which gives snapshot isolation.

Keys (relative to the store root)::

    data/{ns}/_head.json                                  the head (JSON, below)
    data/{ns}/checkpoints/{ckpt}/part-{i}.parquet         state snapshots, sorted by $id
    events/archive/{yyyy}/{mm}/{dd}/{ns}/{segment}.parquet event segments, written once

An event segment is written straight into the archive: a checkpoint moves no
file, it only records that the segments up to it are folded in.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from parquedb_ibis.errors import StorageError

FORMAT = "parquedb-ibis/1"


def head_key(ns: str) -> str:
    return f"data/{ns}/_head.json"


def checkpoint_key(ns: str, checkpoint_id: str, part: int) -> str:
    return f"data/{ns}/checkpoints/{checkpoint_id}/part-{part:04d}.parquet"


def segment_key(ns: str, segment_id: str, when: dt.datetime) -> str:
    return f"events/archive/{when:%Y/%m/%d}/{ns}/{segment_id}.parquet"


@dataclass(frozen=True)
class SegmentRef:
    """One immutable event segment: its key, size and the range of events it carries."""

    key: str
    rows: int
    first_event: str
    last_event: str
    min_ts: str
    max_ts: str
    writer: str
    entities: int = 0
    bytes: int = 0
    creates_only: bool = False  # every event creates a new entity: readers append its rows without folding


@dataclass(frozen=True)
class CheckpointRef:
    """One state snapshot: the files holding every entity after ``through_segments`` segments."""

    id: str
    files: tuple[str, ...]
    rows: int
    through_segments: int  # how many segments of the history are folded in
    max_ts: str | None
    created_at: str
    name: str | None = None
    deleted: int | None = None  # soft-deleted rows among ``rows`` (None: not recorded, by an older writer)


@dataclass(frozen=True)
class Head:
    """A published state of one collection (see the module docstring)."""

    ns: str
    version: int = 0  # +1 per commit; 0 = never committed
    commit: str = ""
    schema: dict[str, str] = field(default_factory=dict)
    history: tuple[SegmentRef, ...] = ()  # every segment ever committed, in commit order
    checkpoint: CheckpointRef | None = None
    checkpoints: tuple[CheckpointRef, ...] = ()  # older checkpoints, kept for time travel
    committed_at: str = ""
    format: str = FORMAT

    @property
    def live_segments(self) -> tuple[SegmentRef, ...]:
        """Segments committed after the current checkpoint: what a reader folds in."""
        start = self.checkpoint.through_segments if self.checkpoint else 0
        return self.history[start:]

    @property
    def files(self) -> tuple[str, ...]:
        """Every key this head references (vacuum keeps exactly these)."""
        keys = [s.key for s in self.history]
        for ckpt in (*self.checkpoints, *([self.checkpoint] if self.checkpoint else [])):
            keys.extend(ckpt.files)
        return tuple(keys)

    def to_json(self) -> bytes:
        return orjson.dumps(self)  # dataclasses natively, in field order; keeps the schema's declaration order

    @classmethod
    def from_json(cls, data: bytes, where: str) -> Head:
        try:
            raw = json.loads(data)
            if raw.get("format") != FORMAT:
                raise StorageError(where, f"unknown head format {raw.get('format')!r}", f"expected {FORMAT!r}")
            return cls(
                ns=raw["ns"],
                version=raw["version"],
                commit=raw["commit"],
                schema=raw.get("schema") or {},
                history=tuple(SegmentRef(**s) for s in raw.get("history", ())),
                checkpoint=_checkpoint(raw.get("checkpoint")),
                checkpoints=tuple(_checkpoint(c) for c in raw.get("checkpoints", ())),
                committed_at=raw.get("committed_at", ""),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise StorageError(where, f"malformed head ({type(err).__name__}: {err})", "the head object is corrupt") from err

    def evolve(self, **changes: Any) -> Head:
        return replace(self, **changes)


def _checkpoint(raw: dict[str, Any] | None) -> CheckpointRef | None:
    if raw is None:
        return None
    return CheckpointRef(**{**raw, "files": tuple(raw["files"])})
