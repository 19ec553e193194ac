"""Rewrites of built queries that keep their meaning and make them cheaper to run.

:func:`share_json_parses`: DuckDB parses a JSON value once per path taken
from it, so ``SELECT doc -> '/a', doc -> '/b', doc ->> '/c'`` parses ``doc``
three times per row. When a SELECT takes two or more constant paths from one
column, the rewrite takes them all in one call in a subquery under the same
alias (``json_extract(doc, ['/a', '/b'])``, one parse) and reads the list's
elements instead. Materialized views over variant fields (``event ->
'/request/cf/colo'`` and friends) take many paths from one column per row.

Pure: sqlglot trees in, sqlglot trees out.
"""

from __future__ import annotations

from collections import defaultdict

from sqlglot import exp

#: Per kind of path access: the DuckDB function that takes a list of paths in one parse.
LIST_FUNCTIONS: dict[type[exp.Expression], str] = {
    exp.JSONExtract: "json_extract",
    exp.JSONExtractScalar: "json_extract_string",
}

#: Prefix of the list columns the rewrite adds.
SHARED_PREFIX = "$json:"


def share_json_parses(query: exp.Expression) -> exp.Expression:
    """``query`` with every SELECT that takes ≥ 2 constant paths from one column rewritten (in place)."""
    for select in list(query.find_all(exp.Select)):
        _share(select)
    return query


def _own_accesses(select: exp.Select) -> dict[tuple[type, str, str], list[exp.Expression]]:
    """Path accesses in the SELECT list (not in nested queries), by (kind, column, path)."""
    found: dict[tuple[type, str, str], list[exp.Expression]] = defaultdict(list)
    for projection in select.expressions:
        for node in projection.walk(prune=lambda n: isinstance(n, (exp.Subquery, exp.Select)) and n is not projection):
            kind = type(node)
            if kind not in LIST_FUNCTIONS:
                continue
            column, path = node.this, node.expression
            if isinstance(column, exp.Column) and not column.table and isinstance(path, exp.Literal) and path.is_string:
                found[(kind, column.name, path.this)].append(node)
    return found


def _share(select: exp.Select) -> None:
    source = select.args.get("from_")
    if source is None or select.args.get("joins") or select.args.get("group") or not isinstance(
            source.this, (exp.Subquery, exp.Table)):
        return  # with GROUP BY, grouped expressions must stay as written to match the SELECT list
    accesses = _own_accesses(select)
    groups: dict[tuple[type, str], list[str]] = defaultdict(list)
    for kind, column, path in accesses:
        groups[(kind, column)].append(path)
    shared = {key: paths for key, paths in groups.items() if len(paths) >= 2}
    if not shared:
        return
    alias = source.this.alias_or_name
    extra = []
    for (kind, column), paths in shared.items():
        name = f"{SHARED_PREFIX}{LIST_FUNCTIONS[kind]}:{column}"
        call = exp.Anonymous(this=LIST_FUNCTIONS[kind], expressions=[
            exp.column(column, quoted=True), exp.Array(expressions=[exp.Literal.string(p) for p in paths])])
        extra.append(exp.alias_(call, name, quoted=True))
        for index, path in enumerate(paths):
            for node in accesses[(kind, column, path)]:
                node.replace(exp.Bracket(this=exp.column(name, quoted=True), expressions=[exp.Literal.number(index)]))
    inner = exp.select(exp.Star(), *extra).from_(source.this.copy())
    source.set("this", exp.alias_(exp.Subquery(this=inner), alias, quoted=True) if alias else exp.Subquery(this=inner))
