"""Collection schemas in ParqueDB's type strings, and the typed columns they declare.

A schema maps field names to ParqueDB type strings::

    {"title": "string!", "views": "int?", "price": "decimal(10,2)!",
     "tags": "string[]", "meta": "variant?", "author": "-> User"}

``!`` marks a required field, ``?`` (or nothing) an optional one, ``[]`` an
array. Declared fields become typed Parquet columns; everything else is kept
in the variant column (see :mod:`parquedb_ibis.documents`).

This module is pure: it parses declarations and validates values.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from parquedb_ibis.documents import (
    ABSENT_KEY,
    DATA_COLUMN,
    SYSTEM_FIELDS,
    decode_variant,
    encode_documents,
    encode_variant,
    to_utc,
)
from parquedb_ibis.errors import SchemaError, ValidationError, did_you_mean

_SYSTEM = frozenset(SYSTEM_FIELDS)

#: ParqueDB type name -> (our kind, DuckDB column type). One row per accepted spelling.
SCALAR_TYPES: dict[str, tuple[str, str]] = {
    "string": ("string", "VARCHAR"),
    "text": ("string", "VARCHAR"),
    "markdown": ("string", "VARCHAR"),
    "email": ("string", "VARCHAR"),
    "url": ("string", "VARCHAR"),
    "uuid": ("string", "VARCHAR"),
    "int": ("int", "BIGINT"),
    "integer": ("int", "BIGINT"),
    "float": ("float", "DOUBLE"),
    "double": ("float", "DOUBLE"),
    "number": ("float", "DOUBLE"),
    "boolean": ("boolean", "BOOLEAN"),
    "bool": ("boolean", "BOOLEAN"),
    "timestamp": ("timestamp", "TIMESTAMPTZ"),
    "datetime": ("timestamp", "TIMESTAMPTZ"),
    "date": ("date", "DATE"),
    "variant": ("variant", "JSON"),
    "json": ("variant", "JSON"),
}

#: Column types of the system fields (see documents.SYSTEM_FIELDS).
SYSTEM_COLUMN_TYPES: dict[str, str] = {
    "$id": "VARCHAR",
    "$type": "VARCHAR",
    "createdAt": "TIMESTAMPTZ",
    "updatedAt": "TIMESTAMPTZ",
    "createdBy": "VARCHAR",
    "updatedBy": "VARCHAR",
    "version": "BIGINT",
    "deletedAt": "TIMESTAMPTZ",
}

_DECL = re.compile(
    r"""^\s*(?:
        (?P<rel>->)\s*(?P<target>[A-Za-z_][A-Za-z0-9_]*)(?P<relarr>\[\])?
      | (?P<base>[a-z]+)(?:\(\s*(?P<p>\d+)\s*,\s*(?P<s>\d+)\s*\))?(?P<arr>\[\])?
    )\s*(?P<mod>[!?])?\s*$""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class FieldType:
    """One declared field: its kind, DuckDB type and whether it is required or an array."""

    name: str
    declaration: str
    kind: str  # string|int|float|boolean|timestamp|date|decimal|variant|relation
    required: bool = False
    array: bool = False
    precision: int | None = None
    scale: int | None = None
    target: str | None = None

    @property
    def duckdb_type(self) -> str:
        """The DuckDB column type (arrays of variants are one JSON array value)."""
        if self.kind == "decimal":
            base = f"DECIMAL({self.precision},{self.scale})"
        elif self.kind == "relation":
            base = "VARCHAR"
        else:
            base = next(t for k, t in SCALAR_TYPES.values() if k == self.kind)
        if self.array and self.kind != "variant":
            return f"{base}[]"
        return base

    @property
    def is_variant(self) -> bool:
        """True when the column holds JSON text (``variant`` and ``variant[]``)."""
        return self.kind == "variant"


def parse_field(name: str, declaration: str) -> FieldType:
    """Parse one ParqueDB type string such as ``'decimal(10,2)!'`` or ``'-> User'``."""
    if not isinstance(declaration, str):
        raise SchemaError(f"schema field {name!r}", f"expected a type string, found {declaration!r}")
    m = _DECL.match(declaration)
    if not m:
        raise SchemaError(f"schema field {name!r}", f"cannot parse type {declaration!r}")
    required = m["mod"] == "!"
    if m["rel"]:
        return FieldType(name, declaration, "relation", required, bool(m["relarr"]), target=m["target"])
    base = m["base"]
    array = bool(m["arr"])
    if base == "decimal":
        precision, scale = int(m["p"] or 18), int(m["s"] or 3)
        if not 1 <= precision <= 38 or scale > precision:
            raise SchemaError(f"schema field {name!r}", f"invalid decimal precision/scale in {declaration!r}")
        return FieldType(name, declaration, "decimal", required, array, precision, scale)
    if m["p"] is not None or base not in SCALAR_TYPES:
        known = [*SCALAR_TYPES, "decimal"]
        raise SchemaError(f"schema field {name!r}", f"unknown type {base!r}{did_you_mean(base, known)}")
    return FieldType(name, declaration, SCALAR_TYPES[base][0], required, array)


@dataclass(frozen=True)
class Schema:
    """The declared fields of a collection (empty: everything is variant)."""

    fields: tuple[FieldType, ...] = ()

    @classmethod
    def parse(cls, spec: Mapping[str, str] | Schema | None) -> Schema:
        """Build a schema from ``{field: 'type'}``; ``None`` means no declared fields."""
        if spec is None:
            return cls()
        if isinstance(spec, Schema):
            return spec
        if not isinstance(spec, Mapping):
            raise SchemaError("schema", f"expected a mapping of field -> type string, found {type(spec).__name__}")
        fields = []
        for name, decl in spec.items():
            if name in SYSTEM_FIELDS or name.startswith("$") or "." in name or not name:
                raise SchemaError(f"schema field {name!r}", "system fields, '$' names and dotted names cannot be declared")
            fields.append(parse_field(name, decl))
        return cls(tuple(fields))

    def to_spec(self) -> dict[str, str]:
        """The ``{field: 'type'}`` mapping this schema was parsed from."""
        return {f.name: f.declaration for f in self.fields}

    def field(self, name: str) -> FieldType | None:
        """The declared field called ``name``, if any."""
        return next((f for f in self.fields if f.name == name), None)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def column_types(self) -> dict[str, str]:
        """Every typed column of a stored row: system fields, then declared fields."""
        return {**SYSTEM_COLUMN_TYPES, **{f.name: f.duckdb_type for f in self.fields}}

    def validate(self, doc: Mapping[str, Any], where: str) -> dict[str, Any]:
        """Check ``doc`` against the declared fields; return it with values coerced.

        Raises :class:`ValidationError` naming the first offending field.
        """
        out = dict(doc)
        for f in self.fields:
            if f.name not in doc or doc[f.name] is None:
                if f.required:
                    raise ValidationError(f"{where}.{f.name}", f"required field ({f.declaration}) is missing")
                continue
            out[f.name] = coerce(f, doc[f.name], f"{where}.{f.name}")
        return out


def coerce(f: FieldType, value: Any, where: str) -> Any:
    """Check one value against its declared type and return it in canonical form."""
    if f.array and f.kind != "variant":
        if not isinstance(value, (list, tuple)):
            raise ValidationError(where, f"expected an array for {f.declaration!r}, found {type(value).__name__}")
        return [_coerce_scalar(f, v, f"{where}.{i}") for i, v in enumerate(value)]
    if f.kind == "variant" and f.array and not isinstance(value, (list, tuple)):
        raise ValidationError(where, f"expected an array for {f.declaration!r}, found {type(value).__name__}")
    return _coerce_scalar(f, value, where)


def _coerce_scalar(f: FieldType, value: Any, where: str) -> Any:
    kind = f.kind
    ok: bool
    if kind in ("string", "relation"):
        ok = isinstance(value, str)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
    elif kind == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind == "boolean":
        ok = isinstance(value, bool)
    elif kind == "timestamp":
        ok = isinstance(value, dt.datetime)
        value = to_utc(value) if ok else value
    elif kind == "date":
        ok = isinstance(value, dt.date) and not isinstance(value, dt.datetime)
    elif kind == "decimal":
        value, ok = _to_decimal(value, f)
    else:  # variant: anything JSON-like
        ok = True
    if value is None and not f.array:
        ok = True
    if not ok:
        raise ValidationError(where, f"expected {f.declaration!r}, found {type(value).__name__} {value!r}")
    return value


def _to_decimal(value: Any, f: FieldType) -> tuple[Any, bool]:
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        return value, False
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        return value, False
    if not d.is_finite():
        return value, False
    quantum = Decimal(1).scaleb(-(f.scale or 0))
    q = d.quantize(quantum)
    digits = len(q.as_tuple().digits)
    return q, digits <= (f.precision or 18) and q == d


# -- rows: a document <-> the typed columns plus the variant column ------------------


def to_row(doc: Mapping[str, Any], schema: Schema) -> dict[str, Any]:
    """Split a (validated) document into its stored row.

    System fields and declared fields go to their typed columns; every other
    field goes, as JSON text, to ``$data``. A declared non-variant field that
    is absent (not null) is listed under ``$data.$absent`` so a read gives the
    document back exactly. A declared variant field stores ``null`` as JSON
    ``'null'`` and an absent one as SQL NULL.
    """
    row: dict[str, Any] = {name: doc.get(name) for name in SYSTEM_FIELDS}
    if not schema.fields:
        rest = {k: v for k, v in doc.items() if k not in _SYSTEM}
    else:
        rest = {k: v for k, v in doc.items() if k not in _SYSTEM}
        absent = []
        for f in schema.fields:
            present = f.name in rest
            value = rest.pop(f.name, None)
            if f.is_variant:
                row[f.name] = encode_variant(value) if present else None
            else:
                row[f.name] = value
                if not present:
                    absent.append(f.name)
        if absent:
            rest[ABSENT_KEY] = absent
    row[DATA_COLUMN] = encode_variant(rest)
    return row


class _Absent:
    """The marker of a field a document does not have (None is a value)."""


_ABSENT = _Absent()
_NONE = type(None)

#: Per declared kind: the Python types a column stores as they are. Other kinds, arrays and other
#: types (ints for a float field, naive datetimes, ...) need coercion and take the per-document path.
_STORED_AS_IS: dict[str, frozenset[type]] = {
    "string": frozenset({str}),
    "relation": frozenset({str}),
    "int": frozenset({int}),
    "float": frozenset({float}),
    "boolean": frozenset({bool}),
    "timestamp": frozenset({dt.datetime}),
    "variant": frozenset({str, int, float, bool, dict, list, tuple, dt.datetime, dt.date, Decimal, bytes}),
}


def to_columns(docs: Sequence[Mapping[str, Any]], schema: Schema) -> dict[str, list[Any]] | None:
    """The stored rows of many documents, column by column: the typed columns and ``$data``.

    The same rows as ``[to_row(schema.validate(doc), schema) for doc in docs]``,
    checked a column at a time. Returns None when any value needs more than a
    type check (a coercion, a violation, an unstorable value): the
    per-document path then coerces, or raises naming the document and field.
    The system fields are not included.
    """
    columns: dict[str, list[Any]] = {}
    absent: dict[int, list[str]] = {}
    for f in schema.fields:
        values = [doc.get(f.name, _ABSENT) for doc in docs]
        kinds = set(map(type, values))
        empty = _NONE in kinds or _Absent in kinds
        if empty and f.required:
            return None
        present = kinds - {_NONE, _Absent}
        allowed = _STORED_AS_IS.get(f.kind)
        if allowed is None:
            return None
        if f.kind == "variant":
            if not present <= (frozenset({list, tuple}) if f.array else allowed):
                return None
            try:
                columns[f.name] = [None if v is _ABSENT else encode_variant(v) for v in values]
            except TypeError:
                return None
            continue
        if f.array:  # lists whose elements are stored as they are (no None inside)
            if not present <= {list}:
                return None
            scalars = [x for v in values if type(v) is list for x in v]
            if not set(map(type, scalars)) <= allowed:
                return None
        elif not present <= allowed:
            return None
        else:
            scalars = values
        if f.kind == "int" and not all(-(2**63) <= v < 2**63 for v in scalars if type(v) is int):
            return None
        if f.kind == "timestamp" and not all(v.tzinfo is dt.timezone.utc for v in scalars if type(v) is dt.datetime):
            return None
        if _Absent in kinds:
            for i, v in enumerate(values):
                if v is _ABSENT:
                    absent.setdefault(i, []).append(f.name)
            values = [None if v is _ABSENT else v for v in values]
        columns[f.name] = values
    excluded = _SYSTEM | set(schema.names)
    rests = [{k: v for k, v in doc.items() if k not in excluded} for doc in docs]
    for i, names in absent.items():
        rests[i][ABSENT_KEY] = names
    data = encode_documents(rests)
    if data is None:
        return None
    columns[DATA_COLUMN] = data
    return columns


def from_row(row: Mapping[str, Any], schema: Schema) -> dict[str, Any]:
    """Rebuild the document from a stored row (inverse of :func:`to_row`).

    System fields whose value is NULL (``deletedAt`` on a live entity) are left out.
    """
    doc: dict[str, Any] = {}
    for name in SYSTEM_FIELDS:
        value = row.get(name)
        if value is not None:
            doc[name] = to_utc(value) if isinstance(value, dt.datetime) else value
    rest = decode_variant(row.get(DATA_COLUMN)) or {}
    absent = set(rest.pop(ABSENT_KEY, ()))
    for f in schema.fields:
        value = row.get(f.name)
        if f.is_variant:
            if value is not None:
                doc[f.name] = decode_variant(value)
        elif f.name not in absent:
            doc[f.name] = to_utc(value) if isinstance(value, dt.datetime) else value
    doc.update(rest)
    return doc
