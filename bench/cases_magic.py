"""The magic's overhead per cell, and the Workers dashboard's refresh time over a million requests.

* ``magic``: a ``%%parquedb`` SQL cell (a parameter bound, ``--format arrow``)
  through a real IPython shell, against DuckDB running the very SQL the magic
  produces (translated and pointed at the collection's files) on the same
  connection. The difference of the medians is the magic's own cost: argument
  parsing, variable binding, dialect translation, reading the collection's
  head, and building the result. Goal: at most 10 ms per cell.
* ``dashboard``: one full refresh (every panel query, the alert series and
  evaluation, and the four charts as Vega-Lite JSON) over Parquet files shaped
  like the ``WorkerRequests`` / ``WorkerErrors`` / ``WorkerLogs`` views, with
  :data:`DASHBOARD_REQUESTS` requests (and about as many log lines) over 24
  hours, written straight by DuckDB in a few seconds (ingesting a million
  trace items and refreshing the views would take minutes here). The
  baseline runs the same panel queries, pre-rendered, straight on DuckDB. Two
  windows: the whole day (15-minute buckets), and the last hour of one script
  (what a dropdown change costs).
"""

from __future__ import annotations

import datetime as dt
import io
import shutil
import statistics
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import duckdb
from sqlglot import exp

from bench.harness import Case
from parquedb_ibis import connect
from parquedb_ibis import dashboards as d

#: Documents in the magic's collection.
MAGIC_ROWS = 20_000
#: Requests in the dashboard's data (about as many log lines, 3% errors).
DASHBOARD_REQUESTS = 10_000_000
START = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
SCRIPTS = ["api-gateway", "auth-worker", "static-router", "webhook-handler", "image-resizer", "chat-room"]
COLOS = ["IAD", "EWR", "ORD", "DFW", "LAX", "SJC", "LHR", "AMS", "FRA", "CDG", "NRT", "SIN", "SYD", "GRU"]
CELL = "SELECT city, count(*) AS n, avg(age) AS avg_age FROM users WHERE age >= :min_age GROUP BY city ORDER BY city"

REQUEST_TYPES = {"colo": "JSON", "country": "JSON", "cpuTime": "BIGINT", "method": "JSON", "outcome": "VARCHAR",
                 "requestId": "JSON", "scriptName": "VARCHAR", "status": "JSON", "timestamp": "TIMESTAMPTZ",
                 "url": "JSON", "wallTime": "BIGINT"}
ERROR_TYPES = {"colo": "JSON", "exceptionMessage": "JSON", "exceptionName": "JSON", "outcome": "VARCHAR",
               "scriptName": "VARCHAR", "timestamp": "TIMESTAMPTZ", "url": "JSON"}
LOG_TYPES = {"eventTimestamp": "TIMESTAMPTZ", "level": "JSON", "message": "JSON", "outcome": "VARCHAR",
             "scriptName": "VARCHAR", "timestamp": "JSON"}


# -- the magic ---------------------------------------------------------------------------------


def _magic_setup() -> dict[str, Any]:
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    from parquedb_ibis.magic import compile_sql, load_ipython_extension

    root = Path(tempfile.mkdtemp(prefix="bench-magic-"))
    db = connect(str(root), flush_age=None)
    cities = ["Paris", "Oslo", "Lima", "Kyoto", "Accra"]
    db.collection("users", {"name": "string!", "age": "int"}).insert_many(
        [{"name": f"user{i}", "age": i % 90, "city": cities[i % 5]} for i in range(MAGIC_ROWS)])
    db.checkpoint()
    config = Config()
    config.HistoryAccessor.enabled = False
    shell = InteractiveShell(config=config)
    load_ipython_extension(shell)
    shell.user_ns["min_age"] = 30
    with redirect_stdout(io.StringIO()):
        shell.run_line_magic("parquedb", f"connect {root} flush_age=none")
    magics = shell.magics_manager.registry["ParqueDBMagics"]
    compiled = compile_sql(magics.db, CELL.replace(":min_age", "$1"), [30])
    return {"root": root, "db": db, "shell": shell, "magics": magics, "sql": compiled.runnable.sql("duckdb"),
            "params": compiled.params, "times": {"duckdb": [], "magic": []}}


def _duckdb_direct(state: dict[str, Any]) -> int:
    start = time.perf_counter()
    with state["magics"].db.session() as con:
        table = con.execute(state["sql"], state["params"]).to_arrow_table()
    state["times"]["duckdb"].append(time.perf_counter() - start)
    return table.num_rows


def _magic_cell(state: dict[str, Any]) -> int:
    start = time.perf_counter()
    result = state["shell"].run_cell_magic("parquedb", "--format arrow", CELL)
    state["times"]["magic"].append(time.perf_counter() - start)
    return len(result)


def _magic_notes(state: dict[str, Any]) -> str:
    times = state["times"]
    overhead = (statistics.median(times["magic"]) - statistics.median(times["duckdb"])) * 1000
    return f"magic overhead per cell: {overhead:.1f} ms (median, goal <= 10 ms) over a {MAGIC_ROWS:,}-document collection"


def _magic_teardown(state: dict[str, Any]) -> None:
    state["magics"].close()
    state["db"].close()
    state["shell"].clear_instance()
    shutil.rmtree(state["root"], ignore_errors=True)


# -- the dashboard -------------------------------------------------------------------------------


def _quoted(values: list[str]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


def _write_views(root: Path, n: int) -> dict[str, str]:
    """Parquet files shaped like the three tail views (JSON columns hold JSON text, as the views store them)."""
    con = duckdb.connect()
    con.execute("SELECT setseed(0.42)")
    paths = {name: str(root / f"{name}.parquet") for name in ("requests", "errors", "logs")}
    span_ms = 86_400_000
    con.execute(f"""
        CREATE TEMP TABLE r AS
        SELECT i,
               TIMESTAMPTZ '{START.isoformat()}' + to_milliseconds(CAST(i * {span_ms} / {n} AS BIGINT)) AS ts,
               {_quoted(SCRIPTS)}[1 + CAST(floor(pow(random(), 1.6) * {len(SCRIPTS)}) AS INT)] AS script,
               {_quoted(COLOS)}[1 + CAST(floor(random() * {len(COLOS)}) AS INT)] AS colo,
               random() AS u, random() AS v
        FROM range({n}) t(i)""")
    con.execute(f"""
        COPY (SELECT to_json(colo) AS colo, to_json(CASE WHEN colo IN ('IAD','EWR','ORD','DFW','LAX','SJC') THEN 'US'
                         WHEN colo IN ('LHR') THEN 'GB' ELSE 'XX' END) AS country,
                     CAST(1 + v * 20 AS BIGINT) AS cpuTime,
                     to_json(CASE WHEN u < 0.8 THEN 'GET' ELSE 'POST' END) AS method,
                     CASE WHEN u < 0.01 THEN 'exception' WHEN u > 0.995 THEN 'canceled' ELSE 'ok' END AS outcome,
                     to_json(printf('%016x-%s', i, colo)) AS requestId, script AS scriptName,
                     CASE WHEN u > 0.995 THEN NULL ELSE to_json(CASE WHEN u < 0.01 THEN 500 WHEN u < 0.03 THEN 503
                          WHEN u < 0.08 THEN 404 WHEN u < 0.12 THEN 304 ELSE 200 END) END AS status,
                     ts AS timestamp,
                     to_json(printf('https://%s.example.com/v1/items/%d', script, CAST(v * 5000 AS INT))) AS url,
                     CAST(5 + exp(3 + 1.2 * v) AS BIGINT) AS wallTime
              FROM r) TO '{paths["requests"]}' (FORMAT parquet)""")
    con.execute(f"""
        COPY (SELECT to_json(colo) AS colo, to_json('fetch failed') AS exceptionMessage, to_json('TypeError') AS exceptionName,
                     'exception' AS outcome, script AS scriptName, ts AS timestamp,
                     to_json(printf('https://%s.example.com/v1/items/%d', script, i % 5000)) AS url
              FROM r WHERE u < 0.01 OR u > 0.97) TO '{paths["errors"]}' (FORMAT parquet)""")
    con.execute(f"""
        COPY (SELECT ts AS eventTimestamp, to_json(CASE WHEN v < 0.1 THEN 'error' WHEN v < 0.3 THEN 'warn' ELSE 'info' END) AS level,
                     to_json([CASE WHEN v < 0.1 THEN 'upstream fetch failed:' ELSE 'served from' END,
                              CASE WHEN v < 0.5 THEN 'cache' ELSE 'origin' END]) AS message,
                     'ok' AS outcome, script AS scriptName, to_json(epoch_ms(ts)) AS timestamp
              FROM r) TO '{paths["logs"]}' (FORMAT parquet)""")
    con.close()
    return paths


def _source(path: str, types: dict[str, str]) -> d.Source:
    read = exp.Anonymous(this="read_parquet", expressions=[exp.Literal.string(path)])
    return d.Source(exp.select("*").from_(read), types)


def _dashboard_setup(filters: d.Filters) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    started = time.perf_counter()
    paths = _write_views(root, DASHBOARD_REQUESTS)
    written = time.perf_counter() - started
    sources = d.TailSources(_source(paths["requests"], REQUEST_TYPES), _source(paths["errors"], ERROR_TYPES),
                            _source(paths["logs"], LOG_TYPES))
    con = duckdb.connect()
    bucket = d.bucket_for(filters.start, filters.end)
    queries = [d.traffic_query(sources.requests, filters, bucket), d.status_query(sources.requests, filters),
               d.endpoints_query(sources.requests, filters), d.colos_query(sources.requests, filters),
               d.exceptions_query(sources.errors, filters), d.logs_query(sources.logs, filters)]
    if bucket != d.ALERT_STEP:
        queries.append(d.traffic_query(sources.requests, filters, d.ALERT_STEP))
    return {"root": root, "con": con, "sources": sources, "filters": filters, "setup_s": written,
            "sql": [q.sql("duckdb") for q in queries]}


def _panels_in_duckdb(state: dict[str, Any]) -> int:
    rows = 0
    for text in state["sql"]:
        rows += state["con"].execute(text).to_arrow_table().num_rows
    return DASHBOARD_REQUESTS


def _dashboard_refresh(state: dict[str, Any]) -> int:
    def run(query: exp.Expr):
        return state["con"].execute(query.sql("duckdb")).to_arrow_table().to_pandas()

    data = d.load_dashboard(run, state["sources"], state["filters"])
    for chart in (d.traffic_chart(data), d.latency_chart(data), d.status_chart(data), d.colo_chart(data)):
        d.chart_bundle(chart)
    state["alerts"] = len(data.alerts)
    return DASHBOARD_REQUESTS


def _dashboard_notes(state: dict[str, Any]) -> str:
    return (f"{DASHBOARD_REQUESTS:,} requests, ~{DASHBOARD_REQUESTS:,} log lines over 24 h, written in "
            f"{state['setup_s']:.1f} s; {state.get('alerts', 0)} alerts evaluated to fire")


def _dashboard_teardown(state: dict[str, Any]) -> None:
    state["con"].close()
    shutil.rmtree(state["root"], ignore_errors=True)


def cases() -> list[Case]:
    day = d.Filters(start=START, end=START + dt.timedelta(days=1))
    last_hour = d.Filters(start=START + dt.timedelta(hours=23), end=START + dt.timedelta(days=1), script="api-gateway")
    return [
        Case("magic", f"SQL cell, one bound variable, --format arrow ({MAGIC_ROWS:,} documents)", _magic_setup,
             _duckdb_direct, _magic_cell, baseline_label="DuckDB, same SQL", candidate_label="%%parquedb cell",
             goal="overhead <= 10 ms (see notes)", repeat=30, warmup=3, teardown=_magic_teardown, notes=_magic_notes,
             unit="rows"),
        Case("dashboard", f"full refresh, 24 h window ({DASHBOARD_REQUESTS:,} requests)", lambda: _dashboard_setup(day),
             _panels_in_duckdb, _dashboard_refresh, baseline_label="panel queries in DuckDB",
             candidate_label="load_dashboard + 4 charts", repeat=3, warmup=1, teardown=_dashboard_teardown,
             notes=_dashboard_notes, unit="requests"),
        Case("dashboard", f"script filter, last hour ({DASHBOARD_REQUESTS:,} requests)", lambda: _dashboard_setup(last_hour),
             _panels_in_duckdb, _dashboard_refresh, baseline_label="panel queries in DuckDB",
             candidate_label="load_dashboard + 4 charts", repeat=5, warmup=1, teardown=_dashboard_teardown,
             notes=_dashboard_notes, unit="requests"),
    ]
