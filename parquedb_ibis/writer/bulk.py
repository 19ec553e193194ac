"""Bulk loads from Arrow: check a table against a collection schema and build its CREATE events.

:meth:`Collection.insert_arrow <parquedb_ibis.writer.collection.Collection.insert_arrow>`
creates one entity per row of an Arrow table without building a Python
document per row. This module holds its pure parts:

* :func:`conform` checks each column against the declared field it fills
  (:data:`ACCEPTS`, one row per kind) and casts it to the stored type;
* :func:`json_checks` is the one DuckDB query that finds the first row whose
  variant or ``$data`` text is not the JSON it must be;
* :func:`full_ids` turns given local ids into ``ns/local`` ids;
* :func:`create_columns` builds the segment columns of the CREATE events.

In this path a null in a declared non-variant column is a stored null (there
is no "absent"); a null in a variant column means the field is absent and the
JSON text ``'null'`` a stored null, as in a checkpoint.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from parquedb_ibis.documents import ABSENT_KEY, DATA_COLUMN, SYSTEM_FIELDS
from parquedb_ibis.errors import ValidationError
from parquedb_ibis.schema import FieldType, Schema
from parquedb_ibis.writer.events import EVENT_COLUMNS, Columns, arrow_type

#: Optional columns besides the declared fields.
ID, TYPE = "$id", "$type"

#: The registered name of the table :func:`json_checks` reads, and its row-number column.
TABLE, ROW = "__pq_bulk", "__pq_row"


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


#: Per declared kind: the Arrow types a bulk-load column may have (it is then cast to the stored type).
ACCEPTS: dict[str, Callable[[pa.DataType], bool]] = {
    "string": _is_text,
    "relation": _is_text,
    "int": pa.types.is_integer,
    "float": lambda t: pa.types.is_integer(t) or pa.types.is_floating(t),
    "boolean": pa.types.is_boolean,
    "timestamp": pa.types.is_timestamp,
    "date": pa.types.is_date,
    "decimal": lambda t: pa.types.is_decimal(t) or pa.types.is_integer(t),
    "variant": _is_text,  # JSON text
}


def _accepts(f: FieldType, t: pa.DataType) -> bool:
    if pa.types.is_null(t):
        return True
    if f.array and f.kind != "variant":
        return (pa.types.is_list(t) or pa.types.is_large_list(t)) and _accepts(
            FieldType(f.name, f.declaration, f.kind), t.value_type)
    return ACCEPTS[f.kind](t)


def _first(mask: pa.ChunkedArray | pa.Array) -> int:
    return pc.index(mask, True).as_py()


def conform(table: pa.Table, schema: Schema, where: str) -> dict[str, pa.ChunkedArray]:
    """The declared-field columns and ``$data`` of ``table``, cast to their stored types.

    A declared field without a column is all null; ``$data`` nulls become
    ``'{}'``. Raises :class:`ValidationError` naming the column (and row) for an
    unknown column, a type that does not fit, a value the cast cannot hold, or
    a null in a required field.
    """
    n = table.num_rows
    known = {*schema.names, ID, TYPE, DATA_COLUMN}
    for name in table.column_names:
        if name not in known:
            declared = ", ".join(repr(x) for x in schema.names) or "none"
            raise ValidationError(f"{where} column {name!r}", f"not a declared field (declared: {declared}); "
                                  f"put undeclared fields in '{DATA_COLUMN}' as JSON object text")
    out: dict[str, pa.ChunkedArray] = {}
    for f in schema.fields:
        target = pa.string() if f.is_variant else arrow_type(f.duckdb_type)
        if f.name not in table.column_names:
            column = pa.chunked_array([pa.nulls(n, target)])
        else:
            column = table[f.name]
            if not _accepts(f, column.type):
                raise ValidationError(f"{where} column {f.name!r}", f"Arrow type {column.type} does not fit "
                                      f"{f.declaration!r}; cast the column first")
            try:
                column = column.cast(target, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
                raise ValidationError(f"{where} column {f.name!r}", f"cannot store as {f.declaration!r}: {err}") from None
        if f.required and column.null_count:
            raise ValidationError(f"{where} column {f.name!r} row {_first(column.is_null())}",
                                  f"required field ({f.declaration}) is null")
        out[f.name] = column
    data = table[DATA_COLUMN] if DATA_COLUMN in table.column_names else pa.chunked_array([pa.nulls(n, pa.string())])
    if not (_is_text(data.type) or pa.types.is_null(data.type)):
        raise ValidationError(f"{where} column {DATA_COLUMN!r}", f"expected JSON object text, found Arrow type {data.type}")
    out[DATA_COLUMN] = pc.fill_null(data.cast(pa.string()), "{}")
    return out


def json_checks(columns: Mapping[str, pa.ChunkedArray], schema: Schema) -> tuple[pa.Table, exp.Select]:
    """A table to register as :data:`TABLE` and the query that finds, per JSON column, the first bad row.

    The query returns one row with, for each variant column and ``$data``, the
    row number of the first value that is not valid JSON (``$data``: not an
    object, or one holding a system, declared or ``$absent`` key; ``variant[]``:
    not an array), or NULL when there is none.
    """
    names = [f.name for f in schema.fields if f.is_variant] + [DATA_COLUMN]
    table = pa.table({ROW: pa.array(range(len(columns[DATA_COLUMN])), pa.int64()), **{n: columns[n] for n in names}})
    reserved = exp.Array(expressions=[exp.Literal.string(k) for k in (*SYSTEM_FIELDS, *schema.names, ABSENT_KEY)])
    checks = []
    for name in names:
        value = exp.column(name, quoted=True)
        kind = exp.func("coalesce", exp.Anonymous(this="try", expressions=[exp.func("json_type", value)]),
                        exp.Literal.string("INVALID"))  # one parse; invalid text gives 'INVALID'
        f = schema.field(name)
        if name == DATA_COLUMN:
            keys = exp.Anonymous(this="try", expressions=[exp.func("json_keys", value)])
            bad: exp.Expression = exp.or_(kind.neq(exp.Literal.string("OBJECT")), exp.func("list_has_any", keys, reserved))
        elif f is not None and f.array:
            bad = exp.and_(exp.Not(this=exp.Is(this=value, expression=exp.null())),
                           exp.Not(this=exp.In(this=kind, expressions=[exp.Literal.string("ARRAY"), exp.Literal.string("NULL")])))
        else:
            bad = exp.Not(this=exp.func("json_valid", value))
        first = exp.Filter(this=exp.Min(this=exp.column(ROW, quoted=True)), expression=exp.Where(this=bad))
        checks.append(exp.alias_(first, name, quoted=True))
    return table, exp.select(*checks).from_(exp.to_identifier(TABLE, quoted=True))


def json_problem(name: str, schema: Schema) -> str:
    """What a value found by :func:`json_checks` in column ``name`` is not."""
    if name == DATA_COLUMN:
        return (f"not a JSON object of undeclared fields (no system, declared or {ABSENT_KEY!r} keys); "
                "put declared fields in their own columns")
    f = schema.field(name)
    return "not a JSON array (variant[] holds arrays)" if f is not None and f.array else "not valid JSON text"


def full_ids(ids: pa.ChunkedArray, ns: str, where: str) -> pa.ChunkedArray:
    """Given ids (``'local'`` or ``'ns/local'``) as ``'ns/local'``; raises on nulls, empties or other namespaces."""
    ids = ids.cast(pa.string())
    if ids.null_count:
        raise ValidationError(f"{where} column {ID!r} row {_first(ids.is_null())}", "an id is null; leave the column out to generate ids")
    prefix = f"{ns}/"
    local = pc.if_else(pc.starts_with(ids, prefix), pc.utf8_slice_codeunits(ids, len(prefix)), ids)
    bad = pc.or_(pc.equal(pc.utf8_length(local), 0), pc.match_substring(local, "/"))
    if pc.any(bad).as_py():
        row = _first(bad)
        raise ValidationError(f"{where} column {ID!r} row {row}",
                              f"id {ids[row].as_py()!r} is empty or does not belong to collection {ns!r}")
    return pc.binary_join_element_wise(prefix, local, "")


def create_columns(ns: str, event_ids: list[str], ids: pa.ChunkedArray | pa.Array, types: pa.ChunkedArray | pa.Array,
                   actor: str, now: dt.datetime, state: Mapping[str, pa.ChunkedArray]) -> Columns:
    """The segment columns of one CREATE event per row (``state``: declared fields and ``$data``)."""
    n = len(event_ids)
    when = pa.scalar(now, EVENT_COLUMNS["ts"])
    actors = pa.repeat(pa.scalar(actor, pa.string()), n)
    return {
        "id": pa.array(event_ids, pa.string()), "ts": pa.repeat(when, n), "op": pa.repeat(pa.scalar("CREATE"), n),
        "ns": pa.repeat(pa.scalar(ns), n), "entity_id": _array(pc.utf8_slice_codeunits(ids, len(ns) + 1)),
        "before": pa.nulls(n, pa.string()), "actor": actors, "metadata": pa.nulls(n, pa.string()),
        ID: _array(ids), TYPE: _array(types), "createdAt": pa.repeat(when, n), "updatedAt": pa.repeat(when, n),
        "createdBy": actors, "updatedBy": actors, "version": pa.repeat(pa.scalar(1, pa.int64()), n),
        "deletedAt": pa.nulls(n, EVENT_COLUMNS["ts"]), **{name: _array(c) for name, c in state.items()},
    }


def _array(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
