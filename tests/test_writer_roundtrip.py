"""Round trip: generated documents of every type come back equal, type for type.

With and without a schema, before and after a checkpoint. Equality is strict:
``1`` and ``1.0`` differ, as do ``None`` and a missing key.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math

from hypothesis import given, settings
from hypothesis import strategies as st

import parquedb_ibis

UTC = dt.timezone.utc
_counter = itertools.count()

keys = st.text(min_size=1, max_size=8).filter(lambda k: not k.startswith("$") and "." not in k)
datetimes = st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2200, 1, 1), timezones=st.just(UTC))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([-(2**63), 2**63 - 1, 0, -1]),
    st.floats(allow_nan=False),
    st.sampled_from([1.0, -0.5, 1e300, math.inf, -math.inf]),
    st.text(max_size=20),
    st.sampled_from(["", "ü", "日本語", "\x00", "a'b\"c", "🙂"]),
    datetimes,
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
                      max_leaves=12)
free_docs = st.dictionaries(keys, values, max_size=6)


def strict(value):
    """A comparable form that tells int from float and bool from int."""
    if isinstance(value, dict):
        return ("dict", tuple(sorted((k, strict(v)) for k, v in value.items())))
    if isinstance(value, list):
        return ("list", tuple(strict(v) for v in value))
    if isinstance(value, float) and value == 0:
        return ("float", "0")  # -0.0 and 0.0 are one JSON number
    return (type(value).__name__, value)


SCHEMA = {"title": "string!", "n": "int?", "x": "float?", "flag": "boolean?", "at": "timestamp?",
          "meta": "variant?", "tags": "string[]", "events": "variant[]"}


@st.composite
def typed_docs(draw):
    doc = draw(free_docs.map(lambda d: {k: v for k, v in d.items() if k not in SCHEMA}))
    doc["title"] = draw(st.text(max_size=10))
    optional = {
        "n": st.integers(min_value=-(2**63), max_value=2**63 - 1),
        "x": st.floats(allow_nan=False),
        "flag": st.booleans(),
        "at": datetimes,
        "meta": values,
        "tags": st.lists(st.text(max_size=5), max_size=3),
        "events": st.lists(values, max_size=3),
    }
    for name, strategy in optional.items():
        choice = draw(st.sampled_from(["absent", "none", "value"]))
        if choice == "value":
            doc[name] = draw(strategy)
        elif choice == "none" and name not in ("tags", "events"):
            doc[name] = None
    return doc


def check_round_trip(tmp_path_factory, docs, schema):
    db = parquedb_ibis.connect(str(tmp_path_factory.mktemp("rt")), flush_age=None)
    coll = db.collection(f"c{next(_counter)}", schema=schema)
    written = coll.insert_many(docs)
    coll.flush()
    for phase in ("segments", "checkpoint"):
        fresh = type(db)(db.store, flush_age=None).collection(coll.ns)
        by_id = {d["$id"]: d for d in fresh.find()}
        assert len(by_id) == len(written), phase
        for original, stored in zip(docs, written, strict=True):
            got = by_id[stored["$id"]]
            assert strict(got) == strict(stored), phase
            assert strict({k: v for k, v in got.items() if k in original}) == strict(original), phase
            assert strict(fresh.get(stored["$id"])) == strict(stored), phase
        db.checkpoint()
    db.close()


@settings(max_examples=25, deadline=None)
@given(st.lists(free_docs, min_size=1, max_size=5))
def test_documents_round_trip_without_a_schema(tmp_path_factory, docs):
    check_round_trip(tmp_path_factory, docs, None)


@settings(max_examples=25, deadline=None)
@given(st.lists(typed_docs(), min_size=1, max_size=5))
def test_documents_round_trip_with_a_schema(tmp_path_factory, docs):
    check_round_trip(tmp_path_factory, docs, SCHEMA)
