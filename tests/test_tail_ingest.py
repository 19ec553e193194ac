"""Tail-event ingestion (parquedb_ibis.tail.ingest): sources, timestamps, dedupe, dead letters, raw files."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json

import pytest

import parquedb_ibis
from parquedb_ibis.errors import ObjectNotFoundError, ValidationError
from parquedb_ibis.tail import (
    TAIL_EVENTS,
    TailEvents,
    ingest,
    ingest_jsonl,
    ingest_raw,
    ingest_raw_file,
    install_views,
    trace_id,
    trace_key,
)
from parquedb_ibis.tail.ingest import normalize_item, to_epoch_ms
from parquedb_ibis.tail.sample import generate_trace_items
from conftest import store_options

UTC = dt.timezone.utc


def make_items(n: int = 120, seed: int = 3) -> list[dict]:
    """Sample items with distinct trace keys (the generator can emit two cron runs in one millisecond)."""
    seen, out = set(), []
    for item in generate_trace_items(n + 10, seed=seed):
        key = trace_id(normalize_item(item, "x"))
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out[:n]


def raw_text(items: list[dict], seq: int = 0) -> str:
    """A raw NDJSON file as upstream TailDO writes it: header line, one item per line, no trailing newline."""
    header = {"doId": "ab" * 32, "createdAt": items[0]["eventTimestamp"], "batchSeq": seq}
    return "\n".join([json.dumps(header), *(json.dumps(i) for i in items)])


@pytest.fixture
def db(tmp_path):
    database = parquedb_ibis.connect(str(tmp_path / "store"), flush_age=None)
    yield database
    database.close()


@pytest.fixture(scope="module")
def items() -> list[dict]:
    return make_items()


# -- a list of dicts --------------------------------------------------------------------------------


def test_list_ingest_writes_each_item_and_a_second_run_adds_nothing(db, items):
    first = ingest(db, items)
    assert (first.ingested, first.duplicates, first.rejected) == (len(items), 0, 0)
    second = ingest(db, items)
    assert (second.ingested, second.duplicates, second.rejected) == (0, len(items), 0)
    assert db.collection(TAIL_EVENTS).count() == len(items)


def test_documents_have_the_tail_events_schema_and_deterministic_ids(db, items):
    ingest(db, items[:5])
    coll = db.collection(TAIL_EVENTS)
    assert coll.schema.to_spec() == TailEvents
    doc = coll.get(trace_id(normalize_item(items[0], "x")))
    assert doc["$type"] == "TailEvent" and doc["scriptName"] == items[0]["scriptName"]
    assert doc["eventTimestamp"] == dt.datetime.fromtimestamp(items[0]["eventTimestamp"] / 1000, UTC)
    assert doc["event"] == items[0]["event"] and doc["cpuTime"] == items[0]["cpuTime"]


def test_duplicates_inside_one_batch_are_counted_once(db, items):
    result = ingest(db, [items[0], items[1], items[0], items[0]])
    assert (result.ingested, result.duplicates) == (2, 2)


def test_ms_and_iso_timestamps_become_aware_utc_datetimes(db):
    base = {"scriptName": "api", "outcome": "ok", "logs": [], "exceptions": []}
    result = ingest(db, [
        {**base, "eventTimestamp": 1735689600123, "event": {"request": {"url": "https://a/1", "method": "GET"}}},
        {**base, "eventTimestamp": "2025-01-01T02:00:00.5+02:00", "event": {"request": {"url": "https://a/2"}}},
        {**base, "eventTimestamp": "2025-01-01T00:00:01Z", "event": {"request": {"url": "https://a/3"}}},
        {**base, "eventTimestamp": 1735689602000.9, "event": {"request": {"url": "https://a/4"}}},
    ])
    assert result.ingested == 4
    got = sorted(d["eventTimestamp"] for d in db.collection(TAIL_EVENTS).find())
    assert got == [
        dt.datetime(2025, 1, 1, 0, 0, 0, 123000, UTC),
        dt.datetime(2025, 1, 1, 0, 0, 0, 500000, UTC),
        dt.datetime(2025, 1, 1, 0, 0, 1, tzinfo=UTC),
        dt.datetime(2025, 1, 1, 0, 0, 2, tzinfo=UTC),
    ]
    assert all(t.tzinfo is not None and t.utcoffset() == dt.timedelta(0) for t in got)


def test_the_same_event_in_ms_and_in_iso_is_one_event(db, items):
    item = items[0]
    iso = dt.datetime.fromtimestamp(item["eventTimestamp"] / 1000, UTC).isoformat()
    result = ingest(db, [item, {**item, "eventTimestamp": iso}])
    assert (result.ingested, result.duplicates) == (1, 1)


def test_trace_id_is_the_md5_of_the_documented_key():
    item = {"scriptName": "api", "outcome": "ok", "eventTimestamp": 1735689600000,
            "event": {"request": {"method": "GET", "url": "https://x/y", "headers": {"cf-ray": "abc-SJC"}}},
            "logs": [{"timestamp": "2025-01-01T00:00:00.010Z", "level": "log", "message": ["hi"]}],
            "exceptions": [], "cpuTime": 3}
    key = trace_key(normalize_item(item, "x"))
    assert key.split("\x1f") == ["api", "1735689600000", "ok", "GET", "https://x/y", "abc-SJC", "", "", "", "1735689600010",
                                 "", "1", "0"]
    assert trace_id(normalize_item(item, "x")) == hashlib.md5(key.encode(), usedforsecurity=False).hexdigest()
    assert trace_id(normalize_item({**item, "cpuTime": 9, "wallTime": 40}, "x")) == trace_id(normalize_item(item, "x"))


def test_to_epoch_ms_rejects_what_is_not_a_time():
    assert to_epoch_ms("2025-01-01") == 1735689600000
    for bad in (True, "yesterday", float("nan"), [], 10**20):
        with pytest.raises(ValueError):
            to_epoch_ms(bad)


# -- rejected items -----------------------------------------------------------------------------------


def test_a_mixed_batch_keeps_every_valid_item_and_dead_letters_the_rest(db, items, tmp_path):
    good = items[:30]
    bad = [
        ["not", "an", "object"],
        {"scriptName": "api", "eventTimestamp": 1735689600000},  # no outcome
        {"scriptName": "api", "outcome": "ok", "eventTimestamp": "yesterday"},
        {"scriptName": "api", "outcome": "ok", "eventTimestamp": 1735689600000, "logs": "nope"},
        {"scriptName": 7, "outcome": "ok", "eventTimestamp": 1735689600000},
    ]
    mixed = good[:10] + bad[:2] + good[10:20] + bad[2:] + good[20:]
    letters = tmp_path / "dead.jsonl"
    result = ingest(db, mixed, dead_letter=letters)
    assert (result.ingested, result.duplicates, result.rejected) == (len(good), 0, len(bad))
    assert db.collection(TAIL_EVENTS).count() == len(good)
    records = [json.loads(line) for line in letters.read_text().splitlines()]
    assert [json.loads(r["text"]) for r in records] == bad
    reasons = [r["reason"] for r in records]
    assert "expected a JSON object, found array" in reasons[0]
    assert "field 'outcome': required field is missing" in reasons[1]
    assert "field 'eventTimestamp'" in reasons[2] and "'yesterday'" in reasons[2]
    assert "field 'logs': expected an array, found string" in reasons[3]
    assert "field 'scriptName'" in reasons[4]
    assert reasons == result.errors


def test_validation_errors_name_the_line_and_the_field(db):
    lines = [
        json.dumps({"scriptName": "a", "outcome": "ok", "eventTimestamp": 1735689600000}),
        "{not json",
        json.dumps({"scriptName": "a", "outcome": "ok", "eventTimestamp": "later"}),
        "",
        json.dumps({"scriptName": "a", "outcome": "ok", "eventTimestamp": 1735689600001, "truncated": "no"}),
    ]
    letters = io.StringIO()
    result = ingest_jsonl(db, lines, source="tail.jsonl", dead_letter=letters)
    assert (result.ingested, result.rejected) == (1, 3)
    assert result.errors[0].startswith("tail.jsonl line 2: invalid JSON")
    assert result.errors[1].startswith("tail.jsonl line 3, field 'eventTimestamp':")
    assert result.errors[2].startswith("tail.jsonl line 5, field 'truncated': expected a boolean")
    records = [json.loads(line) for line in letters.getvalue().splitlines()]
    assert [(r["source"], r["line"], r["text"]) for r in records] == [
        ("tail.jsonl", 2, "{not json"), ("tail.jsonl", 3, lines[2]), ("tail.jsonl", 5, lines[4])]


def test_normalize_item_raises_a_validation_error_with_the_field():
    with pytest.raises(ValidationError, match=r"^item 4, field 'eventTimestamp': required field is missing$"):
        normalize_item({"outcome": "ok"}, "item 4")


# -- wrangler tail output ------------------------------------------------------------------------------


def test_json_lines_file(db, items, tmp_path):
    path = tmp_path / "tail.jsonl"
    path.write_text("\n".join(json.dumps(i) for i in items[:40]) + "\n")
    assert ingest_jsonl(db, path).ingested == 40
    again = ingest_jsonl(db, str(path))
    assert (again.ingested, again.duplicates) == (0, 40)


def test_stdin_stream_of_pretty_printed_and_compact_objects(db, items):
    # wrangler prints JSON.stringify(event, null, 2): one object over many lines
    text = "\n".join(json.dumps(i, indent=2) for i in items[:20]) + "\n" + "\n".join(json.dumps(i) for i in items[20:30])
    stream = io.StringIO(text)
    result = ingest_jsonl(db, stream, source="<stdin>")
    assert (result.ingested, result.rejected) == (30, 0)


def test_an_unterminated_pretty_object_is_rejected_and_the_next_one_kept(db, items):
    broken = json.dumps(items[0], indent=2).splitlines()[:-3]
    text = "\n".join([*broken, *json.dumps(items[1], indent=2).splitlines()])
    result = ingest_jsonl(db, io.StringIO(text))
    assert (result.ingested, result.rejected) == (1, 1)
    assert result.errors[0].startswith("<lines> line")


def test_bytes_stream_and_top_level_arrays(db, items):
    stream = io.BytesIO((json.dumps(items[:3]) + "\n" + json.dumps(items[3])).encode())
    assert ingest_jsonl(db, stream).ingested == 4
    assert not stream.closed  # the caller's stream is left open


def test_progress_line_goes_to_the_given_stream(db, items):
    out = io.StringIO()
    ingest(db, items[:10], progress=out)
    assert "ingest: 10 read, 10 ingested, 0 duplicates, 0 rejected" in out.getvalue()
    assert out.getvalue().endswith("\n")


# -- raw NDJSON ---------------------------------------------------------------------------------------


def test_raw_file_skips_the_header_and_a_repeat_is_a_noop(db, items):
    key = "raw-events/1735689600000-abab-0.ndjson"
    db.store.put(key, raw_text(items[:50]).encode())
    first = ingest_raw_file(db, key)
    assert (first.ingested, first.rejected, first.files) == (50, 0, 1)
    again = ingest_raw_file(db, key)
    assert (again.ingested, again.duplicates, again.skipped_files, again.files) == (0, 0, 1, 0)
    forced = ingest_raw_file(db, key, force=True)
    assert (forced.ingested, forced.duplicates) == (0, 50)


def test_a_changed_raw_file_is_read_again_and_only_new_items_added(db, items):
    key = "raw-events/1735689600000-abab-0.ndjson"
    db.store.put(key, raw_text(items[:20]).encode())
    ingest_raw_file(db, key)
    db.store.put(key, raw_text(items[:25]).encode())
    result = ingest_raw_file(db, key)
    assert (result.ingested, result.duplicates) == (5, 20)


def test_raw_file_from_a_local_path(db, items, tmp_path):
    path = tmp_path / "1735689600000-abab-0.ndjson"
    path.write_text(raw_text(items[:10]))
    assert ingest_raw_file(db, path).ingested == 10
    assert ingest_raw_file(db, str(path)).duplicates == 10
    with pytest.raises(ObjectNotFoundError):
        ingest_raw_file(db, "raw-events/missing.ndjson")


def test_raw_prefix_ingest_reads_each_file_once(db, items):
    for n in range(3):
        db.store.put(f"raw-events/17356896{n:05d}-abab-{n}.ndjson", raw_text(items[n * 20:(n + 1) * 20], n).encode())
    db.store.put("raw-events/README.txt", b"not a raw file")
    first = ingest_raw(db)
    assert (first.ingested, first.files, first.skipped_files) == (60, 3, 0)
    second = ingest_raw(db)
    assert (second.ingested, second.files, second.skipped_files) == (0, 0, 3)


def test_bad_lines_of_a_raw_file_name_the_file_and_line(db, items, tmp_path):
    key = "raw-events/1735689600000-abab-0.ndjson"
    text = raw_text(items[:3]) + "\n{oops\n" + json.dumps(items[3])
    db.store.put(key, text.encode())
    letters = tmp_path / "dead.jsonl"
    result = ingest_raw_file(db, key, dead_letter=letters)
    assert (result.ingested, result.rejected) == (4, 1)
    (record,) = [json.loads(line) for line in letters.read_text().splitlines()]
    assert (record["source"], record["line"], record["text"]) == (key, 5, "{oops")


# -- collections and views -------------------------------------------------------------------------------


def test_an_existing_collection_with_upstreams_schema_is_used_as_it_is(db, items):
    from parquedb_ibis.views.seeds import TAIL_EVENTS_SCHEMA as UPSTREAM

    db.collection(TAIL_EVENTS, UPSTREAM).create(
        {**normalize_item(items[0], "x"), "eventTimestamp": dt.datetime(2025, 1, 1, tzinfo=UTC)})
    db.flush()
    result = ingest(db, items[1:6])
    assert result.ingested == 5
    doc = db.collection(TAIL_EVENTS).get(trace_id(normalize_item(items[1], "x")))
    assert doc["cpuTime"] == items[1]["cpuTime"]  # undeclared there: kept in $data


def test_install_views_defines_the_tail_views_over_the_ingested_events(db, items):
    ingest(db, items)
    defined = install_views(db)
    assert {"WorkerLogs", "WorkerErrors", "WorkerRequests", "EndpointMetrics"} <= set(defined)
    assert install_views(db) == []
    requests = [i for i in items if "request" in i["event"]]
    assert db.view("WorkerRequests").count() == len(requests)
    assert db.view("WorkerLogs").count() == sum(len(i["logs"]) for i in items)


# -- through the S3 test server ---------------------------------------------------------------------------


@pytest.mark.s3
def test_ingest_through_the_s3_test_server(s3, items):
    db = parquedb_ibis.connect("s3://pqdb-test/tail", flush_age=None, **store_options(s3))
    try:
        assert ingest(db, items[:40]).ingested == 40
        key = "raw-events/1735689600000-abab-0.ndjson"
        db.store.put(key, raw_text(items[30:60]).encode())
        raw = ingest_raw_file(db, key)
        assert (raw.ingested, raw.duplicates) == (20, 10)
        assert ingest_raw(db).skipped_files == 1
        assert db.collection(TAIL_EVENTS).count() == 60
    finally:
        db.close()


@pytest.mark.parametrize("text", [
    '{"outcome": "ok", "eventTimestamp": 1735689600000, "logs": [{"message": ["ü", 1.5, -0, null]}]}',
    '{"eventTimestamp": 123456789012345678901234567890}',  # wider than 64 bits: an int, as json reads it
    '{"a": -9223372036854775809, "b": 18446744073709551616, "c": [9999999999999999999]}',  # just past orjson's ints
    '{"cpuTime": NaN, "wallTime": Infinity}',
    '"plain"',
])
def test_fast_json_reader_returns_what_json_loads_returns(text):
    from parquedb_ibis.tail.ingest import _loads

    got, want = _loads(text), json.loads(text)
    assert repr(got) == repr(want) and type(got) is type(want)


def test_fast_json_reader_raises_json_loads_error_message():
    from parquedb_ibis.tail.ingest import _loads

    with pytest.raises(json.JSONDecodeError, match="Expecting property name enclosed in double quotes"):
        _loads("{bad")
