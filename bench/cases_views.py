"""Materialized views: incremental vs full refresh on a large source, and streaming refresh latency.

* ``incremental refresh +1%``: a grouped view (count, sum, avg, max by script
  and hour; decomposable) over a :data:`SOURCE_ROWS`-row collection. Each
  candidate run publishes one more pre-written segment of 1% new rows and
  refreshes incrementally (merge of partial aggregates); the baseline
  recomputes the view from scratch.
* ``recompute-groups +1%``: the same with a percentile view (non-decomposable):
  only the hours the new rows fall in are recomputed; the affected hours'
  range becomes a literal filter on ``at`` that prunes checkpoint row groups.
* ``streaming``: 200, 2,000 and 10,000 tail events per flush into ``TailEvents`` with the
  streaming ``WorkerRequests`` → ``EndpointMetrics`` chain defined; the
  candidate times insert + flush (the flush hook refreshes both views) + a
  query of the view, the baseline the same without views. The teardown
  prints the flush-to-queryable latency alone.

The source is written straight as event segments (DuckDB ``COPY``), committed
with the writer's compare-and-swap, because creating a million entities
through ``insert_many`` would take minutes here.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from bench.harness import Case
from parquedb_ibis import connect
from parquedb_ibis.documents import format_datetime
from parquedb_ibis.schema import Schema
from parquedb_ibis.tail.sample import generate_trace_items
from parquedb_ibis.views import seeds
from parquedb_ibis.writer.ids import new_ulid
from parquedb_ibis.writer.manifest import SegmentRef, segment_key
from parquedb_ibis.writer.transaction import AppendSegments, SetSchema, commit, load_head

#: Rows in the big source (about a minute to write here; full refresh of the grouped view ≈ 5 s).
SOURCE_ROWS = 5_000_000
#: Rows appended before each incremental refresh (1%).
APPEND_ROWS = SOURCE_ROWS // 100
REPEAT = 5
#: Tail events per flush in the streaming cases.
STREAM_BATCHES = (200, 2000, 10_000)

SCHEMA = Schema.parse({"script": "string", "status": "int", "wallTime": "float", "at": "timestamp"})
START = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
#: Seconds between consecutive source rows (1M rows span about a month: ~5,800 script×hour groups).
STEP_SECONDS = 2.6

METRICS = {
    "$from": "Requests",
    "$groupBy": ["script", {"hour": "$at"}],
    "$compute": {"n": {"$count": "*"}, "errors": {"$sum": {"$cond": [{"$gte": ["$status", 500]}, 1, 0]}},
                 "avgWall": {"$avg": "wallTime"}, "maxWall": {"$max": "wallTime"}},
    "$refresh": {"mode": "manual"},
}
LATENCY = {
    "$from": "Requests",
    "$groupBy": ["script", {"hour": "$at"}],
    "$compute": {"p95": {"$percentile": ["wallTime", 0.95]}, "n": {"$count": "*"}},
    "$refresh": {"mode": "manual"},
}


def _write_segment(db: Any, first: int, count: int) -> SegmentRef:
    """One event segment of ``count`` CREATE events for rows ``first .. first + count - 1`` (not yet committed)."""
    when = dt.datetime.now(dt.timezone.utc)
    key = segment_key("Requests", new_ulid(), when)
    path = db.store.url_for(key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    start = START.strftime("%Y-%m-%d %H:%M:%S+00")
    db.query_rows(f"""
        COPY (
          SELECT printf('E%025d', i) AS id, now()::TIMESTAMPTZ AS ts, 'CREATE' AS op, 'Requests' AS ns,
                 printf('r%010d', i) AS entity_id, NULL::VARCHAR AS before, 'bench' AS actor, NULL::VARCHAR AS metadata,
                 'Requests/' || printf('r%010d', i) AS "$id", 'Requests' AS "$type", now()::TIMESTAMPTZ AS "createdAt",
                 now()::TIMESTAMPTZ AS "updatedAt", 'bench' AS "createdBy", 'bench' AS "updatedBy", 1::BIGINT AS version,
                 NULL::TIMESTAMPTZ AS "deletedAt", 'script-' || (i % 8) AS script,
                 (CASE WHEN i % 50 = 0 THEN 503 WHEN i % 7 = 0 THEN 404 ELSE 200 END)::BIGINT AS status,
                 ((i * 7919) % 1000)::DOUBLE AS "wallTime",
                 TIMESTAMPTZ '{start}' + to_milliseconds(CAST(i * {STEP_SECONDS * 1000} AS BIGINT)) AS at,
                 '{{}}' AS "$data"
          FROM range({first}, {first + count}) t(i)
        ) TO '{path}' (FORMAT parquet, COMPRESSION zstd)""")
    stamp = format_datetime(when)
    return SegmentRef(key=key, rows=count, first_event=f"E{first:025d}", last_event=f"E{first + count - 1:025d}",
                      min_ts=stamp, max_ts=stamp, writer="bench", entities=count, bytes=os.path.getsize(path))


def _publish(db: Any, segment: SegmentRef) -> None:
    head, etag = load_head(db.store, "Requests")
    commit(db.store, head, etag, [AppendSegments((segment,)), SetSchema(SCHEMA.to_spec())])
    db.collection("Requests").refresh()


def _source_setup(view: dict[str, Any]) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bench-views-"))
    db = connect(str(root), flush_age=None)
    started = time.perf_counter()
    _publish(db, _write_segment(db, 0, SOURCE_ROWS))
    db.checkpoint()  # a large collection is read from its checkpoint (sorted by $id: ids follow time here, like ULIDs)
    db.define_view("V", view)
    db.refresh_view("V")
    # segments for every incremental run (warmup + repeats), written now so runs time only publish + refresh
    pending = [_write_segment(db, SOURCE_ROWS + k * APPEND_ROWS, APPEND_ROWS) for k in range(REPEAT + 1)]
    print(f"    source: {SOURCE_ROWS:,} rows written and first refresh in {time.perf_counter() - started:.1f} s; "
          f"{db.view_state('V').document_count:,} groups", flush=True)
    return {"root": root, "db": db, "pending": pending, "modes": []}


def _full(state: dict[str, Any]) -> int:
    state["db"].refresh_view("V", full=True)
    return SOURCE_ROWS


def _incremental(state: dict[str, Any]) -> int:
    _publish(state["db"], state["pending"].pop(0))
    result = state["db"].refresh_view("V")
    state["modes"].append(result.mode)
    return APPEND_ROWS


def _teardown(state: dict[str, Any]) -> None:
    print(f"    candidate refresh modes: {sorted(set(state['modes']))}", flush=True)
    state["db"].close()
    shutil.rmtree(state["root"], ignore_errors=True)


# -- streaming -------------------------------------------------------------------------------------


def _stream_setup(with_views: bool, batch: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    db = connect(str(root), flush_age=None, flush_every=10**9)  # the timed flush() publishes each batch
    if with_views:
        seeds.define_seed_views(db, ["EndpointMetrics"])
    else:
        db.collection(seeds.TAIL_EVENTS, seeds.TAIL_EVENTS_SCHEMA)
    items = generate_trace_items(batch * (REPEAT + 1), seed=5 if with_views else 6)
    docs = [{**i, "eventTimestamp": dt.datetime.fromtimestamp(i["eventTimestamp"] / 1000, dt.timezone.utc)} for i in items]
    return {"root": root, "db": db, "docs": docs, "batch": batch, "latency": []}


def _stream_both(batch: int) -> dict[str, Any]:
    return {"plain": _stream_setup(False, batch), "views": _stream_setup(True, batch)}


def _batch(state: dict[str, Any]) -> list[dict[str, Any]]:
    batch, state["docs"] = state["docs"][: state["batch"]], state["docs"][state["batch"]:]
    return batch


def _stream_plain(both: dict[str, Any]) -> int:
    state = both["plain"]
    coll = state["db"].collection(seeds.TAIL_EVENTS)
    coll.insert_many(_batch(state))
    coll.flush()
    coll.count()
    return state["batch"]


def _stream_views(both: dict[str, Any]) -> int:
    state = both["views"]
    db = state["db"]
    db.collection(seeds.TAIL_EVENTS).insert_many(_batch(state))
    started = time.perf_counter()
    db.flush()  # the flush hook refreshes WorkerRequests, then EndpointMetrics
    db.view("EndpointMetrics").count()
    state["latency"].append(time.perf_counter() - started)
    assert db.background_errors == []
    return state["batch"]


# -- streaming Arrow batches (the bulk-load path) -----------------------------------------------------

ARROW_BATCH = 50_000
_JSON_FIELDS = ("event", "logs", "exceptions", "diagnosticsChannelEvents", "scriptVersion")


def _tail_table(items: list[dict[str, Any]]) -> pa.Table:
    """TailEvents rows as Arrow: typed columns, variant fields as JSON text (what a parser hands over)."""
    declared = seeds.TAIL_EVENTS_SCHEMA
    columns: dict[str, Any] = {}
    for name in declared:
        values = [i.get(name) for i in items]
        if name in _JSON_FIELDS:
            values = [None if v is None and name not in i else json.dumps(v) for v, i in zip(values, items, strict=True)]
        columns[name] = values
    columns["eventTimestamp"] = pa.array(columns["eventTimestamp"], pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
    columns["$data"] = [json.dumps({k: v for k, v in i.items() if k not in declared}) for i in items]
    return pa.table(columns)


def _arrow_setup(with_views: bool) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    db = connect(str(root), flush_age=None)
    if with_views:
        seeds.define_seed_views(db, ["EndpointMetrics"])
    else:
        db.collection(seeds.TAIL_EVENTS, seeds.TAIL_EVENTS_SCHEMA)
    base = _tail_table(generate_trace_items(ARROW_BATCH // 5, seed=5 if with_views else 6))
    return {"root": root, "db": db, "table": pa.concat_tables([base] * 5), "batch": ARROW_BATCH, "latency": []}


def _arrow_both() -> dict[str, Any]:
    return {"plain": _arrow_setup(False), "views": _arrow_setup(True)}


def _arrow_plain(both: dict[str, Any]) -> int:
    state = both["plain"]
    coll = state["db"].collection(seeds.TAIL_EVENTS)
    coll.insert_arrow(state["table"])
    coll.count()
    return state["batch"]


def _arrow_views(both: dict[str, Any]) -> int:
    state = both["views"]
    db = state["db"]
    started = time.perf_counter()
    db.collection(seeds.TAIL_EVENTS).insert_arrow(state["table"])  # commit, then the hook refreshes both views
    db.view("EndpointMetrics").count()
    state["latency"].append(time.perf_counter() - started)
    assert db.background_errors == []
    return state["batch"]


def _stream_teardown(both: dict[str, Any]) -> None:
    lat = both["views"]["latency"]
    events = both["views"]["batch"]
    print(f"    flush → EndpointMetrics queryable: median {statistics.median(lat) * 1000:.0f} ms "
          f"(min {min(lat) * 1000:.0f}, max {max(lat) * 1000:.0f}) over {len(lat)} flushes of {events} events, "
          f"{events / statistics.median(lat):,.0f} events/s through flush + 2 view refreshes", flush=True)
    for state in both.values():
        state["db"].close()
        shutil.rmtree(state["root"], ignore_errors=True)


def cases() -> list[Case]:
    return [
        Case("views", f"grouped view, +1% rows ({SOURCE_ROWS:,}-row source)", lambda: _source_setup(METRICS),
             _full, _incremental, baseline_label="full refresh", candidate_label="incremental (merge)",
             goal="ratio <= 0.05", max_ratio=0.05, repeat=REPEAT, warmup=1, teardown=_teardown, unit="rows"),
        Case("views", f"percentile view, +1% rows ({SOURCE_ROWS:,}-row source)", lambda: _source_setup(LATENCY),
             _full, _incremental, baseline_label="full refresh", candidate_label="recompute-groups",
             goal="ratio <= 0.8", max_ratio=0.8, repeat=REPEAT, warmup=1, teardown=_teardown, unit="rows"),
        *(Case("views", f"streaming, {n} tail events per flush", lambda n=n: _stream_both(n), _stream_plain, _stream_views,
               baseline_label="insert+flush+count, no views", candidate_label="same + 2 streaming views",
               repeat=REPEAT, warmup=1, teardown=_stream_teardown, unit="events") for n in STREAM_BATCHES),
        Case("views", f"streaming, {ARROW_BATCH:,} tail events per insert_arrow", _arrow_both, _arrow_plain,
             _arrow_views, baseline_label="insert_arrow+count, no views", candidate_label="same + 2 streaming views",
             goal="≥ 100k events/s", repeat=REPEAT, warmup=1, teardown=_stream_teardown, unit="events"),
    ]
