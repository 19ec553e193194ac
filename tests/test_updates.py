"""Update operators: one table of cases per operator, one of errors, and property tests."""

from __future__ import annotations

import copy
import datetime as dt
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parquedb_ibis.errors import ParqueDBError, UpdateError
from parquedb_ibis.updates import (
    PROTECTED_FIELDS,
    ADD_TO_SET_MODIFIERS,
    BIT_OPERATIONS,
    MAX_ARRAY_GAP,
    PULL_OPERATORS,
    PUSH_MODIFIERS,
    UPDATE_OPERATORS,
    RelationshipOp,
    apply_update,
    compare_values,
    deep_equal,
    get_field,
    relationship_ops,
    set_field,
    unset_field,
    validate_update,
)

NOW = dt.datetime(2024, 1, 15, 12, 0, tzinfo=dt.timezone.utc)
D1 = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
D2 = dt.datetime(2021, 1, 1, tzinfo=dt.timezone.utc)

# -- operators: (doc, update, expected) ---------------------------------------------------

OPERATOR_CASES: dict[str, list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]] = {
    "$set": [
        ({"a": 1}, {"$set": {"a": 2, "b": 3}}, {"a": 2, "b": 3}),
        ({}, {"$set": {"a.b.c": 1}}, {"a": {"b": {"c": 1}}}),
        ({"a": None}, {"$set": {"a.b": 1}}, {"a": {"b": 1}}),
        ({"items": ["a", "b"]}, {"$set": {"items.1": "x"}}, {"items": ["a", "x"]}),
        ({}, {"$set": {"items.0.name": "a"}}, {"items": [{"name": "a"}]}),
        ({"items": [1]}, {"$set": {"items.3": 4}}, {"items": [1, None, None, 4]}),
        ({"m": {"0": "x"}}, {"$set": {"m.0": "y"}}, {"m": {"0": "y"}}),
        ({}, {"$set": {"$type": "User"}}, {"$type": "User"}),
        ({"a": 1}, {"$set": {"a": None}}, {"a": None}),
        ({}, {"$set": {"t": ("x", "y")}}, {"t": ["x", "y"]}),
        ({"a": 1}, {}, {"a": 1}),
        ({"a": 1}, {"$set": {}}, {"a": 1}),
    ],
    "$unset": [
        ({"a": 1, "b": 2}, {"$unset": {"a": ""}}, {"b": 2}),
        ({"a": {"b": 1, "c": 2}}, {"$unset": {"a.b": True}}, {"a": {"c": 2}}),
        ({"a": 1}, {"$unset": {"x.y.z": 1}}, {"a": 1}),
        ({"a": "s"}, {"$unset": {"a.b": 1}}, {"a": "s"}),
        ({"a": [1, 2, 3]}, {"$unset": {"a.1": 1}}, {"a": [1, None, 3]}),
        ({"a": [1]}, {"$unset": {"a.5": 1}}, {"a": [1]}),
    ],
    "$inc": [
        ({"n": 5}, {"$inc": {"n": 1}}, {"n": 6}),
        ({"n": 5}, {"$inc": {"n": -2.5}}, {"n": 2.5}),
        ({}, {"$inc": {"n": 3}}, {"n": 3}),
        ({"n": None}, {"$inc": {"n": 3}}, {"n": 3}),
        ({"s": {"v": 1}}, {"$inc": {"s.v": 1}}, {"s": {"v": 2}}),
        ({"d": Decimal("1.10")}, {"$inc": {"d": 0.5}}, {"d": Decimal("1.60")}),
    ],
    "$mul": [
        ({"p": 10}, {"$mul": {"p": 1.5}}, {"p": 15.0}),
        ({}, {"$mul": {"p": 5}}, {"p": 0}),
        ({"p": None}, {"$mul": {"p": 5}}, {"p": 0}),
        ({"p": 4}, {"$mul": {"p": -1}}, {"p": -4}),
    ],
    "$min": [
        ({"s": 100}, {"$min": {"s": 50}}, {"s": 50}),
        ({"s": 50}, {"$min": {"s": 100}}, {"s": 50}),
        ({}, {"$min": {"s": 7}}, {"s": 7}),
        ({"s": None}, {"$min": {"s": 7}}, {"s": None}),  # null sorts lowest
        ({"w": "banana"}, {"$min": {"w": "apple"}}, {"w": "apple"}),
        ({"w": "a"}, {"$min": {"w": "B"}}, {"w": "B"}),  # code-unit order: 'B' < 'a'
        ({"d": D2}, {"$min": {"d": D1}}, {"d": D1}),
        ({"x": "9"}, {"$min": {"x": 10}}, {"x": 10}),  # numbers sort before strings
    ],
    "$max": [
        ({"s": 50}, {"$max": {"s": 100}}, {"s": 100}),
        ({"s": 100}, {"$max": {"s": 50}}, {"s": 100}),
        ({"s": None}, {"$max": {"s": 7}}, {"s": 7}),
        ({"d": D1}, {"$max": {"d": D2}}, {"d": D2}),
        ({"s": 1}, {"$max": {"s": 1.0}}, {"s": 1}),  # equal: unchanged
    ],
    "$push": [
        ({"t": ["a"]}, {"$push": {"t": "b"}}, {"t": ["a", "b"]}),
        ({}, {"$push": {"t": "a"}}, {"t": ["a"]}),
        ({"t": None}, {"$push": {"t": "a"}}, {"t": ["a"]}),
        ({"t": []}, {"$push": {"t": {"id": 1}}}, {"t": [{"id": 1}]}),
        ({"t": []}, {"$push": {"t": [1, 2]}}, {"t": [[1, 2]]}),
        ({"t": ["a"]}, {"$push": {"t": {"$each": ["b", "c"]}}}, {"t": ["a", "b", "c"]}),
        ({"t": ["a", "c"]}, {"$push": {"t": {"$each": ["b"], "$position": 1}}}, {"t": ["a", "b", "c"]}),
        ({"t": ["a", "b"]}, {"$push": {"t": {"$each": ["x"], "$position": -1}}}, {"t": ["a", "x", "b"]}),
        ({"t": ["a"]}, {"$push": {"t": {"$each": ["x"], "$position": 99}}}, {"t": ["a", "x"]}),
        ({"s": [3, 1]}, {"$push": {"s": {"$each": [4, 2], "$sort": 1}}}, {"s": [1, 2, 3, 4]}),
        ({"s": [3, 1]}, {"$push": {"s": {"$each": [4, 2], "$sort": -1}}}, {"s": [4, 3, 2, 1]}),
        (
            {"s": [{"n": "b", "v": 2}]},
            {"$push": {"s": {"$each": [{"n": "a", "v": 2}, {"n": "c", "v": 1}], "$sort": {"v": -1, "n": 1}}}},
            {"s": [{"n": "a", "v": 2}, {"n": "b", "v": 2}, {"n": "c", "v": 1}]},
        ),
        ({"s": [1, 2]}, {"$push": {"s": {"$each": [3, 4, 5], "$slice": 3}}}, {"s": [1, 2, 3]}),
        ({"s": [1, 2]}, {"$push": {"s": {"$each": [3, 4, 5], "$slice": -2}}}, {"s": [4, 5]}),
        ({"s": [1, 2]}, {"$push": {"s": {"$each": [3], "$slice": 0}}}, {"s": []}),
        ({"s": [50]}, {"$push": {"s": {"$each": [90, 70, 30], "$sort": -1, "$slice": 3}}}, {"s": [90, 70, 50]}),
        ({"s": [None, 2]}, {"$push": {"s": {"$each": [1], "$sort": 1}}}, {"s": [None, 1, 2]}),
    ],
    "$pull": [
        ({"v": [1, 2, 1, 3]}, {"$pull": {"v": 1}}, {"v": [2, 3]}),
        ({"v": [1, 2.0, 3]}, {"$pull": {"v": 2}}, {"v": [1, 3]}),
        ({"v": [True, 1]}, {"$pull": {"v": 1}}, {"v": [True]}),
        ({"n": 1}, {"$pull": {"v": 1}}, {"n": 1}),
        ({"v": None}, {"$pull": {"v": 1}}, {"v": None}),
        ({"v": ["a", "b", "c"]}, {"$pull": {"v": {"$in": ["a", "c"]}}}, {"v": ["b"]}),
        ({"v": ["a", "b", "c"]}, {"$pull": {"v": {"$nin": ["a", "c"]}}}, {"v": ["a", "c"]}),
        ({"v": [10, 50, 80]}, {"$pull": {"v": {"$gte": 50}}}, {"v": [10]}),
        ({"v": [10, 50, "x", None]}, {"$pull": {"v": {"$lt": 60}}}, {"v": ["x", None]}),
        ({"v": ["apple", "kiwi"]}, {"$pull": {"v": {"$gt": "b"}}}, {"v": ["apple"]}),
        ({"v": [1, 5, 9]}, {"$pull": {"v": {"$gt": 2, "$lt": 8}}}, {"v": [1, 9]}),
        ({"v": [1, 2]}, {"$pull": {"v": {"$ne": 1}}}, {"v": [1]}),
        ({"v": [1, 2]}, {"$pull": {"v": {"$eq": 1}}}, {"v": [2]}),
        (
            {"i": [{"n": "a", "v": 1}, {"n": "b", "v": 2}, {"n": "c", "v": 3}]},
            {"$pull": {"i": {"v": {"$gte": 2}}}},
            {"i": [{"n": "a", "v": 1}]},
        ),
        ({"i": [{"id": 1, "x": 1}, {"id": 2}]}, {"$pull": {"i": {"id": 1}}}, {"i": [{"id": 2}]}),
        ({"i": [{"a": {"b": 1}}, {"a": {"b": 2}}]}, {"$pull": {"i": {"a.b": 2}}}, {"i": [{"a": {"b": 1}}]}),
        ({"i": [{}, {"a": 1}, 3]}, {"$pull": {"i": {}}}, {"i": [{"a": 1}, 3]}),
        ({"i": [[1, 2], [2, 1]]}, {"$pull": {"i": [1, 2]}}, {"i": [[2, 1]]}),
        ({"d": [D1, D2]}, {"$pull": {"d": {"$lt": D2}}}, {"d": [D2]}),
    ],
    "$pullAll": [
        ({"t": ["a", "b", "c", "b"]}, {"$pullAll": {"t": ["b", "c"]}}, {"t": ["a"]}),
        ({"t": [{"a": 1, "b": 2}, {"a": 2}]}, {"$pullAll": {"t": [{"b": 2, "a": 1}]}}, {"t": [{"a": 2}]}),
        ({"t": [1, None, 2]}, {"$pullAll": {"t": [None]}}, {"t": [1, 2]}),
        ({"t": [True, 1, 1.0]}, {"$pullAll": {"t": [1]}}, {"t": [True]}),
        ({"t": [[1, 2], [3]]}, {"$pullAll": {"t": [[1, 2]]}}, {"t": [[3]]}),
        ({"t": [D1, D2]}, {"$pullAll": {"t": [D1.astimezone(dt.timezone(dt.timedelta(hours=2)))]}}, {"t": [D2]}),
        ({"t": ["a"]}, {"$pullAll": {"t": []}}, {"t": ["a"]}),
        ({}, {"$pullAll": {"t": ["a"]}}, {"t": []}),
    ],
    "$addToSet": [
        ({"t": ["a"]}, {"$addToSet": {"t": "b"}}, {"t": ["a", "b"]}),
        ({"t": ["a"]}, {"$addToSet": {"t": "a"}}, {"t": ["a"]}),
        ({}, {"$addToSet": {"t": "a"}}, {"t": ["a"]}),
        ({"t": [1]}, {"$addToSet": {"t": {"$each": [1.0, 2, 2, 3]}}}, {"t": [1, 2, 3]}),
        ({"t": [{"a": 1, "b": 2}]}, {"$addToSet": {"t": {"b": 2, "a": 1}}}, {"t": [{"a": 1, "b": 2}]}),
        ({"t": [1]}, {"$addToSet": {"t": True}}, {"t": [1, True]}),
    ],
    "$pop": [
        ({"t": ["a", "b", "c"]}, {"$pop": {"t": 1}}, {"t": ["a", "b"]}),
        ({"t": ["a", "b", "c"]}, {"$pop": {"t": -1}}, {"t": ["b", "c"]}),
        ({"t": []}, {"$pop": {"t": 1}}, {"t": []}),
        ({}, {"$pop": {"t": 1}}, {"t": []}),
    ],
    "$rename": [
        ({"a": 1, "b": 2}, {"$rename": {"a": "x", "b": "y"}}, {"x": 1, "y": 2}),
        ({"u": {"first": "J"}}, {"$rename": {"u.first": "u.name"}}, {"u": {"name": "J"}}),
        ({"n": 1}, {"$rename": {"missing": "x"}}, {"n": 1}),
        ({"a": None}, {"$rename": {"a": "b"}}, {"b": None}),
        ({"s": "v", "t": {}}, {"$rename": {"s": "t.v"}}, {"t": {"v": "v"}}),
    ],
    "$currentDate": [
        ({}, {"$currentDate": {"d": True}}, {"d": NOW}),
        ({}, {"$currentDate": {"d": {"$type": "date"}}}, {"d": NOW}),
        ({}, {"$currentDate": {"ts": {"$type": "timestamp"}}}, {"ts": 1705320000000}),
        ({"audit": {}}, {"$currentDate": {"audit.at": True}}, {"audit": {"at": NOW}}),
    ],
    "$setOnInsert": [
        ({"n": "J"}, {"$setOnInsert": {"role": "user"}}, {"n": "J"}),
    ],
    "$bit": [
        ({"f": 0b1111}, {"$bit": {"f": {"and": 0b1010}}}, {"f": 0b1010}),
        ({"f": 0b0101}, {"$bit": {"f": {"or": 0b1010}}}, {"f": 0b1111}),
        ({"f": 0b1111}, {"$bit": {"f": {"xor": 0b1010}}}, {"f": 0b0101}),
        ({"f": 0b1100}, {"$bit": {"f": {"or": 0b0001, "and": 0b1010}}}, {"f": 0b1001}),  # and, then or
        ({}, {"$bit": {"f": {"or": 5}}}, {"f": 5}),
        ({"f": 12.0}, {"$bit": {"f": {"and": 4}}}, {"f": 4}),
    ],
    "$link": [
        ({"a": 1}, {"$link": {"author": "users/1"}}, {"a": 1}),
    ],
    "$unlink": [
        ({"a": 1}, {"$unlink": {"author": "$all"}}, {"a": 1}),
    ],
}

CASES = [(op, *case) for op, cases in OPERATOR_CASES.items() for case in cases]


def same(actual: Any, expected: Any) -> bool:
    """Equality that also compares types (so True != 1 and 15.0 != 15 are caught)."""
    return repr(actual) == repr(expected)


@pytest.mark.parametrize(
    "operator, doc, update, expected", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_operator_applies(operator: str, doc: dict, update: dict, expected: dict) -> None:
    before = copy.deepcopy(doc)
    result = apply_update(doc, update, now=NOW)
    assert same(result, expected), result
    assert same(doc, before)


def test_every_operator_has_cases() -> None:
    assert set(OPERATOR_CASES) == set(UPDATE_OPERATORS) - {"$embed"}


def test_set_on_insert_applies_only_on_insert() -> None:
    update = {"$set": {"n": "J"}, "$setOnInsert": {"role": "user", "$type": "User"}}
    assert apply_update({}, update, is_insert=True) == {"n": "J", "role": "user", "$type": "User"}
    assert apply_update({}, update, is_insert=False) == {"n": "J"}


def test_operators_apply_in_parquedb_order_whatever_the_key_order() -> None:
    # $set runs before $rename, so the renamed key is added last.
    result = apply_update({"a": 0}, {"$rename": {"a": "b"}, "$set": {"c": 1}})
    assert list(result) == ["c", "b"]
    assert list(UPDATE_OPERATORS)[:3] == ["$set", "$unset", "$inc"]


def test_current_date_takes_naive_now_as_utc_and_defaults_to_the_clock() -> None:
    result = apply_update({}, {"$currentDate": {"d": True}}, now=dt.datetime(2024, 1, 1))
    assert result["d"] == dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    before = dt.datetime.now(dt.timezone.utc)
    stamped = apply_update({}, {"$currentDate": {"d": True}})["d"]
    assert stamped.tzinfo is not None and before <= stamped <= dt.datetime.now(dt.timezone.utc)


def test_result_shares_no_containers_with_inputs() -> None:
    doc = {"a": {"b": [1]}, "keep": {"x": 1}}
    value = {"deep": [1, 2]}
    update = {"$set": {"v": value}, "$push": {"a.b": value}}
    result = apply_update(doc, update)
    result["v"]["deep"].append(3)
    result["keep"]["x"] = 2
    result["a"]["b"][1]["deep"].clear()
    assert doc == {"a": {"b": [1]}, "keep": {"x": 1}}
    assert value == {"deep": [1, 2]}


def test_relationship_ops_extracts_link_and_unlink() -> None:
    update = {"$link": {"tags": ["tags/a", "tags/b"]}, "$unlink": {"author": "$all", "old": "users/2"}}
    assert relationship_ops(update) == [
        RelationshipOp("link", "tags", ("tags/a", "tags/b")),
        RelationshipOp("unlink", "author", ()),
        RelationshipOp("unlink", "old", ("users/2",)),
    ]
    assert relationship_ops({"$set": {"a": 1}}) == []


# -- errors: (doc, update, operator, path, message regex) -------------------------------

ERROR_CASES: list[tuple[str, Any, Any, str, str, str]] = [
    # id, doc, update, .operator, .path, message regex
    ("update-not-object", {}, [("$set", {})], "document", "", r"expected an object of update operators"),
    ("replacement-doc", {}, {"name": "x"}, "document", "name", r"not an update operator.*replace\(\)"),
    ("unknown-op", {}, {"$sett": {"a": 1}}, "$sett", "", r"unknown update operator; did you mean '\$set'\?"),
    ("unknown-op-no-hint", {}, {"$zzzzzz": {}}, "$zzzzzz", "", r"unknown update operator$"),
    ("arg-not-object", {}, {"$set": [1]}, "$set", "", r"expected an object of field paths"),
    ("conflict-same", {}, {"$set": {"n": 1}, "$inc": {"n": 1}}, "$inc", "n", r"conflicting operators: 'n'.*\$set"),
    ("conflict-parent", {}, {"$set": {"a": {}}, "$inc": {"a.b": 1}}, "$inc", "a.b", r"conflicting.*\$set at 'a'"),
    ("conflict-child", {}, {"$set": {"a.b": 1}, "$unset": {"a": 1}}, "$unset", "a", r"conflicting.*'a\.b'"),
    ("conflict-in-one-op", {}, {"$set": {"a": 1, "a.b": 2}}, "$set", "a.b", r"conflicting"),
    ("conflict-rename-src", {}, {"$set": {"o": 1}, "$rename": {"o": "n"}}, "$rename", "o", r"conflicting"),
    ("conflict-rename-dst", {}, {"$set": {"n": 1}, "$rename": {"o": "n"}}, "$rename", "n", r"conflicting"),
    ("conflict-rename-chain", {}, {"$rename": {"a": "b", "b": "c"}}, "$rename", "b", r"conflicting"),
    ("conflict-set-on-insert", {}, {"$set": {"a": 1}, "$setOnInsert": {"a": 2}}, "$setOnInsert", "a", r"conflict"),
    ("inc-operand-str", {}, {"$inc": {"n": "1"}}, "$inc", "n", r"expected a number, found '1' \(str\)"),
    ("inc-operand-bool", {}, {"$inc": {"n": True}}, "$inc", "n", r"expected a number, found True \(bool\)"),
    ("mul-operand", {}, {"$mul": {"n": None}}, "$mul", "n", r"expected a number"),
    ("inc-field-str", {"n": "x"}, {"$inc": {"n": 1}}, "$inc", "n", r"expected a numeric field, found 'x' \(str\)"),
    ("inc-field-bool", {"n": False}, {"$inc": {"n": 1}}, "$inc", "n", r"numeric field, found False"),
    ("mul-field-str", {"n": "x"}, {"$mul": {"n": 2}}, "$mul", "n", r"expected a numeric field"),
    ("push-scalar", {"t": "a"}, {"$push": {"t": "b"}}, "$push", "t", r"expected an array field.*\$set it"),
    ("push-object", {"t": {}}, {"$push": {"t": "b"}}, "$push", "t", r"expected an array field"),
    ("add-to-set-scalar", {"t": 1}, {"$addToSet": {"t": 2}}, "$addToSet", "t", r"expected an array field"),
    ("pull-scalar", {"t": 1}, {"$pull": {"t": 1}}, "$pull", "t", r"expected an array field"),
    ("pull-all-scalar", {"t": 1}, {"$pullAll": {"t": [1]}}, "$pullAll", "t", r"expected an array field"),
    ("pop-scalar", {"t": 1}, {"$pop": {"t": 1}}, "$pop", "t", r"expected an array field"),
    ("push-unknown-mod", {}, {"$push": {"t": {"$each": [], "$sortt": 1}}}, "$push", "t", r"did you mean '\$sort'"),
    ("push-no-each", {}, {"$push": {"t": {"$slice": 1}}}, "$push", "t", r"need '\$each'"),
    ("push-each-not-list", {}, {"$push": {"t": {"$each": 1}}}, "$push", "t", r"'\$each' expects a list"),
    ("push-slice-float", {}, {"$push": {"t": {"$each": [], "$slice": 1.5}}}, "$push", "t", r"'\$slice' expects"),
    ("push-position-bool", {}, {"$push": {"t": {"$each": [], "$position": True}}}, "$push", "t", r"expects an"),
    ("push-sort-bad", {}, {"$push": {"t": {"$each": [], "$sort": 2}}}, "$push", "t", r"1 or -1"),
    ("push-sort-empty", {}, {"$push": {"t": {"$each": [], "$sort": {}}}}, "$push", "t", r"at least one"),
    ("add-to-set-mod", {}, {"$addToSet": {"t": {"$each": [], "$slice": 1}}}, "$addToSet", "t", r"unknown mod"),
    ("pull-bad-cond", {}, {"$pull": {"t": {"$regex": "a"}}}, "$pull", "t", r"unsupported condition '\$regex'"),
    ("pull-mixed-cond", {}, {"$pull": {"t": {"$gt": 1, "x": 1}}}, "$pull", "t", r"unsupported condition 'x'"),
    ("pull-in-not-list", {}, {"$pull": {"t": {"$in": 1}}}, "$pull", "t", r"expected a list"),
    ("pull-field-cond", {}, {"$pull": {"t": {"v": {"$exists": 1}}}}, "$pull", "t.v", r"unsupported"),
    ("pull-all-not-list", {}, {"$pullAll": {"t": "a"}}, "$pullAll", "t", r"expected a list of values"),
    ("pop-bad", {}, {"$pop": {"t": 2}}, "$pop", "t", r"expected 1 .* or -1"),
    ("pop-bool", {}, {"$pop": {"t": True}}, "$pop", "t", r"expected 1"),
    ("rename-not-str", {}, {"$rename": {"a": 1}}, "$rename", "a", r"new field path as a string"),
    ("rename-same", {}, {"$rename": {"a": "a"}}, "$rename", "a", r"overlap"),
    ("rename-into-self", {}, {"$rename": {"a": "a.b"}}, "$rename", "a", r"overlap"),
    ("current-date-bad", {}, {"$currentDate": {"d": False}}, "$currentDate", "d", r"expected true"),
    ("current-date-type", {}, {"$currentDate": {"d": {"$type": "x"}}}, "$currentDate", "d", r"'timestamp'"),
    ("bit-not-object", {}, {"$bit": {"f": 1}}, "$bit", "f", r"expected an object like"),
    ("bit-unknown", {}, {"$bit": {"f": {"nand": 1}}}, "$bit", "f", r"unknown bitwise operation 'nand'"),
    ("bit-float", {}, {"$bit": {"f": {"and": 1.5}}}, "$bit", "f", r"'and' expects an integer"),
    ("bit-field-str", {"f": "x"}, {"$bit": {"f": {"and": 1}}}, "$bit", "f", r"numeric field"),
    ("bit-field-float", {"f": 1.5}, {"$bit": {"f": {"and": 1}}}, "$bit", "f", r"integer field"),
    ("system-id", {}, {"$set": {"$id": "x"}}, "$set", "$id", r"'\$id' is a system field"),
    ("system-created-at", {}, {"$currentDate": {"createdAt": True}}, "$currentDate", "createdAt", r"system"),
    ("system-created-by", {}, {"$set": {"createdBy.name": "x"}}, "$set", "createdBy.name", r"system field"),
    ("system-version", {}, {"$inc": {"version": 1}}, "$inc", "version", r"system field"),
    ("system-on-insert", {}, {"$setOnInsert": {"version": 1}}, "$setOnInsert", "version", r"system"),
    ("system-rename-to", {}, {"$rename": {"a": "$id"}}, "$rename", "$id", r"system field"),
    ("type-not-string", {}, {"$set": {"$type": 1}}, "$set", "$type", r"non-empty string"),
    ("type-unset", {}, {"$unset": {"$type": 1}}, "$unset", "$type", r"with \$set or \$setOnInsert"),
    ("dollar-field", {}, {"$set": {"a.$b": 1}}, "$set", "a.$b", r"cannot start with '\$'"),
    ("proto", {}, {"$set": {"__proto__.x": 1}}, "$set", "__proto__.x", r"prototype pollution"),
    ("constructor", {}, {"$inc": {"a.constructor": 1}}, "$inc", "a.constructor", r"prototype pollution"),
    ("prototype-rename", {}, {"$rename": {"a": "prototype"}}, "$rename", "prototype", r"prototype pollution"),
    ("pull-proto", {}, {"$pull": {"t": {"__proto__": 1}}}, "$pull", "__proto__", r"prototype pollution"),
    ("empty-segment", {}, {"$set": {"a..b": 1}}, "$set", "a..b", r"empty path segment"),
    ("empty-path", {}, {"$set": {"": 1}}, "$set", "", r"empty path segment"),
    ("set-through-scalar", {"a": 5}, {"$set": {"a.b": 1}}, "$set", "a.b", r"inside 'a', which holds 5"),
    ("name-on-array", {"a": [1]}, {"$set": {"a.x": 1}}, "$set", "a.x", r"on an array; use a numeric index"),
    ("gap", {"a": []}, {"$set": {f"a.{MAX_ARRAY_GAP + 1}": 1}}, "$set", f"a.{MAX_ARRAY_GAP + 1}", r"past the end"),
    ("unstorable", {}, {"$set": {"a": {1, 2}}}, "$set", "a", r"cannot store a value of type set"),
    ("non-str-key", {}, {"$set": {"a": {1: 2}}}, "$set", "a", r"keys must be strings"),
    ("link-bad", {}, {"$link": {"author": 5}}, "$link", "author", r"entity id"),
    ("link-all", {}, {"$link": {"author": "$all"}}, "$link", "author", r"entity id"),
    ("link-dotted", {}, {"$link": {"a.b": "users/1"}}, "$link", "a.b", r"relationship name"),
    ("embed", {}, {"$embed": {"v": "text"}}, "$embed", "v", r"not supported"),
    ("doc-not-object", None, {"$set": {"a": 1}}, "document", "", r"expected a document"),
]


def test_system_fields_are_plain_fields_unless_protected() -> None:
    """Upstream's applyUpdate treats createdAt/version as ordinary fields; the writer protects them."""
    assert apply_update({"version": 1}, {"$inc": {"version": 1}}) == {"version": 2}
    with pytest.raises(UpdateError, match="system field"):
        apply_update({"version": 1}, {"$inc": {"version": 1}}, protected=PROTECTED_FIELDS)


@pytest.mark.parametrize(
    "doc, update, operator, path, message", [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_bad_update_raises_update_error(doc: Any, update: Any, operator: str, path: str, message: str) -> None:
    before = copy.deepcopy(doc)
    with pytest.raises(UpdateError) as info:
        apply_update(doc, update, protected=PROTECTED_FIELDS)
    err = info.value
    assert (err.operator, err.path) == (operator, path)
    assert re.search(message, err.problem), err.problem
    assert str(err).startswith(f"update {operator}")
    assert isinstance(err, ParqueDBError) and isinstance(err, ValueError)
    assert doc == before


@pytest.mark.parametrize(
    "doc, update, operator, path", [c[1:5] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_validate_update_raises_exactly_the_document_free_errors(
    doc: Any, update: Any, operator: str, path: str
) -> None:
    if doc != {}:
        validate_update(update, protected=PROTECTED_FIELDS)  # the update itself is valid; only this document makes it fail
        return
    with pytest.raises(UpdateError) as info:
        validate_update(update, protected=PROTECTED_FIELDS)
    assert (info.value.operator, info.value.path) == (operator, path)


def test_error_message_shape() -> None:
    with pytest.raises(UpdateError) as info:
        apply_update({"n": "x"}, {"$inc": {"n": 1}})
    assert str(info.value) == "update $inc at 'n': expected a numeric field, found 'x' (str)"


# -- path helpers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc, path, expected",
    [
        ({"a": {"b": 1}}, "a.b", 1),
        ({"a": [10, 20]}, "a.1", 20),
        ({"a": [10, 20]}, "a.2", "<missing>"),
        ({"a": [{"x": 1}]}, "a.x", "<missing>"),  # no implicit traversal into arrays
        ({"a": "str"}, "a.length", "<missing>"),
        ({"a": None}, "a.b", "<missing>"),
        ({"a": {"0": "k"}}, "a.0", "k"),
        (None, "a", "<missing>"),
        ({"a": None}, "a", None),
    ],
)
def test_get_field(doc: Any, path: str, expected: Any) -> None:
    assert get_field(doc, path, "<missing>") == expected


def test_set_and_unset_field_return_new_documents() -> None:
    doc = {"a": {"b": 1}}
    assert set_field(doc, "a.c", 2) == {"a": {"b": 1, "c": 2}}
    assert set_field({}, "items.0", "x") == {"items": ["x"]}
    assert unset_field(doc, "a.b") == {"a": {}}
    assert doc == {"a": {"b": 1}}


@pytest.mark.parametrize("path", ["__proto__", "data.__proto__", "constructor.prototype.x", "prototype"])
@pytest.mark.parametrize("helper", ["get", "set", "unset"])
def test_path_helpers_reject_prototype_pollution(helper: str, path: str) -> None:
    calls = {
        "get": lambda: get_field({}, path),
        "set": lambda: set_field({}, path, 1),
        "unset": lambda: unset_field({}, path),
    }
    with pytest.raises(UpdateError, match="prototype pollution"):
        calls[helper]()


# -- value semantics -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "a, b, equal",
    [
        ({"a": 1, "b": [1, 2]}, {"b": [1.0, 2], "a": 1}, True),
        (1, 1.0, True),
        (1, Decimal("1.0"), True),
        (True, 1, False),
        ([1, 2], [2, 1], False),
        (None, None, True),
        ({"a": 1}, {"a": 1, "b": None}, False),
        (float("nan"), float("nan"), False),
        (D1, D1.astimezone(dt.timezone(dt.timedelta(hours=-5))), True),
        (D1, D1.date(), False),
        ("1", 1, False),
        (b"x", b"x", True),
    ],
)
def test_deep_equal(a: Any, b: Any, equal: bool) -> None:
    assert deep_equal(a, b) is equal
    assert deep_equal(b, a) is equal


@pytest.mark.parametrize(
    "a, b, order",
    [
        (None, 0, -1),
        (1, 2, -1),
        (2.5, 2, 1),
        (1, 1.0, 0),
        ("B", "a", -1),
        ("\uffff", "\U0001f600", 1),  # UTF-16 code units: U+FFFF sorts after a surrogate pair
        (D1, D2, -1),
        (False, True, -1),
        (10, "9", -1),  # numbers < strings
        ("z", {"a": 1}, -1),  # strings < objects
        ({"a": 1}, [1], -1),  # objects < arrays
        ([1], b"", -1),  # arrays < bytes
        (b"", False, -1),  # bytes < booleans
        (True, D1, -1),  # booleans < dates
        ([1, 2], [1, 3], -1),
        ([1], [1, 0], -1),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}, 0),
        ({"a": 1}, {"a": 2}, -1),
        (float("nan"), -1e308, -1),
        (D1.date(), D1, -1),
    ],
)
def test_compare_values(a: Any, b: Any, order: int) -> None:
    assert compare_values(a, b) == order
    assert compare_values(b, a) == -order


# -- documentation ----------------------------------------------------------------------------


def test_every_operator_and_modifier_is_documented() -> None:
    text = (Path(__file__).parents[1] / "docs" / "updates.md").read_text(encoding="utf-8")
    names = [*UPDATE_OPERATORS, *PUSH_MODIFIERS, *ADD_TO_SET_MODIFIERS, *PULL_OPERATORS, *BIT_OPERATIONS]
    missing = [name for name in names if f"`{name}`" not in text]
    assert not missing


# -- properties ---------------------------------------------------------------------------------

FIELDS = st.sampled_from(["a", "b", "c", "a.b", "a.0", "b.c", "c.1.a", "$type", "version"])
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 1000),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=4),
    st.datetimes(timezones=st.just(dt.timezone.utc)),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["a", "b", "c", "0", "1"]), inner, max_size=3)
    ),
    max_leaves=8,
)
documents = st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), values, max_size=4)
operands = st.one_of(
    values,
    st.integers(-5, 5),
    st.fixed_dictionaries({"$each": st.lists(values, max_size=3)}, optional={"$sort": st.sampled_from([1, -1])}),
    st.fixed_dictionaries({"$gt": st.integers(-5, 5)}),
    st.fixed_dictionaries({"and": st.integers(0, 15)}),
    st.just({"$type": "timestamp"}),
    st.just(True),
    FIELDS,
)
updates = st.dictionaries(
    st.sampled_from([*UPDATE_OPERATORS, "name", "$nope"]),
    st.dictionaries(FIELDS, operands, min_size=1, max_size=2),
    max_size=3,
)


def _containers(value: Any) -> set[int]:
    found: set[int] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            found.add(id(item))
            stack.extend(item.values())
        elif isinstance(item, list):
            found.add(id(item))
            stack.extend(item)
    return found


@given(documents, updates, st.booleans())
def test_apply_update_is_pure_and_deterministic(doc: dict, update: dict, is_insert: bool) -> None:
    doc_before, update_before = repr(doc), repr(update)
    try:
        first = apply_update(doc, update, now=NOW, is_insert=is_insert)
    except UpdateError:
        assert (repr(doc), repr(update)) == (doc_before, update_before)
        with pytest.raises(UpdateError):
            apply_update(doc, update, now=NOW, is_insert=is_insert)
        return
    assert (repr(doc), repr(update)) == (doc_before, update_before)
    second = apply_update(doc, update, now=NOW, is_insert=is_insert)
    assert repr(first) == repr(second)
    assert not _containers(first) & (_containers(doc) | _containers(update))


@given(values, values, values)
def test_compare_values_is_a_total_order_consistent_with_deep_equal(a: Any, b: Any, c: Any) -> None:
    assert compare_values(a, b) == -compare_values(b, a)
    assert (compare_values(a, b) == 0) == deep_equal(a, b)
    if compare_values(a, b) <= 0 and compare_values(b, c) <= 0:
        assert compare_values(a, c) <= 0
