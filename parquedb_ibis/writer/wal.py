"""An optional local write-ahead log: acknowledged writes survive a process crash.

One file per collection, ``{wal_dir}/{ns}.wal``, JSON lines. Each write appends
one line carrying its intent (the call the user made) and the events it
produced, and is flushed to the operating system before the call returns, so
a killed process loses nothing it acknowledged (``sync=True`` also fsyncs each
line, for power loss). A successful flush truncates the file.

On restart the writer reads the file back: events already committed (the head
names a segment of this WAL's writer id whose last event is at or after them)
are dropped, the rest are staged again.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parquedb_ibis.documents import from_jsonable, to_jsonable
from parquedb_ibis.errors import StorageError
from parquedb_ibis.writer.ids import new_ulid


@dataclass(frozen=True)
class WalRecord:
    """One acknowledged write: what was asked and the event ids it produced."""

    intent: dict[str, Any]
    event_ids: tuple[str, ...]


class WriteAheadLog:
    """Append-only JSON lines for one collection."""

    def __init__(self, directory: str | os.PathLike[str], ns: str, *, sync: bool = False) -> None:
        self.path = Path(directory) / f"{ns}.wal"
        self.sync = sync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.writer_id = self._writer_id()
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for appends

    def _writer_id(self) -> str:
        id_path = self.path.with_suffix(".writer")
        if id_path.exists():
            return id_path.read_text().strip()
        writer = f"wal-{new_ulid()}"
        id_path.write_text(writer)
        return writer

    def append(self, record: WalRecord) -> None:
        line = json.dumps({"intent": to_jsonable(record.intent), "events": list(record.event_ids)},
                          separators=(",", ":"), ensure_ascii=False)
        try:
            self._fh.write(line + "\n")
            self._fh.flush()
            if self.sync:
                os.fsync(self._fh.fileno())
        except OSError as err:
            raise StorageError(str(self.path), f"cannot append to the write-ahead log: {err.strerror}") from err

    def records(self) -> list[WalRecord]:
        """Every complete record in the file (a torn last line from a crash is ignored)."""
        out = []
        if not self.path.exists():
            return out
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                raw = json.loads(line)
            except json.JSONDecodeError:
                continue  # the tail of a write interrupted by the crash: it was never acknowledged
            out.append(WalRecord(from_jsonable(raw["intent"]), tuple(raw["events"])))
        return out

    def truncate(self) -> None:
        self._fh.truncate(0)
        self._fh.seek(0)
        self._fh.flush()
        if self.sync:
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()
