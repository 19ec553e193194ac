"""The writer: batched appends, checkpoints, and full scans over checkpoint + segments."""

from __future__ import annotations

import io
import random
import resource
import shutil
import string
import tempfile
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from sqlglot import exp

import parquedb_ibis
from bench.harness import Case
from parquedb_ibis._testing import MotoServer
from parquedb_ibis.writer.reader import read_parquet

BATCH = 10_000


def make_docs(n: int, seed: int = 1, body: int = 700) -> list[dict]:
    """~1 KB documents: scalars, a nested object, an array and a text body."""
    rng = random.Random(seed)
    letters = string.ascii_letters + " "
    return [
        {
            "title": f"post {i}",
            "views": rng.randint(0, 10**6),
            "score": rng.random(),
            "active": i % 3 == 0,
            "tags": [rng.choice("abcd") for _ in range(3)],
            "author": {"name": f"user{i % 1000}", "email": f"u{i}@example.com", "country": rng.choice(["US", "DE", "FR"])},
            "body": "".join(rng.choices(letters, k=body)),
        }
        for i in range(n)
    ]


# -- appends ---------------------------------------------------------------------------


def _append_setup(url_factory):
    def setup():
        tmp = Path(tempfile.mkdtemp(prefix="bench-writer-"))
        url, options, server = url_factory(tmp)
        db = parquedb_ibis.connect(url, flush_age=None, flush_every=10**9, auto_checkpoint=None, **options)
        return {"tmp": tmp, "db": db, "coll": db.collection("bench"), "docs": make_docs(BATCH), "n": 0, "server": server}
    return setup


def _append_baseline(state) -> int:
    """pyarrow writes the same rows as one Parquet file (type inference + write, no events, no commit)."""
    state["n"] += 1
    table = pa.Table.from_pylist(state["docs"])
    pq.write_table(table, state["tmp"] / f"baseline-{state['n']}.parquet", compression="zstd")
    return BATCH


def _append_baseline_s3(state) -> int:
    """pyarrow encodes the same rows as one Parquet file and uploads it with one PUT to the same server."""
    state["n"] += 1
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(state["docs"]), sink, compression="zstd")
    state["db"].store.put(f"baseline/{state['n']}.parquet", sink.getvalue())
    return BATCH


def _append_candidate(state) -> int:
    """insert_many of the batch, then one flush: a segment plus one head compare-and-swap."""
    state["coll"].insert_many(state["docs"])
    state["coll"].flush()
    return BATCH


def _teardown(state) -> None:
    state["db"].close()
    if state.get("server"):
        state["server"].stop()
    shutil.rmtree(state["tmp"], ignore_errors=True)


def _local(tmp):
    return str(tmp / "store"), {}, None


def _s3(tmp):
    server = MotoServer(buckets=("bench",))
    server.reset()
    return "s3://bench/writer", server.options(), server


# -- checkpoint --------------------------------------------------------------------------

CHECKPOINT_ENTITIES = 1_000_000


def _checkpoint_setup():
    tmp = Path(tempfile.mkdtemp(prefix="bench-ckpt-"))
    db = parquedb_ibis.connect(str(tmp / "store"), flush_age=None, flush_every=10**9, auto_checkpoint=None)
    coll = db.collection("big", schema={"views": "int", "score": "float"})
    docs = make_docs(50_000, body=100)
    for i in range(CHECKPOINT_ENTITIES // len(docs)):
        coll.insert_many([{**d, "views": d["views"] + i} for d in docs])
        coll.flush()
    head = coll.refresh()
    return {"tmp": tmp, "db": db, "coll": coll, "head": head, "runs": 0, "rss": []}


def _checkpoint_baseline(state) -> int:
    """DuckDB sorts the same segment rows by $id into one Parquet file (no fold, no commit)."""
    files = [state["db"].store.url_for(s.key) for s in state["head"].history]
    rows = exp.select("*").from_(read_parquet(files, union_by_name=True)).order_by(exp.column("$id", quoted=True))
    copy = exp.Copy(this=exp.Subquery(this=rows), kind=False, files=[exp.Literal.string(str(state["tmp"] / "baseline.parquet"))],
                    params=[exp.CopyParameter(this=exp.var("FORMAT"), expression=exp.var("parquet")),
                            exp.CopyParameter(this=exp.var("COMPRESSION"), expression=exp.var("zstd"))])
    duckdb.connect().execute(copy.sql("duckdb"))
    return CHECKPOINT_ENTITIES


def _checkpoint_candidate(state) -> int:
    """db.checkpoint(): fold every segment, write sorted checkpoint files, publish the head."""
    db = state["db"]
    db.store.put("data/big/_head.json", state["head"].to_json())  # every run folds the same 1M-entity history
    state["coll"].refresh()
    db.checkpoint()
    state["rss"].append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return CHECKPOINT_ENTITIES


def _checkpoint_notes(state) -> str:
    return f"peak RSS of the benchmark process after the checkpoints: {max(state['rss']):.0f} MiB"


# -- full scans ------------------------------------------------------------------------------

SCAN_ROWS = 1_000_000


def _scan_setup():
    tmp = Path(tempfile.mkdtemp(prefix="bench-scan-"))
    db = parquedb_ibis.connect(str(tmp / "store"), flush_age=None, flush_every=10**9, auto_checkpoint=None)
    coll = db.collection("scan", schema={"views": "int", "score": "float", "title": "string"})
    docs = make_docs(50_000, body=100)
    for i in range(SCAN_ROWS // len(docs) - 2):
        coll.insert_many([{**d, "views": d["views"] + i} for d in docs])
        coll.flush()
    db.checkpoint()
    for i in range(2):  # two live segments on top of the checkpoint
        coll.insert_many(docs)
        coll.flush()
    relation = coll.relation()
    hand = tmp / "hand.parquet"
    con = duckdb.connect()
    copy = exp.Copy(this=exp.Subquery(this=relation), kind=False, files=[exp.Literal.string(str(hand))],
                    params=[exp.CopyParameter(this=exp.var("FORMAT"), expression=exp.var("parquet")),
                            exp.CopyParameter(this=exp.var("COMPRESSION"), expression=exp.var(db.compression))])
    con.execute(copy.sql("duckdb"))
    agg = [exp.Count(this=exp.Star()), exp.Sum(this=exp.column("views", quoted=True)),
           exp.Avg(this=exp.column("score", quoted=True)), exp.Max(this=exp.column("title", quoted=True))]
    ours = exp.select(*agg).from_(exp.alias_(exp.Subquery(this=relation), "r")).sql("duckdb")
    plain = exp.select(*agg).from_(exp.func("read_parquet", exp.Literal.string(str(hand)))).sql("duckdb")
    (a,), (b,) = con.execute(ours).fetchall(), con.execute(plain).fetchall()
    assert a[:2] == b[:2] and abs(a[2] - b[2]) < 1e-9 and a[3] == b[3], (a, b)  # avg: float summation order
    return {"tmp": tmp, "db": db, "con": con, "ours": ours, "plain": plain}


def _scan_baseline(state) -> int:
    state["con"].execute(state["plain"]).fetchall()
    return SCAN_ROWS


def _scan_candidate(state) -> int:
    state["con"].execute(state["ours"]).fetchall()
    return SCAN_ROWS


def cases() -> list[Case]:
    return [
        Case("writer", "append 10k × ~1 KB docs, local", _append_setup(_local), _append_baseline, _append_candidate,
             baseline_label="pyarrow one file", goal="ratio <= 2.0 (≥ 0.5× pyarrow), ≥ 100k events/s",
             max_ratio=2.0, unit="events", teardown=_teardown, repeat=15, warmup=2),
        Case("writer", "append 10k × ~1 KB docs, S3 (moto)", _append_setup(_s3), _append_baseline_s3, _append_candidate,
             baseline_label="pyarrow one file, one PUT", goal="ratio <= 2.0", max_ratio=2.0, unit="events",
             teardown=_teardown, repeat=3),
        Case("writer", f"checkpoint {CHECKPOINT_ENTITIES:,} entities", _checkpoint_setup, _checkpoint_baseline,
             _checkpoint_candidate, baseline_label="DuckDB sort+write same rows", unit="entities",
             teardown=_teardown, repeat=2, warmup=0, notes=_checkpoint_notes),
        Case("writer", f"full scan {SCAN_ROWS:,} rows: checkpoint + 2 segments", _scan_setup, _scan_baseline,
             _scan_candidate, baseline_label="one hand-written Parquet file (same codec)", goal="ratio <= 1.2", max_ratio=1.2,
             unit="rows", teardown=lambda s: shutil.rmtree(s["tmp"], ignore_errors=True), repeat=30, warmup=3),
    ]
