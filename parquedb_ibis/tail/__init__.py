"""Cloudflare Workers tail events: the TailEvents schema, the seed views, ingestion and compaction.

>>> from parquedb_ibis.tail import TailEvents, WorkerRequests
>>> TailEvents["eventTimestamp"], WorkerRequests["$from"]
('timestamp!', 'TailEvents')

* :func:`ingest`, :func:`ingest_jsonl`, :func:`ingest_raw_file`, :func:`ingest_raw`
  write trace items into the ``TailEvents`` collection (:mod:`.ingest`);
* :func:`install_views` defines the seed views (``WorkerLogs``, ``WorkerErrors``,
  ``WorkerRequests``, ``EndpointMetrics``...) on a database;
* :func:`compact` and :func:`handle_notification` turn the upstream pipeline's
  raw NDJSON into WorkerLogs Parquet (:mod:`.compact`);
* :mod:`.sample` generates realistic trace items for demos and tests.

See docs/tail.md.
"""

from parquedb_ibis.tail.compact import (
    WORKER_LOGS_SCHEMA,
    CompactResult,
    Notification,
    compact,
    compacted_files,
    handle_notification,
    parse_notification,
)
from parquedb_ibis.tail.ingest import TAIL_EVENTS
from parquedb_ibis.tail.ingest import TAIL_EVENTS_SCHEMA
from parquedb_ibis.tail.ingest import TAIL_EVENTS_SCHEMA as TailEvents
from parquedb_ibis.tail.ingest import (
    DeadLetters,
    IngestResult,
    ingest,
    ingest_jsonl,
    ingest_raw,
    ingest_raw_file,
    install_views,
    tail_collection,
    trace_id,
    trace_key,
)
from parquedb_ibis.views.seeds import COLO_ERRORS as ColoErrors
from parquedb_ibis.views.seeds import ENDPOINT_METRICS as EndpointMetrics
from parquedb_ibis.views.seeds import ERROR_PATTERNS as ErrorPatterns
from parquedb_ibis.views.seeds import REQUEST_LATENCY as RequestLatency
from parquedb_ibis.views.seeds import SAMPLED_REQUESTS as SampledRequests
from parquedb_ibis.views.seeds import STATUS_CODES as StatusCodes
from parquedb_ibis.views.seeds import TAIL_VIEWS
from parquedb_ibis.views.seeds import WORKER_ERRORS as WorkerErrors
from parquedb_ibis.views.seeds import WORKER_LOGS as WorkerLogs
from parquedb_ibis.views.seeds import WORKER_REQUESTS as WorkerRequests

__all__ = [
    "TAIL_EVENTS",
    "TAIL_EVENTS_SCHEMA",
    "TAIL_VIEWS",
    "WORKER_LOGS_SCHEMA",
    "ColoErrors",
    "CompactResult",
    "DeadLetters",
    "EndpointMetrics",
    "ErrorPatterns",
    "IngestResult",
    "Notification",
    "RequestLatency",
    "SampledRequests",
    "StatusCodes",
    "TailEvents",
    "WorkerErrors",
    "WorkerLogs",
    "WorkerRequests",
    "compact",
    "compacted_files",
    "handle_notification",
    "ingest",
    "ingest_jsonl",
    "ingest_raw",
    "ingest_raw_file",
    "install_views",
    "parse_notification",
    "tail_collection",
    "trace_id",
    "trace_key",
]
