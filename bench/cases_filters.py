"""Filters: compile time, and find() vs hand-written DuckDB SQL over the same files.

One 1M-row collection (typed columns for the request fields, the nested
``event`` object undeclared so it lives in the ``$data`` variant column) is
written once per run and checkpointed into row groups sorted by ``$id``.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import shutil
import statistics
import tempfile
import time
from functools import cache
from pathlib import Path

import duckdb
from sqlglot import exp

import parquedb_ibis
from bench.harness import Case
from parquedb_ibis.compile.filters import compile_filter

ROWS = 1_000_000
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
COLOS = ["SJC", "LAX", "IAD", "FRA", "AMS", "NRT", "SIN", "GRU"]
METHODS = ["GET", "GET", "GET", "POST", "PUT", "DELETE"]


def _docs(start: int, n: int, rng: random.Random) -> list[dict]:
    out = []
    for i in range(start, start + n):
        status = rng.choices([200, 201, 304, 404, 500, 503], [80, 5, 5, 6, 3, 1])[0]
        colo, method = rng.choice(COLOS), rng.choice(METHODS)
        out.append({
            "$id": f"r{i:08d}",
            "status": status, "method": method, "colo": colo, "latency": rng.lognormvariate(3, 1),
            "ts": T0 + dt.timedelta(seconds=i * 3), "url": f"/api/v{rng.randint(1, 3)}/{rng.choice(['users', 'posts', 'items'])}/{i % 997}",
            "event": {"request": {"method": method, "cf": {"colo": colo, "country": rng.choice(["US", "DE", "JP", "BR"])}},
                      "response": {"status": status}, "timing": {"wall": rng.randint(1, 3000)}},
        })
    return out


@cache
def dataset() -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-filters-"))
    db = parquedb_ibis.connect(str(tmp / "store"), flush_age=None, flush_every=10**9, auto_checkpoint=None)
    schema = {"status": "int", "method": "string", "colo": "string", "latency": "float", "ts": "timestamp", "url": "string"}
    coll = db.collection("requests", schema=schema)
    rng = random.Random(3)
    batch = 50_000
    for start in range(0, ROWS, batch):
        coll.insert_many(_docs(start, batch, rng))
        coll.flush()
    db.checkpoint()
    files = [db.store.url_for(k) for k in coll.refresh().checkpoint.files]
    return {"tmp": tmp, "db": db, "coll": coll, "files": files, "con": duckdb.connect()}


# Selective filters (≈1–3k of 1M rows), so the scan, not turning rows into documents, is what is compared.
TYPED = [
    ("status = 503, colo = NRT", {"status": 503, "colo": "NRT"}, "status = 503 AND colo = 'NRT'"),
    ("method, status, colo", {"method": "POST", "status": 201, "colo": "FRA"},
     "method = 'POST' AND status = 201 AND colo = 'FRA'"),
    ("colo $in, latency > 300", {"colo": {"$in": ["NRT", "SIN", "GRU"]}, "latency": {"$gt": 300}},
     "colo IN ('NRT', 'SIN', 'GRU') AND latency > 300"),
    ("latency > 400", {"latency": {"$gt": 400}}, "latency > 400"),
    ("ts range (2 h)", {"ts": {"$gte": T0 + dt.timedelta(days=10), "$lt": T0 + dt.timedelta(days=10, hours=2)}},
     "ts >= TIMESTAMPTZ '2026-01-11 00:00:00+00' AND ts < TIMESTAMPTZ '2026-01-11 02:00:00+00'"),
    ("$or", {"$or": [{"status": 503, "colo": "SJC"}, {"status": 404, "colo": "FRA", "method": "DELETE"}]},
     "(status = 503 AND colo = 'SJC') OR (status = 404 AND colo = 'FRA' AND method = 'DELETE')"),
    ("$ne, $gte, eq", {"method": {"$ne": "GET"}, "status": {"$gte": 500}, "colo": "AMS"},
     "method IS DISTINCT FROM 'GET' AND status >= 500 AND colo = 'AMS'"),
    ("$nin, eq, eq", {"colo": {"$nin": ["SJC", "LAX"]}, "status": 503, "method": "PUT"},
     "(colo IS NULL OR colo NOT IN ('SJC', 'LAX')) AND status = 503 AND method = 'PUT'"),
    ("$regex prefix", {"url": {"$regex": "^/api/v3/items/99"}}, "regexp_matches(url, '^/api/v3/items/99')"),
    ("$id range (sorted)", {"$id": {"$gte": "requests/r00500000", "$lt": "requests/r00501000"}},
     "\"$id\" >= 'requests/r00500000' AND \"$id\" < 'requests/r00501000'"),
]

VARIANT = [
    ("event.response.status, cf.colo", {"event.response.status": 503, "event.request.cf.colo": "SJC"},
     "(\"$data\"->>'$.event.response.status')::INTEGER = 503 AND (\"$data\"->>'$.event.request.cf.colo') = 'SJC'"),
    ("cf.colo, status, cf.country", {"event.request.cf.colo": "SJC", "event.response.status": 404, "event.request.cf.country": "JP"},
     "(\"$data\"->>'$.event.request.cf.colo') = 'SJC' AND (\"$data\"->>'$.event.response.status')::INTEGER = 404 "
     "AND (\"$data\"->>'$.event.request.cf.country') = 'JP'"),
    ("request.method $in, timing.wall", {"event.request.method": {"$in": ["PUT", "DELETE"]}, "event.timing.wall": {"$gt": 2900}},
     "(\"$data\"->>'$.event.request.method') IN ('PUT', 'DELETE') AND (\"$data\"->>'$.event.timing.wall')::INTEGER > 2900"),
    ("cf.country $ne, status, method", {"event.request.cf.country": {"$ne": "US"}, "event.response.status": 503,
                                        "event.request.method": "POST"},
     "(\"$data\"->>'$.event.request.cf.country') IS DISTINCT FROM 'US' AND (\"$data\"->>'$.event.response.status')::INTEGER = 503 "
     "AND (\"$data\"->>'$.event.request.method') = 'POST'"),
    ("timing.wall > 2995", {"event.timing.wall": {"$gt": 2995}}, "(\"$data\"->>'$.event.timing.wall')::INTEGER > 2995"),
]


def _hand_sql(files: list[str], where: str) -> str:
    # Hand-written, as a user would type it: the file list is quoted by sqlglot, the predicate is the case's.
    source = exp.func("read_parquet", exp.Array(expressions=[exp.Literal.string(f) for f in files])).sql("duckdb")
    return f"SELECT * FROM {source} WHERE {where} AND \"deletedAt\" IS NULL"  # noqa: S608 - benchmark baseline text


def _find_case(group: str, name: str, filter_: dict, where: str, tolerance: float) -> Case:
    def setup():
        data = dataset()
        hand = _hand_sql(data["files"], where)
        got = data["coll"].find(filter_)
        expect = data["con"].execute(hand).fetchall()
        assert len(got) == len(expect), (name, len(got), len(expect))
        return {**data, "hand": hand}

    def baseline(state) -> int:
        return len(state["con"].execute(state["hand"]).fetchall())

    def candidate(state) -> int:
        return len(state["coll"].find(filter_))

    return Case(group, name, setup, baseline, candidate, baseline_label="hand-written DuckDB",
                candidate_label="coll.find()", goal=f"median ratio <= {tolerance}", unit="rows", repeat=5)


def _compile_case() -> Case:
    vectors = Path(__file__).parent.parent / "tests" / "vectors" / "filters.jsonl"

    def setup():
        filters = []
        for line in vectors.read_text().splitlines():
            doc = json.loads(line)["filter"]
            try:
                compile_filter(doc)
            except Exception:  # noqa: BLE001 - vectors that must raise are not timed
                continue
            filters.append(doc)
        return {"filters": filters}

    def baseline(state) -> int:  # the floor: json round trip of the same documents
        for f in state["filters"]:
            json.loads(json.dumps(f))
        return len(state["filters"])

    def candidate(state) -> int:
        for f in state["filters"]:
            compile_filter(f)
        return len(state["filters"])

    def notes(state) -> str:
        times = []
        for f in state["filters"]:
            start = time.perf_counter()
            compile_filter(f)
            times.append(time.perf_counter() - start)
        return f"compile_filter per filter over {len(times)} vector filters: median {statistics.median(times) * 1e6:.0f} µs (goal < 200 µs)"

    return Case("filters", "compile every vector filter", setup, baseline, candidate, baseline_label="json round trip",
                candidate_label="compile_filter", unit="filters", notes=notes)


def _pruning_case() -> Case:
    """A selective filter on the sorted $id column vs the same selectivity on an unsorted column."""
    def setup():
        data = dataset()
        sorted_where = TYPED[-1][2]
        plan = data["con"].execute("EXPLAIN ANALYZE " + _hand_sql(data["files"], sorted_where)).fetchall()[0][-1]
        return {**data, "sorted": _hand_sql(data["files"], sorted_where),
                "unsorted": _hand_sql(data["files"], "latency BETWEEN 20.0 AND 20.05"), "plan": plan}

    def baseline(state) -> int:
        return len(state["con"].execute(state["unsorted"]).fetchall())

    def candidate(state) -> int:
        return len(state["con"].execute(state["sorted"]).fetchall())

    def notes(state) -> str:
        scan = [line for line in state["plan"].splitlines() if "Filters" in line or "rows" in line.lower()]
        return "sorted $id range scan: " + " ".join(s.strip("│ ") for s in scan[:6])

    return Case("filters", "selective $id range (row groups pruned) vs unsorted column", setup, baseline, candidate,
                baseline_label="unsorted column, similar selectivity", candidate_label="sorted $id range", unit="rows",
                notes=notes)


def cases() -> list[Case]:
    out = [_compile_case()]
    out += [_find_case("filters/typed", n, f, w, 1.10) for n, f, w in TYPED]
    out += [_find_case("filters/variant", n, f, w, 1.20) for n, f, w in VARIANT]
    out.append(_pruning_case())
    return out


def cleanup() -> None:
    if dataset.cache_info().currsize:
        shutil.rmtree(dataset()["tmp"], ignore_errors=True)
