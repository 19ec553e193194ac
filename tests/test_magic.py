"""The %parquedb / %%parquedb magics, driven through a real IPython shell that raises (jupysql's TestingShell idea)."""

from __future__ import annotations

import contextlib
import io
import sys

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from traitlets import TraitError
from traitlets.config import Config

from parquedb_ibis.magic import (
    Explanation,
    ParqueDBMagics,
    QueryResult,
    bind_sql,
    load_ipython_extension,
    parse_body,
    parse_statement,
    split_leading_options,
)

EVIL = "Robert'); DROP TABLE users;--"


class RaisingShell(InteractiveShell):
    """An InteractiveShell whose run_cell re-raises the cell's error (after IPython has shown it)."""

    def run_cell(self, *args, **kwargs):
        result = super().run_cell(*args, **kwargs)
        result.raise_error()
        return result


@contextlib.contextmanager
def raising_shell():
    """A RaisingShell; afterwards the process's real ``__main__`` is put back (IPython swaps in its own)."""
    main = sys.modules["__main__"]
    config = Config()
    config.HistoryAccessor.enabled = False
    sh = RaisingShell(config=config)
    try:
        yield sh
    finally:
        sh.clear_instance()
        sys.modules["__main__"] = main


@pytest.fixture(scope="module")
def shell():
    with raising_shell() as sh:
        yield sh


@pytest.fixture
def ip(shell, monkeypatch):
    """The shell with a fresh %parquedb extension (and no PARQUEDB_URL)."""
    monkeypatch.delenv("PARQUEDB_URL", raising=False)
    shell.config.pop("ParqueDBMagics", None)  # %config persists in the shell's config
    shell.configurables[:] = [c for c in shell.configurables if not isinstance(c, ParqueDBMagics)]
    load_ipython_extension(shell)
    shell.user_ns.clear()
    yield shell
    magics(shell).close()


def magics(shell) -> ParqueDBMagics:
    return shell.magics_manager.registry["ParqueDBMagics"]


@pytest.fixture
def users(ip, tmp_path):
    """A store with a `users` collection (one row whose name is an injection attempt), connected."""
    with contextlib.redirect_stdout(io.StringIO()):
        ip.run_line_magic("parquedb", f"connect {tmp_path / 'store'} flush_age=none")
    db = magics(ip).db
    db.collection("users", {"name": "string", "age": "int"}).insert_many([
        {"name": "ann", "age": 30, "city": "Paris"},
        {"name": "bob", "age": 17, "city": "Oslo"},
        {"name": EVIL, "age": 40, "city": "Lima"},
    ])
    db.flush()
    return db


def cell(ip, line: str, body: str):
    return ip.run_cell_magic("parquedb", line, body)


def line(ip, text: str):
    return ip.run_line_magic("parquedb", text)


# -- loading and connecting ---------------------------------------------------------------------


def test_load_ext_of_the_package_registers_the_line_and_cell_magic():
    import parquedb_ibis

    assert hasattr(parquedb_ibis, "load_ipython_extension"), \
        "parquedb_ibis/__init__.py must re-export load_ipython_extension (from parquedb_ibis.magic)"
    with raising_shell() as sh:
        sh.run_line_magic("load_ext", "parquedb_ibis")
        assert sh.find_line_magic("parquedb") is not None
        assert sh.find_cell_magic("parquedb") is not None


def test_unloading_closes_the_database_the_magic_opened(ip, tmp_path, capsys):
    from parquedb_ibis.magic import unload_ipython_extension

    line(ip, f"connect {tmp_path}")
    db = magics(ip).db
    db.query_rows("SELECT 1")
    unload_ipython_extension(ip)
    assert magics(ip).db is None and db._con is None


def test_connect_prints_the_store_and_what_it_holds(ip, tmp_path, capsys):
    line(ip, f"connect {tmp_path}")
    assert capsys.readouterr().out.strip() == f"Connected to {tmp_path}: 0 collections, 0 views"
    line(ip, "")
    assert f"connected to {tmp_path}" in capsys.readouterr().out


def test_connect_accepts_an_open_database_in_a_variable(ip, tmp_path, capsys):
    import parquedb_ibis

    db = parquedb_ibis.connect(str(tmp_path), flush_age=None)
    ip.user_ns["mydb"] = db
    line(ip, "connect :mydb")
    assert magics(ip).db is db
    db.query_rows("SELECT 1")
    magics(ip).close()
    assert db._con is not None and db.query_rows("SELECT 1 AS x") == [{"x": 1}]  # not closed by the magic
    db.close()


def test_using_the_magic_before_connecting_is_a_usage_error(ip):
    with pytest.raises(UsageError, match=r"not connected; run '%parquedb connect <url>'"):
        cell(ip, "", "SELECT 1")


def test_the_url_trait_and_parquedb_url_connect_on_first_use(ip, tmp_path, monkeypatch):
    ip.run_line_magic("config", f"ParqueDBMagics.url = {str(tmp_path / 'a')!r}")
    assert len(cell(ip, "", "SELECT 42 AS answer")) == 1
    assert magics(ip).db.config.url == str(tmp_path / "a")
    magics(ip).close()
    ip.run_line_magic("config", "ParqueDBMagics.url = ''")
    monkeypatch.setenv("PARQUEDB_URL", str(tmp_path / "b"))
    cell(ip, "", "SELECT 1 AS x")
    assert magics(ip).db.config.url == str(tmp_path / "b")


def test_connect_options_take_values_and_variables(ip, tmp_path):
    ip.user_ns["actor"] = "alice"
    line(ip, f"connect {tmp_path} actor=:actor flush_every=5 flush_age=none")
    db = magics(ip).db
    assert (db.actor, db.flush_every, db.flush_age) == ("alice", 5, None)


# -- SQL cells -------------------------------------------------------------------------------------


def test_sql_cell_returns_a_result_with_a_pandas_frame_and_the_row_count(ip, users):
    result = cell(ip, "", "SELECT name, age FROM users WHERE age > 18 ORDER BY age")
    assert isinstance(result, QueryResult)
    assert isinstance(result.data, pd.DataFrame)
    assert result.data.to_dict("list") == {"name": ["ann", EVIL], "age": [30, 40]}
    assert len(result) == 2
    assert "2 rows × 2 columns" in result._repr_html_()
    assert "Robert&#x27;); DROP TABLE users;--" in result._repr_html_()  # escaped, not markup
    assert repr(result).splitlines()[-1] == "2 rows × 2 columns"


def test_sql_line_magic_runs_the_rest_of_the_line(ip, users):
    result = line(ip, "SELECT count(*) AS n FROM users")
    assert result.data["n"].tolist() == [3]


def test_sql_reads_undeclared_fields_and_views_by_name(ip, users):
    result = cell(ip, "", "SELECT city FROM Users WHERE name = 'bob'")  # case-insensitive table, $data field
    assert result.data["city"].tolist() == ["Oslo"]


def test_out_stores_the_data_in_a_variable(ip, users):
    cell(ip, "-o adults", "SELECT name FROM users WHERE age >= 18 ORDER BY name")
    assert ip.user_ns["adults"]["name"].tolist() == [EVIL, "ann"]
    line(ip, "--out=n SELECT count(*) AS n FROM users")
    assert ip.user_ns["n"]["n"].tolist() == [3]


def test_limit_caps_the_rows_fetched(ip, users):
    result = cell(ip, "--limit 2", "SELECT name FROM users ORDER BY age")
    assert result.data["name"].tolist() == ["bob", "ann"]
    assert len(line(ip, "--limit 0 SELECT * FROM users")) == 0


@pytest.mark.parametrize("fmt, kind", [("pandas", pd.DataFrame), ("polars", pl.DataFrame), ("arrow", pa.Table)])
def test_format_selects_the_result_type(ip, users, fmt, kind):
    result = cell(ip, f"--format {fmt}", "SELECT name FROM users ORDER BY name")
    assert isinstance(result.data, kind)
    assert len(result) == 3


def test_format_ibis_gives_a_lazy_expression_that_sees_new_data(ip, users):
    result = cell(ip, "--format ibis", "SELECT name, age FROM users")
    expr = result.data
    assert len(result) == 3
    users.collection("users").create({"name": "cy", "age": 50})
    users.flush()
    assert expr.count().execute() == 4


def test_default_format_trait(ip, users):
    ip.run_line_magic("config", "ParqueDBMagics.default_format = 'arrow'")
    assert isinstance(cell(ip, "", "SELECT 1 AS x").data, pa.Table)
    with pytest.raises(TraitError, match="default_format"):
        magics(ip).default_format = "csv"


def test_display_limit_trait_limits_the_rows_shown_not_fetched(ip, users):
    ip.run_line_magic("config", "ParqueDBMagics.display_limit = 1")
    result = cell(ip, "", "SELECT name FROM users ORDER BY name")
    assert len(result.data) == 3
    assert result._repr_html_().count("<tr>") == 2  # header + one row
    assert "3 rows × 1 columns (showing the first 1)" in result._repr_html_()


def test_explain_shows_the_duckdb_sql_and_plan(ip, users):
    ip.user_ns["min_age"] = 18
    result = cell(ip, "--explain", "SELECT name FROM users WHERE city = :min_age OR age > :min_age")
    assert isinstance(result, Explanation)
    assert "$1" in result.sql and "18" not in result.sql
    assert "\"$data\" ->> '$.city'" in result.sql
    assert "READ_PARQUET" in result.plan.upper() or "SCAN" in result.plan.upper()
    assert "parameters: $1=18" in str(result)
    assert "DuckDB plan" in result._repr_html_()


# -- variables are bound, never spliced -----------------------------------------------------------


def test_variables_bind_as_parameters_and_injection_stays_inert(ip, users):
    ip.user_ns["evil"] = EVIL
    found = cell(ip, "", "SELECT name, age FROM users WHERE name = :evil")
    assert found.data.to_dict("records") == [{"name": EVIL, "age": 40}]
    ip.user_ns["sneaky"] = "x' OR '1'='1"
    assert len(cell(ip, "", "SELECT * FROM users WHERE name = {sneaky}")) == 0
    assert line(ip, "SELECT count(*) AS n FROM users").data["n"].tolist() == [3]  # the table is intact


def test_list_variables_bind_as_duckdb_lists(ip, users):
    ip.user_ns["cities"] = ["Paris", "Lima"]
    assert cell(ip, "", "SELECT name FROM users WHERE city = ANY(:cities) ORDER BY name").data["name"].tolist() == [EVIL, "ann"]


def test_line_magic_does_not_let_ipython_expand_braces(ip, users):
    ip.user_ns["who"] = "ann' OR 'a'='a"
    assert len(line(ip, "SELECT * FROM users WHERE name = {who}")) == 0
    ip.user_ns["who"] = "ann"
    assert line(ip, "SELECT age FROM users WHERE name = {who}").data["age"].tolist() == [30]


def test_references_inside_strings_comments_and_casts_are_left_alone(ip, users):
    ip.user_ns["x"] = 1
    result = cell(ip, "", "SELECT ':x' AS a, '{x}' AS b, 2::INT AS c, :x AS d -- :nope\n")
    assert result.data.to_dict("records") == [{"a": ":x", "b": "{x}", "c": 2, "d": 1}]


def test_bind_sql_numbers_each_variable_once():
    assert bind_sql("SELECT :a, {b}, :a, $$:c$$, \"{d}\"", {"a": 1, "b": [2, 3]}) == (
        "SELECT $1, $2, $1, $$:c$$, \"{d}\"", [1, [2, 3]])


def test_undefined_variable_is_a_usage_error(ip, users):
    with pytest.raises(UsageError, match=r"variable 'missing' is not defined"):
        cell(ip, "", "SELECT * FROM users WHERE age > :missing")


# -- find ------------------------------------------------------------------------------------------


def test_find_with_a_json_filter(ip, users):
    result = cell(ip, "find users", '{"age": {"$gte": 18}, "city": {"$in": ["Paris", "Oslo"]}}')
    assert result.data["name"].tolist() == ["ann"]
    assert result.data.columns[0] == "$id"


def test_find_with_a_python_literal_and_variables(ip, users):
    ip.user_ns.update(min_age=18, cities=["Lima", "Paris"], flag=True)
    result = cell(ip, "--format arrow find users", "{'age': {'$gte': :min_age}, 'city': {'$in': {cities}}, "
                  "'$or': [{'name': {'$exists': True}}, {'x': :flag}]}")
    assert sorted(result.data.column("name").to_pylist()) == [EVIL, "ann"]


def test_find_binds_values_into_the_filter_not_the_text(ip, users):
    ip.user_ns["evil"] = EVIL
    assert cell(ip, "find users", '{"name": :evil}').data["age"].tolist() == [40]
    ip.user_ns["evil"] = {"$ne": None}  # a variable holding an operator document is a value, used as given
    assert len(cell(ip, "find users", '{"name": {"$eq": :evil}}')) == 0


def test_find_line_form_and_empty_filter(ip, users):
    assert len(line(ip, "find users")) == 3
    assert line(ip, 'find users {"name": "bob"}').data["age"].tolist() == [17]


def test_find_limit_and_polars(ip, users):
    result = cell(ip, "--limit 1 --format polars find users", "{}")
    assert isinstance(result.data, pl.DataFrame) and result.data.height == 1


def test_find_with_format_ibis(ip, users):
    result = cell(ip, "--format ibis find users", '{"age": {"$lt": 18}}')
    assert result.data.execute()["name"].tolist() == ["bob"]


def test_find_explain_shows_the_sql_and_plan(ip, users):
    result = cell(ip, "--explain find users", '{"age": {"$gte": 18}}')
    assert isinstance(result, Explanation)
    assert '"age" >= 18' in result.sql and result.plan


def test_find_body_that_is_not_a_literal_is_a_usage_error(ip, users):
    with pytest.raises(UsageError, match=r"bare name 'bob'.*write :bob"):
        cell(ip, "find users", '{"name": bob}')
    with pytest.raises(UsageError, match=r"not JSON or a Python literal"):
        cell(ip, "find users", '{"name": "a" * 3}')
    with pytest.raises(UsageError, match=r"expected a filter object"):
        cell(ip, "find users", "[1, 2]")


def test_find_unknown_collection_suggests_a_name(ip, users):
    with pytest.raises(UsageError, match=r"unknown collection or view 'user'; did you mean 'users'"):
        cell(ip, "find user", "{}")


def test_parse_body_reads_json_and_python_literals():
    ns = {"n": 3, "key": "age"}
    assert parse_body('{"a": true, "b": null, "c": [1, 2.5]}', ns) == {"a": True, "b": None, "c": [1, 2.5]}
    assert parse_body("{'a': (1, 2), 'b': False}", ns) == {"a": [1, 2], "b": False}
    assert parse_body('{{key}: {"$gt": :n}}', ns) == {"age": {"$gt": 3}}
    assert parse_body("", ns) == {}
    assert parse_body('{"url": "a:b{c}"}', ns) == {"url": "a:b{c}"}


# -- views -----------------------------------------------------------------------------------------


def test_view_cell_defines_refreshes_and_shows(ip, users):
    ip.user_ns["min_age"] = 18
    result = cell(ip, "view Adults", '{"$from": "users", "$filter": {"age": {"$gte": :min_age}}, '
                                     '"$select": {"name": "$name", "age": "$age"}}')
    assert result.caption.startswith("view Adults: defined; refresh ")
    assert "ready, 2 rows" in result.caption
    assert sorted(result.data["name"]) == [EVIL, "ann"]
    assert users.definitions()["Adults"]["$filter"] == {"age": {"$gte": 18}}


def test_view_cell_alters_a_changed_definition_and_keeps_an_unchanged_one(ip, users):
    spec = '{"$from": "users", "$filter": {"age": {"$gte": 18}}, "$select": {"name": "$name"}}'
    cell(ip, "view Adults", spec)
    assert cell(ip, "view Adults", spec).caption.startswith("view Adults: refreshed;")
    altered = cell(ip, "--full view Adults", spec.replace("18", "35"))
    assert altered.caption.startswith("view Adults: altered; refresh full")
    assert altered.data["name"].tolist() == [EVIL]
    assert line(ip, "view Adults").data["name"].tolist() == [EVIL]  # the line form refreshes and shows
    assert line(ip, "find Adults").data["name"].tolist() == [EVIL]  # find reads views too


def test_view_errors_are_usage_errors(ip, users):
    with pytest.raises(UsageError, match=r"ViewDefinitionError: .*unknown directive '\$fliter'"):
        cell(ip, "view Bad", '{"$from": "users", "$fliter": {}}')
    with pytest.raises(UsageError, match=r"ViewNotFoundError: unknown view 'Nope'"):
        line(ip, "view Nope")


def test_tables_lists_collections_and_views(ip, users):
    cell(ip, "view Adults", '{"$from": "users", "$filter": {"age": {"$gte": 18}}}')
    assert line(ip, "tables").data.to_dict("records") == [
        {"name": "users", "kind": "collection"}, {"name": "Adults", "kind": "view"}]


def test_stale_reads_trait_is_the_database_policy(ip, users):
    assert users.stale_reads == "refresh"
    ip.run_line_magic("config", "ParqueDBMagics.stale_reads = 'ignore'")
    assert users.stale_reads == "ignore"


def test_progress_after_sets_duckdb_progress_bar(ip, users):
    def setting(name):
        return users.query_rows("SELECT current_setting($1) AS v", [name])[0]["v"]

    assert setting("enable_progress_bar") is True and setting("progress_bar_time") == 2000
    ip.run_line_magic("config", "ParqueDBMagics.progress_after = 0")
    assert setting("enable_progress_bar") is False


# -- errors: one place, UsageError, no traceback ------------------------------------------------------


@pytest.mark.parametrize("body, message", [
    ("SELECT * FROM userz", r"UnknownTableError: sql: unknown table 'userz'; did you mean 'users'\?"),
    ("DROP TABLE users", r"SQLError: sql: DROP statements are not supported"),
    ("SELECT no_such_fn(1)", r"QueryError: .*no_such_fn"),
    ("SELECT FROM WHERE", r"SQLSyntaxError: sql line 1"),
])
def test_errors_become_usage_errors(ip, users, body, message):
    with pytest.raises(UsageError, match=message):
        cell(ip, "", body)


def test_a_bad_operator_suggests_the_right_one(ip, users):
    with pytest.raises(UsageError, match=r"did you mean '\$gte'"):
        cell(ip, "find users", '{"age": {"$gtee": 18}}')


def test_errors_show_without_a_traceback(ip, users, capsys):
    with pytest.raises(UsageError):
        ip.run_cell("%%parquedb\nSELECT * FROM userz\n")
    shown = capsys.readouterr()
    text = shown.out + shown.err
    assert "UsageError: UnknownTableError: sql: unknown table 'userz'" in text
    assert "Traceback" not in text and "magic.py" not in text


def test_bad_options_and_commands_are_usage_errors(ip, users):
    with pytest.raises(UsageError, match="invalid choice"):
        cell(ip, "--format csv", "SELECT 1")
    with pytest.raises(UsageError, match="unknown command 'select'"):
        cell(ip, "select", "1")
    with pytest.raises(UsageError, match="find needs a name"):
        line(ip, "find")
    with pytest.raises(UsageError, match="cell has no SQL"):
        line(ip, "sql")


def test_line_options_end_at_the_statement():
    assert split_leading_options("--limit 3 -o x SELECT '-o' --a comment") == ("--limit 3 -o x", "SELECT '-o' --a comment")
    assert parse_statement("find users", '{"a": 1}').target == "users"
    assert parse_statement("", "SELECT 1").command == "sql"


# -- credentials ------------------------------------------------------------------------------------------


@pytest.mark.s3
def test_credentials_never_show_in_output_reprs_or_errors(ip, s3, capsys):
    from parquedb_ibis._testing import TEST_SECRET

    options = s3.options()
    ip.user_ns.update(key=options["access_key_id"], secret=options["secret_access_key"])
    line(ip, f"connect s3://pqdb-test/magic endpoint={options['endpoint']} access_key_id=:key "
             f"secret_access_key=:secret region=us-east-1 flush_age=none")
    m = magics(ip)
    m.db.collection("users").insert_many([{"name": "ann"}, {"name": "bob"}])
    m.db.flush()
    shown = [cell(ip, "", "SELECT name FROM users ORDER BY name"), cell(ip, "--explain", "SELECT * FROM users"),
             cell(ip, "--explain find users", "{}"), line(ip, "tables")]
    texts = [repr(r) for r in shown] + [r._repr_html_() for r in shown] + [repr(m), repr(m.db), repr(m.db.config)]
    with pytest.raises(UsageError) as err:
        cell(ip, "", "SELECT * FROM read_parquet('s3://pqdb-no-such-bucket/x.parquet')")
    texts.append(str(err.value))
    line(ip, f"connect s3://pqdb-test/other endpoint={options['endpoint']} access_key_id={options['access_key_id']} "
             f"secret_access_key={TEST_SECRET}")  # typed literally: still never echoed
    out = capsys.readouterr()
    texts += [out.out, out.err]
    assert "Connected to s3://pqdb-test/magic" in out.out
    assert all(TEST_SECRET not in text for text in texts)
    assert m.redact(f"key {TEST_SECRET}!") == "key ***!"
