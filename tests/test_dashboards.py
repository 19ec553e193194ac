"""Dashboards: alert evaluation (hand-made series), query builders against hand-written DuckDB, widgets headless."""

from __future__ import annotations

import datetime as dt
import json
import math

import duckdb
import pandas as pd
import pytest
from sqlglot import exp

import parquedb_ibis
from parquedb_ibis import dashboards as d
from parquedb_ibis.dashboards import AlertRule, Filters, Source
from parquedb_ibis.errors import ValidationError, ViewNotFoundError
from parquedb_ibis.tail.ingest import ingest, install_views
from parquedb_ibis.tail.sample import generate_trace_items

UTC = dt.timezone.utc
T0 = dt.datetime(2025, 1, 1, 10, 0, tzinfo=UTC)
MIN = dt.timedelta(minutes=1)


def minute(i: int) -> dt.datetime:
    return T0 + i * MIN


def series(values: dict[int, float], metric: str = "error_rate", requests: int = 100) -> list[dict]:
    return [{"bucket": minute(i), "requests": requests, metric: v} for i, v in sorted(values.items())]


# -- alert evaluation ---------------------------------------------------------------------------------


def test_runbook_rules_are_the_production_thresholds():
    got = {(r.metric, r.threshold, r.duration, r.severity) for r in d.RUNBOOK_RULES}
    assert got == {
        ("error_rate", 0.05, dt.timedelta(minutes=5), "critical"),
        ("error_rate", 0.01, dt.timedelta(minutes=10), "warning"),
        ("wall_p99_ms", 2000, dt.timedelta(minutes=5), "critical"),
        ("wall_p99_ms", 500, dt.timedelta(minutes=10), "warning"),
    }


def test_error_rate_critical_fires_after_five_breaching_minutes_and_resolves():
    values = {i: 0.0 for i in range(20)} | {i: 0.06 for i in range(3, 9)}  # 10:03-10:08 breach (6 minutes)
    events = d.evaluate_alerts(series(values), d.RUNBOOK_RULES)
    assert [(e.rule.name, e.started_at, e.fired_at, e.resolved_at) for e in events] == [
        ("error rate critical", minute(3), minute(8), minute(9)),
    ]  # the warning needs 10 minutes above 1%: only 6
    assert events[0].peak == 0.06 and not events[0].active


def test_warning_fires_at_ten_minutes_and_stays_active_to_the_end_of_the_series():
    values = {i: 0.0 for i in range(5)} | {i: 0.02 for i in range(5, 20)}
    (event,) = d.evaluate_alerts(series(values), d.RUNBOOK_RULES)
    assert (event.rule.name, event.fired_at, event.resolved_at, event.active) == ("error rate warning", minute(15), None, True)


def test_both_severities_fire_in_firing_order():
    values = {i: 0.08 for i in range(12)} | {12: 0.0}
    events = d.evaluate_alerts(series(values), d.RUNBOOK_RULES)
    assert [(e.rule.severity, e.fired_at, e.resolved_at) for e in events] == [
        ("critical", minute(5), minute(12)), ("warning", minute(10), minute(12))]


def test_a_run_exactly_as_long_as_the_duration_fires_and_one_minute_less_does_not():
    rule = AlertRule("r", "error_rate", 0.05, dt.timedelta(minutes=5), "critical")
    assert [e.fired_at for e in d.evaluate_alerts(series({i: 0.1 for i in range(5)} | {5: 0.0}), [rule])] == [minute(5)]
    assert d.evaluate_alerts(series({i: 0.1 for i in range(4)} | {4: 0.0}), [rule]) == []


def test_the_threshold_is_strict_and_missing_values_never_breach():
    rule = AlertRule("r", "error_rate", 0.05, dt.timedelta(minutes=2))
    assert d.evaluate_alerts(series({0: 0.05, 1: 0.05, 2: 0.05}), [rule]) == []
    assert d.evaluate_alerts(series({0: 0.1, 1: math.nan, 2: 0.1}), [rule]) == []
    assert d.evaluate_alerts([{"bucket": minute(0), "error_rate": None}], [rule]) == []


def test_a_gap_in_the_series_breaks_a_run():
    rule = AlertRule("r", "error_rate", 0.05, dt.timedelta(minutes=3))
    values = {0: 0.1, 1: 0.1, 3: 0.1, 4: 0.1}  # minute 2 had no traffic
    assert d.evaluate_alerts(series(values), [rule]) == []
    values[2] = 0.1
    assert [e.fired_at for e in d.evaluate_alerts(series(values), [rule])] == [minute(3)]


def test_quiet_minutes_below_min_requests_do_not_breach():
    rule = AlertRule("r", "error_rate", 0.05, dt.timedelta(minutes=3), min_requests=20)
    rows = series({0: 0.5, 1: 0.5, 2: 0.5})
    rows[1]["requests"] = 19
    assert d.evaluate_alerts(rows, [rule]) == []
    rows[1]["requests"] = 20
    assert len(d.evaluate_alerts(rows, [rule])) == 1


def test_latency_rules_and_the_end_of_the_window():
    values = {i: 600.0 for i in range(10)} | {i: 2500.0 for i in range(10, 16)}
    rows = series(values, metric="wall_p99_ms")
    events = d.evaluate_alerts(rows, d.RUNBOOK_RULES, end=minute(30))
    assert [(e.rule.name, e.fired_at, e.resolved_at, e.peak) for e in events] == [
        ("p99 latency warning", minute(10), minute(16), 2500.0),
        ("p99 latency critical", minute(15), minute(16), 2500.0),
    ]
    assert all(e.active for e in d.evaluate_alerts(rows, d.RUNBOOK_RULES, end=minute(16)))


def test_rules_are_data_a_user_can_change():
    low_traffic = AlertRule("traffic dropped", "requests", 10, dt.timedelta(minutes=2), "warning", op="<")
    rows = [{"bucket": minute(i), "requests": n} for i, n in enumerate([50, 5, 3, 4, 60])]
    (event,) = d.evaluate_alerts(rows, [low_traffic])
    assert (event.fired_at, event.resolved_at, event.peak) == (minute(3), minute(4), 3.0)
    relaxed = d.with_rules(d.RUNBOOK_RULES, min_requests=1)
    assert {r.min_requests for r in relaxed} == {1} and {r.min_requests for r in d.RUNBOOK_RULES} == {20}


def test_evaluate_alerts_takes_a_dataframe_with_pandas_timestamps():
    frame = pd.DataFrame(series({i: 0.2 for i in range(6)}))
    frame["bucket"] = pd.to_datetime(frame["bucket"])
    (event,) = d.evaluate_alerts(frame, d.RUNBOOK_RULES[:1])
    assert event.fired_at == minute(5)


def test_bad_rules_are_rejected():
    with pytest.raises(ValidationError, match="op must be one of"):
        AlertRule("r", "x", 1, MIN, op="!=")
    with pytest.raises(ValidationError, match="duration must be positive"):
        AlertRule("r", "x", 1, dt.timedelta(0))


# -- query builders vs hand-written DuckDB ---------------------------------------------------------------

REQUEST_TYPES = {"colo": "JSON", "country": "JSON", "cpuTime": "BIGINT", "method": "JSON", "outcome": "VARCHAR",
                 "requestId": "JSON", "scriptName": "VARCHAR", "status": "JSON", "timestamp": "TIMESTAMPTZ",
                 "url": "JSON", "wallTime": "BIGINT"}

#: (minute offset, script, outcome, method, url, status, colo, country, wall, cpu)
REQUESTS = [
    (0, "api", "ok", "GET", "https://api.x/v1/users/12?x=1", 200, "IAD", "US", 40, 3),
    (0, "api", "ok", "GET", "https://api.x/v1/users/99", 200, "IAD", "US", 60, 4),
    (1, "api", "exception", "POST", "https://api.x/v1/orders", 500, "LHR", "GB", 900, 30),
    (1, "api", "ok", "GET", "https://api.x/v1/orders/d8f33418-f3d4-4711-9804-f92283868a29", 404, "LHR", "GB", 20, 2),
    (2, "static", "ok", "GET", "https://s.x/assets/1ba16215.css", 200, "IAD", "US", 10, 1),
    (2, "static", "ok", "GET", "https://s.x/assets/0dc2c81c.css", 304, "NRT", "JP", 12, 1),
    (3, "api", "canceled", "GET", "https://api.x/health", None, "NRT", "JP", 3000, 5),
    (6, "api", "ok", "GET", "https://api.x/v1/users/7", 503, "IAD", "US", 2500, 8),
    (7, "static", "exceededCpu", "GET", "https://s.x/img/5.webp", 503, "LHR", "GB", 70, 55),
]


@pytest.fixture(scope="module")
def con():
    """An in-memory DuckDB with tables shaped like the WorkerRequests / WorkerErrors / WorkerLogs views."""
    c = duckdb.connect()
    c.execute("CREATE TABLE req (colo VARCHAR, country VARCHAR, cpuTime BIGINT, method VARCHAR, outcome VARCHAR, "
              "requestId VARCHAR, scriptName VARCHAR, status VARCHAR, timestamp TIMESTAMPTZ, url VARCHAR, wallTime BIGINT)")
    for i, (m, script, outcome, method, url, status, colo, country, wall, cpu) in enumerate(REQUESTS):
        c.execute("INSERT INTO req VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            json.dumps(colo), json.dumps(country), cpu, json.dumps(method), outcome, json.dumps(f"ray-{i}"), script,
            None if status is None else json.dumps(status), minute(m) + dt.timedelta(seconds=i), json.dumps(url), wall])
    c.execute("CREATE TABLE err (colo VARCHAR, exceptionMessage VARCHAR, exceptionName VARCHAR, outcome VARCHAR, "
              "scriptName VARCHAR, timestamp TIMESTAMPTZ, url VARCHAR)")
    c.executemany("INSERT INTO err VALUES (?, ?, ?, ?, ?, ?, ?)", [
        ['"LHR"', '"fetch failed"', '"TypeError"', "exception", "api", minute(1), '"https://api.x/v1/orders"'],
        ['"NRT"', None, None, "canceled", "api", minute(3), '"https://api.x/health"'],
        ['"LHR"', '"Worker exceeded CPU time limit."', '"Error"', "exceededCpu", "static", minute(7), '"https://s.x/img/5.webp"'],
    ])
    c.execute("CREATE TABLE logs (eventTimestamp TIMESTAMPTZ, level VARCHAR, message VARCHAR, outcome VARCHAR, "
              "scriptName VARCHAR, timestamp VARCHAR)")
    c.executemany("INSERT INTO logs VALUES (?, ?, ?, ?, ?, ?)", [
        [minute(0), '"info"', '["GET /v1/users/12 -> 200"]', "ok", "api", "1"],
        [minute(1), '"error"', '["upstream fetch failed:", "502 from origin"]', "exception", "api", "2"],
        [minute(2), '"warn"', '["slow upstream", {"ms": 900}]', "ok", "static", "3"],
        [minute(3), '"log"', '"100% done_ok"', "ok", "api", "4"],
    ])
    yield c
    c.close()


def source(table: str, types: dict[str, str] | None = None) -> Source:
    return Source(exp.select("*").from_(exp.to_table(table)), types or {})


REQ = source("req", REQUEST_TYPES)


def run(con, query) -> list[tuple]:
    text = query if isinstance(query, str) else query.sql("duckdb")
    return con.execute(text).fetchall()


def test_traffic_query_matches_hand_written_duckdb(con):
    built = run(con, d.traffic_query(REQ, Filters(), dt.timedelta(minutes=5)))
    hand = run(con, """
        SELECT time_bucket(INTERVAL 5 MINUTE, timestamp) AS bucket, count(*), 
               sum(CASE WHEN TRY_CAST(status ->> '$' AS DOUBLE) >= 500
                          OR outcome IN ('exception', 'exceededCpu', 'exceededMemory') THEN 1 ELSE 0 END),
               avg(CASE WHEN TRY_CAST(status ->> '$' AS DOUBLE) >= 500
                          OR outcome IN ('exception', 'exceededCpu', 'exceededMemory') THEN 1.0 ELSE 0.0 END),
               count(*) / 5.0,
               quantile_cont(wallTime, 0.5), quantile_cont(wallTime, 0.95), quantile_cont(wallTime, 0.99),
               quantile_cont(cpuTime, 0.5), quantile_cont(cpuTime, 0.95), quantile_cont(cpuTime, 0.99)
        FROM req GROUP BY 1 ORDER BY 1""")
    assert built == hand
    assert [(row[0], row[1], row[2]) for row in built] == [(minute(0), 7, 1), (minute(5), 2, 2)]


def test_filters_restrict_time_script_and_colo(con):
    filters = Filters(start=minute(1), end=minute(7), script="api", colo="LHR")
    built = run(con, d.traffic_query(REQ, filters, MIN))
    hand = run(con, f"""
        SELECT time_bucket(INTERVAL 1 MINUTE, timestamp), count(*) FROM req
        WHERE timestamp >= TIMESTAMPTZ '{minute(1).isoformat()}' AND timestamp < TIMESTAMPTZ '{minute(7).isoformat()}'
          AND scriptName = 'api' AND (colo ->> '$') = 'LHR' GROUP BY 1 ORDER BY 1""")
    assert [r[:2] for r in built] == hand == [(minute(1), 2)]
    assert built[0][2] == 1  # the exception; the 404 is not an error


def test_status_query_counts_codes_most_frequent_first(con):
    assert run(con, d.status_query(REQ, Filters())) == run(con, """
        SELECT CAST(TRY_CAST(status ->> '$' AS DOUBLE) AS INTEGER) AS s, count(*) AS n FROM req
        GROUP BY 1 ORDER BY n DESC, s NULLS LAST""")
    assert run(con, d.status_query(REQ, Filters()))[:2] == [(200, 3), (503, 2)]


def test_endpoints_query_groups_ids_in_paths(con):
    rows = run(con, d.endpoints_query(REQ, Filters(), top=3))
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("api", "GET", "/v1/users/:id", 3), ("static", "GET", "/assets/:id.css", 2), ("api", "GET", "/health", 1)]
    users = rows[0]
    assert users[4] == pytest.approx(1 / 3) and users[5] == pytest.approx(run(con, """
        SELECT quantile_cont(wallTime, 0.95) FROM req WHERE url LIKE '%/v1/users/%'""")[0][0])


def test_colos_query_matches_hand_written_duckdb(con):
    assert run(con, d.colos_query(REQ, Filters())) == run(con, """
        SELECT colo ->> '$' AS colo, country ->> '$' AS country, count(*) AS n,
               avg(CASE WHEN TRY_CAST(status ->> '$' AS DOUBLE) >= 500
                          OR outcome IN ('exception', 'exceededCpu', 'exceededMemory') THEN 1.0 ELSE 0.0 END),
               quantile_cont(wallTime, 0.95)
        FROM req GROUP BY 1, 2 ORDER BY n DESC, colo""")


def test_exceptions_query_lists_recent_exceptions_only(con):
    rows = run(con, d.exceptions_query(source("err"), Filters()))
    assert [(r[1], r[3], r[4], r[6]) for r in rows] == [
        ("static", "Error", "Worker exceeded CPU time limit.", "LHR"), ("api", "TypeError", "fetch failed", "LHR")]
    assert len(run(con, d.exceptions_query(source("err"), Filters(script="api", colo="NRT")))) == 0


def test_logs_query_joins_message_parts_and_searches_literally(con):
    logs = source("logs", {"eventTimestamp": "TIMESTAMPTZ", "level": "JSON", "message": "JSON", "outcome": "VARCHAR",
                           "scriptName": "VARCHAR", "timestamp": "JSON"})
    rows = run(con, d.logs_query(logs, Filters()))
    assert [r[3] for r in rows] == ["100% done_ok", 'slow upstream {"ms":900}', "upstream fetch failed: 502 from origin",
                                    "GET /v1/users/12 -> 200"]
    assert [r[3] for r in run(con, d.logs_query(logs, Filters(), search="FETCH"))] == ["upstream fetch failed: 502 from origin"]
    assert [r[3] for r in run(con, d.logs_query(logs, Filters(), search="0% d"))] == ["100% done_ok"]
    assert run(con, d.logs_query(logs, Filters(), search="%")) == run(con, d.logs_query(logs, Filters(), search="100%"))
    assert run(con, d.logs_query(logs, Filters(), search="'; DROP TABLE logs; --")) == []
    assert [r[1] for r in run(con, d.logs_query(logs, Filters(script="static")))] == ["static"]


def test_overview_query_lists_scripts_colos_and_the_extent(con):
    ((first, last, scripts, colos),) = run(con, d.overview_query(REQ))
    assert (first, last.replace(second=0), scripts, colos) == (minute(0), minute(7), ["api", "static"], ["IAD", "LHR", "NRT"])


def test_typed_columns_are_read_without_json_functions(con):
    con.execute("CREATE OR REPLACE TEMP TABLE typed AS SELECT colo ->> '$' AS colo, TRY_CAST(status ->> '$' AS INT) AS status, "
                "* EXCLUDE (colo, status) FROM req")
    typed = source("typed", {**REQUEST_TYPES, "colo": "VARCHAR", "status": "INTEGER"})
    assert run(con, d.colos_query(typed, Filters())) == run(con, d.colos_query(REQ, Filters()))
    text = d.requests_base(typed, Filters()).sql("duckdb")
    assert 'CAST("colo" AS TEXT) AS "colo"' in text and 'TRY_CAST("status" AS DOUBLE) AS "status"' in text


def test_bucket_for_picks_a_width_by_window_length():
    assert d.bucket_for(T0, T0 + dt.timedelta(minutes=15)) == MIN
    assert d.bucket_for(T0, T0 + dt.timedelta(hours=24)) == dt.timedelta(minutes=15)
    assert d.bucket_for(T0, T0 + dt.timedelta(days=7)) == dt.timedelta(hours=1)
    assert d.bucket_for(None, None) == dt.timedelta(days=1)
    with pytest.raises(ValidationError):
        d.traffic_query(REQ, Filters(), dt.timedelta(0))


# -- over a real store, and the widgets headless -------------------------------------------------------


@pytest.fixture(scope="module")
def tail_db(tmp_path_factory):
    db = parquedb_ibis.connect(str(tmp_path_factory.mktemp("tail")), flush_age=None)
    install_views(db, ["WorkerRequests", "WorkerErrors", "WorkerLogs"])
    ingest(db, generate_trace_items(1500, seed=11, span=dt.timedelta(hours=2)))
    yield db
    db.close()


def test_load_dashboard_agrees_with_the_tail_events(tail_db):
    data = d.load_dashboard(d.runner_for(tail_db), d.tail_sources(tail_db), Filters())
    requests = tail_db.query_rows(
        "SELECT count(*) AS n, count(*) FILTER (WHERE TRY_CAST(event ->> '$.response.status' AS INT) >= 500 "
        "OR outcome IN ('exception', 'exceededCpu', 'exceededMemory')) AS errors FROM ("
        + tail_db.relation("TailEvents").sql("duckdb") + ") WHERE event ->> '$.request' IS NOT NULL")[0]
    assert data.totals["requests"] == requests["n"] == int(data.status["requests"].sum())
    assert data.totals["errors"] == requests["errors"]
    assert data.bucket == dt.timedelta(days=1) and len(data.traffic) == 1
    assert len(data.alert_series) > 60  # one-minute steps over two hours
    assert list(data.endpoints.columns) == ["script", "method", "endpoint", "requests", "error_rate", "wall_p95_ms"]


def test_charts_are_valid_vega_lite_rendered_as_svg(tail_db):
    data = d.load_dashboard(d.runner_for(tail_db), d.tail_sources(tail_db), Filters(script="api-gateway"))
    for chart in (d.traffic_chart(data), d.latency_chart(data), d.latency_chart(data, metric="cpu"),
                  d.status_chart(data), d.colo_chart(data)):
        chart.to_dict()  # validates against the Vega-Lite schema
        bundle = d.chart_bundle(chart)
        assert bundle["data"][d.VEGA_LITE_MIME]["$schema"].endswith("/v5.json")
        assert bundle["metadata"][d.VEGA_LITE_MIME]["embed_options"]["renderer"] == "svg"
        assert "api-gateway" in bundle["data"]["text/plain"]


def test_dashboard_needs_the_tail_views(tmp_path):
    db = parquedb_ibis.connect(str(tmp_path), flush_age=None)
    with pytest.raises(ViewNotFoundError, match="WorkerRequests"):
        d.WorkerDashboard(db)
    db.close()


@pytest.fixture
def dashboard(tail_db):
    dash = d.WorkerDashboard(tail_db)
    yield dash
    dash.close()


def title(out) -> str:
    return out.outputs[0]["data"]["text/plain"]


def test_dashboard_renders_every_panel(dashboard):
    assert dashboard.data is not None and dashboard.error is None
    assert dashboard.script.options[0] == "(all)" and "api-gateway" in dashboard.script.options
    assert "IAD" in dashboard.colo.options
    assert title(dashboard.traffic_out) == "<VConcatChart: Requests per minute · all scripts · all colos>"
    for out in (dashboard.traffic_out, dashboard.latency_out, dashboard.status_out, dashboard.colo_out):
        assert d.VEGA_LITE_MIME in out.outputs[0]["data"]
    assert "requests" in dashboard.summary.value and "<h4>Alerts</h4>" in dashboard.alerts_panel.value
    for panel, heading in ((dashboard.endpoints_panel, "Top endpoints"), (dashboard.exceptions_panel, "Recent exceptions"),
                           (dashboard.logs_panel, "Recent log lines")):
        assert f"<h4>{heading}</h4>" in panel.value


def test_changing_filters_reruns_the_queries(dashboard):
    total = dashboard.data.totals["requests"]
    dashboard.script.value = "api-gateway"
    assert dashboard.data.filters.script == "api-gateway"
    assert title(dashboard.traffic_out) == "<VConcatChart: Requests per minute · api-gateway · all colos>"
    assert 0 < dashboard.data.totals["requests"] < total
    assert set(dashboard.data.endpoints["script"]) == {"api-gateway"}
    dashboard.colo.value = "IAD"
    assert dashboard.data.filters.colo == "IAD" and set(dashboard.data.colos["colo"]) == {"IAD"}
    dashboard.time_range.value = "Last 15 minutes"
    assert dashboard.data.bucket == MIN
    assert dashboard.data.filters.end - dashboard.data.filters.start == dt.timedelta(minutes=15)


def test_log_search_and_latency_metric(dashboard):
    dashboard.search.value = "fetch failed"
    assert len(dashboard.data.logs) and all("fetch failed" in m.lower() for m in dashboard.data.logs["message"])
    assert "Log lines containing &#x27;fetch failed&#x27;" in dashboard.logs_panel.value
    dashboard.latency_metric.value = "cpu"
    assert "CPU time percentiles" in title(dashboard.latency_out)


def test_refresh_picks_up_new_events_and_changed_rules(dashboard, tail_db):
    before = dashboard.data.totals["requests"]
    ingest(tail_db, generate_trace_items(200, seed=99, span=dt.timedelta(hours=2)))
    count = dashboard.refreshes
    dashboard.refresh_button.click()
    assert dashboard.refreshes == count + 1
    assert dashboard.data.totals["requests"] > before
    dashboard.rules = [AlertRule("any traffic", "requests", 0, dt.timedelta(minutes=1), "info", min_requests=1,
                                 description="requests > 0")]
    dashboard.refresh()
    assert dashboard.data.alerts and "requests &gt; 0" in dashboard.alerts_panel.value


def test_auto_refresh_schedules_and_close_cancels(dashboard):
    dashboard.auto_refresh.value = "5 min"
    assert dashboard.auto_refresh_seconds == 300 and dashboard._timer is not None and dashboard._timer.is_alive()
    timer = dashboard._timer
    dashboard.auto_refresh.value = "Off"
    assert dashboard._timer is None and not timer.is_alive() or timer.finished.is_set()
    dashboard.auto_refresh.value = "10 s"
    dashboard.close()
    assert dashboard._timer is None


def test_a_failing_refresh_is_shown_in_the_dashboard(dashboard, monkeypatch):
    def broken(db):
        raise ViewNotFoundError("WorkerRequests", [])

    monkeypatch.setattr(d, "tail_sources", broken)
    assert dashboard.refresh() is None
    assert "ViewNotFoundError" in dashboard.status.value and dashboard.error
