"""Tail events from NDJSON: compaction into WorkerLogs Parquet and ingestion into TailEvents.

Both candidates are measured in events (trace items) per second against the
naive pipeline a script would write: ``json.loads`` per line, the same rows
built in Python, ``pyarrow`` Parquet writes, and no validation, dedupe,
markers or commits. Goal: ≥ 200k events/s.

Inputs are generated once per case: 20k sample items repeated with shifted
days (the generator is slow; compaction and ingest cost does not depend on the
items being distinct), written as upstream-style raw files of 1000 items.
"""

from __future__ import annotations

import io
import itertools
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.harness import Case
from parquedb_ibis import connect
from parquedb_ibis.store import open_store
from parquedb_ibis.tail.compact import WORKER_LOGS_SCHEMA, compact
from parquedb_ibis.tail.ingest import ingest_jsonl
from parquedb_ibis.tail.sample import generate_trace_items

COMPACT_EVENTS = 200_000
INGEST_EVENTS = 20_000
FILE_ITEMS = 1_000
DAY_MS = 86_400_000
_runs = itertools.count()


def _items(n: int) -> list[dict]:
    base = generate_trace_items(min(n, 20_000), seed=42)
    out = []
    for copy in range(-(-n // len(base))):
        shift = copy * DAY_MS
        for item in base:
            out.append({**item, "eventTimestamp": item["eventTimestamp"] + shift})
    return out[:n]


def _raw_files(items: list[dict]) -> list[tuple[str, bytes]]:
    files = []
    for seq in range(0, len(items), FILE_ITEMS):
        chunk = items[seq:seq + FILE_ITEMS]
        header = {"doId": "ab" * 32, "createdAt": chunk[-1]["eventTimestamp"], "batchSeq": seq // FILE_ITEMS}
        body = "\n".join([json.dumps(header), *(json.dumps(i, separators=(",", ":")) for i in chunk)])
        files.append((f"raw-events/{chunk[0]['eventTimestamp']}-{'ab' * 32}-{seq // FILE_ITEMS}.ndjson", body.encode()))
    return files


# -- the naive pipeline (baseline) ---------------------------------------------------------------------


def _naive_rows(item: dict) -> list[tuple]:
    event = item.get("event") or {}
    request = event.get("request") or {}
    cf = request.get("cf") or {}
    common = (item.get("scriptName") or "unknown", item["eventTimestamp"], request.get("method"), request.get("url"),
              (event.get("response") or {}).get("status"), item["outcome"], cf.get("colo"), cf.get("country"),
              (request.get("headers") or {}).get("cf-ray"), len(item.get("diagnosticsChannelEvents") or ()))
    rows = []
    for log in item.get("logs") or ():
        message = log.get("message")
        rows.append((log.get("timestamp"), log.get("level"), message if isinstance(message, str) else json.dumps(message),
                     False, None, *common))
    for exc in item.get("exceptions") or ():
        rows.append((exc.get("timestamp"), "error", f"{exc.get('name')}: {exc.get('message')}", True, exc.get("name"),
                     *common))
    if not rows:
        rows.append((item["eventTimestamp"], "info" if item["outcome"] == "ok" else "error",
                     f"Worker execution: {item['outcome']}", False, None, *common))
    return rows


def _naive_compact(state) -> int:
    out = state["root"] / f"naive-{next(_runs)}"
    rows: list[tuple] = []
    items = 0
    for key in state["keys"]:
        for line in (state["root"] / "store" / key).read_text().split("\n")[1:]:
            item = json.loads(line)
            items += 1
            rows.extend(_naive_rows(item))
    columns = list(zip(*rows, strict=True))
    n = len(rows)
    table = pa.table({
        "id": pa.array([f"{i}" for i in range(n)]), "traceId": pa.nulls(n, pa.string()),
        "scriptName": pa.array(columns[5]),
        "eventTimestamp": pa.array(columns[6], pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        "timestamp": pa.array(columns[0], pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        "level": pa.array(columns[1]), "message": pa.array(columns[2]),
        "httpMethod": pa.array(columns[7], pa.string()), "httpUrl": pa.array(columns[8], pa.string()),
        "httpStatus": pa.array(columns[9], pa.int32()), "outcome": pa.array(columns[10]),
        "isException": pa.array(columns[3]), "exceptionName": pa.array(columns[4], pa.string()),
        "colo": pa.array(columns[11], pa.string()), "country": pa.array(columns[12], pa.string()),
        "requestId": pa.array(columns[13], pa.string()), "fetchCount": pa.array(columns[14], pa.int32()),
    }, schema=WORKER_LOGS_SCHEMA)
    hours = np.asarray(columns[6], dtype=np.int64) // 3_600_000
    for hour in np.unique(hours):
        part = out / str(hour)
        part.mkdir(parents=True)
        pq.write_table(table.filter(pa.array(hours == hour)), part / "logs.parquet", compression="zstd")
    return items


# -- cases ---------------------------------------------------------------------------------------------


def _compact_setup():
    root = Path(tempfile.mkdtemp(prefix="bench-tail-"))
    store = open_store(str(root / "store"))
    keys = []
    for key, body in _raw_files(_items(COMPACT_EVENTS)):
        store.put(key, body)
        keys.append(key)
    return {"root": root, "store": store, "keys": keys}


def _compact_candidate(state) -> int:
    result = compact(state["store"], out_prefix=f"logs/run-{next(_runs)}/")
    return result.items


def _ingest_setup():
    root = Path(tempfile.mkdtemp(prefix="bench-tail-"))
    lines = [json.dumps(i, separators=(",", ":")) for i in _items(INGEST_EVENTS)]
    path = root / "tail.jsonl"
    path.write_text("\n".join(lines))
    return {"root": root, "path": path}


def _naive_ingest(state) -> int:
    docs = [json.loads(line) for line in state["path"].read_text().splitlines()]
    table = pa.table({
        "scriptName": [d["scriptName"] for d in docs], "outcome": [d["outcome"] for d in docs],
        "eventTimestamp": pa.array([d["eventTimestamp"] for d in docs], pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        "event": [json.dumps(d.get("event")) for d in docs], "logs": [json.dumps(d.get("logs")) for d in docs],
        "exceptions": [json.dumps(d.get("exceptions")) for d in docs],
    })
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    (state["root"] / f"naive-{next(_runs)}.parquet").write_bytes(sink.getvalue())
    return len(docs)


def _ingest_candidate(state) -> int:
    db = connect(str(state["root"] / f"db-{next(_runs)}"), flush_age=None)
    try:
        result = ingest_jsonl(db, state["path"])
    finally:
        db.close()
    return result.ingested


def _reingest_setup():
    state = _ingest_setup()
    state["db"] = connect(str(state["root"] / "db"), flush_age=None)
    ingest_jsonl(state["db"], state["path"])
    return state


def _reingest_candidate(state) -> int:
    result = ingest_jsonl(state["db"], state["path"])
    assert result.ingested == 0
    return result.duplicates


def _teardown(state) -> None:
    if "db" in state:
        state["db"].close()
    shutil.rmtree(state["root"], ignore_errors=True)


def cases() -> list[Case]:
    goal = "≥ 200k events/s"
    return [
        Case("tail", f"compact raw NDJSON -> WorkerLogs Parquet ({COMPACT_EVENTS // 1000}k events)", _compact_setup,
             _naive_compact, _compact_candidate, baseline_label="json.loads + pyarrow (no markers)",
             candidate_label="compact()", goal=goal, repeat=3, warmup=0, teardown=_teardown, unit="events"),
        Case("tail", f"ingest NDJSON -> TailEvents ({INGEST_EVENTS // 1000}k new events)", _ingest_setup,
             _naive_ingest, _ingest_candidate, baseline_label="json.loads + pyarrow (no dedupe)",
             candidate_label="ingest_jsonl()", goal=goal, repeat=2, warmup=0, teardown=_teardown, unit="events"),
        Case("tail", f"re-ingest NDJSON, all duplicates ({INGEST_EVENTS // 1000}k events)", _reingest_setup,
             _naive_ingest, _reingest_candidate, baseline_label="json.loads + pyarrow (no dedupe)",
             candidate_label="ingest_jsonl()", goal=goal, repeat=2, warmup=0, teardown=_teardown, unit="events"),
    ]

