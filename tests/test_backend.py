"""The ``parquedb`` ibis backend: connecting, tables, variants, time travel, exits, mongo(), SQL, views, S3."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import re
from collections import Counter
from typing import Any
from urllib.parse import quote

import ibis
import ibis.expr.datatypes as idt
import pyarrow as pa
import pytest
from conftest import store_options
from ibis import _

import parquedb_ibis
from parquedb_ibis.backend import Backend
from parquedb_ibis.errors import (
    FilterError,
    UnknownOperatorError,
    UnknownTableError,
    ValidationError,
    ViewNotFoundError,
)
from parquedb_ibis.ibis_filters import field, layout_of, mongo, unpack, view_to_ibis
from parquedb_ibis.tail.sample import generate_trace_items
from parquedb_ibis.views import seeds

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 3, 1, tzinfo=UTC)

POSTS_SCHEMA = {"title": "string", "views": "int", "tags": "string[]", "meta": "variant", "published": "timestamp"}

#: Documents with typed fields, undeclared fields in $data, nulls, missing fields and mixed types.
POSTS: list[dict[str, Any]] = [
    {"$id": "p1", "title": "alpha", "views": 10, "tags": ["a", "b"], "meta": {"level": 1}, "published": T0,
     "author": {"name": "Ann", "country": "DE"}, "rating": 4.5, "when": T0, "flags": [{"k": "x"}]},
    {"$id": "p2", "title": "beta", "views": 2, "tags": ["b"], "meta": {"level": 3}, "published": T0 + dt.timedelta(days=1),
     "author": {"name": "bob", "country": "US"}, "rating": "n/a", "when": T0 - dt.timedelta(days=3)},
    {"$id": "p3", "title": "gamma", "views": None, "tags": [], "meta": [1, 2], "published": T0 + dt.timedelta(days=2),
     "author": {"name": "Cleo", "country": "FR"}, "rating": 2, "flags": [{"k": "y"}, {"k": "x"}]},
    {"$id": "p4", "title": "delta", "tags": ["a", "b", "c"], "meta": None,
     "author": {"name": "Dan"}, "rating": 5, "when": T0 + dt.timedelta(days=10)},
    {"$id": "p5", "title": "tau", "views": 7, "tags": ["c"], "meta": {"level": 2}, "published": T0 - dt.timedelta(days=1),
     "author": {"name": "bea", "country": "DE"}},
    {"$id": "p6", "title": "theta", "views": 1, "meta": {"level": 0, "x": "y"},
     "rating": 3, "flags": []},
    {"$id": "p7", "title": "alpha", "views": 40, "tags": ["a"], "published": T0 + dt.timedelta(hours=5),
     "author": {"name": "Eve", "country": "US"}, "rating": 1.5, "when": T0 + dt.timedelta(hours=1)},
]

#: Filters compared with collection.find(): every operator family, typed and variant paths.
FILTERS: list[dict[str, Any]] = [
    {"views": {"$gte": 7}},
    {"title": {"$in": ["alpha", "tau"]}},
    {"views": {"$nin": [1, 2]}},
    {"views": None},
    {"views": {"$exists": False}},
    {"author.country": "DE"},
    {"rating": {"$gt": 3}},
    {"rating": {"$type": "string"}},
    {"tags": "b"},
    {"tags": {"$size": 2}},
    {"tags": {"$all": ["a", "b"]}},
    {"meta.level": {"$lte": 2}},
    {"when": {"$lt": T0}},
    {"published": {"$gte": T0 + dt.timedelta(hours=1)}},
    {"$or": [{"views": {"$lt": 3}}, {"author.name": {"$regex": "^b", "$options": "i"}}]},
    {"$nor": [{"author.country": "US"}]},
    {"flags": {"$elemMatch": {"k": "x"}}},
    {"title": {"$not": {"$regex": "^t"}}},
    {"$expr": {"$gt": ["$views", "$rating"]}},
    {"author": {"$exists": True}, "views": {"$ne": 10}},
]


def make_db(path, **options) -> parquedb_ibis.views.Database:
    return parquedb_ibis.connect(str(path), flush_age=None, **options)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """A store with ``posts`` and ``people`` (written once for the module's read-only tests)."""
    database = make_db(tmp_path_factory.mktemp("backend") / "store")
    database.collection("posts", POSTS_SCHEMA).insert_many(POSTS)
    database.collection("people", {"name": "string"}).insert_many(
        [{"name": "Ann", "team": "core"}, {"name": "bob", "team": "web"}, {"name": "Eve", "team": "core"}])
    database.flush()
    yield database
    database.close()


@pytest.fixture(scope="module")
def con(db):
    backend = ibis.parquedb.connect(db)
    yield backend
    backend.disconnect()


@pytest.fixture
def fresh(tmp_path):
    """A writable database and a backend on it, for tests that write."""
    database = make_db(tmp_path / "store")
    backend = ibis.parquedb.connect(database)
    yield database, backend
    backend.disconnect()
    database.close()


def ids(table) -> list[str]:
    return sorted(table.select("$id").to_pyarrow()["$id"].to_pylist())


def local_ids(docs) -> list[str]:
    return sorted(d["$id"].partition("/")[2] if "/" in d["$id"] else d["$id"] for d in docs)


def short(full_ids) -> list[str]:
    return sorted(i.partition("/")[2] for i in full_ids)


# -- connecting -----------------------------------------------------------------------------------


def test_entry_point_names_the_backend_module():
    (entry,) = importlib.metadata.entry_points(group="ibis.backends", name="parquedb")
    assert entry.value == "parquedb_ibis.backend"
    assert entry.load().Backend is Backend


def test_ibis_parquedb_connect_opens_the_store(db):
    con = ibis.parquedb.connect(db.config.url)
    try:
        assert isinstance(con, Backend) and con.name == "parquedb"
        assert con.table("posts").count().execute() == len(POSTS)
    finally:
        con.disconnect()


def test_ibis_connect_url_with_options_opens_a_local_store(db):
    con = ibis.connect(f"parquedb://{quote(db.config.url)}?flush_age=none&flush_every=50")
    try:
        assert isinstance(con, Backend)
        assert (con.db.flush_age, con.db.flush_every) == (None, 50)
        assert {"posts", "people"} <= set(con.list_tables())
    finally:
        con.disconnect()


def test_connect_rejects_options_for_an_open_database(db):
    with pytest.raises(parquedb_ibis.errors.ConfigurationError, match="already open"):
        ibis.parquedb.connect(db, flush_every=3)


# -- tables -----------------------------------------------------------------------------------------


def test_list_tables_shows_collections_and_session_tables_but_no_memtables(con):
    memtable = ibis.memtable({"a": [1, 2]})
    assert con.execute(memtable.count()) == 2  # registers the memtable in DuckDB
    con.create_table("scratch", memtable)
    con.table("posts", as_of=T0)  # an internal time-travel view
    assert con.list_tables() == ["people", "posts", "scratch"]
    assert con.list_tables(like="^p") == ["people", "posts"]
    con.raw_sql('DROP TABLE "scratch"')  # ibis 12's drop_table renders a nameless DROP under sqlglot 30


def test_table_has_typed_columns_and_json_variants(con):
    schema = con.table("posts").schema()
    assert schema["views"] == idt.int64 and schema["title"] == idt.string
    assert schema["tags"] == idt.Array(idt.string)
    assert schema["published"].is_timestamp() and schema["published"].timezone == "UTC"
    assert schema["meta"].is_json() and schema["$data"].is_json()
    mapper = con.compiler.type_mapper
    described = {name: mapper.from_string(typ) for name, typ, *_ in con.raw_sql('DESCRIBE "posts"').fetchall()}
    for name, dtype in schema.items():  # the declared schema is what DuckDB reads (variants are JSON text)
        assert described[name] == (idt.string if dtype.is_json() else dtype), name


def test_variant_columns_are_reachable_as_ibis_json(con):
    t = con.table("posts")
    out = t.filter(t.title == "beta").select(
        country=t["$data"]["author"]["country"], name=t["$data"]["author"]["name"].str, level=t.meta["level"].int,
    ).to_pyarrow().to_pylist()
    assert out == [{"country": '"US"', "name": "bob", "level": 3}]


def test_fields_unpack_variant_paths_into_typed_columns(con):
    t = con.table("posts", fields={"rating": ("rating", "float64"), "country": "author.country",
                                   "when": ("when", "timestamp"), "level": ("meta.level", "int64")})
    rows = {r["title"] + r["$id"][-1]: r for r in t.to_pyarrow().to_pylist()}
    assert rows["alpha1"]["rating"] == 4.5 and rows["beta2"]["rating"] is None  # "n/a" does not convert
    assert json.loads(rows["alpha1"]["country"]) == "DE" and rows["theta6"]["country"] is None
    assert rows["alpha1"]["when"] == T0  # read through the {"$date": ...} tag, as a UTC timestamp
    assert rows["beta2"]["level"] == 3 and rows["gamma3"]["level"] is None
    typed = t.filter(field("author.country", "string") == "DE").select("title").to_pyarrow()["title"].to_pylist()
    assert sorted(typed) == ["alpha", "tau"]


def test_unpack_walks_typed_columns_and_reports_bad_paths(con):
    t = con.table("posts")
    out = unpack(t, {"first_tag": "tags.0"}).filter(_.title == "alpha").select("first_tag").to_pyarrow()
    assert out["first_tag"].to_pylist() == ["a", "a"]
    with pytest.raises(ValidationError, match="'title' has type string; it has no field 'x'"):
        field("title.x", table=t)
    with pytest.raises(ValidationError, match="did you mean 'views'"):
        field("veiws", table=t.select("title", "views"))


def test_unknown_table_names_the_known_ones_with_a_hint(con):
    with pytest.raises(ViewNotFoundError, match=r"unknown table 'post'; did you mean 'posts'\? \(known: .*posts"):
        con.table("post")


def test_table_reflects_writes_made_after_it_was_created(fresh):
    db, con = fresh
    coll = db.collection("events", {"n": "int"})
    coll.insert_many([{"n": i} for i in range(3)])
    db.flush()
    t = con.table("events")
    total = t.n.sum()
    assert total.execute() == 3
    coll.insert_many([{"n": 10}])  # staged: a read flushes this process's writes first
    assert total.execute() == 13
    other = make_db(db.config.url)  # another writer on the same store
    other.collection("events").insert_many([{"n": 100}])
    other.flush()
    other.close()
    assert total.execute() == 113
    assert t.count().execute() == 5


def test_as_of_returns_the_collection_at_that_time(fresh):
    db, con = fresh
    coll = db.collection("docs", {"v": "int"})
    (doc,) = coll.insert_many([{"v": 1}])
    db.flush()
    before = dt.datetime.now(UTC)
    coll.update(doc["$id"], {"$set": {"v": 2}})
    coll.insert_many([{"v": 3}])
    db.flush()
    assert sorted(con.table("docs").v.to_pyarrow().to_pylist()) == [2, 3]
    assert con.table("docs", as_of=before).v.to_pyarrow().to_pylist() == [1]
    coll.delete(doc["$id"])
    db.flush()
    assert con.table("docs").v.to_pyarrow().to_pylist() == [3]
    kept = con.table("docs", include_deleted=True)
    assert sorted(kept.v.to_pyarrow().to_pylist()) == [2, 3]
    assert kept.filter(_.deletedAt.notnull()).count().execute() == 1
    with pytest.raises(ValidationError, match="as_of must be a datetime"):
        con.table("docs", as_of="yesterday")


# -- results ----------------------------------------------------------------------------------------


def test_every_result_exit_returns_the_same_rows(con):
    t = con.table("posts").filter(_.views.notnull()).select("title", "views", "meta").order_by("views")
    expected = [("theta", 1), ("beta", 2), ("tau", 7), ("alpha", 10), ("alpha", 40)]
    frame = t.to_pandas()
    assert list(zip(frame["title"], frame["views"], strict=True)) == expected
    assert frame["meta"].iloc[0] == {"level": 0, "x": "y"}  # JSON decoded for pandas
    table = t.to_pyarrow()
    assert isinstance(table, pa.Table) and table["views"].to_pylist() == [v for _, v in expected]
    polars_frame = t.to_polars()
    assert polars_frame["views"].to_list() == [v for _, v in expected]
    assert json.loads(polars_frame["meta"][0]) == {"level": 0, "x": "y"}  # JSON arrives as text
    batches = list(t.to_pyarrow_batches(chunk_size=2))
    assert sum(b.num_rows for b in batches) == len(expected)
    assert t.views.max().execute() == 40
    assert t.views.to_pyarrow().to_pylist() == [v for _, v in expected]


def test_filter_group_by_aggregate_and_join_over_collections(con):
    posts, people = con.table("posts"), con.table("people")
    per_title = (posts.filter(posts.views.notnull()).group_by("title")
                 .aggregate(n=_.count(), views=_.views.sum()).order_by("title").to_pyarrow().to_pylist())
    assert per_title[0] == {"title": "alpha", "n": 2, "views": 50}
    name = field("author.name", "string")
    joined = (posts.mutate(author_name=name)
              .join(people.mutate(team=field("team", "string")), _.author_name == people.name)
              .group_by("team").aggregate(posts=_.count(), views=_.views.sum()).order_by("team"))
    assert joined.to_pyarrow().to_pylist() == [{"team": "core", "posts": 2, "views": 50},
                                             {"team": "web", "posts": 1, "views": 2}]


# -- mongo() ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("filter", FILTERS, ids=[json.dumps(f, default=str)[:60] for f in FILTERS])
def test_mongo_keeps_the_rows_find_returns(db, con, filter):
    expected = local_ids(db.collection("posts").find(filter))
    assert short(ids(con.table("posts").filter(mongo(filter)))) == expected


def test_mongo_composes_with_mutate_aggregates_and_projections(con):
    t = con.table("posts")
    flagged = t.mutate(hot=mongo({"views": {"$gte": 7}})).filter(_.hot).count().execute()
    assert flagged == 3
    per_country = (t.group_by(country=field("author.country", "string"))
                   .aggregate(n=_.count(), busy=_.count(where=mongo({"views": {"$gt": 5}}, t)))
                   .order_by("country").to_pyarrow().to_pylist())
    assert {"country": "DE", "n": 2, "busy": 2} in per_country
    # a projection without $data has no undeclared fields: they are missing, as in view.find
    projected = t.select("$id", "title", "views")
    assert short(ids(projected.filter(mongo({"rating": {"$exists": False}, "views": {"$lt": 3}})))) == ["p2", "p6"]
    assert t.filter(mongo({})).count().execute() == len(POSTS)


def test_mongo_rejects_malformed_filters_when_called(con):
    with pytest.raises(UnknownOperatorError, match=r"did you mean '\$gte'"):
        mongo({"views": {"$gtee": 1}})
    with pytest.raises(FilterError):
        con.table("posts").filter(mongo({"tags": {"$size": -1}}))


def test_layout_of_declares_every_plain_column():
    layout, as_variant = layout_of(ibis.schema({"$id": "string", "n": "int32", "p": "decimal(9,2)", "s": "struct<a: int64>",
                                                "l": "array<string>", "$data": "json", "a.b": "string"}))
    assert layout.to_spec() == {"n": "int", "p": "decimal(9,2)", "s": "variant", "l": "string[]"}
    assert as_variant == {"s"}


def test_mongo_reads_struct_columns_as_variants(con):
    t = con.sql("SELECT 1 AS i, {'a': 5, 'b': 'x'} AS s UNION ALL SELECT 2, {'a': 7, 'b': 'y'}", dialect="duckdb")
    assert t.filter(mongo({"s.a": {"$gt": 6}})).i.to_pyarrow().to_pylist() == [2]


# -- SQL ----------------------------------------------------------------------------------------------------


def test_sql_reads_the_parquedb_dialect(fresh):
    db, con = fresh
    now = dt.datetime.now(UTC)
    db.collection("PageViews", {"path": "string"}).insert_many(
        [{"path": "/a", "client": {"country": "DE"}, "seenAt": now - dt.timedelta(minutes=5)},
         {"path": "/b", "client": {"country": "US"}, "seenAt": now - dt.timedelta(minutes=20)},
         {"path": "/c", "client": {"country": "DE"}, "seenAt": now - dt.timedelta(hours=3)}])
    db.flush()
    recent = con.sql("SELECT path, client.country FROM pageviews WHERE seenAt > NOW() - INTERVAL '1 hour' ORDER BY path")
    assert recent.to_pyarrow().to_pylist() == [{"path": "/a", "country": "DE"}, {"path": "/b", "country": "US"}]
    per_country = con.sql("SELECT client.country AS country, count(*) AS n FROM PageViews GROUP BY 1")
    assert {r["country"]: r["n"] for r in per_country.to_pyarrow().to_pylist()} == {"DE": 2, "US": 1}
    composed = recent.filter(_.country == "DE").count()  # a SQL result composes like any table
    assert composed.execute() == 1
    raw = con.sql('SELECT count(*) AS n FROM "PageViews"', dialect="duckdb")
    assert raw.to_pyarrow()["n"].to_pylist() == [3]


def test_sql_result_reflects_writes_made_after_it_was_built(fresh):
    db, con = fresh
    coll = db.collection("counter", {"n": "int"})
    coll.insert_many([{"n": 1}])
    db.flush()
    total = con.sql("SELECT sum(n) AS s FROM counter")
    assert total.to_pyarrow()["s"].to_pylist() == [1]
    coll.insert_many([{"n": 2}])
    db.flush()
    assert total.to_pyarrow()["s"].to_pylist() == [3]


def test_sql_unknown_table_names_the_known_ones(con):
    with pytest.raises(UnknownTableError, match=r"unknown table 'postz'; did you mean 'posts'\?"):
        con.sql("SELECT * FROM postz")


def test_sql_reaches_tables_created_in_the_session(con):
    con.create_table("scratch2", ibis.memtable({"a": [1, 2, 3]}))
    try:
        assert con.sql("SELECT sum(a) AS s FROM scratch2").to_pyarrow()["s"].to_pylist() == [6]
    finally:
        con.raw_sql('DROP TABLE "scratch2"')


# -- views -------------------------------------------------------------------------------------------------


def tail_document(item: dict[str, Any]) -> dict[str, Any]:
    return {**item, "eventTimestamp": dt.datetime.fromtimestamp(item["eventTimestamp"] / 1000, UTC)}


@pytest.fixture(scope="module")
def tail(tmp_path_factory):
    """TailEvents with the WorkerErrors and WorkerRequests views (streaming), and a backend on them."""
    database = make_db(tmp_path_factory.mktemp("tail") / "store")
    seeds.define_seed_views(database, ["WorkerErrors", "WorkerRequests"])
    database.collection(seeds.TAIL_EVENTS).insert_many([tail_document(i) for i in generate_trace_items(150, seed=7)])
    database.flush()
    backend = ibis.parquedb.connect(database)
    yield database, backend
    backend.disconnect()
    database.close()


def _rows(table) -> Counter:
    return Counter(json.dumps(r, sort_keys=True, default=str) for r in table.to_pyarrow().to_pylist())


def _decoded(rows, json_columns) -> Counter:
    """Rows as comparable text, with JSON-text columns decoded (find returns decoded values)."""
    return Counter(json.dumps({c: json.loads(v) if c in json_columns and v is not None else v for c, v in r.items()},
                              sort_keys=True, default=str) for r in rows)


def test_views_are_tables_with_their_materialized_rows(tail):
    db, con = tail
    assert {"TailEvents", "WorkerErrors", "WorkerRequests"} <= set(con.list_tables())
    errors = con.table("WorkerErrors")
    assert errors.count().execute() == db.view("WorkerErrors").count() > 0
    described = {name: typ for name, typ, *_ in con.raw_sql('DESCRIBE "WorkerErrors"').fetchall()}
    assert set(described) == set(errors.columns)
    assert errors.schema()["colo"].is_json() and described["colo"] == "JSON"
    requests = con.table("WorkerRequests")
    by_status = requests.filter(mongo({"status": {"$gte": 500}})).count().execute()
    assert by_status == db.view("WorkerRequests").count({"status": {"$gte": 500}})


def test_view_rows_match_view_find(tail):
    db, con = tail
    errors = con.table("WorkerErrors")
    variants = {c for c, t in errors.schema().items() if t.is_json()}
    assert variants == {"colo", "url", "exceptionName", "exceptionMessage"}
    found = [{c: d.get(c) for c in errors.columns} for d in db.view("WorkerErrors").find()]
    assert _decoded(errors.to_pyarrow().to_pylist(), variants) == _decoded(found, ())


def test_view_to_ibis_evaluates_the_definition_live(tail):
    db, con = tail
    live = view_to_ibis(con, "WorkerErrors")
    assert _rows(live) == _rows(con.table("WorkerErrors"))
    adhoc = view_to_ibis(con, {"$from": "TailEvents", "$groupBy": ["outcome"], "$compute": {"n": {"$count": "*"}}})
    counts = {r["outcome"]: r["n"] for r in adhoc.to_pyarrow().to_pylist()}
    assert counts == dict(Counter(d["outcome"] for d in db.collection("TailEvents").find()))
    with pytest.raises(ViewNotFoundError, match="did you mean 'WorkerErrors'"):
        view_to_ibis(con, "WorkerError")


def test_sql_and_time_travel_on_views(tail):
    db, con = tail
    per_colo = con.sql("SELECT colo, count(*) AS n FROM workerrequests GROUP BY colo")
    assert sum(r["n"] for r in per_colo.to_pyarrow().to_pylist()) == db.view("WorkerRequests").count()
    tail_status = con.sql("SELECT count(*) AS n FROM TailEvents WHERE event.response.status >= 500")
    assert tail_status.to_pyarrow()["n"].to_pylist() == [db.view("WorkerRequests").count({"status": {"$gte": 500}})]
    with pytest.raises(ValidationError, match="as_of and include_deleted apply to collections"):
        con.table("WorkerErrors", as_of=T0)


def test_passthrough_view_keeps_data_as_json(fresh):
    db, con = fresh
    db.collection("items", {"n": "int"}).insert_many([{"n": i, "extra": {"even": i % 2 == 0}} for i in range(6)])
    db.flush()
    db.define_view("BigItems", {"$from": "items", "$filter": {"n": {"$gte": 2}}})
    t = con.table("BigItems")
    assert con.get_schema("BigItems") == t.schema() and t.schema()["$data"].is_json()
    assert t.filter(mongo({"extra.even": True})).count().execute() == db.view("BigItems").count({"extra.even": True}) == 2
    assert con.sql("SELECT count(*) AS n FROM bigitems WHERE extra.even = false").to_pyarrow()["n"].to_pylist() == [2]


def test_sql_follows_a_changed_view_definition(fresh):
    db, con = fresh
    db.collection("items", {"n": "int"}).insert_many([{"n": i, "extra": {"even": i % 2 == 0}} for i in range(4)])
    db.flush()
    db.define_view("Picked", {"$from": "items", "$select": {"n": "$n"}})
    assert con.sql("SELECT * FROM picked").columns == ("n",)
    db.alter_view("Picked", {"$from": "items", "$select": {"n": "$n", "even": "$extra.even"}})
    changed = con.sql("SELECT * FROM picked")
    assert set(changed.columns) == {"n", "even"}
    assert sorted(changed.n.to_pyarrow().to_pylist()) == [0, 1, 2, 3]
    assert set(con.table("Picked").columns) == {"n", "even"}


# -- S3 ----------------------------------------------------------------------------------------------------


@pytest.mark.s3
def test_s3_store_through_the_test_server(s3):
    options = store_options(s3)
    writer = parquedb_ibis.connect("s3://pqdb-test/ibis", flush_age=None, **options)
    writer.collection("posts", POSTS_SCHEMA).insert_many(POSTS[:4])
    writer.flush()
    writer.close()
    con = ibis.parquedb.connect("s3://pqdb-test/ibis", **options)
    try:
        t = con.table("posts")
        assert t.count().execute() == 4
        assert short(ids(t.filter(mongo({"author.country": {"$in": ["DE", "FR"]}})))) == ["p1", "p3"]
        assert con.sql("SELECT count(*) AS n FROM posts WHERE author.name = 'bob'").to_pyarrow()["n"].to_pylist() == [1]
    finally:
        con.disconnect()


@pytest.mark.s3
def test_ibis_connect_parquedb_s3_url(s3):
    assert importlib.metadata.entry_points(group="ibis.backends", name="parquedb+s3"), "pyproject declares it"
    query = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in store_options(s3).items())
    con = ibis.connect(f"parquedb+s3://pqdb-test/ibis-url?{query}")
    try:
        assert con.db.config.url.startswith("s3://pqdb-test/ibis-url") and con.list_tables() == []
    finally:
        con.disconnect()


def test_unknown_url_scheme_is_a_configuration_error():
    from urllib.parse import urlparse

    with pytest.raises(parquedb_ibis.errors.ConfigurationError, match=re.escape("unknown scheme 'parquedb+gcs'")):
        Backend()._from_url(urlparse("parquedb+gcs://bucket/x"))
