"""The ``parquedb-ibis`` command: ingest tail events, compact raw files, refresh views, query, demo.

::

    wrangler tail my-worker --format json | parquedb-ibis ingest-tail ./data
    parquedb-ibis ingest-raw r2://logs-bucket --prefix raw-events/
    parquedb-ibis compact r2://logs-bucket --delete-raw
    parquedb-ibis refresh ./data --watch --interval 60
    parquedb-ibis query ./data "SELECT scriptName, count(*) FROM TailEvents GROUP BY 1"
    parquedb-ibis demo demo-data

Store credentials come from the environment (``R2_ACCOUNT_ID``,
``R2_ACCESS_KEY_ID``, ``R2_SECRET_ACCESS_KEY``; ``AWS_*`` for s3://) and are
never printed. An error we raise on purpose is one line on stderr and exit
code 2; usage errors also exit 2 (argparse).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from sqlglot import exp

from parquedb_ibis.errors import ParqueDBError, PreconditionFailedError

PROG = "parquedb-ibis"
#: Rows ``query`` prints unless ``--limit`` says otherwise.
DEFAULT_LIMIT = 50
#: Trace items per raw NDJSON file the demo writes (TailDO flushes at most 1000).
DEMO_FILE_ITEMS = 1_000


# -- entry point -------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 usage or ParqueDB error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except BrokenPipeError:  # the reader went away (``| head``): not an error
        sys.stdout = None  # type: ignore[assignment]
        return 0
    except (ParqueDBError, OSError) as err:
        message = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
        print(f"{PROG}: error: {message or type(err).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="ParqueDB collections, tail events and views on DuckDB.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(run=run)
        return p

    def store_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("store", help="store URL: a directory, s3://bucket/prefix or r2://bucket/prefix")
        p.add_argument("--endpoint", help="S3-compatible endpoint URL (default: from the environment)")
        p.add_argument("--region", help="region of an s3:// store")

    def ingest_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--collection", default="TailEvents", help="target collection (default: TailEvents)")
        p.add_argument("--dead-letter", metavar="PATH", help="append rejected lines to this JSON-lines file")
        p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="progress line on stderr (default: when stderr is a terminal)")

    p = command("ingest-tail", cmd_ingest_tail, "ingest `wrangler tail --format json` output into TailEvents")
    store_args(p)
    p.add_argument("file", nargs="?", default="-", help="JSON lines file, or - for stdin (default)")
    ingest_args(p)

    p = command("ingest-raw", cmd_ingest_raw, "ingest the tail pipeline's raw NDJSON files into TailEvents")
    store_args(p)
    p.add_argument("--prefix", default="raw-events/", help="where the raw files are (default: raw-events/)")
    ingest_args(p)

    p = command("compact", cmd_compact, "compact raw NDJSON files into WorkerLogs Parquet (logs/workers/...)")
    store_args(p)
    p.add_argument("--raw-prefix", default="raw-events/", help="where the raw files are (default: raw-events/)")
    p.add_argument("--out-prefix", default="logs/workers/", help="where the Parquet goes (default: logs/workers/)")
    p.add_argument("--delete-raw", action="store_true", help="delete raw files once compacted")
    p.add_argument("--dead-letter", metavar="PATH", help="append rejected lines to this JSON-lines file")

    p = command("refresh", cmd_refresh, "refresh materialized views (all, or the ones named)")
    store_args(p)
    p.add_argument("views", nargs="*", help="views to refresh (default: every view)")
    p.add_argument("--full", action="store_true", help="recompute from scratch instead of incrementally")
    p.add_argument("--watch", action="store_true",
                   help="keep refreshing: due scheduled views and streaming views behind their sources")
    p.add_argument("--interval", type=float, default=60.0, metavar="S", help="seconds between --watch rounds (60)")
    p.add_argument("--stop-after", type=float, metavar="S", help="stop --watch after this many seconds")

    p = command("query", cmd_query, "run a read-only SQL query over the collections and views")
    store_args(p)
    p.add_argument("sql", help="the query, e.g. \"SELECT scriptName, count(*) FROM TailEvents GROUP BY 1\"")
    p.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help=f"rows to print (default {DEFAULT_LIMIT}; 0: all)")
    p.add_argument("--format", choices=("table", "json"), default="table", help="output format (default: table)")

    p = command("demo", cmd_demo, "generate sample tail events, ingest, compact, build views, print reports")
    p.add_argument("dir", nargs="?", default="demo-data", help="local directory for the demo store (default: demo-data)")
    p.add_argument("--events", type=int, default=20_000, help="trace items to generate (default: 20000)")
    p.add_argument("--seed", type=int, default=7, help="generator seed (default: 7)")
    return parser


def _connect(args: argparse.Namespace, **db_options: Any):
    from parquedb_ibis import connect

    options = {k: v for k, v in (("endpoint", args.endpoint), ("region", args.region)) if v}
    return connect(args.store, **options, **db_options)


def _open_store(args: argparse.Namespace):
    from parquedb_ibis.store import open_store

    options = {k: v for k, v in (("endpoint", args.endpoint), ("region", args.region)) if v}
    return open_store(args.store, **options)


def _progress(args: argparse.Namespace) -> bool:
    return sys.stderr.isatty() if args.progress is None else bool(args.progress)


def _report_rejections(errors: list[str], rejected: int, dead_letter: str | None) -> None:
    if not rejected:
        return
    where = f"; all written to {dead_letter}" if dead_letter else "; pass --dead-letter PATH to keep them"
    print(f"{rejected:,} rejected{where}. First reasons:", file=sys.stderr)
    for reason in errors[:5]:
        print(f"  {reason}", file=sys.stderr)


# -- commands ------------------------------------------------------------------------------------


def cmd_ingest_tail(args: argparse.Namespace) -> int:
    from parquedb_ibis.tail.ingest import ingest_jsonl

    db = _connect(args, flush_age=None)
    try:
        if args.file == "-":
            stream = getattr(sys.stdin, "buffer", sys.stdin)  # bytes: bad UTF-8 is replaced, not fatal
            result = ingest_jsonl(db, stream, collection=args.collection, dead_letter=args.dead_letter,
                                  progress=_progress(args), source="<stdin>")
        else:
            if not Path(args.file).is_file():
                raise FileNotFoundError(f"{args.file}: no such file")
            result = ingest_jsonl(db, args.file, collection=args.collection, dead_letter=args.dead_letter,
                                  progress=_progress(args))
        db.flush()
    finally:
        db.close()
    print(f"{args.collection}: {result.summary()}")
    _report_rejections(result.errors, result.rejected, args.dead_letter)
    return 0


def cmd_ingest_raw(args: argparse.Namespace) -> int:
    from parquedb_ibis.tail.ingest import ingest_raw

    db = _connect(args, flush_age=None)
    try:
        result = ingest_raw(db, prefix=args.prefix, collection=args.collection, dead_letter=args.dead_letter,
                            progress=_progress(args))
        db.flush()
    finally:
        db.close()
    print(f"{args.collection}: {result.summary()}")
    _report_rejections(result.errors, result.rejected, args.dead_letter)
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    from parquedb_ibis.tail.compact import compact

    result = compact(_open_store(args), raw_prefix=args.raw_prefix, out_prefix=args.out_prefix,
                     delete_raw=args.delete_raw, dead_letter=args.dead_letter)
    print(f"compact: {result.summary()}" + (f", {result.deleted:,} raw files deleted" if result.deleted else ""))
    _report_rejections(result.errors, result.rejected, args.dead_letter)
    return 0


def cmd_refresh(args: argparse.Namespace) -> int:
    db = _connect(args)
    try:
        if not hasattr(db, "refresh_view"):
            raise ParqueDBError("refresh: this build has no materialized views")
        names = args.views or db.list_views()
        if args.watch:
            from parquedb_ibis.views import watch

            def show(result: Any) -> None:
                if result.mode != "none":
                    stamp = dt.datetime.now(dt.timezone.utc).strftime("%H:%M:%S")
                    print(f"{stamp} {result.view}: {result.mode} refresh, {result.document_count:,} rows "
                          f"({result.duration_ms:,.0f} ms)", flush=True)

            for name in names:
                show(db.refresh_view(name, full=args.full))
            done = watch(db, args.interval, args.stop_after, on_refresh=show)
            print(f"watch: {done:,} refreshes")
            return 0
        rows = []
        for name in names:
            result = db.refresh_view(name, full=args.full)
            rows.append((result.view, result.mode, result.reason, result.document_count, round(result.duration_ms)))
        print(format_table(["view", "refresh", "reason", "rows", "ms"], rows) if rows else "no views defined")
    finally:
        db.close()
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    db = _connect(args)
    try:
        columns, rows = run_query(db, args.sql)
    finally:
        db.close()
    shown = rows if args.limit <= 0 else rows[: args.limit]
    if args.format == "json":
        for row in shown:
            print(json.dumps(dict(zip(columns, row, strict=True)), default=str, ensure_ascii=False))
    else:
        print(format_table(columns, shown))
        more = len(rows) - len(shown)
        print(f"({len(rows):,} rows" + (f"; {more:,} not shown, use --limit 0 to see all)" if more else ")"))
    return 0


def run_query(db: Any, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run ParqueDB SQL: through ``db.sql`` when the database has it, else translated and run on DuckDB.

    The fallback resolves names with :func:`parquedb_ibis.dialect.translate`
    (collections and views; dotted paths into variants) and runs the query
    over one temporary view per table it names.
    """
    if hasattr(db, "sql"):
        return _rows_of(db.sql(sql))
    from parquedb_ibis.dialect import TableInfo, translate

    tables: dict[str, TableInfo] = {name: TableInfo.from_schema(db.collection_schema(name))
                                    for name in db.list_collections()}
    for name in (db.list_views() if hasattr(db, "list_views") else ()):
        plan = db.view(name).plan
        tables[name] = TableInfo({c: plan.output_types[c] for c in plan.outputs}, has_data=plan.passthrough)
    tree = translate(sql, tables)
    used = sorted({t.name for t in tree.find_all(exp.Table)} & set(tables))
    relations = {name: db.relation(name) for name in used}  # before taking the session (views may refresh)
    with db.session() as con:
        for name, relation in relations.items():
            con.execute(exp.Create(
                this=exp.to_table(name, quoted=True), kind="VIEW", replace=True, expression=relation,
                properties=exp.Properties(expressions=[exp.TemporaryProperty()]),
            ).sql("duckdb"))
        cursor = con.execute(tree.sql("duckdb"))
        columns = [d[0] for d in cursor.description]
        return columns, cursor.fetchall()


def _rows_of(result: Any) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Columns and rows of whatever ``db.sql`` returns (Arrow table, DuckDB relation, rows of dicts)."""
    if hasattr(result, "to_arrow_table"):
        result = result.to_arrow_table()
    if hasattr(result, "column_names") and hasattr(result, "to_pylist"):
        columns = list(result.column_names)
        return columns, [tuple(row[c] for c in columns) for row in result.to_pylist()]
    if hasattr(result, "columns") and hasattr(result, "fetchall"):
        return list(result.columns), result.fetchall()
    rows = list(result)
    columns = list(rows[0]) if rows and isinstance(rows[0], dict) else []
    return columns, [tuple(r[c] for c in columns) if isinstance(r, dict) else tuple(r) for r in rows]


# -- the demo ---------------------------------------------------------------------------------------

_ERROR_RATE_SQL = """
SELECT scriptName AS worker,
       count(*) AS requests,
       round(100.0 * avg(CASE WHEN TRY_CAST(status AS INTEGER) >= 500 THEN 1 ELSE 0 END), 2) AS "5xx %",
       round(100.0 * avg(CASE WHEN TRY_CAST(status AS INTEGER) BETWEEN 400 AND 499 THEN 1 ELSE 0 END), 2) AS "4xx %",
       round(100.0 * avg(CASE WHEN outcome <> 'ok' THEN 1 ELSE 0 END), 2) AS "failed %",
       CAST(round(quantile_cont(wallTime, 0.95)) AS BIGINT) AS "p95 wall ms"
FROM "WorkerRequests"
GROUP BY 1
ORDER BY "5xx %" + "failed %" DESC, worker
"""

_TOP_ENDPOINTS_SQL = """
WITH r AS (
    SELECT scriptName, method ->> '$' AS method,
           regexp_replace(regexp_replace(regexp_replace(regexp_extract(url ->> '$', '^https?://[^/]+(/[^?#]*)', 1),
               '/([0-9]+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{8,})([.][a-z0-9]+)?(/|$)',
               '/:id\\2\\3', 'g'),
               '/([0-9]+|[0-9a-f]{8,})(/|$)', '/:id\\2', 'g'),
               '=[0-9]+', '=:n', 'g') AS route,
           TRY_CAST(status AS INTEGER) AS status, wallTime
    FROM "WorkerRequests"
)
SELECT scriptName AS worker, method, route, count(*) AS requests,
       round(100.0 * avg(CASE WHEN status >= 500 THEN 1 ELSE 0 END), 2) AS "5xx %",
       CAST(round(avg(wallTime)) AS BIGINT) AS "avg wall ms"
FROM r
GROUP BY ALL
ORDER BY requests DESC, worker, route
LIMIT 10
"""

_RECENT_EXCEPTIONS_SQL = """
SELECT strftime("timestamp", '%Y-%m-%d %H:%M:%S') AS "time (UTC)", scriptName AS worker, outcome,
       coalesce(exceptionName ->> '$', '-') AS exception,
       left(coalesce(exceptionMessage ->> '$', ''), 60) AS message
FROM "WorkerErrors"
ORDER BY "timestamp" DESC, worker
LIMIT 10
"""

_LOG_LEVELS_SQL = """
SELECT level, count(*) AS "log rows", count(DISTINCT traceId) AS traces,
       min("timestamp") AS first, max("timestamp") AS last
FROM read_parquet($files, hive_partitioning = true)
GROUP BY level
ORDER BY "log rows" DESC
"""


def cmd_demo(args: argparse.Namespace) -> int:
    """The demo on the embedded local store; re-running reuses the directory and adds nothing."""
    run_demo(args.dir, events=args.events, seed=args.seed, out=sys.stdout)
    return 0


def run_demo(directory: str | Path, *, events: int = 20_000, seed: int = 7, out: IO[str] = sys.stdout) -> None:
    from parquedb_ibis import connect
    from parquedb_ibis.tail.compact import compact, compacted_files
    from parquedb_ibis.tail.ingest import TAIL_EVENTS, ingest_raw, install_views

    if events <= 0:
        raise ParqueDBError(f"demo: --events must be positive, found {events}")
    started = time.monotonic()
    root = Path(directory)
    db = connect(str(root), flush_age=None)
    say = out.write
    try:
        say(f"ParqueDB tail demo in {root.resolve()}\n\n")
        written = write_demo_raw_files(db.store, events, seed)
        say(f"1. raw NDJSON: {written.get('files', 0):,} files ({written.get('new', 0):,} new) under raw-events/, "
            f"like upstream TailDO writes them\n")
        ingested = ingest_raw(db, progress=sys.stderr.isatty())
        db.flush()
        say(f"2. ingest-raw -> {TAIL_EVENTS}: {ingested.summary()}\n")
        compacted = compact(db.store)
        say(f"3. compact -> logs/workers/: {compacted.summary()}\n")
        defined = install_views(db)
        for name in db.list_views():
            db.refresh_view(name)
        say(f"4. views: {len(db.list_views())} defined ({len(defined)} new), all refreshed\n")
        total = db.collection(TAIL_EVENTS).count()
        say(f"   {TAIL_EVENTS} holds {total:,} trace items\n\n")

        tables = {name: db.relation(name) for name in ("WorkerRequests", "WorkerErrors")}
        files = [db.store.url_for(k) for k in compacted_files(db.store)]
        with db.session() as con:
            for name, relation in tables.items():
                con.execute(exp.Create(
                    this=exp.to_table(name, quoted=True), kind="VIEW", replace=True, expression=relation,
                    properties=exp.Properties(expressions=[exp.TemporaryProperty()]),
                ).sql("duckdb"))
            sections = [
                ("Error rate by worker (WorkerRequests view)", _ERROR_RATE_SQL, None),
                ("Top endpoints (WorkerRequests view, ids folded into :id)", _TOP_ENDPOINTS_SQL, None),
                ("Recent exceptions (WorkerErrors view)", _RECENT_EXCEPTIONS_SQL, None),
            ]
            if files:
                sections.append(("Log lines by level (compacted WorkerLogs Parquet)", _LOG_LEVELS_SQL, {"files": files}))
            rendered = []
            for title, sql, params in sections:
                cursor = con.execute(sql, params)
                rendered.append((title, [d[0] for d in cursor.description], cursor.fetchall()))
        for title, columns, rows in rendered:
            say(f"{title}\n{format_table(columns, rows)}\n\n")
        say(f"Done in {time.monotonic() - started:.1f} s. Next steps:\n"
            f"  make lab                       open the notebooks on this data (PARQUEDB_URL={root})\n"
            f"  make test                      run the test suite\n"
            f"  {PROG} query {root} \"SELECT outcome, count(*) FROM TailEvents GROUP BY 1\"\n"
            f"  wrangler tail <worker> --format json | {PROG} ingest-tail {root}\n")
    finally:
        db.close()


def write_demo_raw_files(store: Any, events: int, seed: int) -> dict[str, int]:
    """Write ``events`` sample items as upstream-style raw NDJSON files (deterministic names and bytes)."""
    from parquedb_ibis.tail.sample import iter_trace_items

    do_id = f"{seed:064x}"[-64:]
    files = new = 0
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal files, new
        first = batch[0]["eventTimestamp"]
        header = {"doId": do_id, "createdAt": batch[-1]["eventTimestamp"], "batchSeq": files}
        body = "\n".join([json.dumps(header), *(json.dumps(item, separators=(",", ":")) for item in batch)])
        key = f"raw-events/{first}-{do_id}-{files}.ndjson"
        if store.head(key) is None:
            try:
                store.put_if_absent(key, body.encode())
                new += 1
            except PreconditionFailedError:
                pass  # written meanwhile by another run: keep it
        files += 1
        batch.clear()

    for item in iter_trace_items(events, seed=seed):
        batch.append(item)
        if len(batch) == DEMO_FILE_ITEMS:
            flush()
    if batch:
        flush()
    return {"files": files, "new": new}


# -- plain text tables -------------------------------------------------------------------------------


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An aligned plain-text table: numbers right-aligned, everything else left; ``(no rows)`` when empty.

    >>> print(format_table(["worker", "requests"], [("api", 1200), ("auth", 75)]))
    worker  requests
    ------  --------
    api        1,200
    auth          75
    """
    cells = [[_cell(v) for v in row] for row in rows]
    numeric = [all(_is_number(row[i]) for row in rows if row[i] is not None) and any(row[i] is not None for row in rows)
               for i in range(len(columns))]
    widths = [max([len(str(c)), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    out = [line([str(c) for c in columns]), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    if not rows:
        out.append("(no rows)")
    return "\n".join(out)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:,.2f}" if abs(value) >= 0.01 or value == 0 else f"{value:.2g}"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


if __name__ == "__main__":
    sys.exit(main())
