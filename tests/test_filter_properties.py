"""Property tests: DuckDB agrees with the reference evaluator; compiled trees survive a parse.

Documents mix ints, floats (with ±inf and NaN), bools, strings, nulls and
missing keys, datetimes, nested objects and arrays; filters are drawn from
every operator. The oracle is :mod:`tests.reference` (pure Python, written
from docs/semantics.md); the engine is :func:`find_in` over a native DuckDB
table, and :func:`find` over a typed collection for the declared fields.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb
from hypothesis import given
from hypothesis import strategies as st
from sqlglot import parse_one

from parquedb_ibis.compile import sql
from parquedb_ibis.compile.filters import compile_filter
from parquedb_ibis.query import find, find_in
from parquedb_ibis.schema import Schema, to_row
import reference

UTC = dt.timezone.utc

# -- documents --------------------------------------------------------------------------------

strings = st.text(alphabet="abAé\n ", max_size=3)
numbers = st.one_of(
    st.integers(-(2**53), 2**53),
    st.sampled_from([0.5, -0.0, 2.5, 1e300, float("inf"), float("-inf"), float("nan")]),
    st.floats(-10, 10, allow_nan=False, width=32),
)
datetimes = st.datetimes(dt.datetime(1970, 1, 1), dt.datetime(2100, 1, 1)).map(lambda d: d.replace(tzinfo=UTC))
#: A small pool makes documents and filters share values, so filters match some rows, not none or all.
POOL = [
    None, True, False, 0, 1, 2, 1.0, 2.5, -1, -0.0, "a", "b", "", "A", "ab", "é\n", float("inf"), float("nan"),
    dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 6, 1, 12, 30, 0, 123456, tzinfo=UTC),
]  # fmt: skip
pool = st.sampled_from(POOL)
scalars = st.one_of(pool, pool, pool, st.none(), st.booleans(), numbers, strings, datetimes)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from("xy"), inner, max_size=2)),
    max_leaves=5,
)
documents = st.fixed_dictionaries(
    {"b": scalars},
    optional={
        "a": st.one_of(scalars, values),
        "o": st.one_of(st.dictionaries(st.sampled_from("xy"), values, max_size=2), values),
        "arr": st.one_of(st.lists(values, max_size=3), values),
    },
)
collections = st.lists(documents, min_size=2, max_size=6)

# -- filters ----------------------------------------------------------------------------------

PATHS = ["a", "b", "o", "o.x", "arr", "arr.0", "arr.1", "missing"]
paths = st.sampled_from(PATHS[:-1] * 3 + PATHS[-1:])
regexes = st.sampled_from(["a", "^a", "b$", "^$", "a.b", "[ab]", "A", "é", "^.*$", "a|b"])
regex_flags = st.sampled_from(["", "i", "m", "s", "ims"])
type_tags = st.sampled_from(["null", "boolean", "number", "string", "date", "array", "object"])


FIELD_OPERATOR_NAMES = [
    "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$type", "$size", "$all", "$mod",
    "$regex", "$startsWith", "$endsWith", "$contains", "$elemMatch",
]  # fmt: skip


@st.composite
def operator(draw: st.DrawFn, operands: st.SearchStrategy[Any]) -> dict[str, Any]:
    """One field operator with an operand of the right shape."""
    name = draw(st.sampled_from(FIELD_OPERATOR_NAMES))
    lists = st.lists(operands, max_size=3)
    if name in ("$eq", "$ne"):
        return {name: draw(operands)}
    if name in ("$gt", "$gte", "$lt", "$lte"):
        return {name: draw(st.one_of(operands, lists))}
    if name in ("$in", "$nin", "$all"):
        return {name: draw(lists)}
    if name == "$exists":
        return {name: draw(st.booleans())}
    if name == "$type":
        return {name: draw(type_tags)}
    if name == "$size":
        return {name: draw(st.integers(0, 3))}
    if name == "$mod":
        return {name: [draw(st.sampled_from([2, 3, -3, 2.5])), draw(st.sampled_from([0, 1, -1, 0.5]))]}
    if name == "$regex":
        return {name: draw(regexes), "$options": draw(regex_flags)}
    if name == "$elemMatch":
        element = draw(st.sampled_from(["$eq", "$gt", "$lt", "$ne", "x", "x.$gte"]))
        value = draw(operands)
        if element == "x":
            return {name: {"x": value}}
        if element == "x.$gte":
            return {name: {"x": {"$gte": value}}}
        return {name: {element: value}}
    return {name: draw(strings)}  # $startsWith, $endsWith, $contains


@st.composite
def condition(draw: st.DrawFn, operands: st.SearchStrategy[Any]) -> Any:
    """What a field maps to: a literal, operators (ANDed), or a field-level ``$not``."""
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(operands)
    if kind == 1:
        return {"$not": draw(operator(operands))}
    if kind == 2:
        return {**draw(operator(operands)), **draw(operator(operands))}
    return draw(operator(operands))


@st.composite
def expression(draw: st.DrawFn, operands: st.SearchStrategy[Any], paths: st.SearchStrategy[str]) -> dict[str, Any]:
    """``$expr`` comparing a field with a field, a literal or a list (either side)."""
    op = draw(st.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$unsupported"]))
    ref = "$" + draw(paths)
    other = draw(st.one_of(paths.map(lambda p: "$" + p), operands, st.lists(operands, max_size=2)))
    return {"$expr": {op: [other, ref] if draw(st.booleans()) else [ref, other]}}


@st.composite
def filter_tree(draw: st.DrawFn, operands: st.SearchStrategy[Any], paths: st.SearchStrategy[str], depth: int = 2) -> dict[str, Any]:
    """A filter: a field condition or ``$expr``, or up to ``depth`` levels of logical operators."""
    kind = draw(st.integers(0, 9)) if depth else 0
    if kind <= 3:
        return {draw(paths): draw(condition(operands))}
    if kind == 4:
        return draw(expression(operands, paths))
    sub = filter_tree(operands, paths, depth - 1)
    if kind == 5:
        return {"$and": draw(st.lists(sub, min_size=1, max_size=2))}
    if kind == 6:
        return {"$or": draw(st.lists(sub, max_size=2))}
    if kind == 7:
        return {"$nor": draw(st.lists(sub, min_size=1, max_size=2))}
    if kind == 8:
        return {"$not": draw(sub)}
    return {**draw(sub), **draw(sub)}


def filters() -> st.SearchStrategy[dict[str, Any]]:
    """Any filter over the document paths."""
    return filter_tree(scalars, paths)


@st.composite
def collections_and_filters(draw: st.DrawFn) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Documents, and a filter whose operands are mostly values those documents hold."""
    docs = draw(collections)
    held = [v for d in docs for p in PATHS if (v := reference.get(reference.stored(d), p)) is not reference.MISSING]
    operands = st.one_of(st.sampled_from(held), st.sampled_from(held), scalars) if held else scalars
    return docs, draw(filter_tree(operands, paths))


# -- properties -------------------------------------------------------------------------------


@given(collections_and_filters())
def test_duckdb_agrees_with_reference_evaluator(case: tuple[list[dict[str, Any]], dict[str, Any]]) -> None:
    docs, filter = case
    stored = [reference.stored(d) for d in docs]
    expected = [i for i, doc in enumerate(stored) if reference.matches(doc, filter)]
    found = find_in(docs, filter)
    assert [next(i for i, d in enumerate(docs) if d is f) for f in found] == expected


@given(filters())
def test_compiled_sql_parses_back_to_the_same_tree(filter: dict[str, Any]) -> None:
    for tree in (compile_filter(filter, system_columns=False), compile_filter(filter, TYPED)):
        assert parse_one(sql.render(tree), read="duckdb") == tree


# The same, against a typed collection: declared fields have one type, with nulls and absences.
TYPED = Schema.parse({"n": "int", "s": "string", "t": "string[]", "f": "float"})
typed_documents = st.fixed_dictionaries(
    {},
    optional={
        "n": st.one_of(st.none(), st.integers(-5, 5)),
        "s": st.one_of(st.none(), strings),
        "t": st.lists(strings, max_size=3),
        "f": st.one_of(st.none(), st.sampled_from([0.5, -1.0, float("inf"), float("nan")])),
        "a": values,
    },
)
def typed_filters() -> st.SearchStrategy[dict[str, Any]]:
    return filter_tree(st.one_of(scalars, st.integers(-5, 5), strings), st.sampled_from(["n", "s", "t", "t.0", "f", "a", "n.x"]))


@given(st.lists(typed_documents, max_size=5), typed_filters())
def test_typed_columns_agree_with_reference_evaluator(docs: list[dict[str, Any]], filter: dict[str, Any]) -> None:
    con = duckdb.connect()
    columns = {**TYPED.column_types(), "$data": "JSON"}
    con.execute("CREATE TABLE t (" + ", ".join(f'"{c}" {t}' for c, t in columns.items()) + ")")
    for i, doc in enumerate(docs):
        row = to_row({**doc, "$id": str(i)}, TYPED)
        con.execute("INSERT INTO t VALUES (" + ", ".join("?" * len(columns)) + ")", [row.get(c) for c in columns])
    found = {d["$id"] for d in find(con, "t", TYPED, filter)}
    expected = {str(i) for i, doc in enumerate(docs) if reference.matches(reference.stored(doc), filter)}
    assert found == expected


@given(collections, paths, scalars)
def test_ne_is_the_complement_of_eq(docs: list[dict[str, Any]], path: str, value: Any) -> None:
    equal = find_in(docs, {path: {"$eq": value}})
    assert find_in(docs, {path: {"$ne": value}}) == [d for d in docs if not any(d is e for e in equal)]
    assert find_in(docs, {path: {"$in": [value]}}) == equal


@given(collections, filters(), filters())
def test_nor_is_not_or(docs: list[dict[str, Any]], first: dict[str, Any], second: dict[str, Any]) -> None:
    either = find_in(docs, {"$or": [first, second]})
    assert find_in(docs, {"$nor": [first, second]}) == [d for d in docs if not any(d is e for e in either)]


@given(collections, paths, strings)
def test_starts_with_implies_contains(docs: list[dict[str, Any]], path: str, prefix: str) -> None:
    starting = find_in(docs, {path: {"$startsWith": prefix}})
    containing = find_in(docs, {path: {"$contains": prefix}})
    assert all(any(d is c for c in containing) for d in starting)
