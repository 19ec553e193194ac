"""Writer processes for the crash and concurrency tests (run in forkserver children).

Each function opens its own Database on the store, writes, and reports each
flush that *returned* by appending a line to an acknowledgement file (flushed
to the OS at once, so a SIGKILL right after still leaves it readable).
"""

from __future__ import annotations

import os
import random
import signal

import parquedb_ibis
from parquedb_ibis.errors import CommitConflictError


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def crash_writer(url: str, options: dict, ack_path: str, cycle: int, crash_point: str, seed: int) -> None:
    """Write flushes of 5 documents until killed; die on purpose at ``crash_point``.

    Crash points: ``"before-head"`` (segment written, head not yet published),
    ``"mid-upload"`` (inside a data-file write), ``"mid-checkpoint"`` (checkpoint
    files written, head not yet published), ``"timer"`` (the parent kills us at
    a random moment).
    """
    rng = random.Random(seed)
    db = parquedb_ibis.connect(url, flush_age=None, **options)
    store = db.store
    calls = {"put": 0, "cas": 0}
    die_at = rng.randint(1, 3)
    real_put, real_cas, real_create = store.put, store.put_if_match, store.put_if_absent

    def put(key, data):
        calls["put"] += 1
        if crash_point == "mid-upload" and calls["put"] == die_at:
            if hasattr(store, "_write_temp"):  # local: leave a half-written temporary file behind
                store._write_temp(store._path(key), data[: len(data) // 2])
            _die()
        return real_put(key, data)

    def publish(real):
        def wrapper(*args):
            calls["cas"] += 1
            if crash_point == "before-head" and calls["cas"] == die_at:
                _die()
            return real(*args)
        return wrapper

    store.put, store.put_if_match, store.put_if_absent = put, publish(real_cas), publish(real_create)
    coll = db.collection("crash")
    with open(ack_path, "a", buffering=1) as ack:
        for flush_no in range(1000):
            ids = [f"c{cycle}-f{flush_no}-{i}" for i in range(5)]  # tags; $ids are generated (no lookups)
            coll.insert_many([{"tag": i, "cycle": cycle, "n": flush_no} for i in ids])
            coll.flush()
            ack.write(" ".join(ids) + "\n")
            if crash_point == "mid-checkpoint" and flush_no == die_at:
                import parquedb_ibis.writer.database as database

                real_commit = database.commit

                def dying_commit(*args, **kwargs):
                    _die()
                    return real_commit(*args, **kwargs)

                database.commit = dying_commit
                db.checkpoint()


def counter_writer(url: str, options: dict, ack_path: str, worker: int, flushes: int) -> None:
    """``flushes`` times: create one document and $inc two shared counters, then flush."""
    db = parquedb_ibis.connect(url, flush_age=None, auto_checkpoint=16, **options)
    coll = db.collection("race")
    with open(ack_path, "a", buffering=1) as ack:
        for i in range(flushes):
            coll.create({"$id": f"w{worker}-{i}", "worker": worker})
            coll.update("counter", {"$inc": {"n": 1, f"by.w{worker}": 1}}, upsert=True)
            for attempt in range(5):
                try:
                    coll.flush()
                    break
                except CommitConflictError:
                    if attempt == 4:
                        raise
            ack.write(f"w{worker}-{i}\n")


def wal_writer(url: str, wal_dir: str, ack_path: str, crash_point: str, seed: int) -> None:
    """Create documents one by one with a WAL and no automatic flush; acknowledge each create.

    ``"timer"``: the parent kills us at a random moment; ``"after-commit"``: a flush
    publishes its head and we die before the WAL is truncated.
    """
    rng = random.Random(seed)
    db = parquedb_ibis.connect(url, flush_age=None, flush_every=10**9, wal_dir=wal_dir)
    coll = db.collection("wal")
    if crash_point == "after-commit" and coll._wal is not None:
        coll._wal.truncate = _die
    flush_at = rng.randint(3, 8)
    with open(ack_path, "a", buffering=1) as ack:
        for i in range(10_000):
            tag = f"{seed}-{i}"
            doc = coll.create({"tag": tag})
            ack.write(f"{tag} {doc['$id']}\n")
            if i == flush_at:
                coll.flush()
