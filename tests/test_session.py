"""The DuckDB session factory: offline httpfs, secrets from the store config, s3:// and r2:// reads."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import store_options
from parquedb_ibis.config import parse_url
from parquedb_ibis.store import connect_duckdb, open_store
from parquedb_ibis.store.session import secret_statement


def parquet_bytes(n: int = 1000) -> bytes:
    table = pa.table({"id": list(range(n)), "name": [f"row-{i}" for i in range(n)]})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


@pytest.mark.parametrize("scheme", ["s3", "r2"])
def test_duckdb_reads_parquet_written_through_the_store(s3, scheme):
    config = parse_url(f"{scheme}://pqdb-test/warehouse", **store_options(s3))
    store = open_store(config)
    store.put("t/part-0.parquet", parquet_bytes(1000))
    store.put("t/part-1.parquet", parquet_bytes(10))
    con = connect_duckdb(config)
    url = store.url_for("t/*.parquet")
    assert url.startswith(f"{scheme}://pqdb-test/warehouse/")
    count, total = con.execute("SELECT count(*), sum(id) FROM read_parquet(?)", [url]).fetchone()
    assert (count, total) == (1010, sum(range(1000)) + sum(range(10)))


def test_local_sessions_need_no_httpfs_and_no_secret(tmp_path):
    store = open_store(str(tmp_path))
    store.put("x.parquet", parquet_bytes(5))
    con = connect_duckdb(store.config)
    assert con.execute("SELECT count(*) FROM read_parquet(?)", [store.url_for("x.parquet")]).fetchone() == (5,)
    assert con.execute("SELECT count(*) FROM duckdb_secrets()").fetchone() == (0,)
    assert con.execute("SELECT current_setting('TimeZone')").fetchone() == ("UTC",)


def test_sessions_never_autoinstall_extensions(tmp_path):
    con = connect_duckdb(open_store(str(tmp_path)).config)
    assert con.execute("SELECT current_setting('autoinstall_known_extensions')").fetchone() == (False,)


def test_secret_statement_quotes_values_and_hides_nothing_outside_it():
    config = parse_url("s3://pqdb-test/x", endpoint="http://127.0.0.1:1234", access_key_id="k'ey",
                       secret_access_key="se'cr\\et")
    sql = secret_statement(config)
    assert "KEY_ID 'k''ey'" in sql and "USE_SSL false" in sql and "ENDPOINT '127.0.0.1:1234'" in sql
    assert "se'cr" not in repr(config)


def test_secret_values_are_not_shown_by_duckdb(s3):
    config = parse_url("s3://pqdb-test/x", **store_options(s3))
    con = connect_duckdb(config)
    shown = con.execute("SELECT secret_string FROM duckdb_secrets()").fetchall()
    assert shown and all(config.secret_access_key.reveal() not in row[0] for row in shown)
