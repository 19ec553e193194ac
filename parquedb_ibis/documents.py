"""How a document is stored: the variant (JSON) codec and the system fields.

A ParqueDB document is JSON-like with per-document type drift. We store it as
a row with typed columns (system fields and the fields a collection schema
declares) plus one variant column, ``$data``, that holds every other field as
JSON text. JSON text keeps ``1`` and ``1.0`` apart, keeps ``null`` apart from a
missing key, and is readable by any Parquet reader; the few values JSON cannot
express are written as one-key tagged objects:

=====================  ============================================
Python value           JSON
=====================  ============================================
``datetime`` (UTC)     ``{"$date": "2024-01-02T03:04:05.678901Z"}``
``date``               ``{"$dateonly": "2024-01-02"}``
``float('nan')`` etc.  ``{"$number": "NaN" | "Infinity" | "-Infinity"}``
``bytes``              ``{"$binary": "<base64>"}``
``Decimal``            ``{"$decimal": "12.30"}``
=====================  ============================================

Naive datetimes are taken as UTC; every datetime comes back timezone-aware in
UTC with microsecond precision. A user object that is exactly one of these
tagged shapes is read back as the tagged value (documented in docs/format.md).

This module is pure: no I/O, no DuckDB.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import orjson

Document = dict[str, Any]

#: The system fields every stored entity carries, in column order.
SYSTEM_FIELDS: tuple[str, ...] = (
    "$id",
    "$type",
    "createdAt",
    "updatedAt",
    "createdBy",
    "updatedBy",
    "version",
    "deletedAt",
)

#: The column that holds every undeclared field as JSON text.
DATA_COLUMN = "$data"

#: Inside ``$data``: the declared fields that were absent (not null) in the document.
ABSENT_KEY = "$absent"

DATE_TAG = "$date"
DATEONLY_TAG = "$dateonly"
NUMBER_TAG = "$number"
BINARY_TAG = "$binary"
DECIMAL_TAG = "$decimal"
TAGS = (DATE_TAG, DATEONLY_TAG, NUMBER_TAG, BINARY_TAG, DECIMAL_TAG)

_SPECIAL_FLOATS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def to_utc(value: dt.datetime) -> dt.datetime:
    """Return ``value`` as an aware UTC datetime (naive values are taken as UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def format_datetime(value: dt.datetime) -> str:
    """ISO-8601 in UTC with microseconds and a ``Z`` suffix (sorts as text)."""
    return to_utc(value).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_datetime(text: str) -> dt.datetime:
    """Parse an ISO-8601 timestamp (``Z`` or offset; naive means UTC) into aware UTC."""
    return to_utc(dt.datetime.fromisoformat(text.replace("Z", "+00:00")))


def to_jsonable(value: Any) -> Any:
    """Map a document value onto plain JSON values, tagging what JSON cannot hold."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return {NUMBER_TAG: "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")}
    if isinstance(value, dt.datetime):
        return {DATE_TAG: format_datetime(value)}
    if isinstance(value, dt.date):
        return {DATEONLY_TAG: value.isoformat()}
    if isinstance(value, Decimal):
        return {DECIMAL_TAG: str(value)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {BINARY_TAG: base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    raise TypeError(f"cannot store a value of type {type(value).__name__}: {value!r}")


def from_jsonable(value: Any) -> Any:
    """Inverse of :func:`to_jsonable`: untag dates, special numbers, bytes, decimals."""
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, inner),) = value.items()
            if key in TAGS and isinstance(inner, str):
                return _untag(key, inner)
        return {k: from_jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_jsonable(v) for v in value]
    return value


def _untag(tag: str, text: str) -> Any:
    if tag == DATE_TAG:
        return parse_datetime(text)
    if tag == DATEONLY_TAG:
        return dt.date.fromisoformat(text)
    if tag == NUMBER_TAG:
        return _SPECIAL_FLOATS[text]
    if tag == BINARY_TAG:
        return base64.b64decode(text)
    return Decimal(text)


def _tag_default(value: Any) -> Any:
    """Encoder hook: the tagged form of a value JSON has no type for."""
    if isinstance(value, (dt.date, Decimal, bytes, bytearray, memoryview)):
        return to_jsonable(value)
    raise TypeError(f"cannot store a value of type {type(value).__name__}: {value!r}")


#: orjson hands datetimes and dataclasses to ``_tag_default`` instead of writing its own forms.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _has_nonfinite(value: Any) -> bool:
    """True if a NaN or an infinity is anywhere inside ``value``."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, Mapping):
        return any(_has_nonfinite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_nonfinite(v) for v in value)
    return False


def _encode_fast(value: Any) -> bytes | None:
    """orjson's encoding of ``value``, or None when only the exact path can encode it.

    orjson writes NaN and infinities as ``null``, so output that contains
    ``null`` is accepted only once the value is known to hold none of them.
    It raises (and we return None) on integers beyond 64 bits, non-string keys
    and types neither it nor ``_tag_default`` knows.
    """
    try:
        out = orjson.dumps(value, default=_tag_default, option=_ORJSON_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return None
    if b"null" in out and _has_nonfinite(value):
        return None
    return out


def encode_variant(value: Any) -> str:
    """Encode a value as the JSON text stored in a variant column.

    The common case runs in orjson (dates and other tagged types go through
    ``_tag_default``); NaN, infinities, integers beyond 64 bits and non-string
    mapping keys take the exact path through :func:`to_jsonable`, which tags
    special numbers and writes keys with ``str``. ``uuid.UUID`` and
    ``enum.Enum`` values are written as their string or value.
    """
    out = _encode_fast(value)
    if out is not None:
        return out.decode()
    jsonable = to_jsonable(value)
    try:
        return orjson.dumps(jsonable).decode()
    except TypeError:  # integers beyond 64 bits: the stdlib writes them
        return json.dumps(jsonable, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode_documents_utf8(docs: Sequence[Mapping[str, Any]]) -> list[bytes] | None:
    """:func:`encode_document` of each document as UTF-8 bytes, in one tight loop, or None when any
    of them needs the exact path (then encode them one by one: that also names the one that fails)."""
    dumps, default, options = orjson.dumps, _tag_default, _ORJSON_OPTIONS
    out = []
    for doc in docs:
        try:
            text = dumps(doc, default=default, option=options)
        except TypeError:
            return None
        if b"null" in text and _has_nonfinite(doc):
            return None
        out.append(text)
    return out


def encode_documents(docs: Sequence[Mapping[str, Any]]) -> list[str] | None:
    """:func:`encode_documents_utf8` as text."""
    encoded = encode_documents_utf8(docs)
    return None if encoded is None else [text.decode() for text in encoded]


def encode_document(doc: Mapping[str, Any]) -> str:
    """Encode a document's own fields as variant JSON text; its keys must be strings.

    Raises :class:`TypeError` naming the first key that is not a string (orjson
    succeeding proves there is none, so the check costs nothing in the common case).
    """
    out = _encode_fast(doc)
    if out is not None:
        return out.decode()
    bad = next((k for k in doc if type(k) is not str), None)
    if bad is not None:
        raise TypeError(f"field names must be strings, found {bad!r}")
    return encode_variant(doc)


def decode_variant(text: str | None) -> Any:
    """Decode variant JSON text (``None`` stays ``None``)."""
    if text is None:
        return None
    return from_jsonable(json.loads(text))


def get_path(doc: Any, path: str, default: Any = None) -> Any:
    """Resolve a dotted path the way ParqueDB does: numeric segments index arrays.

    There is no implicit traversal into arrays: ``"items.x"`` on a list is missing.

    >>> get_path({"a": [{"b": 1}]}, "a.0.b")
    1
    """
    current = doc
    for segment in path.split("."):
        if isinstance(current, Mapping):
            if segment not in current:
                return default
            current = current[segment]
        elif isinstance(current, list):
            if not (segment.isascii() and segment.isdigit() and int(segment) < len(current)):
                return default
            current = current[int(segment)]
        else:
            return default
    return current
