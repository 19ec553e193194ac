"""The current state (or a past state) of a collection as one DuckDB relation.

Given a head, the state is the checkpoint with the segments committed after it
folded in: for each ``$id`` the latest event of those segments wins (commit
order, then event id), a hard delete removes the entity, and checkpoint rows
whose ``$id`` has a later event are dropped by an anti-join. Readers never
replay more than the segments after the last checkpoint. The relation has the
state columns only (system fields, declared fields, ``$data``).

Everything here builds sqlglot trees; file URLs are literals, never spliced.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from sqlglot import exp

from parquedb_ibis.documents import DATA_COLUMN, format_datetime, parse_datetime, to_utc
from parquedb_ibis.schema import Schema
from parquedb_ibis.writer.manifest import CheckpointRef, Head, SegmentRef

SEGMENT_ORDER = "__pq_segment"


def _col(name: str, table: str | None = None) -> exp.Column:
    return exp.column(name, table=table, quoted=True)


def read_parquet(urls: Sequence[str], **options: bool) -> exp.Expression:
    """``read_parquet([...urls], option = true ...)`` as a sqlglot call (urls are literals)."""
    args: list[exp.Expression] = [exp.Array(expressions=[exp.Literal.string(u) for u in urls])]
    for key, value in options.items():
        args.append(exp.EQ(this=exp.var(key), expression=exp.Boolean(this=value)))
    return exp.func("read_parquet", *args, dialect="duckdb")


def state_columns(schema: Schema) -> list[str]:
    return [*schema.column_types(), DATA_COLUMN]


def _empty_state(schema: Schema) -> exp.Select:
    """A relation with the state columns and no rows (a collection never written)."""
    projections = [
        exp.alias_(exp.cast(exp.null(), exp.DataType.build(t, dialect="duckdb")), name, quoted=True)
        for name, t in [*schema.column_types().items(), (DATA_COLUMN, "VARCHAR")]
    ]
    return exp.select(*projections).where(exp.false())


def state_relation(
    schema: Schema,
    checkpoint: CheckpointRef | None,
    segments: Sequence[SegmentRef],
    url_for: Callable[[str], str],
    *,
    until: dt.datetime | None = None,
    include_deleted: bool = False,
) -> exp.Select:
    """Fold ``checkpoint`` and ``segments`` into the state relation.

    ``until`` keeps only events at or before that time (time travel);
    soft-deleted entities are left out unless ``include_deleted``.
    """
    cols = state_columns(schema)
    # Only a fold, or a checkpoint holding soft-deleted rows, can yield a row with deletedAt set
    # (creates never carry one): otherwise there is nothing for the deletedAt filter to remove.
    deletions = any(not s.creates_only for s in segments) or (checkpoint is not None and checkpoint.deleted != 0)
    parts: list[exp.Select] = []
    seg_urls = [url_for(s.key) for s in segments]
    # Segments of creates only (new entities, each id once) need no fold: their rows are the state.
    # Any other segment is folded: latest event per $id wins, and checkpoint rows it touched are dropped.
    folded = [u for s, u in zip(segments, seg_urls, strict=True) if not s.creates_only]
    if folded:
        events = exp.select("*").from_(exp.alias_(read_parquet(seg_urls, filename=True, union_by_name=True), "e"))
        if until is not None:
            events = events.where(exp.LTE(this=_col("ts"), expression=_timestamp(until)))
        order = exp.func("list_position", exp.Array(expressions=[exp.Literal.string(u) for u in seg_urls]), _col("filename"))
        ranked = exp.Window(
            this=exp.RowNumber(),
            partition_by=[_col("$id")],
            order=exp.Order(expressions=[exp.Ordered(this=order, desc=True), exp.Ordered(this=_col("id"), desc=True)]),
        )
        latest = events.qualify(exp.EQ(this=ranked, expression=exp.Literal.number(1)))
        parts.append(
            exp.select(*(_col(c) for c in cols))
            .from_(exp.alias_(exp.Subquery(this=latest), "latest"))
            .where(exp.Not(this=exp.Is(this=_col(DATA_COLUMN), expression=exp.null())))
        )
    elif seg_urls and until is None and checkpoint is not None and checkpoint.files:
        # Nothing to fold: the checkpoint and the new entities are read as one scan (one pipeline).
        files = [*(url_for(f) for f in checkpoint.files), *seg_urls]
        parts.append(exp.select(*(_col(c) for c in cols)).from_(read_parquet(files, union_by_name=True)))
        checkpoint = None
    elif seg_urls:
        created = exp.select(*(_col(c) for c in cols)).from_(read_parquet(seg_urls, union_by_name=True))
        if until is not None:
            created = created.where(exp.LTE(this=_col("ts"), expression=_timestamp(until)))
        parts.append(created)
    if checkpoint is not None and checkpoint.files:
        base = exp.select(*(_col(c, "c") for c in cols)).from_(
            exp.alias_(read_parquet([url_for(f) for f in checkpoint.files], union_by_name=True), "c")
        )
        if folded:
            touched = exp.select(_col("$id")).from_(read_parquet(folded, union_by_name=True))
            if until is not None:
                touched = touched.where(exp.LTE(this=_col("ts"), expression=_timestamp(until)))
            base = base.join(
                exp.alias_(exp.Subquery(this=touched), "t"),
                on=exp.EQ(this=_col("$id", "c"), expression=_col("$id", "t")),
                join_type="anti",
            )
        parts.insert(0, base)
    if not parts:
        relation = _empty_state(schema)
    else:
        relation = parts[0]
        for part in parts[1:]:
            relation = exp.Union(this=relation, expression=part, distinct=False, by_name=True)
    if include_deleted or not deletions:
        return relation if isinstance(relation, exp.Select) else exp.select("*").from_(exp.Subquery(this=relation, alias="s"))
    return exp.select("*").from_(exp.alias_(exp.Subquery(this=relation), "s")).where(
        exp.Is(this=_col("deletedAt"), expression=exp.null())
    )


def _timestamp(value: dt.datetime) -> exp.Expression:
    return exp.cast(exp.Literal.string(format_datetime(value)), exp.DataType.build("TIMESTAMPTZ", dialect="duckdb"))


def head_relation(head: Head, url_for: Callable[[str], str], *, include_deleted: bool = False) -> exp.Select:
    """The current state named by ``head``."""
    return state_relation(Schema.parse(head.schema), head.checkpoint, head.live_segments, url_for,
                          include_deleted=include_deleted)


def as_of_relation(head: Head, when: dt.datetime, url_for: Callable[[str], str], *, include_deleted: bool = False) -> exp.Select:
    """The state at time ``when``: the newest checkpoint wholly before it, plus later events up to it."""
    when = to_utc(when)
    candidates = [c for c in (*head.checkpoints, head.checkpoint) if c is not None and c.max_ts is not None]
    usable = [c for c in candidates if parse_datetime(c.max_ts) <= when]
    base = max(usable, key=lambda c: c.through_segments, default=None)
    start = base.through_segments if base else 0
    segments = [s for s in head.history[start:] if parse_datetime(s.min_ts) <= when]
    return state_relation(Schema.parse(head.schema), base, segments, url_for, until=when, include_deleted=include_deleted)
