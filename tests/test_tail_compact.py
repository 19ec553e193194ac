"""Compaction of raw tail NDJSON into WorkerLogs Parquet (parquedb_ibis.tail.compact)."""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import store_options
from parquedb_ibis.store import connect_duckdb, open_store
from parquedb_ibis.tail import WORKER_LOGS_SCHEMA, compact, compacted_files, handle_notification, trace_id
from parquedb_ibis.tail.compact import parse_notification
from parquedb_ibis.tail.ingest import normalize_item
from parquedb_ibis.tail.ingest import to_epoch_ms as ingest_to_ms
from parquedb_ibis.tail.sample import generate_trace_items

UTC = dt.timezone.utc
HOUR = 3_600_000
T0 = 1735689600000  # 2025-01-01T00:00:00Z


def raw_text(items: list[dict], seq: int = 0) -> str:
    header = {"doId": "ab" * 32, "createdAt": T0, "batchSeq": seq}
    return "\n".join([json.dumps(header), *(json.dumps(i) for i in items)])


def raw_key(ms: int, seq: int = 0) -> str:
    return f"raw-events/{ms}-{'ab' * 32}-{seq}.ndjson"


def expected_rows(items: list[dict]) -> int:
    return sum(max(1, len(i["logs"]) + len(i["exceptions"])) for i in items)


def read_rows(store, keys: list[str] | None = None) -> pa.Table:
    keys = compacted_files(store) if keys is None else keys
    return pa.concat_tables([pq.read_table(io.BytesIO(store.get(k))) for k in keys]) if keys else WORKER_LOGS_SCHEMA.empty_table()


@pytest.fixture
def store(tmp_path):
    return open_store(str(tmp_path / "store"))


@pytest.fixture(scope="module")
def items() -> list[dict]:
    """Three hours of sample traffic."""
    return generate_trace_items(300, seed=5, span=dt.timedelta(hours=3))


def put_raw(store, items: list[dict], files: int = 3) -> list[str]:
    keys = []
    size = -(-len(items) // files)
    for seq in range(files):
        chunk = items[seq * size:(seq + 1) * size]
        key = raw_key(chunk[0]["eventTimestamp"], seq)
        store.put(key, raw_text(chunk, seq).encode())
        keys.append(key)
    return keys


# -- layout and columns -------------------------------------------------------------------------------


def test_rows_are_partitioned_by_event_hour(store, items):
    store.put(raw_key(T0), raw_text(items).encode())  # one raw file spanning three hours
    result = compact(store)
    assert (result.files, result.items, result.rows) == (1, len(items), expected_rows(items))
    hours = set()
    for key in result.outputs:
        assert key.startswith("logs/workers/year=2025/month=01/day=01/hour=") and key.endswith(".parquet")
        hour = int(key.split("hour=")[1][:2])
        hours.add(hour)
        table = pq.read_table(io.BytesIO(store.get(key)))
        event_hours = {t.hour for t in table.column("eventTimestamp").to_pylist()}
        assert event_hours == {hour}
        ts = table.column("timestamp").cast(pa.int64()).to_pylist()
        assert ts == sorted(ts)
    assert hours == {0, 1, 2}


def test_timestamps_are_real_int64_timestamp_columns(store, items):
    put_raw(store, items)
    key = compact(store).outputs[0]
    meta = pq.ParquetFile(io.BytesIO(store.get(key))).schema
    for name in ("eventTimestamp", "timestamp"):
        column = meta.column(meta.names.index(name))
        assert column.physical_type == "INT64"
        logical = json.loads(column.logical_type.to_json())
        assert (logical["Type"], logical["isAdjustedToUTC"], logical["timeUnit"]) == ("Timestamp", True, "milliseconds")
    con = connect_duckdb(None)
    root = store.url_for("logs")
    (kind, low, year), = con.execute(
        "SELECT typeof(min(eventTimestamp)), min(eventTimestamp), any_value(year) "
        "FROM read_parquet(?, hive_partitioning = true)", [root + "/workers/**/*.parquet"]).fetchall()
    assert kind == "TIMESTAMP WITH TIME ZONE" and low == dt.datetime.fromtimestamp(items[0]["eventTimestamp"] / 1000, UTC)
    assert year == 2025


def test_one_row_per_log_per_exception_or_one_synthetic_row(store):
    base = {"scriptName": "api", "eventTimestamp": T0 + 5, "event": {"request": {
        "url": "https://a/x", "method": "POST", "headers": {"cf-ray": "r1-SJC"}, "cf": {"colo": "SJC", "country": "US"}},
        "response": {"status": 503}}, "diagnosticsChannelEvents": [{}, {}]}
    traces = [
        {**base, "outcome": "ok", "logs": [{"timestamp": T0 + 6, "level": "warn", "message": ["slow", {"ms": 9}]},
                                           {"timestamp": T0 + 7, "level": "info", "message": "plain"}], "exceptions": []},
        {**base, "outcome": "exception", "eventTimestamp": T0 + 10, "logs": [],
         "exceptions": [{"name": "TypeError", "message": "boom", "timestamp": T0 + 11}]},
        {**base, "outcome": "canceled", "eventTimestamp": T0 + 20, "logs": [], "exceptions": []},
        {"scriptName": None, "outcome": "ok", "eventTimestamp": "2025-01-01T00:00:00.030Z", "event": None,
         "logs": [], "exceptions": [], "diagnosticsChannelEvents": []},
    ]
    store.put(raw_key(T0), raw_text(traces).encode())
    rows = read_rows(store, compact(store).outputs).to_pylist()
    by_message = {r["message"]: r for r in rows}
    assert len(rows) == 5
    assert by_message['["slow",{"ms":9}]']["level"] == "warn"
    assert by_message["plain"]["timestamp"] == dt.datetime(2025, 1, 1, 0, 0, 0, 7000, UTC)
    exc = by_message["TypeError: boom"]
    assert (exc["level"], exc["isException"], exc["exceptionName"], exc["outcome"]) == ("error", True, "TypeError", "exception")
    synthetic = by_message["Worker execution: canceled"]
    assert (synthetic["level"], synthetic["timestamp"], synthetic["isException"]) == (
        "error", dt.datetime(2025, 1, 1, 0, 0, 0, 20000, UTC), False)
    assert (synthetic["httpMethod"], synthetic["httpUrl"], synthetic["httpStatus"], synthetic["colo"],
            synthetic["country"], synthetic["requestId"], synthetic["fetchCount"]) == (
        "POST", "https://a/x", 503, "SJC", "US", "r1-SJC", 2)
    unknown = by_message["Worker execution: ok"]
    assert (unknown["scriptName"], unknown["level"], unknown["httpStatus"]) == ("unknown", "info", None)
    assert unknown["eventTimestamp"] == dt.datetime(2025, 1, 1, 0, 0, 0, 30000, UTC)


def test_trace_ids_are_the_ids_ingest_gives_the_same_events(store, items):
    put_raw(store, items)
    table = read_rows(store, compact(store).outputs)
    assert set(table.column("traceId").to_pylist()) == {trace_id(normalize_item(i, "x")) for i in items}
    ids = table.column("id").to_pylist()
    assert len(ids) == len(set(ids))


def test_items_without_an_event_timestamp_take_the_files_time(store):
    store.put(raw_key(T0 + 5 * HOUR), raw_text([{"scriptName": "a", "outcome": "ok", "eventTimestamp": None}]).encode())
    (key,) = compact(store).outputs
    assert "/hour=05/" in key


# -- idempotence and concurrency -------------------------------------------------------------------------


def test_a_second_run_is_a_noop(store, items):
    put_raw(store, items)
    first = compact(store)
    second = compact(store)
    assert (first.files, second.files, second.skipped, second.outputs) == (3, 0, 3, [])
    assert read_rows(store).num_rows == expected_rows(items)


def test_new_raw_files_are_picked_up_by_the_next_run(store, items):
    store.put(raw_key(T0, 0), raw_text(items[:100]).encode())
    compact(store)
    store.put(raw_key(T0 + HOUR, 1), raw_text(items[100:], 1).encode())
    second = compact(store)
    assert (second.files, second.skipped) == (1, 1)
    assert read_rows(store).num_rows == expected_rows(items)


def test_concurrent_compactors_produce_each_row_once(store, items):
    keys = put_raw(store, items, files=6)
    barrier = threading.Barrier(4)
    results = []

    def run():
        barrier.wait()
        results.append(compact(open_store(store.config)))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.files for r in results) == len(keys)
    table = read_rows(store)
    assert table.num_rows == expected_rows(items)
    assert len(set(table.column("id").to_pylist())) == table.num_rows
    on_disk = sorted(i.key for i in store.list("logs/workers/") if i.key.endswith(".parquet"))
    assert on_disk == compacted_files(store)  # the losers deleted what they wrote


def test_a_crashed_batch_is_cleaned_up_by_a_later_run(store, items):
    put_raw(store, items[:50], files=1)
    orphan = "logs/workers/year=2025/month=01/day=01/hour=00/logs-1-deadbeef-0.parquet"
    store.put(orphan, b"half a file")
    store.put("logs/workers/_compaction/pending/deadbeef.json", json.dumps({
        "batch": "deadbeef", "outputs": {"2025-01-01T00": [orphan]}, "at": "2025-01-01T00:00:00+00:00"}).encode())
    result = compact(store)
    assert (result.recovered, result.files) == (1, 1)
    assert store.head(orphan) is None
    assert not list(store.list("logs/workers/_compaction/pending/"))


# -- bad lines -------------------------------------------------------------------------------------------


def test_bad_lines_are_dead_lettered_with_their_line_and_the_rest_kept(store, items, tmp_path):
    good = items[:20]
    lines = raw_text(good).split("\n")
    bad = ["{bad json", json.dumps({"outcome": 5, "eventTimestamp": T0}),
           json.dumps({"outcome": "ok", "eventTimestamp": T0, "logs": "x"})]
    text = "\n".join(lines[:6] + bad[:2] + lines[6:] + bad[2:])
    key = raw_key(T0)
    store.put(key, text.encode())
    letters = tmp_path / "dead.jsonl"
    result = compact(store, dead_letter=letters)
    assert (result.items, result.rows, result.rejected) == (20, expected_rows(good), 3)
    records = [json.loads(line) for line in letters.read_text().splitlines()]
    assert [(r["source"], r["line"], r["text"]) for r in records] == [(key, 7, bad[0]), (key, 8, bad[1]), (key, 24, bad[2])]
    assert "invalid JSON" in records[0]["reason"] and "field 'outcome'" in records[1]["reason"]
    assert compact(store, dead_letter=letters).rejected == 0  # committed: never reported twice


# -- raw files kept or deleted ------------------------------------------------------------------------------


def test_raw_files_are_kept_unless_delete_raw(store, items):
    keys = put_raw(store, items[:90])
    compact(store)
    assert all(store.head(k) for k in keys)
    more = raw_key(T0 + 2 * HOUR, 9)
    store.put(more, raw_text(items[90:120], 9).encode())
    result = compact(store, delete_raw=True)
    assert (result.files, result.deleted) == (1, 1)
    assert store.head(more) is None and all(store.head(k) for k in keys)


# -- the queue consumer ------------------------------------------------------------------------------------


def notification(key: str, event_type: str = "object-create", bucket: str = "logs") -> dict:
    return {"account": "acc", "bucket": bucket, "object": {"key": key, "size": 1, "eTag": '"e"'},
            "eventType": event_type, "eventTime": "2025-01-01T00:00:00Z"}


def test_notification_compacts_exactly_the_named_raw_file(store, items):
    first, second, _third = put_raw(store, items)
    result = handle_notification(store, notification(first))
    assert (result.files, result.items) == (1, 100)
    assert handle_notification(store, json.dumps(notification(first))).skipped == 1
    batch = handle_notification(store, [{"body": notification(second)}, notification(second)])
    assert (batch.files, batch.skipped) == (1, 0)
    rest = compact(store)
    assert (rest.files, rest.skipped) == (1, 2)
    assert read_rows(store).num_rows == expected_rows(items)


def test_notifications_for_deletes_other_prefixes_or_missing_objects_are_ignored(store, items):
    (key,) = put_raw(store, items[:10], files=1)
    result = handle_notification(store, [
        notification(key, "object-delete"), notification("other/x.ndjson"), notification("raw-events/gone.ndjson"),
        notification(key.replace(".ndjson", ".json")),
    ])
    assert (result.ignored, result.files) == (4, 0)


def test_parse_notification_reads_r2_and_upstream_shapes():
    note = parse_notification({"bucket": "b", "action": "PutObject", "object": {"key": "k", "size": 3, "eTag": "x"}})
    assert (note.key, note.creates, note.size, note.etag) == ("k", True, 3, "x")
    with pytest.raises(ValueError, match="object.key"):
        parse_notification({"eventType": "object-create", "object": {}})


# -- through the S3 test server ------------------------------------------------------------------------------


@pytest.mark.s3
def test_compaction_and_notifications_through_the_s3_test_server(s3, items):
    store = open_store("s3://pqdb-test/tail", **store_options(s3))
    first, *_rest = put_raw(store, items)
    one = handle_notification(store, notification("tail/" + first, bucket="pqdb-test"))
    assert one.files == 1
    assert handle_notification(store, notification(first, bucket="pqdb-test")).ignored == 1  # not under tail/
    rest = compact(store)
    assert (rest.files, rest.skipped) == (2, 1)
    assert compact(store).files == 0
    assert read_rows(store).num_rows == expected_rows(items)


# -- the rows, against a Python reference -----------------------------------------------------------------

#: Items that exercise every branch of the row and id SQL: ISO and fractional timestamps, missing and null
#: fields, messages of every JSON type, unnamed exceptions, cron and queue triggers, non-ASCII text.
EDGE_ITEMS: list[dict] = [
    {"scriptName": "", "outcome": "ok", "eventTimestamp": "2025-01-01T00:00:01.250Z", "event": None,
     "logs": [{"timestamp": "2025-01-01T00:00:01.500Z", "level": "info", "message": "iso log"},
              {"timestamp": T0 + 1600.9, "message": ["no level", 1, None, True, {"k": "v"}]},
              {"level": "warn", "message": {"nested": ["a", {"b": False}]}},
              {"timestamp": T0 + 1700, "level": "debug", "message": 42},
              {"timestamp": T0 + 1800, "level": "log", "message": None}],
     "exceptions": [], "diagnosticsChannelEvents": None},
    {"outcome": "exception", "eventTimestamp": T0 + 2000.75,
     "event": {"request": {"url": "https://é.example/ü?q=1&r=ß", "method": "PUT",
                           "headers": {"cf-ray": "ray-ü"}, "cf": {"colo": "NRT"}}, "response": {"status": 500}},
     "logs": [], "exceptions": [{"name": "Error", "message": "first", "timestamp": "2025-01-01T00:00:02.100Z"},
                                {"message": "unnamed", "timestamp": T0 + 2200},
                                {"name": "RangeError", "timestamp": T0 + 2300}, {"name": "NoTime", "message": "x"}],
     "diagnosticsChannelEvents": [{"channel": "fetch"}]},
    {"scriptName": "cron", "outcome": "exceededCpu", "eventTimestamp": T0 + 3000,
     "event": {"cron": "*/5 * * * *", "scheduledTime": "2025-01-01T00:00:03Z"}},
    {"scriptName": "queue", "outcome": "ok", "eventTimestamp": T0 + 4000,
     "event": {"queue": "jobs", "scheduledTime": T0 + 3999.5},
     "logs": [{"timestamp": T0 + 4001, "level": "error", "message": ["mixed", "ünïcode", 3]}],
     "exceptions": [{"name": "TypeError", "message": "after a log", "timestamp": T0 + 4002}]},
    {"scriptName": None, "outcome": "canceled", "eventTimestamp": T0 + 5000, "logs": None, "exceptions": None},
]


def reference_rows(item: dict, fallback_ms: int) -> list[tuple]:
    """The WorkerLogs rows of one item, computed in Python from the module docstring's rules."""
    norm = normalize_item(item, "ref", require_timestamp=False)
    trace = trace_id(norm)
    event_ms = norm["eventTimestamp"] if norm["eventTimestamp"] is not None else fallback_ms
    event = item.get("event") or {}
    request = event.get("request") or {}
    cf = request.get("cf") or {}
    common = (norm["scriptName"], event_ms, request.get("method"), request.get("url"),
              (event.get("response") or {}).get("status"), norm["outcome"], cf.get("colo"), cf.get("country"),
              (request.get("headers") or {}).get("cf-ray"), len(item.get("diagnosticsChannelEvents") or ()))

    def when(entry: dict) -> int:
        ts = entry.get("timestamp")
        if isinstance(ts, str):
            return ingest_to_ms(ts)
        return math.floor(ts) if ts is not None else event_ms

    def text(message):
        if message is None or isinstance(message, str):
            return message
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False)

    logs, exceptions = item.get("logs") or [], item.get("exceptions") or []
    rows = [(f"{trace}-{n}", trace, when(log), log.get("level") or "log", text(log.get("message")), False, None, *common)
            for n, log in enumerate(logs, start=1)]
    rows += [(f"{trace}-{len(logs) + n}", trace, when(exc), "error",
              f"{exc['name'] if exc.get('name') is not None else 'Error'}: {exc.get('message') or ''}", True, exc.get("name"),
              *common) for n, exc in enumerate(exceptions, start=1)]
    if not rows:
        rows = [(f"{trace}-0", trace, event_ms, "info" if norm["outcome"] == "ok" else "error",
                 f"Worker execution: {norm['outcome']}", False, None, *common)]
    return rows


def as_tuples(table: pa.Table) -> list[tuple]:
    names = ["id", "traceId", "timestamp", "level", "message", "isException", "exceptionName", "scriptName",
             "eventTimestamp", "httpMethod", "httpUrl", "httpStatus", "outcome", "colo", "country", "requestId", "fetchCount"]
    columns = [table.column(n).cast(pa.int64()) if n in ("timestamp", "eventTimestamp") else table.column(n) for n in names]
    return sorted(zip(*(c.to_pylist() for c in columns), strict=True), key=repr)


@pytest.mark.parametrize("source", ["sample", "edge"])
def test_rows_equal_the_python_reference(store, source):
    items = generate_trace_items(2_000, seed=11, span=dt.timedelta(hours=5)) if source == "sample" else EDGE_ITEMS
    keys = put_raw(store, items, files=4 if source == "sample" else 1)
    result = compact(store)
    assert (result.rejected, result.items) == (0, len(items))
    fallback = int(keys[0].split("/")[1].split("-")[0])  # only the edge items lack a timestamp, all in one file
    expected = sorted((row for item in items for row in reference_rows(item, fallback)), key=repr)
    got = as_tuples(read_rows(store, result.outputs))
    assert len(got) == len(expected)
    assert got == expected


def test_trace_ids_in_sql_equal_trace_key_md5_on_edge_items(store):
    """The SQL trace id is the MD5 of ingest.trace_key for every edge item (ingest's ids for the same events)."""
    put_raw(store, EDGE_ITEMS, files=1)
    table = read_rows(store, compact(store).outputs)
    want = {trace_id(normalize_item(i, "x", require_timestamp=False)) for i in EDGE_ITEMS}
    assert set(table.column("traceId").to_pylist()) == want
    assert len(want) == len(EDGE_ITEMS)

