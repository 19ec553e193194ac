"""A naive, pure-Python evaluator of filters: the oracle for differential tests.

Written from docs/semantics.md (our semantics: ParqueDB's canonical matcher
with the deviations listed there), independently of the SQL compiler. It walks
Python documents directly; it is slow and simple on purpose.

``matches(doc, filter)`` answers whether one document matches. Documents are
taken as they come back from the variant codec (tuples are lists, datetimes are
aware UTC); :func:`stored` applies that normalisation.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from parquedb_ibis.documents import TAGS, encode_variant, from_jsonable, to_jsonable
from parquedb_ibis.errors import FilterError, UnknownOperatorError, UnsupportedOperatorError

MISSING = object()

DOLLAR_FIELDS = {"$id", "$type", "$context", "$version", "$createdAt", "$createdBy", "$updatedAt", "$updatedBy"}
FIELD_OPS = {
    "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$type", "$regex", "$options",
    "$mod", "$startsWith", "$endsWith", "$contains", "$all", "$elemMatch", "$size", "$not",
}
TYPE_TAGS = {
    "null": {"null"}, "boolean": {"boolean"}, "number": {"number", "decimal"}, "string": {"string"},
    "date": {"date", "dateonly"}, "array": {"array"}, "object": {"object", "binary"},
}
ORDERED = {"number", "decimal", "string", "date", "dateonly", "boolean"}


def stored(doc: Any) -> Any:
    """``doc`` as the variant codec gives it back (what the database compares)."""
    return from_jsonable(to_jsonable(doc))


def matches(doc: Any, filter: Mapping[str, Any] | None) -> bool:
    """Does ``doc`` match ``filter``? Raises the same error kinds as the compiler."""
    if not filter:
        return True
    if not isinstance(doc, (Mapping, list)):
        return False
    return _document(doc, filter)


# -- paths -----------------------------------------------------------------------------


def get(doc: Any, path: str) -> Any:
    """ParqueDB path lookup: numeric segments index arrays (RFC 6901 digits), no traversal."""
    current = doc
    for segment in path.split("."):
        current = child(current, segment)
    return current


def child(value: Any, segment: str) -> Any:
    if isinstance(value, Mapping):
        return value.get(segment, MISSING)
    if isinstance(value, list) and segment.isascii() and segment.isdigit():
        if segment == "0" or not segment.startswith("0"):
            index = int(segment)
            return value[index] if index < len(value) else MISSING
    return MISSING


# -- families ----------------------------------------------------------------------------


def family(value: Any) -> str:
    if value is MISSING:
        return "missing"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dt.datetime):
        return "date"
    if isinstance(value, dt.date):
        return "dateonly"
    if isinstance(value, Decimal):
        return "decimal"
    if isinstance(value, (bytes, bytearray)):
        return "binary"
    if isinstance(value, list):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    raise FilterError("$", f"cannot compare with {value!r}")


def nullish(value: Any) -> bool:
    return value is MISSING or value is None


def _comparable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode()
    return value


def equal(value: Any, operand: Any, nested: bool = False) -> bool:
    """Deep equality: missing == null at the top, key order free, arrays ordered, 1 == 1.0."""
    f = family(operand)
    if f == "null":
        return value is None if nested else nullish(value)
    if family(value) != f:
        return False
    if f == "number":
        return not math.isnan(operand) and value == operand
    if f == "array":
        return len(value) == len(operand) and all(equal(a, b, True) for a, b in zip(value, operand))
    if f == "object":
        if len(operand) == 1 and next(iter(operand)) in TAGS:
            return False
        return len(value) == len(operand) and all(k in value and equal(value[k], v, True) for k, v in operand.items())
    return _comparable(value) == _comparable(operand)


_CMP = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}


def order(value: Any, op: str, operand: Any) -> bool:
    """Field-level ``$gt``...: false for null/missing values and across families."""
    if nullish(value):
        return False
    f = family(operand)
    if f == "null":
        return op in ("gt", "gte")
    if f == "array":
        return _array_order(value, op, operand)
    if f not in ORDERED or family(value) != f:
        return False
    if f == "number" and (math.isnan(operand) or math.isnan(value)):
        return False
    return _CMP[op](_comparable(value), _comparable(operand))


def order_nulls_first(value: Any, op: str, operand: Any) -> bool:
    """``$expr`` (and array element) order: null and missing sort lowest."""
    if operand is None:
        return {"gt": not nullish(value), "gte": True, "lt": False, "lte": nullish(value)}[op]
    if op in ("lt", "lte") and nullish(value):
        return True
    return order(value, op, operand)


def _array_order(value: Any, op: str, items: list[Any]) -> bool:
    """Lexicographic: the first differing element decides; a proper prefix sorts first."""
    if not isinstance(value, list):
        return False
    for i, item in enumerate(items):
        if i >= len(value):
            return op in ("lt", "lte")
        element = value[i]
        if order_nulls_first(element, "gt" if op in ("gt", "gte") else "lt", item):
            return True
        if not equal(element, item, True):
            return False
    n = len(items)
    return {"gt": len(value) > n, "gte": len(value) >= n, "lt": False, "lte": len(value) == n}[op]


# -- filters -------------------------------------------------------------------------------


def _document(doc: Any, filter: Any) -> bool:
    if not isinstance(filter, Mapping):
        raise FilterError("$", f"expected a filter object, found {filter!r}")
    results = []
    for key, operand in filter.items():
        if key in ("$and", "$or", "$nor"):
            if not isinstance(operand, list):
                raise FilterError(key, "expected a list")
            subs = [_document(doc, f) for f in operand]
            results.append(all(subs) if key == "$and" else any(subs) if key == "$or" else not any(subs))
        elif key == "$not":
            results.append(not _document(doc, operand))
        elif key == "$comment":
            results.append(True)
        elif key == "$expr":
            results.append(_expr(doc, operand))
        elif key in ("$text", "$vector", "$geo"):
            raise UnsupportedOperatorError(key, key, "needs an index")
        elif key.startswith("$") and key not in DOLLAR_FIELDS:
            raise UnknownOperatorError("$", key, ())
        else:
            results.append(_condition(get(doc, key), operand))
    return all(results)


def _is_operators(cond: Any) -> bool:
    return isinstance(cond, Mapping) and any(isinstance(k, str) and k.startswith("$") for k in cond)


def _condition(value: Any, cond: Any) -> bool:
    if _is_operators(cond):
        return _operators(value, cond)
    if isinstance(cond, re.Pattern):
        raise FilterError("$", "regex as value")
    return equal(value, cond)


def _operators(value: Any, ops: Mapping[str, Any]) -> bool:
    results = []
    for op, x in ops.items():
        if op not in FIELD_OPS:
            raise UnknownOperatorError("$", op, FIELD_OPS)
        results.append(_operator(value, op, x, ops))
    return all(results)


def _operator(value: Any, op: str, x: Any, ops: Mapping[str, Any]) -> bool:  # noqa: C901 - one branch per operator
    if op == "$eq":
        return equal(value, x)
    if op == "$ne":
        return not equal(value, x)
    if op in ("$gt", "$gte", "$lt", "$lte"):
        return order(value, op[1:], x)
    if op in ("$in", "$nin"):
        if not isinstance(x, list):
            raise FilterError(op, "expected a list")
        found = any(equal(value, item) for item in x)
        return found if op == "$in" else not found
    if op == "$exists":
        if not isinstance(x, bool):
            raise FilterError(op, "expected a bool")
        return (value is not MISSING) == x
    if op == "$type":
        if x not in TYPE_TAGS:
            raise FilterError(op, "unknown type")
        if x == "null":
            return nullish(value)
        return family(value) in TYPE_TAGS[x]
    if op == "$regex":
        pattern = x.pattern if isinstance(x, re.Pattern) else x
        flags = ops.get("$options", "")
        if "$options" not in ops and isinstance(x, re.Pattern):
            flags = "".join(f for bit, f in ((re.I, "i"), (re.M, "m"), (re.S, "s")) if x.flags & bit)
        py = 0
        for f in flags:
            py |= {"i": re.I, "m": re.M, "s": re.S}.get(f, 0)
        return isinstance(value, str) and re.search(pattern, value, py) is not None
    if op == "$options":
        return True
    if op == "$mod":
        if not (isinstance(x, list) and len(x) == 2):
            raise FilterError(op, "expected [d, r]")
        d, r = x
        if d == 0 or family(value) != "number" or not math.isfinite(value):
            return False
        return math.fmod(value, d) == r
    if op in ("$startsWith", "$endsWith", "$contains"):
        if not isinstance(value, str):
            return False
        return {"$startsWith": value.startswith, "$endsWith": value.endswith, "$contains": value.__contains__}[op](x)
    if op == "$size":
        return isinstance(value, list) and len(value) == x
    if op == "$all":
        return isinstance(value, list) and all(any(equal(e, item, True) for e in value) for item in x)
    if op == "$elemMatch":
        if not isinstance(value, list):
            return False
        if all(k in FIELD_OPS for k in x):
            return any(_operators(e, x) for e in value)
        return any(isinstance(e, Mapping) and _document(e, x) for e in value)
    if op == "$not":
        return not _operators(value, x)
    raise AssertionError(op)


def _expr(doc: Any, spec: Mapping[str, Any]) -> bool:
    if not isinstance(spec, Mapping):
        raise FilterError("$expr", "expected an object")
    results = []
    for op, args in spec.items():
        if op not in ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte"):
            results.append(False)  # an unsupported expression is false (as upstream)
            continue
        is_ref = [isinstance(arg, str) and arg.startswith("$") for arg in args]
        a, b = (get(doc, arg[1:]) if ref else arg for arg, ref in zip(args, is_ref))
        name = op[1:]
        if is_ref[1] and not is_ref[0]:  # literal on the left: flip
            a, b, name = b, a, {"eq": "eq", "ne": "ne", "gt": "lt", "gte": "lte", "lt": "gt", "lte": "gte"}[name]
        if name in ("eq", "ne"):
            same = _expr_equal(a, b) if all(is_ref) else equal(a, b)
            results.append(same if name == "eq" else not same)
        elif all(is_ref):
            results.append(_expr_order(a, name, b))
        else:
            results.append(order_nulls_first(a, name, b))
    return all(results)


def _expr_equal(a: Any, b: Any) -> bool:
    """Field against field: nulls equal, scalars by family, arrays/objects by stored JSON text."""
    if nullish(a) or nullish(b):
        return nullish(a) and nullish(b)
    if isinstance(a, (list, Mapping)) and isinstance(b, (list, Mapping)):
        return encode_variant(a) == encode_variant(b)
    return equal(a, b, True)


def _expr_order(a: Any, op: str, b: Any) -> bool:
    """Field against field: nulls lowest, then same-family order (arrays and objects: none)."""
    if nullish(a) or nullish(b):
        return {"gt": not nullish(a) and nullish(b), "gte": nullish(b), "lt": nullish(a) and not nullish(b), "lte": nullish(a)}[op]
    if family(a) != family(b) or family(a) not in ORDERED:
        return False
    if family(a) == "number" and (math.isnan(a) or math.isnan(b)):
        return False
    return _CMP[op](_comparable(a), _comparable(b))
