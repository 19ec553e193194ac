"""Commits as data: updates and requirements, published by compare-and-swap of the head.

A commit reads the head (and its ETag), checks its requirements against it,
applies its updates to produce the next head, and writes that head with
``If-Match`` (``If-None-Match: *`` for the first). When another writer got
there first, the store answers "precondition failed"; the commit reloads the
head and tries again, a bounded number of times, re-checking the
requirements each time. A requirement that no longer holds raises a
:class:`~parquedb_ibis.errors.CommitConflictError` (nothing was published) so
the caller can rebase or give up.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from parquedb_ibis.documents import format_datetime
from parquedb_ibis.errors import CommitConflictError, ObjectNotFoundError, PreconditionFailedError
from parquedb_ibis.store.objectstore import ObjectStore
from parquedb_ibis.writer.ids import new_ulid
from parquedb_ibis.writer.manifest import CheckpointRef, Head, SegmentRef, head_key

# -- updates -----------------------------------------------------------------------


@dataclass(frozen=True)
class AppendSegments:
    """Update: add already-written, immutable segments to the end of the history."""

    segments: tuple[SegmentRef, ...]

    def apply(self, head: Head) -> Head:
        return head.evolve(history=head.history + self.segments)


@dataclass(frozen=True)
class SetCheckpoint:
    """Update: make ``checkpoint`` current; the previous one is kept for time travel."""

    checkpoint: CheckpointRef

    def apply(self, head: Head) -> Head:
        older = head.checkpoints + ((head.checkpoint,) if head.checkpoint else ())
        return head.evolve(checkpoint=self.checkpoint, checkpoints=older)


@dataclass(frozen=True)
class SetSchema:
    """Update: record the collection's declared schema."""

    schema: dict[str, str]

    def apply(self, head: Head) -> Head:
        return head.evolve(schema=dict(self.schema))


@dataclass(frozen=True)
class DropHistory:
    """Update: forget old checkpoints (and the segments only they needed) — used by vacuum."""

    keep_checkpoints: int

    def apply(self, head: Head) -> Head:
        kept = head.checkpoints[len(head.checkpoints) - self.keep_checkpoints :] if self.keep_checkpoints else ()
        return head.evolve(checkpoints=tuple(kept))


# -- requirements ------------------------------------------------------------------


@dataclass(frozen=True)
class AssertHeadVersion:
    """Requirement: nobody committed since we read version ``version``."""

    version: int

    def check(self, head: Head) -> None:
        if head.version != self.version:
            raise CommitConflictError(f"{head.ns}", expected=self.version, found=head.version)


@dataclass(frozen=True)
class AssertEntitiesUnchanged:
    """Requirement: no segment committed after ``since`` history entries touches ``ids``.

    ``touched`` reads the ``$id`` values of a segment (injected so this stays pure).
    """

    ids: frozenset[str]
    since: int
    touched: Callable[[SegmentRef], frozenset[str]]

    def check(self, head: Head) -> None:
        for segment in head.history[self.since :]:
            clash = self.ids & self.touched(segment)
            if clash:
                raise CommitConflictError(
                    head.ns, expected=f"{sorted(clash)[0]} unchanged", found=f"changed by {segment.key}",
                    hint="the entities were changed by another writer; re-read and re-apply",
                )


@dataclass(frozen=True)
class AssertCheckpoint:
    """Requirement: the current checkpoint is still ``checkpoint_id`` (no concurrent checkpoint)."""

    checkpoint_id: str | None

    def check(self, head: Head) -> None:
        found = head.checkpoint.id if head.checkpoint else None
        if found != self.checkpoint_id:
            raise CommitConflictError(head.ns, expected=self.checkpoint_id, found=found,
                                      hint="another checkpoint was published; nothing to do")


# -- loading and publishing ------------------------------------------------------------


def load_head(store: ObjectStore, ns: str) -> tuple[Head, str | None]:
    """The collection's current head and its ETag (an empty head and None if never committed)."""
    key = head_key(ns)
    try:
        blob = store.get_blob(key)
    except ObjectNotFoundError:
        return Head(ns=ns), None
    return Head.from_json(blob.data, store.url_for(key)), blob.etag


def commit(
    store: ObjectStore,
    base: Head,
    etag: str | None,
    updates: Sequence[object],
    requirements: Sequence[object] = (),
    *,
    max_attempts: int = 20,
    on_retry: Callable[[Head], None] | None = None,
) -> tuple[Head, str]:
    """Publish ``updates`` on top of the newest head; return the new head and its ETag.

    Raises :class:`CommitConflictError` when a requirement fails (on the first
    try or after a reload) or when ``max_attempts`` compare-and-swaps all lost.
    """
    head = base
    key = head_key(base.ns)
    for attempt in range(max_attempts):
        for requirement in requirements:
            requirement.check(head)  # type: ignore[attr-defined]
        new = head
        for update in updates:
            new = update.apply(new)  # type: ignore[attr-defined]
        new = new.evolve(version=head.version + 1, commit=new_ulid(),
                         committed_at=format_datetime(dt.datetime.now(dt.timezone.utc)))
        try:
            if etag is None:
                new_etag = store.put_if_absent(key, new.to_json())
            else:
                new_etag = store.put_if_match(key, new.to_json(), etag)
            return new, new_etag
        except (PreconditionFailedError, ObjectNotFoundError):
            head, etag = load_head(store, base.ns)
            if on_retry:
                on_retry(head)
            time.sleep(min(0.5, 0.002 * 2**attempt) * random.random())
    raise CommitConflictError(base.ns, expected=f"a free head after {max_attempts} attempts", found=f"version {head.version}",
                              hint="too many concurrent writers; retry later")
