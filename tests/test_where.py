"""sql_to_filter: WHERE clauses to ParqueDB filters (beyond the upstream vectors in test_sql_vectors.py)."""

from __future__ import annotations

import datetime as dt
import re

import duckdb
import pytest
from hypothesis import given
from hypothesis import strategies as st

from parquedb_ibis.compile.where import DANGEROUS_KEYWORDS, like_to_regex, merge_and, sql_to_filter
from parquedb_ibis.errors import SQLError, SQLSyntaxError, UnsafeSQLError


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("a = 1", {"a": 1}),
        ("a <> 'x'", {"a": {"$ne": "x"}}),
        ("a != 1.5", {"a": {"$ne": 1.5}}),
        ("a < 1 AND b <= 2 AND c > 3 AND d >= 4", {"a": {"$lt": 1}, "b": {"$lte": 2}, "c": {"$gt": 3}, "d": {"$gte": 4}}),
        ("5 < age", {"age": {"$gt": 5}}),
        ("-5 >= age", {"age": {"$lte": -5}}),
        ("a IN (1, 'x', NULL)", {"a": {"$in": [1, "x", None]}}),
        ("a NOT IN (1, 2)", {"a": {"$nin": [1, 2]}}),
        ("a BETWEEN 1 AND 5", {"a": {"$gte": 1, "$lte": 5}}),
        ("a NOT BETWEEN 1 AND 5", {"$or": [{"a": {"$lt": 1}}, {"a": {"$gt": 5}}]}),
        ("a IS NULL", {"a": None}),
        ("a IS NOT NULL", {"a": {"$ne": None}}),
        ("a IS TRUE", {"a": True}),
        ("a = TRUE AND b = false AND c = NULL", {"a": True, "b": False, "c": None}),
        ("a = 5e2", {"a": 500.0}),
        ("a = 'it''s'", {"a": "it's"}),
        ("a = \"double quoted\"", {"a": "double quoted"}),
        ("a = [1, 2]", {"a": [1, 2]}),
        ("a = {'x': 1}", {"a": {"$eq": {"x": 1}}}),
        ("a.b.c = 1", {"a.b.c": 1}),
        ("$id = 'posts/1' AND $type = 'Post'", {"$id": "posts/1", "$type": "Post"}),
        ("\"$id\" = 'posts/1'", {"$id": "posts/1"}),
        ("published", {"published": True}),
        ("NOT published", {"published": False}),
        ("TRUE", {}),
        ("d >= DATE '2024-01-02'", {"d": {"$gte": dt.date(2024, 1, 2)}}),
        ("d < TIMESTAMP '2024-01-02 03:04:05'", {"d": {"$lt": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)}}),
        ("a = 1;", {"a": 1}),
        ("", {}),
    ],
)
def test_condition_maps_to_filter(where, expected):
    assert sql_to_filter(where) == expected


def test_and_binds_tighter_than_or():
    # upstream splits on AND first and gets {$and: [{$or: [a, b]}, c]}
    assert sql_to_filter("a = 1 OR b = 2 AND c = 3") == {"$or": [{"a": 1}, {"b": 2, "c": 3}]}


def test_parentheses_group_conditions():
    # upstream: {a: 1, b: '2 OR c = 3'}
    assert sql_to_filter("a = 1 AND (b = 2 OR c = 3)") == {"a": 1, "$or": [{"b": 2}, {"c": 3}]}
    assert sql_to_filter("(a = 1 OR b = 2) AND (c = 3 OR d = 4)") == {
        "$or": [{"a": 1}, {"b": 2}],
        "$and": [{"$or": [{"c": 3}, {"d": 4}]}],
    }


def test_or_chains_flatten():
    assert sql_to_filter("a = 1 OR (b = 2 OR c = 3) OR d = 4") == {"$or": [{"a": 1}, {"b": 2}, {"c": 3}, {"d": 4}]}


def test_and_merges_operators_on_one_field_and_keeps_clashes():
    assert sql_to_filter("age > 18 AND age < 65") == {"age": {"$gt": 18, "$lt": 65}}
    # upstream: {a: 2} (Object.assign, the later one wins)
    assert sql_to_filter("a = 1 AND a = 2") == {"a": 1, "$and": [{"a": 2}]}


def test_merge_and_collects_nested_and():
    assert merge_and([{"a": 1, "$and": [{"a": 2}]}, {"a": 3}]) == {"a": 1, "$and": [{"a": 2}, {"a": 3}]}


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("NOT a = 1", {"a": {"$ne": 1}}),
        ("NOT (a != 1)", {"a": 1}),
        ("NOT a > 1", {"a": {"$lte": 1}}),
        ("NOT a IN (1, 2)", {"a": {"$nin": [1, 2]}}),
        ("NOT a IS NULL", {"a": {"$ne": None}}),
        ("NOT a LIKE 'x%'", {"a": {"$not": {"$regex": "^x"}}}),
        ("NOT NOT a = 1", {"a": 1}),
        ("NOT (a = 1 OR b = 2)", {"$nor": [{"a": 1}, {"b": 2}]}),
        ("NOT (a = 1 AND b = 2)", {"$nor": [{"a": 1, "b": 2}]}),
    ],
)
def test_not_uses_the_complementary_operator_or_nor(where, expected):
    assert sql_to_filter(where) == expected


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("name LIKE 'jo%'", {"name": {"$regex": "^jo"}}),
        ("name LIKE '%son'", {"name": {"$regex": "son$"}}),
        ("name LIKE '%oh%'", {"name": {"$regex": "oh"}}),
        ("name LIKE 'j_n'", {"name": {"$regex": "^j.n$", "$options": "s"}}),
        ("name LIKE 'a.b(c)*'", {"name": {"$regex": "^a\\.b\\(c\\)\\*$"}}),
        ("name ILIKE 'JO%'", {"name": {"$regex": "^JO", "$options": "i"}}),
        ("name ILIKE '%a%b%'", {"name": {"$regex": "a.*b", "$options": "is"}}),
        ("name LIKE '50!%%' ESCAPE '!'", {"name": {"$regex": "^50%"}}),
        ("name NOT LIKE '%x!_y%' ESCAPE '!'", {"name": {"$not": {"$regex": "x_y"}}}),
        ("name LIKE '%'", {"name": {"$regex": ""}}),
    ],
)
def test_like_becomes_an_anchored_regex(where, expected):
    assert sql_to_filter(where) == expected


LIKE_ALPHABET = "ab.%_*\n"


@given(pattern=st.text(LIKE_ALPHABET, max_size=6), text=st.text("ab.*\nA", max_size=6), ilike=st.booleans())
def test_like_regex_matches_what_duckdb_like_matches(pattern, text, ilike):
    regex, dotall = like_to_regex(pattern)
    if regex.endswith("$"):  # JavaScript's (and RE2's) "$" is the end of text; Python's also matches before a final \n
        regex = regex[:-1] + r"\Z"
    flags = (re.I if ilike else 0) | (re.S if dotall else 0)
    op = "ILIKE" if ilike else "LIKE"
    expected = duckdb.execute(f"SELECT ? {op} ?", [text, pattern]).fetchone()[0]
    assert bool(re.search(regex, text, flags)) == expected


def test_parameters_are_bound_never_spliced():
    assert sql_to_filter("a = $1", ["x'; DROP TABLE users; --"]) == {"a": "x'; DROP TABLE users; --"}
    assert sql_to_filter("a = $1", [{"$ne": None}]) == {"a": {"$eq": {"$ne": None}}}
    assert sql_to_filter("a = $2 AND b = $1", [1, 2]) == {"a": 2, "b": 1}
    assert sql_to_filter("a = ? AND b IN (?, ?)", [1, 2, 3]) == {"a": 1, "b": {"$in": [2, 3]}}
    assert sql_to_filter("a LIKE $1", ["x%"]) == {"a": {"$regex": "^x"}}


def test_missing_parameter_is_an_error():
    with pytest.raises(SQLError, match=r"parameter \$2 has no value \(1 given\)"):
        sql_to_filter("a = $1 AND b = $2", [1])
    with pytest.raises(SQLError, match=r"parameter \? number 2 has no value"):
        sql_to_filter("a = ? AND b = ?", [1])


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("a = b", "compares two fields"),
        ("lower(a) = 'x'", "has no field on either side"),
        ("a = NOW() - INTERVAL '1 hour'", "is not a literal value or parameter"),
        ("a IN (SELECT 1)", "subquery"),
        ("a + 1 > 2", "has no field on either side"),
        ("a LIKE 5", "needs a string pattern"),
        ("a = CAST(1 AS INT)", "casts are not supported"),
        ("a IS DISTINCT FROM 1", "is not a condition that maps to a filter"),
    ],
)
def test_constructs_that_do_not_map_are_errors(where, message):
    with pytest.raises(SQLError, match=re.escape(message)) as info:
        sql_to_filter(where)
    assert str(info.value).startswith("where clause: ")


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("a = 1; DROP TABLE x", "SQL injection detected: multiple statements not allowed"),
        ("a = 1;select 1", "SQL injection detected: multiple statements not allowed"),
        ("a = 1; b = 2", "SQL injection detected: multiple statements not allowed"),
        ("a = 1 -- x", "SQL injection detected: comments not allowed in WHERE clause"),
        ("a = '/* x'", "SQL injection detected: comments not allowed in WHERE clause"),
        ("a = 1 union select 1", "SQL injection detected: UNION not allowed in WHERE clause"),
        ("name = 'drop zone'", "SQL injection detected: DROP not allowed in WHERE clause"),
        ("grant = 1", "SQL injection detected: GRANT not allowed in WHERE clause"),
        ("a = (1", "Invalid WHERE clause: unbalanced parentheses"),
        ("a IN (((((((((((1)))))))))))", "Invalid WHERE clause: excessive nesting depth"),
    ],
)
def test_injection_checks_reject_like_upstream(where, message):
    with pytest.raises(UnsafeSQLError) as info:
        sql_to_filter(where)
    assert str(info.value) == message


@pytest.mark.parametrize("keyword", DANGEROUS_KEYWORDS)
def test_each_dangerous_keyword_is_rejected(keyword):
    with pytest.raises(UnsafeSQLError, match=f"{keyword} not allowed"):
        sql_to_filter(f"a = 1 AND {keyword.lower()} = 2")


def test_dangerous_words_inside_other_words_are_allowed():
    assert sql_to_filter("dropped = 1 AND created_at > 2 AND intoxicated = TRUE") == {
        "dropped": 1,
        "created_at": {"$gt": 2},
        "intoxicated": True,
    }


def test_syntax_error_has_position():
    with pytest.raises(SQLSyntaxError) as info:
        sql_to_filter("a = 1 AND")
    assert (info.value.line, info.value.column) == (1, 9)
    assert str(info.value) == "sql line 1, column 9: incomplete AND expression (right-hand side missing) near 'AND'"
    with pytest.raises(SQLSyntaxError, match=r"column 7: unexpected token near 'b'"):
        sql_to_filter("a = 1 b = 2")


def test_where_clause_must_be_a_string():
    with pytest.raises(SQLError, match="expected a string"):
        sql_to_filter(None)  # type: ignore[arg-type]
    with pytest.raises(SQLError, match="expected a sequence"):
        sql_to_filter("a = $1", "x")
