"""Tail events from NDJSON: compaction into WorkerLogs Parquet and ingestion into TailEvents.

Both candidates are measured in events (trace items) per second against the
naive pipeline a script would write: ``json.loads`` per line, the same rows
built in Python, ``pyarrow`` Parquet writes, and no validation, dedupe,
markers or commits. Goal: ≥ 200k events/s.

Inputs are generated once per case: 20k sample items (one day of diurnal
traffic) repeated a second apart (the generator is slow; compaction and
ingest cost does not depend on the items being distinct), so 200k events fall
in one day's 24 hourly partitions, sorted by time and written as
upstream-style raw files of 1000 items (what one TailDO flush holds).

The query cases time the seed questions (error rate by worker, top endpoints,
recent exceptions, geographic breakdown, log search) over about
:data:`QUERY_ROWS` compacted WorkerLogs rows. The candidate is the ParqueDB SQL,
translated by :mod:`parquedb_ibis.dialect` on every run, over a ``WorkerLogs``
view of the Parquet files; the baseline is the same question written by hand in
DuckDB SQL over ``read_parquet`` of the same files. The data set is built once
for all of them, without a single Python dict per row: :data:`QUERY_BASE_ITEMS`
sample items (one day) are compacted by :func:`compact`, and DuckDB copies the
committed rows into the ``year=/month=/day=/hour=`` layout, shifted by whole
days and by seconds within a day (about 30k rows per hour over
:data:`QUERY_DAYS` days), with the copy number appended to ``id`` and ``traceId``.
"""

from __future__ import annotations

import atexit
import datetime as dt
import io
import itertools
import json
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import sqlglot
from sqlglot import exp

from bench.harness import Case
from parquedb_ibis import connect
from parquedb_ibis.dialect import TableInfo, to_duckdb
from parquedb_ibis.store import connect_duckdb, open_store
from parquedb_ibis.tail.compact import WORKER_LOGS_SCHEMA, compact, compacted_files
from parquedb_ibis.tail.ingest import ingest_jsonl
from parquedb_ibis.tail.sample import generate_trace_items

COMPACT_EVENTS = 200_000
INGEST_EVENTS = 20_000
#: WorkerLogs rows the seed queries run over (about), the sample items (one day) they are copied from, the days.
QUERY_ROWS = 10_000_000
QUERY_BASE_ITEMS = 20_000
QUERY_DAYS = 14
FILE_ITEMS = 1_000
DAY_MS = 86_400_000
_runs = itertools.count()


def _items(n: int) -> list[dict]:
    base = generate_trace_items(min(n, 20_000), seed=42)
    out = []
    for copy in range(-(-n // len(base))):
        shift = copy * 1_000  # a second apart: all copies fall in the same day, as a busy account's traffic does
        for item in base:
            out.append({**item, "eventTimestamp": item["eventTimestamp"] + shift})
    out = out[:n]
    out.sort(key=lambda item: item["eventTimestamp"])  # raw files hold what one flush saw: seconds of traffic
    return out


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


# -- seed queries over 10M WorkerLogs rows ---------------------------------------------------------------

#: name -> (ParqueDB SQL over WorkerLogs, the same question by hand in DuckDB SQL over read_parquet($files)).
#: ``$1`` (``$since`` by hand) is the instant one day before the newest row: a "last day" window.
SEED_QUERIES: dict[str, tuple[str, str]] = {
    "error rate by worker": (
        """SELECT scriptName, COUNT(*) AS rows, SUM(CASE WHEN level = 'error' THEN 1 ELSE 0 END) AS errors,
                  ROUND(100.0 * SUM(CASE WHEN level = 'error' THEN 1 ELSE 0 END) / COUNT(*), 1) AS error_rate
           FROM WorkerLogs WHERE eventTimestamp > $1
           GROUP BY scriptName ORDER BY errors DESC, scriptName""",
        """SELECT "scriptName", count(*), count(*) FILTER (WHERE "level" = 'error'),
                  round(100.0 * count(*) FILTER (WHERE "level" = 'error') / count(*), 1)
           FROM read_parquet($files, hive_partitioning = true) WHERE "eventTimestamp" > $since
           GROUP BY 1 ORDER BY 3 DESC, 1""",
    ),
    "top endpoints": (
        """SELECT httpUrl AS url, COUNT(*) AS hits, AVG(httpStatus) AS avg_status
           FROM WorkerLogs WHERE eventTimestamp > $1 AND httpUrl IS NOT NULL
           GROUP BY url ORDER BY hits DESC, url LIMIT 10""",
        """SELECT "httpUrl", count(*), avg("httpStatus") FROM read_parquet($files, hive_partitioning = true)
           WHERE "eventTimestamp" > $since AND "httpUrl" IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10""",
    ),
    "recent exceptions": (
        """SELECT scriptName, epoch_ms(timestamp) AS ms, exceptionName, message FROM WorkerLogs
           WHERE isException ORDER BY timestamp DESC, id LIMIT 10""",
        """SELECT "scriptName", epoch_ms("timestamp"), "exceptionName", "message"
           FROM read_parquet($files, hive_partitioning = true)
           WHERE "isException" ORDER BY "timestamp" DESC, "id" LIMIT 10""",
    ),
    "geographic breakdown": (
        """SELECT country, colo, COUNT(*) AS requests FROM WorkerLogs
           GROUP BY country, colo ORDER BY requests DESC, country, colo""",
        """SELECT "country", "colo", count(*) FROM read_parquet($files, hive_partitioning = true)
           GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2""",
    ),
    "log search": (
        """SELECT id, scriptName, outcome FROM WorkerLogs
           WHERE message ILIKE '%timeout%' ORDER BY timestamp, id LIMIT 100""",
        """SELECT "id", "scriptName", "outcome" FROM read_parquet($files, hive_partitioning = true)
           WHERE "message" ILIKE '%timeout%' ORDER BY "timestamp", "id" LIMIT 100""",
    ),
}

#: The shared query data set (see :func:`_query_data`).
_query_state: dict[str, Any] = {}

#: The copies of the base rows: constant SQL over the registered tables ``base`` (the compacted rows) and
#: ``copies`` (k, shift_ms); the output directory is added as a sqlglot literal in :func:`_replicate`.
_REPLICATE = """
SELECT b.id || '-r' || CAST(c.k AS VARCHAR) AS id, b.traceId || '-r' || CAST(c.k AS VARCHAR) AS traceId, b.scriptName,
       b.eventTimestamp + to_milliseconds(c.shift_ms) AS eventTimestamp,
       b."timestamp" + to_milliseconds(c.shift_ms) AS "timestamp",
       b.level, b.message, b.httpMethod, b.httpUrl, b.httpStatus, b.outcome, b.isException, b.exceptionName,
       b.colo, b.country, b.requestId, b.fetchCount,
       strftime(b.eventTimestamp + to_milliseconds(c.shift_ms), '%Y') AS year,
       strftime(b.eventTimestamp + to_milliseconds(c.shift_ms), '%m') AS month,
       strftime(b.eventTimestamp + to_milliseconds(c.shift_ms), '%d') AS day,
       strftime(b.eventTimestamp + to_milliseconds(c.shift_ms), '%H') AS hour
FROM base AS b CROSS JOIN copies AS c
"""


def _replicate(con: duckdb.DuckDBPyConnection, base: pa.Table, out: Path) -> int:
    """Write about QUERY_ROWS rows: copies of ``base`` spread over QUERY_DAYS days, hive-partitioned by hour."""
    copies = math.ceil(QUERY_ROWS / base.num_rows)
    per_day = math.ceil(copies / QUERY_DAYS)
    k = np.arange(copies, dtype=np.int64)
    con.register("base", base)
    con.register("copies", pa.table({"k": k, "shift_ms": (k // per_day) * DAY_MS + (k % per_day) * 3_000}))
    copy = exp.Copy(
        this=exp.Subquery(this=sqlglot.parse_one(_REPLICATE, read="duckdb")), kind=False,
        files=[exp.Literal.string(str(out))],
        params=[exp.CopyParameter(this=exp.var("FORMAT"), expression=exp.var("parquet")),
                exp.CopyParameter(this=exp.var("COMPRESSION"), expression=exp.var("zstd")),
                exp.CopyParameter(this=exp.var("ROW_GROUP_SIZE"), expression=exp.Literal.number(100_000)),
                exp.CopyParameter(this=exp.var("PARTITION_BY"), expression=exp.Tuple(
                    expressions=[exp.column(n) for n in ("year", "month", "day", "hour")]))],
    )
    con.execute(copy.sql("duckdb"))
    con.unregister("base")
    con.unregister("copies")
    return copies * base.num_rows


def _query_data() -> dict[str, Any]:
    """The 10M-row data set, built on first use and shared by the query cases (removed at exit)."""
    if _query_state:
        return _query_state
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="bench-tail-queries-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    store = open_store(str(root / "store"))
    for key, body in _raw_files(generate_trace_items(QUERY_BASE_ITEMS, seed=3, span=dt.timedelta(days=1))):
        store.put(key, body)
    compact(store)
    base = pa.concat_tables([pq.read_table(io.BytesIO(store.get(key))) for key in compacted_files(store)])
    con = connect_duckdb(None)
    rows = _replicate(con, base, root / "logs")
    files = sorted(str(p) for p in (root / "logs").rglob("*.parquet"))
    (newest,), = con.execute("SELECT max(eventTimestamp) FROM read_parquet($files)", {"files": files}).fetchall()
    view = exp.Create(this=exp.to_table("WorkerLogs", quoted=True), kind="VIEW", replace=True,
                      expression=exp.select("*").from_(exp.func(
                          "read_parquet", exp.Array(expressions=[exp.Literal.string(f) for f in files]),
                          exp.EQ(this=exp.var("hive_partitioning"), expression=exp.true()))))
    con.execute(view.sql("duckdb"))
    since = newest - dt.timedelta(days=1)
    _query_state.update(root=root, con=con, hand=duckdb.connect(config={"threads": con.execute(
        "SELECT current_setting('threads')").fetchone()[0]}), files=files, since=since, rows=rows,
        setup_seconds=time.perf_counter() - started)
    _query_state["hand"].execute("SET TimeZone = 'UTC'")
    return _query_state


def _query_case(name: str) -> tuple:
    query, hand_written = SEED_QUERIES[name]
    tables = {"WorkerLogs": TableInfo({f.name: _DUCKDB_TYPES[f.name] for f in WORKER_LOGS_SCHEMA}, has_data=False)}

    def setup():
        return _query_data()

    def baseline(state) -> int:
        params = {"files": state["files"], **({"since": state["since"]} if "$since" in hand_written else {})}
        rows = state["hand"].execute(hand_written, params).fetchall()
        state.setdefault("answers", {})[name, "baseline"] = rows
        return state["rows"]

    def candidate(state) -> int:
        params = [state["since"]] if "$1" in query else []
        rows = state["con"].execute(to_duckdb(query, tables, params), params).fetchall()
        state.setdefault("answers", {})[name, "candidate"] = rows
        return state["rows"]

    def teardown(state) -> None:
        answers = state.get("answers", {})
        if answers.get((name, "baseline")) != answers.get((name, "candidate")):
            print(f"[bench] {name}: the candidate's rows differ from the hand-written query's", flush=True)

    def notes(state) -> str:
        return f"{state['rows']:,} rows in {len(state['files'])} files; data set built in {state['setup_seconds']:.0f} s"

    return (setup, baseline, candidate, teardown, notes)


#: DuckDB types of the WorkerLogs columns (for the dialect's name resolution).
_DUCKDB_TYPES = {
    "id": "VARCHAR", "traceId": "VARCHAR", "scriptName": "VARCHAR", "eventTimestamp": "TIMESTAMP WITH TIME ZONE",
    "timestamp": "TIMESTAMP WITH TIME ZONE", "level": "VARCHAR", "message": "VARCHAR", "httpMethod": "VARCHAR",
    "httpUrl": "VARCHAR", "httpStatus": "INTEGER", "outcome": "VARCHAR", "isException": "BOOLEAN",
    "exceptionName": "VARCHAR", "colo": "VARCHAR", "country": "VARCHAR", "requestId": "VARCHAR", "fetchCount": "INTEGER",
}


def cases() -> list[Case]:
    goal = "≥ 200k events/s"
    return [
        Case("tail", f"compact raw NDJSON -> WorkerLogs Parquet ({COMPACT_EVENTS // 1000}k events)", _compact_setup,
             _naive_compact, _compact_candidate, baseline_label="json.loads + pyarrow (no markers)",
             candidate_label="compact()", goal=goal, repeat=5, warmup=1, teardown=_teardown, unit="events"),
        Case("tail", f"ingest NDJSON -> TailEvents ({INGEST_EVENTS // 1000}k new events)", _ingest_setup,
             _naive_ingest, _ingest_candidate, baseline_label="json.loads + pyarrow (no dedupe)",
             candidate_label="ingest_jsonl()", goal=goal, repeat=2, warmup=0, teardown=_teardown, unit="events"),
        Case("tail", f"re-ingest NDJSON, all duplicates ({INGEST_EVENTS // 1000}k events)", _reingest_setup,
             _naive_ingest, _reingest_candidate, baseline_label="json.loads + pyarrow (no dedupe)",
             candidate_label="ingest_jsonl()", goal=goal, repeat=2, warmup=0, teardown=_teardown, unit="events"),
        *(Case("tail", f"seed query over 10M WorkerLogs rows: {name}", setup, baseline, candidate,
               baseline_label="hand-written DuckDB SQL", candidate_label="ParqueDB SQL (dialect)",
               goal="ratio <= 1.10", max_ratio=1.10, repeat=5, warmup=1, teardown=teardown, unit="rows", notes=notes)
          for name in SEED_QUERIES for setup, baseline, candidate, teardown, notes in [_query_case(name)]),
    ]

