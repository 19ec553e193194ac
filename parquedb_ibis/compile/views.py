"""Materialized-view definitions: validate ParqueDB's view DSL and compile it to sqlglot.

A view definition is the dict ParqueDB's TypeScript ``defineView`` takes::

    {"$from": "WorkerRequests",
     "$groupBy": ["scriptName", "method", {"hour": "$timestamp"}],
     "$compute": {"requestCount": {"$count": "*"},
                  "errorRate": {"$avg": {"$cond": [{"$gte": ["$status", 500]}, 1, 0]}}},
     "$refresh": {"mode": "streaming"}}

This module is pure (no DuckDB, no I/O). It has three layers:

* :func:`define_view` checks the *shape* of a definition exactly like upstream
  ``defineView`` (same error codes) and fills in the ``$refresh`` defaults;
  :func:`check_cron` mirrors upstream ``validateCronExpression``;
  :func:`parse_schema`, :func:`view_dependencies`, :func:`detect_cycle` and
  :func:`validate_schema` mirror the schema-level helpers of
  ``src/materialized-views/define.ts``;
* :func:`plan_view` resolves a definition against a :data:`Catalog` (which
  names are collections with which schema, which are views) and returns a
  :class:`ViewPlan`: the typed output columns and the sqlglot trees of every
  step, over placeholder tables that the refresher binds to real relations;
* :func:`compile_view` is the one-call form: the ``SELECT`` computing the
  view's rows from its sources.

Upstream never executes this DSL (docs/views.md says what each directive
means here). Evaluation order: ``$from`` → ``$expand``/``$flatten`` →
``$unnest`` → ``$filter`` → ``$select`` → ``$groupBy``/``$compute``.

Every intermediate relation has the *stored-row layout* of
:mod:`parquedb_ibis.documents`: the system columns (NULL when a step does not
carry them), the declared typed columns of a :class:`~parquedb_ibis.schema.Schema`,
the ``$data`` variant column, plus the hidden ``$src`` column (the ``$id`` of
the source entity a row came from). That is what lets ``$filter`` reuse
:func:`~parquedb_ibis.compile.filters.compile_filter` unchanged at every step.

The operator languages are tables: :data:`AGGREGATES` (``$compute``),
:data:`EXPRESSIONS` (inside aggregates, ``$select`` and ``$expr``) and
:data:`TIME_BUCKETS` (``$groupBy`` objects).

>>> from parquedb_ibis.schema import Schema
>>> catalog = {"Orders": CollectionSource(Schema.parse({"status": "string", "total": "int"}))}
>>> plan = plan_view("Revenue", {"$from": "Orders", "$groupBy": ["status"],
...                              "$compute": {"n": {"$count": "*"}, "revenue": {"$sum": "total"}}}, catalog)
>>> [(c, plan.output_types[c]) for c in plan.outputs]
[('status', 'VARCHAR'), ('n', 'BIGINT'), ('revenue', 'BIGINT')]
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
import zoneinfo
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from functools import partial
from typing import Any

from sqlglot import exp

from parquedb_ibis.compile import sql
from parquedb_ibis.compile.filters import Ref, compile_filter, resolve_path
from parquedb_ibis.documents import ABSENT_KEY, DATA_COLUMN, SYSTEM_FIELDS
from parquedb_ibis.errors import FilterError, ViewCycleError, ViewDefinitionError, did_you_mean
from parquedb_ibis.schema import SYSTEM_COLUMN_TYPES, FieldType, Schema, parse_field

ViewSpec = Mapping[str, Any]

#: The hidden column holding the ``$id`` of the source entity a row came from.
SOURCE_COLUMN = "$src"

#: Prefix of the hidden columns holding decomposable aggregate state (``$agg.<output>.<part>``).
STATE_PREFIX = "$agg."

#: Placeholder table a plan reads its ``$from`` source from (bound by :meth:`ViewPlan.bind`).
SOURCE_TABLE = "$source"

#: Placeholder prefix of the collections ``$expand`` joins (``$lookup:<collection>``).
LOOKUP_TABLE = "$lookup:"

DIRECTIVES: tuple[str, ...] = (
    "$from", "$expand", "$flatten", "$filter", "$select", "$unnest", "$groupBy", "$compute", "$refresh",
)
REFRESH_MODES: tuple[str, ...] = ("streaming", "scheduled", "manual")
REFRESH_STRATEGIES: tuple[str, ...] = ("replace", "append")
#: ``defineView`` fills these in (``DEFAULT_REFRESH_CONFIG``, types.ts:1080).
DEFAULT_REFRESH: dict[str, str] = {"mode": "streaming", "strategy": "replace", "timezone": "UTC"}
#: Grace period of streaming and scheduled views when ``$refresh.gracePeriod`` is not given (staleness.ts:272).
DEFAULT_GRACE_PERIOD = "15m"

_VIEW_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d)$")
_DURATION_UNITS: dict[str, str] = {"ms": "milliseconds", "s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


# -- names, durations, cron ------------------------------------------------------------


def is_valid_view_name(name: Any) -> bool:
    """Upstream ``isValidViewName``: a letter or ``_``, then letters, digits and ``_``.

    >>> is_valid_view_name("active_users_v2"), is_valid_view_name("my.view")
    (True, False)
    """
    return isinstance(name, str) and bool(_VIEW_NAME.match(name))


def parse_duration(text: Any) -> dt.timedelta:
    """A ``gracePeriod`` such as ``'15m'`` (``ms``, ``s``, ``m``, ``h``, ``d``); raises ValueError.

    >>> parse_duration("90s")
    datetime.timedelta(seconds=90)
    """
    m = _DURATION.match(text) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"invalid duration {text!r}; expected a number and a unit (ms, s, m, h, d) like '15m'")
    return dt.timedelta(**{_DURATION_UNITS[m[2]]: int(m[1])})


@dataclass(frozen=True)
class CronCheck:
    """The outcome of :func:`check_cron` (upstream ``validateCronExpression``)."""

    valid: bool
    error: str | None = None
    field: str | None = None


#: The five cron fields: (name, minimum, maximum). Names are upstream's (they appear in messages).
CRON_FIELDS: tuple[tuple[str, int, int], ...] = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 6),
)

_CRON_NUMBER = re.compile(r"^\d+$")


def check_cron(expression: Any) -> CronCheck:
    """Validate a 5-field cron expression the way ParqueDB does.

    Each field is a comma list of ``*``, ``n``, ``a-b``, ``*/s``, ``a-b/s``
    or ``n/s``; values are decimal integers in the field's range (day of
    week 0-6, 0 = Sunday; no names, no ``@hourly``, no ``L W # ?``).

    >>> check_cron("0 24 * * *")
    CronCheck(valid=False, error='Invalid value in hour: 24 is out of range (0-23)', field='hour')
    """
    if not isinstance(expression, str) or not expression:
        return CronCheck(False, "Cron expression must be a non-empty string")
    parts = expression.split()
    if not parts:
        return CronCheck(False, "Cron expression cannot be empty")
    if len(parts) != len(CRON_FIELDS):
        return CronCheck(
            False,
            f"Cron expression must have exactly 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}",
        )
    for text, (name, low, high) in zip(parts, CRON_FIELDS, strict=True):
        for item in text.split(","):
            problem = _cron_item_problem(item, name, low, high)
            if problem:
                return CronCheck(False, problem, name)
    return CronCheck(True)


def _cron_item_problem(item: str, name: str, low: int, high: int) -> str | None:
    base, slash, step = item.partition("/")
    if slash:
        if not step:
            return f"Invalid step value in {name}: missing step after '/'"
        if not _CRON_NUMBER.match(step) or int(step) == 0:
            return f"Invalid step value in {name}: '{step}' must be a positive integer"
    if base == "*":
        return None
    if "-" in base:
        bounds = base.split("-")
        if len(bounds) != 2 or not all(bounds):
            return f"Invalid range in {name}: '{item}' is malformed"
        for bound in bounds:
            if not _CRON_NUMBER.match(bound):
                return f"Invalid value in {name}: '{bound}' is not a valid integer"
        start, end = int(bounds[0]), int(bounds[1])
        for n in (start, end):
            if not low <= n <= high:
                return f"Invalid value in {name}: {n} is out of range ({low}-{high})"
        if start > end:
            return f"Invalid range in {name}: start {start} is greater than end {end}"
        return None
    if not _CRON_NUMBER.match(base):
        return f"Invalid value in {name}: '{base}' is not a valid integer"
    if not low <= int(base) <= high:
        return f"Invalid value in {name}: {int(base)} is out of range ({low}-{high})"
    return None


def is_valid_cron(expression: Any) -> bool:
    """Upstream ``isValidCronExpression``."""
    return check_cron(expression).valid


# -- define_view: upstream defineView, shape only --------------------------------------------

def _error(view: str | None, path: str, problem: str, code: str) -> ViewDefinitionError:
    return ViewDefinitionError(view or "view", path, problem, code)


def define_view(definition: Any, name: str | None = None) -> dict[str, Any]:
    """Check a definition's shape and return it with ``$refresh`` defaults (upstream ``defineView``).

    Raises :class:`ViewDefinitionError` with upstream's ``code`` (``MISSING_FROM``,
    ``INVALID_FROM``, ``INVALID_EXPAND``, ``INVALID_FLATTEN``, ``INVALID_FILTER``,
    ``INVALID_SELECT``, ``INVALID_GROUP_BY``, ``INVALID_COMPUTE``, ``INVALID_UNNEST``,
    ``INVALID_REFRESH_MODE``, ``MISSING_SCHEDULE``, ``INVALID_SCHEDULE``) plus ours
    (``INVALID_DEFINITION``, ``UNKNOWN_DIRECTIVE``, ``INVALID_REFRESH``). Sources,
    fields and operators are checked by :func:`plan_view`.

    >>> define_view({"$from": "Orders"})
    {'$from': 'Orders', '$refresh': {'mode': 'streaming', 'strategy': 'replace', 'timezone': 'UTC'}}
    """
    if not isinstance(definition, Mapping):
        raise _error(name, "", f"expected a view definition object, found {type(definition).__name__}", "INVALID_DEFINITION")
    for key in definition:
        if key not in DIRECTIVES:
            hint = did_you_mean(str(key), DIRECTIVES)
            raise _error(name, str(key), f"unknown directive {key!r}{hint}", "UNKNOWN_DIRECTIVE")
    if definition.get("$from") is None:
        raise _error(name, "$from", "$from (source collection) is required for materialized views", "MISSING_FROM")
    source = definition["$from"]
    if not isinstance(source, str) or not source:
        raise _error(name, "$from", "$from must be a non-empty string (source collection name)", "INVALID_FROM")
    _check_expand(definition, name)
    _check_flatten(definition, name)
    if "$filter" in definition:
        _check_filter_shape(definition["$filter"], name)
    _check_select(definition, name)
    if "$groupBy" in definition:
        group_by = definition["$groupBy"]
        if not isinstance(group_by, (list, tuple)):
            raise _error(name, "$groupBy", "$groupBy must be an array", "INVALID_GROUP_BY")
        for i, item in enumerate(group_by):
            if not isinstance(item, (str, Mapping)):
                raise _error(name, f"$groupBy.{i}", "$groupBy items must be field names or objects", "INVALID_GROUP_BY")
    _check_compute(definition, name)
    if "$unnest" in definition:
        unnest = definition["$unnest"]
        if not isinstance(unnest, str) or not unnest:
            raise _error(name, "$unnest", "$unnest must be a non-empty string (field name to unnest)", "INVALID_UNNEST")
    refresh = _check_refresh(definition.get("$refresh"), name)
    out: dict[str, Any] = {"$from": source}
    for key in DIRECTIVES[1:-1]:
        if key in definition:
            out[key] = definition[key]
    out["$refresh"] = refresh
    return out


def _check_expand(definition: Mapping[str, Any], name: str | None) -> None:
    if "$expand" not in definition:
        return
    expand = definition["$expand"]
    if not isinstance(expand, (list, tuple)):
        raise _error(name, "$expand", "$expand must be an array of strings", "INVALID_EXPAND")
    if not all(isinstance(x, str) and x for x in expand):
        raise _error(name, "$expand", "$expand must contain only non-empty strings", "INVALID_EXPAND")


def _check_flatten(definition: Mapping[str, Any], name: str | None) -> None:
    if "$flatten" not in definition:
        return
    flatten = definition["$flatten"]
    if not isinstance(flatten, Mapping):
        raise _error(name, "$flatten", "$flatten must be an object mapping relation names to aliases", "INVALID_FLATTEN")
    for key, alias in flatten.items():
        if not isinstance(alias, str) or not alias:
            problem = f'$flatten value for "{key}" must be a non-empty string'
            raise _error(name, f"$flatten.{key}", problem, "INVALID_FLATTEN")


def _check_filter_shape(filter: Any, name: str | None) -> None:
    """Upstream's filter shape checks; operators are compiled (and checked) by plan_view."""
    if not isinstance(filter, Mapping):
        raise _error(name, "$filter", "$filter must be a filter object", "INVALID_FILTER")
    for key, operand in filter.items():
        if key in ("$and", "$or", "$nor"):
            if not isinstance(operand, (list, tuple)):
                raise _error(name, f"$filter.{key}", f"{key} must be an array", "INVALID_FILTER")
            for i, sub in enumerate(operand):
                if not isinstance(sub, Mapping):
                    raise _error(name, f"$filter.{key}.{i}", f"$filter.{key}[{i}] must be a filter object", "INVALID_FILTER")
                _check_filter_shape(sub, name)
        elif isinstance(key, str) and key.startswith("$") and key not in _FILTER_TOP_LEVEL:
            raise _error(name, "$filter", f'Unknown filter operator: "{key}"', "INVALID_FILTER")


def _check_select(definition: Mapping[str, Any], name: str | None) -> None:
    if "$select" not in definition:
        return
    select = definition["$select"]
    if not isinstance(select, Mapping):
        problem = "$select must be an object mapping output fields to source expressions"
        raise _error(name, "$select", problem, "INVALID_SELECT")
    for key, value in select.items():
        if not isinstance(value, (str, Mapping)):
            raise _error(name, f"$select.{key}", f'$select value for "{key}" must be a string', "INVALID_SELECT")


def _check_compute(definition: Mapping[str, Any], name: str | None) -> None:
    if "$compute" not in definition:
        return
    compute = definition["$compute"]
    if not isinstance(compute, Mapping):
        raise _error(name, "$compute", "$compute must be an object mapping field names to aggregate expressions",
                     "INVALID_COMPUTE")
    for key, expr in compute.items():
        if not isinstance(expr, Mapping):
            raise _error(name, f"$compute.{key}", f'$compute["{key}"] must be an aggregate expression object',
                         "INVALID_COMPUTE")
        ops = [op for op in expr if isinstance(op, str) and op.startswith("$")]
        if len(ops) != 1 or len(expr) != 1:
            raise _error(name, f"$compute.{key}", f"expected exactly one aggregate operator, found {sorted(map(str, expr))}",
                         "INVALID_COMPUTE")
        if ops[0] not in AGGREGATES:
            raise _error(name, f"$compute.{key}", f"unknown operator {ops[0]!r}{did_you_mean(ops[0], AGGREGATES)}",
                         "INVALID_COMPUTE")


def _check_refresh(refresh: Any, name: str | None) -> dict[str, Any]:
    if refresh is None:
        return dict(DEFAULT_REFRESH)
    if not isinstance(refresh, Mapping):
        raise _error(name, "$refresh", f"expected an object, found {type(refresh).__name__}", "INVALID_REFRESH")
    out = {**DEFAULT_REFRESH, **refresh}
    mode = out["mode"]
    if mode not in REFRESH_MODES:
        problem = f'Invalid refresh mode: "{mode}". Must be "streaming", "scheduled", or "manual"'
        raise _error(name, "$refresh.mode", problem, "INVALID_REFRESH_MODE")
    if mode == "scheduled":
        if not out.get("schedule"):
            raise _error(name, "$refresh.schedule", 'Schedule is required when refresh mode is "scheduled"',
                         "MISSING_SCHEDULE")
        check = check_cron(out["schedule"])
        if not check.valid:
            raise _error(name, "$refresh.schedule",
                         f'Invalid cron expression: "{out["schedule"]}". Expected format: "minute hour day month weekday" '
                         f"({check.error})", "INVALID_SCHEDULE")
    elif "schedule" in refresh and not is_valid_cron(refresh["schedule"]):
        raise _error(name, "$refresh.schedule", f"invalid cron expression {refresh['schedule']!r}", "INVALID_SCHEDULE")
    if out["strategy"] not in REFRESH_STRATEGIES:
        raise _error(name, "$refresh.strategy",
                     f"unknown strategy {out['strategy']!r}; expected one of {', '.join(REFRESH_STRATEGIES)}",
                     "INVALID_REFRESH")
    try:
        zoneinfo.ZoneInfo(out["timezone"])
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise _error(name, "$refresh.timezone", f"unknown time zone {out['timezone']!r}", "INVALID_REFRESH") from None
    if "gracePeriod" in out:
        try:
            parse_duration(out["gracePeriod"])
        except ValueError as err:
            raise _error(name, "$refresh.gracePeriod", str(err), "INVALID_REFRESH") from None
    return out


# -- schema-level helpers (define.ts) --------------------------------------------------------


@dataclass(frozen=True)
class ParsedSchema:
    """A ParqueDB schema split the way ``parseSchema`` does."""

    collections: dict[str, Any]
    streams: dict[str, Any]
    views: dict[str, dict[str, Any]]


def parse_schema(schema: Mapping[str, Any]) -> ParsedSchema:
    """Classify a schema: string ``$from`` ⇒ view, string ``$ingest`` ⇒ stream collection, else collection.

    Non-object entries are skipped (as upstream).
    """
    collections: dict[str, Any] = {}
    streams: dict[str, Any] = {}
    views: dict[str, dict[str, Any]] = {}
    for name, entry in schema.items():
        if not isinstance(entry, Mapping):
            continue
        if isinstance(entry.get("$from"), str):
            views[name] = dict(entry)
        elif isinstance(entry.get("$ingest"), str):
            streams[name] = dict(entry)
        else:
            collections[name] = dict(entry)
    return ParsedSchema(collections, streams, views)


def view_dependencies(views: Mapping[str, ViewSpec]) -> dict[str, list[str]]:
    """``{view: [its $from]}`` for every view (upstream ``getMVDependencies``)."""
    return {name: [spec["$from"]] for name, spec in views.items() if isinstance(spec.get("$from"), str)}


def detect_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """The first dependency cycle found by a depth-first walk, first name repeated last; None if acyclic.

    ``graph`` maps each view to the names it reads; names that are not keys
    (collections) end a path. Mirrors upstream ``detectMVCycles``.

    >>> detect_cycle({"A": ["B"], "B": ["C"], "C": ["A"]})
    ['A', 'B', 'C', 'A']
    """
    done: set[str] = set()

    def walk(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done or node not in graph:
            return None
        for nxt in graph[node]:
            found = walk(nxt, [*path, node])
            if found:
                return found
        done.add(node)
        return None

    for start in graph:
        found = walk(start, [])
        if found:
            return found
    return None


def validate_schema(schema: Mapping[str, Any]) -> dict[str, list[ViewDefinitionError]]:
    """Problems of every view in a ParqueDB schema (upstream ``validateSchema``), by view name.

    Reports a dependency cycle on the first view of the cycle, shape errors
    (:func:`define_view`) and ``$from`` names that are neither a collection,
    a stream collection nor a view.
    """
    parsed = parse_schema(schema)
    errors: dict[str, list[ViewDefinitionError]] = {}
    cycle = detect_cycle(view_dependencies(parsed.views))
    if cycle:
        errors.setdefault(cycle[0], []).append(ViewCycleError(cycle))
    known = {*parsed.collections, *parsed.streams, *parsed.views}
    for name, spec in parsed.views.items():
        try:
            define_view(spec, name)
        except ViewDefinitionError as err:
            errors.setdefault(name, []).append(err)
            continue
        if spec["$from"] not in known:
            errors.setdefault(name, []).append(_unknown_source(name, spec["$from"], parsed.collections, parsed.views))
    return errors


# -- the catalog ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CollectionSource:
    """A catalog entry: a collection with its schema, read as ``relation`` (default: a table of that name)."""

    schema: Schema = field(default_factory=Schema)
    relation: exp.Expr | None = None


@dataclass(frozen=True)
class ViewSource:
    """A catalog entry: another view, read as ``relation`` (default: a table of that name holding its stored rows)."""

    definition: ViewSpec
    relation: exp.Expr | None = None


Catalog = Mapping[str, CollectionSource | ViewSource]


def _unknown_source(view: str, source: str, collections: Iterable[str], views: Iterable[str]) -> ViewDefinitionError:
    collections, views = sorted(collections), sorted(views)
    hint = did_you_mean(source, [*collections, *views])
    listing = f"collections: {', '.join(collections) or 'none'}; views: {', '.join(views) or 'none'}"
    return ViewDefinitionError(view, "$from", f"unknown source {source!r}{hint} ({listing})", "UNKNOWN_SOURCE")


# -- casts ----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _data_type(name: str) -> exp.DataType:
    return exp.DataType.build(name, dialect=sql.DIALECT)


def typed_cast(node: exp.Expr, to: str) -> exp.Cast:
    """``CAST(node AS to)`` with the parsed type cached (views build thousands of casts)."""
    return exp.Cast(this=node, to=_data_type(to).copy())


def typed_try_cast(node: exp.Expr, to: str) -> exp.TryCast:
    return exp.TryCast(this=node, to=_data_type(to).copy(), safe=True)


# -- values: typed SQL expressions ----------------------------------------------------------------

#: Kinds are ParqueDB type strings (``'int'``, ``'timestamp'``, ``'variant'``, ``'string[]'``...) plus ``'null'``.
NUMBER_KINDS = frozenset({"int", "float"})
_RANGE_FAMILIES = frozenset({"number", "string", "timestamp", "date"})


def family(kind: str) -> str:
    """The comparison family of a kind: number, string, boolean, timestamp, date, variant, list or null."""
    if kind in NUMBER_KINDS or kind.startswith("decimal"):
        return "number"
    if kind.endswith("[]"):
        return "list"
    return {"relation": "string"}.get(kind, kind)


@dataclass(frozen=True)
class Value:
    """A typed SQL value: the expression, its kind and (for a bare field path) its filter :class:`Ref`."""

    sql: exp.Expr
    kind: str
    ref: Ref | None = None

    def node(self) -> exp.Expr:
        return self.sql.copy()

    @property
    def family(self) -> str:
        return family(self.kind)


def duckdb_type(kind: str) -> str:
    """The DuckDB column type a kind is stored as (``'null'`` is stored as JSON)."""
    if kind == "null":
        return "JSON"
    return parse_field("value", kind).duckdb_type


def literal_value(value: Any) -> Value:
    """The :class:`Value` of a Python constant (lists and objects become variant JSON)."""
    if value is None:
        return Value(sql.null(), "null")
    if isinstance(value, bool):
        return Value(sql.boolean(value), "boolean")
    if isinstance(value, int):
        return Value(sql.number(value), "int")
    if isinstance(value, float):
        return Value(sql.number(value), "float")
    if isinstance(value, str):
        return Value(sql.string(value), "string")
    if isinstance(value, dt.datetime):
        return Value(sql.timestamp(value), "timestamp")
    if isinstance(value, dt.date):
        return Value(sql.date(value), "date")
    if isinstance(value, Decimal):
        return Value(typed_cast(sql.decimal(value), "DOUBLE"), "float")
    return Value(sql.json_literal(value), "variant")


def field_value(path: str, layout: Schema) -> Value:
    """The value at a field path of a stored-row relation with declared columns ``layout``.

    The SQL is built here from the layout (typed column, list element, or a
    JSON pointer into a variant column); the filter :class:`Ref` rides along
    for existence tests and exact comparisons.
    """
    ref = resolve_path(path, layout, system_columns=True)
    kind = _kind_of(path, layout)
    head, *rest = path.split(".")
    declared = layout.field(head) if head not in SYSTEM_COLUMN_TYPES else None
    node: exp.Expr
    if kind == "null":
        node = sql.null()
    elif head in SYSTEM_COLUMN_TYPES:
        node = sql.column(head)
    elif declared is None:
        node = sql.json_value(sql.column(DATA_COLUMN), sql.json_pointer([head, *rest]))
    elif declared.is_variant:
        node = sql.json_value(sql.column(head), sql.json_pointer(rest))
    elif rest:  # an element of a typed list (ParqueDB indexes from 0, DuckDB from 1)
        node = sql.func("list_extract", sql.column(head), sql.number(int(rest[0]) + 1))
    else:
        node = sql.column(head)
    return Value(node, kind, ref)


def _kind_of(path: str, layout: Schema) -> str:
    head, *rest = path.split(".")
    if head in SYSTEM_COLUMN_TYPES:
        return _SYSTEM_KINDS[head] if not rest else "null"
    declared = layout.field(head)
    if declared is None or declared.is_variant:
        return "variant"
    base = _base_kind(declared)
    if not rest:
        return f"{base}[]" if declared.array else base
    if declared.array and len(rest) == 1 and rest[0].isdigit():
        return base
    return "null"


def _base_kind(f: FieldType) -> str:
    if f.kind == "decimal":
        return f"decimal({f.precision},{f.scale})"
    return "string" if f.kind == "relation" else f.kind


_SYSTEM_KINDS: dict[str, str] = {
    name: {"VARCHAR": "string", "TIMESTAMPTZ": "timestamp", "BIGINT": "int"}[t] for name, t in SYSTEM_COLUMN_TYPES.items()
}

_JSON_NUMBERS = [sql.string(t) for t in sql.JSON_NUMBER_TYPES]


def _json_type_in(node: exp.Expr, *names: str) -> exp.Expr:
    return sql.in_(sql.json_type(node), [sql.string(n) for n in names])


def _json_tag(node: exp.Expr, tag: str) -> tuple[exp.Expr, exp.Expr]:
    """(is this JSON a one-key ``{tag: text}`` object, the tag's text)."""
    guard = sql.eq(sql.json_keys(node.copy()), exp.Array(expressions=[sql.string(tag)]))
    return guard, sql.json_text(node.copy(), sql.json_pointer([tag]))


def as_number(v: Value) -> exp.Expr:
    """The value as a SQL number; NULL when it is not a number (strings and booleans are not numbers)."""
    if v.family == "number":
        return v.node()
    if v.kind == "variant":
        return exp.Case(ifs=[exp.If(this=sql.in_(sql.json_type(v.node()), _JSON_NUMBERS),
                                    true=typed_try_cast(v.node(), "DOUBLE"))])
    return typed_cast(sql.null(), "DOUBLE")


def as_text(v: Value) -> exp.Expr:
    """A string as itself, anything else as its variant JSON text (what ``$hash`` digests)."""
    if v.family == "string":
        return v.node()
    j = to_variant(v)
    return exp.Case(
        ifs=[exp.If(this=sql.eq(sql.json_type(j.copy()), sql.string("VARCHAR")), true=sql.json_text(j.copy()))],
        default=typed_cast(j.copy(), "VARCHAR"),
    )


def as_timestamp(v: Value) -> exp.Expr:
    """The value as a ``TIMESTAMPTZ``: timestamps, dates (midnight UTC), epoch milliseconds, ISO strings, ``$date`` tags."""
    f = v.family
    if f == "timestamp":
        return v.node()
    if f == "date":
        return sql.func("timezone", sql.string("UTC"), typed_cast(v.node(), "TIMESTAMP"))
    if f == "number":
        return sql.func("to_timestamp", exp.Div(this=typed_cast(v.node(), "DOUBLE"), expression=sql.number(1000.0)))
    if f == "string":
        return typed_try_cast(v.node(), "TIMESTAMPTZ")
    if v.kind != "variant":
        return typed_cast(sql.null(), "TIMESTAMPTZ")
    j = v.node()
    is_date, date_text = _json_tag(j, "$date")
    is_day, day_text = _json_tag(j, "$dateonly")
    millis = sql.func("to_timestamp", exp.Div(this=typed_try_cast(j.copy(), "DOUBLE"), expression=sql.number(1000.0)))
    return exp.Case(ifs=[
        exp.If(this=sql.in_(sql.json_type(j.copy()), _JSON_NUMBERS), true=millis),
        exp.If(this=sql.eq(sql.json_type(j.copy()), sql.string("VARCHAR")),
               true=typed_try_cast(sql.json_text(j.copy()), "TIMESTAMPTZ")),
        exp.If(this=is_date, true=typed_try_cast(date_text, "TIMESTAMPTZ")),
        exp.If(this=is_day, true=typed_try_cast(day_text, "TIMESTAMPTZ")),
    ])


def to_variant(v: Value) -> exp.Expr:
    """The value as variant JSON, tagged like documents.py (``{"$date": "...Z"}``...); NULL stays NULL."""
    f = v.family
    if v.kind == "variant":
        return v.node()
    if f == "null":
        return typed_cast(sql.null(), "JSON")
    if f == "timestamp":
        text = sql.func("strftime", sql.func("timezone", sql.string("UTC"), v.node()), sql.string("%Y-%m-%dT%H:%M:%S.%fZ"))
        return _tagged(v.node(), "$date", text)
    if f == "date":
        return _tagged(v.node(), "$dateonly", sql.func("strftime", v.node(), sql.string("%Y-%m-%d")))
    if v.kind.startswith("decimal"):
        return _tagged(v.node(), "$decimal", typed_cast(v.node(), "VARCHAR"))
    if f == "list" and family(v.kind[:-2]) in ("timestamp", "date"):
        element = sql.lambda_variable(9)
        inner = to_variant(Value(element.copy(), v.kind[:-2]))
        return sql.func("to_json", exp.Transform(this=v.node(), expression=sql.lambda_(element, inner)))
    return sql.func("to_json", v.node())


def _tagged(node: exp.Expr, tag: str, text: exp.Expr) -> exp.Expr:
    obj = sql.func("json_object", sql.string(tag), text)
    return exp.Case(ifs=[exp.If(this=sql.is_not_null(node), true=obj)])


def is_nullish(v: Value) -> exp.Expr:
    """Missing or null (never NULL itself)."""
    if v.kind == "variant":
        return sql.eq(exp.Coalesce(this=sql.json_type(v.node()), expressions=[sql.string("NULL")]), sql.string("NULL"))
    if v.family == "null":
        return sql.true()
    return sql.is_null(v.node())


def truthy(v: Value) -> exp.Expr:
    """JavaScript truthiness as a never-NULL condition: null, missing, false, 0, NaN and '' are false."""
    f = v.family
    if f == "null":
        return sql.false()
    if f == "boolean":
        return sql.coalesce_false(v.node())
    if f == "number":
        return sql.coalesce_false(sql.and_(exp.NEQ(this=v.node(), expression=sql.number(0)),
                                           exp.Not(this=exp.IsNan(this=typed_cast(v.node(), "DOUBLE")))))
    if f == "string":
        return sql.coalesce_false(exp.NEQ(this=v.node(), expression=sql.string("")))
    if v.kind != "variant":
        return sql.is_not_null(v.node())
    j = v.node()
    kind = sql.json_type(j.copy())
    return exp.Coalesce(this=exp.Case(ifs=[
        exp.If(this=sql.eq(kind.copy(), sql.string("NULL")), true=sql.false()),
        exp.If(this=sql.eq(kind.copy(), sql.string("BOOLEAN")), true=typed_try_cast(j.copy(), "BOOLEAN")),
        exp.If(this=sql.in_(kind.copy(), [s.copy() for s in _JSON_NUMBERS]),
               true=exp.NEQ(this=typed_try_cast(j.copy(), "DOUBLE"), expression=sql.number(0))),
        exp.If(this=sql.eq(kind.copy(), sql.string("VARCHAR")),
               true=exp.NEQ(this=sql.json_text(j.copy()), expression=sql.string(""))),
    ], default=sql.is_not_null(kind.copy())), expressions=[sql.false()])


def unify(values: Sequence[Value]) -> tuple[list[exp.Expr], str]:
    """Expressions of one common kind for ``values`` (numbers widen to float; mixed kinds become variant)."""
    kinds = {v.kind for v in values if v.kind != "null"}
    if not kinds:
        return [v.node() for v in values], "null"
    if len(kinds) == 1:
        (kind,) = kinds
        return [v.node() if v.kind != "null" else typed_cast(sql.null(), duckdb_type(kind)) for v in values], kind
    if all(family(k) == "number" for k in kinds):
        return [typed_cast(v.node(), "DOUBLE") for v in values], "float"
    return [to_variant(v) for v in values], "variant"


# -- expressions -------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """Where the compiler is: the view, the definition path (for messages), the current row layout."""

    view: str
    path: str
    layout: Schema

    def at(self, key: str | int) -> Scope:
        return replace(self, path=f"{self.path}.{key}" if self.path else str(key))

    def error(self, problem: str, code: str = "INVALID_VIEW") -> ViewDefinitionError:
        return ViewDefinitionError(self.view, self.path, problem, code)


def field_path(text: str) -> str:
    """The field path a ``'$path'`` reference names: ``'$id'``/``'$type'`` are system fields, else one ``$`` is dropped."""
    if text in ("$id", "$type"):
        return text
    return text[1:] if text.startswith("$") else text


def _path_value(text: str, scope: Scope) -> Value:
    path = field_path(text)
    if not path or any(not segment for segment in path.split(".")):
        raise scope.error(f"invalid field path {text!r}")
    return field_value(path, scope.layout)


def expression(arg: Any, scope: Scope) -> Value:
    """Compile an expression: ``'$path'``, a constant, or an operator object (:data:`EXPRESSIONS`)."""
    if isinstance(arg, str) and arg.startswith("$"):
        return _path_value(arg, scope)
    if isinstance(arg, Mapping) and len(arg) == 1 and next(iter(arg)) in EXPRESSIONS:
        ((op, operand),) = arg.items()
        return EXPRESSIONS[op](operand, scope.at(op))
    if isinstance(arg, Mapping) and any(isinstance(k, str) and k.startswith("$") for k in arg):
        op = next(k for k in arg if isinstance(k, str) and k.startswith("$"))
        if op in EXPRESSIONS:
            raise scope.error(f"an expression object has exactly one operator, found {sorted(map(str, arg))}")
        raise scope.at(op).error(f"unknown operator {op!r}{did_you_mean(op, EXPRESSIONS)}", "UNKNOWN_OPERATOR")
    if isinstance(arg, float) and not math.isfinite(arg):
        raise scope.error(f"expected a finite number, found {arg!r}")
    return literal_value(arg)


def _operands(operand: Any, scope: Scope, count: int | None = None, minimum: int = 1) -> list[Any]:
    items = list(operand) if isinstance(operand, (list, tuple)) else [operand]
    if count is not None and len(items) != count:
        raise scope.error(f"expected {count} operands, found {len(items)}: {operand!r}")
    if len(items) < minimum:
        raise scope.error(f"expected at least {minimum} operands, found {operand!r}")
    return items


def _is_simple(arg: Any) -> bool:
    """A field path or a constant: comparisons of these use the filter compiler's exact ``$expr`` semantics."""
    return not isinstance(arg, Mapping) or not any(isinstance(k, str) and k.startswith("$") for k in arg)


def _expr_compare(op: str, operand: Any, scope: Scope) -> Value:
    """``$eq``/``$ne``/``$gt``/...: null and missing sort lowest; different types are never equal."""
    left, right = _operands(operand, scope, 2)
    if _is_simple(left) and _is_simple(right) and (_is_path(left) or _is_path(right)):
        try:
            condition = compile_filter({"$expr": {op: [_as_filter_arg(left), _as_filter_arg(right)]}}, scope.layout)
        except FilterError as err:
            raise scope.error(err.problem) from None
        return Value(sql.coalesce_false(condition), "boolean")
    a, b = expression(left, scope.at(0)), expression(right, scope.at(1))
    base = "eq" if op in ("$eq", "$ne") else op[1:]
    condition = compare_values(base, a, b)
    return Value(sql.not_(condition) if op == "$ne" else condition, "boolean")


def _is_path(arg: Any) -> bool:
    return isinstance(arg, str) and arg.startswith("$")


def _as_filter_arg(arg: Any) -> Any:
    return "$" + field_path(arg) if _is_path(arg) else arg


def compare_values(op: str, a: Value, b: Value) -> exp.Expr:
    """Compare two computed values (never NULL): nulls sort lowest, different families never compare."""
    fa, fb = a.family, b.family
    if fa == "variant" and fb not in ("variant", "null"):
        a = Value(_variant_as(a, fb), b.kind)
    elif fb == "variant" and fa not in ("variant", "null"):
        b = Value(_variant_as(b, fa), a.kind)
    fa, fb = a.family, b.family
    x, y = a.node(), b.node()
    if fa == "variant" and fb == "variant":
        x, y = typed_cast(x, "VARCHAR"), typed_cast(y, "VARCHAR")
    both_null = sql.and_(sql.is_null(x.copy()), sql.is_null(y.copy()))
    if fa != fb and "null" not in (fa, fb) and not (fa == "variant" and fb == "variant"):
        same = sql.false()
    else:
        same = sql.coalesce_false(sql.compare(op, x.copy(), y.copy()))
    if op == "eq":
        return sql.or_(both_null, same)
    lower_null = {
        "gt": sql.and_(sql.is_not_null(x.copy()), sql.is_null(y.copy())),
        "gte": sql.is_null(y.copy()),
        "lt": sql.and_(sql.is_null(x.copy()), sql.is_not_null(y.copy())),
        "lte": sql.is_null(x.copy()),
    }[op]
    return sql.or_(lower_null, same)


def _variant_as(v: Value, target: str) -> exp.Expr:
    """A variant as ``target`` family, NULL when it holds something else."""
    j = v.node()
    if target == "number":
        return as_number(v)
    if target == "string":
        return exp.Case(ifs=[exp.If(this=_json_type_in(j, "VARCHAR"), true=sql.json_text(j.copy()))])
    if target == "boolean":
        return exp.Case(ifs=[exp.If(this=_json_type_in(j, "BOOLEAN"), true=typed_try_cast(j.copy(), "BOOLEAN"))])
    if target in ("timestamp", "date"):
        tag = "$date" if target == "timestamp" else "$dateonly"
        guard, text = _json_tag(j, tag)
        to = "TIMESTAMPTZ" if target == "timestamp" else "DATE"
        return exp.Case(ifs=[exp.If(this=guard, true=typed_try_cast(text, to))])
    return sql.null()


def condition(arg: Any, scope: Scope) -> exp.Expr:
    """A boolean test: an expression (truthiness), a filter document, or ``[path, value]``."""
    if isinstance(arg, (list, tuple)) and len(arg) == 2 and isinstance(arg[0], str):
        return filter_condition({field_path(arg[0]): arg[1]}, scope)
    if isinstance(arg, Mapping) and arg and not all(k in EXPRESSIONS for k in arg):
        operators_only = all(isinstance(k, str) and k.startswith("$") for k in arg)
        if not operators_only or all(k in _FILTER_TOP_LEVEL for k in arg):
            return filter_condition(arg, scope)
    return truthy(expression(arg, scope))


def filter_condition(doc: Any, scope: Scope) -> exp.Expr:
    """A ``$filter`` document: :func:`compile_filter` plus ``$expr`` holding any expression."""
    if not isinstance(doc, Mapping):
        raise scope.error(f"expected a filter object, found {type(doc).__name__} {doc!r}", "INVALID_FILTER")
    clauses, rest = [], {}
    for key, operand in doc.items():
        if key == "$expr":
            clauses.append(condition(operand, scope.at(key)))
        elif key in ("$and", "$or", "$nor") and _mentions_expr(operand):
            subs = [filter_condition(sub, scope.at(key).at(i)) for i, sub in enumerate(_operands(operand, scope.at(key)))]
            combined = sql.and_(*subs) if key == "$and" else sql.or_(*subs)
            clauses.append(sql.not_(combined) if key == "$nor" else combined)
        elif key == "$not" and _mentions_expr(operand):
            clauses.append(sql.not_(filter_condition(operand, scope.at(key))))
        else:
            rest[key] = operand
    if rest:
        try:
            clauses.append(compile_filter(rest, scope.layout))
        except FilterError as err:
            where = scope.path if err.path in ("$", "") else f"{scope.path}.{err.path}"
            raise ViewDefinitionError(scope.view, where, err.problem, "INVALID_FILTER") from None
    return sql.and_(*clauses)


def _mentions_expr(operand: Any) -> bool:
    if isinstance(operand, Mapping):
        logical = ("$and", "$or", "$nor", "$not")
        return "$expr" in operand or any(_mentions_expr(v) for k, v in operand.items() if k in logical)
    if isinstance(operand, (list, tuple)):
        return any(_mentions_expr(v) for v in operand)
    return False


def _expr_cond(operand: Any, scope: Scope) -> Value:
    """``$cond: [if, then, else]`` or ``{if, then, else}``; ``if`` is an expression or a filter document."""
    if isinstance(operand, Mapping):
        missing = {"if", "then", "else"} - set(operand)
        if missing:
            raise scope.error(f"expected keys if, then and else; missing {', '.join(sorted(missing))}")
        test, then, other = operand["if"], operand["then"], operand["else"]
    else:
        test, then, other = _operands(operand, scope, 3)
    when = condition(test, scope.at(0))
    (a, b), kind = unify([expression(then, scope.at(1)), expression(other, scope.at(2))])
    return Value(exp.Case(ifs=[exp.If(this=when, true=a)], default=b), kind)


def _expr_logical(op: str, operand: Any, scope: Scope) -> Value:
    tests = [condition(arg, scope.at(i)) for i, arg in enumerate(_operands(operand, scope))]
    return Value(sql.and_(*tests) if op == "$and" else sql.or_(*tests), "boolean")


def _expr_not(operand: Any, scope: Scope) -> Value:
    (arg,) = _operands(operand, scope, 1)
    return Value(sql.not_(condition(arg, scope.at(0))), "boolean")


def _numbers(operand: Any, scope: Scope, count: int | None = None) -> list[Value]:
    return [expression(arg, scope.at(i)) for i, arg in enumerate(_operands(operand, scope, count, minimum=1))]


def _numeric_kind(values: Sequence[Value]) -> str:
    return "int" if all(v.kind == "int" for v in values) else "float"


def _expr_arith(op: str, operand: Any, scope: Scope) -> Value:
    """``$add``/``$multiply`` (any count), ``$subtract`` (two); a null, missing or non-number operand gives null."""
    values = _numbers(operand, scope, 2 if op == "$subtract" else None)
    dates = [v for v in values if v.family == "timestamp"]
    if dates and op in ("$add", "$subtract"):
        return _date_arith(op, values, scope)
    node_class = {"$add": exp.Add, "$subtract": exp.Sub, "$multiply": exp.Mul}[op]
    kind = _numeric_kind(values)
    nodes = [as_number(v) if kind == "float" else v.node() for v in values]
    result = nodes[0]
    for node in nodes[1:]:
        result = node_class(this=sql.paren(result), expression=sql.paren(node))
    return Value(sql.paren(result), kind)


def _date_arith(op: str, values: list[Value], scope: Scope) -> Value:
    """Date arithmetic in milliseconds: date ± ms → date, date − date → ms."""
    def millis(node: exp.Expr) -> exp.Expr:
        return sql.func("to_milliseconds", typed_cast(node, "DOUBLE"))

    if op == "$subtract" and all(v.family == "timestamp" for v in values):
        diff = exp.Sub(this=sql.func("epoch_ms", values[0].node()), expression=sql.func("epoch_ms", values[1].node()))
        return Value(sql.paren(diff), "int")
    if sum(v.family == "timestamp" for v in values) != 1 or (op == "$subtract" and values[0].family != "timestamp"):
        raise scope.error("date arithmetic adds milliseconds to one date, or subtracts two dates")
    result = next(v for v in values if v.family == "timestamp").node()
    for v in values:
        if v.family != "timestamp":
            node_class = exp.Sub if op == "$subtract" else exp.Add
            result = node_class(this=result, expression=millis(as_number(v)))
    return Value(result, "timestamp")


def _expr_divide(op: str, operand: Any, scope: Scope) -> Value:
    """``$divide`` (float) and ``$mod`` (sign of the dividend); division by zero gives null."""
    a, b = _numbers(operand, scope, 2)
    kind = "float" if op == "$divide" else _numeric_kind([a, b])
    x = as_number(a) if kind == "float" else a.node()
    y = as_number(b) if kind == "float" else b.node()
    divisor = exp.Nullif(this=y, expression=sql.number(0))
    node_class = exp.Div if op == "$divide" else exp.Mod
    node = node_class(this=sql.paren(x), expression=divisor)
    return Value(sql.paren(node), kind)


def _expr_if_null(operand: Any, scope: Scope) -> Value:
    """``$ifNull: [value, replacement]``: the replacement when the value is null or missing."""
    items = _operands(operand, scope, minimum=2)
    values = [expression(arg, scope.at(i)) for i, arg in enumerate(items)]
    nodes, kind = unify(values)
    ifs = [exp.If(this=sql.not_(is_nullish(Value(node, kind))), true=node.copy()) for node in nodes[:-1]]
    return Value(exp.Case(ifs=ifs, default=nodes[-1]), kind)


#: ``$hash`` keeps the first 13 hex digits (52 bits) of the MD5 digest: exact in a double, same in Python.
HASH_HEX_DIGITS = 13


def _expr_hash(operand: Any, scope: Scope) -> Value:
    """``$hash``: ``int(md5(text).hexdigest()[:13], 16)`` of the value's text; null for null or missing.

    The text is the string itself for strings, else the value's variant JSON
    (so ``{$mod: [{$hash: '$requestId'}, 10]}`` picks a stable 10% sample).
    """
    (arg,) = _operands(operand, scope, 1)
    v = expression(arg, scope.at(0))
    digest = sql.func("left", sql.func("md5", as_text(v)), sql.number(HASH_HEX_DIGITS))
    number = typed_cast(exp.DPipe(this=sql.string("0x"), expression=digest, safe=True), "BIGINT")
    return Value(exp.Case(ifs=[exp.If(this=sql.not_(is_nullish(v)), true=number)]), "int")


def _expr_exists(operand: Any, scope: Scope) -> Value:
    """``$exists: '$path'``: the field is present (a stored null counts as present)."""
    if not _is_path(operand):
        raise scope.error(f"expected a field path like '$error', found {operand!r}")
    v = _path_value(operand, scope)
    assert v.ref is not None
    return Value(v.ref.exists(), "boolean")


#: Expression operators: (operand, scope) -> Value.
EXPRESSIONS: dict[str, Callable[[Any, Scope], Value]] = {
    "$cond": _expr_cond,
    "$eq": partial(_expr_compare, "$eq"),
    "$ne": partial(_expr_compare, "$ne"),
    "$gt": partial(_expr_compare, "$gt"),
    "$gte": partial(_expr_compare, "$gte"),
    "$lt": partial(_expr_compare, "$lt"),
    "$lte": partial(_expr_compare, "$lte"),
    "$and": partial(_expr_logical, "$and"),
    "$or": partial(_expr_logical, "$or"),
    "$not": _expr_not,
    "$add": partial(_expr_arith, "$add"),
    "$subtract": partial(_expr_arith, "$subtract"),
    "$multiply": partial(_expr_arith, "$multiply"),
    "$divide": partial(_expr_divide, "$divide"),
    "$mod": partial(_expr_divide, "$mod"),
    "$ifNull": _expr_if_null,
    "$hash": _expr_hash,
    "$exists": _expr_exists,
}

#: Top-level ``$filter`` keys accepted besides the field-level operators (``$expr`` holds an expression).
_FILTER_TOP_LEVEL: frozenset[str] = frozenset(
    {"$and", "$or", "$nor", "$not", "$expr", "$comment", "$id", "$type", "$text", "$vector", "$geo"}
)


# -- time buckets ------------------------------------------------------------------------------

#: ``$groupBy`` object key -> (DuckDB ``date_trunc`` unit, output kind). All buckets are UTC; weeks start Monday (ISO).
TIME_BUCKETS: dict[str, tuple[str, str]] = {
    "minute": ("minute", "timestamp"),
    "hour": ("hour", "timestamp"),
    "day": ("day", "timestamp"),
    "date": ("day", "date"),
    "week": ("week", "timestamp"),
    "month": ("month", "timestamp"),
    "year": ("year", "timestamp"),
}


def time_bucket(unit: str, v: Value) -> Value:
    """The UTC bucket of a time value (see :func:`as_timestamp` for what counts as a time)."""
    trunc, kind = TIME_BUCKETS[unit]
    utc = sql.func("timezone", sql.string("UTC"), as_timestamp(v))
    if kind == "date":
        return Value(typed_cast(utc, "DATE"), "date")
    truncated = sql.func("date_trunc", sql.string(trunc), utc)
    return Value(sql.func("timezone", sql.string("UTC"), truncated), "timestamp")


# -- aggregates ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AggregateSpec:
    """One ``$compute`` operator.

    ``full(arg, param)`` builds the output column (and hidden state columns)
    from a pre-projected argument column; ``merge(name, param)`` rebuilds them
    from stored state rows of the same view (decomposable operators only).
    """

    kind: Callable[[Value | None, Any], str]
    full: Callable[[exp.Expr | None, Any, str, str], list[tuple[str, exp.Expr]]]
    merge: Callable[[str, str], list[tuple[str, exp.Expr]]] | None = None
    star: bool = False  # accepts '*' (rows)


def _state(name: str, part: str) -> str:
    return f"{STATE_PREFIX}{name}.{part}"


def _count_full(arg: exp.Expr | None, param: Any, name: str, kind: str) -> list[tuple[str, exp.Expr]]:
    node = exp.Count(this=exp.Star()) if arg is None else exp.Count(this=arg)
    return [(name, typed_cast(node, "BIGINT"))]


def _sum_merge(name: str, kind: str) -> list[tuple[str, exp.Expr]]:
    total = exp.Coalesce(this=exp.Sum(this=sql.column(name)), expressions=[sql.number(0)])
    return [(name, typed_cast(total, duckdb_type(kind)))]


def _sum_full(arg: exp.Expr | None, param: Any, name: str, kind: str) -> list[tuple[str, exp.Expr]]:
    if arg is None:  # {$sum: n}: n per row
        node: exp.Expr = exp.Mul(this=exp.Count(this=exp.Star()), expression=sql.number(param))
    else:
        node = exp.Coalesce(this=exp.Sum(this=arg), expressions=[sql.number(0)])
    return [(name, typed_cast(node, duckdb_type(kind)))]


def _avg_full(arg: exp.Expr | None, param: Any, name: str, kind: str) -> list[tuple[str, exp.Expr]]:
    assert arg is not None
    total = exp.Sum(this=typed_cast(arg.copy(), "DOUBLE"))
    n = exp.Count(this=arg.copy())
    return [
        (name, exp.Div(this=total.copy(), expression=exp.Nullif(this=n.copy(), expression=sql.number(0)))),
        (_state(name, "sum"), total),
        (_state(name, "n"), typed_cast(n, "BIGINT")),
    ]


def _avg_merge(name: str, kind: str) -> list[tuple[str, exp.Expr]]:
    total = exp.Sum(this=sql.column(_state(name, "sum")))
    n = typed_cast(exp.Sum(this=sql.column(_state(name, "n"))), "BIGINT")
    return [
        (name, exp.Div(this=total.copy(), expression=exp.Nullif(this=n.copy(), expression=sql.number(0)))),
        (_state(name, "sum"), total),
        (_state(name, "n"), n),
    ]


def _extreme(fn: str, arg: exp.Expr, kind: str) -> exp.Expr:
    """MIN/MAX; over variants, within the lowest (min) or highest (max) family present.

    The family order is numbers < strings < dates < booleans (find's sort order).
    """
    if kind != "variant":
        return exp.Min(this=arg) if fn == "min" else exp.Max(this=arg)
    pick = "arg_min" if fn == "min" else "arg_max"
    is_date, date_text = _json_tag(arg, "$date")
    families = [
        (sql.in_(sql.json_type(arg.copy()), [s.copy() for s in _JSON_NUMBERS]), typed_try_cast(arg.copy(), "DOUBLE")),
        (_json_type_in(arg, "VARCHAR"), sql.json_text(arg.copy())),
        (is_date, typed_try_cast(date_text, "TIMESTAMPTZ")),
        (_json_type_in(arg, "BOOLEAN"), typed_try_cast(arg.copy(), "BOOLEAN")),
    ]
    if fn == "max":
        families.reverse()
    picks = [exp.Filter(this=sql.func(pick, arg.copy(), key), expression=exp.Where(this=guard)) for guard, key in families]
    return exp.Coalesce(this=picks[0], expressions=picks[1:])


def _extreme_full(fn: str, arg: exp.Expr | None, param: Any, name: str, kind: str) -> list[tuple[str, exp.Expr]]:
    assert arg is not None
    return [(name, typed_cast(_extreme(fn, arg, kind), duckdb_type(kind)))]


def _extreme_merge(fn: str, name: str, kind: str) -> list[tuple[str, exp.Expr]]:
    return [(name, typed_cast(_extreme(fn, sql.column(name), kind), duckdb_type(kind)))]


def _ordered_full(fn: str, arg: exp.Expr | None, param: Any, name: str, kind: str) -> list[tuple[str, exp.Expr]]:
    """``$first``/``$last``: the value of the row with the lowest/highest source ``$id`` (ties: by value text)."""
    assert arg is not None
    key = exp.Struct(expressions=[
        exp.PropertyEQ(this=sql.identifier("s"), expression=sql.column(SOURCE_COLUMN)),
        exp.PropertyEQ(this=sql.identifier("v"), expression=typed_cast(arg.copy(), "VARCHAR")),
    ])
    return [(name, typed_cast(sql.func("arg_min" if fn == "first" else "arg_max", arg, key), duckdb_type(kind)))]


def _count_distinct_full(arg: exp.Expr | None, param: Any, name: str, kind: str) -> list[tuple[str, exp.Expr]]:
    assert arg is not None
    return [(name, typed_cast(exp.Count(this=exp.Distinct(expressions=[arg])), "BIGINT"))]


def _percentile_full(arg: exp.Expr | None, param: Any, name: str, kind: str) -> list[tuple[str, exp.Expr]]:
    assert arg is not None
    return [(name, sql.func("quantile_cont", arg, sql.number(param)))]


def _stat_full(fn: str, arg: exp.Expr | None, param: Any, name: str, kind: str) -> list[tuple[str, exp.Expr]]:
    assert arg is not None
    return [(name, sql.func(fn, arg))]


def _same_kind(v: Value | None, param: Any) -> str:
    assert v is not None
    return "variant" if v.kind == "null" else v.kind


def _sum_kind(v: Value | None, param: Any) -> str:
    if v is None:
        return "int" if isinstance(param, int) else "float"
    return "int" if v.kind == "int" else "float"


#: ``$compute`` operators. Decomposable ones (a ``merge``) refresh incrementally; the rest recompute affected groups.
AGGREGATES: dict[str, AggregateSpec] = {
    "$count": AggregateSpec(lambda v, p: "int", _count_full, _sum_merge, star=True),
    "$sum": AggregateSpec(_sum_kind, _sum_full, _sum_merge),
    "$avg": AggregateSpec(lambda v, p: "float", _avg_full, _avg_merge),
    "$min": AggregateSpec(_same_kind, partial(_extreme_full, "min"), partial(_extreme_merge, "min")),
    "$max": AggregateSpec(_same_kind, partial(_extreme_full, "max"), partial(_extreme_merge, "max")),
    "$first": AggregateSpec(_same_kind, partial(_ordered_full, "first")),
    "$last": AggregateSpec(_same_kind, partial(_ordered_full, "last")),
    "$countDistinct": AggregateSpec(lambda v, p: "int", _count_distinct_full),
    "$percentile": AggregateSpec(lambda v, p: "float", _percentile_full),
    "$stdDev": AggregateSpec(lambda v, p: "float", partial(_stat_full, "stddev_pop")),
    "$stdDevSamp": AggregateSpec(lambda v, p: "float", partial(_stat_full, "stddev_samp")),
}

#: Aggregates whose argument is read as a number (non-numbers are ignored).
_NUMERIC_AGGREGATES = frozenset({"$sum", "$avg", "$percentile", "$stdDev", "$stdDevSamp"})


# -- the plan -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupKey:
    """One ``$groupBy`` item: its output path, the value grouped on, and for a time bucket its unit and input."""

    name: str
    value: Value
    unit: str | None = None
    base: Value | None = None

    @property
    def prunable(self) -> exp.Expr | None:
        """The typed column whose range a set of keys bounds (None when the key is not a plain typed column)."""
        value = self.base if self.unit else self.value
        if value is None or not isinstance(value.sql, exp.Column) or value.family not in _RANGE_FAMILIES:
            return None
        if self.unit and value.family not in ("timestamp", "date"):
            return None
        return value.node()


@dataclass(frozen=True)
class Aggregate:
    """One ``$compute`` entry: output name, operator, argument (None for ``'*'`` and constants) and parameter."""

    name: str
    op: str
    arg: Value | None
    param: Any
    kind: str

    @property
    def decomposable(self) -> bool:
        return AGGREGATES[self.op].merge is not None


@dataclass(frozen=True)
class ViewPlan:
    """A resolved view: its output columns and the SQL of every refresh step.

    ``rows_query`` reads the placeholder tables :data:`SOURCE_TABLE` (the
    ``$from`` source in stored-row layout) and ``$lookup:<name>`` (``$expand``
    targets); :meth:`bind` substitutes real relations.
    """

    name: str
    definition: dict[str, Any]
    source: str
    source_kind: str  # "collection" | "view"
    lookups: tuple[str, ...]
    layout: Schema  # declared (non-system) columns of the readable relation
    outputs: tuple[str, ...]  # visible stored columns, in order
    output_types: dict[str, str]  # column -> DuckDB type (visible and hidden stored columns)
    passthrough: bool  # rows are source documents (system columns and $data are kept)
    grouped: bool
    keys: tuple[GroupKey, ...]
    aggregates: tuple[Aggregate, ...]
    rows_query: exp.Select

    # -- classification --------------------------------------------------------------

    @property
    def decomposable(self) -> bool:
        """True when every aggregate merges from partial states (``$count $sum $avg $min $max``)."""
        return all(a.decomposable for a in self.aggregates)

    @property
    def refresh(self) -> dict[str, Any]:
        return self.definition["$refresh"]

    @property
    def stored_columns(self) -> tuple[str, ...]:
        """Every column of a stored file: visible outputs, then hidden ``$src`` or aggregate state."""
        return tuple(self.output_types)

    @property
    def key_columns(self) -> tuple[str, ...]:
        """The stored columns holding group keys (nested keys share one variant column)."""
        return tuple(dict.fromkeys(k.name.split(".")[0] for k in self.keys))

    # -- binding -----------------------------------------------------------------------

    def bind(self, query: exp.Expr, source: exp.Expr, lookups: Mapping[str, exp.Expr] | None = None) -> exp.Expr:
        """``query`` with the placeholder tables replaced by real relations."""
        relations = {SOURCE_TABLE: source, **{LOOKUP_TABLE + k: v for k, v in (lookups or {}).items()}}

        def swap(node: exp.Expr) -> exp.Expr:
            if isinstance(node, exp.Table) and node.name in relations and not node.db:
                alias = exp.TableAlias(this=sql.identifier(node.alias or "$t"))
                relation = relations[node.name].copy()
                if isinstance(relation, exp.Table):
                    relation.set("alias", alias)
                    return relation
                if not isinstance(relation, exp.Query):
                    return exp.alias_(relation, node.alias or "$t", table=True, quoted=True, copy=False)
                return exp.Subquery(this=relation, alias=alias)
            return node

        return query.transform(swap)  # transform copies the tree first

    def rows(self, source: exp.Expr, lookups: Mapping[str, exp.Expr] | None = None) -> exp.Select:
        """The view's rows before grouping, in stored-row layout (with ``$src``)."""
        return self.bind(self.rows_query, source, lookups)  # type: ignore[return-value]

    # -- stored output ---------------------------------------------------------------------

    def output(self, source: exp.Expr, lookups: Mapping[str, exp.Expr] | None = None) -> exp.Select:
        """The rows a full refresh stores (visible columns plus hidden state)."""
        rows = self.rows(source, lookups)
        if not self.grouped:
            return self._project(rows)
        return self.aggregate(self.pre(rows))

    def _project(self, rows: exp.Expr) -> exp.Select:
        columns = [exp.alias_(typed_cast(sql.column(c), t), c, quoted=True, copy=False)
                   for c, t in self.output_types.items()]
        return exp.select(*columns, copy=False).from_(from_item(rows, "$rows"), copy=False)

    def pre(self, rows: exp.Expr) -> exp.Select:
        """Rows reduced to what grouping needs: ``$k<i>`` key values, ``$a<j>`` aggregate arguments, ``$src``."""
        columns = [exp.alias_(_key_value(k.value), f"$k{i}", quoted=True, copy=False) for i, k in enumerate(self.keys)]
        for j, a in enumerate(self.aggregates):
            if a.arg is not None:
                columns.append(exp.alias_(_aggregate_argument(a), f"$a{j}", quoted=True, copy=False))
        columns.append(sql.column(SOURCE_COLUMN))
        return exp.select(*columns, copy=False).from_(from_item(rows, "$rows"), copy=False)

    def aggregate(self, pre: exp.Expr) -> exp.Select:
        """Group ``pre`` rows (see :meth:`pre`) into stored rows: keys, outputs, hidden state."""
        columns = self._key_outputs([sql.column(f"$k{i}") for i in range(len(self.keys))])
        for j, a in enumerate(self.aggregates):
            arg = sql.column(f"$a{j}") if a.arg is not None else None
            for name, node in AGGREGATES[a.op].full(arg, a.param, a.name, a.kind):
                columns.append(exp.alias_(typed_cast(node, self.output_types[name]), name, quoted=True, copy=False))
        query = exp.select(*columns, copy=False).from_(from_item(pre, "$pre"), copy=False)
        if self.keys:
            query = query.group_by(*[sql.column(f"$k{i}") for i in range(len(self.keys))], copy=False)
        return query

    def merge(self, states: exp.Expr) -> exp.Select:
        """Combine stored rows and partial rows (both :meth:`aggregate` output) group by group."""
        columns: list[exp.Expr] = [sql.column(c) for c in self.key_columns]
        for a in self.aggregates:
            merge = AGGREGATES[a.op].merge
            assert merge is not None, f"{a.op} is not decomposable"
            for name, node in merge(a.name, a.kind):
                columns.append(exp.alias_(typed_cast(node, self.output_types[name]), name, quoted=True, copy=False))
        query = exp.select(*columns, copy=False).from_(from_item(states, "$states"), copy=False)
        if self.key_columns:
            query = query.group_by(*[sql.column(c) for c in self.key_columns], copy=False)
        return query

    def key_values(self, pre: exp.Expr) -> exp.Select:
        """The distinct ``$k<i>`` key tuples of ``pre`` rows."""
        return select_from([sql.column(f"$k{i}") for i in range(len(self.keys))], pre, "$pre").distinct(copy=False)

    def restrict(self, pre: exp.Expr, keys: exp.Expr) -> exp.Select:
        """``pre`` rows whose key tuple is one of ``keys`` (a :meth:`key_values` relation)."""
        return _semi_join(pre, keys, [f"$k{i}" for i in range(len(self.keys))], anti=False)

    def key_bounds(self, keys: exp.Expr) -> exp.Select | None:
        """Min, max and "has null" of each prunable key over ``keys`` (a :meth:`key_values` relation)."""
        columns = []
        for i, k in enumerate(self.keys):
            if k.prunable is not None:
                key = sql.column(f"$k{i}")
                columns += [exp.alias_(exp.Min(this=key), f"lo{i}", quoted=True, copy=False),
                            exp.alias_(exp.Max(this=key.copy()), f"hi{i}", quoted=True, copy=False),
                            exp.alias_(exp.func("bool_or", sql.is_null(key.copy())), f"null{i}", quoted=True, copy=False)]
        if not columns:
            return None
        return exp.select(*columns, copy=False).from_(from_item(keys, "$keys"), copy=False)

    def prune(self, rows: exp.Expr, bounds: Mapping[str, Any]) -> exp.Expr:
        """``rows`` restricted to the ranges :meth:`key_bounds` found, as literals a Parquet scan can prune with.

        A conservative filter (the exact key semi-join still follows): a time
        bucket ``[lo, hi]`` keeps its input in ``[lo, hi + 1 unit)``.
        """
        clauses = []
        for i, k in enumerate(self.keys):
            column = k.prunable
            lo, hi = bounds.get(f"lo{i}"), bounds.get(f"hi{i}")
            if column is None or lo is None or hi is None:
                continue
            lo_node, hi_node = literal_value(lo).sql, literal_value(hi).sql
            if k.unit:
                step = exp.Interval(this=sql.string("7 days" if k.unit == "week" else f"1 {TIME_BUCKETS[k.unit][0]}"))
                start = typed_cast(lo_node, "TIMESTAMPTZ")
                end = exp.Add(this=typed_cast(hi_node, "TIMESTAMPTZ"), expression=step)
                if k.base is not None and k.base.family == "date":  # keep the column bare: convert the literals
                    start, end = typed_cast(start, "DATE"), typed_cast(end, "DATE")
                clause = sql.and_(exp.GTE(this=column, expression=start), exp.LT(this=column.copy(), expression=end))
            else:
                clause = sql.and_(exp.GTE(this=column, expression=lo_node), exp.LTE(this=column.copy(), expression=hi_node))
            if bounds.get(f"null{i}"):
                clause = sql.or_(sql.paren(clause), sql.is_null(k.prunable))
            clauses.append(clause)
        if not clauses:
            return rows
        return exp.select(exp.Star(), copy=False).from_(from_item(rows, "$pruned"), copy=False).where(
            sql.and_(*clauses), copy=False)

    def key_outputs(self, keys: exp.Expr) -> exp.Select:
        """``keys`` (a :meth:`key_values` relation) encoded like stored key columns."""
        columns = self._key_outputs([sql.column(f"$k{i}") for i in range(len(self.keys))])
        return exp.select(*columns, copy=False).from_(from_item(keys, "$keys"), copy=False)

    def without_keys(self, stored: exp.Expr, keys: exp.Expr) -> exp.Select:
        """Stored rows whose group is not in ``keys`` (a :meth:`key_outputs` relation)."""
        return _semi_join(stored, keys, list(self.key_columns), anti=True)

    def _key_outputs(self, values: list[exp.Expr]) -> list[exp.Expr]:
        tree: dict[str, Any] = {}
        for key, node in zip(self.keys, values, strict=True):
            _insert(tree, key.name.split("."), Value(node, key.value.kind))
        return [exp.alias_(typed_cast(_nested_output(name, item), self.output_types[name]), name, quoted=True, copy=False)
                for name, item in tree.items()]

    # -- reading ---------------------------------------------------------------------------

    def readable(self, stored: exp.Expr) -> exp.Select:
        """Stored rows in stored-row layout: what ``find`` and chained views read."""
        columns: list[exp.Expr] = []
        for name, sql_type in SYSTEM_COLUMN_TYPES.items():
            node = sql.column(name) if self.passthrough or name in self.outputs else typed_cast(sql.null(), sql_type)
            columns.append(exp.alias_(node, name, quoted=True, copy=False))
        columns += [sql.column(f.name) for f in self.layout.fields]
        data = sql.column(DATA_COLUMN) if self.passthrough else typed_cast(sql.string("{}"), "VARCHAR")
        columns.append(exp.alias_(data, DATA_COLUMN, quoted=True, copy=False))
        src = sql.column(SOURCE_COLUMN) if not self.grouped else typed_cast(sql.null(), "VARCHAR")
        columns.append(exp.alias_(src, SOURCE_COLUMN, quoted=True, copy=False))
        return exp.select(*columns, copy=False).from_(from_item(stored, "$stored"), copy=False)

    def empty(self) -> exp.Select:
        """A relation with the stored columns and no rows (a view never refreshed)."""
        columns = [exp.alias_(typed_cast(sql.null(), t), c, quoted=True, copy=False) for c, t in self.output_types.items()]
        return exp.select(*columns, copy=False).where(sql.false(), copy=False)


def _key_value(v: Value) -> exp.Expr:
    """A group key: a null and a missing variant value are the same group (a stored JSON null)."""
    if v.kind != "variant":
        return v.node()
    return exp.Case(ifs=[exp.If(this=is_nullish(v), true=typed_cast(sql.string("null"), "JSON"))], default=v.node())


def _aggregate_argument(a: Aggregate) -> exp.Expr:
    """The pre-projected argument: numbers for numeric aggregates, null for nullish values."""
    assert a.arg is not None
    if a.op in _NUMERIC_AGGREGATES:
        return as_number(a.arg)
    if a.arg.kind == "variant":
        return exp.Case(ifs=[exp.If(this=sql.not_(is_nullish(a.arg)), true=a.arg.node())])
    return a.arg.node()


def from_item(query: exp.Expr, alias: str) -> exp.Expr:
    """``query`` as a FROM item: a table as itself, a query in parentheses, a table function aliased.

    The tree is used as is (not copied): callers pass trees they own.
    """
    if isinstance(query, exp.Table):
        return query
    if isinstance(query, (exp.Query, exp.Subquery)):
        return exp.Subquery(this=query, alias=exp.TableAlias(this=sql.identifier(alias)))
    return exp.alias_(query, alias, table=True, quoted=True, copy=False)


def select_from(columns: Sequence[exp.Expr | str], source: exp.Expr, alias: str) -> exp.Select:
    """``SELECT columns FROM source AS alias`` without copying (see :func:`from_item`)."""
    return exp.select(*columns, copy=False).from_(from_item(source, alias), copy=False)


def _semi_join(left: exp.Expr, right: exp.Expr, columns: list[str], *, anti: bool) -> exp.Select:
    if not columns:  # a global aggregate: one group, always affected
        query = exp.select("*", copy=False).from_(from_item(left, "$l"), copy=False)
        return query.where(sql.false(), copy=False) if anti else query
    on = sql.and_(*[exp.NullSafeEQ(this=sql.column(c, "$l"), expression=sql.column(c, "$r")) for c in columns])
    query = exp.select(exp.Star(), copy=False).from_(from_item(left, "$l"), copy=False)
    return query.join(from_item(right, "$r"), on=on, join_type="anti" if anti else "semi", copy=False)


def _insert(tree: dict[str, Any], segments: list[str], value: Value) -> None:
    head, *rest = segments
    if not rest:
        tree[head] = value
        return
    node = tree.setdefault(head, {})
    if isinstance(node, Value):
        raise ValueError(head)
    _insert(node, rest, value)


def _nested_output(name: str, item: Value | dict[str, Any]) -> exp.Expr:
    if isinstance(item, Value):
        return item.node()
    return _json_tree(item)


def _json_tree(tree: dict[str, Any]) -> exp.Expr:
    args: list[exp.Expr] = []
    for key, item in tree.items():
        args += [sql.string(key), to_variant(item) if isinstance(item, Value) else _json_tree(item)]
    return sql.func("json_object", *args)


def _tree_kind(item: Value | dict[str, Any]) -> str:
    return item.kind if isinstance(item, Value) else "variant"


# -- planning ----------------------------------------------------------------------------------


def plan_view(name: str, definition: ViewSpec, catalog: Catalog) -> ViewPlan:
    """Resolve a definition against ``catalog``: check every source, path and operator.

    Raises :class:`ViewDefinitionError` (naming the view and the definition
    path) and :class:`ViewCycleError` when ``$from`` chains back to ``name``.
    """
    if not is_valid_view_name(name):
        raise ViewDefinitionError(str(name), "", "invalid view name; use a letter or '_' followed by letters, digits or '_'",
                                  "INVALID_NAME")
    return _Planner(catalog).plan(name, definition, ())


def validate_view(name: str, definition: ViewSpec, catalog: Catalog) -> dict[str, Any]:
    """Check a definition completely and return it normalized (with ``$refresh`` defaults)."""
    return plan_view(name, definition, catalog).definition


def compile_view(definition: ViewSpec, catalog: Catalog, *, name: str = "view") -> exp.Select:
    """The ``SELECT`` computing a view's visible rows from the relations ``catalog`` names.

    Collections are read from their ``relation`` (default: a table of the
    collection's name in stored-row layout); views from their stored rows.

    >>> from parquedb_ibis.schema import Schema
    >>> q = compile_view({"$from": "T", "$filter": {"n": {"$gt": 1}}, "$select": {"n": "$n"}},
    ...                  {"T": CollectionSource(Schema.parse({"n": "int"}))})
    >>> "WHERE \\"n\\" > 1" in sql.render(q)
    True
    """
    plan = plan_view(name, definition, catalog)
    planner = _Planner(catalog)
    source = planner.source_relation(plan.source)
    lookups = {c: planner.source_relation(c) for c in plan.lookups}
    output = plan.output(source, lookups)
    visible = [sql.column(c) for c in plan.outputs]
    return exp.select(*visible, copy=False).from_(from_item(output, "$out"), copy=False)


class _Planner:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._plans: dict[str, ViewPlan] = {}

    # -- sources --------------------------------------------------------------------------

    def entry(self, view: str, source: str) -> CollectionSource | ViewSource:
        entry = self.catalog.get(source)
        if entry is None:
            collections = [n for n, e in self.catalog.items() if isinstance(e, CollectionSource)]
            views = [n for n, e in self.catalog.items() if isinstance(e, ViewSource)]
            raise _unknown_source(view, source, collections, views)
        return entry

    def source_relation(self, source: str) -> exp.Expr:
        """How compile_view reads a source: its catalog relation, or a table of that name."""
        entry = self.catalog[source]
        if entry.relation is not None:
            return entry.relation
        if isinstance(entry, CollectionSource):
            return sql.table(source)
        plan = self.plan(source, entry.definition, ())
        return plan.readable(sql.table(source))

    # -- planning -----------------------------------------------------------------------------

    def plan(self, name: str, definition: ViewSpec, stack: tuple[str, ...]) -> ViewPlan:
        if name in self._plans and not stack:
            return self._plans[name]
        spec = define_view(definition, name)
        source = spec["$from"]
        if source == name or source in stack:
            chain = [*stack, name]
            raise ViewCycleError([*chain[chain.index(source):], source])
        entry = self.entry(name, source)
        if isinstance(entry, CollectionSource):
            layout, kind = entry.schema, "collection"
        else:
            parent = self.plan(source, entry.definition, (*stack, name))
            layout, kind = parent.layout, "view"
        base = Scope(name, "", layout)
        builder = _Builder(name, layout, kind == "collection")
        lookups = builder.expand(spec, self, base) if "$expand" in spec else ()
        if "$unnest" in spec:
            builder.unnest(spec["$unnest"], base.at("$unnest"))
        if "$filter" in spec:
            builder.where(filter_condition(spec["$filter"], replace(base.at("$filter"), layout=builder.layout)))
        if "$select" in spec:
            builder.select(spec["$select"], replace(base.at("$select"), layout=builder.layout))
        grouped = "$groupBy" in spec or "$compute" in spec
        keys: tuple[GroupKey, ...] = ()
        aggregates: tuple[Aggregate, ...] = ()
        scope = replace(base, layout=builder.layout)
        if grouped:
            keys = tuple(_group_keys(spec.get("$groupBy", ()), scope.at("$groupBy")))
            aggregates = tuple(_aggregates(spec.get("$compute", {}), scope.at("$compute")))
            if not keys and not aggregates:
                raise scope.at("$groupBy").error("nothing to group by or compute", "INVALID_GROUP_BY")
            outputs, types, layout_out = _grouped_outputs(keys, aggregates, scope)
        else:
            outputs, types, layout_out = builder.outputs()
        plan = ViewPlan(
            name=name, definition=spec, source=source, source_kind=kind, lookups=lookups,
            layout=layout_out, outputs=outputs, output_types=types,
            passthrough=builder.passthrough and not grouped, grouped=grouped,
            keys=keys, aggregates=aggregates, rows_query=builder.query,
        )
        if not stack:
            self._plans[name] = plan
        return plan


def _group_keys(group_by: Sequence[Any], scope: Scope) -> Iterable[GroupKey]:
    for i, item in enumerate(group_by):
        where = scope.at(i)
        if isinstance(item, str):
            path = field_path(item)
            yield GroupKey(path, _path_value("$" + path if not item.startswith("$") else item, where))
            continue
        if len(item) != 1:
            raise where.error(f"expected one time bucket like {{'hour': '$timestamp'}}, found {dict(item)!r}",
                              "INVALID_GROUP_BY")
        ((unit, arg),) = item.items()
        if unit not in TIME_BUCKETS:
            raise where.at(unit).error(f"unknown time bucket {unit!r}{did_you_mean(str(unit), TIME_BUCKETS)}; "
                                       f"expected one of {', '.join(TIME_BUCKETS)}", "INVALID_GROUP_BY")
        value = expression(arg, where.at(unit))
        if value.family not in ("timestamp", "date", "number", "string", "variant"):
            raise where.at(unit).error(f"cannot bucket a {value.kind} value by time", "INVALID_GROUP_BY")
        yield GroupKey(unit, time_bucket(unit, value), unit, value)


def _aggregates(compute: Mapping[str, Any], scope: Scope) -> Iterable[Aggregate]:
    for name, expr in compute.items():
        where = scope.at(name)
        ((op, operand),) = expr.items()
        spec = AGGREGATES[op]
        where = where.at(op)
        param: Any = None
        if op == "$percentile":
            operand, param = _percentile_operands(operand, where)
        if operand == "*":
            if not spec.star:
                raise where.error(f"{op} of '*' is not defined; name a field", "INVALID_COMPUTE")
            arg = None
        elif op == "$sum" and isinstance(operand, (int, float)) and not isinstance(operand, bool):
            arg, param = None, operand
        elif isinstance(operand, str):
            arg = _path_value(operand if operand.startswith("$") else "$" + operand, where)
        else:
            arg = expression(operand, where)
        if op in ("$avg", "$percentile", "$stdDev", "$stdDevSamp") and arg is None:
            raise where.error(f"{op} needs a field or an expression", "INVALID_COMPUTE")
        yield Aggregate(name, op, arg, param, spec.kind(arg, param))


def _percentile_operands(operand: Any, scope: Scope) -> tuple[Any, float]:
    """``[field, p]`` with p a fraction in [0, 1] or a percentage in (1, 100]."""
    if not isinstance(operand, (list, tuple)) or len(operand) != 2:
        raise scope.error(f"expected [field, p], found {operand!r}", "INVALID_COMPUTE")
    arg, p = operand
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 100:
        raise scope.error(f"expected p between 0 and 1 (or a percentage up to 100), found {p!r}", "INVALID_COMPUTE")
    return arg, (p / 100 if p > 1 else float(p))


def _check_output_name(name: str, kind: str, scope: Scope, nested: bool) -> None:
    segments = name.split(".")
    if not name or any(not s for s in segments) or (not nested and len(segments) > 1):
        raise scope.error(f"invalid output field name {name!r}", "INVALID_OUTPUT")
    head = segments[0]
    if head in SYSTEM_COLUMN_TYPES:
        if len(segments) > 1 or duckdb_type(kind) != SYSTEM_COLUMN_TYPES[head]:
            raise scope.error(f"output {name!r} is a system field of type {_SYSTEM_KINDS[head]}; found {kind}",
                              "INVALID_OUTPUT")
    elif head.startswith("$"):
        raise scope.error(f"output field names cannot start with '$': {name!r}", "INVALID_OUTPUT")


def _outputs_of(pairs: list[tuple[str, Value]], scope: Scope) -> tuple[list[tuple[str, exp.Expr, str]], dict[str, str]]:
    """Output (name, expression, kind) columns for (path, value) pairs; dotted paths nest in a variant column."""
    names = [name for name, _ in pairs]
    tree: dict[str, Any] = {}
    for name, value in pairs:
        where = scope.at(name)
        _check_output_name(name, value.kind, where, nested=True)
        if names.count(name) > 1 or any(other.startswith(name + ".") for other in names):
            raise where.error(f"output field {name!r} is defined twice", "INVALID_OUTPUT")
        _insert(tree, name.split("."), value)
    columns = [(name, _nested_output(name, item), _tree_kind(item)) for name, item in tree.items()]
    return columns, {name: kind for name, _, kind in columns}


def _layout_of(kinds: Mapping[str, str]) -> Schema:
    """The declared (non-system) columns for output kinds."""
    return Schema.parse({n: ("variant" if k == "null" else k) for n, k in kinds.items() if n not in SYSTEM_COLUMN_TYPES})


def _grouped_outputs(keys: Sequence[GroupKey], aggregates: Sequence[Aggregate], scope: Scope,
                     ) -> tuple[tuple[str, ...], dict[str, str], Schema]:
    _, kinds = _outputs_of([(k.name, k.value) for k in keys], scope.at("$groupBy"))
    types = {name: duckdb_type(kind) for name, kind in kinds.items()}
    for a in aggregates:
        where = scope.at("$compute").at(a.name)
        _check_output_name(a.name, a.kind, where, nested=False)
        if a.name in kinds:
            raise where.error(f"output field {a.name!r} is defined twice", "INVALID_OUTPUT")
        kinds[a.name] = a.kind
        for name, _ in AGGREGATES[a.op].full(sql.null() if a.arg is not None else None, a.param, a.name, a.kind):
            types[name] = duckdb_type(a.kind) if name == a.name else ("DOUBLE" if name.endswith(".sum") else "BIGINT")
    outputs = tuple(name for name in types if not name.startswith(STATE_PREFIX))
    return outputs, types, _layout_of(kinds)


class _Builder:
    """Builds the rows query stage by stage; every stage is a SELECT in stored-row layout."""

    def __init__(self, view: str, layout: Schema, from_collection: bool) -> None:
        self.view = view
        self.layout = layout
        self.passthrough = True
        self.selected: dict[str, str] | None = None  # output kinds after $select
        src = sql.column("$id") if from_collection else sql.column(SOURCE_COLUMN)
        columns = self._columns()
        columns[SOURCE_COLUMN] = src
        self.query = self._stage(columns, sql.table(SOURCE_TABLE))

    def _columns(self) -> dict[str, exp.Expr]:
        names = [*SYSTEM_FIELDS, *(f.name for f in self.layout.fields), DATA_COLUMN, SOURCE_COLUMN]
        return {n: sql.column(n) for n in names}

    @staticmethod
    def _stage(columns: Mapping[str, exp.Expr], source: exp.Expr) -> exp.Select:
        projections = [
            node if isinstance(node, exp.Column) and node.name == name and not node.table
            else exp.alias_(node, name, quoted=True, copy=False)
            for name, node in columns.items()
        ]
        return exp.select(*projections, copy=False).from_(source, copy=False)

    def _next(self, columns: Mapping[str, exp.Expr]) -> None:
        self.query = self._stage(columns, from_item(self.query, "$s"))

    # -- $expand ------------------------------------------------------------------------------

    def expand(self, spec: Mapping[str, Any], planner: _Planner, scope: Scope) -> tuple[str, ...]:
        """Join each relation's target entity and add ``<alias>_<field>`` columns (see docs/views.md)."""
        flatten = dict(spec.get("$flatten", {}))
        expand = list(spec["$expand"])
        for key in flatten:
            if key not in expand:
                raise scope.at("$flatten").at(key).error(f"{key!r} is not expanded; add it to $expand", "INVALID_FLATTEN")
        targets: dict[str, tuple[str, Schema, str]] = {}  # relation path -> (collection, schema, column prefix)
        lookups: list[str] = []
        for i, path in enumerate(expand):
            where = scope.at("$expand").at(i)
            for depth in range(1, len(path.split(".")) + 1):
                prefix_path = ".".join(path.split(".")[:depth])
                if prefix_path in targets:
                    continue
                parent = ".".join(path.split(".")[: depth - 1])
                relation_field = path.split(".")[depth - 1]
                owner = targets[parent][1] if parent else self.layout
                column = f"{targets[parent][2]}_{relation_field}" if parent else relation_field
                declared = owner.field(relation_field)
                if declared is None or declared.kind != "relation":
                    raise where.error(f"{prefix_path!r} is not a relation field ('-> Target') of the source schema",
                                      "INVALID_EXPAND")
                if declared.array:
                    raise where.error(f"{prefix_path!r} is a relation array; expand needs a single relation "
                                      "($unnest it in a view first)", "INVALID_EXPAND")
                collection = _relation_target(declared.target or "", planner, where)
                target_schema = planner.catalog[collection].schema  # type: ignore[union-attr]
                alias = flatten.get(prefix_path, targets[parent][2] + "_" + relation_field if parent else relation_field)
                if not parent and relation_field in flatten:
                    alias = flatten[relation_field]
                targets[prefix_path] = (collection, target_schema, alias)
                self._join(column, collection, target_schema, alias, len(lookups))
                if collection not in lookups:
                    lookups.append(collection)
        return tuple(lookups)

    def _join(self, column: str, collection: str, schema: Schema, alias: str, n: int) -> None:
        left, right = "$s", f"$x{n}"
        columns = {name: sql.column(name, left) for name in self._columns()}
        added: dict[str, str] = {}
        for name, sql_type in SYSTEM_COLUMN_TYPES.items():
            if name != "deletedAt":
                columns[f"{alias}_{name}"] = sql.column(name, right)
                added[f"{alias}_{name}"] = _SYSTEM_KINDS[name]
        for f in schema.fields:
            columns[f"{alias}_{f.name}"] = sql.column(f.name, right)
            added[f"{alias}_{f.name}"] = f.declaration.rstrip("!?")
        columns[DATA_COLUMN] = _prefixed_data(sql.column(DATA_COLUMN, left), sql.column(DATA_COLUMN, right), alias)
        value = sql.column(column, left)
        target_id = sql.column("$id", right)
        on = sql.or_(sql.eq(target_id, value), sql.eq(target_id.copy(), exp.DPipe(
            this=sql.string(collection + "/"), expression=value.copy(), safe=True)))
        lookup = exp.Table(this=sql.identifier(LOOKUP_TABLE + collection), alias=exp.TableAlias(this=sql.identifier(right)))
        query = self._stage(columns, from_item(self.query, left))
        self.query = query.join(lookup, on=on, join_type="left", copy=False)
        fields = {f.name: f.declaration for f in self.layout.fields}
        for name, kind in added.items():
            fields[name] = kind
        self.layout = Schema.parse(fields)

    # -- $unnest ----------------------------------------------------------------------------

    def unnest(self, path: str, scope: Scope) -> None:
        """One row per element of an array field; the field then holds the element (empty and non-arrays drop the row)."""
        name = field_path(path)
        if "." in name:
            raise scope.error(f"$unnest takes a top-level field, found {path!r}; $select the array in another view first",
                              "INVALID_UNNEST")
        columns = self._columns()
        fields = {f.name: f.declaration for f in self.layout.fields}
        declared = self.layout.field(name)
        if name in SYSTEM_COLUMN_TYPES or (declared is not None and not declared.array and not declared.is_variant):
            kind = _SYSTEM_KINDS.get(name) or (declared.declaration if declared else "")
            raise scope.error(f"{name!r} is a {kind.rstrip('!?')} field, not an array", "INVALID_UNNEST")
        if declared is not None and not declared.is_variant:
            element = exp.Unnest(expressions=[sql.column(name)])
            fields[name] = _base_kind(declared)
        else:
            if declared is not None:
                array = sql.column(name)
            else:
                array = sql.json_value(sql.column(DATA_COLUMN), sql.json_pointer([name]))
            items = typed_try_cast(typed_cast(array, "JSON"), "JSON[]")
            element = exp.Unnest(expressions=[items])
            fields[name] = "variant"
            if declared is None:
                patch = sql.json_literal({name: None})
                columns[DATA_COLUMN] = sql.func("json_merge_patch", sql.column(DATA_COLUMN), patch)
        columns[name] = element
        self.query = self._stage(columns, from_item(self.query, "$s"))
        if declared is not None and not declared.is_variant:
            self.layout = Schema.parse(fields)
            return
        # JSON null elements come back as SQL NULL: keep them as stored nulls.
        self.layout = Schema.parse(fields)
        outer = self._columns()
        outer[name] = exp.Coalesce(this=sql.column(name), expressions=[typed_cast(sql.string("null"), "JSON")])
        self._next(outer)

    # -- $filter, $select --------------------------------------------------------------------

    def where(self, condition: exp.Expr) -> None:
        query = exp.select(exp.Star(), copy=False).from_(from_item(self.query, "$s"), copy=False)
        self.query = query.where(condition, copy=False) if not sql.is_true(condition) else query

    def select(self, spec: Mapping[str, Any], scope: Scope) -> None:
        pairs = []
        for out, ref in spec.items():
            where = scope.at(out)
            if isinstance(ref, str):
                value = _path_value(ref if ref.startswith("$") else "$" + ref, where)
            else:
                value = expression(ref, where)
            pairs.append((str(out), value))
        columns, kinds = _outputs_of(pairs, scope)
        self.passthrough = False
        self.selected = kinds
        nodes = {name: node for name, node, _ in columns}
        layout = _layout_of(kinds)
        stage: dict[str, exp.Expr] = {}
        for name, sql_type in SYSTEM_COLUMN_TYPES.items():
            stage[name] = typed_cast(nodes[name], sql_type) if name in nodes else typed_cast(sql.null(), sql_type)
        for f in layout.fields:
            stage[f.name] = typed_cast(nodes[f.name], f.duckdb_type)
        stage[DATA_COLUMN] = typed_cast(sql.string("{}"), "VARCHAR")
        stage[SOURCE_COLUMN] = sql.column(SOURCE_COLUMN)
        self._next(stage)
        self.layout = layout

    def outputs(self) -> tuple[tuple[str, ...], dict[str, str], Schema]:
        """Stored columns of a non-grouped view: selected outputs (or the whole layout), then ``$src``."""
        if self.selected is None:
            types = {**SYSTEM_COLUMN_TYPES, **{f.name: f.duckdb_type for f in self.layout.fields}, DATA_COLUMN: "VARCHAR"}
        else:
            types = {n: SYSTEM_COLUMN_TYPES.get(n) or duckdb_type(k) for n, k in self.selected.items()}
        outputs = tuple(types)
        types[SOURCE_COLUMN] = "VARCHAR"
        return outputs, types, self.layout


def _relation_target(target: str, planner: _Planner, scope: Scope) -> str:
    """The collection a ``'-> Target'`` names: exact, case-insensitive, or the lowercase plural (``User`` → ``users``)."""
    collections = [n for n, e in planner.catalog.items() if isinstance(e, CollectionSource)]
    for candidate in (target, target.lower(), target.lower() + "s"):
        for name in collections:
            if name == candidate or name.lower() == candidate:
                return name
    raise scope.error(f"relation target {target!r} is not a known collection{did_you_mean(target, collections)}",
                      "UNKNOWN_SOURCE")


def _prefixed_data(own: exp.Expr, target: exp.Expr, alias: str) -> exp.Expr:
    """``own`` ``$data`` plus every undeclared field ``k`` of the target's ``$data`` as ``<alias>_k``."""
    key = sql.lambda_variable(8)
    pointer = exp.DPipe(this=sql.string("/"), expression=sql.func(
        "replace", sql.func("replace", key.copy(), sql.string("~"), sql.string("~0")), sql.string("/"), sql.string("~1")),
        safe=True)
    doc = exp.Coalesce(this=typed_cast(target, "JSON"), expressions=[typed_cast(sql.string("{}"), "JSON")])
    entry = exp.Struct(expressions=[
        exp.PropertyEQ(this=sql.identifier("key"),
                       expression=exp.DPipe(this=sql.string(alias + "_"), expression=key.copy(), safe=True)),
        exp.PropertyEQ(this=sql.identifier("value"), expression=exp.JSONExtract(this=doc.copy(), expression=pointer,
                                                                                 only_json_types=False)),
    ])
    keys = exp.ArrayFilter(this=sql.json_keys(doc.copy()),
                           expression=sql.lambda_(key, exp.NEQ(this=key.copy(), expression=sql.string(ABSENT_KEY))))
    entries = exp.Transform(this=keys, expression=sql.lambda_(key, entry))
    mine = sql.func("json_transform", typed_cast(own, "JSON"), sql.string('"MAP(VARCHAR, JSON)"'))
    merged = sql.func("map_concat", mine, sql.func("map_from_entries", entries))
    return typed_cast(sql.func("to_json", merged), "VARCHAR")
