"""The parquedb-ibis command line (parquedb_ibis.cli): every command through main(), the demo as a real process."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

import parquedb_ibis
from parquedb_ibis.cli import format_table, main
from parquedb_ibis.tail import ingest, install_views
from parquedb_ibis.tail.sample import generate_trace_items

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def items() -> list[dict]:
    return generate_trace_items(150, seed=9)


@pytest.fixture
def store_dir(tmp_path) -> str:
    return str(tmp_path / "store")


def raw_file(items: list[dict], seq: int = 0) -> bytes:
    header = {"doId": "cd" * 32, "createdAt": items[0]["eventTimestamp"], "batchSeq": seq}
    return "\n".join([json.dumps(header), *(json.dumps(i) for i in items)]).encode()


def test_ingest_tail_reads_a_file(store_dir, items, tmp_path, capsys):
    path = tmp_path / "tail.jsonl"
    path.write_text("\n".join(json.dumps(i, indent=2) for i in items[:40]))
    assert main(["ingest-tail", store_dir, str(path), "--no-progress"]) == 0
    assert "TailEvents: 40 ingested, 0 duplicates, 0 rejected" in capsys.readouterr().out
    assert main(["ingest-tail", store_dir, str(path), "--no-progress"]) == 0
    assert "0 ingested, 40 duplicates" in capsys.readouterr().out


def test_ingest_tail_reads_stdin_and_reports_rejections(store_dir, items, tmp_path, monkeypatch, capsys):
    text = "\n".join(json.dumps(i) for i in items[:10]) + "\nnot json\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    dead = tmp_path / "dead.jsonl"
    assert main(["ingest-tail", store_dir, "-", "--dead-letter", str(dead), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "10 ingested, 0 duplicates, 1 rejected" in out
    assert "<stdin> line 11: invalid JSON" in err and str(dead) in err
    assert json.loads(dead.read_text())["text"] == "not json"


def test_ingest_raw_then_compact(store_dir, items, capsys):
    store = parquedb_ibis.connect(store_dir).store
    store.put("raw-events/1735689600000-cd-0.ndjson", raw_file(items[:70]))
    store.put("raw-events/1735693200000-cd-1.ndjson", raw_file(items[70:], 1))
    assert main(["ingest-raw", store_dir, "--prefix", "raw-events/", "--no-progress"]) == 0
    assert "150 ingested" in capsys.readouterr().out
    assert main(["compact", store_dir]) == 0
    assert "compact: 2 raw files compacted (150 items" in capsys.readouterr().out
    assert main(["compact", store_dir, "--delete-raw"]) == 0
    assert "0 raw files compacted" in capsys.readouterr().out
    assert len(list(store.list("raw-events/"))) == 2


def test_refresh_prints_each_view_and_watch_stops(store_dir, items, capsys):
    db = parquedb_ibis.connect(store_dir, flush_age=None)
    ingest(db, items)
    install_views(db, ["WorkerRequests", "EndpointMetrics"])
    db.close()
    assert main(["refresh", store_dir]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["view", "refresh", "reason", "rows", "ms"]
    assert "EndpointMetrics" in out and "WorkerRequests" in out
    assert main(["refresh", store_dir, "WorkerRequests", "--full", "--watch", "--interval", "0.01", "--stop-after", "0"]) == 0
    out = capsys.readouterr().out
    assert "WorkerRequests: full refresh" in out and "watch:" in out


def test_query_prints_an_aligned_table_or_json(store_dir, items, capsys):
    db = parquedb_ibis.connect(store_dir, flush_age=None)
    ingest(db, items)
    db.close()
    sql = "SELECT outcome, count(*) AS n FROM tailevents WHERE event.request.method = 'GET' GROUP BY 1 ORDER BY n DESC"
    assert main(["query", store_dir, sql]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["outcome", "n"] and set(lines[1]) == {"-", " "}
    assert lines[2].split()[0] == "ok" and lines[-1].endswith("rows)")
    assert main(["query", store_dir, "SELECT scriptName FROM TailEvents ORDER BY 1", "--limit", "2", "--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 2 and set(rows[0]) == {"scriptName"}


def test_a_bad_store_url_is_one_line_on_stderr_and_exit_code_2(capsys):
    assert main(["query", "ftp://somewhere/x", "SELECT 1"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("parquedb-ibis: error: store URL 'ftp://somewhere/x': unknown scheme 'ftp'")


def test_credentials_are_never_printed(monkeypatch, capsys):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
    assert main(["compact", "s3://bucket-x/p"]) == 2
    err = capsys.readouterr().err
    assert "missing credentials" in err and "s3cr3t-value" not in err


def test_unknown_table_and_missing_file_are_clean_errors(store_dir, capsys):
    assert main(["query", store_dir, "SELECT * FROM nope"]) == 2
    assert "unknown table 'nope'" in capsys.readouterr().err
    assert main(["ingest-tail", store_dir, "/no/such/file.jsonl"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2


def test_format_table_aligns_numbers_right():
    text = format_table(["worker", "rate", "n"], [("api", 0.5, 1200), ("auth-worker", 12.25, None)])
    assert text.splitlines() == [
        "worker        rate      n",
        "-----------  -----  -----",
        "api           0.50  1,200",
        "auth-worker  12.25",
    ]
    assert format_table(["a"], []).endswith("(no rows)")


def test_demo_runs_as_a_real_process_and_again_on_the_same_directory(tmp_path):
    target = tmp_path / "demo-data"
    command = [sys.executable, "-m", "parquedb_ibis.cli", "demo", str(target), "--events", "1500"]
    first = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    out = first.stdout
    for heading in ("Error rate by worker", "Top endpoints", "Recent exceptions", "Log lines by level"):
        section = out.split(heading, 1)[1].split("\n\n", 1)[0].splitlines()
        assert len(section) >= 4, section  # title rest, header, rule, at least one row
        assert set(section[2]) <= {"-", " "} and section[3].strip()
    assert "api-gateway" in out.split("Error rate by worker", 1)[1]
    assert "1,500 ingested" in out and "make lab" in out and "make test" in out
    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "0 ingested" in again.stdout and "2 already ingested" in again.stdout
    assert "TailEvents holds 1,500 trace items" in again.stdout
