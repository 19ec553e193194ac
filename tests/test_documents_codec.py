"""The variant codec: the fast (orjson) path writes the same JSON values as the exact path, and reads back equal."""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parquedb_ibis.documents import decode_variant, encode_document, encode_variant, to_jsonable

UTC = dt.timezone.utc

keys = st.text(max_size=6)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # unbounded: beyond 64 bits takes the exact path
    st.floats(),  # NaN and infinities included
    st.text(max_size=12),
    st.datetimes(timezones=st.just(UTC)),
    st.dates(),
    st.binary(max_size=8),
    st.decimals(allow_nan=False, allow_infinity=False, places=3),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
                      max_leaves=15)


def exact(value) -> str:
    """The reference encoding: tag with to_jsonable, then the standard library."""
    return json.dumps(to_jsonable(value), ensure_ascii=False, allow_nan=False)


def same(a, b) -> bool:
    """Strict equality that tells int from float and bool from int, and NaN equals NaN."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


@settings(max_examples=300, deadline=None)
@given(values)
def test_fast_path_writes_the_json_value_of_the_exact_path(value):
    assert json.loads(encode_variant(value)) == json.loads(exact(value))


@settings(max_examples=300, deadline=None)
@given(values)
def test_values_read_back_equal(value):
    assert same(decode_variant(encode_variant(value)), value)


@pytest.mark.parametrize(
    "value, text",
    [
        ({"a": math.nan, "b": None}, '{"a":{"$number":"NaN"},"b":null}'),
        ([None, -math.inf], '[null,{"$number":"-Infinity"}]'),
        ({"n": None}, '{"n":null}'),
        ({"big": 2**70}, '{"big":1180591620717411303424}'),
        ({"at": dt.datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)}, '{"at":{"$date":"2024-01-02T03:04:05.678901Z"}}'),
        ({"naive": dt.datetime(2024, 1, 2)}, '{"naive":{"$date":"2024-01-02T00:00:00.000000Z"}}'),
        ({"d": dt.date(2024, 1, 2), "b": b"\x00\xff", "m": Decimal("1.50")},
         '{"d":{"$dateonly":"2024-01-02"},"b":{"$binary":"AP8="},"m":{"$decimal":"1.50"}}'),
        ({"ü": "日本語"}, '{"ü":"日本語"}'),
        ({"one": 1, "float": 1.0}, '{"one":1,"float":1.0}'),
    ],
)
def test_encoding_of_special_values(value, text):
    assert encode_variant(value) == text


def test_nested_non_string_keys_are_written_with_str():
    assert json.loads(encode_variant({"a": {1: "x", None: "y"}})) == {"a": {"1": "x", "None": "y"}}


def test_a_document_with_a_non_string_field_name_is_refused():
    with pytest.raises(TypeError, match="field names must be strings, found 1"):
        encode_document({"ok": 1, 1: "x"})
    assert encode_document({"ok": 1}) == '{"ok":1}'


def test_unstorable_values_raise_a_type_error_naming_the_type():
    with pytest.raises(TypeError, match="cannot store a value of type set"):
        encode_variant({"s": {1, 2}})
    with pytest.raises(TypeError, match="cannot store a value of type time"):
        encode_variant({"t": dt.time(1, 2)})


def test_uuids_are_written_as_text():
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert decode_variant(encode_variant({"u": u})) == {"u": str(u)}
