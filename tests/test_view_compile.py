"""The view DSL compiler: validation, messages, and the semantics docs/views.md defines, run in DuckDB."""

from __future__ import annotations

import datetime as dt
import hashlib
import statistics
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from parquedb_ibis import compile_view
from parquedb_ibis.compile import sql
from parquedb_ibis.compile.views import (
    AGGREGATES,
    EXPRESSIONS,
    TIME_BUCKETS,
    CollectionSource,
    ViewSource,
    check_cron,
    define_view,
    parse_duration,
    plan_view,
    validate_view,
)
from parquedb_ibis.errors import ViewCycleError, ViewDefinitionError
from parquedb_ibis.query import find
from parquedb_ibis.schema import Schema, to_row
from parquedb_ibis.views import seeds
from parquedb_ibis.writer.events import state_schema

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 1, 3, 10, 30, tzinfo=UTC)  # a Wednesday


def make_documents(docs: list[dict[str, Any]], ns: str = "T") -> list[dict[str, Any]]:
    """Documents with the system fields a collection would give them (ids in input order)."""
    return [{"$id": f"{ns}/{i:04d}", "$type": ns, "createdAt": T0, "updatedAt": T0, "version": 1, **d}
            for i, d in enumerate(docs)]


def make_connection(tables: dict[str, tuple[Schema, list[dict[str, Any]]]]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    for name, (schema, docs) in tables.items():
        rows = [to_row(schema.validate(d, name), schema) for d in make_documents(docs, name)]
        con.register("_arrow", pa.Table.from_pylist(rows, schema=state_schema(schema)))
        con.execute(f'CREATE TABLE "{name}" AS SELECT * FROM _arrow')
        con.unregister("_arrow")
    return con


def rows_of(definition: dict[str, Any], docs: list[dict[str, Any]], schema: dict[str, str] | None = None,
            *, sort: dict[str, Any] | None = None, extra: dict[str, tuple[Schema, list]] | None = None) -> list[dict]:
    """The view's rows (as documents, via find) over ``docs`` loaded as collection T."""
    parsed = Schema.parse(schema)
    con = make_connection({"T": (parsed, docs), **(extra or {})})
    catalog = {name: CollectionSource(s) for name, (s, _) in {"T": (parsed, docs), **(extra or {})}.items()}
    plan = plan_view("V", definition, catalog)
    lookups = {c: sql.table(c) for c in plan.lookups}
    con.execute('CREATE TABLE "V" AS ' + sql.render(plan.output(sql.table("T"), lookups)))
    return find(con, plan.readable(sql.table("V")), plan.layout, sort=sort)


def error_of(definition: Any, catalog: dict[str, Any] | None = None, name: str = "V") -> ViewDefinitionError:
    with pytest.raises(ViewDefinitionError) as info:
        plan_view(name, definition, catalog if catalog is not None else {"T": CollectionSource()})
    return info.value


# -- shape validation (upstream defineView) --------------------------------------------------------------


def test_define_view_fills_refresh_defaults_like_upstream():
    assert define_view({"$from": "Orders", "$refresh": {"mode": "manual"}})["$refresh"] == {
        "mode": "manual", "strategy": "replace", "timezone": "UTC"}


@pytest.mark.parametrize("definition, code, path", [
    ({}, "MISSING_FROM", "$from"),
    ({"$from": ""}, "INVALID_FROM", "$from"),
    ({"$from": "T", "$expand": "customer"}, "INVALID_EXPAND", "$expand"),
    ({"$from": "T", "$flatten": {"customer": ""}}, "INVALID_FLATTEN", "$flatten.customer"),
    ({"$from": "T", "$filter": {"$bogus": 1}}, "INVALID_FILTER", "$filter"),
    ({"$from": "T", "$filter": {"$or": {"a": 1}}}, "INVALID_FILTER", "$filter.$or"),
    ({"$from": "T", "$select": {"a": 1}}, "INVALID_SELECT", "$select.a"),
    ({"$from": "T", "$groupBy": "status"}, "INVALID_GROUP_BY", "$groupBy"),
    ({"$from": "T", "$compute": {"n": "count(*)"}}, "INVALID_COMPUTE", "$compute.n"),
    ({"$from": "T", "$compute": {"n": {"$count": "*", "$sum": "x"}}}, "INVALID_COMPUTE", "$compute.n"),
    ({"$from": "T", "$unnest": ""}, "INVALID_UNNEST", "$unnest"),
    ({"$from": "T", "$refresh": {"mode": "live"}}, "INVALID_REFRESH_MODE", "$refresh.mode"),
    ({"$from": "T", "$refresh": {"mode": "scheduled"}}, "MISSING_SCHEDULE", "$refresh.schedule"),
    ({"$from": "T", "$refresh": {"mode": "scheduled", "schedule": "0 24 * * *"}}, "INVALID_SCHEDULE", "$refresh.schedule"),
    ({"$from": "T", "$refresh": {"strategy": "bogus"}}, "INVALID_REFRESH", "$refresh.strategy"),
    ({"$from": "T", "$refresh": {"timezone": "Mars/Olympus"}}, "INVALID_REFRESH", "$refresh.timezone"),
    ({"$from": "T", "$refresh": {"gracePeriod": "15 minutes"}}, "INVALID_REFRESH", "$refresh.gracePeriod"),
    ({"$from": "T", "$fitler": {}}, "UNKNOWN_DIRECTIVE", "$fitler"),
], ids=lambda x: x if isinstance(x, str) else None)
def test_define_view_rejects_malformed_definitions_with_upstream_codes(definition, code, path):
    with pytest.raises(ViewDefinitionError) as info:
        define_view(definition, "V")
    assert (info.value.code, info.value.path) == (code, path)


def test_unknown_directive_suggests_the_nearest():
    with pytest.raises(ViewDefinitionError, match=r"did you mean '\$filter'"):
        define_view({"$from": "T", "$fitler": {}}, "V")


@pytest.mark.parametrize("expression, error, field", [
    ("*/15 9-17 * * 1-5", None, None),
    ("0-30/5 * * * *", None, None),
    ("60 * * * *", "Invalid value in minute: 60 is out of range (0-59)", "minute"),
    ("0 0 * * 7", "Invalid value in day of week: 7 is out of range (0-6)", "day of week"),
    ("5-3 * * * *", "Invalid range in minute: start 5 is greater than end 3", "minute"),
    ("0 0 * JAN *", "Invalid value in month: 'JAN' is not a valid integer", "month"),
    ("@hourly", "Cron expression must have exactly 5 fields (minute hour day-of-month month day-of-week), got 1", None),
])
def test_check_cron_mirrors_upstream_messages(expression, error, field):
    check = check_cron(expression)
    assert (check.valid, check.error, check.field) == (error is None, error, field)


def test_parse_duration_accepts_upstream_units():
    assert [parse_duration(t) for t in ("250ms", "30s", "15m", "2h", "1d")] == [
        dt.timedelta(milliseconds=250), dt.timedelta(seconds=30), dt.timedelta(minutes=15), dt.timedelta(hours=2),
        dt.timedelta(days=1)]


# -- resolution errors name the view and the path ------------------------------------------------------------


def test_unknown_aggregate_names_view_path_and_suggests():
    err = error_of({"$from": "T", "$compute": {"errorRate": {"$avgg": "x"}}}, name="EndpointMetrics")
    assert str(err) == "EndpointMetrics.$compute.errorRate: unknown operator '$avgg'; did you mean '$avg'?"


def test_unknown_expression_operator_names_its_path():
    err = error_of({"$from": "T", "$compute": {"r": {"$avg": {"$cond": [{"$gtee": ["$a", 1]}, 1, 0]}}}})
    assert err.path.startswith("$compute.r.$avg.$cond")
    assert "did you mean '$gte'" in str(err)


def test_unknown_source_lists_known_names_with_a_hint():
    err = error_of({"$from": "TailEvent"}, {"TailEvents": CollectionSource(), "WorkerLogs": ViewSource({"$from": "TailEvents"})})
    assert err.code == "UNKNOWN_SOURCE"
    assert str(err) == ("V.$from: unknown source 'TailEvent'; did you mean 'TailEvents'? "
                        "(collections: TailEvents; views: WorkerLogs)")


def test_cycles_are_reported_as_a_chain():
    catalog = {"A": ViewSource({"$from": "B"}), "B": ViewSource({"$from": "C"}), "C": ViewSource({"$from": "A"})}
    with pytest.raises(ViewCycleError) as info:
        validate_view("A", {"$from": "B"}, catalog)
    assert info.value.cycle == ["A", "B", "C", "A"]
    assert "A → B → C → A" in str(info.value)


def test_a_view_reading_itself_is_a_cycle():
    with pytest.raises(ViewCycleError, match="A → A"):
        validate_view("A", {"$from": "A"}, {"A": ViewSource({"$from": "A"})})


@pytest.mark.parametrize("definition, path", [
    ({"$from": "T", "$groupBy": [{"fortnight": "$t"}]}, "$groupBy.0.fortnight"),
    ({"$from": "T", "$compute": {"p": {"$percentile": ["x", 150]}}}, "$compute.p.$percentile"),
    ({"$from": "T", "$compute": {"a": {"$avg": "*"}}}, "$compute.a.$avg"),
    ({"$from": "T", "$groupBy": ["a"], "$compute": {"a": {"$count": "*"}}}, "$compute.a"),
    ({"$from": "T", "$select": {"$weird": "$a"}}, "$select.$weird"),
    ({"$from": "T", "$select": {"version": "$name"}}, "$select.version"),
    ({"$from": "T", "$unnest": "createdAt"}, "$unnest"),
    ({"$from": "T", "$filter": {"a": {"$gtee": 1}}}, "$filter.a"),
    ({"$from": "T", "$expand": ["customer"]}, "$expand.0"),
])
def test_semantic_errors_carry_the_definition_path(definition, path):
    assert error_of(definition).path.startswith(path)


def test_operator_tables_are_complete():
    assert set(EXPRESSIONS) >= {"$cond", "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$and", "$or", "$not", "$add",
                                "$subtract", "$multiply", "$divide", "$mod", "$ifNull", "$hash", "$exists"}
    assert set(AGGREGATES) >= {"$count", "$sum", "$avg", "$min", "$max", "$countDistinct", "$first", "$last", "$percentile"}
    assert set(TIME_BUCKETS) == {"minute", "hour", "day", "date", "week", "month", "year"}


def test_compile_view_is_one_select_over_the_named_sources():
    catalog = {"T": CollectionSource(Schema.parse({"n": "int"}))}
    text = sql.render(compile_view({"$from": "T", "$filter": {"n": {"$gt": 1}}, "$select": {"m": "$n"}}, catalog))
    assert text.startswith('SELECT "m" FROM') and '"n" > 1' in text and 'FROM "T"' in text


def test_seed_views_all_plan():
    catalog: dict[str, Any] = {name: CollectionSource(Schema.parse(s)) for name, s in seeds.SEED_COLLECTIONS.items()}
    for name, spec in seeds.SEED_VIEWS.items():
        plan = plan_view(name, spec, catalog)
        catalog[name] = ViewSource(spec)
        assert plan.outputs


# -- semantics (run in DuckDB) ----------------------------------------------------------------------------------


def test_null_and_missing_group_keys_are_one_group():
    docs = [{"k": "a"}, {"k": None}, {}, {"k": "a"}]
    got = rows_of({"$from": "T", "$groupBy": ["k"], "$compute": {"n": {"$count": "*"}}}, docs, sort={"k": 1})
    assert got == [{"k": "a", "n": 2}, {"k": None, "n": 2}]  # nulls sort last


def test_typed_null_group_key_reads_back_as_null():
    got = rows_of({"$from": "T", "$groupBy": ["k"], "$compute": {"n": {"$count": "*"}}},
                  [{"k": "a"}, {"k": None}], {"k": "string"}, sort={"k": 1})
    assert got == [{"k": "a", "n": 1}, {"k": None, "n": 1}]


def test_unnest_drops_empty_missing_and_non_array_values_and_keeps_null_elements():
    docs = [{"xs": [1, None, {"a": 2}]}, {"xs": []}, {}, {"xs": "nope"}, {"xs": None}]
    got = rows_of({"$from": "T", "$unnest": "xs", "$select": {"x": "$xs"}}, docs)
    assert sorted(map(repr, (r.get("x") for r in got))) == sorted(map(repr, [1, None, {"a": 2}]))


def test_unnest_declared_variant_array_makes_paths_refer_to_the_element():
    docs = [{"logs": [{"level": "info"}, {"level": "error"}]}, {"logs": [{"level": "error"}]}]
    got = rows_of({"$from": "T", "$unnest": "logs", "$filter": {"logs.level": "error"}, "$select": {"l": "$logs.level"}},
                  docs, {"logs": "variant[]"})
    assert got == [{"l": "error"}, {"l": "error"}]


def test_unnest_typed_array_keeps_the_element_type_without_select():
    got = rows_of({"$from": "T", "$unnest": "tags"}, [{"tags": ["a", "b"], "n": 1}], {"tags": "string[]"}, sort={"tags": 1})
    assert [(r["tags"], r["n"]) for r in got] == [("a", 1), ("b", 1)]


def test_week_buckets_start_on_monday_in_utc():
    docs = [{"t": dt.datetime(2024, 1, 7, 23, 30, tzinfo=UTC)},  # Sunday
            {"t": dt.datetime(2024, 1, 8, 0, 30, tzinfo=UTC)}]  # Monday
    got = rows_of({"$from": "T", "$groupBy": [{"week": "$t"}], "$compute": {"n": {"$count": "*"}}}, docs,
                  {"t": "timestamp"}, sort={"week": 1})
    assert got == [{"week": dt.datetime(2024, 1, 1, tzinfo=UTC), "n": 1}, {"week": dt.datetime(2024, 1, 8, tzinfo=UTC), "n": 1}]


def test_time_buckets_read_epoch_millis_iso_strings_and_dates():
    docs = [{"t": 1704277800000}, {"t": "2024-01-03T10:59:00Z"}, {"t": T0}, {"t": "garbage"}]
    got = rows_of({"$from": "T", "$groupBy": [{"hour": "$t"}], "$compute": {"n": {"$count": "*"}}}, docs, sort={"hour": 1})
    assert got == [{"hour": dt.datetime(2024, 1, 3, 10, tzinfo=UTC), "n": 3}, {"hour": None, "n": 1}]


def test_date_bucket_is_a_date_value():
    got = rows_of({"$from": "T", "$groupBy": [{"date": "$createdAt"}], "$compute": {"n": {"$count": "*"}}}, [{}])
    assert got == [{"date": dt.date(2024, 1, 3), "n": 1}]


def test_percentile_is_quantile_cont_and_accepts_percentages():
    values = [1, 2, 3, 4, 10]
    got = rows_of({"$from": "T", "$compute": {"p": {"$percentile": ["x", 0.9]}, "q": {"$percentile": ["x", 90]},
                                               "med": {"$percentile": ["x", 50]}}},
                  [{"x": v} for v in values])
    expected = statistics.quantiles(values, n=10, method="inclusive")[-1]
    assert got == [{"p": pytest.approx(expected), "q": pytest.approx(expected), "med": 3.0}]


def test_hash_is_the_md5_prefix_python_can_reproduce():
    ids = [f"req-{i}" for i in range(40)]
    got = rows_of({"$from": "T", "$select": {"id": "$rid", "h": {"$hash": "$rid"}, "bucket": {"$mod": [{"$hash": "$rid"}, 10]}}},
                  [{"rid": r} for r in ids], sort={"id": 1})
    expected = {r: int(hashlib.md5(r.encode()).hexdigest()[:13], 16) for r in ids}
    assert {r["id"]: r["h"] for r in got} == expected
    assert all(r["bucket"] == expected[r["id"]] % 10 for r in got)


def test_sampling_filter_keeps_one_bucket():
    ids = [f"req-{i}" for i in range(200)]
    got = rows_of({"$from": "T", "$filter": {"$expr": {"$eq": [{"$mod": [{"$hash": "$rid"}, 10]}, 0]}}}, [{"rid": r} for r in ids])
    assert {r["rid"] for r in got} == {r for r in ids if int(hashlib.md5(r.encode()).hexdigest()[:13], 16) % 10 == 0}


def test_avg_and_sum_ignore_non_numbers_and_count_field_counts_non_null():
    docs = [{"x": 1}, {"x": "2"}, {"x": True}, {"x": None}, {}, {"x": 5}]
    got = rows_of({"$from": "T", "$compute": {"avg": {"$avg": "x"}, "sum": {"$sum": "x"}, "n": {"$count": "x"},
                                               "rows": {"$count": "*"}, "twice": {"$sum": 2}}}, docs)
    assert got == [{"avg": 3.0, "sum": 6.0, "n": 4, "rows": 6, "twice": 12}]


def test_first_and_last_follow_source_id_order():
    got = rows_of({"$from": "T", "$groupBy": ["g"], "$compute": {"f": {"$first": "v"}, "l": {"$last": "v"}}},
                  [{"g": 1, "v": "b"}, {"g": 1, "v": "a"}, {"g": 1, "v": "c"}])
    assert got == [{"g": 1, "f": "b", "l": "c"}]


def test_variant_min_max_compare_within_the_lowest_or_highest_family():
    got = rows_of({"$from": "T", "$compute": {"lo": {"$min": "v"}, "hi": {"$max": "v"}}},
                  [{"v": 3}, {"v": "a"}, {"v": 1}, {"v": "b"}])
    assert got == [{"lo": 1, "hi": "b"}]


def test_count_distinct_ignores_nulls():
    got = rows_of({"$from": "T", "$compute": {"d": {"$countDistinct": "v"}}}, [{"v": "a"}, {"v": "a"}, {"v": None}, {"v": "b"}])
    assert got == [{"d": 2}]


def test_empty_source_gives_one_global_row():
    got = rows_of({"$from": "T", "$compute": {"n": {"$count": "*"}, "s": {"$sum": "x"}, "a": {"$avg": "x"}}}, [])
    assert got == [{"n": 0, "s": 0.0, "a": None}]


def test_expressions_follow_javascript_like_rules():
    docs = [{"a": 7, "b": 2, "s": "x"}, {"a": 1, "b": 0}, {"a": None, "b": 3}]
    got = rows_of({"$from": "T", "$select": {
        "id": "$$id",
        "sum": {"$add": ["$a", "$b", 1]},
        "diff": {"$subtract": ["$a", "$b"]},
        "ratio": {"$divide": ["$a", "$b"]},
        "rem": {"$mod": ["$a", "$b"]},
        "prod": {"$multiply": ["$a", "$b"]},
        "fallback": {"$ifNull": ["$s", "none"]},
        "big": {"$cond": {"if": {"$gt": ["$a", 5]}, "then": "yes", "else": "no"}},
        "both": {"$and": ["$a", {"$lt": ["$b", 3]}]},
        "has": {"$exists": "$s"},
        "filterish": {"$cond": [{"a": {"$gte": 1}}, 1, 0]},
    }}, docs, sort={"id": 1})
    assert [{k: v for k, v in r.items() if k != "id"} for r in got] == [
        {"sum": 10, "diff": 5, "ratio": 3.5, "rem": 1, "prod": 14, "fallback": "x", "big": "yes", "both": True,
         "has": True, "filterish": 1},
        {"sum": 2, "diff": 1, "ratio": None, "rem": None, "prod": 0, "fallback": "none", "big": "no", "both": True,
         "has": False, "filterish": 1},
        {"sum": None, "diff": None, "ratio": None, "rem": None, "prod": None, "fallback": "none",
         "big": "no", "both": False, "has": False, "filterish": 0},
    ]


def test_comparisons_treat_null_as_lowest():
    docs = [{"a": None}, {"a": 3}]
    got = rows_of({"$from": "T", "$select": {"id": "$$id", "lt": {"$lt": ["$a", 1]}, "gt": {"$gt": ["$a", 1]},
                                              "eqnull": {"$eq": ["$a", None]}}}, docs, sort={"id": 1})
    assert [(r["lt"], r["gt"], r["eqnull"]) for r in got] == [(True, False, True), (False, True, False)]


def test_date_arithmetic_in_milliseconds():
    got = rows_of({"$from": "T", "$select": {"later": {"$add": ["$t", 1500]},
                                              "ms": {"$subtract": ["$u", "$t"]}}},
                  [{"t": T0, "u": T0 + dt.timedelta(seconds=2)}], {"t": "timestamp", "u": "timestamp"})
    assert got == [{"later": T0 + dt.timedelta(milliseconds=1500), "ms": 2000}]


def test_dotted_group_keys_nest_in_a_variant_column():
    docs = [{"customer": {"tier": "gold", "region": "eu"}}, {"customer": {"tier": "gold", "region": "eu"}},
            {"customer": {"tier": "basic"}}]
    got = rows_of({"$from": "T", "$groupBy": ["customer.tier", "customer.region"], "$compute": {"n": {"$count": "*"}}},
                  docs, sort={"n": 1})
    assert got == [{"customer": {"tier": "basic", "region": None}, "n": 1}, {"customer": {"tier": "gold", "region": "eu"}, "n": 2}]


def test_select_renames_and_reaches_into_arrays_and_system_fields():
    got = rows_of({"$from": "T", "$select": {"orderId": "$id", "first": "$items.0.sku", "total": "total"}},
                  [{"items": [{"sku": "A"}], "total": 5}])
    assert got == [{"orderId": "T/0000", "first": "A", "total": 5}]


def test_expand_joins_relation_targets_and_flatten_renames_the_prefix():
    customers = Schema.parse({"name": "string", "address": "-> addresses"})
    addresses = Schema.parse({"city": "string"})
    extra = {"customers": (customers, [{"name": "Ann", "address": "addresses/0000", "vip": True}, {"name": "Bob"}]),
             "addresses": (addresses, [{"city": "Oslo", "zip": "0150"}])}
    orders = [{"customer": "customers/0000", "total": 3}, {"customer": "0001", "total": 4}, {"customer": "nobody", "total": 5}]
    got = rows_of({"$from": "T", "$expand": ["customer", "customer.address"], "$flatten": {"customer": "buyer"},
                   "$select": {"total": "$total", "name": "$buyer_name", "vip": "$buyer_vip", "city": "$buyer_address_city",
                               "zip": "$buyer_address_zip"}},
                  orders, {"customer": "-> Customer", "total": "int"}, sort={"total": 1}, extra=extra)
    assert got == [
        {"total": 3, "name": "Ann", "vip": True, "city": "Oslo", "zip": "0150"},
        {"total": 4, "name": "Bob", "city": None},  # missing variant values stay missing
        {"total": 5, "name": None, "city": None},
    ]


def test_filter_runs_after_unnest_and_before_select():
    docs = [{"xs": [{"v": 1}, {"v": 5}], "keep": True}, {"xs": [{"v": 9}], "keep": False}]
    got = rows_of({"$from": "T", "$unnest": "xs", "$filter": {"keep": True, "xs.v": {"$gt": 2}}, "$select": {"v": "$xs.v"}},
                  docs)
    assert got == [{"v": 5}]


def test_group_by_after_select_uses_selected_names():
    got = rows_of({"$from": "T", "$select": {"who": "$user.name"}, "$groupBy": ["who"], "$compute": {"n": {"$count": "*"}}},
                  [{"user": {"name": "a"}}, {"user": {"name": "a"}}])
    assert got == [{"who": "a", "n": 2}]
