"""ParqueDB's custom "V" variant codec (upstream ``src/parquet/variant.ts``).

This is **not** the Apache Parquet VARIANT encoding. It is a small
self-describing binary that the TypeScript ParqueDB stores, base64-encoded, in
format-A ``$data`` columns and in family-B event ``before``/``after``/
``metadata`` columns (upstream-format.md §4)::

    value  := 0x56 ('V') 0x01 item          -- header only at the top level
    item   := tag payload
    varint := unsigned LEB128

    tag  0 null        1 true       2 false
    tag  3 int8        4 int16 LE   5 int32 LE   6 int64 LE (JS bigint)
    tag  7 float32 LE  8 float64 LE
    tag 12 date (int32 days)        13 timestamp (int64 LE epoch ms)
    tag 14 timestamp_ntz (as 13)    15 binary: varint len + bytes
    tag 16 string: varint len + UTF-8
    tag 17 array: varint count + items
    tag 18 object: varint count + (varint len + UTF-8 key + item)*

Decoding gives plain Python values: ``None``, ``bool``, ``int``, ``float``,
``str``, ``bytes``, ``list``, ``dict`` (keys in stored order) and aware UTC
``datetime`` for tags 12-14 (JS gives a ``Date`` for all three). Two choices
differ from a JS reader on purpose, both lossless:

* a float64 that holds an integer becomes an ``int``. The JS encoder writes
  every integer-valued number that does not fit int32 as float64, and JS has
  no separate integer type, so ``1735690099121`` comes back as it was written
  (and as ``JSON.parse`` would give it);
* int64 (tag 6) keeps every digit (JS rounds it to a double).

Tags 9-11 (decimals) are declared upstream but never written; like upstream we
refuse them. :func:`encode` mirrors the upstream encoder's rules, for tests and
for writers that must produce what the TypeScript reader expects.

This module is pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import math
import struct
from collections.abc import Mapping
from typing import Any

from parquedb_ibis.errors import UpstreamFormatError

MAGIC = 0x56  # 'V'
VERSION = 0x01

NULL, TRUE, FALSE = 0, 1, 2
INT8, INT16, INT32, INT64 = 3, 4, 5, 6
FLOAT32, FLOAT64 = 7, 8
DECIMAL4, DECIMAL8, DECIMAL16 = 9, 10, 11
DATE, TIMESTAMP, TIMESTAMP_NTZ = 12, 13, 14
BINARY, STRING, ARRAY, OBJECT = 15, 16, 17, 18

#: The encoded variant ``null`` in base64: what family-B events store for a missing side.
NULL_BASE64 = "VgEA"

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MS_PER_DAY = 86_400_000
_FIXED: dict[int, struct.Struct] = {
    INT8: struct.Struct("<b"),
    INT16: struct.Struct("<h"),
    INT32: struct.Struct("<i"),
    INT64: struct.Struct("<q"),
    FLOAT32: struct.Struct("<f"),
    FLOAT64: struct.Struct("<d"),
}


def ms_to_datetime(ms: int) -> dt.datetime:
    """Epoch milliseconds to an aware UTC datetime (what ``new Date(ms)`` means)."""
    return _EPOCH + dt.timedelta(milliseconds=ms)


def datetime_to_ms(value: dt.datetime) -> int:
    """An aware (or UTC-naive) datetime to epoch milliseconds, truncating below 1 ms."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


# -- decoding ------------------------------------------------------------------------


def decode(data: bytes | bytearray | memoryview, *, where: str = "variant") -> Any:
    """Decode one "V" value (header included).

    >>> decode(bytes([0x56, 0x01, 18, 1, 1]) + b"a" + bytes([3, 7]))
    {'a': 7}
    """
    buf = bytes(data)
    if len(buf) < 3:
        raise UpstreamFormatError(where, f"variant too short ({len(buf)} bytes)")
    if buf[0] != MAGIC:
        raise UpstreamFormatError(where, f"not a ParqueDB variant (first byte {buf[0]:#04x}, expected 0x56 'V')")
    if buf[1] != VERSION:
        raise UpstreamFormatError(where, f"unsupported variant version {buf[1]} (expected 1)")
    value, _end = _Reader(buf, where).item(2)
    return value


def decode_base64(text: str | bytes | None, *, where: str = "variant") -> Any:
    """Decode a base64 "V" cell; ``None`` and ``""`` (no payload) give ``None``.

    >>> decode_base64("VgEA") is None
    True
    """
    if text is None or len(text) == 0:
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise UpstreamFormatError(where, "cell is not valid base64") from err
    return decode(raw, where=where)


class _Reader:
    """Cursor over one payload; every read checks the bounds and names the offset on failure."""

    __slots__ = ("buf", "where")

    def __init__(self, buf: bytes, where: str) -> None:
        self.buf = buf
        self.where = where

    def fail(self, offset: int, problem: str) -> UpstreamFormatError:
        return UpstreamFormatError(self.where, f"variant byte {offset}: {problem}")

    def varint(self, pos: int) -> tuple[int, int]:
        result = shift = 0
        buf = self.buf
        while True:
            if pos >= len(buf):
                raise self.fail(pos, "truncated length")
            byte = buf[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result, pos
            shift += 7
            if shift > 63:
                raise self.fail(pos, "length varint too long")

    def span(self, pos: int) -> tuple[bytes, int]:
        length, pos = self.varint(pos)
        end = pos + length
        if end > len(self.buf):
            raise self.fail(pos, f"length {length} runs past the end ({len(self.buf) - pos} bytes left)")
        return self.buf[pos:end], end

    def item(self, pos: int) -> tuple[Any, int]:
        buf = self.buf
        if pos >= len(buf):
            raise self.fail(pos, "unexpected end of data")
        tag = buf[pos]
        pos += 1
        if tag == STRING:
            raw, pos = self.span(pos)
            return raw.decode("utf-8", errors="replace"), pos  # TextDecoder replaces bad sequences too
        if tag == OBJECT:
            count, pos = self.varint(pos)
            obj: dict[str, Any] = {}
            for _ in range(count):
                raw, pos = self.span(pos)
                obj[raw.decode("utf-8", errors="replace")], pos = self.item(pos)
            return obj, pos
        if tag == ARRAY:
            count, pos = self.varint(pos)
            items = []
            for _ in range(count):
                value, pos = self.item(pos)
                items.append(value)
            return items, pos
        if tag == NULL:
            return None, pos
        if tag == TRUE:
            return True, pos
        if tag == FALSE:
            return False, pos
        if tag in _FIXED:
            fmt = _FIXED[tag]
            if pos + fmt.size > len(buf):
                raise self.fail(pos, f"truncated {fmt.size}-byte number")
            (number,) = fmt.unpack_from(buf, pos)
            if tag == FLOAT64 and math.isfinite(number) and number.is_integer():
                number = int(number)
            return number, pos + fmt.size
        if tag in (TIMESTAMP, TIMESTAMP_NTZ, DATE):
            size = 4 if tag == DATE else 8
            if pos + size > len(buf):
                raise self.fail(pos, "truncated date")
            (raw_value,) = _FIXED[INT32 if tag == DATE else INT64].unpack_from(buf, pos)
            ms = raw_value * _MS_PER_DAY if tag == DATE else raw_value
            try:
                return ms_to_datetime(ms), pos + size
            except OverflowError:
                raise self.fail(pos, f"date {ms} ms is outside the range Python can represent") from None
        if tag == BINARY:
            raw, pos = self.span(pos)
            return raw, pos
        if tag in (DECIMAL4, DECIMAL8, DECIMAL16):
            raise self.fail(pos - 1, f"decimal tag {tag} is declared upstream but never written (upstream refuses it too)")
        raise self.fail(pos - 1, f"unknown type tag {tag}")


# -- encoding ------------------------------------------------------------------------


def encode(value: Any) -> bytes:
    """Encode a value the way upstream's ``encodeVariant`` does.

    Integers that fit int32 take the smallest of int8/16/32; other integers up
    to 2**53 become float64 (a JS number); larger ones int64 (a JS bigint).
    ``datetime`` (and ``date``, at UTC midnight) become a timestamp in ms.

    >>> decode(encode({"a": [1, 2.5, None, "x"]}))
    {'a': [1, 2.5, None, 'x']}
    """
    out = bytearray((MAGIC, VERSION))
    _write(out, value)
    return bytes(out)


def encode_base64(value: Any) -> str:
    """:func:`encode`, base64 text as stored in Parquet cells."""
    return base64.b64encode(encode(value)).decode("ascii")


def _write(out: bytearray, value: Any) -> None:
    if value is None:
        out.append(NULL)
    elif value is True or value is False:
        out.append(TRUE if value else FALSE)
    elif isinstance(value, int):
        _write_int(out, int(value))
    elif isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and -(2**31) <= value < 2**31:
            _write_int(out, int(value))
        else:
            out.append(FLOAT64)
            out += _FIXED[FLOAT64].pack(value)
    elif isinstance(value, str):
        _write_bytes(out, STRING, value.encode("utf-8"))
    elif isinstance(value, dt.datetime):
        out.append(TIMESTAMP)
        out += _FIXED[INT64].pack(datetime_to_ms(value))
    elif isinstance(value, dt.date):
        out.append(TIMESTAMP)
        out += _FIXED[INT64].pack((value - dt.date(1970, 1, 1)).days * _MS_PER_DAY)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        _write_bytes(out, BINARY, bytes(value))
    elif isinstance(value, (list, tuple)):
        out.append(ARRAY)
        _write_varint(out, len(value))
        for item in value:
            _write(out, item)
    elif isinstance(value, Mapping):
        out.append(OBJECT)
        _write_varint(out, len(value))
        for key, item in value.items():
            encoded = str(key).encode("utf-8")
            _write_varint(out, len(encoded))
            out += encoded
            _write(out, item)
    else:
        _write_bytes(out, STRING, str(value).encode("utf-8"))  # upstream: String(v)


def _write_int(out: bytearray, value: int) -> None:
    if -128 <= value <= 127:
        out.append(INT8)
        out += _FIXED[INT8].pack(value)
    elif -32768 <= value <= 32767:
        out.append(INT16)
        out += _FIXED[INT16].pack(value)
    elif -(2**31) <= value < 2**31:
        out.append(INT32)
        out += _FIXED[INT32].pack(value)
    elif abs(value) <= 2**53:
        out.append(FLOAT64)
        out += _FIXED[FLOAT64].pack(float(value))
    elif -(2**63) <= value < 2**63:
        out.append(INT64)
        out += _FIXED[INT64].pack(value)
    else:
        raise OverflowError(f"integer {value} does not fit the variant's int64")


def _write_bytes(out: bytearray, tag: int, raw: bytes) -> None:
    out.append(tag)
    _write_varint(out, len(raw))
    out += raw


def _write_varint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
