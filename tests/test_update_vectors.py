"""Replay the upstream update vectors (tests/vectors/updates.jsonl) through parquedb_ibis.updates.

Each vector is one recorded upstream call plus the assertions the upstream test
made on its result. We run the equivalent call and check every assertion we
can map (the ``expected`` value at ``path`` in the result). Vectors that
deviate on purpose are listed in KNOWN_DEVIATIONS with the reason, and the test
asserts they still deviate, so the list cannot go stale.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from parquedb_ibis.documents import parse_datetime
from parquedb_ibis.errors import UpdateError
from parquedb_ibis.updates import (
    MISSING,
    apply_update,
    get_field,
    relationship_ops,
    set_field,
    unset_field,
    validate_update,
)

VECTORS_FILE = Path(__file__).parent / "vectors" / "updates.jsonl"

#: Functions whose vectors belong to other suites: the MergeTree engine's shallow
#: update and executeUpdate (entity + events) are the writer's; they are not counted here.
WRITER_FNS = frozenset({"engine.applyUpdate", "mutation.executeUpdate"})

#: Result keys of upstream applyOperators we do not reproduce: modifiedFields (the writer
#: stores full before/after snapshots, so nothing consumes it). Assertions on them are skipped.
UNMAPPED_RESULT_KEYS = frozenset({"modifiedFields"})


#: vector name -> why we deliberately differ from upstream. Each entry must still deviate.
KNOWN_DEVIATIONS: dict[str, str] = {}


# -- decoding the vector value encoding (tests/vectors/README.md) ----------------------

_NUMBERS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf, "-0": -0.0}


def _is_undefined(value: Any) -> bool:
    return isinstance(value, dict) and value == {"$undefined": True}


def decode(value: Any) -> Any:
    """JSON vector value -> Python document value. A key holding ``undefined`` is dropped (absent)."""
    if isinstance(value, dict):
        if len(value) == 1:
            ((tag, inner),) = value.items()
            if tag == "$date":
                return parse_datetime(inner)
            if tag == "$number":
                return _NUMBERS[inner]
            if tag == "$undefined":
                return None  # an undefined array slot or argument; null == undefined for updates
        return {k: decode(v) for k, v in value.items() if not _is_undefined(v)}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def same(actual: Any, expected: Any) -> bool:
    """Jest's toEqual on decoded values: structural, but ``True`` is not ``1``."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(actual) is type(expected) and actual == expected
    if isinstance(expected, dict):
        return isinstance(actual, dict) and actual.keys() == expected.keys() and all(
            same(actual[k], expected[k]) for k in expected
        )
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) == len(expected) and all(
            same(a, e) for a, e in zip(actual, expected)
        )
    if isinstance(expected, float) and math.isnan(expected):
        return isinstance(actual, float) and math.isnan(actual)
    return type(actual) is not dict and actual == expected


def resolve(value: Any, path: list[Any]) -> Any:
    for key in path:
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and isinstance(key, int) and 0 <= key < len(value):
            value = value[key]
        elif isinstance(value, list) and isinstance(key, str) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return MISSING
    return value


# -- running one vector ----------------------------------------------------------------


def _options(vector: Mapping[str, Any]) -> dict[str, Any]:
    options = decode(vector.get("options") or {})
    return {"now": options.get("timestamp"), "is_insert": bool(options.get("isInsert"))}


def _run_apply_update(v: Mapping[str, Any]) -> Any:
    return apply_update(decode(v.get("doc", {})), decode(v["update"]), **_options(v))


def _run_apply_operators(v: Mapping[str, Any]) -> Any:
    update = decode(v["update"])
    document = apply_update(decode(v.get("doc", {})), update, **_options(v))
    ops = [{"type": op.kind, "predicate": op.predicate, "targets": list(op.targets)} for op in relationship_ops(update)]
    return {"document": document, "relationshipOps": ops}


def _run_get_field(v: Mapping[str, Any]) -> Any:
    return get_field(decode(v.get("obj")), v["fieldPath"], MISSING)


def _run_set_field(v: Mapping[str, Any]) -> Any:
    return set_field(decode(v.get("obj", {})), v["fieldPath"], decode(v.get("value")))


def _run_unset_field(v: Mapping[str, Any]) -> Any:
    return unset_field(decode(v.get("obj", {})), v["fieldPath"])


def _run_validate(v: Mapping[str, Any]) -> Any:
    return validate_update(decode(v["update"]))


#: upstream function -> how we make the same call.
RUNNERS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "query.applyUpdate": _run_apply_update,
    "mutation.applyOperators": _run_apply_operators,
    "mutation.getField": _run_get_field,
    "mutation.setField": _run_set_field,
    "mutation.unsetField": _run_unset_field,
    "mutation.validateUpdateOperators": _run_validate,
    "query.validateUpdate": _run_validate,
}

#: Assertions on derived expressions (no ``path``): ``(result.a.b as Date[])[i].getTime()``.
_GET_TIME = re.compile(r"expect\(\(result\.([\w.]+) as [^)]*\)\[(\d+)\]\.getTime\(\)\)")


def _is_date_class(expected: Any) -> bool:
    return isinstance(expected, dict) and expected.get("$js:function") in {"Date", "ClockDate"}


def _check_value(assertion: Mapping[str, Any], actual: Any) -> str | None:
    matcher, expected = assertion["matcher"], [decode(e) for e in assertion["expected"]]
    checks: dict[str, Callable[[], bool]] = {
        "toBe": lambda: same(actual, expected[0]),
        "toEqual": lambda: same(actual, expected[0]),
        "toBeUndefined": lambda: actual is MISSING,
        "toBeNull": lambda: actual is None,
        "toContain": lambda: isinstance(actual, list) and any(same(a, expected[0]) for a in actual),
        "toContainEqual": lambda: isinstance(actual, list) and any(same(a, expected[0]) for a in actual),
        "toHaveLength": lambda: isinstance(actual, (list, str)) and len(actual) == expected[0],
        "toBeInstanceOf": lambda: _is_date_class(assertion["expected"][0]) and isinstance(actual, dt.datetime),
    }
    ok = checks[matcher]()
    if assertion["negate"]:
        ok = not ok
    return None if ok else f"{assertion['src']}: got {actual!r}"


def _applicable(vector: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The assertions we can check (all of them except those on results we do not produce)."""
    mapped = []
    for assertion in vector["assertions"]:
        path = assertion.get("path")
        if path and vector["fn"] == "mutation.applyOperators" and path[0] in UNMAPPED_RESULT_KEYS:
            continue
        if path is None and assertion["matcher"] != "toThrow" and not _GET_TIME.search(assertion["src"]):
            continue
        mapped.append(assertion)
    return mapped


def check_vector(vector: Mapping[str, Any]) -> list[str]:
    """Run one vector; return the list of failed assertions (empty: the vector passes)."""
    try:
        result, error = RUNNERS[vector["fn"]](vector), None
    except UpdateError as err:
        result, error = None, err
    failures = []
    for assertion in _applicable(vector):
        if assertion["matcher"] == "toThrow":
            if assertion["negate"]:
                if error is not None:
                    failures.append(f"{assertion['src']}: raised {error}")
                continue
            if error is None:
                failures.append(f"{assertion['src']}: did not raise")
                continue
            for pattern in assertion["expected"]:
                source = pattern["$regexp"]["source"] if isinstance(pattern, dict) else re.escape(pattern)
                if not re.search(source, str(error), re.IGNORECASE):
                    failures.append(f"{assertion['src']}: message {str(error)!r} does not match {source!r}")
            continue
        if error is not None:
            failures.append(f"{assertion['src']}: raised {error}")
            continue
        if "path" in assertion:
            actual = resolve(result, assertion["path"])
        else:  # (result.x as Date[])[i].getTime()
            match = _GET_TIME.search(assertion["src"])
            assert match is not None
            actual = resolve(result, [*match.group(1).split("."), int(match.group(2))])
            actual = (actual - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(milliseconds=1)
        failure = _check_value(assertion, actual)
        if failure:
            failures.append(failure)
    if vector.get("throws") and error is None and not failures:
        failures.append(f"upstream raised {vector['throws']['message']!r}; we did not")
    return failures


def load_vectors() -> list[dict[str, Any]]:
    with VECTORS_FILE.open(encoding="utf-8") as lines:
        vectors = [json.loads(line) for line in lines if line.strip()]
    return [v for v in vectors if v["fn"] not in WRITER_FNS and _applicable(v)]


VECTORS = load_vectors()


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_update_vector(vector: dict[str, Any]) -> None:
    failures = check_vector(vector)
    if vector["name"] in KNOWN_DEVIATIONS:
        assert failures, f"no longer deviates; remove it from KNOWN_DEVIATIONS: {KNOWN_DEVIATIONS[vector['name']]}"
    else:
        assert not failures, "\n".join(failures)


def test_known_deviations_name_real_vectors() -> None:
    names = {v["name"] for v in VECTORS}
    assert set(KNOWN_DEVIATIONS) <= names


def test_vectors_cover_every_mapped_function() -> None:
    assert {v["fn"] for v in VECTORS} == set(RUNNERS)


def test_vector_pass_rate() -> None:
    passed = len(VECTORS) - len(KNOWN_DEVIATIONS)
    assert passed / len(VECTORS) >= 0.98, f"{passed}/{len(VECTORS)}"
