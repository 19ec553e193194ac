"""Reading one upstream object into an Arrow table, whatever upstream actually wrote.

Upstream ``.parquet`` objects come in three shapes (upstream-format.md §2):

* real Parquet, read with pyarrow. DuckDB 1.5 cannot: family B, WorkerLogs and
  MV outputs use the Hadoop-framed ``LZ4`` codec (Parquet codec 5), which
  pyarrow reads and DuckDB 1.5 rejects, so every upstream file goes through
  pyarrow;
* the "fake Parquet" fallback ``b"PAR1" + JSON + b"PAR1"`` that upstream
  writes when hyparquet-writer throws; its JSON holds a ``columns`` map of
  ``name -> [values]``;
* plain JSON (``data/{ns}/pending/{ULID}.parquet.json``: a list of row objects).

Columns that hyparquet wrote as BYTE_ARRAY without the UTF8 annotation (every
all-null string column) are cast to strings when their bytes are UTF-8, so
files of one kind unify. Reads only: nothing here writes to the store.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from parquedb_ibis.errors import UpstreamFormatError

if TYPE_CHECKING:
    from parquedb_ibis.store import ObjectStore

PARQUET_MAGIC = b"PAR1"


def is_fake_parquet(data: bytes) -> bool:
    """True for upstream's ``PAR1{json}PAR1`` fallback (a real file has a page header after ``PAR1``)."""
    return data[:4] == PARQUET_MAGIC and data[-4:] == PARQUET_MAGIC and data[4:5] == b"{"


def table_from_bytes(data: bytes, key: str, columns: Sequence[str] | None = None) -> pa.Table:
    """Parse an object's bytes (Parquet, fake Parquet or JSON rows) into a table."""
    if key.endswith(".json"):
        return _table_from_json_rows(data, key, columns)
    if is_fake_parquet(data):
        return _table_from_fake_parquet(data, key, columns)
    try:
        table = pq.read_table(pa.BufferReader(data), columns=list(columns) if columns else None)
    except (pa.ArrowException, OSError) as err:
        raise UpstreamFormatError(key, f"not a readable Parquet file ({type(err).__name__}: {err})") from err
    return strings_from_binary(table)


def read_table(store: ObjectStore, key: str, columns: Sequence[str] | None = None) -> pa.Table:
    """Fetch ``key`` from ``store`` and parse it (see :func:`table_from_bytes`)."""
    return table_from_bytes(store.get(key), key, columns)


def strings_from_binary(table: pa.Table) -> pa.Table:
    """Cast ``binary`` columns to ``string`` where every value is valid UTF-8."""
    for index, field in enumerate(table.schema):
        if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
            try:
                column = table.column(index).cast(pa.string())
            except pa.ArrowInvalid:
                continue  # real bytes: keep them
            table = table.set_column(index, pa.field(field.name, pa.string(), field.nullable), column)
    return table


def _table_from_fake_parquet(data: bytes, key: str, columns: Sequence[str] | None) -> pa.Table:
    try:
        payload = json.loads(data[4:-4].decode("utf-8"))
        mapping = payload["columns"]
    except (ValueError, KeyError, TypeError) as err:
        raise UpstreamFormatError(key, "starts like upstream's JSON-in-PAR1 fallback but its JSON is unreadable") from err
    if not isinstance(mapping, dict):
        raise UpstreamFormatError(key, f"fallback file: expected a 'columns' object, found {type(mapping).__name__}")
    return _table_from_columns(mapping, key, columns)


def _table_from_json_rows(data: bytes, key: str, columns: Sequence[str] | None) -> pa.Table:
    try:
        records = json.loads(data.decode("utf-8"))
    except ValueError as err:
        raise UpstreamFormatError(key, "not valid JSON") from err
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise UpstreamFormatError(key, "expected a JSON array of row objects")
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record))
    mapping = {name: [record.get(name) for record in records] for name in names}
    return _table_from_columns(mapping, key, columns)


def _table_from_columns(mapping: dict[str, Any], key: str, columns: Sequence[str] | None) -> pa.Table:
    arrays: dict[str, pa.Array] = {}
    lengths = {len(v) for v in mapping.values() if isinstance(v, list)}
    if len(lengths) > 1 or any(not isinstance(v, list) for v in mapping.values()):
        raise UpstreamFormatError(key, "columns of different lengths")
    for name, values in mapping.items():
        if columns and name not in columns:
            continue
        try:
            arrays[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            # mixed types (the reason upstream fell back): keep each value as JSON text
            arrays[name] = pa.array([None if v is None else json.dumps(v) for v in values], pa.string())
    return pa.table(arrays)
