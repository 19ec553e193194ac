"""The pre-built views: Cloudflare tail events (``TailEvents``) and AI SDK requests (``AIRequests``).

These are ParqueDB's stream-collection views (``docs/integrations/tail.md``,
``src/streaming/*``) written in the view DSL. ``parquedb_ibis.tail`` re-exports
them. A tail trace item (``ValidatedTraceItem``) looks like::

    {"scriptName": "api", "outcome": "ok", "eventTimestamp": <datetime>,
     "event": {"request": {"url": ..., "method": "GET", "headers": {"cf-ray": ...},
                           "cf": {"colo": "SJC", "country": "US"}},
               "response": {"status": 200}},
     "logs": [{"timestamp": <epoch ms>, "level": "info", "message": ...}],
     "exceptions": [{"name": "TypeError", "message": ..., "timestamp": <epoch ms>}],
     "diagnosticsChannelEvents": [], "cpuTime": 3, "wallTime": 41}

``cpuTime`` and ``wallTime`` (milliseconds) are not declared in the schema, so
they live in the variant ``$data`` column; values taken from ``event`` are
variants too (filters and aggregates handle both).

>>> sorted(SEED_VIEWS)[:3]
['ColoErrors', 'DailyAIUsage', 'EndpointMetrics']
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from parquedb_ibis.compile.views import ViewSpec

if TYPE_CHECKING:
    from parquedb_ibis.views.database import Database

TAIL_EVENTS = "TailEvents"

#: The ``TailEvents`` stream collection (upstream ``src/streaming/views.ts:172-182``), plus the newer
#: ``TraceItem`` fields as optional (older tails lack them; ``event.response.status`` stays in ``event``).
TAIL_EVENTS_SCHEMA: dict[str, str] = {
    "scriptName": "string!",
    "outcome": "string!",
    "eventTimestamp": "timestamp!",
    "event": "variant?",
    "logs": "variant[]",
    "exceptions": "variant[]",
    "diagnosticsChannelEvents": "variant[]",
    "entrypoint": "string?",
    "scriptVersion": "variant?",
    "executionModel": "string?",
    "truncated": "boolean?",
    "cpuTime": "int?",
    "wallTime": "int?",
}

AI_REQUESTS = "AIRequests"

#: An ``AIRequests``-like collection (the ``ai-sdk`` stream collection's main fields).
AI_REQUESTS_SCHEMA: dict[str, str] = {
    "modelId": "string!",
    "providerId": "string?",
    "requestType": "string?",
    "promptTokens": "int?",
    "completionTokens": "int?",
    "totalTokens": "int?",
    "latencyMs": "int?",
    "cost": "float?",
    "cached": "boolean?",
    "timestamp": "timestamp!",
}

#: One row per console log line.
WORKER_LOGS: ViewSpec = {
    "$from": TAIL_EVENTS,
    "$unnest": "logs",
    "$select": {
        "scriptName": "$scriptName",
        "outcome": "$outcome",
        "eventTimestamp": "$eventTimestamp",
        "level": "$logs.level",
        "message": "$logs.message",
        "timestamp": "$logs.timestamp",
    },
}

#: Traces that did not end ``ok`` or threw.
WORKER_ERRORS: ViewSpec = {
    "$from": TAIL_EVENTS,
    "$filter": {"$or": [{"outcome": {"$ne": "ok"}}, {"exceptions.0": {"$exists": True}}]},
    "$select": {
        "scriptName": "$scriptName",
        "outcome": "$outcome",
        "timestamp": "$eventTimestamp",
        "exceptionName": "$exceptions.0.name",
        "exceptionMessage": "$exceptions.0.message",
        "url": "$event.request.url",
        "colo": "$event.request.cf.colo",
    },
}

#: One row per HTTP request trace.
WORKER_REQUESTS: ViewSpec = {
    "$from": TAIL_EVENTS,
    "$filter": {"event.request": {"$exists": True}},
    "$select": {
        "scriptName": "$scriptName",
        "outcome": "$outcome",
        "url": "$event.request.url",
        "method": "$event.request.method",
        "status": "$event.response.status",
        "colo": "$event.request.cf.colo",
        "country": "$event.request.cf.country",
        "requestId": "$event.request.headers.cf-ray",
        "cpuTime": "$cpuTime",
        "wallTime": "$wallTime",
        "timestamp": "$eventTimestamp",
    },
}

#: Requests and error rate per script, method and hour.
ENDPOINT_METRICS: ViewSpec = {
    "$from": "WorkerRequests",
    "$groupBy": ["scriptName", "method", {"hour": "$timestamp"}],
    "$compute": {
        "requestCount": {"$count": "*"},
        "errorRate": {"$avg": {"$cond": [{"$gte": ["$status", 500]}, 1, 0]}},
        "avgWallTime": {"$avg": "wallTime"},
        "maxWallTime": {"$max": "wallTime"},
    },
}

#: Server errors per colo and hour.
COLO_ERRORS: ViewSpec = {
    "$from": "WorkerRequests",
    "$groupBy": ["colo", {"hour": "$timestamp"}],
    "$compute": {
        "requests": {"$count": "*"},
        "errors": {"$sum": {"$cond": [{"$gte": ["$status", 500]}, 1, 0]}},
        "errorRate": {"$avg": {"$cond": [{"$gte": ["$status", 500]}, 1, 0]}},
    },
}

#: Wall-time percentiles per script and hour (continuous quantiles).
REQUEST_LATENCY: ViewSpec = {
    "$from": "WorkerRequests",
    "$groupBy": ["scriptName", {"hour": "$timestamp"}],
    "$compute": {
        "requests": {"$count": "*"},
        "p50": {"$percentile": ["wallTime", 0.5]},
        "p95": {"$percentile": ["wallTime", 0.95]},
        "p99": {"$percentile": ["wallTime", 0.99]},
    },
}

#: Exceptions per script, exception name and day.
ERROR_PATTERNS: ViewSpec = {
    "$from": TAIL_EVENTS,
    "$unnest": "exceptions",
    "$select": {"scriptName": "$scriptName", "name": "$exceptions.name", "timestamp": "$eventTimestamp"},
    "$groupBy": ["scriptName", "name", {"day": "$timestamp"}],
    "$compute": {
        "occurrences": {"$count": "*"},
        "firstSeen": {"$min": "timestamp"},
        "lastSeen": {"$max": "timestamp"},
    },
}

#: Responses per status code and hour.
STATUS_CODES: ViewSpec = {
    "$from": "WorkerRequests",
    "$groupBy": ["status", {"hour": "$timestamp"}],
    "$compute": {"count": {"$count": "*"}},
}

#: A stable 10% sample of requests (by a hash of the request id).
SAMPLED_REQUESTS: ViewSpec = {
    "$from": "WorkerRequests",
    "$filter": {"$expr": {"$eq": [{"$mod": [{"$hash": "$requestId"}, 10]}, 0]}},
}

#: AI usage per day and model (refreshed hourly).
DAILY_AI_USAGE: ViewSpec = {
    "$from": AI_REQUESTS,
    "$groupBy": [{"date": "$timestamp"}, "modelId"],
    "$compute": {
        "requests": {"$count": "*"},
        "promptTokens": {"$sum": "promptTokens"},
        "completionTokens": {"$sum": "completionTokens"},
        "totalTokens": {"$sum": "totalTokens"},
        "cost": {"$sum": "cost"},
        "avgLatencyMs": {"$avg": "latencyMs"},
        "p95LatencyMs": {"$percentile": ["latencyMs", 95]},
        "cacheHitRate": {"$avg": {"$cond": ["$cached", 1, 0]}},
        "errors": {"$sum": {"$cond": [{"$exists": "$error"}, 1, 0]}},
        "users": {"$countDistinct": "userId"},
    },
    "$refresh": {"mode": "scheduled", "schedule": "5 * * * *", "gracePeriod": "1h"},
}

#: The tail views, in dependency order.
TAIL_VIEWS: dict[str, ViewSpec] = {
    "WorkerLogs": WORKER_LOGS,
    "WorkerErrors": WORKER_ERRORS,
    "WorkerRequests": WORKER_REQUESTS,
    "EndpointMetrics": ENDPOINT_METRICS,
    "ColoErrors": COLO_ERRORS,
    "RequestLatency": REQUEST_LATENCY,
    "ErrorPatterns": ERROR_PATTERNS,
    "StatusCodes": STATUS_CODES,
    "SampledRequests": SAMPLED_REQUESTS,
}

AI_VIEWS: dict[str, ViewSpec] = {"DailyAIUsage": DAILY_AI_USAGE}

#: Every seed view, in dependency order.
SEED_VIEWS: dict[str, ViewSpec] = {**TAIL_VIEWS, **AI_VIEWS}

#: The collections the seed views read, with their schemas.
SEED_COLLECTIONS: dict[str, dict[str, str]] = {TAIL_EVENTS: TAIL_EVENTS_SCHEMA, AI_REQUESTS: AI_REQUESTS_SCHEMA}


def define_seed_views(db: Database, names: list[str] | None = None, **overrides: Any) -> list[str]:
    """Open the seed collections and define the seed views that do not exist yet; returns the names defined.

    ``names`` limits which views (their sources are defined too); keyword
    ``overrides`` replace ``$refresh`` settings of every view defined
    (e.g. ``mode="manual"``).
    """
    wanted = list(SEED_VIEWS) if names is None else list(names)
    needed: list[str] = []
    for name in wanted:
        chain = [name]
        while SEED_VIEWS[chain[-1]]["$from"] in SEED_VIEWS:
            chain.append(SEED_VIEWS[chain[-1]]["$from"])
        for view in reversed(chain):
            if view not in needed:
                needed.append(view)
    for collection, schema in SEED_COLLECTIONS.items():
        db.collection(collection, schema)
    existing = set(db.list_views())
    defined = []
    for name in [n for n in SEED_VIEWS if n in needed and n not in existing]:
        spec = dict(SEED_VIEWS[name])
        if overrides:
            spec["$refresh"] = {**spec.get("$refresh", {}), **overrides}
        db.define_view(name, spec)
        defined.append(name)
    return defined
