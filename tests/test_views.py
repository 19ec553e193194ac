"""Materialized views end to end: define, query, refresh modes, streaming, schedules, staleness, seeds."""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import warnings
from collections import Counter
from typing import Any

import duckdb
import pytest

import parquedb_ibis
from parquedb_ibis.errors import CommitConflictError, ViewCycleError, ViewDefinitionError, ViewNotFoundError
from parquedb_ibis.tail.sample import generate_trace_items
from parquedb_ibis.views import Database, View, catalog, refresh, seeds, watch

UTC = dt.timezone.utc


def make_db(path, **options) -> Database:
    db = parquedb_ibis.connect(str(path), flush_age=None, **options)
    assert isinstance(db, Database)
    return db


@pytest.fixture
def db(tmp_path):
    database = make_db(tmp_path / "store")
    yield database
    database.close()


@pytest.fixture
def orders(db):
    coll = db.collection("Orders", {"status": "string", "total": "int", "placedAt": "timestamp"})
    t0 = dt.datetime(2024, 1, 1, tzinfo=UTC)
    coll.insert_many([{"status": s, "total": t, "placedAt": t0 + dt.timedelta(hours=h)}
                      for s, t, h in [("paid", 10, 0), ("paid", 30, 1), ("open", 5, 1), ("void", 7, 30)]])
    db.flush()
    return coll


def by_status(view: View) -> dict[str, dict[str, Any]]:
    return {r["status"]: r for r in view.find()}


GROUPED = {"$from": "Orders", "$groupBy": ["status"],
           "$compute": {"n": {"$count": "*"}, "total": {"$sum": "total"}, "avg": {"$avg": "total"},
                        "lo": {"$min": "total"}, "hi": {"$max": "total"}}}


# -- defining and querying ----------------------------------------------------------------------


def test_connect_builds_the_views_database(tmp_path):
    db = make_db(tmp_path / "s")
    assert db.list_views() == []
    db.close()


def test_streaming_view_is_populated_at_definition_and_queryable_like_a_collection(db, orders):
    view = db.define_view("Paid", {"$from": "Orders", "$filter": {"status": "paid"}})
    assert view.count() == 2
    assert view.count({"total": {"$gt": 15}}) == 1
    assert view.find_one({"total": 30})["status"] == "paid"
    assert [d["total"] for d in view.find(sort={"total": -1})] == [30, 10]
    assert view.distinct("status") == ["paid"]
    assert set(view.find()[0]) >= {"$id", "status", "total", "placedAt", "createdAt"}
    rows = db.query_rows(view.relation())
    assert sorted(r["total"] for r in rows) == [10, 30]
    assert db.relation("Paid").sql("duckdb") == view.relation().sql("duckdb")


def test_grouped_view_rows_and_types(db, orders):
    view = db.define_view("ByStatus", GROUPED)
    assert by_status(view)["paid"] == {"status": "paid", "n": 2, "total": 40, "avg": 20.0, "lo": 10, "hi": 30}
    assert view.plan.output_types == {"status": "VARCHAR", "n": "BIGINT", "total": "BIGINT", "avg": "DOUBLE",
                                      "$agg.avg.sum": "DOUBLE", "$agg.avg.n": "BIGINT", "lo": "BIGINT", "hi": "BIGINT"}
    assert set(db.query_rows(view.relation())[0]) == {"status", "n", "total", "avg", "lo", "hi"}


def test_define_view_rejects_unknown_sources_existing_names_and_collections(db, orders):
    with pytest.raises(ViewDefinitionError, match="did you mean 'Orders'"):
        db.define_view("X", {"$from": "Order"})
    db.define_view("X", {"$from": "Orders"})
    with pytest.raises(ViewDefinitionError, match="already exists"):
        db.define_view("X", {"$from": "Orders"})
    with pytest.raises(ViewDefinitionError, match="is a collection"):
        db.define_view("Orders", {"$from": "Orders"})
    with pytest.raises(ViewNotFoundError, match="unknown view 'Y'"):
        db.view("Y")


def test_alter_view_detects_cycles_and_rebuilds(db, orders):
    db.define_view("A", {"$from": "Orders"})
    db.define_view("B", {"$from": "A", "$groupBy": ["status"], "$compute": {"n": {"$count": "*"}}})
    with pytest.raises(ViewCycleError, match="A → B → A"):
        db.alter_view("A", {"$from": "B"})
    db.alter_view("A", {"$from": "Orders", "$filter": {"status": "paid"}})
    assert [r["n"] for r in db.view("B").find()] == [2]
    assert db.view_state("B").last_refresh_mode == "full"


def test_alter_view_refuses_a_definition_that_breaks_a_reader(db, orders):
    db.define_view("A", {"$from": "Orders", "$select": {"status": "$status", "total": "$total"}})
    db.define_view("B", {"$from": "A", "$groupBy": ["status"], "$compute": {"t": {"$sum": "total"}}})
    db.alter_view("A", {"$from": "Orders", "$select": {"status": "$status"}})  # B's $sum of a missing field is 0, still valid
    assert {r["status"]: r["t"] for r in db.view("B").find()} == {"paid": 0, "open": 0, "void": 0}


def test_drop_view_refuses_while_read_and_deletes_files(db, orders):
    db.define_view("A", {"$from": "Orders"})
    db.define_view("B", {"$from": "A"})
    with pytest.raises(ViewDefinitionError, match="views B read this view"):
        db.drop_view("A")
    db.drop_view("B")
    db.drop_view("A")
    assert db.list_views() == []
    assert list(db.store.list("_views/")) == []
    with pytest.raises(ViewNotFoundError):
        db.drop_view("A")


# -- refresh modes ----------------------------------------------------------------------------


def test_create_only_segments_append_to_non_grouped_views(db, orders):
    db.define_view("Big", {"$from": "Orders", "$filter": {"total": {"$gte": 7}}, "$refresh": {"mode": "manual"}})
    assert db.refresh_view("Big").mode == "full"
    orders.insert_many([{"status": "paid", "total": 99}, {"status": "open", "total": 1}])
    db.flush()
    state = db.view_state("Big")
    assert (state.state, state.behind) == ("stale", {"Orders": 1})
    result = db.refresh_view("Big")
    assert (result.mode, result.document_count) == ("incremental", 4)
    state = db.view_state("Big")
    assert (state.state, len(state.files), state.watermarks) == ("ready", 2, {"Orders": 2})
    assert state.size_bytes == sum(db.store.head(k).size for k in state.files)
    assert state.state in catalog.STATES and state.last_refresh_mode in catalog.REFRESH_KINDS
    assert db.refresh_view("Big").mode == "none"


def test_create_only_segments_merge_decomposable_aggregates(db, orders):
    view = db.define_view("ByStatus", GROUPED)
    orders.insert_many([{"status": "paid", "total": 2}, {"status": "new", "total": 4}])
    db.flush()
    assert db.view_state("ByStatus").last_refresh_mode == "incremental"
    assert by_status(view)["paid"] == {"status": "paid", "n": 3, "total": 42, "avg": 14.0, "lo": 2, "hi": 30}
    assert by_status(view)["new"]["n"] == 1


def test_updates_and_deletes_recompute_affected_groups(db, orders):
    view = db.define_view("ByStatus", GROUPED)
    paid = orders.find({"status": "paid"}, sort={"total": 1})
    orders.update(paid[0]["$id"], {"$set": {"status": "open"}})
    orders.delete(paid[1]["$id"])
    db.flush()
    state = db.view_state("ByStatus")
    assert state.last_refresh_mode == "recompute-groups"
    assert by_status(view) == {
        "open": {"status": "open", "n": 2, "total": 15, "avg": 7.5, "lo": 5, "hi": 10},
        "void": {"status": "void", "n": 1, "total": 7, "avg": 7.0, "lo": 7, "hi": 7},
    }


def test_hard_deletes_remove_rows_of_non_grouped_views(db, orders):
    view = db.define_view("All", {"$from": "Orders", "$select": {"s": "$status", "t": "$total"}})
    void = orders.find_one({"status": "void"})
    orders.delete(void["$id"], hard=True)
    orders.update(orders.find_one({"status": "open"})["$id"], {"$inc": {"total": 1}})
    db.flush()
    assert db.view_state("All").last_refresh_mode == "recompute-groups"
    assert sorted((r["s"], r["t"]) for r in view.find()) == [("open", 6), ("paid", 10), ("paid", 30)]


def test_non_decomposable_aggregates_recompute_only_affected_groups(db, orders):
    view = db.define_view("Spread", {"$from": "Orders", "$groupBy": ["status"],
                                     "$compute": {"d": {"$countDistinct": "total"}, "p50": {"$percentile": ["total", 50]}}})
    orders.insert_many([{"status": "paid", "total": 10}, {"status": "paid", "total": 50}])
    db.flush()
    state = db.view_state("Spread")
    assert state.last_refresh_mode == "recompute-groups"
    assert by_status(view)["paid"] == {"status": "paid", "d": 3, "p50": 20.0}
    assert by_status(view)["open"] == {"status": "open", "d": 1, "p50": 5.0}


def test_time_bucket_view_updates_the_right_bucket(db, orders):
    view = db.define_view("Hourly", {"$from": "Orders", "$groupBy": [{"hour": "$placedAt"}],
                                     "$compute": {"n": {"$count": "*"}, "u": {"$countDistinct": "status"}}})
    late = orders.find_one({"status": "void"})
    orders.update(late["$id"], {"$set": {"placedAt": dt.datetime(2024, 1, 1, 1, 15, tzinfo=UTC)}})
    db.flush()
    rows = {r["hour"]: (r["n"], r["u"]) for r in view.find()}
    assert rows == {dt.datetime(2024, 1, 1, 0, tzinfo=UTC): (1, 1), dt.datetime(2024, 1, 1, 1, tzinfo=UTC): (3, 3)}


def test_append_strategy_only_adds_new_entities(db, orders):
    view = db.define_view("Log", {"$from": "Orders", "$refresh": {"strategy": "append"}})
    orders.update(orders.find_one({"status": "open"})["$id"], {"$set": {"status": "paid"}})
    orders.insert_many([{"status": "new", "total": 1}])
    db.flush()
    assert db.view_state("Log").last_refresh_mode == "incremental"
    assert sorted(r["status"] for r in view.find()) == ["new", "open", "paid", "paid", "void"]
    db.refresh_view("Log", full=True)
    assert sorted(r["status"] for r in view.find()) == ["new", "paid", "paid", "paid", "void"]


def test_chained_views_refresh_in_dependency_order(db, orders):
    manual = {"mode": "manual"}
    db.define_view("Rows", {"$from": "Orders", "$select": {"status": "$status", "total": "$total"}, "$refresh": manual})
    db.define_view("Sums", {"$from": "Rows", "$groupBy": ["status"], "$compute": {"t": {"$sum": "total"}}, "$refresh": manual})
    db.define_view("Top", {"$from": "Sums", "$filter": {"t": {"$gte": 10}}, "$refresh": manual})
    assert db.view_state("Top").state == "pending"
    db.refresh_view("Top")  # refreshes Rows, then Sums, then Top
    assert {r["status"] for r in db.view("Top").find()} == {"paid"}
    orders.insert_many([{"status": "open", "total": 20}])
    db.flush()
    assert db.view_state("Top").behind == {"Sums": 1}
    db.refresh_view("Top")
    assert {r["status"]: r["t"] for r in db.view("Top").find()} == {"paid": 40, "open": 25}
    assert db.view_state("Rows").last_refresh_mode == "incremental"
    assert db.view_state("Sums").last_refresh_mode == "incremental"
    assert db.view_state("Top").last_refresh_mode == "full"  # Sums was rewritten


def test_streaming_views_cascade_through_streaming_chains_on_flush(db, orders):
    db.define_view("Rows", {"$from": "Orders", "$select": {"status": "$status", "total": "$total"}})
    db.define_view("Sums", {"$from": "Rows", "$groupBy": ["status"], "$compute": {"t": {"$sum": "total"}}})
    orders.insert_many([{"status": "paid", "total": 1}])
    db.flush()
    assert {r["status"]: r["t"] for r in db.view("Sums").find()}["paid"] == 41
    assert db.view_state("Sums").last_refresh_mode == "incremental"
    assert db.background_errors == []


def test_compaction_keeps_appended_files_readable_by_chained_views(db, orders, monkeypatch):
    monkeypatch.setattr(refresh, "COMPACT_FILES", 3)
    db.define_view("Rows", {"$from": "Orders", "$select": {"status": "$status", "total": "$total"}})
    db.define_view("Sums", {"$from": "Rows", "$groupBy": ["status"], "$compute": {"t": {"$sum": "total"}}})
    for i in range(5):
        orders.insert_many([{"status": "paid", "total": 1}])
        db.flush()
    assert len(db.view_state("Rows").files) < 3
    assert {r["status"]: r["t"] for r in db.view("Sums").find()}["paid"] == 45
    assert db.view_state("Sums").last_refresh_mode == "incremental"


def test_retired_files_are_deleted_after_the_grace_period(db, orders, monkeypatch):
    monkeypatch.setattr(catalog, "RETIRE_AFTER", dt.timedelta(0))
    db.define_view("ByStatus", GROUPED)
    first = db.view_state("ByStatus").files
    orders.insert_many([{"status": "paid", "total": 1}])
    db.flush()
    orders.insert_many([{"status": "paid", "total": 1}])
    db.flush()
    keys = {info.key for info in db.store.list("_views/ByStatus/data/")}
    assert not keys & set(first)
    assert keys >= set(db.view_state("ByStatus").files)


def test_a_failed_refresh_is_recorded_as_error_and_in_background_errors(db):
    coll = db.collection("Nums", {"n": "int"})
    db.define_view("Squares", {"$from": "Nums", "$select": {"sq": {"$multiply": ["$n", "$n"]}}})
    coll.insert_many([{"n": 2**40}])
    db.flush()
    state = db.view_state("Squares")
    assert state.state == "error" and "QueryError" in state.error
    assert len(db.background_errors) == 1
    coll.update(coll.find_one()["$id"], {"$set": {"n": 3}})
    db.flush()
    assert db.view_state("Squares").state == "ready"
    assert db.view("Squares").find() == [{"sq": 9}]


def test_concurrent_refreshes_from_two_processes_converge(tmp_path, orders, db):
    other = make_db(db.store.config.root)
    db.define_view("ByStatus", {**GROUPED, "$refresh": {"mode": "manual"}})
    orders.insert_many([{"status": "paid", "total": 100}])
    db.flush()
    head, etag = db.view_catalog.require("ByStatus")
    db.refresh_view("ByStatus")
    with pytest.raises(CommitConflictError):  # a commit based on the old head loses
        db.view_catalog.commit(head, etag, [catalog.SetState("ready")], [catalog.AssertViewVersion(head.version)])
    assert other.refresh_view("ByStatus").mode == "none"
    assert by_status(other.view("ByStatus"))["paid"]["total"] == 140
    other.close()


def test_writes_from_another_process_are_caught_up_by_refresh_stale_and_watch(tmp_path, db, orders):
    db.define_view("ByStatus", GROUPED)
    other = make_db(db.store.config.root)
    other.collection("Orders").insert_many([{"status": "paid", "total": 1}])
    other.flush()  # other has the view too: its own flush hook refreshes it
    other.collection("Orders").insert_many([{"status": "paid", "total": 1}])
    other.flush_hooks.clear()
    other.flush()
    assert db.view_state("ByStatus").behind == {"Orders": 1}
    assert watch(db, interval=0.01, stop_after=0.0) == 1
    assert by_status(db.view("ByStatus"))["paid"]["n"] == 4
    other.close()


# -- schedules and staleness -------------------------------------------------------------------------


def test_scheduled_views_refresh_when_their_cron_fires(db, orders):
    db.define_view("Hourly", {**GROUPED, "$refresh": {"mode": "scheduled", "schedule": "0 * * * *"}})
    state = db.view_state("Hourly")
    assert state.state == "pending" and state.next_refresh_at.minute == 0
    assert db.refresh_due(now=state.next_refresh_at - dt.timedelta(seconds=1)) == []
    (result,) = db.refresh_due(now=state.next_refresh_at)
    assert result.mode == "full"
    assert db.view_state("Hourly").next_refresh_at > state.next_refresh_at


def test_scheduled_view_times_follow_the_view_timezone(db, orders):
    db.define_view("Daily", {**GROUPED, "$refresh": {"mode": "scheduled", "schedule": "0 2 * * *", "timezone": "Asia/Tokyo"}})
    nxt = db.view_state("Daily").next_refresh_at
    assert nxt.astimezone(dt.timezone(dt.timedelta(hours=9))).hour == 2


def test_stale_reads_refresh_first_by_default(db, orders):
    db.define_view("Slow", {**GROUPED, "$refresh": {"mode": "scheduled", "schedule": "0 0 1 1 *", "gracePeriod": "1ms"}})
    db.refresh_view("Slow")
    orders.insert_many([{"status": "paid", "total": 1}])
    db.flush()
    assert by_status(db.view("Slow"))["paid"]["n"] == 3
    assert db.view_state("Slow").state == "ready"


def test_stale_reads_warn_when_configured_and_for_manual_views(db, orders):
    db.define_view("Manual", {**GROUPED, "$refresh": {"mode": "manual", "gracePeriod": "1ms"}})
    db.refresh_view("Manual")
    orders.insert_many([{"status": "paid", "total": 1}])
    db.flush()
    with pytest.warns(UserWarning, match=r"view 'Manual' misses source changes older than its gracePeriod"):
        assert by_status(db.view("Manual"))["paid"]["n"] == 2
    db.stale_reads = "ignore"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert db.view("Manual").count() == 3


def test_within_the_grace_period_reads_do_not_refresh(db, orders):
    db.define_view("Lazy", {**GROUPED, "$refresh": {"mode": "scheduled", "schedule": "0 0 1 1 *", "gracePeriod": "1h"}})
    db.refresh_view("Lazy")
    orders.insert_many([{"status": "paid", "total": 1}])
    db.flush()
    assert by_status(db.view("Lazy"))["paid"]["n"] == 2
    assert db.view_state("Lazy").state == "stale"


# -- S3 ----------------------------------------------------------------------------------------------


@pytest.mark.s3
def test_views_refresh_on_s3(s3_url):
    url, options = s3_url
    db = parquedb_ibis.connect(url, flush_age=None, **options)
    coll = db.collection("Orders", {"status": "string", "total": "int"})
    coll.insert_many([{"status": "a", "total": 1}, {"status": "b", "total": 2}])
    db.flush()
    view = db.define_view("ByStatus", {"$from": "Orders", "$groupBy": ["status"], "$compute": {"t": {"$sum": "total"}}})
    coll.insert_many([{"status": "a", "total": 5}])
    db.flush()
    assert {r["status"]: r["t"] for r in view.find()} == {"a": 6, "b": 2}
    assert db.view_state("ByStatus").last_refresh_mode == "incremental"
    db.close()


# -- the seed views against hand-written DuckDB queries -------------------------------------------------------


def tail_document(item: dict[str, Any]) -> dict[str, Any]:
    return {**item, "eventTimestamp": dt.datetime.fromtimestamp(item["eventTimestamp"] / 1000, UTC)}


def make_ai_requests(n: int, seed: int = 3) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    t0 = dt.datetime(2025, 1, 1, tzinfo=UTC)
    out = []
    for _ in range(n):
        prompt, completion = rng.randint(10, 2000), rng.randint(5, 800)
        doc = {"modelId": rng.choice(["gpt-4o", "claude-3-5", "llama-3"]), "providerId": "p",
               "promptTokens": prompt, "completionTokens": completion, "totalTokens": prompt + completion,
               "latencyMs": rng.randint(50, 5000), "cost": rng.randint(1, 500) / 1000, "cached": rng.random() < 0.3,
               "timestamp": t0 + dt.timedelta(minutes=rng.randint(0, 3 * 24 * 60)), "userId": f"u{rng.randint(1, 20)}"}
        if rng.random() < 0.1:
            doc["error"] = {"message": "rate limited"}
        out.append(doc)
    return out


EXPECTED_SQL: dict[str, str] = {
    "WorkerLogs": """
        SELECT item->>'scriptName', item->>'outcome', epoch_ms((item->>'eventTimestamp')::BIGINT),
               l->>'level', CAST(l->'message' AS VARCHAR), (l->>'timestamp')::BIGINT
        FROM (SELECT item, unnest(CAST(item->'logs' AS JSON[])) AS l FROM raw)""",
    "WorkerErrors": """
        SELECT item->>'scriptName', item->>'outcome', epoch_ms((item->>'eventTimestamp')::BIGINT),
               item->'exceptions'->0->>'name', item->'exceptions'->0->>'message',
               item->'event'->'request'->>'url', item->'event'->'request'->'cf'->>'colo'
        FROM raw WHERE item->>'outcome' <> 'ok' OR json_array_length(item->'exceptions') > 0""",
    "WorkerRequests": """
        SELECT item->>'scriptName', item->>'outcome', r->>'url', r->>'method', (item->'event'->'response'->>'status')::BIGINT,
               r->'cf'->>'colo', r->'cf'->>'country', r->'headers'->>'cf-ray', (item->>'cpuTime')::BIGINT,
               (item->>'wallTime')::BIGINT, epoch_ms((item->>'eventTimestamp')::BIGINT)
        FROM (SELECT item, item->'event'->'request' AS r FROM raw) WHERE r IS NOT NULL""",
    "EndpointMetrics": """
        SELECT s, m, h, count(*), avg(CASE WHEN status >= 500 THEN 1 ELSE 0 END), avg(wall), max(wall)
        FROM requests GROUP BY s, m, h""",
    "ColoErrors": """
        SELECT colo, h, count(*), sum(CASE WHEN status >= 500 THEN 1 ELSE 0 END),
               avg(CASE WHEN status >= 500 THEN 1 ELSE 0 END)
        FROM requests GROUP BY colo, h""",
    "RequestLatency": """
        SELECT s, h, count(*), quantile_cont(wall, 0.5), quantile_cont(wall, 0.95), quantile_cont(wall, 0.99)
        FROM requests GROUP BY s, h""",
    "ErrorPatterns": """
        SELECT item->>'scriptName', e->>'name', date_trunc('day', epoch_ms((item->>'eventTimestamp')::BIGINT)), count(*),
               min(epoch_ms((item->>'eventTimestamp')::BIGINT)), max(epoch_ms((item->>'eventTimestamp')::BIGINT))
        FROM (SELECT item, unnest(CAST(item->'exceptions' AS JSON[])) AS e FROM raw) GROUP BY ALL""",
    "StatusCodes": "SELECT status, h, count(*) FROM requests GROUP BY status, h",
    "SampledRequests": """
        SELECT s, outcome, url, m, status, colo, country, ray, cpu, wall, ts FROM requests
        WHERE CAST('0x' || left(md5(ray), 13) AS BIGINT) % 10 = 0""",
    "DailyAIUsage": """
        SELECT CAST(ts AS DATE), model, count(*), sum(prompt), sum(completion), sum(total), sum(cost), avg(latency),
               quantile_cont(latency, 0.95), avg(CASE WHEN cached THEN 1 ELSE 0 END),
               sum(CASE WHEN error IS NOT NULL THEN 1 ELSE 0 END), count(DISTINCT user_id)
        FROM ai GROUP BY ALL""",
}

#: Output columns compared, in the order of the expected query.
COLUMNS: dict[str, list[str]] = {
    "WorkerLogs": ["scriptName", "outcome", "eventTimestamp", "level", "message", "timestamp"],
    "WorkerErrors": ["scriptName", "outcome", "timestamp", "exceptionName", "exceptionMessage", "url", "colo"],
    "WorkerRequests": ["scriptName", "outcome", "url", "method", "status", "colo", "country", "requestId", "cpuTime",
                       "wallTime", "timestamp"],
    "EndpointMetrics": ["scriptName", "method", "hour", "requestCount", "errorRate", "avgWallTime", "maxWallTime"],
    "ColoErrors": ["colo", "hour", "requests", "errors", "errorRate"],
    "RequestLatency": ["scriptName", "hour", "requests", "p50", "p95", "p99"],
    "ErrorPatterns": ["scriptName", "name", "day", "occurrences", "firstSeen", "lastSeen"],
    "StatusCodes": ["status", "hour", "count"],
    "SampledRequests": ["scriptName", "outcome", "url", "method", "status", "colo", "country", "requestId", "cpuTime",
                        "wallTime", "timestamp"],
    "DailyAIUsage": ["date", "modelId", "requests", "promptTokens", "completionTokens", "totalTokens", "cost",
                     "avgLatencyMs", "p95LatencyMs", "cacheHitRate", "errors", "users"],
}


def _norm(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else value
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.dumps(json.loads(value), separators=(",", ":"), sort_keys=True)
        except ValueError:
            return value
    return value


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """Seed views fed through streaming refreshes (full, then incremental, then an update), plus the raw items."""
    db = make_db(tmp_path_factory.mktemp("seeds") / "store")
    items = generate_trace_items(400, seed=11)
    seeds.define_seed_views(db)
    tail = db.collection(seeds.TAIL_EVENTS)
    tail.insert_many([tail_document(i) for i in items[:250]])
    db.flush()
    tail.insert_many([tail_document(i) for i in items[250:]])
    db.flush()
    changed = tail.find({"outcome": "ok"}, sort={"eventTimestamp": 1}, limit=5)
    for doc in changed:
        tail.update(doc["$id"], {"$set": {"outcome": "canceled"}})
    db.flush()
    touched = {d["eventTimestamp"] for d in changed}
    for item in items:
        if tail_document(item)["eventTimestamp"] in touched and item["outcome"] == "ok":
            item["outcome"] = "canceled"
    ai = make_ai_requests(300)
    db.collection(seeds.AI_REQUESTS).insert_many(ai)
    db.flush()
    db.refresh_view("DailyAIUsage")
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE TABLE raw (item JSON)")
    con.executemany("INSERT INTO raw VALUES (?)", [[json.dumps(i)] for i in items])
    con.execute("""CREATE TABLE requests AS SELECT item->>'scriptName' s, item->>'outcome' outcome, r->>'url' url,
        r->>'method' m, (item->'event'->'response'->>'status')::BIGINT status, r->'cf'->>'colo' colo,
        r->'cf'->>'country' country, r->'headers'->>'cf-ray' ray, (item->>'cpuTime')::BIGINT cpu,
        (item->>'wallTime')::BIGINT wall, epoch_ms((item->>'eventTimestamp')::BIGINT) ts,
        date_trunc('hour', epoch_ms((item->>'eventTimestamp')::BIGINT)) h
        FROM (SELECT item, item->'event'->'request' AS r FROM raw) WHERE r IS NOT NULL""")
    con.execute("""CREATE TABLE ai (model VARCHAR, prompt BIGINT, completion BIGINT, total BIGINT, latency BIGINT,
        cost DOUBLE, cached BOOLEAN, ts TIMESTAMPTZ, user_id VARCHAR, error VARCHAR)""")
    con.executemany("INSERT INTO ai VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
        [d["modelId"], d["promptTokens"], d["completionTokens"], d["totalTokens"], d["latencyMs"], d["cost"],
         d["cached"], d["timestamp"], d["userId"], json.dumps(d["error"]) if "error" in d else None] for d in ai])
    yield db, con
    con.close()
    db.close()


@pytest.mark.parametrize("name", list(seeds.SEED_VIEWS))
def test_seed_view_matches_a_hand_written_duckdb_query(seeded, name):
    db, con = seeded
    expected = Counter(tuple(_norm(v) for v in row) for row in con.execute(EXPECTED_SQL[name]).fetchall())
    got = Counter(tuple(_norm(r.get(c)) for c in COLUMNS[name]) for r in db.view(name).find())
    assert got == expected
    assert sum(expected.values()) > 0


def test_seed_views_took_every_refresh_path(seeded):
    db, _ = seeded
    modes = {name: db.view_state(name).last_refresh_mode for name in seeds.SEED_VIEWS}
    assert modes["WorkerLogs"] == "recompute-groups"  # the outcome updates replaced the touched traces' rows
    assert modes["EndpointMetrics"] == "full"  # its source view was rewritten by the update
    assert modes["DailyAIUsage"] == "full"
    assert all(db.view_state(name).state == "ready" for name in seeds.SEED_VIEWS)
    assert db.background_errors == []
