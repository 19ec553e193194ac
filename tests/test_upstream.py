"""Reading what the TypeScript ParqueDB writes: every fixture family against upstream's own answers.

The fixtures in tests/fixtures/upstream/ were written by upstream code
(dot-do/parquedb @ 0ddcace); ``_ground-truth.*.json`` files hold what
upstream's ``find()`` returned, in extended JSON (see that directory's README).
"""

from __future__ import annotations

import base64
import collections
import datetime as dt
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import store_options
from parquedb_ibis.documents import parse_datetime
from parquedb_ibis.errors import UpstreamFormatError, ValidationError, ViewNotFoundError
from parquedb_ibis.store import open_store
from parquedb_ibis.upstream import Family, UpstreamEvent, open_upstream
from parquedb_ibis.upstream.layouts import classify
from parquedb_ibis.upstream.readers import fold_node, fold_worker_do, row_to_entity
from parquedb_ibis.upstream.timestamps import ulid_ms, unwrap_nearest, unwrap_not_after
from parquedb_ibis.upstream.vcodec import decode, decode_base64, encode, encode_base64, ms_to_datetime

FIXTURES = Path(__file__).parent / "fixtures" / "upstream"
UTC = dt.timezone.utc
FAMILY_DIRS = ("do-worker", "node-library", "node-core", "posts-native", "tail", "mv", "tail-pipeline")


# -- helpers ------------------------------------------------------------------------------


def from_extended_json(value):
    """Upstream's extended JSON: {"$date": ISO} -> datetime, {"$bigint"} -> int, {"$binary"} -> bytes."""
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, inner),) = value.items()
            if key == "$date":
                return parse_datetime(inner)
            if key == "$bigint":
                return int(inner)
            if key == "$binary":
                return base64.b64decode(inner)
        return {k: from_extended_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_extended_json(v) for v in value]
    return value


def ground_truth(path: str):
    return from_extended_json(json.loads((FIXTURES / path).read_text()))


def assert_same(got, want, path="$"):
    """Deep equality that also checks key order and value types (1 is not 1.0, True is not 1)."""
    if isinstance(want, dict):
        assert isinstance(got, dict), path
        assert list(got) == list(want), f"{path}: keys {list(got)} != {list(want)}"
        for key in want:
            assert_same(got[key], want[key], f"{path}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), path
        for index, (a, b) in enumerate(zip(got, want, strict=True)):
            assert_same(a, b, f"{path}[{index}]")
    else:
        assert type(got) is type(want) and got == want, f"{path}: {got!r} != {want!r}"


def listing(store) -> list[tuple[str, int, str]]:
    return [(o.key, o.size, o.etag) for o in store.list("")]


class ReadOnlyStore:
    """Wraps a store; any write raises, so a test proves the readers never write."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.config = inner.config

    def get(self, key, **kw):
        return self.inner.get(key, **kw)

    def get_blob(self, key):
        return self.inner.get_blob(key)

    def head(self, key):
        return self.inner.head(key)

    def list(self, prefix=""):
        return self.inner.list(prefix)

    def url_for(self, key):
        return self.inner.url_for(key)

    def _write(self, *args, **kwargs):
        raise AssertionError(f"the upstream reader tried to write: {args[:1]}")

    put = put_if_absent = put_if_match = delete = delete_many = _write


def copy_fixture(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(FIXTURES / name, target)
    return target


def read_everything(up) -> None:
    for ns in up.namespaces():
        up.documents(ns, include_deleted=True)
        up.events(ns)
        up.relationships(ns)
    up.worker_logs()
    up.worker_errors()


# -- layout detection -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, families, namespaces, logs, errors",
    [
        ("do-worker", (Family.WORKER_DO,), ["posts"], 0, 0),
        ("node-library", (Family.NODE,), ["posts"], 0, 0),
        ("node-core", (Family.NODE,), ["posts", "users"], 0, 0),
        ("posts-native", (Family.NATIVE,), ["posts"], 0, 0),
        ("tail", (Family.NODE,), ["tailevents"], 0, 0),
        ("mv", (Family.NATIVE,), ["tailevents"], 1, 1),
        ("tail-pipeline", (), [], 0, 0),
    ],
)
def test_layouts_detect_each_fixture_family(name, families, namespaces, logs, errors):
    up = open_upstream(FIXTURES / name)
    assert up.layouts.families == families
    assert up.namespaces() == namespaces
    assert (len(up.layouts.worker_logs), len(up.layouts.worker_errors)) == (logs, errors)


def test_layouts_describe_the_worker_do_files_of_a_namespace():
    (layout,) = open_upstream(FIXTURES / "do-worker").layouts.for_namespace("posts")
    assert layout.family == Family.WORKER_DO
    assert layout.event_files == ("data/posts/events/01M84NTBB500000061H6B06352.parquet",)
    assert layout.rel_event_files == ("rels/posts/events/01M84NTBBW00000038R8MAWT6G.parquet",)
    assert layout.pending_files == ("data/posts/pending/01M84NTB9R0000001PMED5MC27.parquet",)
    assert layout.snapshot == "posts.parquet"


def test_layouts_give_node_batches_in_numeric_seq_order_and_the_tail_prefix():
    tail = open_upstream(FIXTURES / "tail").layouts
    (layout,) = tail.namespaces
    seqs = [int(k.rsplit("-", 1)[1].split(".")[0]) for k in layout.event_files]
    assert seqs == sorted(seqs) and len(seqs) == 401 and layout.snapshot == "data.parquet"
    (logs,) = open_upstream(FIXTURES / "mv").layouts.worker_logs
    assert (logs.prefix, logs.kind, logs.flush_ms) == ("worker_logs/", "logs", 1795453284957)


def test_layouts_exclude_our_own_collections(tmp_path):
    root = copy_fixture("do-worker", tmp_path)
    shutil.copytree(FIXTURES / "posts-native" / "data" / "posts", root / "data" / "mine")
    assert open_upstream(root).namespaces() == ["mine", "posts"]
    (root / "data" / "posts" / "_head.json").write_text("{}")
    (root / "data" / "mine" / "_head.json").write_text("{}")
    layouts = open_upstream(root).layouts
    assert layouts.names() == [] and layouts.own_namespaces == ("mine", "posts")


def test_layouts_ignore_transient_and_unrelated_files(tmp_path):
    root = copy_fixture("do-worker", tmp_path)
    events = root / "data" / "posts" / "events"
    (events / "01M84NTBC000000000000000.parquet.tmp.1795453431999.ab12cd34ef").write_bytes(b"partial")
    (root / "_views").mkdir()
    (root / "_views" / "manifest.json").write_text("{}")
    (layout,) = open_upstream(root).layouts.namespaces
    assert len(layout.event_files) == 1


def test_root_parquet_without_snapshot_columns_is_not_a_namespace():
    assert not open_upstream(FIXTURES / "tail-pipeline").layouts


def test_layouts_put_family_a_files_in_checkpoint_ulid_order():
    keys = ["data/x/events/01M84NTBB500000061H6B06352.parquet", "data/x/events/01M84NTBA000000061H6B06352.parquet",
            "x.parquet"]
    (layout,) = classify(sorted(keys), reader=lambda key: pytest.fail(f"no read needed: {key}")).namespaces
    assert [k.rsplit("/", 1)[1][:10] for k in layout.event_files] == ["01M84NTBA0", "01M84NTBB5"]


def test_node_store_with_only_the_root_snapshot_reads_it(tmp_path):
    root = tmp_path / "store"
    root.mkdir()
    shutil.copy(FIXTURES / "node-core" / "data.parquet", root / "data.parquet")
    up = open_upstream(root)
    assert up.layouts.families == (Family.NODE,)
    (doc,) = up.documents("posts")
    assert doc["views"] == 2 and doc["updatedAt"] == dt.datetime(2026, 11, 23, 17, 3, 19, 649000, tzinfo=UTC)


# -- the "V" codec ---------------------------------------------------------------------------


def variant_cells():
    """Every base64 "V" cell in the fixtures: format-A $data and family-B event payloads."""
    paths = sorted(FIXTURES.glob("*/events/batch-*.parquet"))[:40] + sorted(FIXTURES.glob("*/data.parquet"))
    for path in paths + sorted(FIXTURES.glob("*/data/*/data.parquet")):
        table = pq.read_table(path)
        for column in ("$data", "before", "after", "metadata"):
            if column in table.column_names and pa.types.is_string(table.schema.field(column).type):
                yield from (v for v in table.column(column).to_pylist() if v)


def test_vcodec_decodes_a_format_a_data_cell():
    cell = pq.read_table(FIXTURES / "node-library" / "data.parquet").column("$data")[0].as_py()
    assert_same(decode_base64(cell), {
        "version": 2,
        "createdAt": "2026-02-17T11:24:41.000Z",  # format A stringifies dates before encoding
        "createdBy": "system/anonymous",
        "updatedAt": "2026-02-17T11:24:41.000Z",
        "updatedBy": "system/anonymous",
        "title": "Hello",
        "views": 4,
        "author": "users/u1",
    })


def test_vcodec_decodes_event_dates_as_datetimes_and_the_null_side():
    table = pq.read_table(FIXTURES / "node-core" / "events" / "batch-1795453399644-2.parquet")
    row = table.to_pylist()[0]
    after = decode_base64(row["after"])
    assert decode_base64(row["before"]) is None and row["before"] == "VgEA"
    assert after["createdAt"] == dt.datetime(2026, 11, 23, 17, 3, 19, 643000, tzinfo=UTC)
    assert list(after)[:4] == ["$type", "name", "title", "views"]


def test_vcodec_reencodes_every_fixture_cell_to_the_same_bytes():
    cells = list(variant_cells())
    assert len(cells) > 500
    for cell in cells:
        assert encode_base64(decode_base64(cell)) == cell


@given(st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text()
    | st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer())
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
))
def test_vcodec_round_trips_values(value):
    assert decode(encode(value)) == value


@pytest.mark.parametrize(
    "payload, problem",
    [
        (b"X\x01\x00", "not a ParqueDB variant"),
        (b"V\x02\x00", "unsupported variant version 2"),
        (b"V\x01\x10\x05ab", "runs past the end"),
        (b"V\x01\x09\x00\x00\x00\x00", "decimal tag 9"),
        (b"V\x01\x63", "unknown type tag 99"),
        (b"V\x01\x11\x02\x00", "unexpected end of data"),
    ],
)
def test_vcodec_rejects_malformed_payloads(payload, problem):
    with pytest.raises(UpstreamFormatError, match=problem):
        decode(payload, where="cell")


def test_vcodec_reads_large_integers_exactly_and_float64_integers_as_int():
    assert decode(encode(2**60)) == 2**60
    assert type(decode(encode(1735690099121))) is int  # written as float64, like a JS number
    assert decode(bytes([0x56, 1, 12, 1, 0, 0, 0])) == dt.datetime(1970, 1, 2, tzinfo=UTC)  # DATE tag: days


# -- timestamp repair ---------------------------------------------------------------------------


@pytest.mark.parametrize("true_ms", [1771327481000, 1735689600073, 1795453431046, 0, 2**31 - 1])
def test_unwrap_recovers_the_true_value_from_a_nearby_reference(true_ms):
    stored = (true_ms + 2**31) % 2**32 - 2**31  # what hyparquet-writer 0.12.0 leaves in an INT32
    assert unwrap_nearest(stored, true_ms + 2**30) == true_ms
    assert unwrap_nearest(stored, true_ms - 2**30) == true_ms
    assert unwrap_not_after(stored, true_ms) == true_ms
    assert unwrap_not_after(stored, true_ms + 2**32 - 1) == true_ms


def test_unwrap_keeps_values_that_were_not_wrapped():
    assert unwrap_nearest(1795453431046, 0) == 1795453431046
    assert unwrap_not_after(1771327481000, 0) == 1771327481000


def test_do_event_ts_is_repaired_from_the_event_ulid():
    events = open_upstream(FIXTURES / "do-worker").events("posts")
    assert len(events) == 9
    for event in events:
        assert event.stored_ts < 2**31 and event.ts_ms % 2**32 == event.stored_ts % 2**32
        assert 0 <= event.ts_ms - ulid_ms(event.id) <= 5  # ts is read right after the id's Date.now()
    assert events[0].ts == dt.datetime(2026, 11, 23, 17, 3, 51, 46000, tzinfo=UTC)


def test_do_created_at_from_the_repaired_ts_equals_the_snapshot():
    snapshot = json.loads(pq.read_table(FIXTURES / "do-worker" / "posts.parquet").column("$data")[0].as_py())
    (first, *_rest) = open_upstream(FIXTURES / "do-worker").events("posts")
    assert first.ts == parse_datetime(snapshot["createdAt"])


def test_relationship_event_ts_is_repaired_from_the_file_checkpoint():
    (link,) = open_upstream(FIXTURES / "do-worker").relationships("posts")
    flush = ulid_ms("01M84NTBBW00000038R8MAWT6G")
    created_ms = round(link["createdAt"].timestamp() * 1000)
    assert 0 <= flush - created_ms < 1000 and created_ms % 2**32 == 157101346
    assert link == {"from": "posts/Uk", "predicate": "author", "to": "users/u1", "createdAt": link["createdAt"],
                    "createdBy": "system/anonymous"}


def as_ms(column) -> list[int]:
    return column.cast(pa.int64()).to_pylist()


def expected_log_times() -> collections.Counter:
    """(eventTimestamp, timestamp) of every WorkerLogs row the 500 input traces produce (§8.2)."""
    expected = collections.Counter()
    for item in json.loads((FIXTURES / "tail" / "_inputs.trace-items.json").read_text()):
        own = [log["timestamp"] for log in item["logs"]] + [e["timestamp"] for e in item["exceptions"]]
        for ts in own or [item["eventTimestamp"]]:
            expected[(item["eventTimestamp"], ts)] += 1
    return expected


def test_worker_logs_timestamps_are_repaired_below_the_flush_time():
    table = open_upstream(FIXTURES / "mv").worker_logs()
    stored = pq.read_table(next(FIXTURES.glob("mv/worker_logs/**/*.parquet"))).column("eventTimestamp").to_pylist()
    flush = 1795453284957
    repaired = as_ms(table.column("eventTimestamp"))
    assert all(flush - 2**32 < ms <= flush and (ms - s) % 2**32 == 0 for ms, s in zip(repaired, stored, strict=True))


def test_worker_logs_with_a_reference_match_the_input_traces_exactly():
    # The fixture's traces are from 2025-01-01 but were flushed 2026-11-23, 692 days later: more than
    # 2**32 ms, so only a reference near the events (not the flush time) recovers them.
    table = open_upstream(FIXTURES / "mv").worker_logs(reference=dt.datetime(2025, 1, 1, tzinfo=UTC))
    got = collections.Counter(zip(as_ms(table.column("eventTimestamp")), as_ms(table.column("timestamp")), strict=True))
    assert got == expected_log_times() and table.num_rows == 989


def test_worker_logs_match_the_mv_stats_ground_truth():
    stats = ground_truth("mv/_ground-truth.worker_logs.stats.json")
    table = open_upstream(FIXTURES / "mv").worker_logs()
    assert table.num_rows == stats["recordsWritten"] == 989
    assert collections.Counter(table.column("level").to_pylist()) == stats["byLevel"]
    assert collections.Counter(table.column("scriptName").to_pylist()) == stats["byScript"]
    assert collections.Counter(table.column("outcome").to_pylist()) == {k: v for k, v in stats["byOutcome"].items() if v}
    assert sum(table.column("isException").to_pylist()) == stats["exceptions"]


def test_worker_errors_match_the_in_memory_ground_truth():
    truth = {e["id"]: e for e in ground_truth("mv/_ground-truth.worker_errors.in-memory.json")["errors"]}
    rows = open_upstream(FIXTURES / "mv").worker_errors(reference=dt.datetime(2025, 1, 1, tzinfo=UTC)).to_pylist()
    assert len(rows) == len(truth) == 254
    for row in rows:
        want = truth[row["id"]]
        assert round(row["ts"].timestamp() * 1000) == want["ts"]
        for key in ("category", "severity", "code", "message", "path", "method", "workerName", "colo"):
            assert row[key] == want.get(key), key
        assert (json.loads(row["metadata"]) if row["metadata"] else None) == want.get("metadata")


def test_worker_logs_since_until_filter_rows_and_skip_older_files():
    up = open_upstream(FIXTURES / "mv")
    reference = dt.datetime(2025, 1, 1, tzinfo=UTC)
    since, until = dt.datetime(2025, 1, 1, 0, 1, tzinfo=UTC), dt.datetime(2025, 1, 1, 0, 2, tzinfo=UTC)
    table = up.worker_logs(reference=reference, since=since, until=until)
    times = [t for t in table.column("eventTimestamp").to_pylist()]
    assert times and all(since <= t < until for t in times)
    assert up.worker_logs(since=dt.datetime(2027, 1, 1, tzinfo=UTC)).num_rows == 0


def test_a_log_file_without_a_flush_time_needs_a_reference():
    up = open_upstream(FIXTURES / "tail-pipeline")
    with pytest.raises(ValidationError, match="pass flush_ms= or reference="):
        up.read_log_file("logs-sample.parquet")
    (row,) = up.read_log_file("logs-sample.parquet", reference=dt.datetime(2026, 2, 17, tzinfo=UTC)).to_pylist()
    assert round(row["eventTimestamp"].timestamp() * 1000) == 1771327481000  # stored as 1800955048
    assert round(row["timestamp"].timestamp() * 1000) == 1771327481001
    assert (row["colo"], row["httpStatus"], row["fetchCount"]) == (None, 200, 0)


def test_worker_logs_relation_queries_in_duckdb():
    relation = open_upstream(FIXTURES / "mv").worker_logs_relation()
    counts = dict(relation.aggregate("level, count(*)").fetchall())
    assert counts == ground_truth("mv/_ground-truth.worker_logs.stats.json")["byLevel"]


def test_fallback_json_in_par1_log_files_are_read_without_repair(tmp_path):
    columns = {"id": ["a"], "scriptName": ["api"], "eventTimestamp": [1795453284000], "timestamp": [1795453284001],
               "level": ["info"], "message": ["hi"], "httpStatus": [200], "outcome": ["ok"], "isException": [False],
               "fetchCount": [0]}
    key = "logs/workers/year=2026/month=11/day=23/hour=17/logs-1795453284957.parquet"
    (tmp_path / key).parent.mkdir(parents=True)
    (tmp_path / key).write_bytes(b"PAR1" + json.dumps({"schema": {}, "columns": columns}).encode() + b"PAR1")
    (row,) = open_upstream(tmp_path).worker_logs().to_pylist()
    assert round(row["eventTimestamp"].timestamp() * 1000) == 1795453284000
    assert (row["httpMethod"], row["file"]) == (None, key)


# -- every family against upstream's answers -------------------------------------------------------


def test_node_tail_events_equal_upstream_find():
    truth = ground_truth("tail/_ground-truth.tailevents.find.json")
    up = open_upstream(FIXTURES / "tail")
    assert_same(up.documents("tailevents"), truth["items"])  # same documents, order and key order
    assert len(truth["items"]) == truth["total"] == 500


def test_node_tail_views_equal_upstream_find_with_filters():
    up = open_upstream(FIXTURES / "tail")
    for name, view in ground_truth("tail/_ground-truth.views.json")["views"].items():
        ids = [doc["$id"] for doc in up.find("tailevents", view["definition"]["$filter"])]
        assert ids == view["ids"] and len(ids) == view["total"], name


def test_node_fold_deduplicates_events_a_compaction_left_behind():
    up = open_upstream(FIXTURES / "tail")
    raw = sum(pq.read_metadata(p).num_rows for p in (FIXTURES / "tail" / "events").glob("*.parquet"))
    assert raw == 515 and len(up.events("tailevents")) == 500
    assert {doc["version"] for doc in up.documents("tailevents")} == {1}


@pytest.mark.parametrize("include_deleted, truth", [(False, "find"), (True, "find.includeDeleted")])
def test_native_posts_equal_upstream_find(include_deleted, truth):
    want = ground_truth(f"posts-native/_ground-truth.{truth}.json")
    got = open_upstream(FIXTURES / "posts-native").documents("posts", include_deleted=include_deleted)
    assert_same(got, want["items"])


def test_native_tail_events_hold_the_same_traces_with_iso_string_dates():
    native = open_upstream(FIXTURES / "mv").documents("tailevents")
    inputs = json.loads((FIXTURES / "tail" / "_inputs.trace-items.json").read_text())
    assert len(native) == 500
    for doc, item in zip(native, inputs, strict=True):
        assert ms_to_datetime(item["eventTimestamp"]) == parse_datetime(doc["eventTimestamp"])
        for key in ("scriptName", "outcome", "event", "logs", "exceptions"):
            assert doc[key] == item[key]


def test_node_core_documents_fold_the_event_batches():
    up = open_upstream(FIXTURES / "node-core")
    (post,) = up.documents("posts")
    memory = json.loads((FIXTURES / "node-core" / "data" / "posts" / "data.json").read_text())[0]
    update = [e for e in up.events("posts") if e.op == "UPDATE"][0]
    # A cold start's fold sets updatedAt to the persisted event's ts (upstream applyEvent);
    # the in-process entity (data.json) took it from an earlier clock read.
    assert post["updatedAt"] == update.ts == dt.datetime(2026, 11, 23, 17, 3, 19, 651000, tzinfo=UTC)
    expected = {k: (parse_datetime(v) if k in ("createdAt", "updatedAt") else v) for k, v in memory.items()}
    expected["updatedAt"] = update.ts
    assert post == expected
    assert up.documents("users") == []
    (alice,) = up.documents("users", include_deleted=True)
    assert (alice["name"], alice["deletedAt"], alice["deletedBy"]) == (
        "Alice", dt.datetime(2026, 11, 23, 17, 3, 19, 712000, tzinfo=UTC), "system/anonymous")


def test_node_library_documents_agree_with_the_root_snapshot():
    up = open_upstream(FIXTURES / "node-library")
    (post,) = up.documents("posts")
    (row,) = pq.read_table(FIXTURES / "node-library" / "data.parquet").to_pylist()
    snapshot = row_to_entity(row)
    assert post["version"] == 2 and post["views"] == 4 and post["author"] == "users/u1"
    assert post["createdAt"] == ms_to_datetime(1771327481000)
    # the fold sets updatedAt to the UPDATE event's ts; the snapshot kept the in-memory entity's value
    assert post["updatedAt"] == ms_to_datetime(1771327481005) != snapshot["updatedAt"]
    assert {k: v for k, v in post.items() if k != "updatedAt"} == {k: v for k, v in snapshot.items() if k != "updatedAt"}


def test_do_worker_documents():
    up = open_upstream(FIXTURES / "do-worker")
    docs = up.documents("posts")
    at = [e.ts for e in up.events("posts")]
    anonymous = "system/anonymous"

    def bulk(local, name, ts):
        return {"$id": f"posts/{local}", "$type": "Post", "name": name, "version": 1, "createdAt": ts,
                "createdBy": anonymous, "updatedAt": ts, "updatedBy": anonymous}

    snapshot_row = json.loads(pq.read_table(FIXTURES / "do-worker" / "posts.parquet").column("$data")[0].as_py())
    hello = {"$id": "posts/Uk", "$type": "Post", "name": "Hello", "version": 2,
             "createdAt": parse_datetime(snapshot_row["createdAt"]), "createdBy": anonymous,
             "updatedAt": parse_datetime(snapshot_row["updatedAt"]), "updatedBy": anonymous, "views": 2}
    # newest first; the three bulk creates of the same ms keep later-created first
    assert_same(docs, [bulk("98", "bulk5", at[8]), bulk("nJ", "bulk4", at[7]), bulk("p6", "bulk3", at[6]),
                       bulk("AX", "bulk2", at[5]), bulk("OI", "bulk1", at[4]), hello])
    # the update's `$unset` of title stays unset: UPDATE's after is the full state
    assert "title" not in docs[-1]


def test_do_worker_include_deleted_and_pending():
    up = open_upstream(FIXTURES / "do-worker")
    deleted = [d for d in up.documents("posts", include_deleted=True) if d.get("deletedAt")]
    (second,) = deleted
    assert (second["$id"], second["title"], second["version"]) == ("posts/Ef", "Second", 2)
    assert second["deletedAt"] == up.events("posts")[3].ts
    assert len(up.documents("posts", include_pending=False)) == 6  # the bulk creates have events too


def test_do_worker_fold_takes_pending_rows_without_events(tmp_path):
    root = copy_fixture("do-worker", tmp_path)
    (root / "data" / "posts" / "events" / "01M84NTBB500000061H6B06352.parquet").unlink()
    (root / "posts.parquet").unlink()
    up = open_upstream(root)
    docs = up.documents("posts")
    assert [d["name"] for d in docs] == ["bulk5", "bulk4", "bulk3", "bulk2", "bulk1"]  # later rows first on ties
    assert {d["createdAt"] for d in docs} == {ms_to_datetime(ulid_ms("01M84NTB9R0000001PMED5MC27"))}
    assert up.documents("posts", include_pending=False) == []


def test_do_pending_json_fallback_file_is_read(tmp_path):
    root = tmp_path / "store"
    (root / "data" / "notes" / "pending").mkdir(parents=True)
    rows = [{"$id": "notes/a1", "data": json.dumps({"$type": "Note", "name": "first", "body": "x"})}]
    (root / "data" / "notes" / "pending" / "01M84NTB9R0000001PMED5MC27.parquet.json").write_text(json.dumps(rows))
    (doc,) = open_upstream(root).documents("notes")
    assert (doc["$id"], doc["$type"], doc["name"], doc["body"], doc["version"]) == ("notes/a1", "Note", "first", "x", 1)


def test_find_filters_sorts_and_pages_upstream_documents():
    up = open_upstream(FIXTURES / "do-worker")
    got = up.find("posts", {"name": {"$regex": "^bulk"}}, sort={"name": -1}, skip=1, limit=2, project={"name": 1})
    assert got == [{"name": "bulk4"}, {"name": "bulk3"}]
    since = dt.datetime(2026, 11, 23, 17, 3, 51, 100000, tzinfo=UTC)
    assert len(up.find("posts", {"createdAt": {"$gte": since}})) == 5


def test_unknown_and_ambiguous_namespaces_are_reported(tmp_path):
    up = open_upstream(FIXTURES / "do-worker")
    with pytest.raises(ViewNotFoundError, match="did you mean 'posts'"):
        up.find("post")
    root = copy_fixture("do-worker", tmp_path)
    shutil.copytree(FIXTURES / "posts-native" / "data" / "posts", root / "data" / "posts", dirs_exist_ok=True)
    both = open_upstream(root)
    with pytest.raises(ValidationError, match="several layouts"):
        both.documents("posts")
    assert len(both.documents("posts", family="native")) == 998


def test_a_corrupt_parquet_file_is_an_upstream_format_error(tmp_path):
    root = copy_fixture("do-worker", tmp_path)
    (root / "data" / "posts" / "events" / "01M84NTBB500000061H6B06352.parquet").write_bytes(b"PAR1 not parquet PAR1")
    with pytest.raises(UpstreamFormatError, match="01M84NTBB500000061H6B06352.parquet: not a readable Parquet file"):
        open_upstream(root).documents("posts")


# -- fold rules (§5.6) on synthetic events ---------------------------------------------------


def do_event(op, local, ts, after=None, before=None, ns="posts"):
    return UpstreamEvent(id=f"e{ts}", ts_ms=ts, op=op, target=f"{ns}:{local}", before=before, after=after,
                         actor="users/me")


def test_do_fold_restore_keeps_data_and_clears_the_delete():
    events = [
        do_event("CREATE", "a", 1000, {"$type": "Post", "name": "A", "body": "x"}),
        do_event("DELETE", "a", 2000, before={"$type": "Post", "name": "A", "body": "x"}),
        do_event("UPDATE", "a", 3000, {"$type": "Post", "name": "A"}, before={"$type": "Post", "name": "A", "deletedAt": "x"}),
    ]
    (doc,) = fold_worker_do("posts", events)
    assert (doc["body"], doc["version"], doc["updatedAt"], "deletedAt" in doc) == ("x", 3, ms_to_datetime(3000), False)


def test_do_fold_create_on_a_live_id_replaces_it():
    events = [
        do_event("CREATE", "Uk", 1000, {"$type": "Post", "name": "old", "views": 9}),
        do_event("CREATE", "Uk", 5000, {"$type": "Post", "name": "new"}),
    ]
    (doc,) = fold_worker_do("posts", events)
    assert (doc["name"], doc["version"], doc["createdAt"], "views" in doc) == ("new", 1, ms_to_datetime(5000), False)


def test_do_fold_ignores_updates_of_unknown_entities_and_other_namespaces():
    events = [do_event("UPDATE", "x", 1000, {"name": "x"}), do_event("CREATE", "y", 1000, {"name": "y"}, ns="users")]
    assert fold_worker_do("posts", events) == []


def test_node_fold_merges_updates_and_orders_most_recent_first():
    def node_event(op, local, ts, after=None):
        return UpstreamEvent(id=f"evt-{ts}", ts_ms=ts, op=op, target=f"posts:{local}", after=after, actor="me")

    events = [
        node_event("CREATE", "a", 1, {"$id": "posts/a", "name": "A", "tags": ["x"], "version": 1}),
        node_event("CREATE", "b", 2, {"$id": "posts/b", "name": "B", "version": 1}),
        node_event("UPDATE", "a", 3, {"$id": "posts/a", "name": "A2", "version": 2}),
        node_event("DELETE", "b", 4),
    ]
    docs = fold_node("posts", events)
    assert [(d["$id"], d["name"], d["version"], d["tags"]) for d in docs] == [("posts/a", "A2", 2, ["x"])]
    assert [d["$id"] for d in fold_node("posts", events, include_deleted=True)] == ["posts/b", "posts/a"]


# -- S3 and read-only ------------------------------------------------------------------------------


def upload(store, names: tuple[str, ...]) -> None:
    for name in names:
        for path in sorted((FIXTURES / name).rglob("*")):
            if path.is_file() and not path.name.startswith("_"):
                store.put(f"{name}/{path.relative_to(FIXTURES / name).as_posix()}", path.read_bytes())


@pytest.mark.s3
def test_s3_store_reads_every_family_like_a_local_directory(s3):
    # tail/ (401 batch files) is left out to keep the test quick: node-core is family B too.
    names = ("do-worker", "node-core", "node-library", "posts-native", "mv")
    store = open_store("s3://pqdb-test/up", **store_options(s3))
    upload(store, names)
    before = listing(store)
    for name in names:
        remote = open_upstream(f"s3://pqdb-test/up/{name}", **store_options(s3))
        local = open_upstream(FIXTURES / name)
        assert remote.layouts == local.layouts
        for ns in local.namespaces():
            assert_same(remote.documents(ns, include_deleted=True), local.documents(ns, include_deleted=True))
        assert remote.worker_logs().equals(local.worker_logs())
        assert remote.worker_errors().equals(local.worker_errors())
        read_everything(remote)
    native = open_upstream("s3://pqdb-test/up/posts-native", **store_options(s3)).documents("posts")
    assert_same(native, ground_truth("posts-native/_ground-truth.find.json")["items"])
    assert listing(store) == before


@pytest.mark.parametrize("name", FAMILY_DIRS)
def test_reading_never_writes(name, tmp_path):
    root = copy_fixture(name, tmp_path)
    store = open_store(str(root))
    before = [(o.key, o.size, o.last_modified) for o in store.list("")]
    read_everything(open_upstream(ReadOnlyStore(store)))
    assert [(o.key, o.size, o.last_modified) for o in store.list("")] == before
