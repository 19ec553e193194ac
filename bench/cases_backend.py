"""The ibis backend: ``con.table(...).filter(...)``, ``mongo()`` and ``con.sql`` vs hand-written DuckDB SQL.

One collection of ``N_ROWS`` documents (typed ``kind``, ``status``,
``latency``, ``ts``; an undeclared ``user`` object and a unique ``session``
id in ``$data``, so the variant column is as varied as real documents) is
written once per run with ``insert_many`` and checkpointed, into a temporary
directory. Every baseline is the query a person would write by hand against
the same checkpoint files on a plain DuckDB connection; every candidate goes
through the ``parquedb`` ibis backend (expression building, compilation,
the per-execution head check and re-pointing, DuckDB, ibis' result
conversion). Both sides fetch Arrow tables.
"""

from __future__ import annotations

import atexit
import datetime as dt
import os
import random
import shutil
import tempfile
from functools import cache

import duckdb
import ibis

import parquedb_ibis
from bench.harness import Case
from parquedb_ibis.ibis_filters import mongo

N_ROWS = int(os.environ.get("PARQUEDB_BENCH_BACKEND_ROWS", 1_000_000))
BATCH = 100_000
GOAL = 1.10


@cache
def _store() -> str:
    """Write the collection once per run; returns the store directory."""
    root = tempfile.mkdtemp(prefix="bench-backend-")
    atexit.register(shutil.rmtree, root, True)
    db = parquedb_ibis.connect(root, flush_every=10**9, flush_bytes=1 << 40, flush_age=None, auto_checkpoint=None)
    events = db.collection("events", {"kind": "string", "status": "int", "latency": "float", "ts": "timestamp"})
    rnd = random.Random(1)
    t0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    for start in range(0, N_ROWS, BATCH):
        events.insert_many(
            {"kind": ("click", "view", "buy")[i % 3], "status": (200, 200, 404, 500)[i % 4],
             "latency": rnd.random() * 100, "ts": t0 + dt.timedelta(seconds=i),
             "user": {"id": i % 5000, "country": ("US", "DE", "FR", "JP")[i % 7 % 4]},
             "session": f"{rnd.getrandbits(64):016x}"}
            for i in range(start, min(N_ROWS, start + BATCH))
        )
        db.flush()
    db.checkpoint()
    db.close()
    return root


def _setup():
    root = _store()
    con = ibis.parquedb.connect(root)
    head = con.db.collection("events").refresh()
    assert head.checkpoint is not None and not head.live_segments, "the bench reads one checkpoint"
    files = [con.db.store.url_for(k) for k in head.checkpoint.files]
    raw = duckdb.connect(config={"autoinstall_known_extensions": False})
    raw.execute("SET TimeZone = 'UTC'")
    source = "read_parquet([" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "])"
    return {"con": con, "raw": raw, "source": source, "events": con.table("events")}


def _teardown(state) -> None:
    state["con"].disconnect()
    state["raw"].close()


def _raw(sql: str):
    """A baseline: the hand-written query over the checkpoint files (``{src}``), fetched as Arrow."""
    return lambda s: s["raw"].sql(sql.format(src=s["source"])).to_arrow_table().num_rows  # the fetch path ibis uses


def _case(name: str, baseline: str, candidate, label: str = "parquedb ibis") -> Case:
    return Case("backend", name, _setup, _raw(baseline), candidate, baseline_label="hand-written DuckDB",
                candidate_label=label, goal=f"ratio <= {GOAL:.2f}", max_ratio=GOAL, teardown=_teardown,
                unit="rows", repeat=7)


def cases() -> list[Case]:
    n = f"{N_ROWS // 1000}k rows"
    return [
        _case(
            f"filter typed columns, all columns ({n})",
            """SELECT * FROM {src} WHERE "deletedAt" IS NULL AND "status" >= 500 AND "kind" = 'buy'""",
            lambda s: s["events"].filter((s["events"].status >= 500) & (s["events"].kind == "buy"))
            .to_pyarrow().num_rows,
        ),
        _case(
            f"mongo() on typed columns, 3 columns ({n})",
            """SELECT "$id", "latency", "ts" FROM {src}
               WHERE "deletedAt" IS NULL AND "status" >= 500 AND "kind" IN ('buy', 'view')""",
            lambda s: s["events"].filter(mongo({"status": {"$gte": 500}, "kind": {"$in": ["buy", "view"]}}))
            .select("$id", "latency", "ts").to_pyarrow().num_rows,
            label="parquedb ibis + mongo()",
        ),
        _case(
            f"group_by + aggregate ({n})",
            """SELECT "kind", "status", count(*) AS n, avg("latency") AS mean, max("ts") AS last
               FROM {src} WHERE "deletedAt" IS NULL GROUP BY ALL""",
            lambda s: s["events"].group_by("kind", "status")
            .aggregate(n=ibis._.count(), mean=ibis._.latency.mean(), last=ibis._.ts.max()).to_pyarrow().num_rows,
        ),
        _case(
            f"con.sql, ParqueDB dialect: dotted $data path + group by ({n})",
            """SELECT "kind", count(*) AS n FROM {src}
               WHERE "deletedAt" IS NULL AND ("$data" ->> '$.user.country') = 'DE' GROUP BY ALL""",
            lambda s: s["con"].sql("SELECT kind, count(*) AS n FROM events WHERE user.country = 'DE' GROUP BY kind")
            .to_pyarrow().num_rows,
            label="con.sql (parquedb dialect)",
        ),
    ]


if __name__ == "__main__":  # pragma: no cover - a quick look without the full runner (bench/results untouched)
    from bench.harness import report, run_case

    print(report([run_case(c) for c in cases()]))
