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
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

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
    return to_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
    """``json.dumps`` hook: the tagged form of a value JSON has no type for."""
    if isinstance(value, (dt.date, Decimal, bytes, bytearray, memoryview)):
        return to_jsonable(value)
    raise TypeError(f"cannot store a value of type {type(value).__name__}: {value!r}")


_FAST = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_tag_default)


def encode_variant(value: Any) -> str:
    """Encode a value as the JSON text stored in a variant column.

    The common case runs in the C encoder (dates and other tagged types go
    through its ``default`` hook); NaN and infinities make it fail, and then
    the value takes the exact path through :func:`to_jsonable`. Mapping keys
    must be strings (the writer rejects others).
    """
    try:
        return _FAST.encode(value)
    except ValueError:  # NaN / Infinity: tag them
        return json.dumps(to_jsonable(value), ensure_ascii=False, separators=(",", ":"), allow_nan=False)


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
