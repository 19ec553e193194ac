"""Hostile values and field names compile to inert literals and quoted identifiers.

Every string below is tried as a filter value, as a field name (a JSON-pointer
literal for variant paths, a quoted identifier for declared columns), as a
cursor and as a table name, against real DuckDB tables. The table must be
intact afterwards and exactly the right rows must come back.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import duckdb
import pytest
import sqlglot
from sqlglot import exp, parse_one

from parquedb_ibis.compile import sql
from parquedb_ibis.compile.filters import compile_filter
from parquedb_ibis.errors import QueryError
from parquedb_ibis.query import count, distinct, find, find_in
from parquedb_ibis.schema import Schema, to_row

import reference

NASTY = [
    "'",
    "''",
    "' OR '1'='1",
    "'; DROP TABLE docs; --",
    "x' OR 1=1 --",
    "--",
    ";",
    "/*",
    "*/ SELECT 1; /*",
    "\\",
    "\\'",
    "\\x27",
    '"',
    '"; DROP TABLE docs; --',
    "\x00",
    "a\x00b",
    "\x00'; DROP TABLE docs; --",
    "é😀\u202e",
    "$1",
    "?",
    "%_",
    "\n\r\t",
    "~0~1/",
    "$data",
    "{\"$date\": \"2024-01-01T00:00:00Z\"}",
    "x" * 10_000,
    "'" * 5_000,
]
IDS = [repr(s)[:40] for s in NASTY]

#: Field names: the above without dots (a path splits on them) or a leading ``$`` (an operator
#: at the top level; such keys are reached as nested segments below), plus a few more.
FIELD_NAMES = [s for s in NASTY if "." not in s and s and not s.startswith("$")] + ["a b", "😀", "0"]
FIELD_IDS = [repr(s)[:40] for s in FIELD_NAMES]


def _table_ok(con: duckdb.DuckDBPyConnection, table: str, rows: int) -> None:
    (n,) = con.execute(sql.render(exp.select(exp.Count(this=exp.Star())).from_(sql.table(table)))).fetchone()
    assert n == rows


def _only_inert_nodes(condition: exp.Expr) -> None:
    """The SQL is one boolean expression; user text appears only inside literals."""
    text = sql.render(condition)
    statements = sqlglot.parse(text, read="duckdb")
    assert len(statements) == 1
    assert statements[0] == condition


@pytest.mark.parametrize("value", NASTY, ids=IDS)
def test_literal_round_trips_through_duckdb(value: str) -> None:
    node = sql.literal(value)
    assert parse_one(sql.render(node), read="duckdb") == node
    assert duckdb.execute("SELECT " + sql.render(node)).fetchone() == (value,)


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    """A collection whose declared column ``k`` and variant field ``v`` hold every hostile value."""
    connection = duckdb.connect(":memory:")
    schema = Schema.parse({"k": "string"})
    columns = {**schema.column_types(), "$data": "JSON"}
    connection.execute("CREATE TABLE docs (" + ", ".join(f'"{c}" {t}' for c, t in columns.items()) + ")")
    for i, value in enumerate([*NASTY, "control"]):
        row = to_row({"$id": f"id{i}", "k": value, "v": value}, schema)
        connection.execute("INSERT INTO docs VALUES (" + ", ".join("?" * len(columns)) + ")", [row.get(c) for c in columns])
    yield connection
    connection.close()


ROWS = len(NASTY) + 1
SCHEMA = Schema.parse({"k": "string"})


VALUES = [*NASTY, "control"]


@pytest.mark.parametrize("value", NASTY, ids=IDS)
@pytest.mark.parametrize("field", ["k", "v"], ids=["typed column", "variant path"])
def test_hostile_value_matches_exactly_the_right_rows(con: duckdb.DuckDBPyConnection, field: str, value: str) -> None:
    for filter in (
        {field: value},
        {field: {"$in": [value, "nothing"]}},
        {field: {"$ne": value}},
        {field: {"$gte": value, "$lte": value}},
        {field: {"$startsWith": value, "$endsWith": value}},
        {field: {"$contains": value}, "$expr": {"$eq": [f"${field}", value]}},
    ):
        _only_inert_nodes(compile_filter(filter, SCHEMA))
        found = [d["$id"] for d in find(con, "docs", SCHEMA, filter)]
        assert found == [f"id{i}" for i, v in enumerate(VALUES) if reference.matches({"k": v, "v": v}, filter)]
    assert [d["$id"] for d in find(con, "docs", SCHEMA, {field: value})] == [f"id{NASTY.index(value)}"]
    _table_ok(con, "docs", ROWS)


@pytest.mark.parametrize("value", [s for s in NASTY if "\x00" not in s], ids=[i for s, i in zip(NASTY, IDS) if "\x00" not in s])
def test_hostile_value_in_an_escaped_regex_matches_only_its_row(con: duckdb.DuckDBPyConnection, value: str) -> None:
    pattern = "^" + re.escape(value) + "$"
    assert [d["$id"] for d in find(con, "docs", SCHEMA, {"v": {"$regex": pattern}})] == [f"id{NASTY.index(value)}"]
    _table_ok(con, "docs", ROWS)


def test_hostile_values_as_cursor_sort_and_distinct_are_inert(con: duckdb.DuckDBPyConnection) -> None:
    for value in NASTY:
        after = find(con, "docs", SCHEMA, sort={"v": 1}, cursor=value)
        assert after == []  # no $id is a hostile string
    assert len(distinct(con, "docs", SCHEMA, "v")) == ROWS
    assert count(con, "docs", SCHEMA, {"v": {"$nin": NASTY}}) == 1
    _table_ok(con, "docs", ROWS)


@pytest.mark.parametrize("name", FIELD_NAMES, ids=FIELD_IDS)
def test_hostile_field_name_is_a_json_pointer_literal(name: str) -> None:
    docs = [{name: 1, "other": 2}, {"other": 1}, {name: "1"}]
    filter = {name: 1}
    _only_inert_nodes(compile_filter(filter, system_columns=False))
    assert find_in(docs, filter) == [docs[0]]
    assert find_in(docs, {name: {"$exists": False}}) == [docs[1]]
    assert find_in(docs, {f"{name}.0": None}) == docs
    assert find_in(docs, {"$expr": {"$lt": [f"${name}", "$other"]}}) == docs[:2]
    nested = [{"o": {name: 1, f"${name}": 2}}]
    assert find_in(nested, {f"o.{name}": 1, f"o.${name}": 2}) == nested


@pytest.mark.parametrize("name", [n for n in FIELD_NAMES if "\x00" not in n], ids=lambda n: repr(n)[:40])
def test_hostile_declared_field_name_is_a_quoted_identifier(name: str) -> None:
    schema = Schema.parse({name: "int"})
    filter = {name: {"$gt": 1}, "$or": [{name: {"$exists": True}}]}
    condition = compile_filter(filter, schema)
    _only_inert_nodes(condition)
    con = duckdb.connect()
    columns = {**schema.column_types(), "$data": "JSON"}
    con.execute(sql.render(exp.Create(this=exp.Schema(this=sql.table("t"), expressions=[
        exp.ColumnDef(this=sql.identifier(c), kind=sql.data_type(t)) for c, t in columns.items()
    ]), kind="TABLE")))  # fmt: skip
    for i, value in enumerate([1, 5, None]):
        doc: dict[str, Any] = {"$id": str(i)} | ({name: value} if value is not None else {})
        row = to_row(doc, schema)
        con.execute("INSERT INTO t VALUES (" + ", ".join("?" * len(columns)) + ")", [row.get(c) for c in columns])
    assert [d["$id"] for d in find(con, "t", schema, filter)] == ["1"]
    assert find(con, "t", schema, {name: 5})[0][name] == 5
    _table_ok(con, "t", 3)


@pytest.mark.parametrize("table", ['docs"; DROP TABLE docs; --', "docs' --", "docs\\"], ids=repr)
def test_hostile_table_name_is_a_quoted_identifier(con: duckdb.DuckDBPyConnection, table: str) -> None:
    with pytest.raises(QueryError, match="Catalog Error") as raised:
        find(con, table, SCHEMA, {"v": 1})
    assert isinstance(raised.value.__cause__, duckdb.CatalogException)
    _table_ok(con, "docs", ROWS)
