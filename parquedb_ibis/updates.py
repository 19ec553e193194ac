"""Apply MongoDB-style update operators to a document, the way ParqueDB does.

An update is an object of operators, each mapping dotted field paths to
operands: ``{"$set": {"name": "Ada"}, "$inc": {"stats.views": 1}}``. The
operators run in ParqueDB's fixed order (the order of :data:`UPDATE_OPERATORS`),
whatever the key order of the update. Numeric path segments index arrays.

The module is pure: :func:`apply_update` returns a new document and never
mutates its inputs, and nothing here performs I/O. Every problem raises
:class:`~parquedb_ibis.errors.UpdateError` naming the operator and the path,
and nothing is half-applied: the work happens on a private copy that is only
returned when every operator succeeded.

Where upstream ParqueDB is silent or unsound (it replaces a scalar when you
``$push`` to it, it misses ``a`` vs ``a.b`` conflicts, ...) we raise instead;
docs/updates.md lists every deviation and the reason.

>>> apply_update({"n": 1, "tags": ["a"]}, {"$inc": {"n": 2}, "$push": {"tags": "b"}})
{'n': 3, 'tags': ['a', 'b']}
"""

from __future__ import annotations

import datetime as dt
import math
import operator as _op
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import cmp_to_key
from typing import Any, Literal

from parquedb_ibis.documents import to_utc
from parquedb_ibis.errors import UpdateError, did_you_mean

Document = dict[str, Any]
Update = Mapping[str, Any]

#: System fields owned by the writer: no update operator may touch them (or anything under them).
PROTECTED_FIELDS: frozenset[str] = frozenset({"$id", "createdAt", "createdBy", "version"})

#: The one ``$``-named field an update may write: with ``$set``/``$setOnInsert``, to a non-empty string.
TYPE_FIELD = "$type"

#: Path segments rejected anywhere in a path (prototype pollution in the JavaScript original).
UNSAFE_SEGMENTS: frozenset[str] = frozenset({"__proto__", "constructor", "prototype"})

#: Setting ``items.N`` pads a shorter array with nulls; refuse gaps larger than this.
MAX_ARRAY_GAP = 10_000

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MS = dt.timedelta(milliseconds=1)


class _Missing:
    """The absence of a value (JavaScript ``undefined``), distinct from ``None`` (null)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class RelationshipOp:
    """A ``$link``/``$unlink`` entry: not applied to the document, executed by the writer.

    ``targets`` is empty for ``{"$unlink": {"pred": "$all"}}`` (unlink everything).
    """

    kind: Literal["link", "unlink"]
    predicate: str
    targets: tuple[str, ...]


@dataclass(frozen=True)
class _Context:
    now: dt.datetime
    is_insert: bool


# -- values: clone, describe, equality, ordering --------------------------------------

_SCALARS = (type(None), bool, int, float, str, dt.date, Decimal, bytes)


def _clone(value: Any) -> Any:
    """A private copy of a JSON-like value (mappings become dicts, tuples lists)."""
    if isinstance(value, Mapping):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clone(v) for v in value]
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return value


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{text} ({type(value).__name__})"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_index(segment: str) -> bool:
    return segment.isascii() and segment.isdigit()


def _utc(value: dt.date) -> dt.datetime:
    """An instant for ordering: datetimes in UTC, bare dates at midnight UTC."""
    if isinstance(value, dt.datetime):
        return to_utc(value)
    return dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc)


def deep_equal(a: Any, b: Any) -> bool:
    """ParqueDB equality: structural, dict key order ignored, ``1 == 1.0``, ``True != 1``.

    Missing (``MISSING``) equals ``None``; datetimes are equal when they are the
    same instant; ``NaN`` equals nothing, itself included.

    >>> deep_equal({"a": [1, {"b": 2.0}]}, {"a": [1.0, {"b": 2}]})
    True
    >>> deep_equal(True, 1)
    False
    """
    if a is MISSING:
        a = None
    if b is MISSING:
        b = None
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) or _is_number(b):
        return _is_number(a) and _is_number(b) and a == b
    if isinstance(a, dt.date) or isinstance(b, dt.date):
        if not (isinstance(a, dt.date) and isinstance(b, dt.date)):
            return False
        if isinstance(a, dt.datetime) != isinstance(b, dt.datetime):
            return False
        return _utc(a) == _utc(b)
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        if not (isinstance(a, Mapping) and isinstance(b, Mapping)) or len(a) != len(b):
            return False
        return all(k in b and deep_equal(v, b[k]) for k, v in a.items())
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        if not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple))) or len(a) != len(b):
            return False
        return all(deep_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _equality_key(value: Any) -> Any:
    """A hashable key with ``_equality_key(a) == _equality_key(b)`` exactly when ``deep_equal(a, b)``.

    Lets $pullAll and $addToSet run in linear time on large arrays.
    """
    if value is None or value is MISSING:
        return ("null",)
    if isinstance(value, bool):
        return ("bool", value)
    if _is_number(value):
        return object() if _is_nan(value) else ("number", value)  # 1, 1.0 and Decimal(1) hash alike
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, dt.datetime):
        return ("datetime", _utc(value))
    if isinstance(value, dt.date):
        return ("date", value)
    if isinstance(value, Mapping):
        return ("object", frozenset((k, _equality_key(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return ("array", tuple(_equality_key(v) for v in value))
    try:
        hash(value)
    except TypeError:
        return object()
    return (type(value), value)


#: Cross-type order (MongoDB's BSON order): null < numbers < strings < objects < arrays < bytes < booleans < dates.
_TYPE_RANK: tuple[tuple[type | tuple[type, ...], int], ...] = (
    (type(None), 0),
    (bool, 6),  # before int: bool is an int subclass
    ((int, float, Decimal), 1),
    (str, 2),
    (Mapping, 3),
    ((list, tuple), 4),
    (bytes, 5),
    (dt.date, 7),
)


def _rank(value: Any) -> int:
    for types, rank in _TYPE_RANK:
        if isinstance(value, types):
            return rank
    raise TypeError(f"compare_values: cannot order a value of type {type(value).__name__}")


def _sign(a: Any, b: Any) -> int:
    return (a > b) - (a < b)


def _utf16(text: str) -> bytes:
    return text.encode("utf-16-be", "surrogatepass")


def _is_nan(value: Any) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, Decimal) and value.is_nan()


def _compare_numbers(a: Any, b: Any) -> int:
    a_nan, b_nan = _is_nan(a), _is_nan(b)
    if a_nan or b_nan:
        return (not a_nan) - (not b_nan)
    return _sign(a, b)


def _compare_strings(a: str, b: str) -> int:
    if a.isascii() and b.isascii():
        return _sign(a, b)
    return _sign(_utf16(a), _utf16(b))


def _compare_dates(a: dt.date, b: dt.date) -> int:
    order = _sign(_utc(a), _utc(b))
    # Same instant: a bare date sorts before the datetime at its midnight (they are not equal).
    return order or _sign(isinstance(a, dt.datetime), isinstance(b, dt.datetime))


def _compare_sequences(a: list[Any], b: list[Any]) -> int:
    for x, y in zip(a, b):
        order = compare_values(x, y)
        if order:
            return order
    return _sign(len(a), len(b))


def _compare_mappings(a: Mapping[str, Any], b: Mapping[str, Any]) -> int:
    items_a = sorted(a.items(), key=lambda kv: _utf16(kv[0]))
    items_b = sorted(b.items(), key=lambda kv: _utf16(kv[0]))
    for (ka, va), (kb, vb) in zip(items_a, items_b):
        order = _compare_strings(ka, kb) or compare_values(va, vb)
        if order:
            return order
    return _sign(len(items_a), len(items_b))


_SAME_TYPE_COMPARE: dict[int, Callable[[Any, Any], int]] = {
    0: lambda a, b: 0,
    1: _compare_numbers,
    2: _compare_strings,
    3: _compare_mappings,
    4: _compare_sequences,
    5: _sign,
    6: _sign,
    7: _compare_dates,
}


def compare_values(a: Any, b: Any) -> int:
    """Order two values: -1, 0 or 1. A total order, used by $min, $max and $push's $sort.

    Within a type it is ParqueDB's ``compareValues``: null (and missing) lowest,
    numbers numerically, strings by UTF-16 code unit (so ``'B' < 'a'``), dates by
    instant, ``False < True``. Across types ParqueDB falls back to
    ``String(a).localeCompare(String(b))``, which is locale-dependent and not
    transitive; we use MongoDB's type order instead: null < numbers < strings <
    objects < arrays < bytes < booleans < dates. Objects compare by their
    (key, value) pairs in key order, arrays element by element; NaN sorts below
    every other number.

    >>> compare_values(None, -5), compare_values("B", "a"), compare_values(10, "9")
    (-1, -1, -1)
    """
    if a is MISSING:
        a = None
    if b is MISSING:
        b = None
    rank_a, rank_b = _rank(a), _rank(b)
    if rank_a != rank_b:
        return _sign(rank_a, rank_b)
    return _SAME_TYPE_COMPARE[rank_a](a, b)


# -- paths ----------------------------------------------------------------------------


def _check_path(operator: str, path: Any) -> None:
    """Structural checks every path gets: a non-empty dotted string of safe, non-empty segments."""
    if not isinstance(path, str):
        raise UpdateError(operator, repr(path), f"expected a field path string, found {_describe(path)}")
    segments = path.split(".")
    for segment in segments:
        if segment in UNSAFE_SEGMENTS:
            raise UpdateError(
                operator, path,
                f"unsafe path segment {segment!r} (prototype pollution attempt); rename the field",
            )
    if "" in segments:
        raise UpdateError(operator, path, "empty path segment; write paths like 'a.b.0'")


def _get(doc: Any, path: str) -> Any:
    current = doc
    for segment in path.split("."):
        if isinstance(current, Mapping):
            current = current.get(segment, MISSING)
        elif isinstance(current, list):
            if not _is_index(segment) or int(segment) >= len(current):
                return MISSING
            current = current[int(segment)]
        else:
            return MISSING
        if current is MISSING:
            return MISSING
    return current


def _put(container: dict[str, Any] | list[Any], operator: str, path: str, segment: str, value: Any) -> None:
    if isinstance(container, dict):
        container[segment] = value
        return
    if not _is_index(segment):
        raise UpdateError(operator, path, f"cannot set field {segment!r} on an array; use a numeric index")
    index = int(segment)
    if index < len(container):
        container[index] = value
        return
    if index - len(container) > MAX_ARRAY_GAP:
        raise UpdateError(
            operator, path,
            f"index {index} is {index - len(container)} past the end of the array (at most {MAX_ARRAY_GAP})",
        )
    container.extend([None] * (index - len(container)))
    container.append(value)


def _set(doc: Document, operator: str, path: str, value: Any) -> None:
    """Set ``path`` in place, creating ``{}`` (or ``[]`` before a numeric segment) as needed."""
    segments = path.split(".")
    parent: Any = doc
    for depth, segment in enumerate(segments[:-1]):
        child = _get(parent, segment)
        if child is MISSING or child is None:
            child = [] if _is_index(segments[depth + 1]) else {}
            _put(parent, operator, path, segment, child)
        elif not isinstance(child, (dict, list)):
            where = ".".join(segments[: depth + 1])
            raise UpdateError(
                operator, path,
                f"cannot create field {segments[depth + 1]!r} inside {where!r}, which holds {_describe(child)}; "
                f"$set {where!r} to an object first",
            )
        parent = child
    _put(parent, operator, path, segments[-1], value)


def _unset(doc: Document, path: str) -> None:
    """Remove ``path`` in place; an array element becomes null (arrays keep their positions)."""
    head, _, last = path.rpartition(".")
    parent = _get(doc, head) if head else doc
    if isinstance(parent, dict):
        parent.pop(last, None)
    elif isinstance(parent, list) and _is_index(last) and int(last) < len(parent):
        parent[int(last)] = None


def get_field(doc: Any, path: str, default: Any = None) -> Any:
    """Return the value at a dotted path (numeric segments index arrays), or ``default``.

    There is no implicit traversal into arrays: ``"items.x"`` on a list is missing.

    >>> get_field({"users": [{"age": 30}]}, "users.0.age")
    30
    """
    _check_path("path", path)
    value = _get(doc, path)
    return default if value is MISSING else value


def set_field(doc: Mapping[str, Any], path: str, value: Any) -> Document:
    """Return a copy of ``doc`` with ``value`` at ``path``, creating intermediate objects/arrays.

    >>> set_field({}, "items.0.name", "a")
    {'items': [{'name': 'a'}]}
    """
    _check_path("path", path)
    result = _clone(doc)
    _set(result, "path", path, _clone(value))
    return result


def unset_field(doc: Mapping[str, Any], path: str) -> Document:
    """Return a copy of ``doc`` without ``path`` (a missing path is a no-op).

    >>> unset_field({"a": {"b": 1, "c": 2}}, "a.b")
    {'a': {'c': 2}}
    """
    _check_path("path", path)
    result = _clone(doc)
    _unset(result, path)
    return result


# -- operand checks (run by validate_update, before anything applies) -----------------


def _check_value(operator: str, path: str, value: Any) -> None:
    """The operand must be something a document can hold."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise UpdateError(operator, path, f"object keys must be strings, found {_describe(key)}")
            _check_value(operator, path, item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_value(operator, path, item)
    elif not isinstance(value, (*_SCALARS, bytearray, memoryview)):
        raise UpdateError(operator, path, f"cannot store a value of type {type(value).__name__}: {_describe(value)}")


def _check_any(operator: str, path: str, value: Any) -> None:
    """$unset: the operand is ignored."""


def _check_number(operator: str, path: str, value: Any) -> None:
    if not _is_number(value):
        raise UpdateError(operator, path, f"expected a number, found {_describe(value)}")


def _has_dollar_key(value: Any) -> bool:
    return isinstance(value, Mapping) and any(isinstance(k, str) and k.startswith("$") for k in value)


def _check_modifiers(operator: str, path: str, value: Mapping[str, Any], known: Mapping[str, Any]) -> None:
    for key in value:
        if key not in known:
            raise UpdateError(operator, path, f"unknown modifier {key!r}{did_you_mean(str(key), known)}")
    if "$each" not in value:
        raise UpdateError(operator, path, "modifiers need '$each' (a list of values to add)")
    for key, item in value.items():
        known[key](operator, path, item)


def _check_each(operator: str, path: str, value: Any) -> None:
    if not isinstance(value, (list, tuple)):
        raise UpdateError(operator, path, f"'$each' expects a list, found {_describe(value)}")
    _check_value(operator, path, value)


def _check_int_modifier(name: str) -> Callable[[str, str, Any], None]:
    def check(operator: str, path: str, value: Any) -> None:
        if not _is_int(value):
            raise UpdateError(operator, path, f"{name!r} expects an integer, found {_describe(value)}")

    return check


def _check_direction(operator: str, path: str, value: Any) -> None:
    if not (_is_int(value) and value in (1, -1)):
        raise UpdateError(operator, path, f"'$sort' directions are 1 or -1, found {_describe(value)}")


def _check_sort(operator: str, path: str, value: Any) -> None:
    if isinstance(value, Mapping):
        if not value:
            raise UpdateError(operator, path, "'$sort' by fields needs at least one field, like {'score': -1}")
        for field, direction in value.items():
            _check_path(operator, field)
            _check_direction(operator, path, direction)
    else:
        _check_direction(operator, path, value)


#: $push modifiers -> operand check. Applied as: insert ($position), then $sort, then $slice.
PUSH_MODIFIERS: dict[str, Callable[[str, str, Any], None]] = {
    "$each": _check_each,
    "$position": _check_int_modifier("$position"),
    "$sort": _check_sort,
    "$slice": _check_int_modifier("$slice"),
}

#: $addToSet modifiers -> operand check.
ADD_TO_SET_MODIFIERS: dict[str, Callable[[str, str, Any], None]] = {"$each": _check_each}


def _check_push(operator: str, path: str, value: Any) -> None:
    if _has_dollar_key(value):
        _check_modifiers(operator, path, value, PUSH_MODIFIERS)
    else:
        _check_value(operator, path, value)


def _check_add_to_set(operator: str, path: str, value: Any) -> None:
    if _has_dollar_key(value):
        _check_modifiers(operator, path, value, ADD_TO_SET_MODIFIERS)
    else:
        _check_value(operator, path, value)


def _check_list(operator: str, path: str, value: Any) -> None:
    if not isinstance(value, (list, tuple)):
        raise UpdateError(operator, path, f"expected a list of values, found {_describe(value)}")
    _check_value(operator, path, value)


def _check_pop(operator: str, path: str, value: Any) -> None:
    if not (_is_number(value) and value in (1, -1)):
        raise UpdateError(operator, path, f"expected 1 (remove last) or -1 (remove first), found {_describe(value)}")


def _check_rename(operator: str, path: str, value: Any) -> None:
    if not isinstance(value, str):
        raise UpdateError(operator, path, f"expected the new field path as a string, found {_describe(value)}")
    if value == path or value.startswith(path + ".") or path.startswith(value + "."):
        raise UpdateError(operator, path, f"cannot rename {path!r} to {value!r}: source and target overlap")


def _epoch_ms(now: dt.datetime) -> int:
    return (now - _EPOCH) // _MS


#: $currentDate ``{"$type": ...}`` -> the value written for the mutation time.
CURRENT_DATE_TYPES: dict[str, Callable[[dt.datetime], Any]] = {
    "date": lambda now: now,
    "timestamp": _epoch_ms,
}


def _check_current_date(operator: str, path: str, value: Any) -> None:
    if value is True:
        return
    kind = value.get("$type") if isinstance(value, Mapping) and len(value) == 1 else None
    if isinstance(kind, str) and kind in CURRENT_DATE_TYPES:
        return
    raise UpdateError(
        operator, path,
        f"expected true, {{'$type': 'date'}} or {{'$type': 'timestamp'}}, found {_describe(value)}",
    )


#: $bit operations, applied in this order whatever the key order.
BIT_OPERATIONS: dict[str, Callable[[int, int], int]] = {"and": _op.and_, "or": _op.or_, "xor": _op.xor}


def _check_bit(operator: str, path: str, value: Any) -> None:
    if not isinstance(value, Mapping) or not value:
        raise UpdateError(operator, path, f"expected an object like {{'and': 5}}, found {_describe(value)}")
    for name, operand in value.items():
        if name not in BIT_OPERATIONS:
            hint = did_you_mean(str(name), BIT_OPERATIONS)
            raise UpdateError(operator, path, f"unknown bitwise operation {name!r}{hint}")
        if not _is_int(operand):
            raise UpdateError(operator, path, f"{name!r} expects an integer, found {_describe(operand)}")


#: ``{"$unlink": {"pred": "$all"}}`` removes every link of the predicate.
UNLINK_ALL = "$all"


def _check_predicate(operator: str, path: str) -> None:
    if not path or "." in path or path.startswith("$") or path in UNSAFE_SEGMENTS:
        raise UpdateError(operator, path, "expected a relationship name (no dots, not starting with '$')")


def _check_entity_ids(operator: str, path: str, value: Any) -> None:
    targets = value if isinstance(value, (list, tuple)) else [value]
    if not targets or not all(isinstance(t, str) and t and not t.startswith("$") for t in targets):
        raise UpdateError(
            operator, path, f"expected an entity id like 'users/123' or a list of them, found {_describe(value)}"
        )


def _check_link(operator: str, path: str, value: Any) -> None:
    _check_predicate(operator, path)
    _check_entity_ids(operator, path, value)


def _check_unlink(operator: str, path: str, value: Any) -> None:
    _check_predicate(operator, path)
    if value != UNLINK_ALL:
        _check_entity_ids(operator, path, value)


def _check_embed(operator: str, path: str, value: Any) -> None:
    raise UpdateError(
        operator, path,
        "not supported: embeddings are computed by ParqueDB's AI integration; compute the vector and $set it",
    )


# -- pull conditions ------------------------------------------------------------------


def _comparable(value: Any, operand: Any) -> bool:
    """Range operators only compare values of one kind (numbers, strings, dates, ...), never null."""
    return value is not MISSING and value is not None and operand is not None and _rank(value) == _rank(operand)


#: $pull condition operators -> (operand check, predicate on one array element or field value).
PULL_OPERATORS: dict[str, tuple[Callable[[str, str, Any], None], Callable[[Any, Any], bool]]] = {
    "$eq": (_check_value, deep_equal),
    "$ne": (_check_value, lambda v, x: not deep_equal(v, x)),
    "$gt": (_check_value, lambda v, x: _comparable(v, x) and compare_values(v, x) > 0),
    "$gte": (_check_value, lambda v, x: _comparable(v, x) and compare_values(v, x) >= 0),
    "$lt": (_check_value, lambda v, x: _comparable(v, x) and compare_values(v, x) < 0),
    "$lte": (_check_value, lambda v, x: _comparable(v, x) and compare_values(v, x) <= 0),
    "$in": (_check_list, lambda v, xs: any(deep_equal(v, x) for x in xs)),
    "$nin": (_check_list, lambda v, xs: not any(deep_equal(v, x) for x in xs)),
}


def _check_operator_condition(operator: str, path: str, condition: Mapping[str, Any]) -> None:
    for name, operand in condition.items():
        row = PULL_OPERATORS.get(name)
        if row is None:
            raise UpdateError(
                operator, path,
                f"unsupported condition {name!r} in $pull{did_you_mean(str(name), PULL_OPERATORS)} "
                f"(supported: {', '.join(PULL_OPERATORS)})",
            )
        row[0](operator, path, operand)


def _check_pull(operator: str, path: str, condition: Any) -> None:
    if _has_dollar_key(condition):
        _check_operator_condition(operator, path, condition)
    elif isinstance(condition, Mapping):
        for field, sub in condition.items():
            _check_path(operator, field)
            if _has_dollar_key(sub):
                _check_operator_condition(operator, f"{path}.{field}", sub)
            else:
                _check_value(operator, path, sub)
    else:
        _check_value(operator, path, condition)


def _matches_operators(value: Any, condition: Mapping[str, Any]) -> bool:
    return all(PULL_OPERATORS[name][1](value, operand) for name, operand in condition.items())


def _matches_pull(element: Any, condition: Any) -> bool:
    """Does ``element`` match a $pull condition (see docs/updates.md, $pull)."""
    if _has_dollar_key(condition):
        return _matches_operators(element, condition)
    if isinstance(condition, Mapping) and condition:
        if not isinstance(element, Mapping):
            return False
        for field, sub in condition.items():
            value = _get(element, field)
            if _has_dollar_key(sub):
                if not _matches_operators(value, sub):
                    return False
            elif not deep_equal(value, sub):
                return False
        return True
    return deep_equal(element, condition)


# -- operator implementations (run on a private copy, in ParqueDB's order) ------------


def _array_at(doc: Document, operator: str, path: str) -> list[Any]:
    """The array at ``path`` (missing or null counts as empty); anything else is an error."""
    current = _get(doc, path)
    if current is MISSING or current is None:
        return []
    if not isinstance(current, list):
        raise UpdateError(
            operator, path, f"expected an array field, found {_describe(current)}; $set it to an array first"
        )
    return current


def _numeric_at(doc: Document, operator: str, path: str) -> Any:
    current = _get(doc, path)
    if current is MISSING or current is None:
        return 0
    if not _is_number(current):
        raise UpdateError(operator, path, f"expected a numeric field, found {_describe(current)}")
    return current


def _arith(fn: Callable[[Any, Any], Any], a: Any, b: Any) -> Any:
    if isinstance(a, Decimal) and isinstance(b, float):
        b = Decimal(repr(b))
    elif isinstance(b, Decimal) and isinstance(a, float):
        a = Decimal(repr(a))
    return fn(a, b)


def _apply_set(doc: Document, operator: str, path: str, value: Any, ctx: _Context) -> None:
    _set(doc, operator, path, _clone(value))


def _apply_unset(doc: Document, operator: str, path: str, value: Any, ctx: _Context) -> None:
    _unset(doc, path)


def _apply_inc(doc: Document, operator: str, path: str, amount: Any, ctx: _Context) -> None:
    _set(doc, operator, path, _arith(_op.add, _numeric_at(doc, operator, path), amount))


def _apply_mul(doc: Document, operator: str, path: str, factor: Any, ctx: _Context) -> None:
    _set(doc, operator, path, _arith(_op.mul, _numeric_at(doc, operator, path), factor))


def _apply_bound(sign: int) -> Callable[[Document, str, str, Any, _Context], None]:
    def apply(doc: Document, operator: str, path: str, value: Any, ctx: _Context) -> None:
        current = _get(doc, path)
        if current is MISSING or compare_values(value, current) == sign:
            _set(doc, operator, path, _clone(value))

    return apply


def _sort_key(spec: Any) -> Callable[[Any], Any]:
    if isinstance(spec, Mapping):
        fields = list(spec.items())

        def compare(a: Any, b: Any) -> int:
            for field, direction in fields:
                order = compare_values(_get(a, field), _get(b, field))
                if order:
                    return order * direction
            return 0

        return cmp_to_key(compare)
    return cmp_to_key(lambda a, b: compare_values(a, b) * spec)


def _apply_push(doc: Document, operator: str, path: str, value: Any, ctx: _Context) -> None:
    array = list(_array_at(doc, operator, path))
    if not _has_dollar_key(value):
        array.append(_clone(value))
    else:
        items = _clone(value["$each"])
        position = value.get("$position")
        if position is None:
            array.extend(items)
        else:
            array[position:position] = items
        if "$sort" in value:
            array.sort(key=_sort_key(value["$sort"]))  # stable, like JavaScript's sort
        if "$slice" in value:
            limit = value["$slice"]
            array = array[:limit] if limit >= 0 else array[limit:]
    _set(doc, operator, path, array)


def _apply_pull(doc: Document, operator: str, path: str, condition: Any, ctx: _Context) -> None:
    current = _get(doc, path)
    if current is MISSING or current is None:
        return  # nothing to pull from (ParqueDB and MongoDB: no-op)
    array = _array_at(doc, operator, path)
    _set(doc, operator, path, [item for item in array if not _matches_pull(item, condition)])


def _apply_pull_all(doc: Document, operator: str, path: str, values: Any, ctx: _Context) -> None:
    array = _array_at(doc, operator, path)
    remove = {_equality_key(v) for v in values}
    _set(doc, operator, path, [item for item in array if _equality_key(item) not in remove])


def _apply_add_to_set(doc: Document, operator: str, path: str, value: Any, ctx: _Context) -> None:
    array = list(_array_at(doc, operator, path))
    present = {_equality_key(item) for item in array}
    for item in value["$each"] if _has_dollar_key(value) else [value]:
        key = _equality_key(item)
        if key not in present:
            present.add(key)
            array.append(_clone(item))
    _set(doc, operator, path, array)


def _apply_pop(doc: Document, operator: str, path: str, direction: Any, ctx: _Context) -> None:
    array = _array_at(doc, operator, path)
    _set(doc, operator, path, array[:-1] if direction == 1 else array[1:])


def _apply_rename(doc: Document, operator: str, path: str, target: str, ctx: _Context) -> None:
    value = _get(doc, path)
    if value is MISSING:
        return
    _unset(doc, path)
    _set(doc, operator, target, value)


def _apply_current_date(doc: Document, operator: str, path: str, spec: Any, ctx: _Context) -> None:
    kind = "date" if spec is True else spec["$type"]
    _set(doc, operator, path, CURRENT_DATE_TYPES[kind](ctx.now))


def _apply_set_on_insert(doc: Document, operator: str, path: str, value: Any, ctx: _Context) -> None:
    if ctx.is_insert:
        _set(doc, operator, path, _clone(value))


def _apply_bit(doc: Document, operator: str, path: str, operations: Mapping[str, int], ctx: _Context) -> None:
    current = _numeric_at(doc, operator, path)
    if isinstance(current, float) and current.is_integer():
        current = int(current)
    if not _is_int(current):
        raise UpdateError(operator, path, f"expected an integer field, found {_describe(current)}")
    for name, fn in BIT_OPERATIONS.items():
        if name in operations:
            current = fn(current, operations[name])
    _set(doc, operator, path, current)


def _apply_nothing(doc: Document, operator: str, path: str, value: Any, ctx: _Context) -> None:
    """Relationship operators leave the document alone; see relationship_ops()."""


def _path_only(path: str, value: Any) -> tuple[str, ...]:
    return (path,)


def _source_and_target(path: str, value: Any) -> tuple[str, ...]:
    return (path, value)


def _no_fields(path: str, value: Any) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class UpdateOperator:
    """One row of :data:`UPDATE_OPERATORS`.

    ``apply`` runs one ``path: operand`` entry on the private copy; ``check``
    validates the operand before anything runs; ``fields`` lists the field paths
    the entry modifies (for conflict and system-field checks); ``assigns`` marks
    operators that write their operand verbatim (the only ones that may set
    ``$type``); ``relationship`` marks ``$link``/``$unlink``, which the writer
    executes instead of the document.
    """

    apply: Callable[[Document, str, str, Any, _Context], None]
    check: Callable[[str, str, Any], None]
    fields: Callable[[str, Any], tuple[str, ...]] = _path_only
    assigns: bool = False
    relationship: Literal["link", "unlink"] | None = None


#: Every update operator, in the order ParqueDB applies them (src/mutation/operators.ts).
UPDATE_OPERATORS: dict[str, UpdateOperator] = {
    "$set": UpdateOperator(_apply_set, _check_value, assigns=True),
    "$unset": UpdateOperator(_apply_unset, _check_any),
    "$inc": UpdateOperator(_apply_inc, _check_number),
    "$mul": UpdateOperator(_apply_mul, _check_number),
    "$min": UpdateOperator(_apply_bound(-1), _check_value),
    "$max": UpdateOperator(_apply_bound(1), _check_value),
    "$push": UpdateOperator(_apply_push, _check_push),
    "$pull": UpdateOperator(_apply_pull, _check_pull),
    "$pullAll": UpdateOperator(_apply_pull_all, _check_list),
    "$addToSet": UpdateOperator(_apply_add_to_set, _check_add_to_set),
    "$pop": UpdateOperator(_apply_pop, _check_pop),
    "$rename": UpdateOperator(_apply_rename, _check_rename, fields=_source_and_target),
    "$currentDate": UpdateOperator(_apply_current_date, _check_current_date),
    "$setOnInsert": UpdateOperator(_apply_set_on_insert, _check_value, assigns=True),
    "$bit": UpdateOperator(_apply_bit, _check_bit),
    "$link": UpdateOperator(_apply_nothing, _check_link, fields=_no_fields, relationship="link"),
    "$unlink": UpdateOperator(_apply_nothing, _check_unlink, fields=_no_fields, relationship="unlink"),
    "$embed": UpdateOperator(_apply_nothing, _check_embed, fields=_no_fields),
}


# -- validation -----------------------------------------------------------------------


def _check_field(operator: str, row: UpdateOperator, field: str, value: Any, protected: frozenset[str]) -> None:
    """Path safety plus the system-field rules for one modified field."""
    _check_path(operator, field)
    segments = field.split(".")
    if segments[0] in protected:
        raise UpdateError(
            operator, field,
            f"{segments[0]!r} is a system field maintained by the writer and cannot be changed by an update",
        )
    if field == TYPE_FIELD:
        if not (row.assigns and isinstance(value, str) and value):
            raise UpdateError(
                operator, field, "'$type' can only be set to a non-empty string, with $set or $setOnInsert"
            )
        return
    for segment in segments:
        if segment.startswith("$"):
            raise UpdateError(operator, field, f"field names cannot start with '$' ({segment!r}); rename the field")


def _entries(update: Any, protected: frozenset[str] = frozenset()) -> list[tuple[str, UpdateOperator, str, Any]]:
    """Validate ``update`` and return its (operator, row, path, operand) entries in application order."""
    if not isinstance(update, Mapping):
        raise UpdateError("document", "", f"expected an object of update operators, found {_describe(update)}")
    for key, argument in update.items():
        if not isinstance(key, str) or not key.startswith("$"):
            raise UpdateError(
                "document", str(key),
                f"{key!r} is not an update operator (this looks like a replacement document); "
                f"use {{'$set': {{{key!r}: ...}}}} to change fields or replace() to replace the whole document",
            )
        if key not in UPDATE_OPERATORS:
            raise UpdateError(key, "", f"unknown update operator{did_you_mean(key, UPDATE_OPERATORS)}")
        if not isinstance(argument, Mapping):
            raise UpdateError(key, "", f"expected an object of field paths to operands, found {_describe(argument)}")

    entries: list[tuple[str, UpdateOperator, str, Any]] = []
    modified: dict[str, tuple[str, str]] = {}  # field path -> (operator, path) that modifies it
    parents: dict[str, tuple[str, str]] = {}  # every proper prefix of a modified path -> its owner
    for name, row in UPDATE_OPERATORS.items():
        if name not in update:
            continue
        for path, operand in update[name].items():
            if not isinstance(path, str):
                raise UpdateError(name, repr(path), f"expected a field path string, found {_describe(path)}")
            row.check(name, path, operand)
            for field in row.fields(path, operand):
                _check_field(name, row, field, operand, protected)
                _claim(name, field, modified, parents)
            entries.append((name, row, path, operand))
    return entries


def _claim(
    operator: str, field: str, modified: dict[str, tuple[str, str]], parents: dict[str, tuple[str, str]]
) -> None:
    """Record that ``operator`` modifies ``field``; raise if another entry touches it, a parent or a child."""
    segments = field.split(".")
    prefixes = [".".join(segments[:i]) for i in range(1, len(segments))]
    clash = modified.get(field) or parents.get(field) or next(
        (modified[p] for p in prefixes if p in modified), None
    )
    if clash is not None:
        other_operator, other_field = clash
        raise UpdateError(
            operator, field,
            f"conflicting operators: {field!r} is also modified by {other_operator} at {other_field!r}; "
            "split the update in two",
        )
    modified[field] = (operator, field)
    for prefix in prefixes:
        parents.setdefault(prefix, (operator, field))


def validate_update(update: Update, *, protected: Iterable[str] = ()) -> None:
    """Raise :class:`UpdateError` unless ``update`` is a valid update document.

    Checks everything that does not depend on the document: known operators,
    operand shapes, safe paths, system fields, and that no field (or a parent
    or child of it) is modified by two entries.

    >>> try:
    ...     validate_update({"$set": {"a": 1}, "$inc": {"a.b": 1}})
    ... except UpdateError as err:
    ...     print(err.problem)
    conflicting operators: 'a.b' is also modified by $set at 'a'; split the update in two

    ``protected`` names top-level fields no entry may modify (the writer passes
    :data:`PROTECTED_FIELDS`; plain documents have none).
    """
    _entries(update, frozenset(protected))


def apply_update(
    doc: Mapping[str, Any],
    update: Update,
    *,
    now: dt.datetime | None = None,
    is_insert: bool = False,
    protected: Iterable[str] = (),
) -> Document:
    """Return a new document: ``doc`` with ``update`` applied. ``doc`` and ``update`` are not mutated.

    ``now`` is the mutation time written by ``$currentDate`` (default: the current
    UTC time; naive datetimes are taken as UTC). ``$setOnInsert`` applies only when
    ``is_insert`` is true. ``protected`` names top-level fields the update may not
    touch (the writer passes :data:`PROTECTED_FIELDS`). ``$link``/``$unlink`` leave the document unchanged:
    get them with :func:`relationship_ops`.

    >>> apply_update({"tags": ["a", "b", "a"]}, {"$pull": {"tags": "a"}, "$set": {"n": 1}})
    {'tags': ['b'], 'n': 1}
    """
    if not isinstance(doc, Mapping):
        raise UpdateError("document", "", f"expected a document (an object), found {_describe(doc)}")
    entries = _entries(update, frozenset(protected))
    ctx = _Context(now=to_utc(now) if now is not None else dt.datetime.now(dt.timezone.utc), is_insert=is_insert)
    result = _clone(doc)
    for name, row, path, operand in entries:
        row.apply(result, name, path, operand, ctx)
    return result


def relationship_ops(update: Update) -> list[RelationshipOp]:
    """The ``$link``/``$unlink`` entries of a (valid) update, in application order.

    >>> relationship_ops({"$set": {"a": 1}, "$unlink": {"author": "$all"}})
    [RelationshipOp(kind='unlink', predicate='author', targets=())]
    """
    ops = []
    for _name, row, path, operand in _entries(update):
        if row.relationship is None:
            continue
        if operand == UNLINK_ALL:  # only $unlink accepts it
            targets: tuple[str, ...] = ()
        else:
            targets = tuple(operand) if isinstance(operand, (list, tuple)) else (operand,)
        ops.append(RelationshipOp(row.relationship, path, targets))
    return ops


__all__ = [
    "ADD_TO_SET_MODIFIERS",
    "BIT_OPERATIONS",
    "CURRENT_DATE_TYPES",
    "MAX_ARRAY_GAP",
    "MISSING",
    "PROTECTED_FIELDS",
    "PULL_OPERATORS",
    "PUSH_MODIFIERS",
    "TYPE_FIELD",
    "UNLINK_ALL",
    "UNSAFE_SEGMENTS",
    "UPDATE_OPERATORS",
    "RelationshipOp",
    "UpdateOperator",
    "apply_update",
    "compare_values",
    "deep_equal",
    "get_field",
    "relationship_ops",
    "set_field",
    "unset_field",
    "validate_update",
]
