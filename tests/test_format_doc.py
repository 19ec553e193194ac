"""docs/format.md promises a collection can be read with plain DuckDB: run its SQL and compare."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

import parquedb_ibis

DOC = Path(__file__).parent.parent / "docs" / "format.md"


def documented_sql() -> list[str]:
    text = DOC.read_text()
    block = re.search(r"## Reading a collection with plain DuckDB.*?```sql\n(.*?)```", text, re.S).group(1)
    return [s.strip() for s in block.split(";") if s.strip()]


def test_the_documented_plain_duckdb_sql_reads_the_current_state(tmp_path):
    db = parquedb_ibis.connect(str(tmp_path), flush_age=None, auto_checkpoint=None)
    posts = db.collection("posts", schema={"title": "string!"})
    posts.insert_many([{"$id": f"p{i}", "title": f"t{i}", "n": i} for i in range(20)])
    db.flush()
    db.checkpoint()
    posts.update("p1", {"$set": {"title": "changed"}})
    posts.delete("p2")
    posts.delete("p3", hard=True)
    posts.create({"$id": "new", "title": "late"})
    db.flush()
    assert posts.head.checkpoint is not None and posts.head.live_segments

    statements = documented_sql()
    statements[0] = statements[0].replace("/path/to/store/", str(tmp_path) + "/")
    con = duckdb.connect()
    for statement in statements[:-1]:
        con.execute(statement)
    rows = con.execute(statements[-1]).fetchall()
    names = [d[0] for d in con.description]
    plain = {r[names.index("$id")]: r[names.index("title")] for r in rows}
    ours = {d["$id"]: d["title"] for d in posts.find()}
    assert plain == ours
    assert plain["posts/p1"] == "changed" and "posts/p2" not in plain and "posts/p3" not in plain
    assert len(plain) == 19  # 20 created, one soft- and one hard-deleted, one more created
