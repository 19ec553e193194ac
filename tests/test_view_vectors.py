"""Upstream's materialized-view vectors (tests/vectors/mv.jsonl) run against our view compiler.

Each vector is a recorded call of an upstream function with the outcome the
upstream test asserted. The ones that map onto the view DSL are replayed:

* definition checks (``defineView``, cron validators, view names, the
  schema-level ``detectMVCycles``/``getMVDependencies``/``parseSchema``/
  ``validateSchema``) against :mod:`parquedb_ibis.compile.views` directly;
* aggregations (``mvagg.*``, ``agg.executeAggregation``) are translated into
  a view definition over the vector's documents, compiled, and run through a
  real DuckDB (documents loaded in the stored-row layout); ``$sort``,
  ``$limit``, ``$skip`` and exclusion ``$project`` stages become ``find``
  options on the view's rows.

Vectors that exercise something the DSL does not have (``defineCollection``,
the storage-layer ``ViewDefinition``, ``$push``/``$facet`` pipelines, ``having``,
bucket grouping) are listed in :data:`NOT_APPLICABLE` with the reason. Where
we deliberately differ, the vector is in :data:`KNOWN_DEVIATIONS` and the test
asserts it still differs.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from parquedb_ibis import query
from parquedb_ibis.compile import sql
from parquedb_ibis.compile.views import (
    CollectionSource,
    check_cron,
    define_view,
    detect_cycle,
    is_valid_cron,
    is_valid_view_name,
    parse_schema,
    plan_view,
    validate_schema,
    view_dependencies,
)
from parquedb_ibis.documents import from_jsonable
from parquedb_ibis.errors import ViewDefinitionError
from parquedb_ibis.schema import Schema, to_row
from parquedb_ibis.writer.events import state_schema

VECTORS = [json.loads(line) for line in (Path(__file__).parent / "vectors" / "mv.jsonl").read_text().splitlines() if line]

#: Functions (or single vectors) that test something the view DSL does not have.
NOT_APPLICABLE_FUNCTIONS: dict[str, str] = {
    "mvdefine.defineCollection": "collection type declarations (vector(n), enum(...), '<- Comment.post[]'), not views",
    "mvtypes.validateViewDefinition": "the storage-layer ViewDefinition {name, source, query, options}, not the $from DSL",
    "mvtypes.defineView": "the storage-layer ViewDefinition {name, source, query, options}, not the $from DSL",
    "mvagg.toAggregationPipeline": "internal conversion to upstream's pipeline executor",
}

#: Why a particular vector does not map onto the DSL (checked by _not_applicable).
NOT_APPLICABLE_REASONS = {
    "having": "'having' has no $-directive in the view DSL",
    "limit": "'limit' has no $-directive in the view DSL",
    "boundaries": "bucket grouping {$field, $boundaries} is not a $groupBy form of the DSL",
    "stage": "a pipeline stage with no DSL counterpart ($push, $addToSet, $addFields, $unset, $facet)",
}

#: Vectors we fail on purpose: name -> reason. Asserted to still deviate.
KNOWN_DEVIATIONS: dict[str, str] = {}


# -- replaying ---------------------------------------------------------------------------------


def _undefined(value: Any) -> Any:
    return None if isinstance(value, dict) and value.get("$undefined") else value


def _js_map(value: Any) -> dict[str, Any]:
    return {k: v for k, v in value["$js:Map"]}


def _documents(docs: list[Any]) -> list[dict[str, Any]]:
    return [from_jsonable(d) for d in docs]


def _load(con: duckdb.DuckDBPyConnection, name: str, docs: list[dict[str, Any]], schema: Schema = Schema()) -> None:
    rows = [to_row(d, schema) for d in docs]
    table = pa.Table.from_pylist(rows, schema=state_schema(schema))
    con.register("_arrow", table)
    con.execute(f'CREATE TABLE "{name}" AS SELECT * FROM _arrow')
    con.unregister("_arrow")


def _connection() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    return con


def run_view(definition: dict[str, Any], docs: list[dict[str, Any]], *, schema: Schema = Schema(),
             find: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Load ``docs`` as collection T, compute the view over it in DuckDB, return its rows as documents."""
    con = _connection()
    try:
        _load(con, "T", docs, schema)
        plan = plan_view("V", definition, {"T": CollectionSource(schema)})
        con.execute('CREATE TABLE "V" AS ' + sql.render(plan.output(sql.table("T"))))
        rows = query.find(con, plan.readable(sql.table("V")), plan.layout, **(find or {}))
    finally:
        con.close()
    return rows


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def _call_compute(v: dict[str, Any]) -> Any:
    expr = v["expr"] if "expr" in v else {"$stdDev" if v["fn"].endswith("StdDev") else "$stdDevSamp": v["field"]}
    (row,) = run_view({"$from": "T", "$compute": {"value": expr}}, _documents(v["docs"]))
    return row.get("value")


def _group_rows(v: dict[str, Any], docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return run_view({"$from": "T", "$groupBy": v["groupBy"], "$compute": {"n_": {"$count": "*"}}}, docs)


def check_mvagg(v: dict[str, Any]) -> None:
    fn = v["fn"].split(".", 1)[1]
    if fn.startswith("compute") and fn not in ("computeGroupKey",):
        assert _close(_call_compute(v), v["upstream_result"])
    elif fn == "computeGroupKey":
        (row,) = _group_rows(v, _documents([v["doc"]]))
        assert {k: row.get(k) for k in v["upstream_result"]} == v["upstream_result"]
    elif fn == "groupDocuments":
        rows = _group_rows(v, _documents(v["docs"]))
        expected = {k: len(g["docs"]) for k, g in _js_map(v["upstream_result"]).items()}
        got = {json.dumps({k: r.get(k) for k in v["groupBy"]}, separators=(",", ":")): r["n_"] for r in rows}
        assert got == expected
    elif fn == "executeMVAggregation":
        definition = v["definition"]
        view: dict[str, Any] = {"$from": "T", "$compute": definition["compute"]}
        if definition.get("groupBy"):
            view["$groupBy"] = definition["groupBy"]
        if definition.get("match"):
            view["$filter"] = definition["match"]
        rows = run_view(view, _documents(v["data"]))
        expected = [{k: x for k, x in d.items() if k != "_id"} for d in v["upstream_result"]["documents"]]
        assert _multiset(rows) == _multiset(expected)
    elif fn == "isIncrementallyUpdatable":
        plan = plan_view("V", {"$from": "T", "$compute": v["definition"]["compute"]}, {"T": CollectionSource()})
        assert plan.decomposable is v["upstream_result"]
    elif fn == "mergeAggregates":
        assert _merge(v) == v["upstream_result"]
    elif fn == "validateMVAggregation":
        with pytest.raises(ViewDefinitionError):
            plan_view("V", {"$from": "T", "$compute": v["definition"]["compute"]}, {"T": CollectionSource()})
    else:  # pragma: no cover - every mvagg function is listed above or not applicable
        raise AssertionError(f"unhandled {fn}")


def _merge(v: dict[str, Any]) -> dict[str, Any]:
    """Merge two stored states through the plan's merge SQL (decomposable aggregates)."""
    schema = Schema.parse({"price": "float"})
    plan = plan_view("V", {"$from": "T", "$compute": v["compute"]}, {"T": CollectionSource(schema)})
    con = _connection()
    try:
        columns = ", ".join(f'"{c}" {t}' for c, t in plan.output_types.items())
        con.execute(f"CREATE TABLE S ({columns})")
        for state in (v["existing"], v["delta"]):
            con.execute(f"INSERT INTO S VALUES ({', '.join('?' for _ in plan.output_types)})",
                        [state.get(c) for c in plan.output_types])
        result = con.execute(sql.render(plan.merge(sql.table("S")))).fetchall()
        names = [d[0] for d in con.description]
    finally:
        con.close()
    (row,) = result
    return {n: x for n, x in zip(names, row, strict=True) if n in v["compute"]}


def _multiset(rows: list[dict[str, Any]]) -> Counter:
    def norm(x: Any) -> Any:
        if isinstance(x, float) and x.is_integer():
            return int(x)
        if isinstance(x, list):
            return tuple(norm(i) for i in x)
        if isinstance(x, dict):
            return tuple(sorted((k, norm(i)) for k, i in x.items()))
        return x

    return Counter(tuple(sorted((k, norm(x)) for k, x in r.items())) for r in rows)


# -- agg.executeAggregation: pipelines -> a view plus find options ------------------------------------------


def pipeline_to_view(pipeline: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any], str | None] | None:
    """``(view definition, find options, group key)`` for a pipeline the DSL can express, else None."""
    view: dict[str, Any] = {"$from": "T"}
    find: dict[str, Any] = {}
    key = None
    grouped = False
    for stage in pipeline:
        ((op, arg),) = stage.items()
        if op == "$match" and not grouped and "$unnest" not in view and "$filter" not in view:
            view["$filter"] = arg
        elif op == "$match" and not grouped:
            view["$filter"] = {"$and": [view["$filter"], arg]}
        elif op == "$unwind" and isinstance(arg, str) and not grouped:
            view["$unnest"] = arg
        elif op == "$group" and not grouped:
            group_id = arg["_id"]
            if group_id is not None:
                if not isinstance(group_id, str):
                    return None
                key = group_id.lstrip("$")
                view["$groupBy"] = [key]
            compute = {}
            for name, acc in arg.items():
                if name == "_id":
                    continue
                ((acc_op, acc_arg),) = acc.items()
                if acc_op not in ("$sum", "$avg", "$min", "$max", "$first", "$last", "$count"):
                    return None
                compute[name] = {acc_op: acc_arg}
            view["$compute"] = compute
            grouped = True
        elif op == "$count" and not grouped:
            view["$compute"] = {arg: {"$count": "*"}}
            grouped = True
        elif op == "$sort":
            find["sort"] = {("_id" if k == "_id" else k): d for k, d in arg.items()}
        elif op == "$limit":
            find["limit"] = arg
        elif op == "$skip":
            find["skip"] = arg
        elif op == "$project" and all(flag in (0, False) for flag in arg.values()):
            find["project"] = arg
        else:
            return None
    if ("limit" in find or "skip" in find) and "sort" not in find:
        find["sort"] = {"$id": 1}  # upstream keeps input order; the vectors' input is in $id order
    return view, find, key


def check_pipeline(v: dict[str, Any]) -> None:
    translated = pipeline_to_view(v["pipeline"])
    assert translated is not None
    view, find, key = translated
    if key is not None and "sort" in find:
        find["sort"] = {(key if k == "_id" else k): d for k, d in find["sort"].items()}
    rows = run_view(view, _documents(v["data"]), find=find)
    if "$groupBy" in view or "$compute" in view:
        rows = [{("_id" if k == key else k): x for k, x in r.items()} for r in rows]
        if key is None and any("_id" in d for d in v["upstream_result"]):
            rows = [{"_id": None, **r} for r in rows]
    expected = _documents(v["upstream_result"])
    assert _multiset(rows) == _multiset(expected)
    if "sort" in find:
        keys = [("_id" if k == key else k) for k in find["sort"]]
        assert [[r.get(k) for k in keys] for r in rows] == [[d.get(k) for k in keys] for d in expected]


# -- definitions ---------------------------------------------------------------------------------------------


def check_define_view(v: dict[str, Any]) -> None:
    if "throws" in v:
        with pytest.raises(ViewDefinitionError) as info:
            define_view(v["input"])
        err = info.value
        assert err.code == v["throws"]["code"]
        field = v["throws"].get("field")
        assert field is None or err.path == field or err.path.startswith(field + ".")
        for a in v["assertions"]:
            if a["matcher"] == "toContain" and a.get("path") == ["message"]:
                assert a["expected"][0] in str(err)
        return
    assert define_view(v["input"]) == v["upstream_result"]


_NAME_ARG = re.compile(r"isValidViewName\((?:'([^']*)'|undefined[^)]*|null[^)]*)\)")


def check_definitions(v: dict[str, Any]) -> None:
    fn = v["fn"]
    expected = v.get("upstream_result")
    if fn == "mvdefine.defineView":
        check_define_view(v)
    elif fn == "mvdefine.detectMVCycles":
        assert detect_cycle(view_dependencies(parse_schema(v["schema"]).views)) == expected
    elif fn == "mvdefine.getMVDependencies":
        assert view_dependencies(parse_schema(v["schema"]).views) == _js_map(expected)
    elif fn == "mvdefine.parseSchema":
        parsed = parse_schema(v["schema"])
        assert parsed.collections == _js_map(expected["collections"])
        assert parsed.streams == _js_map(expected["streamCollections"])
        assert set(parsed.views) == set(_js_map(expected["materializedViews"]))
    elif fn == "mvdefine.validateSchema":
        errors = validate_schema(v["schema"])
        upstream = _js_map(expected)
        assert {k: len(e) for k, e in errors.items()} == {k: len(e) for k, e in upstream.items()}
        for name, found in errors.items():
            assert [e.path for e in found] == [e["field"] for e in upstream[name]]
    elif fn == "mvtypes.isValidViewName":
        m = _NAME_ARG.search(v["assertions"][0]["src"])
        assert m is not None
        assert is_valid_view_name(m.group(1)) is expected
    elif fn == "mvtypes.isValidCronExpression":
        assert is_valid_cron(_undefined(v.get("cron"))) is expected
    elif fn == "sched.isValidCronExpression":
        assert is_valid_cron(_undefined(v["args"][0])) is expected
    elif fn == "sched.validateCronExpression":
        check = check_cron(_undefined(v["args"][0]))
        got = {"valid": check.valid, **({"error": check.error} if check.error else {}),
               **({"field": check.field} if check.field else {})}
        assert got == expected
    else:  # pragma: no cover
        raise AssertionError(f"unhandled {fn}")


# -- selection --------------------------------------------------------------------------------------------


def _not_applicable(v: dict[str, Any]) -> str | None:
    fn = v["fn"]
    if fn in NOT_APPLICABLE_FUNCTIONS:
        return NOT_APPLICABLE_FUNCTIONS[fn]
    if fn == "mvagg.executeMVAggregation":
        definition = v["definition"]
        if "having" in definition:
            return NOT_APPLICABLE_REASONS["having"]
        if "limit" in definition:
            return NOT_APPLICABLE_REASONS["limit"]
    if fn == "mvagg.computeGroupKey" and any(isinstance(g, dict) for g in v["groupBy"]):
        return NOT_APPLICABLE_REASONS["boundaries"]
    if fn == "agg.executeAggregation" and pipeline_to_view(v["pipeline"]) is None:
        return NOT_APPLICABLE_REASONS["stage"]
    return None


def check(v: dict[str, Any]) -> None:
    fn = v["fn"]
    if fn.startswith("mvagg."):
        check_mvagg(v)
    elif fn == "agg.executeAggregation":
        check_pipeline(v)
    else:
        check_definitions(v)


APPLICABLE = [v for v in VECTORS if _not_applicable(v) is None]
SKIPPED = [v for v in VECTORS if _not_applicable(v) is not None]


def _id(v: dict[str, Any]) -> str:
    return f"{v['fn']}: {v['name']}"[:150]


@pytest.mark.parametrize("vector", [v for v in APPLICABLE if v["name"] not in KNOWN_DEVIATIONS], ids=_id)
def test_vector(vector):
    check(vector)


def test_known_deviations_still_deviate():
    deviating = [v for v in APPLICABLE if v["name"] in KNOWN_DEVIATIONS]
    assert len(deviating) == len(KNOWN_DEVIATIONS)  # every entry names a real, applicable vector
    for vector in deviating:
        with pytest.raises((AssertionError, ViewDefinitionError)):
            check(vector)


def test_pass_rate_is_at_least_98_percent_of_applicable_vectors():
    deviating = [v for v in APPLICABLE if v["name"] in KNOWN_DEVIATIONS]
    assert len(APPLICABLE) >= 200
    assert (len(APPLICABLE) - len(deviating)) / len(APPLICABLE) >= 0.98


def test_every_skipped_vector_has_a_reason():
    assert all(_not_applicable(v) for v in SKIPPED)
    assert len(SKIPPED) < len(VECTORS) / 4
