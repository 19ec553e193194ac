"""Events and their Parquet segments.

Every mutation is one :class:`Event`. A segment is one immutable Parquet file
of events with these columns:

==============  =====================  ==========================================
column          type                   meaning
==============  =====================  ==========================================
``id``          VARCHAR                the event's ULID (monotonic per writer)
``ts``          TIMESTAMP (UTC, µs)    when the mutation happened (a real INT64)
``op``          VARCHAR                ``CREATE`` | ``UPDATE`` | ``DELETE``
``ns``          VARCHAR                the collection
``entity_id``   VARCHAR                the entity's local id (``$id`` = ``ns/entity_id``)
``before``      VARCHAR (JSON)         the whole document before, or NULL on create
``actor``       VARCHAR                who made the change
``metadata``    VARCHAR (JSON)         free-form event metadata
state columns   typed + ``$data``      the whole document after (see schema.to_row);
                                       all NULL for a hard delete
==============  =====================  ==========================================

Putting the *after* state in the same typed columns as a checkpoint lets a
reader fold checkpoint and segments with one ``UNION ALL BY NAME``.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from parquedb_ibis.documents import DATA_COLUMN, encode_variant
from parquedb_ibis.schema import Schema, to_row

OPS = ("CREATE", "UPDATE", "DELETE")

EVENT_COLUMNS: dict[str, pa.DataType] = {
    "id": pa.string(),
    "ts": pa.timestamp("us", tz="UTC"),
    "op": pa.string(),
    "ns": pa.string(),
    "entity_id": pa.string(),
    "before": pa.string(),
    "actor": pa.string(),
    "metadata": pa.string(),
}

#: DuckDB column type -> Arrow type for the state columns. One row per type a schema can declare.
ARROW_TYPES: dict[str, pa.DataType] = {
    "VARCHAR": pa.string(),
    "JSON": pa.string(),
    "BIGINT": pa.int64(),
    "DOUBLE": pa.float64(),
    "BOOLEAN": pa.bool_(),
    "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
    "DATE": pa.date32(),
}


def arrow_type(duckdb_type: str) -> pa.DataType:
    """The Arrow type we write for a DuckDB column type (``DECIMAL(p,s)`` and ``T[]`` included)."""
    if duckdb_type.endswith("[]"):
        return pa.list_(arrow_type(duckdb_type[:-2]))
    if duckdb_type.startswith("DECIMAL("):
        precision, scale = duckdb_type[8:-1].split(",")
        return pa.decimal128(int(precision), int(scale))
    return ARROW_TYPES[duckdb_type]


def state_schema(schema: Schema) -> pa.Schema:
    """Arrow schema of the state columns (system, declared, ``$data``)."""
    fields = [pa.field(name, arrow_type(t)) for name, t in schema.column_types().items()]
    return pa.schema([*fields, pa.field(DATA_COLUMN, pa.string())])


def segment_schema(schema: Schema) -> pa.Schema:
    return pa.schema([*(pa.field(n, t) for n, t in EVENT_COLUMNS.items()), *state_schema(schema)])


@dataclass(slots=True)
class Event:
    """One mutation of one entity: full before and after documents (treat as immutable)."""

    id: str
    ts: dt.datetime
    op: str
    ns: str
    entity_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    actor: str | None = None
    metadata: dict[str, Any] | None = None

    @property
    def full_id(self) -> str:
        return f"{self.ns}/{self.entity_id}"


#: A batch of segment rows as columns: column name -> a Python list or an Arrow array, all of one length.
Columns = dict[str, "list[Any] | pa.Array"]


def event_columns(events: Sequence[Event], schema: Schema, rows: Sequence[dict[str, Any]] | None = None) -> Columns:
    """The segment columns of ``events`` (in order) as Python lists.

    ``rows`` are the events' state rows when already computed (``schema.to_row(event.after)``).
    """
    if rows is None:
        rows = [to_row(e.after, schema) if e.after is not None else {} for e in events]
    states = [row if e.after is not None else {"$id": e.full_id} for e, row in zip(events, rows, strict=True)]
    columns: Columns = {
        "id": [e.id for e in events],
        "ts": [e.ts for e in events],
        "op": [e.op for e in events],
        "ns": [e.ns for e in events],
        "entity_id": [e.entity_id for e in events],
        "before": [None if e.before is None else encode_variant(e.before) for e in events],
        "actor": [e.actor for e in events],
        "metadata": [None if e.metadata is None else encode_variant(e.metadata) for e in events],
    }
    for name in state_schema(schema).names:
        columns[name] = [state.get(name) for state in states]
    return columns


def columns_table(batches: Sequence[Columns], schema: Schema) -> pa.Table:
    """The segment table of consecutive column batches (runs of Python lists are converted in one go)."""
    target = segment_schema(schema)
    arrays = []
    for column in target:
        chunks: list[pa.Array] = []
        pending: list[Any] = []
        for batch in batches:
            values = batch[column.name]
            if isinstance(values, list):
                pending.extend(values)
                continue
            if pending:
                chunks.append(pa.array(pending, column.type))
                pending = []
            chunks.append(values)
        if pending or not chunks:
            chunks.append(pa.array(pending, column.type))
        arrays.append(pa.chunked_array(chunks, column.type))
    return pa.Table.from_arrays(arrays, schema=target)


def events_table(events: Sequence[Event], schema: Schema, rows: Sequence[dict[str, Any]] | None = None) -> pa.Table:
    """The Arrow table of a segment (rows in event order)."""
    return columns_table([event_columns(events, schema, rows)], schema)


def string_array(texts: Sequence[bytes]) -> pa.Array:
    """A string array of UTF-8 texts (trusted to be valid, as orjson's output is), built from one buffer."""
    data = b"".join(texts)
    if len(data) >= 1 << 31:  # beyond 32-bit offsets: let Arrow convert (and check) them
        return pa.array(texts, pa.string())
    offsets = np.fromiter(itertools.accumulate(map(len, texts), initial=0), np.int32, len(texts) + 1)
    return pa.StringArray.from_buffers(len(texts), pa.py_buffer(offsets), pa.py_buffer(data))


#: Columns whose values are (nearly) all distinct: dictionary encoding only costs time there.
DISTINCT_COLUMNS = frozenset({"id", "entity_id", "$id", "before", DATA_COLUMN})


def table_to_parquet(table: pa.Table, *, row_group_size: int = 100_000, compression: str = "zstd") -> bytes:
    """Serialize a table as Parquet bytes (statistics on, for pruning)."""
    sink = pa.BufferOutputStream()  # an Arrow buffer: encoding never waits for the GIL to write to Python
    dictionary = [name for name in table.column_names if name not in DISTINCT_COLUMNS]
    pq.write_table(table, sink, row_group_size=row_group_size, compression=compression, write_statistics=True,
                   use_dictionary=dictionary)
    return sink.getvalue().to_pybytes()
