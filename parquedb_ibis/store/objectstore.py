"""One object-store interface, two implementations (local directory, S3-compatible).

Keys are ``/``-separated strings relative to the store's root. Writes are
whole-object and atomic: a reader sees the old object or the new one, never a
part. The two conditional writes are the commit primitive:

* :meth:`ObjectStore.put_if_absent` (``If-None-Match: *``) creates a key only
  if nobody has;
* :meth:`ObjectStore.put_if_match` (``If-Match: <etag>``) replaces a key only
  if it still has the ETag the caller read.

A lost race raises :class:`~parquedb_ibis.errors.PreconditionFailedError`.
A conditional write whose exact bytes are already in place counts as won: that
is how a retried request whose first attempt landed (its response lost) is
told apart from a real loss, so callers must put something unique (a commit
id) in what they publish.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from parquedb_ibis.config import StoreConfig, parse_url

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class ObjectInfo:
    """What a listing or a head request tells about one object."""

    key: str
    size: int
    etag: str
    last_modified: dt.datetime | None = None


@dataclass(frozen=True)
class Blob:
    """An object's bytes with the ETag they were read at (for a later put_if_match)."""

    data: bytes
    etag: str


class ObjectStore(Protocol):
    """The operations every store supports, with the same semantics."""

    config: StoreConfig

    def get(self, key: str, *, start: int | None = None, end: int | None = None) -> bytes:
        """The object's bytes, or the byte range ``[start, end)``. Missing: ObjectNotFoundError."""

    def get_blob(self, key: str) -> Blob:
        """The object's bytes and ETag, read together."""

    def head(self, key: str) -> ObjectInfo | None:
        """Size and ETag of the object, or None when it does not exist."""

    def put(self, key: str, data: bytes) -> str:
        """Write the object (replacing any), atomically; return its ETag."""

    def put_if_absent(self, key: str, data: bytes) -> str:
        """Create the object only if the key is free; else PreconditionFailedError."""

    def put_if_match(self, key: str, data: bytes, etag: str) -> str:
        """Replace the object only if its ETag is still ``etag``; else PreconditionFailedError."""

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in key order."""

    def delete(self, key: str) -> None:
        """Remove the object; removing a missing key is not an error."""

    def delete_many(self, keys: list[str]) -> None:
        """Remove several objects."""

    def url_for(self, key: str) -> str:
        """The location DuckDB reads this key at (a path, ``s3://`` or ``r2://`` URL)."""


def open_store(url: str | StoreConfig | None = None, **options: object) -> ObjectStore:
    """Open the store a URL names (see :func:`parquedb_ibis.config.parse_url`)."""
    config = url if isinstance(url, StoreConfig) else parse_url(url, **options)
    if config.is_local:
        from parquedb_ibis.store.local import LocalStore

        return LocalStore(config)
    from parquedb_ibis.store.s3 import S3Store

    return S3Store(config)


def join_key(*parts: str) -> str:
    """Join key parts with ``/``, dropping empty parts."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))
