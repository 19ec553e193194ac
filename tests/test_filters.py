"""Filters and find, table-driven: filter → SQL, filter → matching documents, bad filter → error.

The behaviour tables run twice: through ``find_in`` (every field in the variant
column) and through a typed collection (declared fields in their own columns),
so both layouts are held to the same answers.
"""

from __future__ import annotations

import datetime as dt
import doctest
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from sqlglot import exp, parse_one

import parquedb_ibis.compile.filters as filters_module
import parquedb_ibis.compile.sql as sql_module
import parquedb_ibis.query as query_module
from parquedb_ibis.compile import sql
from parquedb_ibis.compile.filters import FIELD_OPERATORS, LOGICAL_OPERATORS, compile_filter, compile_regex, to_sql
from parquedb_ibis.errors import (
    FilterError,
    FindOptionError,
    ParqueDBError,
    UnknownOperatorError,
    UnsupportedOperatorError,
)
from parquedb_ibis.query import count, distinct, explain, find, find_in, find_one
from parquedb_ibis.schema import Schema, to_row

UTC = dt.timezone.utc

# -- filter → SQL ----------------------------------------------------------------------------

TYPED_SCHEMA = {"age": "int", "name": "string", "score": "float", "tags": "string[]", "active": "boolean", "born": "timestamp"}

TYPED_SQL = [
    ({"name": "Ann"}, "\"name\" = 'Ann'"),
    ({"age": {"$eq": 30}}, '"age" = 30'),
    ({"age": None}, '"age" IS NULL'),
    ({"age": {"$ne": 30}}, 'NOT COALESCE("age" = 30, FALSE)'),
    ({"age": {"$ne": None}}, 'NOT "age" IS NULL'),
    ({"age": {"$gt": 18, "$lte": 65}}, '"age" > 18 AND "age" <= 65'),
    ({"score": {"$gte": 1.5}}, '"score" >= 1.5 AND NOT ISNAN("score")'),
    ({"age": {"$gt": None}}, 'NOT "age" IS NULL'),
    ({"age": {"$lt": "5"}}, "FALSE"),
    ({"age": {"$in": [1, 2, None]}}, '"age" IS NULL OR "age" IN (1, 2)'),
    ({"age": {"$nin": [1, 2]}}, 'NOT COALESCE("age" IN (1, 2), FALSE)'),
    ({"name": {"$in": []}}, "FALSE"),
    ({"name": {"$nin": []}}, "TRUE"),
    (
        {"age": {"$exists": False}},
        "\"age\" IS NULL AND COALESCE(ARRAY_CONTAINS(TRY_CAST((\"$data\" -> '/$absent') AS TEXT[]), 'age'), FALSE)",
    ),
    ({"$id": {"$exists": True}}, 'NOT "$id" IS NULL'),
    ({"age": {"$type": "number"}}, 'NOT "age" IS NULL'),
    ({"name": {"$regex": "^a", "$options": "i"}}, "REGEXP_MATCHES(\"name\", '(?i)^a')"),
    ({"name": {"$regex": re.compile("x$", re.M)}}, "REGEXP_MATCHES(\"name\", '(?m)x$')"),
    ({"age": {"$mod": [2, 1]}}, '"age" % 2 = 1'),
    ({"name": {"$startsWith": "A"}}, "STARTS_WITH(\"name\", 'A')"),
    ({"name": {"$endsWith": "n"}}, "ENDS_WITH(\"name\", 'n')"),
    ({"name": {"$contains": "n"}}, "CONTAINS(\"name\", 'n')"),
    ({"tags": {"$all": ["a", "b"]}}, "NOT \"tags\" IS NULL AND ARRAY_CONTAINS(\"tags\", 'a') AND ARRAY_CONTAINS(\"tags\", 'b')"),
    ({"tags": {"$size": 2}}, 'NOT "tags" IS NULL AND LENGTH("tags") = 2'),
    ({"tags": {"$elemMatch": {"$gt": "b"}}}, "NOT \"tags\" IS NULL AND LENGTH(LIST_FILTER(\"tags\", LAMBDA _e1 : _e1 > 'b')) > 0"),
    ({"tags.0": "a"}, "\"tags\"[1] = 'a'"),
    ({"tags": ["a", "b"]}, "\"tags\" = ['a', 'b']"),
    ({"age": {"$not": {"$gt": 30}}}, 'NOT COALESCE("age" > 30, FALSE)'),
    ({"$or": [{"age": 1}, {"name": "x"}]}, "\"age\" = 1 OR \"name\" = 'x'"),
    ({"$nor": [{"age": 1}, {"name": "x"}]}, "NOT COALESCE(\"age\" = 1 OR \"name\" = 'x', FALSE)"),
    ({"$not": {"age": 1, "name": "x"}}, "NOT COALESCE(\"age\" = 1 AND \"name\" = 'x', FALSE)"),
    ({"$expr": {"$lt": ["$age", 5]}}, '"age" IS NULL OR "age" < 5'),
    (
        {"$expr": {"$gt": ["$age", "$score"]}},
        "NOT \"age\" IS NULL AND \"score\" IS NULL OR \"age\" > NULLIF(\"score\", CAST('NaN' AS DOUBLE))",
    ),
    ({"$comment": "why", "active": True}, '"active" = TRUE'),
    ({"born": {"$gte": dt.datetime(2020, 1, 1)}}, "\"born\" >= CAST('2020-01-01T00:00:00+00:00' AS TIMESTAMPTZ)"),
    ({"age.x": 1}, "FALSE"),
    ({"age.x": None}, "TRUE"),
]

VARIANT_SQL = [
    ({"city": "Paris"}, "(\"$data\" ->> '/city') = 'Paris'"),
    (
        {"n": {"$gte": 18}},
        "CASE WHEN COALESCE(TRY_CAST((\"$data\" ->> '/n') AS DOUBLE) >= 18, TRUE)"
        " THEN LIST_TRANSFORM([(\"$data\" -> '/n')], LAMBDA _v0 : JSON_TYPE(_v0) IN ('BIGINT', 'UBIGINT', 'DOUBLE')"
        " AND TRY_CAST(_v0 AS DOUBLE) >= 18 OR CAST(_v0 AS TEXT) = '{\"$number\":\"Infinity\"}')[1]"
        " ELSE FALSE END",
    ),
    ({"n": None}, "COALESCE(JSON_TYPE(\"$data\", '/n'), 'NULL') = 'NULL'"),
    ({"n": {"$exists": True}}, "NOT JSON_TYPE(\"$data\", '/n') IS NULL"),
    (
        {"n": {"$type": "date"}},
        "LIST_TRANSFORM([(\"$data\" -> '/n')], LAMBDA _v0 : JSON_KEYS(_v0) = ['$date']"
        " OR JSON_KEYS(_v0) = ['$dateonly'])[1]",
    ),
    (
        {"d": {"$lt": dt.datetime(2024, 6, 1)}},
        "LIST_TRANSFORM([(\"$data\" -> '/d')], LAMBDA _v0 : JSON_KEYS(_v0) = ['$date']"
        " AND TRY_CAST((_v0 ->> '/$date') AS TIMESTAMPTZ) < CAST('2024-06-01T00:00:00+00:00' AS TIMESTAMPTZ))[1]",
    ),
    (
        {"a": [1, None]},
        "LIST_TRANSFORM([(\"$data\" -> '/a')], LAMBDA _v0 : JSON_TYPE(_v0) = 'ARRAY'"
        " AND JSON_ARRAY_LENGTH(_v0) = 2 AND JSON_TYPE(_v0, '/0') IN ('BIGINT', 'UBIGINT', 'DOUBLE')"
        " AND TRY_CAST((_v0 -> '/0') AS DOUBLE) = 1 AND JSON_TYPE(_v0, '/1') = 'NULL')[1]",
    ),
    (
        {"tags": {"$all": ["a"]}},
        "LIST_TRANSFORM([(\"$data\" -> '/tags')], LAMBDA _v0 : JSON_TYPE(_v0) = 'ARRAY'"
        " AND LENGTH(LIST_FILTER(TRY_CAST(_v0 AS JSON[]), LAMBDA _e1 : JSON_TYPE(_e1) = 'VARCHAR'"
        " AND (_e1 ->> '$') = 'a')) > 0)[1]",
    ),
    (
        {"exceptions.0.name": {"$regex": "Error$"}},
        "LIST_TRANSFORM([(\"$data\" -> '/exceptions/0/name')], LAMBDA _v0 : JSON_TYPE(_v0) = 'VARCHAR'"
        " AND REGEXP_MATCHES((_v0 ->> '$'), 'Error$'))[1]",
    ),
    (
        {"a/b~c": 1.5},
        "CASE WHEN COALESCE(TRY_CAST((\"$data\" ->> '/a~1b~0c') AS DOUBLE) = 1.5, TRUE)"
        " THEN LIST_TRANSFORM([(\"$data\" -> '/a~1b~0c')], LAMBDA _v0 : JSON_TYPE(_v0) IN ('BIGINT', 'UBIGINT', 'DOUBLE')"
        " AND TRY_CAST(_v0 AS DOUBLE) = 1.5)[1] ELSE FALSE END",
    ),
]


@pytest.mark.parametrize(("filter", "expected"), TYPED_SQL, ids=[repr(f) for f, _ in TYPED_SQL])
def test_filter_on_typed_columns_compiles_to(filter: dict[str, Any], expected: str) -> None:
    assert to_sql(filter, TYPED_SCHEMA) == expected


@pytest.mark.parametrize(("filter", "expected"), VARIANT_SQL, ids=[repr(f) for f, _ in VARIANT_SQL])
def test_filter_on_variant_paths_compiles_to(filter: dict[str, Any], expected: str) -> None:
    assert to_sql(filter) == expected


@pytest.mark.parametrize(("filter", "_"), TYPED_SQL + VARIANT_SQL, ids=[repr(f) for f, _ in TYPED_SQL + VARIANT_SQL])
def test_compiled_sql_parses_back_to_the_same_tree(filter: dict[str, Any], _: str) -> None:
    for tree in (compile_filter(filter, TYPED_SCHEMA), compile_filter(filter, system_columns=False)):
        assert parse_one(sql.render(tree), read="duckdb") == tree


def test_documents_layout_guards_against_null_documents() -> None:
    assert to_sql({"a": 1}, system_columns=False).startswith("JSON_TYPE(\"$data\") IN ('OBJECT', 'ARRAY') AND ")
    assert to_sql({}, system_columns=False) == "TRUE"
    assert to_sql(None, system_columns=False) == "TRUE"


DOCS = Path(__file__).parents[1] / "docs"


def test_every_operator_table_row_is_documented() -> None:
    reference, semantics = (DOCS / "filters.md").read_text(), (DOCS / "semantics.md").read_text()
    for op in [*FIELD_OPERATORS, *LOGICAL_OPERATORS]:
        assert f"`{op}`" in reference and op in semantics, op


def test_reference_examples_compile_to_the_sql_shown() -> None:
    failures, tried = doctest.testfile(str(DOCS / "filters.md"), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert tried > 40 and failures == 0


# -- filter → matching documents ------------------------------------------------------------------

PEOPLE: list[dict[str, Any]] = [
    {
        "$id": "ann", "name": "Ann", "age": 30, "score": 9.5, "tags": ["a", "b"], "active": True,
        "born": dt.datetime(1994, 5, 1, tzinfo=UTC), "meta": {"team": "red", "level": 3}, "city": "Paris",
        "items": [{"sku": "x", "qty": 2}, {"sku": "y", "qty": 0}],
    },
    {
        "$id": "bob", "name": "Bob", "age": 25, "score": 7.0, "tags": ["b"], "active": False,
        "born": dt.datetime(1999, 1, 1, tzinfo=UTC), "meta": {"team": "blue"}, "city": None, "nick": "bobby",
    },
    {"$id": "cy", "name": "Cy", "age": None, "tags": [], "active": True, "meta": None, "city": "Rome"},
    {
        "$id": "di", "name": "di", "score": 8.25, "tags": ["c", "a", "b"], "meta": {"team": "red", "level": 5},
        "items": [{"sku": "x", "qty": 5}], "code": "41",
    },
    {"$id": "ed", "name": "Ed", "age": 41, "score": 3.0, "active": None, "born": dt.datetime(1983, 2, 3, tzinfo=UTC), "city": "Paris", "code": 41},
]  # fmt: skip
PEOPLE_SCHEMA = Schema.parse({**TYPED_SCHEMA, "meta": "variant"})
ALL = ["ann", "bob", "cy", "di", "ed"]

BEHAVIOUR = [
    ({"name": "Ann"}, ["ann"]),
    ({"age": 30}, ["ann"]),
    ({"age": None}, ["cy", "di"]),
    ({"age": {"$ne": 30}}, ["bob", "cy", "di", "ed"]),
    ({"age": {"$ne": None}}, ["ann", "bob", "ed"]),
    ({"age": {"$gt": 25}}, ["ann", "ed"]),
    ({"age": {"$gte": 25, "$lt": 41}}, ["ann", "bob"]),
    ({"age": {"$lte": None}}, []),
    ({"age": {"$gt": None}}, ["ann", "bob", "ed"]),
    ({"age": {"$gt": "20"}}, []),
    ({"score": {"$lt": 8}}, ["bob", "ed"]),
    ({"age": {"$in": [25, 41]}}, ["bob", "ed"]),
    ({"age": {"$in": [None, 30]}}, ["ann", "cy", "di"]),
    ({"age": {"$nin": [25, 41]}}, ["ann", "cy", "di"]),
    ({"age": {"$nin": [None]}}, ["ann", "bob", "ed"]),
    ({"age": {"$exists": True}}, ["ann", "bob", "cy", "ed"]),
    ({"age": {"$exists": False}}, ["di"]),
    ({"city": {"$exists": True}}, ["ann", "bob", "cy", "ed"]),
    ({"city": None}, ["bob", "di"]),
    ({"meta": {"$exists": True}}, ["ann", "bob", "cy", "di"]),
    ({"meta": None}, ["cy", "ed"]),
    ({"meta.team": "red"}, ["ann", "di"]),
    ({"meta.level": {"$gte": 4}}, ["di"]),
    ({"meta": {"team": "blue"}}, ["bob"]),
    ({"meta": {"level": 3, "team": "red"}}, ["ann"]),
    ({"meta": {"team": "red"}}, []),
    ({"tags": ["a", "b"]}, ["ann"]),
    ({"tags": "a"}, []),
    ({"tags": {"$all": ["b", "a"]}}, ["ann", "di"]),
    ({"tags": {"$all": []}}, ["ann", "bob", "cy", "di"]),
    ({"tags": {"$size": 0}}, ["cy"]),
    ({"tags.0": "c"}, ["di"]),
    ({"tags.5": None}, ALL),
    ({"tags": {"$elemMatch": {"$gt": "b"}}}, ["di"]),
    ({"tags": {"$gt": ["a", "a"]}}, ["ann", "bob", "di"]),
    ({"tags": {"$lte": ["a", "b"]}}, ["ann", "cy"]),
    ({"items": {"$elemMatch": {"sku": "x", "qty": {"$gt": 3}}}}, ["di"]),
    ({"items.qty": 2}, []),
    ({"items.1.qty": 0}, ["ann"]),
    ({"code": 41}, ["ed"]),
    ({"code": "41"}, ["di"]),
    ({"name": {"$regex": "^[a-c]", "$options": "i"}}, ["ann", "bob", "cy"]),
    ({"name": {"$regex": re.compile("^d")}}, ["di"]),
    ({"name": {"$not": {"$regex": "^[A-Z]"}}}, ["di"]),
    ({"name": {"$startsWith": "B"}}, ["bob"]),
    ({"name": {"$endsWith": "y"}}, ["cy"]),
    ({"nick": {"$contains": "obb"}}, ["bob"]),
    ({"age": {"$mod": [5, 0]}}, ["ann", "bob"]),
    ({"age": {"$type": "number"}}, ["ann", "bob", "ed"]),
    ({"age": {"$type": "null"}}, ["cy", "di"]),
    ({"meta": {"$type": "object"}}, ["ann", "bob", "di"]),
    ({"born": {"$type": "date"}}, ["ann", "bob", "ed"]),
    ({"tags": {"$type": "array"}}, ["ann", "bob", "cy", "di"]),
    ({"code": {"$type": "string"}}, ["di"]),
    ({"active": {"$not": {"$eq": True}}}, ["bob", "di", "ed"]),
    ({"$or": [{"city": "Rome"}, {"age": {"$gt": 40}}]}, ["cy", "ed"]),
    ({"$or": []}, []),
    ({"$and": []}, ALL),
    ({"$nor": []}, ALL),
    ({"$nor": [{"city": "Paris"}, {"active": False}]}, ["cy", "di"]),
    ({"$not": {"city": "Paris", "age": 30}}, ["bob", "cy", "di", "ed"]),
    ({"$expr": {"$gt": ["$score", "$age"]}}, ["di"]),
    ({"$expr": {"$lt": ["$age", 26]}}, ["bob", "cy", "di"]),
    ({"$expr": {"$eq": ["$age", "$missing"]}}, ["cy", "di"]),
    ({"$expr": {"$gt": [50, "$age"]}}, ["ann", "bob", "cy", "di", "ed"]),
    ({"born": {"$lt": dt.datetime(1995, 1, 1)}}, ["ann", "ed"]),
    ({"born": {"$gt": "1990"}}, []),
    ({"$comment": "anything"}, ALL),
    ({"$id": {"$in": ["ann", "ed"]}}, ["ann", "ed"]),
]


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(":memory:")
    connection.execute("SET TimeZone = 'UTC'")
    make_collection(connection, "people", PEOPLE_SCHEMA, PEOPLE)
    yield connection
    connection.close()


def make_collection(con: duckdb.DuckDBPyConnection, name: str, schema: Schema, docs: list[dict[str, Any]]) -> None:
    """A table in the stored row layout (typed columns + ``$data``), filled with ``to_row``."""
    columns = {**schema.column_types(), "$data": "JSON"}
    con.execute(f'CREATE OR REPLACE TABLE "{name}" (' + ", ".join(f'"{c}" {t}' for c, t in columns.items()) + ")")
    for doc in docs:
        row = to_row(schema.validate(doc, name), schema)
        con.execute(f'INSERT INTO "{name}" VALUES (' + ", ".join("?" * len(columns)) + ")", [row.get(c) for c in columns])


@pytest.mark.parametrize(("filter", "expected"), BEHAVIOUR, ids=[repr(f) for f, _ in BEHAVIOUR])
def test_filter_matches_in_documents_layout(filter: dict[str, Any], expected: list[str]) -> None:
    assert [d["$id"] for d in find_in(PEOPLE, filter)] == expected


@pytest.mark.parametrize(("filter", "expected"), BEHAVIOUR, ids=[repr(f) for f, _ in BEHAVIOUR])
def test_filter_matches_in_typed_layout(con: duckdb.DuckDBPyConnection, filter: dict[str, Any], expected: list[str]) -> None:
    found = {d["$id"] for d in find(con, "people", PEOPLE_SCHEMA, filter)}
    assert [i for i in ALL if i in found] == expected


def test_nin_matches_rows_where_field_is_null() -> None:
    assert find_in([{"a": None}, {}, {"a": 0}], {"a": {"$nin": [0]}}) == [{"a": None}, {}]


def test_nor_keeps_rows_where_sql_would_be_unknown() -> None:
    assert find_in([{"a": None}, {"a": 0}], {"$nor": [{"a": {"$eq": 0}}]}) == [{"a": None}]


def test_null_and_primitive_documents_match_only_the_empty_filter() -> None:
    docs = [None, 5, "x", [1, 2], {"a": 1}]
    assert find_in(docs, {}) == docs
    assert find_in(docs, {"$nor": [{"a": 2}]}) == [[1, 2], {"a": 1}]
    assert find_in(docs, {"0": 1}) == [[1, 2]]


def test_special_numbers_follow_javascript() -> None:
    docs = [{"v": float("inf")}, {"v": float("-inf")}, {"v": float("nan")}, {"v": 1}]
    assert find_in(docs, {"v": {"$gt": 1e300}}) == [docs[0]]
    assert find_in(docs, {"v": {"$lt": 0}}) == [docs[1]]
    assert find_in(docs, {"v": float("nan")}) == []
    assert find_in(docs, {"v": {"$ne": float("nan")}}) == docs
    assert find_in(docs, {"v": {"$type": "number"}}) == docs
    assert find_in(docs, {"v": float("inf")}) == [docs[0]]


def test_dates_compare_with_dates_only() -> None:
    docs = [{"d": dt.datetime(2024, 1, 2, tzinfo=UTC)}, {"d": "2024-01-02"}, {"d": dt.date(2024, 1, 2)}]
    assert find_in(docs, {"d": {"$gt": dt.datetime(2024, 1, 1)}}) == [docs[0]]
    assert find_in(docs, {"d": {"$gt": "2024-01-01"}}) == [docs[1]]
    assert find_in(docs, {"d": dt.date(2024, 1, 2)}) == [docs[2]]
    assert find_in(docs, {"d": {"$type": "date"}}) == [docs[0], docs[2]]


def test_decimals_compare_with_decimals_in_variant_paths_and_with_numbers_in_typed_columns() -> None:
    docs = [{"$id": "a", "p": Decimal("12.30")}, {"$id": "b", "p": 12.3}]
    assert ids(find_in(docs, {"p": Decimal("12.3")})) == ["a"]
    assert ids(find_in(docs, {"p": {"$type": "number"}})) == ["a", "b"]
    con = duckdb.connect()
    schema = Schema.parse({"p": "decimal(10,2)"})
    make_collection(con, "prices", schema, docs[:1])
    assert ids(find(con, "prices", schema, {"p": 12.3})) == ids(find(con, "prices", schema, {"p": Decimal("12.3")})) == ["a"]


def test_numbers_compare_numerically_and_never_with_strings() -> None:
    docs = [{"n": 1}, {"n": 1.0}, {"n": "1"}, {"n": True}]
    assert find_in(docs, {"n": 1}) == docs[:2]
    assert find_in(docs, {"n": {"$in": [1.0]}}) == docs[:2]
    assert find_in(docs, {"n": {"$gte": 0}}) == docs[:2]


def test_regex_flags_and_javascript_syntax_run_in_re2() -> None:
    docs = [{"s": "Hello\nWorld"}, {"s": "année 2024"}]
    assert find_in(docs, {"s": {"$regex": "^world", "$options": "im"}}) == [docs[0]]
    assert find_in(docs, {"s": {"$regex": "hello.world", "$options": "is"}}) == [docs[0]]
    assert find_in(docs, {"s": {"$regex": "hello.world", "$options": "i"}}) == []
    assert find_in(docs, {"s": {"$regex": "\\u00e9e (?<year>\\d{4})"}}) == [docs[1]]
    assert find_in(docs, {"s": {"$regex": "World", "$options": "y"}}) == []
    assert find_in(docs, {"s": {"$regex": ".*2024$"}}) == [docs[1]]  # upstream rejects this as unsafe


@pytest.mark.parametrize(
    ("operand", "options", "pattern"),
    [
        ("^a", None, "^a"),
        ("^a", "i", "(?i)^a"),
        ("a.b", "msi", "(?msi)a.b"),
        ("a", "gud", "a"),
        ("a|b", "y", "\\A(?:a|b)"),
        (re.compile("a", re.I | re.S), None, "(?is)a"),
        (re.compile("a", re.I), "", "a"),
        ("(?<year>\\d{4})", None, "(?P<year>\\d{4})"),
        ("\\u00e9\\u{1F600}", None, "\\x{00e9}\\x{1F600}"),
        ("[\\1]", None, "[\\1]"),
    ],
)
def test_regex_operands_become_re2_patterns(operand: Any, options: str | None, pattern: str) -> None:
    assert compile_regex(operand, options, "f") == pattern


# -- bad filters -------------------------------------------------------------------------------

ERRORS = [
    (["a"], FilterError, r"^filter at '\$': expected a filter object, found list"),
    ({"age": {"$gtee": 1}}, UnknownOperatorError, r"^filter at 'age': unknown operator '\$gtee'; did you mean '\$gte'\?$"),
    ({"$foo": 1}, UnknownOperatorError, r"^filter at '\$': unknown operator '\$foo'"),
    ({"$or": [{"a": {"$eqq": 1}}]}, UnknownOperatorError, r"^filter at '\$or\.0\.a': unknown operator '\$eqq'"),
    ({"a": {"$gt": 1, "b": 2}}, UnknownOperatorError, r"^filter at 'a': unknown operator 'b'"),
    ({"$and": {"a": 1}}, FilterError, r"^filter at '\$and': expected a list of filter objects, found dict"),
    ({"$and": [1]}, FilterError, r"^filter at '\$and\.0': expected a filter object, found int 1"),
    ({"a": {"$in": "x"}}, FilterError, r"^filter at 'a\.\$in': expected a list, found str 'x'"),
    ({"a": {"$size": "2"}}, FilterError, r"^filter at 'a\.\$size': expected a non-negative integer, found str '2'"),
    ({"a": {"$mod": [0]}}, FilterError, r"^filter at 'a\.\$mod': expected \[divisor, remainder\]"),
    ({"a": {"$regex": "(a"}}, FilterError, r"^filter at 'a\.\$regex': invalid regular expression '\(a'"),
    ({"a": {"$regex": "(a)\\1"}}, FilterError, r"back-references and look-around\) is not supported by RE2"),
    ({"a": {"$regex": "a(?=b)"}}, FilterError, r"is not supported by RE2"),
    ({"a": {"$regex": "x", "$options": "x"}}, FilterError, r"unsupported regex flag 'x'"),
    ({"a": {"$regex": 5}}, FilterError, r"expected a string or a compiled pattern"),
    ({"a": {"$exists": 1}}, FilterError, r"^filter at 'a\.\$exists': expected true or false, found int 1"),
    ({"a": {"$type": "int"}}, FilterError, r"^filter at 'a\.\$type': unknown type 'int'; expected one of null, boolean"),
    ({"a": {"$elemMatch": [1]}}, FilterError, r"^filter at 'a\.\$elemMatch': expected a filter object"),
    ({"a": {"$not": re.compile("x")}}, FilterError, r"write \{'\$not': \{'\$regex': \.\.\.\}\}"),
    ({"a": {"$startsWith": 1}}, FilterError, r"^filter at 'a\.\$startsWith': expected a string, found int 1"),
    ({"$text": {"$search": "x"}}, UnsupportedOperatorError, r"^filter at '\$text': operator '\$text' is not supported: full-text"),
    ({"$vector": {}}, UnsupportedOperatorError, r"operator '\$vector' is not supported"),
    ({"$geo": {}}, UnsupportedOperatorError, r"operator '\$geo' is not supported"),
    ({"a": re.compile("x")}, FilterError, r"^filter at 'a': a regular expression is only allowed as the operand of '\$regex'"),
    ({"a": {"$eq": object()}}, FilterError, r"^filter at 'a\.\$eq': cannot compare with a value of type object"),
    ({"a": Decimal("NaN")}, FilterError, r"^filter at 'a': expected a finite Decimal"),
    ({"$expr": {"$gt": ["$a"]}}, FilterError, r"^filter at '\$expr\.\$gt': expected \[left, right\]"),
    ({"$expr": 1}, FilterError, r"^filter at '\$expr': expected an object of comparisons"),
    ({1: 2}, FilterError, r"filter keys must be strings"),
]


@pytest.mark.parametrize(("filter", "error", "message"), ERRORS, ids=[repr(f) for f, _, _ in ERRORS])
def test_bad_filter_raises_with_the_path(filter: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message) as raised:
        compile_filter(filter)
    assert isinstance(raised.value, ParqueDBError) and isinstance(raised.value, ValueError)


def test_unknown_operator_error_carries_structured_fields() -> None:
    with pytest.raises(UnknownOperatorError) as raised:
        compile_filter({"age": {"$gtee": 18}})
    assert (raised.value.path, raised.value.operator) == ("age", "$gtee")


def test_unsupported_expression_operators_are_false_as_upstream() -> None:
    assert to_sql({"$expr": {"$mod": [{"$hash": "$x"}, 10]}}) == "FALSE"


# -- find: sort, pagination, projection, count, distinct, explain -------------------------------

MIXED = [
    {"$id": "1", "v": "b"},
    {"$id": "2", "v": None},
    {"$id": "3", "v": 10},
    {"$id": "4"},
    {"$id": "5", "v": True},
    {"$id": "6", "v": 9.5},
    {"$id": "7", "v": dt.datetime(2024, 1, 1, tzinfo=UTC)},
    {"$id": "8", "v": "B"},
    {"$id": "9", "v": [1]},
]


def ids(docs: list[Any]) -> list[str]:
    return [d["$id"] for d in docs]


def test_sort_puts_nulls_last_in_both_directions(con: duckdb.DuckDBPyConnection) -> None:
    assert ids(find(con, "people", PEOPLE_SCHEMA, sort={"age": 1})) == ["bob", "ann", "ed", "cy", "di"]
    assert ids(find(con, "people", PEOPLE_SCHEMA, sort={"age": -1})) == ["ed", "ann", "bob", "cy", "di"]
    assert ids(find_in(PEOPLE, sort={"age": "desc"})) == ["ed", "ann", "bob", "cy", "di"]


def test_sort_on_variant_paths_is_type_aware() -> None:
    assert ids(find_in(MIXED, sort={"v": 1})) == ["6", "3", "8", "1", "7", "5", "9", "2", "4"]
    assert ids(find_in(MIXED, sort={"v": -1})) == ["9", "5", "7", "1", "8", "3", "6", "2", "4"]


def test_sort_uses_keys_in_order_and_keeps_ties_in_input_order(con: duckdb.DuckDBPyConnection) -> None:
    assert ids(find_in(PEOPLE, sort={"city": 1, "name": -1})) == ["ed", "ann", "cy", "di", "bob"]
    assert ids(find_in(PEOPLE, sort={"meta.team": 1})) == ["bob", "ann", "di", "cy", "ed"]
    assert ids(find(con, "people", PEOPLE_SCHEMA, sort={"meta.team": 1})) == ["bob", "ann", "di", "cy", "ed"]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"limit": 2}, ["bob", "ann"]),
        ({"limit": 0}, ["bob", "ann", "ed", "cy", "di"]),
        ({"limit": -1, "skip": -3}, ["bob", "ann", "ed", "cy", "di"]),
        ({"skip": 3}, ["cy", "di"]),
        ({"cursor": "ann"}, ["ed", "cy", "di"]),
        ({"cursor": "ann", "skip": 1, "limit": 1}, ["cy"]),
        ({"cursor": "di"}, []),
        ({"cursor": "nobody"}, []),
    ],
)
def test_pagination_applies_cursor_then_skip_then_limit(
    con: duckdb.DuckDBPyConnection, options: dict[str, Any], expected: list[str]
) -> None:
    assert ids(find(con, "people", PEOPLE_SCHEMA, sort={"age": 1}, **options)) == expected
    assert ids(find_in(PEOPLE, sort={"age": 1}, **options)) == expected


def test_cursor_without_sort_follows_storage_order() -> None:
    assert ids(find_in(PEOPLE, cursor="cy")) == ["di", "ed"]


def test_projection_includes_or_excludes_top_level_keys(con: duckdb.DuckDBPyConnection) -> None:
    assert find(con, "people", PEOPLE_SCHEMA, {"name": "Bob"}, project={"name": 1, "nick": True, "zzz": 1}) == [
        {"name": "Bob", "nick": "bobby"}
    ]
    excluded = find_one(con, "people", PEOPLE_SCHEMA, {"name": "Cy"}, project={"meta": 0, "tags": False})
    assert excluded is not None and "meta" not in excluded and "tags" not in excluded and excluded["city"] == "Rome"
    assert find_in(PEOPLE[:1], project={}) == PEOPLE[:1]


def test_find_returns_original_python_types(con: duckdb.DuckDBPyConnection) -> None:
    ann = find_one(con, "people", PEOPLE_SCHEMA, {"$id": "ann"})
    assert ann == PEOPLE[0]
    assert find_one(con, "people", PEOPLE_SCHEMA, {"$id": "nobody"}) is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sort": {"age": "up"}}, r"^find option 'sort\.age': invalid sort direction 'up'; expected 1, -1, 'asc' or 'desc'$"),
        ({"sort": {"age": True}}, r"invalid sort direction True"),
        ({"sort": ["age"]}, r"^find option 'sort'"),
        ({"limit": "3"}, r"^find option 'limit': expected an integer, found str '3'$"),
        ({"skip": 1.5}, r"^find option 'skip'"),
        ({"cursor": 5}, r"^find option 'cursor': expected an \$id string"),
        ({"project": {"a": "yes"}}, r"^find option 'project\.a': expected 1, 0, true or false"),
    ],
)
def test_bad_find_options_raise(options: dict[str, Any], message: str) -> None:
    with pytest.raises(FindOptionError, match=message):
        find_in(PEOPLE, **options)


def test_count_and_distinct(con: duckdb.DuckDBPyConnection) -> None:
    assert count(con, "people", PEOPLE_SCHEMA, {"city": "Paris"}) == 2
    assert count(con, "people", PEOPLE_SCHEMA) == 5
    assert distinct(con, "people", PEOPLE_SCHEMA, "city") == ["Paris", "Rome", None]
    assert distinct(con, "people", PEOPLE_SCHEMA, "age", {"age": {"$gt": 26}}) == [30, 41]
    assert distinct(con, "people", PEOPLE_SCHEMA, "born")[0] == dt.datetime(1983, 2, 3, tzinfo=UTC)
    assert distinct(con, "people", PEOPLE_SCHEMA, "meta.team") == ["blue", "red"]
    assert distinct(con, "people", PEOPLE_SCHEMA, "code") == [41, "41"]


def test_distinct_merges_deep_equal_values() -> None:
    con = duckdb.connect()
    make_collection(con, "t", Schema(), [{"$id": str(i), "v": v} for i, v in enumerate([1, 1.0, [1], [1.0], 2])])
    assert distinct(con, "t", None, "v") == [1, 2, [1]]


def test_explain_shows_typed_filters_pushed_into_a_parquet_scan(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = tmp_path / "people.parquet"
    to_parquet = exp.CopyParameter(this=exp.var("FORMAT"), expression=exp.var("PARQUET"))
    con.execute(sql.render(exp.Copy(this=sql.table("people"), kind=False, files=[sql.string(str(path))], params=[to_parquet])))
    relation = exp.Table(this=exp.Anonymous(this="read_parquet", expressions=[sql.string(str(path))]))
    explained = explain(con, relation, PEOPLE_SCHEMA, {"age": {"$gte": 30}, "city": "Paris"}, sort={"age": 1})
    assert '"age" >= 30' in explained.sql
    assert "PARQUET_SCAN" in explained.plan or "READ_PARQUET" in explained.plan.upper()
    assert "Filters:" in explained.plan and "age>=30" in explained.plan
    assert ids(find(con, relation, PEOPLE_SCHEMA, {"age": {"$gte": 30}, "city": "Paris"})) == ["ann", "ed"]


def test_find_accepts_a_sqlglot_query_as_relation(con: duckdb.DuckDBPyConnection) -> None:
    subquery = exp.select("*").from_(sql.table("people")).where(exp.column("age", quoted=True).is_(exp.null()).not_())
    assert ids(find(con, subquery, PEOPLE_SCHEMA, {"city": "Paris"}, sort={"age": -1})) == ["ed", "ann"]


@pytest.mark.parametrize("module", [sql_module, filters_module, query_module], ids=lambda m: m.__name__)
def test_docstring_examples_run(module: Any) -> None:
    failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert failures == 0
