"""Upstream's test vectors through our engine.

* Every vector of ``tests/vectors/filters.jsonl`` (ParqueDB's canonical matcher)
  runs through :func:`find_in`. A vector passes when the set of matched
  documents is the asserted one, or, for ``expect_error`` vectors, when we raise
  a :class:`FilterError`. The few that cannot pass are listed in
  :data:`KNOWN_DEVIATIONS` with the reason (docs/semantics.md has the table);
  each one is asserted to *still* deviate, so the list stays honest, and the
  pass rate must stay at or above 98 %.
* The ``find.jsonl`` vectors about projection, sorting and pagination run
  through :func:`find_in` with the matching options.
* Every filter vector whose documents give some field one consistent scalar
  type also runs against a *typed* collection layout (that field declared in a
  Schema, stored in its own column): typed columns and variant paths must give
  the same answers.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from parquedb_ibis.compile.filters import DOLLAR_FIELDS, LOGICAL_OPERATORS
from parquedb_ibis.documents import SYSTEM_FIELDS
from parquedb_ibis.errors import FilterError, UnknownOperatorError, UnsupportedOperatorError
from parquedb_ibis.query import find, find_in
from parquedb_ibis.schema import SYSTEM_COLUMN_TYPES, Schema, to_row

VECTORS_DIR = Path(__file__).parent / "vectors"
FILTER_VECTORS = [json.loads(line) for line in (VECTORS_DIR / "filters.jsonl").read_text().splitlines() if line]
FIND_VECTORS = [json.loads(line) for line in (VECTORS_DIR / "find.jsonl").read_text().splitlines() if line]

_UNKNOWN = "we raise UnknownOperatorError for unknown operators; upstream ignores them (docs/semantics.md D1)"
_SPECIAL = "we raise UnsupportedOperatorError for index operators; upstream's matcher ignores them (D2)"
_MOD = "a malformed $mod operand is a FilterError; upstream evaluates it to false (D3)"

#: Vector name -> why we (deliberately) give another answer than upstream.
KNOWN_DEVIATIONS: dict[str, tuple[type[Exception], str]] = {
    "$in operator > edge cases > returns false when $in is not an array": (
        FilterError,
        "a non-list $in operand is a FilterError; upstream evaluates it to false (D3)",
    ),
    "edge cases > ignores special operators ($text, $vector, $geo) #1": (UnsupportedOperatorError, _SPECIAL),
    "edge cases > ignores special operators ($text, $vector, $geo) #2": (UnsupportedOperatorError, _SPECIAL),
    "edge cases > ignores special operators ($text, $vector, $geo) #3": (UnsupportedOperatorError, _SPECIAL),
    "unknown operator validation > ignore mode (default) > silently ignores unknown operators with explicit ignore config": (
        UnknownOperatorError,
        _UNKNOWN,
    ),
    "unknown operator validation > ignore mode (default) > ignores unknown top-level operators": (
        UnknownOperatorError,
        _UNKNOWN,
    ),
    "unknown operator validation > ignore mode (default) > ignores unknown operators in nested conditions": (
        UnknownOperatorError,
        _UNKNOWN,
    ),
    "unknown operator validation > warn mode (via explicit config) > warns about unknown operators": (
        UnknownOperatorError,
        _UNKNOWN,
    ),
    "$mod operator > edge cases > returns false for invalid $mod array (wrong length) #1": (FilterError, _MOD),
    "$mod operator > edge cases > returns false for invalid $mod array (wrong length) #2": (FilterError, _MOD),
    "$mod operator > edge cases > returns false for invalid $mod array (wrong length) #3": (FilterError, _MOD),
}

REQUIRED_PASS_RATE = 0.98


# -- decoding the JavaScript value encoding (tests/vectors/README.md) ---------------------------
#
# Python has no ``undefined``. In documents a key holding ``undefined`` behaves
# exactly like a missing key (it is dropped) and an ``undefined`` array slot is
# null; in filters ``{field: undefined}`` is a no-op condition (dropped) and an
# ``undefined`` operand (``{$eq: undefined}``) equals null, as upstream.

UNDEFINED = object()
_TAGS = ("$date", "$undefined", "$number", "$regexp")
_NUMBERS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf, "-0": -0.0}
_REGEX_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL}


def _is_tagged(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _TAGS


def decode(value: Any) -> Any:
    """A JS value: Dates, RegExps, special numbers; ``undefined`` keys dropped, slots null."""
    if _is_tagged(value):
        ((tag, inner),) = value.items()
        if tag == "$date":
            return dt.datetime.fromisoformat(inner.replace("Z", "+00:00"))
        if tag == "$undefined":
            return UNDEFINED
        if tag == "$number":
            return _NUMBERS[inner]
        flags = 0
        for letter in inner["flags"]:
            flags |= _REGEX_FLAGS.get(letter, 0)
        return re.compile(inner["source"], flags)
    if isinstance(value, dict):
        return {k: v for k, x in value.items() if (v := decode(x)) is not UNDEFINED}
    if isinstance(value, list):
        return [None if (v := decode(x)) is UNDEFINED else v for x in value]
    return value


def decode_doc(value: Any) -> Any:
    decoded = decode(value)
    return None if decoded is UNDEFINED else decoded


def _is_operator_object(value: Any) -> bool:
    return isinstance(value, dict) and not _is_tagged(value) and any(k.startswith("$") for k in value)


def decode_filter(value: Any) -> Any:
    if not isinstance(value, dict) or _is_tagged(value):
        return decode(value)
    out: dict[str, Any] = {}
    for key, operand in value.items():
        if operand == {"$undefined": True}:
            if key.startswith("$"):
                out[key] = None
            continue
        if key in ("$and", "$or", "$nor") and isinstance(operand, list):
            out[key] = [decode_filter(f) for f in operand]
        elif _is_operator_object(operand):
            out[key] = _decode_operators(operand)
        elif key == "$not":
            out[key] = decode_filter(operand)
        else:
            out[key] = decode(operand)
    return out


def _decode_operators(ops: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for op, operand in ops.items():
        if operand == {"$undefined": True}:
            out[op] = None
        elif op in ("$elemMatch", "$not") and isinstance(operand, dict):
            out[op] = _decode_operators(operand) if _is_operator_object(operand) else decode_filter(operand)
        else:
            out[op] = decode(operand)
    return out


# -- running one vector --------------------------------------------------------------------


def run(vector: dict[str, Any]) -> list[bool]:
    """Which documents of the vector our engine matches (may raise a FilterError)."""
    docs = [decode_doc(d) for d in vector["docs"]]
    matched = {id(d) for d in find_in(docs, decode_filter(vector["filter"]))}
    return [id(d) in matched for d in docs]


def passes(vector: dict[str, Any]) -> bool:
    try:
        got = run(vector)
    except FilterError:
        return "expect_error" in vector
    return "expect_error" not in vector and got == vector["expect"]


def _vector_id(vector: dict[str, Any]) -> str:
    return vector["name"]


AGREEING = [v for v in FILTER_VECTORS if v["name"] not in KNOWN_DEVIATIONS]
DEVIATING = [v for v in FILTER_VECTORS if v["name"] in KNOWN_DEVIATIONS]


@pytest.mark.parametrize("vector", AGREEING, ids=_vector_id)
def test_filter_vector_agrees_with_upstream(vector: dict[str, Any]) -> None:
    if "expect_error" in vector:
        with pytest.raises(FilterError):
            run(vector)
    else:
        assert run(vector) == vector["expect"]


@pytest.mark.parametrize("vector", DEVIATING, ids=_vector_id)
def test_known_deviation_still_deviates(vector: dict[str, Any]) -> None:
    error, _reason = KNOWN_DEVIATIONS[vector["name"]]
    with pytest.raises(error):
        run(vector)


def test_every_known_deviation_names_a_vector() -> None:
    assert set(KNOWN_DEVIATIONS) <= {v["name"] for v in FILTER_VECTORS}


def test_filter_vector_pass_rate_is_at_least_98_percent() -> None:
    passed = len(AGREEING)  # each of them is asserted to pass above
    rate = passed / len(FILTER_VECTORS)
    print(f"filters.jsonl: {passed}/{len(FILTER_VECTORS)} vectors agree with upstream ({rate:.2%})")
    assert rate >= REQUIRED_PASS_RATE
    assert len(FILTER_VECTORS) - passed == len(KNOWN_DEVIATIONS)


# -- find.jsonl: projection, sort, pagination --------------------------------------------------


def _find_case(vector: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    fn = vector["fn"]
    if fn == "query.applyProjection":
        return vector["data"], {"project": vector["projection"]}
    if fn == "query.executeSimpleQuery":
        query = vector["query"]
        options = {"sort": query.get("sort"), "project": query.get("project")}
        return vector["data"], {"filter": query.get("filter"), **options}
    if fn == "query.applyPagination":
        return vector["items"], dict(vector.get("options", {}))
    if fn == "engine.sortEntities":
        return vector["entities"], {"sort": vector["sortSpec"]}
    raise AssertionError(fn)


def _find_result(docs: list[Any], options: dict[str, Any], fn: str) -> Any:
    """What the upstream function returns, computed with find_in (pagination metadata derived)."""
    items = find_in(docs, **options)
    if fn != "query.applyPagination":
        return items
    limit = options.get("limit") or 0
    unlimited = find_in(docs, **{**options, "limit": None})
    has_more = 0 < limit < len(unlimited)
    page = {"items": items, "hasMore": has_more, "total": len(find_in(docs, options.get("filter")))}
    if has_more:
        page["nextCursor"] = items[-1]["$id"]
    return page


@pytest.mark.parametrize("vector", FIND_VECTORS, ids=_vector_id)
def test_find_vector_agrees_with_upstream(vector: dict[str, Any]) -> None:
    docs, options = _find_case(vector)
    result = _find_result(docs, options, vector["fn"])
    assert result == decode(vector["upstream_result"])
    for assertion in vector["assertions"]:
        if "path" not in assertion or assertion.get("on") == "thrown_error":
            continue
        value = result
        for step in assertion["path"]:
            value = value[step]
        expected = assertion["expected"][0]
        check = {
            "toEqual": lambda: value == expected,
            "toBe": lambda: value == expected if assertion["negate"] is False else True,
            "toHaveLength": lambda: len(value) == expected,
            "toHaveProperty": lambda: (expected in value) != assertion["negate"],
        }[assertion["matcher"]]
        assert check(), assertion["src"]


# -- the same vectors through typed columns -----------------------------------------------------

_KIND_OF: list[tuple[type, str]] = [(bool, "boolean"), (int, "int"), (float, "float"), (str, "string"), (dt.datetime, "timestamp")]


def _scalar_kind(value: Any) -> str | None:
    for python_type, kind in _KIND_OF:
        if isinstance(value, python_type) and (python_type is not int or not isinstance(value, bool)):
            if python_type is float and not math.isfinite(value):
                return None
            return kind
    return None


def _declarable(docs: list[Any], name: str) -> str | None:
    """The ParqueDB type to declare ``name`` with, if every value of it has one scalar type."""
    kinds = set()
    for doc in docs:
        value = doc.get(name)
        if value is None:
            continue
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            kinds.add("string[]")
        else:
            kinds.add(_scalar_kind(value))
    if kinds == {"int", "float"}:
        kinds = {"float"}
    if len(kinds) != 1 or None in kinds:
        return None
    return kinds.pop()


def _filter_fields(filter: Any) -> Iterator[str]:
    if not isinstance(filter, dict):
        return
    for key, operand in filter.items():
        if key in LOGICAL_OPERATORS:
            for sub in operand if isinstance(operand, list) else [operand]:
                yield from _filter_fields(sub)
        elif not key.startswith("$") or key in DOLLAR_FIELDS:
            yield key.split(".")[0]


def typed_case(vector: dict[str, Any]) -> tuple[Schema, list[dict[str, Any]]] | None:
    """A Schema declaring the vector's consistently typed fields, and its documents with ids."""
    if "expect_error" in vector or vector["name"] in KNOWN_DEVIATIONS:
        return None
    docs = [decode_doc(d) for d in vector["docs"]]
    if not all(isinstance(d, dict) for d in docs):
        return None
    spec = {}
    for name in dict.fromkeys(_filter_fields(decode_filter(vector["filter"]))):
        if name in SYSTEM_FIELDS or name.startswith("$") or not name:
            continue
        declared = _declarable(docs, name)
        if declared is not None:
            spec[name] = declared
    if not spec:
        return None
    for doc in docs:
        for name in SYSTEM_FIELDS:
            want = {"VARCHAR": str, "TIMESTAMPTZ": dt.datetime, "BIGINT": int}[SYSTEM_COLUMN_TYPES[name]]
            if name in doc and not isinstance(doc[name], want):
                return None
    if any("$id" in d for d in docs):
        return None
    return Schema.parse(spec), [{**d, "$id": f"row{i}"} for i, d in enumerate(docs)]


TYPED = [(v, case) for v in FILTER_VECTORS if (case := typed_case(v)) is not None]


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(":memory:")
    connection.execute("SET TimeZone = 'UTC'")
    yield connection
    connection.close()


def test_typed_sample_is_large() -> None:
    assert len(TYPED) >= 300, len(TYPED)


@pytest.mark.parametrize(("vector", "case"), TYPED, ids=[v["name"] for v, _ in TYPED])
def test_typed_columns_agree_with_variant_paths(con: duckdb.DuckDBPyConnection, vector: dict[str, Any], case: Any) -> None:
    schema, docs = case
    columns = {**schema.column_types(), "$data": "JSON"}
    con.execute("DROP TABLE IF EXISTS typed")
    con.execute("CREATE TABLE typed (" + ", ".join(f'"{n}" {t}' for n, t in columns.items()) + ")")
    placeholders = ", ".join("?" * len(columns))
    for doc in docs:
        row = to_row(schema.validate(doc, "typed"), schema)
        con.execute(f"INSERT INTO typed VALUES ({placeholders})", [row.get(n) for n in columns])
    found = {d["$id"] for d in find(con, "typed", schema, decode_filter(vector["filter"]))}
    typed_answer = [f"row{i}" in found for i in range(len(docs))]
    assert typed_answer == run(vector) == vector["expect"]
