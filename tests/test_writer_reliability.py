"""Crash safety and concurrency of the writer, with real processes (bounded in count and time).

* crash: a writer process is killed (SIGKILL) at chosen and random points; a
  fresh reader must see exactly the flushes that returned (never part of one),
  the store stays writable, and vacuum removes the orphans;
* concurrency: 8 processes x 50 flushes on the S3 test server, all visible and
  ``$inc`` counters exact.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import random
import time
from pathlib import Path

import pytest

import parquedb_ibis
import writer_procs

pytestmark = pytest.mark.slow

CRASH_POINTS = ("before-head", "mid-upload", "mid-checkpoint", "timer")


@pytest.fixture(scope="module")
def ctx():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["parquedb_ibis", "parquedb_ibis.writer.database", "writer_procs"])
    return context


def acked(path: Path) -> set[str]:
    if not path.exists():
        return set()
    ids = set()
    for line in path.read_text().splitlines():
        ids.update(line.split())
    return ids


def visible_ids(url: str, options: dict) -> set[str]:
    db = parquedb_ibis.connect(url, flush_age=None, **options)
    try:
        return {d["tag"] for d in db.collection("crash").find() if "tag" in d}
    finally:
        db.close()


def run_crash_cycles(ctx, url: str, options: dict, tmp_path: Path, cycles: int) -> None:
    rng = random.Random(20261123)
    expected: set[str] = set()
    for cycle in range(cycles):
        point = CRASH_POINTS[cycle % len(CRASH_POINTS)]
        ack = tmp_path / f"ack-{cycle}"
        proc = ctx.Process(target=writer_procs.crash_writer,
                           args=(url, options, str(ack), cycle, point, rng.randrange(1 << 30)))
        proc.start()
        if point == "timer":
            time.sleep(rng.uniform(0.0, 0.4))
            proc.kill()
        proc.join(timeout=60)
        if proc.is_alive():
            proc.kill()
            proc.join()
            pytest.fail(f"cycle {cycle} ({point}): writer did not die")
        done = acked(ack)
        seen = visible_ids(url, options)
        new = seen - expected
        # Everything acknowledged is visible; at most one more whole flush (it returned, the ack did not).
        assert done <= seen, f"cycle {cycle} ({point}): lost acknowledged writes {sorted(done - seen)[:5]}"
        extra = new - done
        flushes = {i.rsplit("-", 1)[0] for i in extra}
        assert len(flushes) <= 1, f"cycle {cycle} ({point}): parts of several unacknowledged flushes visible"
        for f in flushes:
            assert {f"{f}-{i}" for i in range(5)} <= extra, f"cycle {cycle} ({point}): a partial flush is visible"
        assert seen >= expected, f"cycle {cycle} ({point}): earlier data disappeared"
        expected = seen
    db = parquedb_ibis.connect(url, flush_age=None, **options)
    removed = db.vacuum(older_than=dt.timedelta(0))
    head = db.collection("crash").refresh()
    referenced = set(head.files)
    ours = [o.key for o in db.store.list() if o.key.startswith(("events/", "data/crash/checkpoints/"))]
    assert set(ours) <= referenced, "vacuum left unreferenced files"
    assert removed, "the crashes left orphans for vacuum to remove"
    assert visible_ids(url, options) == expected
    c = db.collection("crash")
    c.create({"tag": "after-vacuum"})
    c.flush()
    assert "after-vacuum" in visible_ids(url, options)


def test_crash_cycles_local(ctx, tmp_path):
    run_crash_cycles(ctx, str(tmp_path / "store"), {}, tmp_path, cycles=200)


def test_crash_cycles_s3(ctx, s3, tmp_path):
    from conftest import store_options

    run_crash_cycles(ctx, "s3://pqdb-test/crash", store_options(s3), tmp_path, cycles=200)


def test_eight_processes_fifty_flushes_no_lost_update(ctx, s3, tmp_path):
    from conftest import store_options

    url, options = "s3://pqdb-test/race", store_options(s3)
    workers, flushes = 8, 50
    procs = [ctx.Process(target=writer_procs.counter_writer, args=(url, options, str(tmp_path / f"ack-{w}"), w, flushes))
             for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=600)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    db = parquedb_ibis.connect(url, flush_age=None, **options)
    coll = db.collection("race")
    docs = {d["$id"]: d for d in coll.find()}
    created = {f"race/w{w}-{i}" for w in range(workers) for i in range(flushes)}
    assert created <= set(docs)
    counter = docs["race/counter"]
    assert counter["n"] == workers * flushes
    assert counter["by"] == {f"w{w}": flushes for w in range(workers)}
    assert counter["version"] == workers * flushes


@pytest.mark.parametrize("point", ["timer", "after-commit"])
def test_wal_replays_every_acknowledged_write_once(ctx, tmp_path, point):
    """With a WAL, each create acknowledged before a SIGKILL is there after restart, exactly once."""
    url, wal = str(tmp_path / "store"), str(tmp_path / "wal")
    rng = random.Random(7)
    acknowledged: dict[str, str] = {}
    for cycle in range(12):
        ack = tmp_path / f"wal-ack-{cycle}"
        proc = ctx.Process(target=writer_procs.wal_writer, args=(url, wal, str(ack), point, cycle))
        proc.start()
        if point == "timer":  # kill at a random moment once the writer is running (its start-up time varies with load)
            deadline = time.monotonic() + 60
            while proc.is_alive() and not (ack.exists() and ack.stat().st_size) and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.3))
            proc.kill()
        proc.join(timeout=60)
        assert not proc.is_alive()
        if ack.exists():
            acknowledged.update(line.split() for line in ack.read_text().splitlines() if len(line.split()) == 2)
        db = parquedb_ibis.connect(url, flush_age=None, wal_dir=wal)  # replays the WAL
        docs = db.collection("wal").find()
        tags = [d["tag"] for d in docs]
        assert len(tags) == len(set(tags)), f"cycle {cycle}: a write was replayed twice"
        by_tag = {d["tag"]: d["$id"] for d in docs}
        missing = set(acknowledged) - set(by_tag)
        assert not missing, f"cycle {cycle}: acknowledged writes lost: {sorted(missing)[:5]}"
        assert all(by_tag[t] == i for t, i in acknowledged.items()), "replayed entities kept their ids"
        db.close()
    assert acknowledged
