"""The writer: documents, system fields, updates, deletes, flushes, checkpoints, time travel, vacuum."""

from __future__ import annotations

import datetime as dt
import time

import pytest

import parquedb_ibis
from parquedb_ibis.errors import (
    EntityNotFoundError,
    ParqueDBError,
    SchemaError,
    UpdateError,
    ValidationError,
    VersionConflictError,
)
from parquedb_ibis.writer.manifest import head_key

UTC = dt.timezone.utc


@pytest.fixture
def db(store_url):
    url, options = store_url
    database = parquedb_ibis.connect(url, flush_age=None, **options)
    yield database
    database.close()


def reopen(db):
    """A fresh reader of the same store (nothing shared with the writer but the store)."""
    return parquedb_ibis.connect(db.config, flush_age=None) if False else type(db)(db.store, flush_age=None)


def listing(db) -> dict[str, str]:
    return {o.key: o.etag for o in db.store.list()}


def test_create_sets_system_fields_and_get_returns_the_document(db):
    posts = db.collection("posts")
    doc = posts.create({"title": "Hello", "n": 1, "x": 1.0, "none": None, "tags": []})
    assert doc["$id"].startswith("posts/") and doc["$type"] == "posts" and doc["version"] == 1
    assert doc["createdAt"] == doc["updatedAt"] and doc["createdAt"].tzinfo is not None
    assert doc["createdBy"] == "anonymous"
    posts.flush()
    got = reopen(db).collection("posts").get(doc["$id"])
    assert got == doc
    assert type(got["n"]) is int and type(got["x"]) is float and "none" in got and got["none"] is None


def test_given_ids_are_prefixed_with_the_namespace(db):
    users = db.collection("users")
    a = users.create({"$id": "alice", "$type": "User", "name": "A"})
    b = users.create({"$id": "users/bob", "name": "B"})
    assert (a["$id"], a["$type"], b["$id"]) == ("users/alice", "User", "users/bob")
    assert users.get("alice") == a == users.get("users/alice")
    with pytest.raises(ValidationError, match="does not belong to collection 'users'"):
        users.create({"$id": "posts/x"})
    with pytest.raises(ValidationError, match="already exists"):
        users.create({"$id": "alice"})


def test_update_applies_operators_and_advances_version(db):
    c = db.collection("counters")
    doc = c.create({"$id": "a", "n": 1, "tags": ["x"]})
    time.sleep(0.002)
    new = c.update("a", {"$inc": {"n": 2}, "$push": {"tags": "y"}, "$set": {"meta.k": "v"}})
    assert (new["n"], new["tags"], new["meta"], new["version"]) == (3, ["x", "y"], {"k": "v"}, 2)
    assert new["createdAt"] == doc["createdAt"] and new["updatedAt"] > doc["updatedAt"]
    c.flush()
    assert reopen(db).collection("counters").get("a") == new


def test_expected_version_conflict_names_entity_expected_and_found(db):
    c = db.collection("things")
    c.create({"$id": "t", "v": 0})
    c.update("t", {"$set": {"v": 1}}, expected_version=1)
    with pytest.raises(VersionConflictError) as info:
        c.update("t", {"$set": {"v": 2}}, expected_version=1)
    err = info.value
    assert err.code == "VERSION_CONFLICT" and (err.expected, err.found) == (1, 2)
    assert "things/t" in str(err) and "expected version 1, found 2" in str(err)
    assert c.get("t")["v"] == 1


def test_upsert_creates_with_set_on_insert(db):
    c = db.collection("things")
    doc = c.update("new", {"$set": {"a": 1}, "$setOnInsert": {"b": 2}}, upsert=True)
    assert (doc["$id"], doc["a"], doc["b"], doc["version"]) == ("things/new", 1, 2, 1)
    again = c.update("new", {"$set": {"a": 5}, "$setOnInsert": {"b": 9}}, upsert=True)
    assert (again["a"], again["b"], again["version"]) == (5, 2, 2)
    with pytest.raises(EntityNotFoundError, match="things: no entity 'things/missing'"):
        c.update("missing", {"$set": {"a": 1}})


def test_replace_keeps_identity_and_audit_fields(db):
    c = db.collection("things")
    doc = c.create({"$id": "r", "a": 1, "b": 2})
    new = c.replace("r", {"a": 10, "version": 99, "createdAt": "forged"})
    assert new["a"] == 10 and "b" not in new and new["version"] == 2 and new["createdAt"] == doc["createdAt"]


def test_soft_and_hard_delete(db):
    c = db.collection("things")
    c.insert_many([{"$id": "s"}, {"$id": "h"}, {"$id": "k"}])
    assert c.delete("s") and c.delete("h", hard=True)
    assert not c.delete("nope")
    c.flush()
    fresh = reopen(db).collection("things")
    with pytest.raises(EntityNotFoundError):
        fresh.get("s")
    assert fresh.get("s", include_deleted=True)["deletedAt"] is not None
    with pytest.raises(EntityNotFoundError):
        fresh.get("h", include_deleted=True)
    assert fresh.count() == 1 and fresh.count(include_deleted=True) == 2


def test_invalid_update_writes_nothing(db):
    c = db.collection("things")
    c.create({"$id": "a", "n": "text"})
    c.flush()
    before = listing(db)
    with pytest.raises(UpdateError, match=r"update \$inc at 'n'"):
        c.update("a", {"$inc": {"n": 1}})
    with pytest.raises(UpdateError, match="unknown update operator; did you mean '\\$set'"):
        c.update("a", {"$sett": {"n": 1}})
    with pytest.raises(UpdateError, match="system field"):
        c.update("a", {"$set": {"version": 7}})
    c.flush()
    assert listing(db) == before


def test_schema_violation_names_the_field_and_writes_nothing(db):
    c = db.collection("typed", schema={"title": "string!", "views": "int?", "price": "decimal(10,2)"})
    c.create({"title": "ok", "views": 1})
    c.flush()
    before = listing(db)
    with pytest.raises(ValidationError, match=r"typed/.*\.views: expected 'int\?', found str 'many'"):
        c.insert_many([{"title": "fine"}, {"title": "bad", "views": "many"}])
    with pytest.raises(ValidationError, match=r"\.title: required field"):
        c.create({"views": 2})
    with pytest.raises(ValidationError, match=r"\.price"):
        c.create({"title": "x", "price": "1.234"})
    c.flush()
    assert listing(db) == before
    assert c.count() == 1


def test_schema_is_stored_and_a_different_one_is_refused(db):
    db.collection("typed", schema={"title": "string!"}).create({"title": "a"})
    db.flush()
    other = reopen(db)
    assert other.collection("typed").schema.to_spec() == {"title": "string!"}
    with pytest.raises(SchemaError, match="differs from the stored one"):
        other.collection("typed", schema={"title": "int"})


@pytest.mark.parametrize("name", ["a/b", "..", "_hidden", "$sys", "", "a.b", "x" * 200])
def test_namespace_names_are_validated(db, name):
    with pytest.raises(ValidationError, match="invalid name"):
        db.collection(name)


def test_flush_happens_by_count(tmp_path):
    db = parquedb_ibis.connect(str(tmp_path), flush_every=3, flush_age=None)
    c = db.collection("c")
    for i in range(7):
        c.create({"i": i})
    assert c.head.version == 2 and len(c.head.history) == 2  # flushed at 3 and 6
    db.flush()
    assert [s.rows for s in c.head.history] == [3, 3, 1]


def test_flush_happens_by_age(tmp_path):
    db = parquedb_ibis.connect(str(tmp_path), flush_age=0.05)
    c = db.collection("c")
    c.create({"i": 1})
    deadline = time.monotonic() + 5
    while c.head.version == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert c.head.version == 1
    assert not db.background_errors


def test_reads_are_snapshots_of_one_head(db):
    c = db.collection("snap")
    c.insert_many([{"$id": str(i), "i": i} for i in range(5)])
    c.flush()
    old_relation = c.relation()
    c.insert_many([{"$id": str(i), "i": i} for i in range(5, 8)])
    c.update("0", {"$set": {"i": 100}})
    c.flush()
    old = {r["$id"] for r in db.query_rows(exp_select_ids(old_relation))}
    assert old == {f"snap/{i}" for i in range(5)}
    assert c.count() == 8


def exp_select_ids(relation):
    from sqlglot import exp

    return exp.select(exp.column("$id", quoted=True)).from_(exp.alias_(exp.Subquery(this=relation), "r"))


def test_checkpoint_folds_segments_and_reads_stay_equal(db):
    c = db.collection("ck", schema={"n": "int?"})
    c.insert_many([{"$id": f"e{i}", "n": i, "extra": {"i": i}} for i in range(50)])
    c.flush()
    c.update("e1", {"$inc": {"n": 1000}})
    c.delete("e2")
    c.delete("e3", hard=True)
    c.flush()
    before = c.find(sort={"$id": 1})
    included = c.find(sort={"$id": 1}, include_deleted=True) if "include_deleted" in c.find.__code__.co_varnames else None
    heads = db.checkpoint(name="first")
    head = heads["ck"]
    assert head.checkpoint is not None and head.checkpoint.name == "first" and head.live_segments == ()
    assert head.checkpoint.rows == 49  # hard-deleted gone, soft-deleted kept
    assert reopen(db).collection("ck").find(sort={"$id": 1}) == before
    if included is not None:
        assert c.find(sort={"$id": 1}, include_deleted=True) == included
    c.create({"$id": "later", "n": -1})
    c.flush()
    assert len(c.head.live_segments) == 1
    assert c.count() == len(before) + 1


def test_checkpoint_records_soft_deletes_and_readers_skip_the_filter_without_any(db):
    c = db.collection("sd")
    c.insert_many([{"$id": f"e{i}", "n": i} for i in range(5)])
    c.delete("e0")
    head = db.checkpoint()["sd"]
    assert head.checkpoint.deleted == 1
    assert "deletedAt" in c.relation().sql("duckdb")  # the soft-deleted row must be filtered out
    assert sorted(d["n"] for d in c.find()) == [1, 2, 3, 4]

    clean = db.collection("clean")
    clean.insert_many([{"$id": f"e{i}", "n": i} for i in range(5)])
    head = db.checkpoint()["clean"]
    assert head.checkpoint.deleted == 0
    clean.insert_many([{"n": 5}])
    clean.flush()
    assert "deletedAt" not in clean.relation().sql("duckdb").split("FROM", 1)[1]  # nothing to filter
    assert sorted(d["n"] for d in reopen(db).collection("clean").find()) == [0, 1, 2, 3, 4, 5]
    clean.delete("e1")  # a live delete brings the filter back
    clean.flush()
    assert sorted(d["n"] for d in reopen(db).collection("clean").find()) == [0, 2, 3, 4, 5]
    assert len(reopen(db).collection("clean").find(include_deleted=True)) == 6


def test_time_travel_by_datetime_and_by_version(db):
    c = db.collection("tt")
    c.create({"$id": "a", "v": 1})
    c.flush()
    t1 = dt.datetime.now(UTC)
    time.sleep(0.01)
    c.update("a", {"$set": {"v": 2}})
    c.create({"$id": "b"})
    c.flush()
    db.checkpoint()
    t2 = dt.datetime.now(UTC)
    time.sleep(0.01)
    c.delete("a", hard=True)
    c.flush()
    assert c.get("a", as_of=t1)["v"] == 1
    assert c.get("a", as_of=t2)["v"] == 2
    assert c.get("a", as_of=1)["v"] == 1 and c.get("a", as_of=2)["v"] == 2
    with pytest.raises(EntityNotFoundError):
        c.get("a")
    assert {d["$id"] for d in c.find(as_of=t1)} == {"tt/a"}
    assert {d["$id"] for d in c.find(as_of=t2)} == {"tt/a", "tt/b"}
    assert {d["$id"] for d in c.find()} == {"tt/b"}


def test_vacuum_removes_unreferenced_files_only(db):
    c = db.collection("vac")
    c.create({"$id": "a"})
    db.flush()
    db.store.put("events/archive/2020/01/01/vac/ORPHAN.parquet", b"junk")
    db.store.put("data/vac/checkpoints/ORPHAN/part-0.parquet", b"junk")
    db.store.put("data/other-upstream/events/keep.parquet", b"not ours")
    recent = db.vacuum()  # default keeps young files: a concurrent writer may be committing them
    assert recent == []
    removed = db.vacuum(older_than=dt.timedelta(0))
    assert sorted(removed) == ["data/vac/checkpoints/ORPHAN/part-0.parquet", "events/archive/2020/01/01/vac/ORPHAN.parquet"]
    assert db.store.head("data/other-upstream/events/keep.parquet") is not None
    assert reopen(db).collection("vac").get("a")["$id"] == "vac/a"


def test_errors_are_one_hierarchy(db):
    for exc in (EntityNotFoundError, VersionConflictError, ValidationError, UpdateError):
        assert issubclass(exc, ParqueDBError)


def test_head_is_the_only_overwritten_object(tmp_path):
    db = parquedb_ibis.connect(str(tmp_path), flush_age=None)
    c = db.collection("imm")
    seen: dict[str, bytes] = {}
    for i in range(3):
        c.create({"i": i})
        c.flush()
        for o in db.store.list():
            data = db.store.get(o.key)
            if o.key != head_key("imm"):
                assert seen.setdefault(o.key, data) == data
