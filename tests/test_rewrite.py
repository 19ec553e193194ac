"""Query rewrites keep their meaning: the same rows from DuckDB before and after."""

from __future__ import annotations

import json

import duckdb
import pytest
import sqlglot
from sqlglot import exp

from parquedb_ibis.compile.rewrite import SHARED_PREFIX, share_json_parses

DOCS = [
    {"a": {"b": 1, "c": "x"}, "n": [1, 2.5]},
    {"a": {"b": None}, "n": []},
    {"a": "scalar"},
    {},
    None,
]


@pytest.fixture
def con():
    con = duckdb.connect()
    con.execute("CREATE TABLE t (k INTEGER, doc JSON, other JSON)")
    con.executemany("INSERT INTO t VALUES (?, ?, ?)", [(i, None if d is None else json.dumps(d), json.dumps({"z": i}))
                                                       for i, d in enumerate(DOCS)])
    return con


QUERIES = [
    "SELECT k, doc -> '/a/b' AS b, doc -> '/a/c' AS c, doc ->> '/a/c' AS c_text, doc ->> '/a' AS a_text FROM t",
    "SELECT k, CAST((doc -> '/n/1') AS DOUBLE) AS n1, doc -> '/n' AS n, other -> '/z' AS z FROM t WHERE k > 0",
    "SELECT k, x FROM (SELECT k, doc -> '/a/b' AS x, doc -> '/missing' AS y FROM t) AS s ORDER BY k",
    "SELECT c, count(*) AS n FROM (SELECT doc -> '/a/c' AS c, doc -> '/a/b' AS b FROM t) AS s GROUP BY c, b",
]


@pytest.mark.parametrize("sql", QUERIES)
def test_rewritten_queries_return_the_same_rows(con, sql):
    tree = sqlglot.parse_one(sql, read="duckdb")
    rewritten = share_json_parses(tree.copy()).sql("duckdb")
    assert SHARED_PREFIX in rewritten  # the rewrite happened
    before = sorted(map(repr, con.execute(sql).fetchall()))
    after = sorted(map(repr, con.execute(rewritten).fetchall()))
    assert after == before


@pytest.mark.parametrize("sql", [
    "SELECT doc -> '/a/b' AS b FROM t",  # one path: nothing to share
    "SELECT t.doc -> '/a/b' AS b, t.doc -> '/a/c' AS c FROM t JOIN t AS u ON t.k = u.k",  # a join
    "SELECT doc -> '/a/b' AS b, other -> '/z' AS z FROM t",  # one path per column
    "SELECT doc -> '/a/c' AS c, doc -> '/a/b' AS b, count(*) FROM t GROUP BY doc -> '/a/c', doc -> '/a/b'",  # grouped
])
def test_queries_without_shared_parses_are_left_alone(sql):
    tree = sqlglot.parse_one(sql, read="duckdb")
    assert share_json_parses(tree.copy()) == tree


def test_one_list_call_per_column_and_kind(con):
    tree = sqlglot.parse_one(QUERIES[0], read="duckdb")
    calls = [n for n in share_json_parses(tree).find_all(exp.Anonymous) if n.name.lower().startswith("json_extract")]
    assert sorted(c.name.lower() for c in calls) == ["json_extract", "json_extract_string"]
