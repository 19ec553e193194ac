"""Find documents in a DuckDB relation with ParqueDB's ``find`` semantics.

:func:`find` runs a filter (compiled by :mod:`parquedb_ibis.compile.filters`),
a sort, cursor/skip/limit pagination and a projection over a relation laid out
the way the writer stores a collection (typed system and declared columns plus
the ``$data`` variant column), and gives back documents with their original
Python types. :func:`find_in` runs the same engine over a plain list of
documents loaded into an in-memory DuckDB table.

The order of operations is ParqueDB's (``ParqueDB.find``, docs/semantics.md §3):
filter → sort → cursor → skip → limit → projection.

* sort: ``{path: 1 | -1 | 'asc' | 'desc'}``, keys in dict order; null and
  missing values sort **last in both directions**; variant paths sort by type
  (numbers, decimals, strings, dates, date-only, booleans, then arrays and
  objects by their JSON text) and by value within a type, and descending is
  the exact reverse; ties keep input order (``find_in``) or ``$id`` order
  (collections);
* cursor: the ``$id`` after which to continue in sorted order (unknown ⇒ no rows);
* skip, limit: ``None`` or ``<= 0`` means none;
* project: ParqueDB ``applyProjection`` – inclusion when any value is 1/true
  (listed top-level keys that exist), otherwise exclusion of keys set to 0/false.

Every value reaches DuckDB as a sqlglot literal or a bound parameter; SQL text
is only ever produced by rendering a tree.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
from sqlglot import exp

from parquedb_ibis.compile import sql
from parquedb_ibis.compile.filters import (
    ARRAY,
    BINARY,
    DATE,
    OBJECT,
    ORDERED_FAMILIES,
    Filter,
    JsonRef,
    Ref,
    TypedRef,
    compile_filter,
    resolve_path,
)
from parquedb_ibis.documents import DATA_COLUMN, decode_variant, encode_variant, to_jsonable, to_utc
from parquedb_ibis.errors import FindOptionError, QueryError
from parquedb_ibis.schema import Schema, from_row

Relation = str | exp.Expr
Sort = Mapping[str, Any]
Projection = Mapping[str, Any]
SchemaLike = Schema | Mapping[str, str] | None

#: Sort direction spellings -> descending?
SORT_DIRECTIONS: dict[Any, bool] = {1: False, "asc": False, -1: True, "desc": True}

#: The column ``find_in`` keeps each document's input position in (its tie-breaker).
ORDINAL_COLUMN = "$ord"

_RANK = "$rank"
_MATCHED = "$matched"
_ID_FIELD = "$id"


@dataclass(frozen=True)
class Explanation:
    """The SQL a find runs and DuckDB's physical plan for it (filters show in the scan)."""

    sql: str
    plan: str

    def __str__(self) -> str:
        return f"{self.sql}\n\n{self.plan}"


# -- public API ----------------------------------------------------------------------


def find(
    con: duckdb.DuckDBPyConnection,
    relation: Relation,
    schema: SchemaLike = None,
    filter: Filter | None = None,
    sort: Sort | None = None,
    limit: int | None = None,
    skip: int | None = None,
    cursor: str | None = None,
    project: Projection | None = None,
    system_columns: bool = True,
    *,
    order_column: str | None = None,
) -> list[dict[str, Any]]:
    """The documents of ``relation`` matching ``filter``, in ParqueDB ``find`` order.

    ``order_column`` names a column that breaks sort ties (default: ``$id`` for
    collections, none for ``system_columns=False`` relations).
    """
    parsed = Schema.parse(schema)
    query = build_find(parsed, relation, filter, sort, limit, skip, cursor, system_columns, order_column)
    _check_projection(project)
    rows = _fetch(con, query, relation)
    docs = [_to_document(row, parsed, system_columns) for row in rows]
    return [apply_projection(doc, project) for doc in docs]


def find_one(
    con: duckdb.DuckDBPyConnection,
    relation: Relation,
    schema: SchemaLike = None,
    filter: Filter | None = None,
    sort: Sort | None = None,
    project: Projection | None = None,
    system_columns: bool = True,
) -> dict[str, Any] | None:
    """The first matching document in sort order, or ``None``."""
    found = find(con, relation, schema, filter, sort, limit=1, project=project, system_columns=system_columns)
    return found[0] if found else None


def count(
    con: duckdb.DuckDBPyConnection,
    relation: Relation,
    schema: SchemaLike = None,
    filter: Filter | None = None,
    system_columns: bool = True,
) -> int:
    """How many documents match ``filter`` (ParqueDB's ``total``: before pagination)."""
    where = compile_filter(filter, Schema.parse(schema), system_columns=system_columns)
    query = exp.select(exp.Count(this=exp.Star())).from_(_source(relation), copy=False).where(where, copy=False)
    (total,) = _execute(con, sql.render(query), relation).fetchone() or (0,)
    return int(total)


def distinct(
    con: duckdb.DuckDBPyConnection,
    relation: Relation,
    schema: SchemaLike,
    field: str,
    filter: Filter | None = None,
    system_columns: bool = True,
) -> list[Any]:
    """The distinct values of ``field`` over matching documents, ascending by :func:`find`'s sort rule.

    Missing values are left out; a stored null is ``None`` (last). Values that
    are deep-equal (``1`` and ``1.0``) are one value.
    """
    if not isinstance(field, str) or not field:
        raise FindOptionError("field", f"expected a field path, found {field!r}")
    parsed = Schema.parse(schema)
    ref = resolve_path(field, parsed, system_columns=system_columns)
    value = _value_expression(ref)
    if value is None:
        return []
    keys = order_keys(ref)
    where = sql.and_(compile_filter(filter, parsed, system_columns=system_columns), ref.exists())
    inner = exp.select(exp.alias_(value, "value", quoted=True), copy=False)
    for i, key in enumerate(keys):
        inner = inner.select(exp.alias_(key, f"k{i}", quoted=True), append=True, copy=False)
    inner = inner.from_(_source(relation), copy=False).where(where, copy=False).distinct(copy=False)
    outer = exp.select(sql.column("value"), copy=False).from_(inner.subquery("$distinct"), copy=False)
    outer = outer.order_by(*[exp.Ordered(this=sql.column(f"k{i}"), nulls_first=False) for i in range(len(keys))], copy=False)
    values = [_decode_value(ref, row["value"]) for row in _fetch(con, outer, relation)]
    unique: list[Any] = []
    seen: set[str] = set()
    for v in values:
        key = _canonical(v)
        if key not in seen:
            seen.add(key)
            unique.append(v)
    return unique


def explain(
    con: duckdb.DuckDBPyConnection,
    relation: Relation,
    schema: SchemaLike = None,
    filter: Filter | None = None,
    sort: Sort | None = None,
    limit: int | None = None,
    skip: int | None = None,
    cursor: str | None = None,
    system_columns: bool = True,
) -> Explanation:
    """The SQL :func:`find` would run and DuckDB's ``EXPLAIN`` of it."""
    query = build_find(Schema.parse(schema), relation, filter, sort, limit, skip, cursor, system_columns, None)
    text = sql.render(query)
    plan = "\n".join(str(row[-1]) for row in _execute(con, "EXPLAIN " + text, relation).fetchall())
    return Explanation(sql=sql.render(query, pretty=True), plan=plan)


def find_in(
    docs: Sequence[Any],
    filter: Filter | None = None,
    *,
    sort: Sort | None = None,
    limit: int | None = None,
    skip: int | None = None,
    cursor: str | None = None,
    project: Projection | None = None,
) -> list[Any]:
    """Run a find over a Python list of documents (through DuckDB, same engine as :func:`find`).

    Returns the matching documents themselves (or their projections), in
    ParqueDB order; ties keep input order. ``None`` and other non-object
    entries are null documents: only the empty filter matches them.

    >>> find_in([{"a": 1}, {"a": 3}, {}], {"a": {"$gte": 2}})
    [{'a': 3}]
    """
    _check_projection(project)
    con = _scratch_connection()
    try:
        con.execute('CREATE TEMP TABLE docs ("$ord" BIGINT, "$data" JSON)')
        for start in range(0, len(docs), _INSERT_BATCH):
            batch = docs[start : start + _INSERT_BATCH]
            params = [x for i, doc in enumerate(batch, start) for x in (i, encode_variant(doc))]
            con.execute(_INSERT_DOCS[len(batch)] if len(batch) in _INSERT_DOCS else _insert_docs(len(batch)), params)
        query = build_find(Schema(), "docs", filter, sort, limit, skip, cursor, False, ORDINAL_COLUMN)
        positions = [row[ORDINAL_COLUMN] for row in _fetch(con, query, "find_in")]
    finally:
        con.close()  # a cursor is its own connection: its TEMP table goes with it
    return [apply_projection(docs[i], project) for i in positions]


_INSERT_BATCH = 256
_shared: duckdb.DuckDBPyConnection | None = None
_shared_lock = threading.Lock()


def _insert_docs(rows: int) -> str:
    """``INSERT INTO docs VALUES (?, ?), ...``: a fixed template; the values are bound parameters."""
    return "INSERT INTO docs VALUES " + ", ".join(["(?, ?)"] * rows)


_INSERT_DOCS = {_INSERT_BATCH: _insert_docs(_INSERT_BATCH)}


def _scratch_connection() -> duckdb.DuckDBPyConnection:
    """A fresh connection to one shared in-memory database (opening a database costs ~20 ms)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = duckdb.connect(":memory:")
        return _shared.cursor()


# -- building the query (pure) -------------------------------------------------------


def build_find(
    schema: Schema,
    relation: Relation,
    filter: Filter | None,
    sort: Sort | None = None,
    limit: int | None = None,
    skip: int | None = None,
    cursor: str | None = None,
    system_columns: bool = True,
    order_column: str | None = None,
) -> exp.Query:
    """The ``SELECT`` a find runs (pure; also used by :func:`explain`)."""
    where = compile_filter(filter, schema, system_columns=system_columns)
    if order_column is None and system_columns:
        order_column = _ID_FIELD
    ordering = order_by(sort, schema, system_columns=system_columns)
    if order_column is not None and (ordering or cursor is not None):
        ordering.append(exp.Ordered(this=sql.column(order_column), nulls_first=False))
    limit_n, skip_n = _positive("limit", limit), _positive("skip", skip)
    if cursor is not None and not isinstance(cursor, str):
        raise FindOptionError("cursor", f"expected an $id string, found {type(cursor).__name__} {cursor!r}")
    columns = _select_list(schema, system_columns, order_column)
    source = _source(relation)
    if cursor is None:
        query = exp.select(*columns, copy=False).from_(source, copy=False).where(where, copy=False)
        if ordering:
            query = query.order_by(*ordering, copy=False)
    else:
        query = _after_cursor(columns, source, where, ordering, cursor, schema, system_columns)
    if limit_n:
        query = query.limit(sql.number(limit_n), copy=False)
    if skip_n:
        query = query.offset(sql.number(skip_n), copy=False)
    return query


def _after_cursor(
    columns: list[exp.Expr],
    source: exp.Expr,
    where: exp.Expr,
    ordering: list[exp.Ordered],
    cursor: str,
    schema: Schema,
    system_columns: bool,
) -> exp.Query:
    """Rows ranked in sort order, keeping those after the first row whose ``$id`` is the cursor."""
    window = exp.Window(this=exp.RowNumber(), order=exp.Order(expressions=ordering) if ordering else None)
    ranked = exp.select(*columns, copy=False).select(exp.alias_(window, _RANK, quoted=True), append=True, copy=False)
    ranked = ranked.from_(source, copy=False).where(where, copy=False)
    is_cursor = compile_filter({_ID_FIELD: cursor}, schema, system_columns=system_columns)
    start = exp.select(exp.Min(this=sql.column(_RANK)), copy=False).from_(sql.table(_MATCHED), copy=False)
    start = start.where(is_cursor, copy=False)
    names = [c.alias_or_name for c in columns]
    query = exp.select(*[sql.column(n) for n in names], copy=False).from_(sql.table(_MATCHED), copy=False)
    query = query.where(exp.GT(this=sql.column(_RANK), expression=exp.Subquery(this=start)), copy=False)
    query = query.order_by(exp.Ordered(this=sql.column(_RANK), nulls_first=False), copy=False)
    return query.with_(sql.identifier(_MATCHED), as_=ranked, copy=False)


def order_by(sort: Sort | None, schema: Schema, *, system_columns: bool = True) -> list[exp.Ordered]:
    """``ORDER BY`` terms for a ParqueDB sort spec (nulls last in both directions).

    >>> [sql.render(o) for o in order_by({"age": -1}, Schema.parse({"age": "int"}))]
    ['"age" DESC']
    """
    if sort is None:
        return []
    if not isinstance(sort, Mapping):
        raise FindOptionError("sort", f"expected {{field: 1 | -1 | 'asc' | 'desc'}}, found {sort!r}")
    terms = []
    for path, direction in sort.items():
        descending = SORT_DIRECTIONS.get(direction) if not isinstance(direction, bool) else None
        if descending is None:
            raise FindOptionError(f"sort.{path}", f"invalid sort direction {direction!r}; expected 1, -1, 'asc' or 'desc'")
        if not isinstance(path, str) or not path:
            raise FindOptionError("sort", f"expected field paths as keys, found {path!r}")
        ref = resolve_path(path, schema, system_columns=system_columns)
        terms += [exp.Ordered(this=key, desc=descending, nulls_first=False) for key in order_keys(ref)]
    return terms


def order_keys(ref: Ref) -> list[exp.Expr]:
    """Expressions whose lexicographic order (NULLs last) is the type-aware order of the values.

    A typed column is its own key. A variant value gets a type rank (numbers,
    decimals, strings, dates, date-only, booleans, then arrays and objects),
    then one key per ordered family (NULL unless the value is of that family)
    and a last key for arrays and objects (their JSON text). Null and missing
    values have no rank, so they sort last in both directions.
    """
    if isinstance(ref, TypedRef):
        return [ref.node()]
    ranked = [*ORDERED_FAMILIES, ARRAY, OBJECT, BINARY]
    rank = exp.Case(ifs=[exp.If(this=ref.has_family(f), true=sql.number(i)) for i, f in enumerate(ranked, 1)])
    keys = [rank, *(ref.value(f) for f in ORDERED_FAMILIES), ref.composite_text()]
    return [k for k in keys if k is not None]


def _positive(option: str, value: int | None) -> int:
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool):
        raise FindOptionError(option, f"expected an integer, found {type(value).__name__} {value!r}")
    return value if value > 0 else 0


def _source(relation: Relation) -> exp.Expr:
    if isinstance(relation, str):
        return sql.table(relation)
    if isinstance(relation, exp.Query):
        return relation.subquery("$relation", copy=True)
    if isinstance(relation, exp.Expr):
        return relation.copy()
    raise FindOptionError("relation", f"expected a table name or a sqlglot expression, found {relation!r}")


def _select_list(schema: Schema, system_columns: bool, order_column: str | None) -> list[exp.Expr]:
    """The stored columns, with ``TIMESTAMPTZ`` read as UTC ``TIMESTAMP`` (no pytz needed)."""
    columns: list[exp.Expr] = []
    if system_columns:
        for name, sql_type in schema.column_types().items():
            columns.append(_readable(name, sql_type))
    columns.append(sql.column(DATA_COLUMN))
    if order_column is not None and not system_columns:
        columns.append(sql.column(order_column))
    return columns


def _readable(name: str, sql_type: str) -> exp.Expr:
    node = sql.column(name)
    if sql_type == "TIMESTAMPTZ":
        return exp.alias_(_utc(node), name, quoted=True)
    if sql_type == "TIMESTAMPTZ[]":
        variable = sql.lambda_variable(1)
        as_utc = exp.Transform(this=node, expression=sql.lambda_(variable, _utc(variable.copy())))
        return exp.alias_(as_utc, name, quoted=True)
    return node


def _utc(node: exp.Expr) -> exp.Expr:
    return sql.func("timezone", sql.string("UTC"), node)


# -- running and decoding ----------------------------------------------------------------


def _fetch(con: duckdb.DuckDBPyConnection, query: exp.Expr, relation: Relation) -> list[dict[str, Any]]:
    result = _execute(con, sql.render(query), relation)
    names = [d[0] for d in result.description]
    return [dict(zip(names, row)) for row in result.fetchall()]


def _execute(con: duckdb.DuckDBPyConnection, text: str, relation: Relation) -> duckdb.DuckDBPyConnection:
    """Run rendered SQL; a DuckDB error becomes a :class:`QueryError` (the message is kept)."""
    try:
        return con.execute(text)
    except duckdb.Error as err:
        where = relation if isinstance(relation, str) else "relation"
        raise QueryError(f"{where}: query failed: {err}") from err


def _to_document(row: Mapping[str, Any], schema: Schema, system_columns: bool) -> dict[str, Any]:
    if system_columns:
        return from_row(row, schema)
    return decode_variant(row[DATA_COLUMN])


def _value_expression(ref: Ref) -> exp.Expr | None:
    """The stored value of ``ref`` as something DuckDB can hand to Python (timestamps as UTC)."""
    if isinstance(ref, JsonRef):
        return sql.json_value(ref.doc(), ref.pointer)
    if not isinstance(ref, TypedRef):
        return None
    if DATE in ref.families:
        return _utc(ref.node())
    if DATE in ref.element_families:
        variable = sql.lambda_variable(1)
        return exp.Transform(this=ref.node(), expression=sql.lambda_(variable, _utc(variable.copy())))
    return ref.node()


def _decode_value(ref: Ref, value: Any) -> Any:
    if isinstance(ref, JsonRef):
        return decode_variant(value)
    if isinstance(value, list):
        return [to_utc(v) if isinstance(v, dt.datetime) else v for v in value]
    return to_utc(value) if isinstance(value, dt.datetime) else value


def _canonical(value: Any) -> str:
    def normalise(v: Any) -> Any:
        if isinstance(v, bool) or v is None or isinstance(v, str):
            return v
        if isinstance(v, (int, float)) and not (isinstance(v, float) and not math.isfinite(v)):
            return float(v)
        if isinstance(v, list):
            return [normalise(x) for x in v]
        if isinstance(v, dict):
            return {k: normalise(x) for k, x in v.items()}
        return v

    return json.dumps(to_jsonable(normalise(value)), sort_keys=True)


def _encode_document(doc: Any) -> str:
    """A ``find_in`` row's ``$data`` (non-objects such as ``None`` are kept; filters never match them)."""
    return encode_variant(doc)


# -- projection ------------------------------------------------------------------------


def _check_projection(project: Projection | None) -> None:
    if project is None:
        return
    if not isinstance(project, Mapping):
        raise FindOptionError("project", f"expected {{field: 1 | 0}}, found {project!r}")
    for key, flag in project.items():
        if flag not in (0, 1) or not isinstance(flag, (bool, int)):
            raise FindOptionError(f"project.{key}", f"expected 1, 0, true or false, found {flag!r}")


def apply_projection(doc: Any, project: Projection | None) -> Any:
    """ParqueDB ``applyProjection``: top-level keys only; no projection (or ``{}``) returns ``doc``.

    >>> apply_projection({"$id": "1", "a": 1, "b": 2}, {"a": 1})
    {'a': 1}
    >>> apply_projection({"$id": "1", "a": 1, "b": 2}, {"a": 0})
    {'$id': '1', 'b': 2}
    """
    if not project or not isinstance(doc, Mapping):
        return doc
    if any(bool(flag) for flag in project.values()):
        return {k: doc[k] for k, flag in project.items() if flag and k in doc}
    excluded = {k for k, flag in project.items() if not flag}
    return {k: v for k, v in doc.items() if k not in excluded}

