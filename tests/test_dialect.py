"""The ``parquedb`` sqlglot dialect and the ParqueDB SQL → DuckDB SQL translation.

Three kinds of tests:

* golden files ``tests/golden/dialect/*.sql`` (the sqlglot style): a ParqueDB
  query, a line ``-- expected``, then the DuckDB SQL ``to_duckdb(..., pretty=True)``
  must produce. ``PARQUEDB_UPDATE_GOLDEN=1 pytest tests/test_dialect.py`` rewrites them;
* execution: the tail-events seed queries run on DuckDB tables in the stored
  layout and return the same rows as hand-written DuckDB SQL;
* errors: unknown tables, syntax errors, statements that are not queries.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import duckdb
import pytest
import sqlglot
from sqlglot import exp

from parquedb_ibis.dialect import ParqueDB, TableInfo, parse, to_duckdb, translate
from parquedb_ibis.errors import SQLError, SQLSyntaxError, UnknownTableError
from parquedb_ibis.schema import Schema, to_row

GOLDEN = Path(__file__).parent / "golden" / "dialect"
SEPARATOR = "-- expected"

TAIL_SCHEMA = Schema.parse(
    {
        "scriptName": "string!",
        "outcome": "string!",
        "eventTimestamp": "timestamp!",
        "event": "variant?",
        "logs": "variant[]",
        "exceptions": "variant[]",
    }
)
POSTS_SCHEMA = Schema.parse({"title": "string!", "views": "int"})

TABLES = {
    "TailEvents": TableInfo.from_schema(TAIL_SCHEMA),
    "WorkerRequests": TableInfo.from_schema({"status": "int", "colo": "string", "latencyMs": "float"}),
    "posts": TableInfo.from_schema(POSTS_SCHEMA),
    # a materialized view: plain typed columns, no variant column
    "ErrorsByWorker": TableInfo(
        {"scriptName": "VARCHAR", "errors": "BIGINT", "window": "STRUCT(start TIMESTAMPTZ, stop TIMESTAMPTZ)"},
        has_data=False,
    ),
}


# -- the dialect ------------------------------------------------------------------------------


def test_dialect_is_registered_under_parquedb():
    dialect = sqlglot.Dialect.get_or_raise("parquedb")
    assert isinstance(dialect, ParqueDB)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT a, COUNT(*) AS n FROM t WHERE b > 1 GROUP BY a ORDER BY n DESC LIMIT 10",
        "SELECT CAST(x AS TIMESTAMPTZ), x::JSON ->> '$.a', list_filter(l, y -> y > 1) FROM t",
        "WITH c AS (SELECT * FROM read_parquet('a/*.parquet', hive_partitioning = TRUE)) SELECT * EXCLUDE (z) FROM c",
        "SELECT DATE_TRUNC('hour', ts) AS h, QUANTILE_CONT(v, 0.95) FROM t QUALIFY ROW_NUMBER() OVER (PARTITION BY h) = 1",
        "SELECT $1, ? FROM t WHERE s ILIKE '%x%' AND ts > NOW() - INTERVAL '1' HOUR",
    ],
)
def test_dialect_generates_duckdb_sql_from_an_ordinary_ast(sql):
    tree = sqlglot.parse_one(sql, read="duckdb")
    assert tree.sql(dialect="parquedb") == tree.sql(dialect="duckdb")
    assert sqlglot.transpile(sql, read="duckdb", write="parquedb") == sqlglot.transpile(sql, read="duckdb", write="duckdb")


def test_dialect_renders_what_ibis_compiles():
    ibis = pytest.importorskip("ibis")
    t = ibis.table({"scriptName": "string", "outcome": "string", "ts": "timestamp('UTC')"}, name="TailEvents")
    recent = t.filter(t.ts > ibis.now() - ibis.interval(hours=1))
    expr = recent.group_by("scriptName").aggregate(n=recent.count(), errors=(recent.outcome != "ok").sum())
    from ibis.backends.sql.compilers.duckdb import compiler

    tree = compiler.to_sqlglot(expr)
    sql = tree.sql(dialect="parquedb")
    assert sql == tree.sql(dialect="duckdb")
    duckdb.connect().execute(
        'CREATE TABLE "TailEvents" ("scriptName" VARCHAR, outcome VARCHAR, ts TIMESTAMPTZ)'
    ).execute(sql).fetchall()


def test_table_info_from_schema_lists_system_declared_and_data_columns():
    info = TableInfo.from_schema(TAIL_SCHEMA)
    assert info.columns["$id"] == "VARCHAR"
    assert info.columns["event"] == "JSON"
    assert info.columns["eventTimestamp"] == "TIMESTAMPTZ"
    assert info.has_data
    assert info.column("$data") == ("$data", "JSON")
    assert info.column("SCRIPTNAME") == ("scriptName", "VARCHAR")
    assert info.column("nope") is None


def test_table_info_is_frozen_and_hashable():
    info = TableInfo({"a": "BIGINT"}, has_data=False)
    with pytest.raises(TypeError):
        info.columns["b"] = "VARCHAR"  # type: ignore[index]
    assert hash(info) == hash(TableInfo({"a": "BIGINT"}, has_data=False))
    assert info == TableInfo({"a": "BIGINT"}, has_data=False)


# -- golden files -----------------------------------------------------------------------------


def _golden_cases() -> list[Path]:
    return sorted(GOLDEN.glob("*.sql"))


@pytest.mark.parametrize("path", _golden_cases(), ids=lambda p: p.stem)
def test_golden_translation(path: Path):
    text = path.read_text()
    query, sep, expected = text.partition(f"\n{SEPARATOR}\n")
    assert sep, f"{path.name}: no '{SEPARATOR}' line"
    actual = to_duckdb(query, TABLES, pretty=True)
    if os.environ.get("PARQUEDB_UPDATE_GOLDEN"):
        path.write_text(f"{query}\n{SEPARATOR}\n{actual}\n")
        return
    assert actual == expected.strip()
    # the output is DuckDB SQL that sqlglot reads back to the same tree
    assert sqlglot.parse_one(actual, read="duckdb") == sqlglot.parse_one(expected, read="duckdb")


def test_golden_files_exist():
    assert len(_golden_cases()) >= 12


# -- names and paths --------------------------------------------------------------------------


def test_table_names_resolve_exactly_first_then_case_insensitively():
    tables = {"WorkerRequests": TABLES["WorkerRequests"], "workerrequests": TABLES["WorkerRequests"]}
    assert to_duckdb("SELECT 1 FROM workerrequests", tables) == 'SELECT 1 FROM "workerrequests"'
    assert to_duckdb("SELECT 1 FROM WorkerRequests", tables) == 'SELECT 1 FROM "WorkerRequests"'
    with pytest.raises(UnknownTableError, match="unknown table 'WORKERREQUESTS'"):
        to_duckdb("SELECT 1 FROM WORKERREQUESTS", tables)  # two case-insensitive matches: ambiguous


def test_unknown_table_names_the_tables_with_a_hint():
    with pytest.raises(UnknownTableError) as info:
        translate("SELECT * FROM TailEvent", TABLES)
    err = info.value
    assert isinstance(err, SQLError)
    assert err.name == "TailEvent"
    assert "did you mean 'TailEvents'?" in str(err)
    assert "ErrorsByWorker, TailEvents, WorkerRequests, posts" in str(err)


def test_cte_names_are_not_tables():
    sql = to_duckdb("WITH recent AS (SELECT 1 AS x) SELECT x FROM recent", TABLES)
    assert sql == 'WITH recent AS (SELECT 1 AS x) SELECT "x" FROM recent'


def test_dollar_names_are_columns_and_numbers_are_parameters():
    sql = to_duckdb("SELECT $id FROM posts WHERE $type = $1 AND posts.$id <> ?", TABLES)
    assert sql == 'SELECT "$id" FROM "posts" WHERE "$type" = $1 AND "posts"."$id" <> ?'


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("event.response.status >= 500", "TRY_CAST(\"event\" ->> '$.response.status' AS DOUBLE) >= 500"),
        ("event.response.status IN (500, 503)", "TRY_CAST(\"event\" ->> '$.response.status' AS DOUBLE) IN (500, 503)"),
        ("event.response.status BETWEEN -1 AND 2.5", "TRY_CAST(\"event\" ->> '$.response.status' AS DOUBLE) BETWEEN -1 AND 2.5"),
        ("event.request.method = 'GET'", "(\"event\" ->> '$.request.method') = 'GET'"),
        ("event.request.cf.asn + 1 > 2", "TRY_CAST(\"event\" ->> '$.request.cf.asn' AS DOUBLE) + 1 > 2"),
        ("event.cached = TRUE", "TRY_CAST(\"event\" ->> '$.cached' AS BOOLEAN) = TRUE"),
        ("event.cached", "TRY_CAST(\"event\" ->> '$.cached' AS BOOLEAN)"),
        (
            "event.at > NOW() - INTERVAL '1 hour'",
            "TRY_CAST(COALESCE(\"event\" ->> '$.at.\"$date\"', \"event\" ->> '$.at') AS TIMESTAMPTZ) > NOW() - INTERVAL '1' HOUR",
        ),
        (
            "event.at < eventTimestamp",
            "TRY_CAST(COALESCE(\"event\" ->> '$.at.\"$date\"', \"event\" ->> '$.at') AS TIMESTAMPTZ) < \"eventTimestamp\"",
        ),
        ("event.request.url LIKE '%/api/%'", "(\"event\" ->> '$.request.url') LIKE '%/api/%'"),
        ("event.a = event.b", "(\"event\" ->> '$.a') = (\"event\" ->> '$.b')"),
    ],
)
def test_variant_paths_take_their_type_from_the_comparison(where, expected):
    sql = to_duckdb(f"SELECT 1 FROM TailEvents WHERE {where}", TABLES)
    assert sql == f'SELECT 1 FROM "TailEvents" WHERE {expected}'


def test_undeclared_fields_read_the_data_column():
    sql = to_duckdb("SELECT title, body, author.name FROM posts WHERE rating > 4", TABLES)
    assert sql == (
        "SELECT \"title\", \"$data\" ->> '$.body' AS body, \"$data\" ->> '$.author.name' AS name "
        "FROM \"posts\" WHERE TRY_CAST(\"$data\" ->> '$.rating' AS DOUBLE) > 4"
    )


def test_column_names_resolve_case_insensitively_to_the_stored_name():
    assert to_duckdb("SELECT SCRIPTNAME FROM tailevents", TABLES) == 'SELECT "scriptName" FROM "TailEvents"'


def test_unknown_column_of_a_view_without_variant_column_is_an_error():
    with pytest.raises(SQLError, match=r"unknown column 'error' in ErrorsByWorker; did you mean 'errors'\?"):
        translate("SELECT error FROM ErrorsByWorker", TABLES)


def test_struct_columns_use_field_access():
    sql = to_duckdb("SELECT window.start FROM ErrorsByWorker", TABLES)
    assert sql == "SELECT \"window\"['start'] AS start FROM \"ErrorsByWorker\""


def test_field_access_on_a_scalar_column_is_an_error():
    with pytest.raises(SQLError, match="column 'scriptName' has type VARCHAR; it has no field 'x'"):
        translate("SELECT scriptName.x FROM TailEvents", TABLES)


def test_unqualified_name_in_two_tables_is_ambiguous():
    with pytest.raises(SQLError, match="column 'scriptName' is ambiguous"):
        translate("SELECT scriptName FROM TailEvents, ErrorsByWorker", TABLES)
    with pytest.raises(SQLError, match="field 'body' is ambiguous"):
        translate("SELECT body FROM TailEvents, posts", TABLES)


def test_select_aliases_win_over_data_fields_outside_the_select_list():
    sql = to_duckdb(
        "SELECT event.request.url AS url, COUNT(*) AS n FROM TailEvents WHERE url LIKE '%/api%' GROUP BY url HAVING n > 1",
        TABLES,
    )
    assert sql == (
        "SELECT \"event\" ->> '$.request.url' AS url, COUNT(*) AS n FROM \"TailEvents\" "
        "WHERE url LIKE '%/api%' GROUP BY url HAVING n > 1"
    )


def test_layout_unknown_tables_pass_names_through():
    tables = {"raw": TableInfo({}, has_data=False)}
    assert to_duckdb("SELECT a.b, c FROM raw", tables) == 'SELECT a.b, c FROM "raw"'


# -- errors -----------------------------------------------------------------------------------


def test_syntax_error_reports_line_and_column():
    with pytest.raises(SQLSyntaxError) as info:
        translate("SELECT scriptName\nFROM TailEvents\nWHERE (outcome = 'ok'", TABLES)
    err = info.value
    assert (err.line, err.column) == (3, 21)
    assert str(err) == "sql line 3, column 21: expecting ) near \"'ok'\""


def test_unterminated_string_reports_its_start():
    with pytest.raises(SQLSyntaxError) as info:
        translate("SELECT 1 FROM posts WHERE title = 'oops", TABLES)
    assert (info.value.line, info.value.column) == (1, 35)
    assert "unterminated string literal" in str(info.value)


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("INSERT INTO posts (title) VALUES ('x')", "INSERT"),
        ("UPDATE posts SET title = 'x'", "UPDATE"),
        ("DELETE FROM posts", "DELETE"),
        ("CREATE TABLE x (a INT)", "CREATE"),
        ("DROP TABLE posts", "DROP"),
        ("ALTER TABLE posts ADD COLUMN b INT", "ALTER"),
        ("TRUNCATE posts", "TRUNCATE"),
        ("COPY posts TO 'x.csv'", "COPY"),
        ("ATTACH 'other.db'", "ATTACH"),
        ("SET threads = 1", "SET"),
    ],
)
def test_statements_that_are_not_queries_are_rejected(sql, kind):
    with pytest.raises(SQLError, match=rf"^sql: {kind} statements are not supported; ParqueDB SQL is read-only"):
        translate(sql, TABLES)


def test_modifying_statement_inside_a_query_is_rejected():
    with pytest.raises(SQLError, match="DELETE inside a query is not supported"):
        translate("WITH d AS (DELETE FROM posts RETURNING *) SELECT * FROM d", TABLES)


def test_multiple_statements_are_rejected():
    with pytest.raises(SQLError, match="expected one statement, found 2"):
        translate("SELECT 1 FROM posts; SELECT 2 FROM posts", TABLES)
    assert to_duckdb("SELECT 1 FROM posts;", TABLES) == 'SELECT 1 FROM "posts"'


def test_empty_query_is_rejected():
    with pytest.raises(SQLError, match="the query is empty"):
        parse("  ;  ")


def test_parse_returns_a_sqlglot_query():
    tree = parse("SELECT $id FROM posts")
    assert isinstance(tree, exp.Select)
    assert tree.selects[0] == exp.column(exp.to_identifier("$id", quoted=True))


# -- execution: the tail-events seed queries ---------------------------------------------------
# (Results never fetch TIMESTAMPTZ values: duckdb needs pytz for that, which is not installed.)

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def _event(n: int, script: str, outcome: str, minutes_ago: int, *, url: str, status: int, country: str, colo: str,
           logs: list | None = None, exceptions: list | None = None, extra: dict | None = None) -> dict:
    return {
        "$id": f"TailEvents/e{n:02d}",
        "$type": "TailEvent",
        "createdAt": NOW,
        "updatedAt": NOW,
        "createdBy": "system/tail",
        "updatedBy": "system/tail",
        "version": 1,
        "scriptName": script,
        "outcome": outcome,
        "eventTimestamp": NOW - dt.timedelta(minutes=minutes_ago),
        "event": {
            "request": {"url": url, "method": "GET" if n % 3 else "POST", "cf": {"country": country, "colo": colo}},
            "response": {"status": status},
        },
        "logs": logs or [],
        "exceptions": exceptions or [],
        **(extra or {}),
    }


EVENTS = [
    _event(1, "api", "ok", 5, url="https://x.dev/api/users", status=200, country="US", colo="SJC",
           logs=[{"level": "info", "message": "fetched users"}]),
    _event(2, "api", "exception", 10, url="https://x.dev/api/users", status=500, country="US", colo="SJC",
           exceptions=[{"name": "TypeError", "message": "x is undefined", "timestamp": 1}],
           logs=[{"level": "error", "message": "upstream timeout after 30s"}]),
    _event(3, "api", "ok", 20, url="https://x.dev/api/orders", status=200, country="DE", colo="FRA"),
    _event(4, "auth", "ok", 30, url="https://x.dev/login", status=302, country="DE", colo="FRA"),
    _event(5, "auth", "exceededCpu", 40, url="https://x.dev/login", status=503, country="GB", colo="LHR",
           logs=[{"level": "warn", "message": "slow: TIMEOUT risk"}]),
    _event(6, "api", "ok", 50, url="https://x.dev/api/users", status=200, country="US", colo="IAD",
           extra={"region": "us-east", "sampled": True}),
    _event(7, "web", "exception", 55, url="https://x.dev/", status=500, country="JP", colo="NRT",
           exceptions=[{"name": "RangeError", "message": "bad index", "timestamp": 2}]),
    _event(8, "web", "ok", 58, url="https://x.dev/", status=200, country="US", colo="SJC"),
    # older than an hour: filtered out of the "last hour" queries
    _event(9, "api", "exception", 120, url="https://x.dev/api/users", status=500, country="US", colo="SJC",
           exceptions=[{"name": "Error", "message": "old", "timestamp": 3}]),
    _event(10, "web", "ok", 600, url="https://x.dev/about", status=404, country="FR", colo="CDG",
           logs=[{"level": "info", "message": "timeout=5"}]),
]


@pytest.fixture(scope="module")
def con():
    """DuckDB with TailEvents in the stored layout: typed columns, JSON variants, "$data" text."""
    db = duckdb.connect()
    info = TABLES["TailEvents"]
    columns = {**info.columns, "$data": "VARCHAR"}
    ddl = ", ".join(f'"{name}" {type_}' for name, type_ in columns.items())
    db.execute(f'CREATE TABLE "TailEvents" ({ddl})')
    placeholders = ", ".join("?" for _ in columns)
    rows = [to_row(doc, TAIL_SCHEMA) for doc in EVENTS]
    db.executemany(f'INSERT INTO "TailEvents" VALUES ({placeholders})', [[row[c] for c in columns] for row in rows])
    yield db
    db.close()


SEED_QUERIES = {
    "error_rate_by_worker": (
        """SELECT scriptName,
                  COUNT(*) AS requests,
                  SUM(CASE WHEN outcome != 'ok' THEN 1 ELSE 0 END) AS errors,
                  ROUND(100.0 * SUM(CASE WHEN outcome != 'ok' THEN 1 ELSE 0 END) / COUNT(*), 1) AS error_rate
           FROM TailEvents
           WHERE eventTimestamp > NOW() - INTERVAL '1 hour'
           GROUP BY scriptName
           ORDER BY errors DESC, scriptName""",
        """SELECT "scriptName", count(*), sum(CASE WHEN outcome <> 'ok' THEN 1 ELSE 0 END),
                  round(100.0 * sum(CASE WHEN outcome <> 'ok' THEN 1 ELSE 0 END) / count(*), 1)
           FROM "TailEvents" WHERE "eventTimestamp" > now() - INTERVAL 1 HOUR
           GROUP BY 1 ORDER BY 3 DESC, 1""",
    ),
    "top_endpoints": (
        """SELECT event.request.url AS url, COUNT(*) AS hits, AVG(event.response.status) AS avg_status
           FROM TailEvents
           WHERE eventTimestamp > NOW() - INTERVAL '1 hour'
           GROUP BY url
           ORDER BY hits DESC, url
           LIMIT 3""",
        """SELECT json_extract_string(event, '$.request.url') AS u, count(*), avg(CAST(json_extract(event, '$.response.status') AS DOUBLE))
           FROM "TailEvents" WHERE "eventTimestamp" > now() - INTERVAL 1 HOUR
           GROUP BY u ORDER BY 2 DESC, u LIMIT 3""",
    ),
    "recent_exceptions": (
        """SELECT scriptName, epoch_ms(eventTimestamp) AS ms, exceptions[0].name AS error, exceptions[0].message AS message
           FROM TailEvents
           WHERE outcome = 'exception' AND json_array_length(exceptions) > 0
           ORDER BY eventTimestamp DESC
           LIMIT 10""",
        """SELECT "scriptName", epoch_ms("eventTimestamp"), json_extract_string(exceptions, '$[0].name'),
                  json_extract_string(exceptions, '$[0].message')
           FROM "TailEvents" WHERE outcome = 'exception' AND json_array_length(exceptions) > 0
           ORDER BY "eventTimestamp" DESC LIMIT 10""",
    ),
    "geographic_breakdown": (
        """SELECT event.request.cf.country AS country, event.request.cf.colo AS colo, COUNT(*) AS requests
           FROM TailEvents
           GROUP BY country, colo
           ORDER BY requests DESC, country, colo""",
        """SELECT json_extract_string(event, '$.request.cf.country') AS c, json_extract_string(event, '$.request.cf.colo') AS k, count(*)
           FROM "TailEvents" GROUP BY c, k ORDER BY 3 DESC, c, k""",
    ),
    "log_search": (
        """SELECT $id, scriptName, outcome
           FROM TailEvents
           WHERE logs ILIKE '%timeout%' AND $type = 'TailEvent'
           ORDER BY eventTimestamp""",
        """SELECT "$id", "scriptName", outcome FROM "TailEvents"
           WHERE CAST(logs AS VARCHAR) ILIKE '%timeout%' AND "$type" = 'TailEvent' ORDER BY "eventTimestamp\"""",
    ),
    "server_errors_by_colo": (
        """SELECT event.request.cf.colo AS colo, COUNT(*) AS errors
           FROM TailEvents
           WHERE event.response.status >= 500 AND event.request.cf.country IN ('US', 'GB', 'JP')
           GROUP BY colo
           ORDER BY errors DESC, colo""",
        """SELECT json_extract_string(event, '$.request.cf.colo') AS k, count(*) FROM "TailEvents"
           WHERE CAST(json_extract(event, '$.response.status') AS INTEGER) >= 500
             AND json_extract_string(event, '$.request.cf.country') IN ('US', 'GB', 'JP')
           GROUP BY k ORDER BY 2 DESC, k""",
    ),
    "undeclared_fields": (
        """SELECT $id, region FROM TailEvents WHERE sampled = TRUE AND region LIKE 'us-%'""",
        """SELECT "$id", json_extract_string("$data", '$.region') FROM "TailEvents"
           WHERE json_extract("$data", '$.sampled') = 'true'::JSON AND json_extract_string("$data", '$.region') LIKE 'us-%'""",
    ),
    "cte_over_recent_events": (
        """WITH recent AS (SELECT * FROM TailEvents WHERE eventTimestamp > NOW() - INTERVAL '1 hour')
           SELECT scriptName, event.request.cf.colo AS colo, COUNT(*) AS n
           FROM recent
           WHERE event.response.status = 200
           GROUP BY ALL
           ORDER BY n DESC, scriptName, colo""",
        """SELECT "scriptName", json_extract_string(event, '$.request.cf.colo') AS k, count(*) FROM "TailEvents"
           WHERE "eventTimestamp" > now() - INTERVAL 1 HOUR AND json_extract_string(event, '$.response.status') = '200'
           GROUP BY ALL ORDER BY 3 DESC, 1, 2""",
    ),
}


@pytest.mark.parametrize("name", list(SEED_QUERIES))
def test_seed_query_returns_the_rows_of_hand_written_duckdb_sql(con, name):
    query, reference = SEED_QUERIES[name]
    expected = con.execute(reference).fetchall()
    assert expected, "the fixture rows should make every seed query return something"
    actual = con.execute(to_duckdb(query, TABLES)).fetchall()
    assert actual == expected


def test_error_rate_by_worker_counts(con):
    rows = con.execute(to_duckdb(SEED_QUERIES["error_rate_by_worker"][0], TABLES)).fetchall()
    assert [r[:3] for r in rows] == [("api", 4, 1), ("auth", 2, 1), ("web", 2, 1)]


def test_seed_queries_run_with_bound_parameters(con):
    query = "SELECT COUNT(*) FROM TailEvents WHERE scriptName = $1 AND event.response.status >= $2"
    params = ["api", 500]
    sql = to_duckdb(query, TABLES, params)
    assert "TRY_CAST(\"event\" ->> '$.response.status' AS DOUBLE) >= $2" in sql
    assert con.execute(sql, params).fetchall() == [(2,)]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ([5], "TRY_CAST(\"event\" ->> '$.n' AS DOUBLE) > ?"),
        ([True], "TRY_CAST(\"event\" ->> '$.n' AS BOOLEAN) > ?"),
        ([dt.datetime(2024, 1, 1)], "TRY_CAST(COALESCE(\"event\" ->> '$.n.\"$date\"', \"event\" ->> '$.n') AS TIMESTAMPTZ) > ?"),
        (["x"], "(\"event\" ->> '$.n') > ?"),
        (None, "(\"event\" ->> '$.n') > ?"),
    ],
)
def test_parameter_values_type_the_paths_they_are_compared_with(params, expected):
    sql = to_duckdb("SELECT 1 FROM TailEvents WHERE event.n > ?", TABLES, params)
    assert sql == f'SELECT 1 FROM "TailEvents" WHERE {expected}'


def test_translated_sql_runs_over_parquet(con, tmp_path):
    path = tmp_path / "tail.parquet"
    con.execute(f"COPY \"TailEvents\" TO '{path}' (FORMAT parquet)")
    db = duckdb.connect()
    db.execute(f"CREATE VIEW \"TailEvents\" AS SELECT * FROM read_parquet('{path}')")
    query, reference = SEED_QUERIES["geographic_breakdown"]
    assert db.execute(to_duckdb(query, TABLES)).fetchall() == con.execute(reference).fetchall()


def test_star_exclude_drops_columns_from_the_subquery_layout():
    with pytest.raises(SQLError, match="unknown column 'body' in s"):
        translate('SELECT body FROM (SELECT * EXCLUDE ("$data") FROM posts) AS s', TABLES)
    sql = to_duckdb("SELECT title FROM (SELECT * EXCLUDE (views) FROM posts) AS s", TABLES)
    assert sql == 'SELECT "title" FROM (SELECT * EXCLUDE (views) FROM "posts") AS s'


def test_cte_names_match_case_insensitively():
    sql = to_duckdb("WITH Recent AS (SELECT * FROM TailEvents) SELECT COUNT(*) FROM recent", TABLES)
    assert sql == 'WITH Recent AS (SELECT * FROM "TailEvents") SELECT COUNT(*) FROM recent'
