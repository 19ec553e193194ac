"""Dashboards over the Cloudflare tail views: :class:`WorkerDashboard` (ipywidgets + Altair), docs/dashboards.md.

Three layers, and only the last one knows about widgets:

* **query builders** (pure, sqlglot in, sqlglot out): :func:`requests_base`,
  :func:`traffic_query`, :func:`status_query`, :func:`endpoints_query`,
  :func:`colos_query`, :func:`exceptions_query`, :func:`logs_query` and
  :func:`overview_query` turn a :class:`Source` (a view's relation and column
  types) and :class:`Filters` into one SELECT each. Values reach the SQL only
  as literals built by :mod:`parquedb_ibis.compile.sql`;
* **evaluation** (pure): :func:`evaluate_alerts` runs the alert rules (data:
  :data:`RUNBOOK_RULES`, a list of :class:`AlertRule`) over a time series and
  says when each alert fired and resolved; :func:`load_dashboard` runs the
  queries and returns a :class:`DashboardData` of pandas frames;
  :func:`traffic_chart`, :func:`latency_chart`, :func:`status_chart` and
  :func:`colo_chart` turn frames into Altair charts;
* **widgets**: :class:`WorkerDashboard` holds the controls, calls the above
  and renders the results (charts as Vega-Lite, which JupyterLab and Voilà
  render natively; tables as HTML).

The sources are the tail views ``WorkerRequests``, ``WorkerErrors`` and
``WorkerLogs`` (``parquedb_ibis.tail.install_views(db)`` defines them).
"""

from __future__ import annotations

import datetime as dt
import html
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import sqlglot
from sqlglot import exp

from parquedb_ibis.compile import sql
from parquedb_ibis.errors import ParqueDBError, ValidationError

if TYPE_CHECKING:
    import altair as alt
    import pandas as pd

    from parquedb_ibis.views.database import Database

__all__ = [
    "ERROR_OUTCOMES",
    "RUNBOOK_RULES",
    "TIME_RANGES",
    "AlertEvent",
    "AlertRule",
    "DashboardData",
    "Filters",
    "Source",
    "TailSources",
    "WorkerDashboard",
    "bucket_for",
    "chart_bundle",
    "colo_chart",
    "colos_query",
    "enable_chart_renderer",
    "endpoints_query",
    "evaluate_alerts",
    "exceptions_query",
    "latency_chart",
    "load_dashboard",
    "logs_query",
    "overview_query",
    "requests_base",
    "show",
    "status_chart",
    "tail_sources",
    "traffic_chart",
    "traffic_query",
]

#: The views the dashboard reads.
REQUESTS_VIEW, ERRORS_VIEW, LOGS_VIEW = "WorkerRequests", "WorkerErrors", "WorkerLogs"

#: Outcomes that count as errors whatever the status (a status >= 500 always does).
ERROR_OUTCOMES: tuple[str, ...] = ("exception", "exceededCpu", "exceededMemory")

#: The time-range choices: label -> how far back from the anchor (None: everything).
TIME_RANGES: dict[str, dt.timedelta | None] = {
    "Last 15 minutes": dt.timedelta(minutes=15),
    "Last hour": dt.timedelta(hours=1),
    "Last 6 hours": dt.timedelta(hours=6),
    "Last 24 hours": dt.timedelta(hours=24),
    "Last 7 days": dt.timedelta(days=7),
    "All": None,
}

#: Auto-refresh choices: label -> seconds (0: off).
AUTO_REFRESH: dict[str, int] = {"Off": 0, "10 s": 10, "30 s": 30, "1 min": 60, "5 min": 300}

#: Chart bucket widths, by the longest window each suits.
_BUCKETS: tuple[tuple[dt.timedelta, dt.timedelta], ...] = (
    (dt.timedelta(hours=1), dt.timedelta(minutes=1)),
    (dt.timedelta(hours=6), dt.timedelta(minutes=5)),
    (dt.timedelta(days=1), dt.timedelta(minutes=15)),
    (dt.timedelta(days=7), dt.timedelta(hours=1)),
)

#: The step alert rules are evaluated at (one value per minute, as the runbook's "for 5 minutes" reads).
ALERT_STEP = dt.timedelta(minutes=1)

#: Vega-Lite mime type of the frontends (JupyterLab 4, Voilà 0.5 render v5; Altair 6 specs are compatible).
VEGA_LITE_MIME = "application/vnd.vegalite.v5+json"
_VEGA_LITE_SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"


# -- sources and filters ------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A relation to read and its columns' DuckDB types (``JSON`` marks variant columns)."""

    relation: exp.Expr
    types: Mapping[str, str] = field(default_factory=dict)

    def text(self, name: str) -> exp.Expr:
        """Column ``name`` as text (a JSON string without its quotes)."""
        column = sql.column(name)
        return sql.json_text(column) if self._is_json(name) else sql.cast(column, "VARCHAR")

    def number(self, name: str) -> exp.Expr:
        """Column ``name`` as a DOUBLE (NULL when absent or not a number)."""
        column = sql.column(name)
        return sql.try_cast(sql.json_text(column) if self._is_json(name) else column, "DOUBLE")

    def _is_json(self, name: str) -> bool:
        return self.types.get(name, "JSON").strip().upper() == "JSON"

    def subquery(self, alias: str) -> exp.Expr:
        return exp.Subquery(this=self.relation.copy(), alias=exp.TableAlias(this=sql.identifier(alias)))


@dataclass(frozen=True)
class TailSources:
    """The three tail views the dashboard reads."""

    requests: Source
    errors: Source
    logs: Source


def tail_sources(db: Database) -> TailSources:
    """The tail views of ``db`` as sources, over their current files (reading may refresh stale views first)."""
    def source(name: str) -> Source:
        view = db.view(name)
        plan = view.plan
        return Source(view.relation(), {c: plan.output_types[c] for c in plan.outputs})

    return TailSources(source(REQUESTS_VIEW), source(ERRORS_VIEW), source(LOGS_VIEW))


@dataclass(frozen=True)
class Filters:
    """What the dashboard shows: a time window ``[start, end)`` (None: open) and optional script and colo."""

    start: dt.datetime | None = None
    end: dt.datetime | None = None
    script: str | None = None
    colo: str | None = None

    def describe(self) -> str:
        """``'api-gateway · all colos'``: for chart titles."""
        return f"{self.script or 'all scripts'} · {self.colo or 'all colos'}"


def window(anchor: dt.datetime | None, span: dt.timedelta | None) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The ``[start, end)`` of a window of length ``span`` ending just after ``anchor`` (None: unbounded)."""
    if anchor is None or span is None:
        return None, None
    end = anchor + dt.timedelta(microseconds=1)
    return end - span, end


def bucket_for(start: dt.datetime | None, end: dt.datetime | None) -> dt.timedelta:
    """The chart bucket width for a window: 1 min up to 1 h, 5 min to 6 h, 15 min to 1 day, 1 h to 7 days, else 1 day.

    >>> bucket_for(dt.datetime(2025, 1, 1), dt.datetime(2025, 1, 1, 3))
    datetime.timedelta(seconds=300)
    """
    if start is None or end is None:
        return dt.timedelta(days=1)
    span = end - start
    for longest, width in _BUCKETS:
        if span <= longest:
            return width
    return dt.timedelta(days=1)


# -- query builders (pure) ------------------------------------------------------------------------


def _template(text: str) -> exp.Expr:
    """A fixed SQL expression with ``__x`` placeholders (parsed once; no user values ever go in)."""
    return _parsed(text).copy()


@lru_cache(maxsize=8)
def _parsed(text: str) -> exp.Expr:
    return sqlglot.parse_one(text, read="duckdb")


def _fill(template: exp.Expr, **values: exp.Expr) -> exp.Expr:
    def swap(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Column) and not node.table and node.name in values:
            return values[node.name].copy()
        return node

    return template.transform(swap)


#: An endpoint's path: the URL's path with numeric, hex and UUID segments (``/123``, ``/1ba16215.css``) as ``:id``.
#: Two passes, because a match consumes the ``/`` that ends it (``/1/2/3``).
_ID_SEGMENT = r"'/([0-9]+|[0-9a-f]{8,}(?:-[0-9a-f]{4,})*)(\.[A-Za-z0-9]+)?(/|$)', '/:id\2\3', 'g'"
_ENDPOINT_PATH = (
    f"regexp_replace(regexp_replace(regexp_extract(__url, '^[A-Za-z]+://[^/?#]*([^?#]*)', 1), {_ID_SEGMENT}), {_ID_SEGMENT})"
)
#: A log line's text: a JSON array of parts joined by spaces (strings unquoted), or the value's text.
_LOG_TEXT = (
    "CASE WHEN json_type(__m) = 'ARRAY' THEN array_to_string(list_transform(CAST(CAST(__m AS JSON) AS JSON[]),"
    " x -> CASE WHEN json_type(x) = 'VARCHAR' THEN x ->> '$' ELSE CAST(x AS VARCHAR) END), ' ') ELSE __m ->> '$' END"
)


def _time_filter(column: exp.Expr, filters: Filters) -> list[exp.Expr]:
    conditions = []
    if filters.start is not None:
        conditions.append(exp.GTE(this=column.copy(), expression=sql.timestamp(filters.start)))
    if filters.end is not None:
        conditions.append(exp.LT(this=column.copy(), expression=sql.timestamp(filters.end)))
    return conditions


def requests_base(source: Source, filters: Filters) -> exp.Select:
    """One row per request in the window, typed: ``timestamp, script, outcome, method, url, status (DOUBLE),
    colo, country, wall_ms, cpu_ms, is_error``."""
    status = source.number("status")
    outcome = sql.column("outcome")
    is_error = sql.coalesce_false(sql.or_(
        exp.GTE(this=status.copy(), expression=sql.number(500)),
        sql.in_(outcome, [sql.string(o) for o in ERROR_OUTCOMES]),
    ))
    conditions = _time_filter(sql.column("timestamp"), filters)
    if filters.script is not None:
        conditions.append(sql.eq(sql.column("scriptName"), sql.string(filters.script)))
    if filters.colo is not None:
        conditions.append(sql.eq(source.text("colo"), sql.string(filters.colo)))
    select = exp.select(
        exp.alias_(sql.column("timestamp"), "timestamp", quoted=True),
        exp.alias_(sql.column("scriptName"), "script", quoted=True),
        exp.alias_(outcome, "outcome", quoted=True),
        exp.alias_(source.text("method"), "method", quoted=True),
        exp.alias_(source.text("url"), "url", quoted=True),
        exp.alias_(status, "status", quoted=True),
        exp.alias_(source.text("colo"), "colo", quoted=True),
        exp.alias_(source.text("country"), "country", quoted=True),
        exp.alias_(source.number("wallTime"), "wall_ms", quoted=True),
        exp.alias_(source.number("cpuTime"), "cpu_ms", quoted=True),
        exp.alias_(is_error, "is_error", quoted=True),
        copy=False,
    ).from_(source.subquery("requests"), copy=False)
    return select.where(sql.and_(*conditions), copy=False) if conditions else select


def _over_base(source: Source, filters: Filters) -> exp.Select:
    """``SELECT ... FROM (requests_base) AS base``: the start of every aggregate over requests."""
    return exp.select(copy=False).from_(exp.Subquery(this=requests_base(source, filters),
                                                     alias=exp.TableAlias(this=sql.identifier("base"))), copy=False)


def _count() -> exp.Expr:
    return exp.Count(this=exp.Star())


def _errors() -> exp.Expr:
    return exp.Sum(this=sql.cast(sql.column("is_error"), "INTEGER"))


def _error_rate() -> exp.Expr:
    return exp.Avg(this=sql.cast(sql.column("is_error"), "DOUBLE"))


def _quantile(column: str, q: float) -> exp.Expr:
    return sql.func("quantile_cont", sql.column(column), sql.number(q))


def _alias(node: exp.Expr, name: str) -> exp.Expr:
    return exp.alias_(node, name, quoted=True)


def traffic_query(source: Source, filters: Filters, bucket: dt.timedelta) -> exp.Select:
    """Per time bucket: ``bucket, requests, errors, error_rate, requests_per_min`` and wall/cpu ``p50/p95/p99``
    (continuous quantiles, ``*_p50_ms`` ... ``*_p99_ms``)."""
    seconds = int(bucket.total_seconds())
    if seconds <= 0:
        raise ValidationError("dashboard bucket", f"must be at least one second, found {bucket!r}")
    width = exp.Interval(this=exp.Literal.string(str(seconds)), unit=exp.Var(this="SECOND"))
    bucket_col = sql.func("time_bucket", width, sql.column("timestamp"))
    per_minute = exp.Div(this=sql.cast(_count(), "DOUBLE"), expression=sql.number(seconds / 60))
    quantiles = exp.Array(expressions=[sql.number(q / 100) for q in _PERCENTILES])
    inner = _over_base(source, filters).select(
        _alias(bucket_col, "bucket"), _alias(_count(), "requests"), _alias(_errors(), "errors"),
        _alias(_error_rate(), "error_rate"), _alias(per_minute, "requests_per_min"),
        *(_alias(sql.func("quantile_cont", sql.column(f"{m}_ms"), quantiles.copy()), f"{m}_q") for m in ("wall", "cpu")),
        copy=False,
    ).group_by(exp.Literal.number(1), copy=False)
    columns: list[exp.Expr] = [sql.column(c) for c in ("bucket", "requests", "errors", "error_rate", "requests_per_min")]
    for metric in ("wall", "cpu"):
        for i, q in enumerate(_PERCENTILES, start=1):
            columns.append(_alias(sql.func("list_extract", sql.column(f"{metric}_q"), sql.number(i)), f"{metric}_p{q}_ms"))
    return exp.select(*columns, copy=False).from_(
        exp.Subquery(this=inner, alias=exp.TableAlias(this=sql.identifier("buckets"))), copy=False,
    ).order_by(sql.column("bucket"), copy=False)


#: The latency percentiles every bucket gets.
_PERCENTILES = (50, 95, 99)


def status_query(source: Source, filters: Filters) -> exp.Select:
    """Requests per status code (``status`` as INTEGER, NULL when no response), most frequent first."""
    query = _over_base(source, filters).select(
        _alias(sql.cast(sql.column("status"), "INTEGER"), "status"), _alias(_count(), "requests"), copy=False)
    return query.group_by(exp.Literal.number(1), copy=False).order_by(
        exp.Ordered(this=sql.column("requests"), desc=True), exp.Ordered(this=sql.column("status")), copy=False)


def endpoints_query(source: Source, filters: Filters, top: int = 10) -> exp.Select:
    """The ``top`` endpoints (script, method, path with ids as ``:id``) by requests, with error rate and p95.

    Paths are worked out once per distinct URL and joined back: far cheaper than per request.
    """
    base, paths = sql.identifier("base"), sql.identifier("paths")
    distinct_urls = exp.select(sql.column("url"), copy=False).from_(exp.Table(this=base.copy()), copy=False).distinct(copy=False)
    path = _fill(_template(_ENDPOINT_PATH), __url=sql.column("url"))
    named = exp.select(sql.column("url"), _alias(path, "endpoint"), copy=False).from_(
        exp.Subquery(this=distinct_urls, alias=exp.TableAlias(this=sql.identifier("urls"))), copy=False)
    query = (exp.select(
        _alias(sql.column("script"), "script"), _alias(sql.column("method"), "method"), _alias(sql.column("endpoint"), "endpoint"),
        _alias(_count(), "requests"), _alias(_error_rate(), "error_rate"),
        _alias(_quantile("wall_ms", 0.95), "wall_p95_ms"), copy=False)
        .from_(exp.Table(this=base.copy()), copy=False)
        .join(exp.Table(this=paths.copy()), using=[sql.identifier("url")], join_type="left", copy=False)
        .with_(base.copy(), as_=requests_base(source, filters), copy=False)
        .with_(paths.copy(), as_=named, copy=False))
    return (query.group_by(*(exp.Literal.number(i) for i in (1, 2, 3)), copy=False)
            .order_by(exp.Ordered(this=sql.column("requests"), desc=True), *(sql.column(c) for c in ("script", "method", "endpoint")),
                      copy=False)
            .limit(top, copy=False))


def colos_query(source: Source, filters: Filters, top: int = 20) -> exp.Select:
    """Requests per colo and country (top ``top`` colos), with error rate and p95 wall time."""
    query = _over_base(source, filters).select(
        _alias(sql.column("colo"), "colo"), _alias(sql.column("country"), "country"),
        _alias(_count(), "requests"), _alias(_error_rate(), "error_rate"),
        _alias(_quantile("wall_ms", 0.95), "wall_p95_ms"), copy=False)
    return (query.group_by(exp.Literal.number(1), exp.Literal.number(2), copy=False)
            .order_by(exp.Ordered(this=sql.column("requests"), desc=True), sql.column("colo"), copy=False)
            .limit(top, copy=False))


def exceptions_query(source: Source, filters: Filters, limit: int = 20) -> exp.Select:
    """The most recent traces that threw: ``timestamp, script, outcome, name, message, url, colo``."""
    conditions = [*_time_filter(sql.column("timestamp"), filters), sql.is_not_null(source.text("exceptionName"))]
    if filters.script is not None:
        conditions.append(sql.eq(sql.column("scriptName"), sql.string(filters.script)))
    if filters.colo is not None:
        conditions.append(sql.eq(source.text("colo"), sql.string(filters.colo)))
    return (exp.select(
        _alias(sql.column("timestamp"), "timestamp"), _alias(sql.column("scriptName"), "script"),
        _alias(sql.column("outcome"), "outcome"), _alias(source.text("exceptionName"), "name"),
        _alias(source.text("exceptionMessage"), "message"), _alias(source.text("url"), "url"),
        _alias(source.text("colo"), "colo"), copy=False)
        .from_(source.subquery("errors"), copy=False)
        .where(sql.and_(*conditions), copy=False)
        .order_by(exp.Ordered(this=sql.column("timestamp"), desc=True), copy=False)
        .limit(limit, copy=False))


def logs_query(source: Source, filters: Filters, search: str = "", limit: int = 50) -> exp.Select:
    """The most recent log lines (``timestamp, script, level, message``) whose text contains ``search``
    (case-insensitive, literal: ``%`` and ``_`` are not wildcards). Logs carry no colo; that filter does not apply."""
    text = _fill(_template(_LOG_TEXT), __m=sql.column("message"))
    time_column = sql.column("eventTimestamp")
    conditions = _time_filter(time_column, filters)
    if filters.script is not None:
        conditions.append(sql.eq(sql.column("scriptName"), sql.string(filters.script)))
    if search:
        conditions.append(sql.func("contains", exp.Lower(this=text.copy()), exp.Lower(this=sql.string(search))))
    select = (exp.select(
        _alias(time_column, "timestamp"), _alias(sql.column("scriptName"), "script"),
        _alias(source.text("level"), "level"), _alias(text, "message"), copy=False)
        .from_(source.subquery("logs"), copy=False))
    if conditions:
        select = select.where(sql.and_(*conditions), copy=False)
    return select.order_by(exp.Ordered(this=sql.column("timestamp"), desc=True), copy=False).limit(limit, copy=False)


def overview_query(source: Source) -> exp.Select:
    """Over all requests: ``first, last`` timestamps and the sorted distinct ``scripts`` and ``colos`` (for the controls)."""
    colo = source.text("colo")
    scripts = exp.ArrayAgg(this=sql.column("scriptName"))
    colos = exp.ArrayAgg(this=colo)
    return exp.select(
        _alias(exp.Min(this=sql.column("timestamp")), "first"),
        _alias(exp.Max(this=sql.column("timestamp")), "last"),
        _alias(sql.func("list_sort", sql.func("list_distinct", scripts)), "scripts"),
        _alias(sql.func("list_sort", sql.func("list_distinct", colos)), "colos"),
        copy=False,
    ).from_(source.subquery("requests"), copy=False)


# -- alerts (pure) -----------------------------------------------------------------------------------


_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">": lambda v, t: v > t,
    ">=": lambda v, t: v >= t,
    "<": lambda v, t: v < t,
    "<=": lambda v, t: v <= t,
}


@dataclass(frozen=True)
class AlertRule:
    """``metric`` compared with ``threshold`` (by ``op``) in every step for ``duration`` raises a ``severity`` alert.

    ``metric`` is a column of the series :func:`evaluate_alerts` gets
    (``error_rate`` as a fraction, ``wall_p99_ms``...). A step with fewer than
    ``min_requests`` requests, or no value, never breaches.
    """

    name: str
    metric: str
    threshold: float
    duration: dt.timedelta
    severity: str = "warning"  # "critical" | "warning" | "info"
    op: str = ">"
    min_requests: int = 1
    description: str = ""

    def __post_init__(self) -> None:
        if self.op not in _COMPARISONS:
            raise ValidationError(f"alert rule {self.name!r}", f"op must be one of {', '.join(_COMPARISONS)}, found {self.op!r}")
        if self.duration <= dt.timedelta(0):
            raise ValidationError(f"alert rule {self.name!r}", f"duration must be positive, found {self.duration!r}")

    def breaches(self, value: Any, requests: Any = None) -> bool:
        """True when one step's ``value`` (with ``requests`` requests) is past the threshold."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        if requests is not None and requests < self.min_requests:
            return False
        return _COMPARISONS[self.op](float(value), self.threshold)


#: The production runbook: error rate > 5 % for 5 min critical, > 1 % for 10 min warning;
#: p99 wall time > 2 s for 5 min critical, > 500 ms for 10 min warning. A minute with fewer
#: than 20 requests counts as not breaching (one failed request in a quiet minute is not an outage).
RUNBOOK_RULES: list[AlertRule] = [
    AlertRule("error rate critical", "error_rate", 0.05, dt.timedelta(minutes=5), "critical", min_requests=20,
              description="error rate > 5% for 5 minutes"),
    AlertRule("error rate warning", "error_rate", 0.01, dt.timedelta(minutes=10), "warning", min_requests=20,
              description="error rate > 1% for 10 minutes"),
    AlertRule("p99 latency critical", "wall_p99_ms", 2000, dt.timedelta(minutes=5), "critical", min_requests=20,
              description="p99 latency > 2 s for 5 minutes"),
    AlertRule("p99 latency warning", "wall_p99_ms", 500, dt.timedelta(minutes=10), "warning", min_requests=20,
              description="p99 latency > 500 ms for 10 minutes"),
]


@dataclass(frozen=True)
class AlertEvent:
    """One firing of a rule: breaching from ``started_at``; fired at ``started_at + duration``;
    ``resolved_at`` is the end of the last breaching step (None: still breaching at the end of the series)."""

    rule: AlertRule
    started_at: dt.datetime
    fired_at: dt.datetime
    resolved_at: dt.datetime | None
    peak: float

    @property
    def active(self) -> bool:
        return self.resolved_at is None


def evaluate_alerts(series: Any, rules: Sequence[AlertRule], step: dt.timedelta = ALERT_STEP,
                    end: dt.datetime | None = None) -> list[AlertEvent]:
    """The alerts ``rules`` raise over ``series``, ordered by firing time (then rule order).

    ``series`` is a DataFrame or an iterable of mappings with a ``bucket``
    (the start of a step of length ``step``), a ``requests`` count (optional)
    and the rules' metrics. Steps missing from the series (no traffic) do not
    breach. A run of consecutive breaching steps from ``s0`` to ``sk`` fires
    when it covers the rule's duration, at ``s0 + duration``, and resolves at
    ``sk + step``; it is still active when it reaches ``end`` (default: the end
    of the last step in the series).
    """
    rows = _records(series)
    rows.sort(key=lambda r: r["bucket"])
    if not rows:
        return []
    horizon = end if end is not None else rows[-1]["bucket"] + step
    events: list[tuple[dt.datetime, int, AlertEvent]] = []
    for order, rule in enumerate(rules):
        run: list[Mapping[str, Any]] = []
        for row in [*rows, None]:
            if row is not None and rule.breaches(row.get(rule.metric), row.get("requests")):
                if run and row["bucket"] - run[-1]["bucket"] != step:
                    _close(rule, run, step, horizon, events, order)
                    run = []
                run.append(row)
            elif run:
                _close(rule, run, step, horizon, events, order)
                run = []
    events.sort(key=lambda e: (e[0], e[1]))
    return [event for _, _, event in events]


def _close(rule: AlertRule, run: list[Mapping[str, Any]], step: dt.timedelta, horizon: dt.datetime,
           events: list[tuple[dt.datetime, int, AlertEvent]], order: int) -> None:
    started = run[0]["bucket"]
    finished = run[-1]["bucket"] + step
    if finished - started < rule.duration:
        return
    values = [float(r[rule.metric]) for r in run]
    peak = min(values) if rule.op in ("<", "<=") else max(values)
    fired = started + rule.duration
    events.append((fired, order, AlertEvent(rule, started, fired, None if finished >= horizon else finished, peak)))


def _records(series: Any) -> list[dict[str, Any]]:
    if hasattr(series, "to_dict"):
        records = series.to_dict("records")
    else:
        records = [dict(r) for r in series]
    for r in records:
        bucket = r["bucket"]
        if hasattr(bucket, "to_pydatetime"):
            r["bucket"] = bucket.to_pydatetime()
    return records


# -- loading (runs the queries) -------------------------------------------------------------------


@dataclass
class DashboardData:
    """Everything one refresh shows, as pandas frames (see the query builders for their columns)."""

    filters: Filters
    bucket: dt.timedelta
    traffic: pd.DataFrame
    status: pd.DataFrame
    endpoints: pd.DataFrame
    colos: pd.DataFrame
    exceptions: pd.DataFrame
    logs: pd.DataFrame
    alert_series: pd.DataFrame
    alerts: list[AlertEvent]

    @property
    def totals(self) -> dict[str, float]:
        """``requests``, ``errors`` and ``error_rate`` over the window."""
        requests = int(self.traffic["requests"].sum()) if len(self.traffic) else 0
        errors = int(self.traffic["errors"].sum()) if len(self.traffic) else 0
        return {"requests": requests, "errors": errors, "error_rate": errors / requests if requests else 0.0}


Runner = Callable[[exp.Expr], "pd.DataFrame"]


def runner_for(db: Database) -> Runner:
    """Run a query on ``db``'s DuckDB session; a pandas frame."""
    def run(query: exp.Expr) -> pd.DataFrame:
        return db.query_arrow(query).to_pandas()

    return run


def load_dashboard(run: Runner, sources: TailSources, filters: Filters, *, rules: Sequence[AlertRule] = RUNBOOK_RULES,
                   search: str = "", bucket: dt.timedelta | None = None, top: int = 10) -> DashboardData:
    """Run every panel's query for ``filters`` and evaluate ``rules`` (at one-minute steps) over the window."""
    width = bucket or bucket_for(filters.start, filters.end)
    traffic = run(traffic_query(sources.requests, filters, width))
    alert_series = traffic if width == ALERT_STEP else run(traffic_query(sources.requests, filters, ALERT_STEP))
    return DashboardData(
        filters=filters,
        bucket=width,
        traffic=traffic,
        status=run(status_query(sources.requests, filters)),
        endpoints=run(endpoints_query(sources.requests, filters, top)),
        colos=run(colos_query(sources.requests, filters)),
        exceptions=run(exceptions_query(sources.errors, filters)),
        logs=run(logs_query(sources.logs, filters, search)),
        alert_series=alert_series,
        alerts=evaluate_alerts(alert_series, rules, ALERT_STEP, end=filters.end),
    )


# -- charts (pure: frames in, Altair charts out) ------------------------------------------------------


def _alt() -> Any:
    import altair as alt

    return alt


def _threshold_rules(rules: Sequence[AlertRule], metric: str, scale: float = 1.0) -> list[dict[str, Any]]:
    return [{"threshold": r.threshold * scale, "rule": r.description or r.name, "severity": r.severity}
            for r in rules if r.metric == metric]


_SEVERITY_COLORS = {"critical": "#d62728", "warning": "#ff7f0e", "info": "#1f77b4"}


def traffic_chart(data: DashboardData, rules: Sequence[AlertRule] = RUNBOOK_RULES) -> alt.VConcatChart:
    """Requests per minute and error rate (%) over time, with the error-rate thresholds of ``rules``."""
    alt = _alt()
    frame = data.traffic[["bucket", "requests_per_min", "error_rate"]].copy()
    frame["error_pct"] = frame["error_rate"] * 100
    x = alt.X("bucket:T", title=None)
    rate = alt.Chart(frame, title=f"Requests per minute · {data.filters.describe()}").mark_line(point=len(frame) <= 2).encode(
        x=x, y=alt.Y("requests_per_min:Q", title="requests / min"),
        tooltip=[alt.Tooltip("bucket:T"), alt.Tooltip("requests_per_min:Q", format=".1f")],
    ).properties(width=420, height=160)
    errors = alt.Chart(frame, title=f"Error rate · {data.filters.describe()}").mark_line(
        color="#d62728", point=len(frame) <= 2).encode(
        x=x, y=alt.Y("error_pct:Q", title="errors (%)"),
        tooltip=[alt.Tooltip("bucket:T"), alt.Tooltip("error_pct:Q", format=".2f")],
    ).properties(width=420, height=160)
    thresholds = _threshold_rules(rules, "error_rate", 100)
    if thresholds:
        errors = (errors + _rule_layer(alt, thresholds)).resolve_scale(color="independent")
    return alt.vconcat(rate, errors)


def latency_chart(data: DashboardData, rules: Sequence[AlertRule] = RUNBOOK_RULES, metric: str = "wall") -> alt.LayerChart:
    """p50/p95/p99 of wall time (or ``metric="cpu"``) per bucket, with the latency thresholds of ``rules``."""
    alt = _alt()
    columns = {f"{metric}_p{q}_ms": f"p{q}" for q in (50, 95, 99)}
    frame = data.traffic[["bucket", *columns]].rename(columns=columns).melt(
        "bucket", var_name="percentile", value_name="ms")
    label = "Wall time" if metric == "wall" else "CPU time"
    chart = alt.Chart(frame, title=f"{label} percentiles · {data.filters.describe()}").mark_line(
        point=len(data.traffic) <= 2).encode(
        x=alt.X("bucket:T", title=None), y=alt.Y("ms:Q", title="ms"),
        color=alt.Color("percentile:N", sort=["p50", "p95", "p99"]),
        tooltip=[alt.Tooltip("bucket:T"), "percentile:N", alt.Tooltip("ms:Q", format=".0f")],
    ).properties(width=420, height=200)
    thresholds = _threshold_rules(rules, f"{metric}_p99_ms")
    if not thresholds:
        return chart
    return (chart + _rule_layer(alt, thresholds)).resolve_scale(color="independent")


def _rule_layer(alt: Any, thresholds: list[dict[str, Any]]) -> Any:
    frame = _frame(thresholds)
    return alt.Chart(frame).mark_rule(strokeDash=[4, 3]).encode(
        y="threshold:Q",
        color=alt.Color("severity:N", scale=alt.Scale(domain=list(_SEVERITY_COLORS), range=list(_SEVERITY_COLORS.values())),
                        legend=None),
        tooltip=["rule:N"],
    )


def status_chart(data: DashboardData) -> alt.Chart:
    """Requests per status code, colored by class (2xx, 3xx, 4xx, 5xx, none)."""
    alt = _alt()
    frame = data.status.copy()
    frame["code"] = [("none" if _missing(s) else str(int(s))) for s in frame["status"]]
    frame["class"] = [("none" if _missing(s) else f"{int(s) // 100}xx") for s in frame["status"]]
    classes = {"2xx": "#2ca02c", "3xx": "#1f77b4", "4xx": "#ff7f0e", "5xx": "#d62728", "1xx": "#9467bd", "none": "#7f7f7f"}
    return alt.Chart(frame[["code", "class", "requests"]], title=f"Status codes · {data.filters.describe()}").mark_bar().encode(
        x=alt.X("code:N", sort="-y", title="status"), y=alt.Y("requests:Q"),
        color=alt.Color("class:N", scale=alt.Scale(domain=list(classes), range=list(classes.values()))),
        tooltip=["code:N", "requests:Q"],
    ).properties(width=420, height=200)


def colo_chart(data: DashboardData) -> alt.Chart:
    """Requests per colo (with its country), colored by error rate."""
    alt = _alt()
    frame = data.colos[["colo", "country", "requests", "error_rate"]].copy()
    frame["label"] = [f"{c} ({k})" for c, k in zip(frame["colo"], frame["country"], strict=True)]
    frame["error_pct"] = frame["error_rate"] * 100
    return alt.Chart(frame[["label", "requests", "error_pct"]], title=f"Requests by colo · {data.filters.describe()}").mark_bar().encode(
        y=alt.Y("label:N", sort="-x", title=None), x=alt.X("requests:Q"),
        color=alt.Color("error_pct:Q", title="errors (%)", scale=alt.Scale(scheme="orangered")),
        tooltip=["label:N", "requests:Q", alt.Tooltip("error_pct:Q", format=".2f")],
    ).properties(width=420, height=220)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(rows)


def chart_bundle(chart: Any) -> dict[str, Any]:
    """A display_data output of a chart as Vega-Lite v5 JSON (what JupyterLab and Voilà render), drawn as SVG."""
    spec = chart.to_dict(validate=False)
    spec["$schema"] = _VEGA_LITE_SCHEMA
    return {
        "output_type": "display_data",
        "data": {VEGA_LITE_MIME: spec, "text/plain": f"<{type(chart).__name__}: {_title_of(spec)}>"},
        "metadata": {VEGA_LITE_MIME: {"embed_options": {"renderer": "svg", "actions": False}}},
    }


def show(chart: Any) -> None:
    """Display an Altair chart as Vega-Lite v5 (renders offline in JupyterLab 4 and Voilà 0.5)."""
    from IPython.display import display

    bundle = chart_bundle(chart)
    display(bundle["data"], metadata=bundle["metadata"], raw=True)


def enable_chart_renderer() -> None:
    """Make Altair display charts the way :func:`show` does, so ``chart`` as a cell's value renders offline.

    Altair 6's default renderer writes HTML that loads Vega from a CDN (nothing
    shows without network access), and its ``mimetype`` renderer writes
    Vega-Lite 6, which JupyterLab 4 and Voilà 0.5 do not render. This
    registers (and enables) the renderer ``"parquedb"``, which hands them a v5 spec.
    """
    alt = _alt()

    def render(spec: dict[str, Any], **options: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        spec = {**spec, "$schema": _VEGA_LITE_SCHEMA}
        return ({VEGA_LITE_MIME: spec, "text/plain": f"<Chart: {_title_of(spec)}>"},
                {VEGA_LITE_MIME: {"embed_options": {"renderer": "svg", "actions": False, **options}}})

    alt.renderers.register("parquedb", render)
    alt.renderers.enable("parquedb")


def _title_of(spec: Mapping[str, Any]) -> str:
    for part in (spec, *spec.get("vconcat", ()), *spec.get("layer", ())):
        title = part.get("title")
        if title:
            return title if isinstance(title, str) else str(title.get("text", ""))
    return ""


# -- tables (pure: frames in, HTML out) -------------------------------------------------------------------


def _format_cell(value: Any, column: str) -> str:
    if _missing(value) or value is None:
        return ""
    if column.endswith("error_rate"):
        return f"{float(value) * 100:.2f}%"
    if column.endswith("_ms"):
        return f"{float(value):,.0f}"
    if hasattr(value, "strftime"):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float) and value.is_integer():
        return f"{int(value):,}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def html_table(frame: pd.DataFrame, title: str, empty: str = "nothing in this window") -> str:
    """A compact HTML table of ``frame`` (escaped; rates as %, milliseconds rounded)."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_format_cell(v, str(c)))}</td>" for c, v in zip(frame.columns, row, strict=True))
        + "</tr>"
        for row in frame.itertuples(index=False, name=None)
    )
    body = f"<table class='pqdb-table'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>" if len(frame) else f"<p><i>{html.escape(empty)}</i></p>"
    return f"<div class='pqdb-panel'><h4>{html.escape(title)}</h4>{body}</div>"


def alerts_html(alerts: Sequence[AlertEvent], rules: Sequence[AlertRule]) -> str:
    """The alerts panel: each firing (severity, rule, fired, resolved/active, peak), then the rules evaluated."""
    if alerts:
        rows = "".join(
            f"<tr class='pqdb-alert-{html.escape(a.rule.severity)}'><td>{html.escape(a.rule.severity.upper())}</td>"
            f"<td>{html.escape(a.rule.description or a.rule.name)}</td><td>{_when(a.fired_at)}</td>"
            f"<td>{'active' if a.active else _when(a.resolved_at)}</td><td>{html.escape(_metric_text(a.rule.metric, a.peak))}</td></tr>"
            for a in alerts
        )
        active = sum(a.active for a in alerts)
        summary = f"{len(alerts)} alert{'s' * (len(alerts) != 1)} fired in this window, {active} active"
        body = (f"<p>{summary}</p><table class='pqdb-table'><thead><tr><th>severity</th><th>rule</th><th>fired</th>"
                f"<th>resolved</th><th>peak</th></tr></thead><tbody>{rows}</tbody></table>")
    else:
        body = "<p>No alert fired in this window.</p>"
    listed = "; ".join(html.escape(r.description or r.name) for r in rules)
    return f"<div class='pqdb-panel pqdb-alerts'><h4>Alerts</h4>{body}<p><small>Rules: {listed}</small></p></div>"


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else ""


def _metric_text(metric: str, value: float) -> str:
    return f"{value * 100:.1f}%" if metric.endswith("rate") else f"{value:,.0f} ms"


def summary_html(data: DashboardData) -> str:
    totals = data.totals
    start = _when(data.filters.start) or "the beginning"
    end = _when(data.filters.end) or "now"
    return (f"<div class='pqdb-summary'><b>{totals['requests']:,}</b> requests, <b>{totals['errors']:,}</b> errors "
            f"({totals['error_rate'] * 100:.2f}%) · {html.escape(data.filters.describe())} · {start} – {end} "
            f"· {_bucket_text(data.bucket)} buckets</div>")


def _bucket_text(bucket: dt.timedelta) -> str:
    seconds = int(bucket.total_seconds())
    if seconds % 86400 == 0:
        return f"{seconds // 86400} d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"


# -- the widget ---------------------------------------------------------------------------------------------


_ALL = "(all)"
_STYLE = """<style>
.pqdb-table {border-collapse: collapse; font-size: 12px}
.pqdb-table th, .pqdb-table td {padding: 2px 8px; text-align: left; border-bottom: 1px solid #ddd}
.pqdb-alert-critical td:first-child {color: #d62728; font-weight: bold}
.pqdb-alert-warning td:first-child {color: #ff7f0e; font-weight: bold}
.pqdb-error {color: #d62728}
</style>"""


class WorkerDashboard:
    """An ipywidgets dashboard over the tail views of ``db``; display it (it is the last value of a cell) or use ``.widget``.

    Controls: time range, script, colo, latency metric, log search, refresh
    button and auto-refresh interval. Panels: alerts (``rules``, evaluated
    over the window), traffic (requests/min and error rate), latency
    percentiles, status codes, requests by colo, top endpoints, recent
    exceptions and log lines. Changing a control re-runs the queries;
    *Refresh* also refreshes stale views and re-reads the script and colo lists.

    ``anchor="latest"`` (default) ends windows at the newest request (right
    for historical data and for a live tail alike); ``"now"`` ends them at the
    current time. ``rules`` is a list of :class:`AlertRule` (default
    :data:`RUNBOOK_RULES`); assign ``dashboard.rules`` and call
    :meth:`refresh` to change them.
    """

    def __init__(self, db: Database, *, rules: Sequence[AlertRule] | None = None, time_range: str = "Last 24 hours",
                 anchor: str = "latest", auto_refresh: str = "Off") -> None:
        import ipywidgets as w

        if time_range not in TIME_RANGES:
            raise ValidationError("WorkerDashboard time_range", f"expected one of {', '.join(TIME_RANGES)}, found {time_range!r}")
        if anchor not in ("latest", "now"):
            raise ValidationError("WorkerDashboard anchor", f"expected 'latest' or 'now', found {anchor!r}")
        if auto_refresh not in AUTO_REFRESH:
            raise ValidationError("WorkerDashboard auto_refresh", f"expected one of {', '.join(AUTO_REFRESH)}, found {auto_refresh!r}")
        self.db = db
        self.rules: list[AlertRule] = list(RUNBOOK_RULES if rules is None else rules)
        self.anchor = anchor
        self.data: DashboardData | None = None
        self.error: str | None = None
        self.refreshes = 0
        self._lock = threading.RLock()
        self._timer: threading.Timer | None = None
        self._overview: dict[str, Any] = {"first": None, "last": None, "scripts": [], "colos": []}
        self._quiet = False

        self.time_range = w.Dropdown(options=list(TIME_RANGES), value=time_range, description="Window")
        self.script = w.Dropdown(options=[_ALL], value=_ALL, description="Script")
        self.colo = w.Dropdown(options=[_ALL], value=_ALL, description="Colo")
        self.latency_metric = w.ToggleButtons(options=[("wall time", "wall"), ("CPU time", "cpu")], value="wall",
                                              description="Latency")
        self.search = w.Text(value="", placeholder="search log messages", description="Logs",
                             continuous_update=False)
        self.refresh_button = w.Button(description="Refresh", icon="refresh", tooltip="refresh stale views and re-run")
        self.auto_refresh = w.Dropdown(options=list(AUTO_REFRESH), value="Off", description="Auto")
        self.status = w.HTML()
        self.summary = w.HTML()
        self.alerts_panel = w.HTML()
        self.traffic_out = w.Output()
        self.latency_out = w.Output()
        self.status_out = w.Output()
        self.colo_out = w.Output()
        self.endpoints_panel = w.HTML()
        self.exceptions_panel = w.HTML()
        self.logs_panel = w.HTML()
        for out in (self.traffic_out, self.latency_out, self.status_out, self.colo_out):
            out.add_class("pqdb-chart")
        self.traffic_out.add_class("pqdb-traffic")
        self.latency_out.add_class("pqdb-latency")

        controls = w.HBox([self.time_range, self.script, self.colo, self.refresh_button, self.auto_refresh])
        self.widget = w.VBox([
            w.HTML(_STYLE + "<h3>Workers</h3>"), controls, w.HBox([self.latency_metric, self.search]),
            self.status, self.summary, self.alerts_panel,
            w.HBox([self.traffic_out, self.latency_out]),
            w.HBox([self.status_out, self.colo_out]),
            w.HBox([self.endpoints_panel, self.exceptions_panel]),
            self.logs_panel,
        ])
        self.widget.add_class("pqdb-dashboard")
        tail_sources(db)  # the views must exist: fail here, not inside a callback

        for control in (self.time_range, self.script, self.colo, self.search):
            control.observe(self._on_filter, names="value")
        self.latency_metric.observe(self._on_latency_metric, names="value")
        self.refresh_button.on_click(lambda _: self.refresh(reload=True))
        self.auto_refresh.observe(self._on_auto_refresh, names="value")
        self.refresh(reload=True)
        if auto_refresh != "Off":
            self.auto_refresh.value = auto_refresh

    # -- state -> filters ------------------------------------------------------------------------------

    def filters(self) -> Filters:
        """The filters the controls stand for (the window ends at the anchor)."""
        anchor = self._overview["last"] if self.anchor == "latest" else dt.datetime.now(dt.timezone.utc)
        start, end = window(anchor, TIME_RANGES[self.time_range.value])
        return Filters(start=start, end=end, script=None if self.script.value == _ALL else self.script.value,
                       colo=None if self.colo.value == _ALL else self.colo.value)

    # -- refreshing ------------------------------------------------------------------------------------

    def refresh(self, *, reload: bool = False) -> DashboardData | None:
        """Re-run the queries; ``reload`` also refreshes stale views and re-reads the script and colo lists."""
        with self._lock:
            try:
                if reload:
                    self._reload()
                sources = tail_sources(self.db)
                filters = self.filters()
                bucket = None
                if filters.start is None and self._overview["first"] is not None:  # "All": buckets fit the data
                    bucket = bucket_for(self._overview["first"], self._overview["last"])
                data = load_dashboard(runner_for(self.db), sources, filters, rules=self.rules,
                                      search=self.search.value.strip(), bucket=bucket)
            except ParqueDBError as err:  # shown in the dashboard: a callback has nowhere else to report
                self.error = str(err)
                self.status.value = f"<p class='pqdb-error'>{html.escape(type(err).__name__)}: {html.escape(str(err))}</p>"
                return None
            self.error = None
            self.data = data
            self.refreshes += 1
            self.status.value = ""
            self._render(data)
            return data

    def _reload(self) -> None:
        for name in (REQUESTS_VIEW, ERRORS_VIEW, LOGS_VIEW):
            if self.db.view_state(name).state in ("stale", "pending"):
                self.db.refresh_view(name)
        sources = tail_sources(self.db)
        row = runner_for(self.db)(overview_query(sources.requests)).to_dict("records")[0]
        last = row["last"]
        self._overview = {
            "first": row["first"].to_pydatetime() if hasattr(row["first"], "to_pydatetime") else row["first"],
            "last": last.to_pydatetime() if hasattr(last, "to_pydatetime") else last,
            "scripts": list(row["scripts"] if row["scripts"] is not None else []),
            "colos": list(row["colos"] if row["colos"] is not None else []),
        }
        self._quiet = True
        try:
            for control, values in ((self.script, self._overview["scripts"]), (self.colo, self._overview["colos"])):
                current = control.value
                control.options = [_ALL, *values]
                control.value = current if current in control.options else _ALL
        finally:
            self._quiet = False

    def _render(self, data: DashboardData) -> None:
        self.summary.value = summary_html(data)
        self.alerts_panel.value = alerts_html(data.alerts, self.rules)
        self.traffic_out.outputs = (chart_bundle(traffic_chart(data, self.rules)),)
        self.latency_out.outputs = (chart_bundle(latency_chart(data, self.rules, self.latency_metric.value)),)
        self.status_out.outputs = (chart_bundle(status_chart(data)),)
        self.colo_out.outputs = (chart_bundle(colo_chart(data)),)
        self.endpoints_panel.value = html_table(data.endpoints, "Top endpoints")
        self.exceptions_panel.value = html_table(data.exceptions[["timestamp", "script", "name", "message", "colo"]],
                                                 "Recent exceptions")
        search = self.search.value.strip()
        title = f"Log lines containing {search!r}" if search else "Recent log lines"
        self.logs_panel.value = html_table(data.logs, title)

    # -- callbacks -------------------------------------------------------------------------------------

    def _on_filter(self, change: Mapping[str, Any]) -> None:
        if not self._quiet:
            self.refresh()

    def _on_latency_metric(self, change: Mapping[str, Any]) -> None:
        if self.data is not None:
            self.latency_out.outputs = (chart_bundle(latency_chart(self.data, self.rules, change["new"])),)

    def _on_auto_refresh(self, change: Mapping[str, Any]) -> None:
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        seconds = AUTO_REFRESH[self.auto_refresh.value]
        if seconds:
            self._timer = threading.Timer(seconds, self._tick)
            self._timer.daemon = True
            self._timer.start()

    def _tick(self) -> None:
        self.refresh(reload=True)
        self._schedule()

    @property
    def auto_refresh_seconds(self) -> int:
        """The auto-refresh interval in seconds (0: off)."""
        return AUTO_REFRESH[self.auto_refresh.value]

    def close(self) -> None:
        """Stop auto-refresh and close the widgets."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.widget.close()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def __repr__(self) -> str:
        return f"WorkerDashboard({self.db!r}, {self.filters().describe()})"


def with_rules(rules: Iterable[AlertRule], **changes: Any) -> list[AlertRule]:
    """A copy of ``rules`` with fields changed on every rule (e.g. ``min_requests=1``)."""
    return [replace(rule, **changes) for rule in rules]
