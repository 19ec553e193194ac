"""SQL building blocks: the only place identifiers and literals are made.

Every compiler in :mod:`parquedb_ibis.compile` builds sqlglot trees from the
helpers below and renders them once, with :func:`render`. Nothing here formats
SQL text by hand: a user value always becomes a literal node (strings are
quoted by sqlglot, a NUL character becomes ``CHR(0)``) and a user field name
always becomes a quoted identifier or a JSON-pointer *literal*, so no input can
change the shape of a statement.

Two conventions keep the trees stable under a parse round trip
(``parse_one(render(tree), read="duckdb") == tree``):

* JSON arrows (``->``, ``->>``) are always wrapped in parentheses, because the
  DuckDB generator parenthesises them inside other operators;
* negative numbers are ``-(literal)`` nodes, the way the parser reads them.

Variant values are addressed with RFC 6901 JSON pointers (``/a/0/b``). A pointer
segment that is a number indexes an array and names a key on an object, which
is exactly ParqueDB's path rule (``exceptions.0.name``), and keys need no
quoting beyond ``~0``/``~1``.

>>> render(column("age"))
'"age"'
>>> render(literal("it's"))
"'it''s'"
>>> json_pointer(["event", "request", "cf.colo"])
'/event/request/cf.colo'
>>> render(json_text(column("$data"), json_pointer(["a", "0"])))
'("$data" ->> \\'/a/0\\')'
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from sqlglot import exp

from parquedb_ibis.documents import encode_variant, format_datetime, to_utc

#: The sqlglot dialect every statement is rendered in.
DIALECT = "duckdb"

#: ``json_type`` names of JSON numbers (DuckDB parses big integers as DOUBLE).
JSON_NUMBER_TYPES: tuple[str, ...] = ("BIGINT", "UBIGINT", "DOUBLE")


# -- identifiers ---------------------------------------------------------------------


def identifier(name: str, *, quoted: bool = True) -> exp.Identifier:
    """A (quoted) identifier; quotes inside ``name`` are escaped by sqlglot."""
    return exp.Identifier(this=name, quoted=quoted)


def column(name: str, table: str | None = None) -> exp.Column:
    """A quoted column reference, optionally qualified: ``"t"."name"``.

    >>> render(column('we"ird'))
    '"we""ird"'
    """
    return exp.Column(this=identifier(name), table=identifier(table) if table else None)


def table(name: str, alias: str | None = None) -> exp.Table:
    """A quoted table reference; ``"db.table"`` names a table inside a schema.

    >>> render(table("main.users"))
    '"main"."users"'
    """
    *qualifiers, last = name.split(".")
    db = identifier(qualifiers[-1]) if qualifiers else None
    catalog = identifier(qualifiers[-2]) if len(qualifiers) > 1 else None
    node = exp.Table(this=identifier(last), db=db, catalog=catalog)
    if alias:
        node.set("alias", exp.TableAlias(this=identifier(alias)))
    return node


def lambda_variable(depth: int) -> exp.Identifier:
    """The parameter of the ``depth``-th nested list lambda (``_e1``, ``_e2``...)."""
    return exp.Identifier(this=f"_e{depth}", quoted=False)


def lambda_(variable: exp.Identifier, body: exp.Expr) -> exp.Lambda:
    """``LAMBDA v : body`` (a fresh copy of ``variable`` is used as the parameter)."""
    return exp.Lambda(this=body, expressions=[variable.copy()])


def bound_variable(depth: int) -> exp.Identifier:
    """The parameter of a value binding (:func:`bind`) at lambda depth ``depth`` (``_v0``...)."""
    return exp.Identifier(this=f"_v{depth}", quoted=False)


def bind(value: exp.Expr, variable: exp.Identifier, body: exp.Expr) -> exp.Expr:
    """``LIST_TRANSFORM([value], LAMBDA v : body)[1]``: ``body`` reads ``value`` computed once per row.

    DuckDB does not share common subexpressions inside a filter, so a predicate
    that asks several questions about one JSON path would otherwise parse the
    whole document once per question; bound, the document is parsed once and
    the questions run on the small extracted value.

    >>> v = bound_variable(0)
    >>> render(bind(json_value(column("$data"), "/a"), v, eq(json_type(v.copy()), literal("VARCHAR"))))
    'LIST_TRANSFORM([("$data" -> \\'/a\\')], LAMBDA _v0 : JSON_TYPE(_v0) = \\'VARCHAR\\')[1]'
    """
    transformed = exp.Transform(this=exp.Array(expressions=[value]), expression=lambda_(variable, body))
    return exp.Bracket(this=transformed, expressions=[exp.Literal.number(0)])  # sqlglot subscripts are 0-based


# -- literals ------------------------------------------------------------------------


def string(text: str) -> exp.Expr:
    """A string literal; NUL characters (which cannot appear in SQL text) become ``CHR(0)``.

    >>> render(string("a\\x00b"))
    "('a' || CHR(0) || 'b')"
    """
    if "\x00" not in text:
        return exp.Literal.string(text)
    parts: list[exp.Expr] = []
    for i, piece in enumerate(text.split("\x00")):
        if i:
            parts.append(exp.Chr(expressions=[exp.Literal.number(0)], charset=False))
        if piece:
            parts.append(exp.Literal.string(piece))
    node = parts[0]
    for part in parts[1:]:
        node = exp.DPipe(this=node, expression=part, safe=True)
    return exp.Paren(this=node)


def number(value: int | float) -> exp.Expr:
    """A numeric literal (``-x`` for negatives, ``CAST('Infinity' AS DOUBLE)`` for non-finite).

    >>> render(number(-2.5)), render(number(float("inf")))
    ('-2.5', "CAST('Infinity' AS DOUBLE)")
    """
    if isinstance(value, float) and not math.isfinite(value):
        text = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        return cast(exp.Literal.string(text), "DOUBLE")
    if value < 0 or (isinstance(value, float) and math.copysign(1.0, value) < 0):
        return exp.Neg(this=_unsigned_number(-value))
    return _unsigned_number(value)


def _unsigned_number(value: int | float) -> exp.Literal:
    """DuckDB reads ``0.1`` as ``DECIMAL``; beyond 15 digits the DECIMAL→DOUBLE cast can miss
    by one ulp, so long floats are written in exponent form, which DuckDB parses as ``DOUBLE``."""
    text = repr(value)
    if isinstance(value, float) and "e" not in text and len(text.replace(".", "").lstrip("0")) > 15:
        text = f"{value:.16e}"
    return exp.Literal.number(text)


def boolean(value: bool) -> exp.Boolean:
    return exp.Boolean(this=bool(value))


def null() -> exp.Null:
    return exp.Null()


def timestamp(value: dt.datetime) -> exp.Expr:
    """A ``TIMESTAMPTZ`` literal in UTC (naive datetimes are taken as UTC)."""
    return cast(exp.Literal.string(to_utc(value).isoformat()), "TIMESTAMPTZ")


def date(value: dt.date) -> exp.Expr:
    return cast(exp.Literal.string(value.isoformat()), "DATE")


def decimal(value: Decimal) -> exp.Expr:
    """A ``DECIMAL`` literal of exactly the digits given (``Decimal('12.30')`` → ``DECIMAL(4,2)``)."""
    sign, digits, exponent = value.as_tuple()
    scale = max(0, -int(exponent))
    precision = min(38, max(len(digits), scale + 1))
    return cast(exp.Literal.string(str(value)), f"DECIMAL({precision}, {scale})")


def literal(value: Any) -> exp.Expr:
    """The SQL literal for a Python value (user input never parses as SQL).

    ``None`` → ``NULL``; bool, int, float, str as themselves; ``datetime`` →
    ``TIMESTAMPTZ``; ``date`` → ``DATE``; ``Decimal`` → ``DECIMAL``; a list →
    a DuckDB list; anything else (dicts, bytes) → its variant JSON text.

    >>> render(literal([1, "a", None]))
    "[1, 'a', NULL]"
    """
    if value is None:
        return null()
    if isinstance(value, bool):
        return boolean(value)
    if isinstance(value, (int, float)):
        return number(value)
    if isinstance(value, str):
        return string(value)
    if isinstance(value, dt.datetime):
        return timestamp(value)
    if isinstance(value, dt.date):
        return date(value)
    if isinstance(value, Decimal):
        return decimal(value)
    if isinstance(value, (list, tuple)):
        return exp.Array(expressions=[literal(v) for v in value])
    return string(encode_variant(value))


def datetime_text(value: dt.datetime) -> str:
    """The text a stored ``{"$date": ...}`` tag holds for ``value`` (see documents.py)."""
    return format_datetime(value)


# -- types and functions -------------------------------------------------------------


def data_type(name: str) -> exp.DataType:
    """A DuckDB type node (parsed once per spelling, copied per use)."""
    return _parsed_type(name).copy()


@functools.lru_cache(maxsize=64)
def _parsed_type(name: str) -> exp.DataType:
    return exp.DataType.build(name, dialect=DIALECT)


def cast(node: exp.Expr, to: str) -> exp.Cast:
    return exp.Cast(this=node, to=data_type(to))


def try_cast(node: exp.Expr, to: str) -> exp.TryCast:
    return exp.TryCast(this=node, to=data_type(to), safe=True)


def func(name: str, *args: exp.Expr) -> exp.Expr:
    """A call to a DuckDB function sqlglot has no dedicated node for (``json_array_length``...)."""
    return exp.Anonymous(this=name, expressions=list(args))


def paren(node: exp.Expr) -> exp.Paren:
    return node if isinstance(node, exp.Paren) else exp.Paren(this=node)


# -- JSON (variant) access ---------------------------------------------------------------


def json_pointer(segments: Iterable[str]) -> str:
    """RFC 6901 pointer for path segments; ``[]`` is the whole value (``''``).

    >>> json_pointer(["a/b", "~c", ""])
    '/a~1b/~0c/'
    """
    return "".join("/" + s.replace("~", "~0").replace("/", "~1") for s in segments)


def _pointer_args(doc: exp.Expr, pointer: str) -> dict[str, exp.Expr]:
    return {"this": doc, "expression": string(pointer)} if pointer else {"this": doc}


def json_type(doc: exp.Expr, pointer: str = "") -> exp.Expr:
    """``json_type(doc, pointer)``: ``'NULL'`` for a JSON null, SQL NULL for a missing key."""
    return exp.JSONType(**_pointer_args(doc, pointer))


def json_value(doc: exp.Expr, pointer: str = "") -> exp.Expr:
    """``(doc -> pointer)``: the JSON value at ``pointer`` (SQL NULL when missing)."""
    if not pointer:
        return doc
    return paren(exp.JSONExtract(this=doc, expression=string(pointer), only_json_types=False))


def json_text(doc: exp.Expr, pointer: str = "") -> exp.Expr:
    """``(doc ->> pointer)``: the value as text (a JSON string without its quotes)."""
    path: exp.Expr = string(pointer) if pointer else exp.JSONPath(expressions=[exp.JSONPathRoot()])
    return paren(exp.JSONExtractScalar(this=doc, expression=path, only_json_types=False, scalar_only=False))


def json_keys(doc: exp.Expr, pointer: str = "") -> exp.Expr:
    return exp.JSONKeys(**_pointer_args(doc, pointer))


def json_array_length(doc: exp.Expr, pointer: str = "") -> exp.Expr:
    """Length of the JSON array at ``pointer`` (0 for non-arrays: guard with :func:`json_type`)."""
    args = [doc, string(pointer)] if pointer else [doc]
    return func("json_array_length", *args)


def json_array(doc: exp.Expr, pointer: str = "") -> exp.Expr:
    """The JSON array at ``pointer`` as a DuckDB ``JSON[]`` list (NULL for non-arrays)."""
    return try_cast(json_value(doc, pointer), "JSON[]")


def json_literal(value: Any) -> exp.Expr:
    """A constant variant value: its JSON text cast to ``JSON``."""
    return cast(string(encode_variant(value)), "JSON")


# -- conditions ----------------------------------------------------------------------



def is_true(node: exp.Expr) -> bool:
    return isinstance(node, exp.Boolean) and node.this is True


def is_false(node: exp.Expr) -> bool:
    return isinstance(node, exp.Boolean) and node.this is False


def true() -> exp.Boolean:
    return exp.Boolean(this=True)


def false() -> exp.Boolean:
    return exp.Boolean(this=False)


def and_(*conditions: exp.Expr) -> exp.Expr:
    """Conjunction with constant folding (``TRUE`` operands vanish, one ``FALSE`` wins)."""
    kept: list[exp.Expr] = []
    for cond in _flatten(conditions, exp.And):
        if is_false(cond):
            return false()
        if not is_true(cond):
            kept.append(cond)
    if len(kept) > 1:
        kept = [paren(c) if isinstance(c, exp.Or) else c for c in kept]
    return _chain(exp.And, kept) if kept else true()


def or_(*conditions: exp.Expr) -> exp.Expr:
    """Disjunction with constant folding (``FALSE`` operands vanish, one ``TRUE`` wins)."""
    kept: list[exp.Expr] = []
    for cond in _flatten(conditions, exp.Or):
        if is_true(cond):
            return true()
        if not is_false(cond):
            kept.append(cond)
    return _chain(exp.Or, kept) if kept else false()


def distinct(conditions: Iterable[exp.Expr]) -> list[exp.Expr]:
    """The conditions without structural duplicates (for ``or_``/``and_`` of generated alternatives)."""
    kept: list[exp.Expr] = []
    for cond in conditions:
        if cond not in kept:
            kept.append(cond)
    return kept


def _flatten(conditions: Iterable[exp.Expr], kind: type[exp.Connector]) -> Iterable[exp.Expr]:
    """Operands of nested ``kind`` nodes, left to right (the parser builds left-deep chains)."""
    for cond in conditions:
        if isinstance(cond, kind):
            yield from _flatten((cond.this, cond.expression), kind)
        else:
            yield cond


def _chain(kind: type[exp.Connector], operands: list[exp.Expr]) -> exp.Expr:
    node = operands[0]
    for operand in operands[1:]:
        node = kind(this=node, expression=operand)
    return node


def not_(condition: exp.Expr) -> exp.Expr:
    """Two-valued NOT: ``NOT COALESCE(cond, FALSE)``, so an unknown (NULL) becomes true.

    SQL's ``NOT NULL`` is NULL and would drop the row; ParqueDB's "not matched"
    is a match. Conditions that are never NULL (``IS [NOT] NULL``, constants)
    skip the ``COALESCE``. (``IS DISTINCT FROM`` would be shorter for ``$ne``,
    but DuckDB 1.5 cannot push it into Arrow scans.)

    >>> render(not_(exp.EQ(this=column("a"), expression=literal(0))))
    'NOT COALESCE("a" = 0, FALSE)'
    """
    if is_true(condition):
        return false()
    if is_false(condition):
        return true()
    if isinstance(condition, exp.Not) and _never_null(condition.this):
        inner = condition.this
        return inner.this if isinstance(inner, exp.Paren) else inner
    if _never_null(condition):
        return exp.Not(this=paren(condition) if isinstance(condition, exp.Connector) else condition)
    return exp.Not(this=exp.Coalesce(this=condition, expressions=[false()]))


def _never_null(node: exp.Expr) -> bool:
    if isinstance(node, exp.Paren):
        return _never_null(node.this)
    if isinstance(node, (exp.Is, exp.Boolean)):
        return True
    if isinstance(node, exp.Not):
        return _never_null(node.this)
    if isinstance(node, exp.Coalesce):
        return any(isinstance(e, exp.Boolean) for e in node.expressions)
    if isinstance(node, exp.Connector):
        return _never_null(node.this) and _never_null(node.expression)
    return False


def coalesce_false(condition: exp.Expr) -> exp.Expr:
    """``COALESCE(cond, FALSE)``: the condition with NULL read as false."""
    if _never_null(condition):
        return condition
    return exp.Coalesce(this=condition, expressions=[false()])


def is_null(node: exp.Expr) -> exp.Expr:
    return exp.Is(this=node, expression=exp.Null())


def is_not_null(node: exp.Expr) -> exp.Expr:
    return exp.Not(this=is_null(node))


def eq(left: exp.Expr, right: exp.Expr) -> exp.Expr:
    return exp.EQ(this=left, expression=right)


def in_(node: exp.Expr, values: Sequence[exp.Expr]) -> exp.Expr:
    """``node = v`` for one value, ``node IN (...)`` for several, ``FALSE`` for none."""
    if not values:
        return false()
    if len(values) == 1:
        return eq(node, values[0])
    return exp.In(this=node, expressions=list(values))


#: Comparison operator name -> sqlglot node class.
COMPARISONS: dict[str, type[exp.Binary]] = {
    "eq": exp.EQ,
    "gt": exp.GT,
    "gte": exp.GTE,
    "lt": exp.LT,
    "lte": exp.LTE,
}


def compare(op: str, left: exp.Expr, right: exp.Expr) -> exp.Expr:
    """``left <op> right`` for ``op`` in :data:`COMPARISONS`."""
    return COMPARISONS[op](this=left, expression=right)


# -- rendering -----------------------------------------------------------------------


def render(node: exp.Expr, *, pretty: bool = False) -> str:
    """Render a tree as DuckDB SQL."""
    return node.sql(dialect=DIALECT, pretty=pretty)
