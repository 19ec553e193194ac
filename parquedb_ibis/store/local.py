"""A store on a local directory: atomic renames for writes, ``flock`` for compare-and-swap."""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import hashlib
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from parquedb_ibis.config import StoreConfig
from parquedb_ibis.errors import (
    ObjectNotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
    StorageError,
)
from parquedb_ibis.store.objectstore import Blob, ObjectInfo

#: Temporary files carry this marker until they are renamed into place; listings skip them.
TEMP_MARKER = ".tmp-"
#: Lock files for compare-and-swap live here, below the root; listings skip it.
LOCK_DIR = ".parquedb-locks"


def etag_of(data: bytes) -> str:
    """A local object's ETag: the MD5 of its bytes (what S3 reports for a single-part upload)."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


class LocalStore:
    """Objects as files below ``config.root``; safe across threads and processes on one machine."""

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self.root = Path(config.root)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    # -- paths -------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        if not key or key.startswith("/") or any(s in ("", ".", "..") for s in key.split("/")):
            raise StorageError(f"{self.root}", f"invalid key {key!r}", "keys are relative, '/'-separated, without '.' or '..'")
        return self.root / key

    def url_for(self, key: str) -> str:
        return str(self._path(key))

    @contextmanager
    def _errors(self, key: str, op: str) -> Iterator[None]:
        try:
            yield
        except StorageError:
            raise
        except FileNotFoundError as err:
            raise ObjectNotFoundError(f"{self.root}/{key}", f"{op}: no such object") from err
        except PermissionError as err:
            raise PermissionDeniedError(f"{self.root}/{key}", f"{op}: permission denied", "check the directory's permissions") from err
        except IsADirectoryError as err:
            raise ObjectNotFoundError(f"{self.root}/{key}", f"{op}: the key names a directory, not an object") from err
        except OSError as err:
            raise StorageError(f"{self.root}/{key}", f"{op} failed: {err.strerror or err}") from err

    # -- reads -------------------------------------------------------------------

    def get(self, key: str, *, start: int | None = None, end: int | None = None) -> bytes:
        path = self._path(key)
        with self._errors(key, "get"), open(path, "rb") as fh:
            if start is None and end is None:
                return fh.read()
            first = start or 0
            fh.seek(first)
            return fh.read() if end is None else fh.read(max(0, end - first))

    def get_blob(self, key: str) -> Blob:
        data = self.get(key)
        return Blob(data, etag_of(data))

    def head(self, key: str) -> ObjectInfo | None:
        try:
            blob = self.get_blob(key)
        except ObjectNotFoundError:
            return None
        return ObjectInfo(key, len(blob.data), blob.etag)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if not self.root.exists():
            return iter(())
        out = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel_dir = os.path.relpath(dirpath, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
            if rel_dir == "" and LOCK_DIR in dirnames:
                dirnames.remove(LOCK_DIR)
            # prune directories that cannot contain the prefix
            dirnames[:] = [d for d in dirnames if _may_contain(rel_dir + d + "/", prefix)]
            for name in filenames:
                key = rel_dir + name
                if TEMP_MARKER in name or not key.startswith(prefix):
                    continue
                st = os.stat(os.path.join(dirpath, name))
                modified = dt.datetime.fromtimestamp(st.st_mtime, tz=dt.timezone.utc)
                out.append(ObjectInfo(key, st.st_size, "", modified))
        return iter(sorted(out, key=lambda o: o.key))

    # -- writes ------------------------------------------------------------------

    def _write_temp(self, path: Path, data: bytes) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}{TEMP_MARKER}{uuid.uuid4().hex}")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return tmp

    def put(self, key: str, data: bytes) -> str:
        path = self._path(key)
        with self._errors(key, "put"):
            tmp = self._write_temp(path, data)
            os.replace(tmp, path)
        return etag_of(data)

    @contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        lock_dir = self.root / LOCK_DIR
        lock_dir.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()
        with open(lock_dir / name, "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def put_if_absent(self, key: str, data: bytes) -> str:
        path = self._path(key)
        with self._errors(key, "put_if_absent"):
            tmp = self._write_temp(path, data)
            try:
                with self._locked(key):
                    os.link(tmp, path)  # atomic: fails if the key exists
            except FileExistsError:
                if self.get(key) == data:
                    return etag_of(data)
                raise PreconditionFailedError(f"{self.root}/{key}", "put_if_absent: the key already exists") from None
            finally:
                tmp.unlink(missing_ok=True)
        return etag_of(data)

    def put_if_match(self, key: str, data: bytes, etag: str) -> str:
        path = self._path(key)
        with self._errors(key, "put_if_match"):
            tmp = self._write_temp(path, data)
            try:
                with self._locked(key):
                    try:
                        current = etag_of(path.read_bytes())
                    except FileNotFoundError:
                        current = None
                    if current != etag:
                        if current == etag_of(data):
                            return current
                        raise PreconditionFailedError(
                            f"{self.root}/{key}",
                            f"put_if_match: ETag changed (expected {etag!r}, found {current!r})",
                        )
                    os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        return etag_of(data)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as err:
            if err.errno != errno.ENOENT:
                raise StorageError(f"{self.root}/{key}", f"delete failed: {err.strerror}") from err

    def delete_many(self, keys: list[str]) -> None:
        for key in keys:
            self.delete(key)

    def temp_files(self) -> list[str]:
        """Leftover temporary files (from a writer killed mid-write), for vacuum."""
        out = []
        for dirpath, _dirnames, filenames in os.walk(self.root):
            for name in filenames:
                if TEMP_MARKER in name:
                    out.append(os.path.relpath(os.path.join(dirpath, name), self.root).replace(os.sep, "/"))
        return out


def _may_contain(directory: str, prefix: str) -> bool:
    """True when keys below ``directory`` (ending in '/') can start with ``prefix``."""
    return directory.startswith(prefix) or prefix.startswith(directory)
