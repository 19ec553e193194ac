"""The bulk write path: column-built create batches, mixed batches, and flushes split into parallel parts."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import parquedb_ibis
from parquedb_ibis.documents import DATA_COLUMN
from parquedb_ibis.errors import StorageError, ValidationError
from parquedb_ibis.schema import Schema, to_columns, to_row
from parquedb_ibis.store.local import LocalStore
from parquedb_ibis.writer import collection as collection_module
from parquedb_ibis.writer.ids import _encode, _encode_run


@pytest.fixture
def db(store_url):
    url, options = store_url
    database = parquedb_ibis.connect(url, flush_age=None, auto_checkpoint=None, **options)
    yield database
    database.close()


def fresh(db):
    return type(db)(db.store, flush_age=None)


def listing(db) -> dict[str, str]:
    return {o.key: o.etag for o in db.store.list()}


@pytest.fixture
def small_parts(monkeypatch):
    """Split every flush of more than a few KB into three parts."""
    monkeypatch.setattr(collection_module, "PART_BYTES", 2048)
    monkeypatch.setattr(collection_module, "_WORKERS", 3)


def test_a_large_flush_is_published_as_parts_in_one_commit(db, small_parts):
    c = db.collection("bulk")
    written = c.insert_many([{"i": i, "text": "x" * 50} for i in range(300)])
    version = c.head.version
    head = c.flush()
    assert head.version == version + 1  # one commit
    segments = head.history[-3:]
    assert len(head.history) == 3 and [s.rows for s in segments] == [100, 100, 100]
    assert all(s.creates_only for s in segments)
    assert [s.first_event for s in segments] == sorted(s.first_event for s in segments)
    assert segments[0].last_event < segments[1].first_event
    got = fresh(db).collection("bulk").find(sort={"i": 1})
    assert got == written


def test_parts_keep_event_order_for_later_updates(db, small_parts):
    c = db.collection("mixed")
    docs = c.insert_many([{"$id": f"e{i}", "n": i} for i in range(200)])
    c.flush()
    for i in range(0, 200, 7):
        c.update(f"e{i}", {"$inc": {"n": 1000}})
    c.delete("e1", hard=True)
    c.delete("e2")
    c.insert_many([{"$id": f"f{i}", "n": -i} for i in range(200)])
    c.update("f5", {"$set": {"n": 5}})  # an update after a create, both in the flush's parts
    c.flush()
    expected = {d["$id"]: d["n"] + (1000 if int(d["$id"][7:]) % 7 == 0 else 0) for d in docs}
    del expected["mixed/e1"], expected["mixed/e2"]
    expected.update({f"mixed/f{i}": -i for i in range(200)})
    expected["mixed/f5"] = 5
    reader = fresh(db).collection("mixed")
    assert {d["$id"]: d["n"] for d in reader.find()} == expected
    assert reader.get("e2", include_deleted=True)["deletedAt"] is not None
    db.checkpoint()
    assert {d["$id"]: d["n"] for d in fresh(db).collection("mixed").find()} == expected


def test_a_failed_part_leaves_the_store_as_it_was(tmp_path, small_parts):
    class FailingStore(LocalStore):
        """A local store whose second segment write fails (a full disk, say)."""

        puts = 0

        def put(self, key, data):
            if key.startswith("events/"):
                FailingStore.puts += 1
                if FailingStore.puts == 2:
                    raise StorageError(key, "put failed: No space left on device")
            return super().put(key, data)

    db = parquedb_ibis.connect(str(tmp_path), flush_age=None)
    c = db.collection("fail")
    c.create({"seed": True})
    c.flush()
    failing = type(db)(FailingStore(db.store.config), flush_age=None)
    before = listing(failing)
    fc = failing.collection("fail")
    fc.insert_many([{"i": i, "text": "y" * 50} for i in range(300)])
    with pytest.raises(StorageError, match="No space left"):
        fc.flush()
    assert listing(failing) == before
    assert fc.count() == 1 + 300  # still staged: the next flush publishes them
    assert fresh(db).collection("fail").count() == 301


def test_bulk_creates_and_single_writes_share_one_segment(db):
    c = db.collection("shared")
    one = c.create({"a": 1})
    many = c.insert_many([{"b": i} for i in range(5)])
    c.update(one["$id"], {"$set": {"a": 2}})
    head = c.flush()
    assert head.history[-1].rows == 7 and not head.history[-1].creates_only
    got = {d["$id"]: d for d in fresh(db).collection("shared").find()}
    assert got[one["$id"]]["a"] == 2 and got[one["$id"]]["version"] == 2
    assert [got[d["$id"]] for d in many] == many


@pytest.mark.parametrize(
    "docs, message",
    [
        ([{"a": 1}, "not a document"], "a document must be an object, found str"),
        ([{"a": 1}, {1: "x"}], "field names must be strings, found 1"),
        ([{"a": 1}, {"s": {1, 2}}], "cannot store a value of type set"),
        ([{"$id": "same"}, {"$id": "same"}], "shared/same: an entity with this id already exists"),
    ],
)
def test_a_bad_document_rejects_the_whole_batch(db, docs, message):
    c = db.collection("shared")
    c.create({"$id": "keep"})
    c.flush()
    before = listing(db)
    with pytest.raises(ValidationError, match=message):
        c.insert_many(docs)
    c.flush()
    assert listing(db) == before
    assert c.count() == 1


def test_bulk_creates_check_given_ids_against_committed_state(db):
    c = db.collection("given")
    c.insert_many([{"$id": f"k{i}"} for i in range(100)])
    c.flush()
    with pytest.raises(ValidationError, match="given/k42: an entity with this id already exists"):
        fresh(db).collection("given").insert_many([{"$id": "new"}, {"$id": "k42"}])


def test_generated_ids_are_the_event_ulids(db):
    c = db.collection("ids")
    docs = c.insert_many([{"i": i} for i in range(50)])
    head = c.flush()
    local = [d["$id"].partition("/")[2] for d in docs]
    assert local == sorted(local) and len(set(local)) == 50
    assert head.history[-1].first_event.lower() == local[0] and head.history[-1].last_event.lower() == local[-1]


def test_ulid_runs_match_one_by_one_encoding_across_a_carry():
    for first in (0, (1 << 40) - 3, (7 << 80) | ((1 << 40) - 2), (1 << 128) - 5):
        assert _encode_run(first, 5) == [_encode(first + i, 26) for i in range(5)]


UTC = dt.timezone.utc
SCHEMA = Schema.parse({"title": "string!", "n": "int?", "x": "float?", "flag": "boolean?", "at": "timestamp?",
                       "meta": "variant?", "events": "variant[]", "tags": "string[]"})
UTC = dt.timezone.utc
field_values = {
    "n": st.integers(min_value=-(2**63), max_value=2**63 - 1),
    "x": st.floats(),
    "flag": st.booleans(),
    "at": st.datetimes(timezones=st.just(UTC)),
    "meta": st.recursive(st.none() | st.integers() | st.text(max_size=4), lambda i: st.lists(i, max_size=3), max_leaves=5),
    "events": st.lists(st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), max_size=2),
    "tags": st.lists(st.text(max_size=3), max_size=3),
}


@st.composite
def stored_docs(draw):
    doc = {"$id": "c/x", "$type": "c", "version": 1, "title": draw(st.text(max_size=5)),
           **draw(st.dictionaries(st.sampled_from(["a", "b", "ü"]), st.integers(-(2**63), 2**63 - 1) | st.none(), max_size=2))}
    for name, values in field_values.items():
        choice = draw(st.sampled_from(["absent", "none", "value"]))
        if choice == "value":
            doc[name] = draw(values)
        elif choice == "none":
            doc[name] = None
    return doc


@settings(max_examples=200, deadline=None)
@given(st.lists(stored_docs(), min_size=1, max_size=6))
def test_columns_equal_the_rows_of_the_per_document_path(docs):
    columns = to_columns(docs, SCHEMA)
    rows = [to_row(SCHEMA.validate(d, "c/x"), SCHEMA) for d in docs]
    assert columns is not None  # every generated value is stored as it is
    assert set(columns) == {*SCHEMA.names, DATA_COLUMN}
    for name, values in columns.items():
        expected = [row[name] for row in rows]
        assert [repr(v) for v in values] == [repr(v) for v in expected], name  # repr: NaN, -0.0, int vs float


@pytest.mark.parametrize("doc", [
    {"title": None}, {"n": 1}, {"title": "t", "n": True}, {"title": "t", "x": 1}, {"title": "t", "n": 2**63},
    {"title": "t", "at": dt.datetime(2024, 1, 1)}, {"title": "t", "events": {"not": "a list"}},
    {"title": "t", "meta": {1, 2}}, {"title": "t", "tags": ["a", None]}, {"title": "t", "tags": ("a",)},
    {"title": "t", 5: "key"}, {"title": "t", "undeclared": 2**64},
])
def test_values_that_need_coercion_or_fail_take_the_per_document_path(doc):
    assert to_columns([{"title": "fine"}, doc], SCHEMA) is None


# -- insert_arrow: the Arrow bulk-load path -----------------------------------------------------

ARROW_SCHEMA = {"title": "string!", "n": "int?", "x": "float?", "at": "timestamp?", "meta": "variant?",
                "tags": "string[]", "events": "variant[]"}


ARROW_TYPES = pa.schema({"$id": pa.string(), "title": pa.string(), "n": pa.int32(), "x": pa.float64(),
                         "at": pa.timestamp("ms"), "meta": pa.string(), "tags": pa.list_(pa.string()),
                         "events": pa.string(), "$data": pa.string()})


def arrow_rows(n: int, start: int = 0) -> pa.Table:
    return pa.Table.from_pydict({
        "$id": [f"r{i}" for i in range(start, start + n)],
        "title": [f"t{i}" for i in range(start, start + n)],
        "n": pa.array([i if i % 3 else None for i in range(start, start + n)], pa.int32()),
        "x": [i / 2 for i in range(start, start + n)],
        "at": pa.array([dt.datetime(2024, 1, 1, 0, 0, i % 60) for i in range(start, start + n)], pa.timestamp("ms")),
        "meta": [json.dumps({"k": i, "f": 1.0}) if i % 2 else None for i in range(start, start + n)],
        "tags": [["a", "b"] if i % 2 else [] for i in range(start, start + n)],
        "events": [json.dumps([{"i": i}, None]) for i in range(start, start + n)],
        "$data": [json.dumps({"extra": i, "nested": {"ü": [1, 2.5, None]}}) if i % 4 else None
                  for i in range(start, start + n)],
    }, schema=ARROW_TYPES)


def test_insert_arrow_stores_what_insert_many_stores(db):
    table = arrow_rows(50)
    assert db.collection("arrow", ARROW_SCHEMA).insert_arrow(table) == 50
    docs = []
    for row in table.to_pylist():
        doc = {"$id": row.pop("$id"), **json.loads(row.pop("$data") or "{}")}
        doc.update({k: v for k, v in row.items()})
        doc["meta"] = json.loads(doc["meta"]) if doc["meta"] is not None else None
        doc["events"] = json.loads(doc["events"])
        doc["at"] = doc["at"].replace(tzinfo=UTC)
        if doc["meta"] is None:
            del doc["meta"]  # a null in a variant column: absent
        docs.append(doc)
    db.collection("dicts", ARROW_SCHEMA).insert_many(docs)
    db.flush()
    reader = fresh(db)
    by_arrow = {d["$id"].partition("/")[2]: strip(d) for d in reader.collection("arrow").find()}
    by_dicts = {d["$id"].partition("/")[2]: strip(d) for d in reader.collection("dicts").find()}
    assert by_arrow == by_dicts and len(by_arrow) == 50
    assert type(by_arrow["r1"]["nested"]["ü"][1]) is float and by_arrow["r1"]["meta"] == {"k": 1, "f": 1.0}


def strip(doc):
    return {k: v for k, v in doc.items() if k not in ("$id", "$type", "createdAt", "updatedAt", "createdBy", "updatedBy")}


def test_insert_arrow_generates_ids_and_runs_streaming_views(tmp_path):
    db = parquedb_ibis.connect(str(tmp_path), flush_age=None)
    db.collection("Hits", {"path": "string!", "ms": "int?"})
    db.define_view("Slow", {"$from": "Hits", "$filter": {"ms": {"$gte": 100}}, "$select": {"path": "path"},
                            "$refresh": {"mode": "streaming"}})
    hits = db.collection("Hits")
    hits.create({"path": "/first", "ms": 500})  # staged: published before the Arrow rows
    created = hits.insert_arrow(pa.table({"path": [f"/p{i}" for i in range(1000)], "ms": list(range(1000))}))
    assert created == 1000
    assert db.background_errors == []
    assert db.view("Slow").count() == 901
    ids = [d["$id"] for d in hits.find(sort={"ms": 1})]
    assert len(set(ids)) == 1001 and all(i.startswith("Hits/") for i in ids)
    assert hits.head.history[0].rows == 1  # the staged create came first, in its own segment


def test_insert_arrow_skips_or_refuses_existing_and_repeated_ids(db):
    c = db.collection("arrow", ARROW_SCHEMA)
    c.insert_arrow(arrow_rows(10))
    before = listing(db)
    with pytest.raises(ValidationError, match=r"row 2: 'arrow/r5' exists already; pass skip_existing=True"):
        c.insert_arrow(pa.concat_tables([arrow_rows(2, start=10), arrow_rows(1, start=5)]))
    repeated = pa.concat_tables([arrow_rows(2, start=20), arrow_rows(1, start=20)])
    with pytest.raises(ValidationError, match=r"row 2: 'arrow/r20' repeats an earlier row"):
        c.insert_arrow(repeated)
    assert listing(db) == before
    assert c.insert_arrow(arrow_rows(15), skip_existing=True) == 5
    assert c.insert_arrow(repeated, skip_existing=True) == 2
    assert c.insert_arrow(arrow_rows(15), skip_existing=True) == 0
    assert sorted(d["$id"] for d in fresh(db).collection("arrow").find()) == sorted(
        [f"arrow/r{i}" for i in range(15)] + ["arrow/r20", "arrow/r21"])


def test_insert_arrow_rechecks_ids_created_by_a_concurrent_writer(tmp_path):
    url = str(tmp_path)
    first = parquedb_ibis.connect(url, flush_age=None).collection("race", {"v": "int"})
    first.create({"$id": "seed", "v": 0})
    first.flush()
    second = parquedb_ibis.connect(url, flush_age=None).collection("race")
    second.create({"$id": "x", "v": 2})
    second.flush()  # `first` has not seen this commit
    created = first.insert_arrow(pa.table({"$id": ["x", "y"], "v": [1, 1]}), skip_existing=True)
    assert created == 1
    got = {d["$id"]: d["v"] for d in parquedb_ibis.connect(url, flush_age=None).collection("race").find()}
    assert got == {"race/seed": 0, "race/x": 2, "race/y": 1}


@pytest.mark.parametrize("table, message", [
    (pa.table({"title": ["a"], "color": ["red"]}), r"column 'color': not a declared field"),
    (pa.table({"title": ["a"], "n": ["1"]}), r"column 'n': Arrow type string does not fit 'int\?'"),
    (pa.table({"title": ["a", None]}), r"column 'title' row 1: required field \(string!\) is null"),
    (pa.table({"title": ["a"], "n": pa.array([2**64 - 1], pa.uint64())}), r"column 'n': cannot store as 'int\?'"),
    (pa.table({"title": ["a", "b"], "meta": ["{}", "{oops"]}), r"column 'meta' row 1: not valid JSON text"),
    (pa.table({"title": ["a"], "events": ['{"a": 1}']}), r"column 'events' row 0: not a JSON array"),
    (pa.table({"title": ["a"], "$data": ["[1]"]}), r"column '\$data' row 0: not a JSON object"),
    (pa.table({"title": ["a"], "$data": ['{"n": 1}']}), r"column '\$data' row 0: not a JSON object of undeclared fields"),
    (pa.table({"title": ["a"], "$id": ["other/x"]}), r"column '\$id' row 0: id 'other/x' is empty or does not belong"),
    (pa.table({"title": ["a"], "$id": pa.array([None], pa.string())}), r"column '\$id' row 0: an id is null"),
])
def test_insert_arrow_refuses_bad_input_and_writes_nothing(db, table, message):
    c = db.collection("arrow", ARROW_SCHEMA)
    c.insert_arrow(arrow_rows(3))
    before = listing(db)
    with pytest.raises(ValidationError, match=message):
        c.insert_arrow(table)
    assert listing(db) == before
    assert c.count() == 3


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(), max_size=20))
def test_string_array_from_utf8_bytes_equals_arrows_own_conversion(texts):
    from parquedb_ibis.writer.events import string_array

    got = string_array([t.encode("utf-8") for t in texts])
    assert got.type == pa.string() and got.equals(pa.array(texts, pa.string()))
