"""ParqueDB filters, variant paths and view definitions as ibis expressions.

These helpers build expressions for tables of the ``parquedb`` ibis backend
(:mod:`parquedb_ibis.backend`):

* :func:`mongo` turns a Mongo-style filter document into a boolean ibis
  expression. The filter is compiled by
  :func:`~parquedb_ibis.compile.filters.compile_filter`, the same compiler
  ``collection.find`` uses, so the rows it keeps are exactly the rows
  ``find`` returns (null/missing, type-family and array semantics included).
  The condition is a :class:`MongoCondition` node whose arguments are the
  table columns it reads, so it composes like any ibis predicate: in
  ``filter``, ``mutate``, aggregate ``where=``, after joins and projections.
* :func:`field` reads a dotted path (``"event.response.status"``) from a
  variant (JSON) column or from ``$data`` as a typed value, and
  :func:`unpack` adds several such paths as columns.
* :func:`view_to_ibis` evaluates a view definition live (not its
  materialized files) as an ibis table.

How a table's columns map onto the stored layout the filter compiler knows:
system columns (``$id``, ``createdAt``...) keep their meaning; every other
column counts as a declared field of the type its ibis dtype names
(struct, map and other nested types are compared as variants through
``to_json``); ``$data`` holds every undeclared field. A table without
``$data`` (a projection, most views) has no undeclared fields: a path that
is not a column is *missing*, as in ``view.find``. A system column the table
lacks is null.

The two node types compile only in the ``parquedb`` backend (its compiler
knows them); running them elsewhere raises ibis' ``OperationNotDefinedError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.operations as ops
import ibis.expr.rules as rlz
import ibis.expr.types as ir
from ibis.common.annotations import attribute
from ibis.common.deferred import Call, Deferred
from ibis.common.typing import VarTuple  # noqa: TC002 - ibis reads the annotation at runtime
from sqlglot import exp

from parquedb_ibis.compile import sql
from parquedb_ibis.compile.filters import Filter, compile_filter
from parquedb_ibis.documents import DATA_COLUMN
from parquedb_ibis.errors import ValidationError, did_you_mean
from parquedb_ibis.schema import SYSTEM_COLUMN_TYPES, Schema

__all__ = ["MongoCondition", "VariantValue", "field", "layout_of", "mongo", "unpack", "view_to_ibis"]

#: ``to_json`` text of a column whose type the filter compiler has no family for (structs, maps...).
_AS_VARIANT = "to_json"


# -- nodes -----------------------------------------------------------------------------------


class MongoCondition(ops.Value):
    """A compiled filter: a DuckDB boolean over the quoted column names in ``names``.

    ``columns[i]`` is the table column ``names[i]`` stands for; the backend's
    compiler substitutes each compiled (qualified) column for its name, so
    the condition follows the table through ibis' rewrites.
    """

    columns: VarTuple[ops.Value]
    names: VarTuple[str]
    condition: str

    dtype = dt.boolean
    shape = rlz.shape_like("columns")


class VariantValue(ops.Value):
    """The value at ``path`` inside the JSON column ``arg``, as ``to`` (NULL when absent or not convertible).

    Tagged values are read through their tag: ``{"$date": ...}`` for
    timestamps, ``{"$dateonly": ...}`` for dates, ``{"$decimal": ...}`` for
    decimals and ``{"$number": "Infinity"}`` for floats.
    """

    arg: ops.Value
    path: VarTuple[str]
    to: dt.DataType

    shape = rlz.shape_like("arg")

    @attribute
    def dtype(self) -> dt.DataType:
        return self.to


# -- mongo() ---------------------------------------------------------------------------------


def mongo(filter: Filter | None, table: ir.Table | None = None) -> Deferred | ir.BooleanValue:
    """A Mongo-style filter as an ibis boolean (``find`` semantics, see docs/filters.md).

    Without ``table`` the result is deferred and binds to the table it is used
    on::

        t.filter(mongo({"status": {"$gte": 500}, "user.country": "DE"}))
        t.group_by("kind").aggregate(errors=t.count(where=mongo({"status": {"$gte": 500}}, t)))

    The document is checked at once (unknown operators and malformed operands
    raise :class:`~parquedb_ibis.errors.FilterError`).
    """
    compile_filter(filter)  # fail early on malformed documents, before any table is known
    if table is not None:
        return _condition(table, filter)
    return Deferred(Call(partial(_condition, filter=filter), ibis._), repr=f"mongo({filter!r})")


def layout_of(schema: ibis.Schema) -> tuple[Schema, frozenset[str]]:
    """The stored layout a table's columns stand for: declared fields, and the columns read through ``to_json``.

    System columns and ``$data`` are not declared (the compiler knows them);
    neither are other ``$`` names or dotted names, which no filter path can
    address.
    """
    declared: dict[str, str] = {}
    as_variant: set[str] = set()
    for name, dtype in schema.items():
        if name in SYSTEM_COLUMN_TYPES or name.startswith("$") or "." in name or not name:
            continue
        declaration = _declaration(dtype)
        if declaration is None:
            declaration = "variant"
            as_variant.add(name)
        declared[name] = declaration
    return Schema.parse(declared), frozenset(as_variant)


def _declaration(dtype: dt.DataType) -> str | None:
    """The ParqueDB type string a column of ``dtype`` compares as (None: only as a variant)."""
    if dtype.is_json():
        return "variant"
    if dtype.is_string():
        return "string"
    if dtype.is_boolean():
        return "boolean"
    if dtype.is_integer():
        return "int"
    if dtype.is_floating():
        return "float"
    if dtype.is_decimal():
        precision, scale = dtype.precision, dtype.scale
        if precision is not None and scale is not None and 1 <= precision <= 38 and 0 <= scale <= precision:
            return f"decimal({precision},{scale})"
        return "float"
    if dtype.is_timestamp():
        return "timestamp"
    if dtype.is_date():
        return "date"
    if dtype.is_array():
        inner = _declaration(dtype.value_type)
        if inner is not None and not dtype.value_type.is_json() and not dtype.value_type.is_array():
            return f"{inner}[]"
    return None


def _condition(table: ir.Table, filter: Filter | None) -> ir.BooleanValue:
    layout, as_variant = layout_of(table.schema())
    condition = compile_filter(filter, layout)
    if sql.is_true(condition) or sql.is_false(condition):
        return ibis.literal(sql.is_true(condition))
    present = table.columns
    for column in list(condition.find_all(exp.Column)):
        if column.table:
            continue
        name = column.name
        if name not in present:
            column.replace(_absent_column(name))
        elif name in as_variant:
            column.replace(exp.Anonymous(this=_AS_VARIANT, expressions=[column.copy()]))
    names = tuple(sorted({c.name for c in condition.find_all(exp.Column) if not c.table and c.name in present}))
    # a condition that reads no column (every name it uses is absent) still needs a column to give it a shape
    anchors = names or (present[0],)
    return MongoCondition(tuple(table[n] for n in anchors), names, sql.render(condition)).to_expr()


def _absent_column(name: str) -> exp.Expr:
    """What a stored-layout column a table lacks reads as: no undeclared fields, null system fields."""
    if name == DATA_COLUMN:
        return sql.string("{}")
    if name in SYSTEM_COLUMN_TYPES:
        return sql.cast(sql.null(), SYSTEM_COLUMN_TYPES[name])
    return sql.null()


# -- field() / unpack() ------------------------------------------------------------------------

#: A field spec for :func:`unpack`: a dotted path, or ``(path, type)``.
FieldSpec = str | tuple[str, Any]


def field(path: str, type: Any = None, table: ir.Table | None = None) -> Deferred | ir.Value:
    """The value at a dotted ``path``, typed as ``type`` (an ibis type or its name).

    The first segment names a column; the rest walks into it: into a variant
    (JSON) column with a JSON path, into a struct by field and a list by
    index. A first segment that is not a column is an undeclared field, read
    from ``$data`` (like the filters and the SQL dialect do). Without
    ``type`` a variant path stays JSON. Values that do not convert are NULL
    (``TRY_CAST``), as in the dialect::

        t.filter(field("event.response.status", "int64") >= 500)
        t.group_by(colo=field("event.request.cf.colo", "string")).aggregate(n=ibis._.count())

    Without ``table`` the result is deferred and binds to the table it is used on.
    """
    if not isinstance(path, str) or not path or any(not s for s in path.split(".")):
        raise ValidationError(f"field {path!r}", "expected a dotted path such as 'event.response.status'")
    to = dt.dtype(type) if type is not None else None
    if to is not None and to.is_timestamp() and to.timezone is None:
        to = dt.Timestamp(timezone="UTC", scale=to.scale, nullable=to.nullable)  # ParqueDB times are UTC instants
    if table is not None:
        return _field(table, path, to)
    return Deferred(Call(partial(_field, path=path, to=to), ibis._), repr=f"field({path!r})")


def unpack(table: ir.Table, fields: Mapping[str, FieldSpec]) -> ir.Table:
    """``table`` with one more column per entry of ``fields``: ``{name: path}`` or ``{name: (path, type)}``.

    >>> # con.table("TailEvents").pipe(unpack, {"status": ("event.response.status", "int64")})
    """
    columns = {}
    for name, spec in fields.items():
        path, type = (spec, None) if isinstance(spec, str) else spec
        columns[name] = field(path, type, table=table)
    return table.mutate(**columns)


def _field(table: ir.Table, path: str, to: dt.DataType | None) -> ir.Value:
    head, *rest = path.split(".")
    if head not in table.columns:
        if DATA_COLUMN not in table.columns:
            known = [c for c in table.columns if not c.startswith("$")]
            raise ValidationError(
                f"field {path!r}",
                f"no column {head!r} and no {DATA_COLUMN!r} column to read undeclared fields from"
                f"{did_you_mean(head, known)} (columns: {', '.join(known)})",
            )
        return _variant(table[DATA_COLUMN], [head, *rest], to)
    value: ir.Value = table[head]
    walked = [head]
    while rest:
        dtype = value.type()
        if dtype.is_json():
            return _variant(value, rest, to)
        segment = rest.pop(0)
        if dtype.is_struct() and segment in dtype.names:
            value = value[segment]
        elif dtype.is_map():
            value = value.get(segment)
        elif dtype.is_array() and segment.isdigit():
            value = value[int(segment)]
        else:
            raise ValidationError(
                f"field {path!r}", f"{'.'.join(walked)!r} has type {dtype}; it has no field {segment!r}"
            )
        walked.append(segment)
    if to is None or value.type() == to:
        return value
    return value.try_cast(to)


def _variant(column: ir.Value, path: list[str], to: dt.DataType | None) -> ir.Value:
    return VariantValue(column, tuple(path), to if to is not None else dt.json).to_expr()


# -- views -------------------------------------------------------------------------------------


def view_to_ibis(con: ibis.BaseBackend, view: str | Mapping[str, Any], *, name: str = "adhoc") -> ir.Table:
    """A view definition evaluated live over its sources, as an ibis table.

    ``view`` is the name of a defined view or a definition (``{"$from": ...}``)
    that need not be defined yet (``name`` labels it in error messages). The
    result has the view's visible columns and composes like any table. A
    collection source is read through its ``parquedb`` table, so it is
    current when the expression runs; a source *view* is read as
    materialized when this is called. Compare ``con.table(view)``, which
    reads the view's materialized rows. ``con`` is a ``parquedb`` backend
    (``ibis.parquedb.connect(...)``).
    """
    view_expr = getattr(con, "view_expr", None)
    if view_expr is None:
        raise ValidationError("view_to_ibis", f"expected a parquedb ibis backend, found {type(con).__name__}")
    return view_expr(view, name=name)
