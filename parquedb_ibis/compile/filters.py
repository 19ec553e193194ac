"""Compile ParqueDB filter documents (Mongo-style) into sqlglot conditions.

The compiler is pure: it maps a filter document to a boolean ``sqlglot`` tree
and never touches a connection. Rendering to text happens in :func:`to_sql`
(and :func:`parquedb_ibis.compile.sql.render`). The semantics are ParqueDB's
canonical matcher (``src/query/filter.ts``), written down with every deviation
in ``docs/semantics.md``; ``docs/filters.md`` is the user reference.

A filter addresses *paths* (``"age"``, ``"event.request.cf.colo"``,
``"exceptions.0.name"``). Where a path lives depends on the stored layout:

* ``system_columns=True`` (a collection): the system fields and the fields the
  :class:`~parquedb_ibis.schema.Schema` declares are typed columns, every other
  field is inside the variant column ``$data`` (JSON text);
* ``system_columns=False`` (``find_in`` over arbitrary documents): the whole
  document is ``$data``; a null (or primitive) document matches only the
  empty filter.

A path resolves to a :class:`Ref` that knows how to ask its column the few
questions operators need (does it exist, is it null, what is it as a number,
...). Operators are rows of three tables, one per operator language:
:data:`LOGICAL_OPERATORS` (top level), :data:`FIELD_OPERATORS` (inside
``{field: {...}}``) and :data:`EXPR_OPERATORS` (inside ``$expr``). No other
code compares operator names.

Negation is two-valued (``NOT COALESCE(cond, FALSE)``): SQL's unknown never
drops a row that ParqueDB would match.

>>> to_sql({"age": {"$gte": 18}, "status": "active"}, {"age": "int", "status": "string"})
'"age" >= 18 AND "status" = \\'active\\''
>>> to_sql({"tags": {"$size": 2}}, system_columns=False)
'JSON_TYPE("$data") IN (\\'OBJECT\\', \\'ARRAY\\') AND LIST_TRANSFORM([("$data" -> \\'/tags\\')], LAMBDA _v0 : JSON_TYPE(_v0) = \\'ARRAY\\' AND JSON_ARRAY_LENGTH(_v0) = 2)[1]'
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from functools import partial
from typing import Any

from sqlglot import exp

from parquedb_ibis.compile import sql
from parquedb_ibis.documents import (
    ABSENT_KEY,
    BINARY_TAG,
    DATA_COLUMN,
    DATE_TAG,
    DATEONLY_TAG,
    DECIMAL_TAG,
    NUMBER_TAG,
    TAGS,
)
from parquedb_ibis.errors import FilterError, UnknownOperatorError, UnsupportedOperatorError
from parquedb_ibis.schema import SYSTEM_COLUMN_TYPES, FieldType, Schema

Filter = Mapping[str, Any]

# -- value families ------------------------------------------------------------------
#
# Every stored value and every operand belongs to one family. Comparisons only
# happen inside a family (1 == 1.0, but 1 != "1"); across families equality is
# false and ordering is false (upstream compares String(a).localeCompare(String(b))).

NULL = "null"
BOOLEAN = "boolean"
NUMBER = "number"  # int/float, and the {"$number": "Infinity"|"-Infinity"|"NaN"} tag
DECIMAL = "decimal"  # Decimal, stored as {"$decimal": "12.30"} in variant paths
STRING = "string"
DATE = "date"  # datetime, stored as {"$date": "...Z"}
DATEONLY = "dateonly"  # datetime.date, stored as {"$dateonly": "2024-01-02"}
BINARY = "binary"  # bytes, stored as {"$binary": "<base64>"}
ARRAY = "array"
OBJECT = "object"

#: SQL type each scalar family compares as.
SCALAR_SQL_TYPES: dict[str, str] = {
    BOOLEAN: "BOOLEAN",
    NUMBER: "DOUBLE",
    DECIMAL: "DOUBLE",
    STRING: "VARCHAR",
    DATE: "TIMESTAMPTZ",
    DATEONLY: "DATE",
    BINARY: "VARCHAR",
}

#: Families with an order (``$gt``...), in the order mixed-type sorts place them.
ORDERED_FAMILIES: tuple[str, ...] = (NUMBER, DECIMAL, STRING, DATE, DATEONLY, BOOLEAN)

#: The variant tag of each tagged family (see documents.py).
FAMILY_TAGS: dict[str, str] = {
    NUMBER: NUMBER_TAG,
    DECIMAL: DECIMAL_TAG,
    DATE: DATE_TAG,
    DATEONLY: DATEONLY_TAG,
    BINARY: BINARY_TAG,
}

#: DuckDB ``json_type`` name of the untagged JSON families.
JSON_TYPE_NAMES: dict[str, str] = {NULL: "NULL", BOOLEAN: "BOOLEAN", STRING: "VARCHAR", ARRAY: "ARRAY"}

#: ``$type`` operand -> the families it matches (ParqueDB's getValueType tags).
TYPE_TAGS: dict[str, tuple[str, ...]] = {
    "null": (NULL,),
    "boolean": (BOOLEAN,),
    "number": (NUMBER, DECIMAL),
    "string": (STRING,),
    "date": (DATE, DATEONLY),
    "array": (ARRAY,),
    "object": (OBJECT, BINARY),
}

#: Top-level keys that start with ``$`` but are field names, not operators (filter.ts:201).
DOLLAR_FIELDS: frozenset[str] = frozenset(
    {"$id", "$type", "$context", "$version", "$createdAt", "$createdBy", "$updatedAt", "$updatedBy"}
)

#: Family of each kind of typed column (schema.FieldType.kind and the system columns).
COLUMN_FAMILIES: dict[str, frozenset[str]] = {
    "string": frozenset({STRING}),
    "relation": frozenset({STRING}),
    "int": frozenset({NUMBER, DECIMAL}),
    "float": frozenset({NUMBER, DECIMAL}),
    "decimal": frozenset({NUMBER, DECIMAL}),
    "boolean": frozenset({BOOLEAN}),
    "timestamp": frozenset({DATE}),
    "date": frozenset({DATEONLY}),
}

_SYSTEM_KINDS: dict[str, str] = {"VARCHAR": "string", "TIMESTAMPTZ": "timestamp", "BIGINT": "int"}


def family_of(value: Any, path: str) -> str:
    """The family of a Python operand; raises :class:`FilterError` for values a filter cannot hold."""
    if value is None:
        return NULL
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, (int, float)):
        return NUMBER
    if isinstance(value, str):
        return STRING
    if isinstance(value, dt.datetime):
        return DATE
    if isinstance(value, dt.date):
        return DATEONLY
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise FilterError(path, f"expected a finite Decimal, found {value!r}; use float('nan') or float('inf')")
        return DECIMAL
    if isinstance(value, (bytes, bytearray, memoryview)):
        return BINARY
    if isinstance(value, (list, tuple)):
        return ARRAY
    if isinstance(value, Mapping):
        return OBJECT
    if isinstance(value, re.Pattern):
        raise FilterError(path, "a regular expression is only allowed as the operand of '$regex'")
    raise FilterError(path, f"cannot compare with a value of type {type(value).__name__}: {value!r}")


def scalar_literal(family: str, value: Any) -> exp.Expr:
    """The SQL literal of a scalar operand, typed like its family compares."""
    if family == DATE:
        return sql.timestamp(value)
    if family == DATEONLY:
        return sql.date(value)
    if family == BINARY:
        return sql.string(base64.b64encode(bytes(value)).decode("ascii"))
    if family == DECIMAL:
        return sql.decimal(value)
    return sql.literal(value)


# -- references: where a path's value lives and how to ask about it -----------------------


@dataclass(frozen=True)
class Scalar:
    """A value as one SQL scalar family: ``guard AND <value> op literal`` (no guard: always safe)."""

    guard: exp.Expr | None
    value: exp.Expr

    def test(self, condition: Callable[[exp.Expr], exp.Expr]) -> exp.Expr:
        cond = condition(self.value)
        return sql.and_(self.guard, cond) if self.guard is not None else cond


class Ref:
    """A value addressed by a path. Every method returns a fresh tree.

    ``None`` from :meth:`scalar`/:meth:`value` means "can never be of that
    family" and lets operators fold to ``FALSE`` at compile time.
    """

    may_be_nan: bool = False

    def exists(self) -> exp.Expr:
        """Present (a stored null counts as present)."""
        raise NotImplementedError

    def missing(self) -> exp.Expr:
        """Absent (the exact negation of :meth:`exists`)."""
        raise NotImplementedError

    def nullish(self) -> exp.Expr:
        """Missing or null (ParqueDB's ``== null``)."""
        raise NotImplementedError

    def has_family(self, family: str) -> exp.Expr:
        """Present and of ``family`` (``NULL``: a stored null)."""
        raise NotImplementedError

    def scalar(self, family: str) -> Scalar | None:
        """The value as a SQL scalar of ``family`` (guarded), or ``None`` if it never is one."""
        raise NotImplementedError

    def special_number(self) -> Scalar | None:
        """The text of a ``{"$number": ...}`` tag (``'Infinity'``...), if this ref can hold one."""
        return None

    def special_number_in(self, texts: list[str]) -> exp.Expr | None:
        """Holds a ``{"$number": t}`` tag with ``t`` in ``texts`` (``None``: never holds a tag)."""
        special = self.special_number()
        if special is None:
            return None
        return special.test(lambda v: sql.in_(v, [sql.string(t) for t in texts]))

    def value(self, family: str) -> exp.Expr | None:
        """One nullable expression: the value as ``family``, NULL otherwise (for ref-to-ref and sorting)."""
        scalar = self.scalar(family)
        if scalar is None:
            return None
        if scalar.guard is None:
            return scalar.value
        return exp.Case(ifs=[exp.If(this=scalar.guard, true=scalar.value)])

    def composite_text(self) -> exp.Expr | None:
        """JSON text of an array or object value (``$expr`` field-to-field equality, sorting)."""
        return None

    def length(self) -> exp.Expr | None:
        """Array length; only meaningful under ``has_family(ARRAY)``."""
        return None

    def key_count(self) -> exp.Expr | None:
        """Number of keys of an object; only meaningful under ``has_family(OBJECT)``."""
        return None

    def child(self, segment: str) -> Ref:
        """The value one path segment further (an index on arrays, a key on objects)."""
        raise NotImplementedError

    def elements(self, depth: int) -> tuple[exp.Expr, Ref] | None:
        """``(list, element ref)`` for list lambdas, or ``None`` when this is never an array."""
        return None

    def path(self, path: str) -> Ref:
        """The ref of a dotted sub-path (``$elemMatch`` filters address fields of elements)."""
        ref = self
        for segment in path.split("."):
            ref = ref.child(segment)
        return ref


class _Missing(Ref):
    """A path that can never hold a value (a sub-path of a typed scalar column)."""

    def exists(self) -> exp.Expr:
        return sql.false()

    def missing(self) -> exp.Expr:
        return sql.true()

    def nullish(self) -> exp.Expr:
        return sql.true()

    def has_family(self, family: str) -> exp.Expr:
        return sql.false()

    def scalar(self, family: str) -> Scalar | None:
        return None

    def child(self, segment: str) -> Ref:
        return self


MISSING = _Missing()

_NUMBER_TYPES = tuple(sql.JSON_NUMBER_TYPES)


@dataclass(frozen=True)
class JsonRef(Ref):
    """A value inside a JSON (variant) column, addressed by a JSON pointer.

    SQL NULL from ``json_type`` means missing; the string ``'NULL'`` a stored null.
    Tagged values (dates, decimals, special numbers, bytes) are one-key objects.
    An ``element`` ref is a list lambda's variable: it always exists, and DuckDB
    turns a JSON null element into SQL NULL.
    """

    doc: Callable[[], exp.Expr]  # builds the JSON document node (a column, a lambda variable...)
    segments: tuple[str, ...] = ()
    element: bool = False
    minified: bool = False  # the document is DuckDB's own (minified) JSON text, as ``doc -> pointer`` returns

    @property
    def pointer(self) -> str:
        return sql.json_pointer(self.segments)

    def _doc(self) -> exp.Expr:
        return self.doc()

    def _type(self) -> exp.Expr:
        return sql.json_type(self._doc(), self.pointer)

    def _type_is(self, *names: str) -> exp.Expr:
        return sql.in_(self._type(), [sql.string(n) for n in names])

    def _keys_are(self, tag: str) -> exp.Expr:
        return sql.eq(sql.json_keys(self._doc(), self.pointer), exp.Array(expressions=[sql.string(tag)]))

    def _tag_text(self, tag: str) -> exp.Expr:
        return sql.json_text(self._doc(), sql.json_pointer((*self.segments, tag)))

    def _is_element(self) -> bool:
        return self.element and not self.segments

    def exists(self) -> exp.Expr:
        return sql.true() if self._is_element() else sql.is_not_null(self._type())

    def missing(self) -> exp.Expr:
        return sql.false() if self._is_element() else sql.is_null(self._type())

    def nullish(self) -> exp.Expr:
        return sql.eq(exp.Coalesce(this=self._type(), expressions=[sql.string("NULL")]), sql.string("NULL"))

    def has_family(self, family: str) -> exp.Expr:
        if family == NULL and self._is_element():
            return self.nullish()
        if family in JSON_TYPE_NAMES:
            return self._type_is(JSON_TYPE_NAMES[family])
        if family == NUMBER:
            return sql.or_(self._type_is(*_NUMBER_TYPES), self._keys_are(NUMBER_TAG))
        if family == OBJECT:
            tags = [exp.Array(expressions=[sql.string(t)]) for t in TAGS]
            tagged = exp.In(this=sql.json_keys(self._doc(), self.pointer), expressions=tags)
            return sql.and_(self._type_is("OBJECT"), exp.Not(this=tagged))
        return self._keys_are(FAMILY_TAGS[family])

    def scalar(self, family: str) -> Scalar | None:
        if family == STRING:
            return Scalar(self._type_is("VARCHAR"), sql.json_text(self._doc(), self.pointer))
        if family == NUMBER:
            return Scalar(self._type_is(*_NUMBER_TYPES), sql.try_cast(sql.json_value(self._doc(), self.pointer), "DOUBLE"))
        if family == BOOLEAN:
            return Scalar(self._type_is("BOOLEAN"), sql.try_cast(sql.json_value(self._doc(), self.pointer), "BOOLEAN"))
        if family in (DATE, DATEONLY, DECIMAL):
            tag = FAMILY_TAGS[family]
            return Scalar(self._keys_are(tag), sql.try_cast(self._tag_text(tag), SCALAR_SQL_TYPES[family]))
        if family == BINARY:
            return Scalar(self._keys_are(BINARY_TAG), self._tag_text(BINARY_TAG))
        return None

    def special_number(self) -> Scalar | None:
        return Scalar(self._keys_are(NUMBER_TAG), self._tag_text(NUMBER_TAG))

    def special_number_in(self, texts: list[str]) -> exp.Expr | None:
        if not (self.minified and not self.segments):
            return super().special_number_in(texts)
        # DuckDB writes an extracted value minified, so a tag is one exact text (no parse per row)
        tagged = [sql.string(json.dumps({NUMBER_TAG: t}, separators=(",", ":"))) for t in texts]
        return sql.in_(sql.cast(self._doc(), "VARCHAR"), tagged)

    def value(self, family: str) -> exp.Expr | None:
        if family != NUMBER:
            return super().value(family)
        plain = self.scalar(NUMBER)
        assert plain is not None and plain.guard is not None
        special = sql.try_cast(self._tag_text(NUMBER_TAG), "DOUBLE")
        not_nan = exp.Nullif(this=special, expression=sql.number(math.nan))
        return exp.Case(
            ifs=[exp.If(this=plain.guard, true=plain.value), exp.If(this=self._keys_are(NUMBER_TAG), true=not_nan)]
        )

    def composite_text(self) -> exp.Expr | None:
        text = sql.cast(sql.json_value(self._doc(), self.pointer), "VARCHAR")
        return exp.Case(ifs=[exp.If(this=self._type_is("ARRAY", "OBJECT"), true=text)])

    def length(self) -> exp.Expr | None:
        return sql.json_array_length(self._doc(), self.pointer)

    def key_count(self) -> exp.Expr | None:
        return exp.Length(this=sql.json_keys(self._doc(), self.pointer))

    def child(self, segment: str) -> Ref:
        return JsonRef(self.doc, (*self.segments, segment))

    def binding(self, depth: int) -> tuple[Callable[[], exp.Expr], exp.Identifier, JsonRef, Callable[[], int]] | None:
        """``(extraction, variable, ref, uses)`` to read this path once per row (see :func:`sql.bind`).

        Only for a path inside a column: the extracted value (SQL NULL when
        missing, JSON ``null`` when null) is a document of its own, so the
        returned ref asks the same questions of it with an empty pointer.
        ``uses()`` counts the variable nodes built so far.
        """
        if not self.segments or self.element or not (isinstance(self.doc, partial) and self.doc.func is sql.column):
            return None
        variable = sql.bound_variable(depth)
        built = []

        def use() -> exp.Expr:
            built.append(None)
            return variable.copy()

        bound = JsonRef(use, minified=True)
        return partial(sql.json_value, self._doc(), self.pointer), variable, bound, built.__len__

    def elements(self, depth: int) -> tuple[exp.Expr, Ref] | None:
        return sql.json_array(self._doc(), self.pointer), JsonRef(partial(sql.lambda_variable, depth), element=True)


@dataclass(frozen=True)
class TypedRef(Ref):
    """A value in a typed column (system field, declared field, or an element of a typed list).

    NULL means null *or* missing; a declared field's ``$data.$absent`` list
    tells the two apart (system fields and list elements are never stored null).
    """

    node: Callable[[], exp.Expr]  # builds the column (or list element) node
    families: frozenset[str]
    element_families: frozenset[str] = frozenset()
    absent_name: str | None = None
    may_be_nan: bool = False
    element_may_be_nan: bool = False

    def _node(self) -> exp.Expr:
        return self.node()

    def _absent(self) -> exp.Expr:
        listed = sql.try_cast(sql.json_value(sql.column(DATA_COLUMN), sql.json_pointer([ABSENT_KEY])), "VARCHAR[]")
        return exp.ArrayContains(this=listed, expression=sql.string(self.absent_name or ""))

    def exists(self) -> exp.Expr:
        if self.absent_name is None:
            return sql.is_not_null(self._node())
        return sql.or_(sql.is_not_null(self._node()), sql.not_(self._absent()))

    def missing(self) -> exp.Expr:
        if self.absent_name is None:
            return sql.is_null(self._node())
        return sql.and_(sql.is_null(self._node()), sql.coalesce_false(self._absent()))

    def nullish(self) -> exp.Expr:
        return sql.is_null(self._node())

    def has_family(self, family: str) -> exp.Expr:
        if family == NULL:
            if self.absent_name is None:
                return sql.false()
            return sql.and_(sql.is_null(self._node()), sql.not_(self._absent()))
        return sql.is_not_null(self._node()) if family in self.families else sql.false()

    def scalar(self, family: str) -> Scalar | None:
        if family in self.families and family != ARRAY:
            return Scalar(None, self._node())
        return None

    def value(self, family: str) -> exp.Expr | None:
        node = super().value(family)
        if node is not None and self.may_be_nan and family in (NUMBER, DECIMAL):
            return exp.Nullif(this=node, expression=sql.number(math.nan))  # NaN orders above numbers in DuckDB
        return node

    def composite_text(self) -> exp.Expr | None:
        if ARRAY not in self.families:
            return None
        return sql.cast(sql.func("to_json", self._node()), "VARCHAR")

    def length(self) -> exp.Expr | None:
        return exp.Length(this=self._node()) if ARRAY in self.families else None

    def child(self, segment: str) -> Ref:
        if ARRAY not in self.families or not _is_index(segment):
            return MISSING
        element = partial(_list_element, self.node, int(segment))
        return TypedRef(element, self.element_families, may_be_nan=self.element_may_be_nan)

    def elements(self, depth: int) -> tuple[exp.Expr, Ref] | None:
        if ARRAY not in self.families:
            return None
        variable = partial(sql.lambda_variable, depth)
        return self._node(), TypedRef(variable, self.element_families, may_be_nan=self.element_may_be_nan)


def _list_element(node: Callable[[], exp.Expr], index: int) -> exp.Expr:
    """``list[index + 1]``: sqlglot stores DuckDB's 1-based subscripts 0-based."""
    return exp.Bracket(this=node(), expressions=[exp.Literal.number(index)])


def _is_index(segment: str) -> bool:
    """A path segment that indexes arrays: ASCII digits without a leading zero (RFC 6901)."""
    return segment.isascii() and segment.isdigit() and (segment == "0" or not segment.startswith("0"))


def _typed_ref(node: Callable[[], exp.Expr], kind: str, *, array: bool = False, absent_name: str | None = None) -> TypedRef:
    families = COLUMN_FAMILIES[kind]
    nan = kind == "float"
    if array:
        return TypedRef(node, frozenset({ARRAY}), families, absent_name, element_may_be_nan=nan)
    return TypedRef(node, families, absent_name=absent_name, may_be_nan=nan)


def resolve_path(path: str, schema: Schema | None = None, *, system_columns: bool = True) -> Ref:
    """Where the value at ``path`` lives in a stored row.

    >>> sql.render(resolve_path("a.0.b", system_columns=False).has_family(STRING))
    'JSON_TYPE("$data", \\'/a/0/b\\') = \\'VARCHAR\\''
    """
    segments = path.split(".")
    data = partial(sql.column, DATA_COLUMN)
    if not system_columns:
        return JsonRef(data, tuple(segments))
    head, rest = segments[0], segments[1:]
    ref: Ref
    if head in SYSTEM_COLUMN_TYPES:
        ref = _typed_ref(partial(sql.column, head), _SYSTEM_KINDS[SYSTEM_COLUMN_TYPES[head]])
    elif schema is not None and (declared := schema.field(head)) is not None:
        ref = _declared_ref(declared)
    else:
        return JsonRef(data, tuple(segments))
    for segment in rest:
        ref = ref.child(segment)
    return ref


def _declared_ref(declared: FieldType) -> Ref:
    node = partial(sql.column, declared.name)
    if declared.is_variant:
        return JsonRef(node)
    return _typed_ref(node, declared.kind, array=declared.array, absent_name=declared.name)


# -- compilation context ----------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """Where the compiler is: the path (for messages), how fields resolve, lambda depth."""

    path: str
    resolve: Callable[[str], Ref]
    depth: int = 0
    operators: Mapping[str, Any] = field(default_factory=dict)

    def at(self, key: str | int) -> Context:
        """The context one step deeper in the filter document (for error paths)."""
        where = str(key) if self.path == "$" else f"{self.path}.{key}"
        return replace(self, path=where)


def compile_filter(filter: Filter | None, schema: Schema | Mapping[str, str] | None = None, *, system_columns: bool = True) -> exp.Expr:
    """Compile a filter document into a boolean sqlglot expression over a stored row.

    ``None`` and ``{}`` match every row. Raises :class:`FilterError` (with the
    path of the offending part) for malformed filters, :class:`UnknownOperatorError`
    for operators that do not exist and :class:`UnsupportedOperatorError` for
    ``$text``/``$vector``/``$geo``.

    >>> to_sql({"$or": [{"a": None}, {"b": {"$nin": [1, 2]}}]}, {"a": "int", "b": "int"})
    '"a" IS NULL OR NOT COALESCE("b" IN (1, 2), FALSE)'
    """
    if filter is None:
        return sql.true()
    parsed = Schema.parse(schema)
    resolve = partial(resolve_path, schema=parsed, system_columns=system_columns)
    condition = _compile_document(filter, Context("$", resolve))
    if not system_columns and filter:  # null and primitive documents match only the empty filter
        is_document = sql.in_(sql.json_type(sql.column(DATA_COLUMN)), [sql.string("OBJECT"), sql.string("ARRAY")])
        condition = sql.and_(is_document, condition)
    return condition


def to_sql(filter: Filter | None, schema: Schema | Mapping[str, str] | None = None, *, system_columns: bool = True) -> str:
    """The DuckDB SQL text of :func:`compile_filter` (a ``WHERE`` condition)."""
    return sql.render(compile_filter(filter, schema, system_columns=system_columns))


def _compile_document(document: Any, ctx: Context) -> exp.Expr:
    """A whole (sub-)filter: every key ANDed."""
    if not isinstance(document, Mapping):
        raise FilterError(ctx.path, f"expected a filter object, found {type(document).__name__} {document!r}")
    clauses = []
    for key, operand in document.items():
        if not isinstance(key, str):
            raise FilterError(ctx.path, f"filter keys must be strings, found {key!r}")
        logical = LOGICAL_OPERATORS.get(key)
        if logical is not None:
            clauses.append(logical(operand, ctx.at(key)))
        elif key.startswith("$") and key not in DOLLAR_FIELDS:
            raise UnknownOperatorError(ctx.path, key, LOGICAL_OPERATORS)
        else:
            clauses.append(_compile_field(ctx.resolve(key), operand, ctx.at(key)))
    return sql.and_(*clauses)


#: Operators that read a JSON path once (``{field: None}`` too): binding them gains nothing.
_SINGLE_READ_OPERATORS = frozenset({"$exists"})


def _compile_field(ref: Ref, condition: Any, ctx: Context) -> exp.Expr:
    """``{field: condition}``; a JSON path the condition reads several times is extracted once per row.

    The bound condition is guarded by a cheap test it implies, on the path's
    text (``CASE WHEN ("$data" ->> p) = 'x' THEN <condition> ELSE FALSE END``),
    so the rows that fail it never reach the lambda. ``FALSE`` instead of the
    condition's NULL changes nothing: both are "no match", and negation reads
    NULL as false.
    """
    single = condition is None or (isinstance(condition, Mapping) and condition.keys() <= _SINGLE_READ_OPERATORS)
    binding = ref.binding(ctx.depth) if isinstance(ref, JsonRef) and not single else None
    if binding is not None:
        assert isinstance(ref, JsonRef)
        direct = _string_test(condition, partial(sql.json_text, ref.doc(), ref.pointer))
        if direct is not None:
            return direct
        value, variable, bound, uses = binding
        body = _compile_condition(bound, condition, ctx)
        if uses() > 1:  # nodes built and then folded away count too: binding them is merely unneeded
            exact = sql.bind(value(), variable, body)
            implied = _implied_by(condition, partial(sql.json_text, ref.doc(), ref.pointer))
            if implied is None:
                return exact
            return exp.Case(ifs=[exp.If(this=implied, true=exact)], default=sql.false())
    return _compile_condition(ref, condition, ctx)


#: The first characters of the text ``->>`` gives for JSON values that are not strings.
_NON_STRING_TEXT_START = frozenset('{["-+.0123456789')
_NON_STRING_TEXTS = ("true", "false", "null", "nan", "inf")


def _only_string_text(value: Any) -> bool:
    """``value`` is a string that no other JSON value reads as under ``->>``, so text equality is type-safe."""
    if not isinstance(value, str) or not value or value[0] in _NON_STRING_TEXT_START or value[0].isspace():
        return False
    return not value.lower().startswith(_NON_STRING_TEXTS)


def _string_test(condition: Any, text: Callable[[], exp.Expr]) -> exp.Expr | None:
    """Equality (``$eq``/``$in``/``$ne``/``$nin``) with strings no other value reads as, on the text alone.

    ``("$data" ->> p) = 'SJC'`` is true exactly when the value is the string
    ``SJC`` (NULL, not false, when it is missing or null: the same "no match").
    """
    if not is_operator_object(condition):
        op, operand = "$eq", condition
    elif len(condition) == 1:
        [(op, operand)] = condition.items()
    else:
        return None
    if op in ("$eq", "$ne"):
        values = [operand]
    elif op in ("$in", "$nin") and isinstance(operand, (list, tuple)):
        values = list(operand)
    else:
        return None
    if not values or not all(_only_string_text(v) for v in values):
        return None
    test = sql.in_(text(), [sql.string(v) for v in _unique(values)])
    return sql.not_(test) if op in ("$ne", "$nin") else test


def _implied_by(condition: Any, text: Callable[[], exp.Expr]) -> exp.Expr | None:
    """A one-parse test on the value's text (``doc ->> pointer``) that ``condition`` implies, if any.

    A string equal to ``s`` has the text ``s``; a JSON number that compares
    true has a numeric text that compares the same way (text that is not a
    number, like a ``{"$number": "Infinity"}`` tag, passes the test).
    """
    operators = condition if is_operator_object(condition) else {"$eq": condition}
    tests = []
    for op, operand in operators.items():
        if op in ("$eq", "$in"):
            values = list(operand) if op == "$in" and isinstance(operand, (list, tuple)) else [operand]
            if op == "$in" and not isinstance(operand, (list, tuple)):
                continue
            if values and all(isinstance(v, str) for v in values):
                tests.append(sql.in_(text(), [sql.string(v) for v in _unique(values)]))
            elif values and all(_is_finite_number(v) for v in values):
                number = sql.try_cast(text(), "DOUBLE")
                tests.append(exp.Coalesce(this=sql.in_(number, [sql.number(v) for v in _unique(values)]), expressions=[sql.true()]))
        elif op in ("$gt", "$gte", "$lt", "$lte") and _is_finite_number(operand):
            number = sql.try_cast(text(), "DOUBLE")
            tests.append(exp.Coalesce(this=sql.compare(op[1:], number, sql.number(operand)), expressions=[sql.true()]))
    return sql.and_(*tests) if tests else None


def is_operator_object(value: Any) -> bool:
    """An object with at least one ``$`` key is a set of operators, otherwise a literal value."""
    return isinstance(value, Mapping) and any(isinstance(k, str) and k.startswith("$") for k in value)


def _compile_condition(ref: Ref, condition: Any, ctx: Context) -> exp.Expr:
    """``{field: condition}``: an operator object, or equality with a literal value."""
    if is_operator_object(condition):
        return _compile_operators(ref, condition, ctx)
    return _equals(ref, condition, ctx.path)


def _compile_operators(ref: Ref, operators: Mapping[str, Any], ctx: Context) -> exp.Expr:
    clauses = []
    for op, operand in operators.items():
        row = FIELD_OPERATORS.get(op)
        if row is None:
            raise UnknownOperatorError(ctx.path, str(op), FIELD_OPERATORS)
        clauses.append(row(ref, operand, replace(ctx.at(op), operators=operators)))
    return sql.and_(*clauses)


# -- equality and ordering ---------------------------------------------------------------


def _equals(ref: Ref, value: Any, path: str, *, nested: bool = False) -> exp.Expr:
    """Deep equality (ParqueDB ``deepEqual``): missing == null at the top, key order free, arrays ordered.

    ``nested`` is set inside arrays and objects, where ``None`` must be a stored null.
    """
    family = family_of(value, path)
    if family == NULL:
        return ref.has_family(NULL) if nested else ref.nullish()
    if family == NUMBER:
        return _number_compare(ref, "eq", value)
    if family == ARRAY:
        length = ref.length()
        if length is None:
            return sql.false()
        element = ref.elements(0)
        if value and element and all(_is_plain_element(element[1], family_of(v, path), v) for v in value):
            literals = [scalar_literal(family_of(v, path), v) for v in value]
            return sql.eq(element[0], exp.Array(expressions=literals))  # a typed list: list equality
        items = [_equals(ref.child(str(i)), item, f"{path}.{i}", nested=True) for i, item in enumerate(value)]
        return sql.and_(ref.has_family(ARRAY), sql.eq(length, sql.number(len(value))), *items)
    if family == OBJECT:
        count = ref.key_count()
        if count is None or (len(value) == 1 and next(iter(value)) in TAGS):
            return sql.false()  # a one-key {"$date": ...} dict is a date when stored, never an object
        items = [_equals(ref.child(str(k)), v, f"{path}.{k}", nested=True) for k, v in value.items()]
        return sql.and_(ref.has_family(OBJECT), sql.eq(count, sql.number(len(value))), *items)
    return _scalar_compare(ref, "eq", family, value)


def _scalar_compare(ref: Ref, op: str, family: str, value: Any) -> exp.Expr:
    scalar = ref.scalar(family)
    if scalar is None:
        return sql.false()
    return scalar.test(lambda v: sql.compare(op, v, scalar_literal(family, value)))


_PY_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "eq": lambda a, b: a == b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}


def _number_compare(ref: Ref, op: str, value: float) -> exp.Expr:
    """Compare with a number: plain numbers in SQL, tagged infinities by their tag text; NaN never matches."""
    if math.isnan(value):
        return sql.false()
    clauses = []
    scalar = ref.scalar(NUMBER)
    if scalar is not None:
        cond = scalar.test(lambda v: sql.compare(op, v, sql.number(value)))
        if ref.may_be_nan and op in ("gt", "gte"):  # DuckDB orders NaN above every number
            cond = sql.and_(cond, exp.Not(this=exp.IsNan(this=scalar.value.copy())))
        clauses.append(cond)
    texts = [name for name, x in (("Infinity", math.inf), ("-Infinity", -math.inf)) if _PY_COMPARE[op](x, value)]
    special = ref.special_number_in(texts) if texts else None
    if special is not None:
        clauses.append(special)
    return sql.or_(*clauses)


def _order(ref: Ref, op: str, value: Any, path: str) -> exp.Expr:
    """Field-level ``$gt``/``$gte``/``$lt``/``$lte``: false on null or missing values."""
    family = family_of(value, path)
    if family == NULL:  # every non-null value sorts above null
        return sql.not_(ref.nullish()) if op in ("gt", "gte") else sql.false()
    if family == NUMBER:
        return _number_compare(ref, op, value)
    if family == ARRAY:
        return _array_order(ref, op, list(value), path)
    if family in ORDERED_FAMILIES:
        return _scalar_compare(ref, op, family, value)
    return sql.false()  # objects and bytes have no order


def _array_order(ref: Ref, op: str, items: list[Any], path: str) -> exp.Expr:
    """Element-wise (lexicographic) array order; a proper prefix sorts first.

    Upstream compares ``String(array)`` with ``localeCompare``; element-wise
    order agrees on arrays of single-digit numbers and of same-length strings,
    and is what a typed reading of "array order" means.
    """
    length = ref.length()
    if length is None:
        return sql.false()
    strict = op in ("gt", "lt")
    greater = op in ("gt", "gte")
    n = len(items)
    if greater:
        tail = sql.compare("gt" if strict else "gte", length, sql.number(n))
    else:
        tail = sql.false() if strict else sql.eq(length, sql.number(n))
    for i in reversed(range(n)):
        element, where = ref.child(str(i)), f"{path}.{i}"
        step = sql.or_(
            _order_nulls_first(element, "gt" if greater else "lt", items[i], where),
            sql.and_(_equals(element, items[i], where, nested=True), tail),
        )
        tail = step if greater else sql.or_(sql.eq(length.copy(), sql.number(i)), step)
    return sql.and_(ref.has_family(ARRAY), tail)


def _order_nulls_first(ref: Ref, op: str, value: Any, path: str) -> exp.Expr:
    """Order where null and missing sort below everything (``$expr``, array elements), not false."""
    if value is None:
        return {"gt": sql.not_(ref.nullish()), "gte": sql.true(), "lt": sql.false(), "lte": ref.nullish()}[op]
    ordered = _order(ref, op, value, path)
    return ordered if op in ("gt", "gte") else sql.or_(ref.nullish(), ordered)


# -- field operators -------------------------------------------------------------------


def _op_eq(ref: Ref, operand: Any, ctx: Context) -> exp.Expr:
    return _equals(ref, operand, ctx.path)


def _op_ne(ref: Ref, operand: Any, ctx: Context) -> exp.Expr:
    return sql.not_(_equals(ref, operand, ctx.path))


def _op_order(op: str, ref: Ref, operand: Any, ctx: Context) -> exp.Expr:
    return _order(ref, op, operand, ctx.path)


def _expect_list(operand: Any, ctx: Context, what: str = "a list") -> list[Any]:
    if not isinstance(operand, (list, tuple)):
        raise FilterError(ctx.path, f"expected {what}, found {type(operand).__name__} {operand!r}")
    return list(operand)


def _op_in(ref: Ref, operand: Any, ctx: Context) -> exp.Expr:
    """Some element of the list equals the value (scalars of one family become one ``IN``)."""
    values = _expect_list(operand, ctx)
    grouped: dict[str, list[Any]] = {}
    clauses = []
    for i, value in enumerate(values):
        family = family_of(value, f"{ctx.path}.{i}")
        if family in SCALAR_SQL_TYPES and not (family == NUMBER and not math.isfinite(value)):
            grouped.setdefault(family, []).append(value)
        else:
            clauses.append(_equals(ref, value, f"{ctx.path}.{i}"))
    for family, members in grouped.items():
        scalar = ref.scalar(family)
        if scalar is not None:
            literals = [scalar_literal(family, m) for m in _unique(members)]
            clauses.append(scalar.test(lambda v, lits=literals: sql.in_(v, lits)))
    return sql.or_(*clauses)


def _unique(values: list[Any]) -> list[Any]:
    seen: list[Any] = []
    for v in values:
        if not any(type(v) is type(s) and v == s for s in seen):
            seen.append(v)
    return seen


def _op_nin(ref: Ref, operand: Any, ctx: Context) -> exp.Expr:
    return sql.not_(_op_in(ref, operand, ctx))


def _op_exists(ref: Ref, operand: Any, ctx: Context) -> exp.Expr:
    if not isinstance(operand, bool):
        raise FilterError(ctx.path, f"expected true or false, found {type(operand).__name__} {operand!r}")
    return ref.exists() if operand else ref.missing()


def _op_type(ref: Ref, operand: Any, ctx: Context) -> exp.Expr:
    families = TYPE_TAGS.get(operand) if isinstance(operand, str) else None
    if families is None:
        known = ", ".join(TYPE_TAGS)
        raise FilterError(ctx.path, f"unknown type {operand!r}; expected one of {known}")
    if families == (NULL,):
        return ref.nullish()
    return sql.or_(*sql.distinct(ref.has_family(f) for f in families))


def _op_string_test(node: type[exp.Func], ref: Ref, operand: Any, ctx: Context) -> exp.Expr:
    """``$startsWith``/``$endsWith``/``$contains``: case-sensitive tests on string values."""
    if not isinstance(operand, str):
        raise FilterError(ctx.path, f"expected a string, found {type(operand).__name__} {operand!r}")
    scalar = ref.scalar(STRING)
    if scalar is None:
        return sql.false()
    return scalar.test(lambda v: node(this=v, expression=sql.string(operand)))


def _op_regex(ref: Ref, operand: Any, ctx: Context) -> exp.Expr:
    options = ctx.operators.get("$options")
    pattern = compile_regex(operand, options, ctx.path)
    scalar = ref.scalar(STRING)
    if scalar is None:
        return sql.false()
    return scalar.test(lambda v: exp.RegexpLike(this=v, expression=sql.string(pattern)))


def _op_options(ref: Ref, operand: Any, ctx: Context) -> exp.Expr:
    """``$options`` only modifies a sibling ``$regex``; alone it is a no-op."""
    if not isinstance(operand, str):
        raise FilterError(ctx.path, f"expected a string of regex flags, found {type(operand).__name__} {operand!r}")
    return sql.true()


def _op_mod(ref: Ref, operand: Any, ctx: Context) -> exp.Expr:
    """``[divisor, remainder]`` with JavaScript ``%`` (sign of the dividend, works on floats)."""
    shape_ok = isinstance(operand, (list, tuple)) and len(operand) == 2
    if not shape_ok or not all(_is_finite_number(x) for x in operand):
        raise FilterError(ctx.path, f"expected [divisor, remainder] (two finite numbers), found {operand!r}")
    divisor, remainder = operand
    scalar = ref.scalar(NUMBER)
    if divisor == 0 or scalar is None:
        return sql.false()  # x % 0 is NaN, which equals nothing
    return scalar.test(lambda v: sql.eq(exp.Mod(this=v, expression=sql.number(divisor)), sql.number(remainder)))


def _is_finite_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _op_size(ref: Ref, operand: Any, ctx: Context) -> exp.Expr:
    if not isinstance(operand, int) or isinstance(operand, bool) or operand < 0:
        raise FilterError(ctx.path, f"expected a non-negative integer, found {type(operand).__name__} {operand!r}")
    length = ref.length()
    if length is None:
        return sql.false()
    return sql.and_(ref.has_family(ARRAY), sql.eq(length, sql.number(operand)))


def _op_all(ref: Ref, operand: Any, ctx: Context) -> exp.Expr:
    """The value is an array containing (deep-equal) every listed value, in any order."""
    values = _expect_list(operand, ctx)
    depth = ctx.depth + 1
    if ref.elements(depth) is None:
        return sql.false()
    clauses = [ref.has_family(ARRAY)]
    for i, value in enumerate(values):
        items, element = ref.elements(depth)  # type: ignore[misc]  # fresh nodes per use
        family = family_of(value, f"{ctx.path}.{i}")
        if _is_plain_element(element, family, value):  # a typed list: list_contains
            clauses.append(exp.ArrayContains(this=items, expression=scalar_literal(family, value)))
            continue
        matches = _equals(element, value, f"{ctx.path}.{i}", nested=True)
        clauses.append(_any_element(items, element, matches, depth))
    return sql.and_(*clauses)


def _is_plain_element(element: Ref, family: str, value: Any) -> bool:
    """A typed list element compared with a literal of its own scalar family (SQL ``=`` is exact)."""
    if not isinstance(element, TypedRef) or family not in element.families or family not in SCALAR_SQL_TYPES:
        return False
    return family != NUMBER or math.isfinite(value)


def _any_element(items: exp.Expr, element: Ref, condition: exp.Expr, depth: int) -> exp.Expr:
    """Some element satisfies ``condition``: ``LENGTH(LIST_FILTER(items, LAMBDA e : cond)) > 0``."""
    if sql.is_false(condition):
        return sql.false()
    if sql.is_true(condition):
        return exp.GT(this=exp.Length(this=items), expression=sql.number(0))
    matching = exp.ArrayFilter(this=items, expression=sql.lambda_(sql.lambda_variable(depth), condition))
    return exp.GT(this=exp.Length(this=matching), expression=sql.number(0))


def _op_elem_match(ref: Ref, operand: Any, ctx: Context) -> exp.Expr:
    """Some element matches: an operator object tests the element itself, a filter tests its fields."""
    if not isinstance(operand, Mapping):
        raise FilterError(ctx.path, f"expected a filter object, found {type(operand).__name__} {operand!r}")
    depth = ctx.depth + 1
    elements = ref.elements(depth)
    if elements is None:
        return sql.false()
    items, element = elements
    inner = replace(ctx, depth=depth, operators={})
    if all(key in FIELD_OPERATORS for key in operand):
        condition = _compile_operators(element, operand, inner)
    else:
        inner = replace(inner, resolve=element.path)
        condition = sql.and_(element.has_family(OBJECT), _compile_document(operand, inner))
    return sql.and_(ref.has_family(ARRAY), _any_element(items, element, condition, depth))


def _op_not(ref: Ref, operand: Any, ctx: Context) -> exp.Expr:
    """Field-level ``$not``: negates an operator object (matches missing fields)."""
    if not isinstance(operand, Mapping):
        hint = "; write {'$not': {'$regex': ...}}" if isinstance(operand, (re.Pattern, str)) else ""
        raise FilterError(ctx.path, f"expected an operator object, found {type(operand).__name__} {operand!r}{hint}")
    return sql.not_(_compile_operators(ref, operand, replace(ctx, operators={})))


#: Operators inside ``{field: {...}}``: (ref, operand, context) -> condition.
FIELD_OPERATORS: dict[str, Callable[[Ref, Any, Context], exp.Expr]] = {
    "$eq": _op_eq,
    "$ne": _op_ne,
    "$gt": partial(_op_order, "gt"),
    "$gte": partial(_op_order, "gte"),
    "$lt": partial(_op_order, "lt"),
    "$lte": partial(_op_order, "lte"),
    "$in": _op_in,
    "$nin": _op_nin,
    "$exists": _op_exists,
    "$type": _op_type,
    "$regex": _op_regex,
    "$options": _op_options,
    "$mod": _op_mod,
    "$startsWith": partial(_op_string_test, exp.StartsWith),
    "$endsWith": partial(_op_string_test, exp.EndsWith),
    "$contains": partial(_op_string_test, exp.Contains),
    "$all": _op_all,
    "$elemMatch": _op_elem_match,
    "$size": _op_size,
    "$not": _op_not,
}


# -- regular expressions ----------------------------------------------------------------

#: JavaScript regex flags -> RE2 inline flag ("" = accepted, no effect on a fresh ``test()``).
REGEX_FLAGS: dict[str, str] = {"i": "i", "m": "m", "s": "s", "u": "", "g": "", "d": "", "y": ""}

_PYTHON_FLAGS: tuple[tuple[int, str], ...] = ((re.IGNORECASE, "i"), (re.MULTILINE, "m"), (re.DOTALL, "s"))

#: Constructs RE2 cannot run (it guarantees linear time), found outside character classes.
_RE2_UNSUPPORTED = re.compile(r"\\[1-9]|\\k<|\(\?<?[=!]|\(\?>|\(\?\(")


def compile_regex(operand: Any, options: Any, path: str) -> str:
    """The RE2 pattern for a ``$regex`` operand (a string or a compiled ``re.Pattern``).

    ``$options`` replaces the pattern's own flags (as upstream). ``i``, ``m``
    and ``s`` become an inline ``(?ims)`` prefix; ``y`` anchors at the start;
    ``g``, ``u`` and ``d`` have no effect on a match test; any other flag
    (notably ``x``: neither JavaScript nor RE2 has extended mode) is a
    :class:`FilterError`.

    >>> compile_regex("^a.b", "is", "name")
    '(?is)^a.b'
    """
    if isinstance(operand, re.Pattern):
        if not isinstance(operand.pattern, str):
            raise FilterError(path, "expected a str pattern, found a bytes pattern")
        pattern = operand.pattern
        if operand.flags & re.VERBOSE and options is None:
            raise FilterError(path, "re.VERBOSE is not supported; RE2 has no extended mode")
        flags = "".join(letter for bit, letter in _PYTHON_FLAGS if operand.flags & bit)
    elif isinstance(operand, str):
        pattern, flags = operand, ""
    else:
        raise FilterError(path, f"expected a string or a compiled pattern, found {type(operand).__name__} {operand!r}")
    if options is not None:
        if not isinstance(options, str):
            raise FilterError(path, f"expected $options to be a string of flags, found {options!r}")
        flags = options
    inline = []
    for flag in flags:
        if flag not in REGEX_FLAGS:
            raise FilterError(path, f"unsupported regex flag {flag!r}; supported flags are {''.join(REGEX_FLAGS)}")
        if REGEX_FLAGS[flag] and REGEX_FLAGS[flag] not in inline:
            inline.append(REGEX_FLAGS[flag])
    re2 = _to_re2(pattern, path)
    if "y" in flags:
        re2 = rf"\A(?:{re2})"
    return f"(?{''.join(inline)}){re2}" if inline else re2


def _to_re2(pattern: str, path: str) -> str:
    """Check a JavaScript pattern and rewrite the few spellings RE2 reads differently."""
    bare = re.sub(r"\[(?:\\.|[^\]\\])*\]", "[]", pattern)  # look outside character classes
    unsupported = _RE2_UNSUPPORTED.search(bare)
    if unsupported:
        raise FilterError(
            path,
            f"invalid regular expression {pattern!r}: {unsupported.group()!r} (back-references and look-around) "
            "is not supported by RE2",
        )
    re2 = re.sub(r"\(\?<(?=[A-Za-z_])", "(?P<", pattern)  # JS named groups
    re2 = re.sub(r"(?<!\\)((?:\\\\)*)\\u\{([0-9A-Fa-f]+)\}", r"\1\\x{\2}", re2)
    re2 = re.sub(r"(?<!\\)((?:\\\\)*)\\u([0-9A-Fa-f]{4})", r"\1\\x{\2}", re2)
    checkable = re.sub(r"\\[pP](\{[^}]*\}|[A-Za-z])", ".", re2)
    checkable = re.sub(r"\\x\{([0-9A-Fa-f]+)\}", lambda m: chr(int(m.group(1), 16)) if int(m.group(1), 16) < 0x110000 else ".", checkable)
    try:
        re.compile(checkable.replace(r"\z", r"\Z"))
    except re.error as err:
        raise FilterError(path, f"invalid regular expression {pattern!r}: {err}") from None
    return re2


# -- logical operators -------------------------------------------------------------------


def _subfilters(operand: Any, ctx: Context) -> list[exp.Expr]:
    filters = _expect_list(operand, ctx, "a list of filter objects")
    return [_compile_document(f, ctx.at(i)) for i, f in enumerate(filters)]


def _logical_and(operand: Any, ctx: Context) -> exp.Expr:
    return sql.and_(*_subfilters(operand, ctx))


def _logical_or(operand: Any, ctx: Context) -> exp.Expr:
    return sql.or_(*_subfilters(operand, ctx))


def _logical_nor(operand: Any, ctx: Context) -> exp.Expr:
    return sql.not_(sql.or_(*_subfilters(operand, ctx)))


def _logical_not(operand: Any, ctx: Context) -> exp.Expr:
    """Top-level ``$not`` (a ParqueDB extension): negates a whole sub-filter."""
    return sql.not_(_compile_document(operand, ctx))


def _logical_comment(operand: Any, ctx: Context) -> exp.Expr:
    return sql.true()


def _unsupported(reason: str, operand: Any, ctx: Context) -> exp.Expr:
    raise UnsupportedOperatorError(ctx.path, ctx.path.rsplit(".", 1)[-1], reason)


def _logical_expr(operand: Any, ctx: Context) -> exp.Expr:
    """``$expr``: comparisons between fields (``'$path'``) and literals, every key ANDed."""
    if not isinstance(operand, Mapping):
        raise FilterError(ctx.path, f"expected an object of comparisons, found {type(operand).__name__} {operand!r}")
    clauses = []
    for op, args in operand.items():
        row = EXPR_OPERATORS.get(op)
        if row is None:
            clauses.append(sql.false())  # upstream: an unsupported expression is false (docs/semantics.md)
            continue
        where = ctx.at(op)
        if not isinstance(args, (list, tuple)) or len(args) != 2:
            raise FilterError(where.path, f"expected [left, right], found {args!r}")
        clauses.append(row(_expr_argument(args[0], where), _expr_argument(args[1], where), where))
    return sql.and_(*clauses)


@dataclass(frozen=True)
class _Literal:
    value: Any


def _expr_argument(arg: Any, ctx: Context) -> Ref | _Literal:
    if isinstance(arg, str) and arg.startswith("$"):
        return ctx.resolve(arg[1:])
    return _Literal(arg)


#: ``$expr`` order operators with their arguments swapped (``5 < $a`` is ``$a > 5``).
_SWAPPED = {"eq": "eq", "gt": "lt", "gte": "lte", "lt": "gt", "lte": "gte"}


def _expr_compare(op: str, left: Ref | _Literal, right: Ref | _Literal, ctx: Context) -> exp.Expr:
    """``$expr`` comparison: null and missing sort lowest (no null guard, unlike ``$lt``)."""
    if isinstance(left, _Literal) and isinstance(right, _Literal):
        left = JsonRef(partial(sql.json_literal, left.value))
    if isinstance(left, _Literal):
        left, right, op = right, left, _SWAPPED[op]
    assert isinstance(left, Ref)
    if isinstance(right, Ref):
        return _refs_compare(op, left, right)
    if op == "eq":
        return _equals(left, right.value, ctx.path)
    return _order_nulls_first(left, op, right.value, ctx.path)


def _refs_compare(op: str, left: Ref, right: Ref) -> exp.Expr:
    """Field against field, family by family (arrays and objects: equal JSON text only)."""
    families = ORDERED_FAMILIES if op != "eq" else (*ORDERED_FAMILIES, BINARY)
    clauses = []
    for family in families:
        a, b = left.value(family), right.value(family)
        if a is not None and b is not None:
            clauses.append(sql.compare(op, a, b))
    clauses = sql.distinct(clauses)
    if op == "eq":
        a, b = left.composite_text(), right.composite_text()
        if a is not None and b is not None:
            clauses.append(sql.eq(a, b))
        return sql.or_(sql.and_(left.nullish(), right.nullish()), *clauses)
    nulls = {
        "gt": sql.and_(sql.not_(left.nullish()), right.nullish()),
        "gte": right.nullish(),
        "lt": sql.and_(left.nullish(), sql.not_(right.nullish())),
        "lte": left.nullish(),
    }[op]
    return sql.or_(nulls, *clauses)


def _expr_ne(left: Ref | _Literal, right: Ref | _Literal, ctx: Context) -> exp.Expr:
    return sql.not_(_expr_compare("eq", left, right, ctx))


#: Operators inside ``$expr``: (left, right, context) -> condition.
EXPR_OPERATORS: dict[str, Callable[[Ref | _Literal, Ref | _Literal, Context], exp.Expr]] = {
    "$eq": partial(_expr_compare, "eq"),
    "$ne": _expr_ne,
    "$gt": partial(_expr_compare, "gt"),
    "$gte": partial(_expr_compare, "gte"),
    "$lt": partial(_expr_compare, "lt"),
    "$lte": partial(_expr_compare, "lte"),
}

#: Top-level operators: (operand, context) -> condition.
LOGICAL_OPERATORS: dict[str, Callable[[Any, Context], exp.Expr]] = {
    "$and": _logical_and,
    "$or": _logical_or,
    "$nor": _logical_nor,
    "$not": _logical_not,
    "$expr": _logical_expr,
    "$comment": _logical_comment,
    "$text": partial(_unsupported, "full-text search needs an FTS index; filter with '$regex' or '$contains'"),
    "$vector": partial(_unsupported, "vector search needs a vector index, which SQL filters cannot use"),
    "$geo": partial(_unsupported, "geo queries need a geo index, which SQL filters cannot use"),
}

