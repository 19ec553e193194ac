"""The ``parquedb`` SQL dialect: ParqueDB SQL in, DuckDB SQL over our stored layout out.

Two things live here:

* :class:`ParqueDB`, a sqlglot dialect registered as ``"parquedb"``. It *is* the
  DuckDB dialect (same tokenizer, parser and generator), so an ordinary sqlglot
  AST renders as valid DuckDB SQL. ibis calls ``query.sql(dialect="parquedb")``
  because our backend is named ``parquedb``; that must keep working.
* :func:`translate` / :func:`to_duckdb`, which rewrite a ParqueDB query against
  the stored layout of collections and views (see docs/sql.md):

  - table names resolve to the registered collections and views, exactly first,
    then case-insensitively (``FROM workerrequests`` → ``"WorkerRequests"``);
  - ``$id``, ``$type`` (also unquoted) are columns, ``$1`` ... stay parameters;
  - a dotted path ``event.request.cf.colo`` starts at a column; inside a variant
    (JSON) column, or for fields the collection does not declare (which live in
    the ``"$data"`` JSON column), it becomes a JSON extraction typed by context:
    numeric when compared with a number, boolean with a boolean, timestamp with a
    timestamp (``NOW() - INTERVAL '1 hour'``), text otherwise;
  - only read-only queries are accepted.

The translation is pure (sqlglot only); it never touches a connection.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.dialects.duckdb import DuckDB
from sqlglot.errors import OptimizeError, ParseError, TokenError
from sqlglot.optimizer.scope import Scope, traverse_scope

from parquedb_ibis.compile.where import resolve_dollar_names, syntax_error
from parquedb_ibis.documents import DATA_COLUMN, DATE_TAG
from parquedb_ibis.errors import SQLError, UnknownTableError, did_you_mean
from parquedb_ibis.schema import Schema

__all__ = ["ParqueDB", "TableInfo", "parse", "to_duckdb", "translate"]


class ParqueDB(DuckDB):
    """sqlglot dialect ``"parquedb"``: DuckDB's grammar; :func:`translate` adds the ParqueDB names.

    Registered by sqlglot's dialect metaclass under the lowercased class name.

    >>> sqlglot.Dialect.get_or_raise("parquedb").__class__.__name__
    'ParqueDB'
    """


DIALECT = "parquedb"

#: The JSON type of variant columns (declared ``variant`` fields and ``$data``).
VARIANT_TYPE = "JSON"


@dataclass(frozen=True)
class TableInfo:
    """The stored layout of one collection or view, as far as SQL needs it.

    ``columns`` maps each typed column to its DuckDB type (``"JSON"`` marks a
    variant column); ``has_data`` says whether the table has the ``"$data"``
    column holding every undeclared field. An empty ``columns`` with
    ``has_data=False`` means "layout unknown": names pass through unchanged.
    """

    columns: Mapping[str, str] = field(default_factory=dict, hash=False)
    has_data: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", MappingProxyType(dict(self.columns)))

    @classmethod
    def from_schema(cls, schema: Schema | Mapping[str, str] | None = None) -> TableInfo:
        """The layout of a collection: system fields, declared fields and ``$data``."""
        return cls(Schema.parse(schema).column_types(), has_data=True)

    @property
    def is_known(self) -> bool:
        return bool(self.columns) or self.has_data

    def column(self, name: str) -> tuple[str, str] | None:
        """``(stored name, DuckDB type)`` of a typed column: exact match, else a unique case-insensitive one."""
        columns = dict(self.columns)
        if self.has_data:
            columns.setdefault(DATA_COLUMN, VARIANT_TYPE)
        if name in columns:
            return name, columns[name]
        folded = [c for c in columns if c.lower() == name.lower()]
        return (folded[0], columns[folded[0]]) if len(folded) == 1 else None


# -- public API -------------------------------------------------------------------------------


def parse(sql: str) -> exp.Expr:
    """Parse one read-only ParqueDB query (no name resolution yet).

    Raises :class:`~parquedb_ibis.errors.SQLSyntaxError` with the line and
    column of a syntax error, and :class:`SQLError` for several statements or
    for statements that are not queries.
    """
    if not isinstance(sql, str):
        raise SQLError(f"sql: expected a string, found {type(sql).__name__}")
    try:
        statements = [s for s in sqlglot.parse(sql, read=DIALECT) if s is not None]
    except (ParseError, TokenError) as err:
        raise syntax_error(err, sql) from err
    if not statements:
        raise SQLError("sql: the query is empty")
    if len(statements) > 1:
        raise SQLError(f"sql: expected one statement, found {len(statements)}; run them one at a time")
    tree = statements[0]
    if not isinstance(tree, exp.Query):
        raise SQLError(f"sql: {_statement_kind(tree)} statements are not supported; ParqueDB SQL is read-only (SELECT)")
    for node in tree.walk():
        if isinstance(node, (exp.DML, exp.DDL, exp.Into, exp.Command)) and node is not tree:
            raise SQLError(f"sql: {_statement_kind(node)} inside a query is not supported; ParqueDB SQL is read-only")
    return resolve_dollar_names(tree)


def translate(sql: str, tables: Mapping[str, TableInfo], params: Sequence[Any] | None = None) -> exp.Expr:
    """Parse a ParqueDB query and rewrite it into a DuckDB query over ``tables``.

    ``params`` (optional) are the values that will be bound to ``$1``/``?``; only
    their Python types are used, so a JSON path compared with a numeric
    parameter is compared as a number. Values are never put into the SQL.

    >>> tables = {"Posts": TableInfo.from_schema({"title": "string"})}
    >>> print(translate("SELECT title, meta.views FROM posts WHERE meta.views > 10", tables).sql("duckdb", pretty=True))
    SELECT
      "title",
      "$data" ->> '$.meta.views' AS views
    FROM "Posts"
    WHERE
      TRY_CAST("$data" ->> '$.meta.views' AS DOUBLE) > 10
    """
    tree = parse(sql)
    _Resolver(tables, params).resolve(tree)
    return tree


def to_duckdb(
    sql: str, tables: Mapping[str, TableInfo], params: Sequence[Any] | None = None, *, pretty: bool = False
) -> str:
    """:func:`translate`, rendered as DuckDB SQL text."""
    return translate(sql, tables, params).sql(dialect="duckdb", pretty=pretty)


# -- statement checks -------------------------------------------------------------------------

_STATEMENT_KINDS: dict[type[exp.Expr], str] = {
    exp.Insert: "INSERT",
    exp.Update: "UPDATE",
    exp.Delete: "DELETE",
    exp.Merge: "MERGE",
    exp.Create: "CREATE",
    exp.Drop: "DROP",
    exp.Alter: "ALTER",
    exp.TruncateTable: "TRUNCATE",
    exp.Grant: "GRANT",
    exp.Revoke: "REVOKE",
    exp.Copy: "COPY",
    exp.Into: "SELECT ... INTO",
    exp.Transaction: "BEGIN",
    exp.Commit: "COMMIT",
    exp.Rollback: "ROLLBACK",
}


def _statement_kind(node: exp.Expr) -> str:
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    for cls, kind in _STATEMENT_KINDS.items():
        if isinstance(node, cls):
            return kind
    return node.key.upper()


# -- name resolution --------------------------------------------------------------------------

_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ, exp.NullSafeNEQ)
_ARITHMETIC = (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.IntDiv, exp.Mod)
_NUMERIC_AGGREGATES = (exp.Sum, exp.Avg, exp.Stddev, exp.StddevPop, exp.StddevSamp, exp.Variance, exp.VariancePop)
_BOOLEAN_PARENTS = (exp.And, exp.Or, exp.Not, exp.Where, exp.Having, exp.If)
_NOW_FUNCTIONS = frozenset({"NOW", "CURRENT_TIMESTAMP", "GET_CURRENT_TIMESTAMP", "TRANSACTION_TIMESTAMP"})

#: What a JSON value is extracted as (its SQL type); ``text`` is ``->>``.
_EXTRACT_AS = {"number": "DOUBLE", "boolean": "BOOLEAN", "timestamp": "TIMESTAMPTZ"}


@dataclass
class _Plan:
    """How one column reference (``top``: the column or its outermost dot) is rewritten."""

    top: exp.Expr
    path: list[str | int]
    kind: str  # "typed" | "json" | "struct"
    qualifier: str | None = None
    column: str = ""
    type: str = ""
    keys: list[str | int] = field(default_factory=list)


@dataclass
class _Source:
    name: str  # the name columns qualify it with (alias or table name)
    info: TableInfo | None  # the layout of a stored table or a subquery (None: unknown)


class _Resolver:
    def __init__(self, tables: Mapping[str, TableInfo], params: Sequence[Any] | None = None) -> None:
        self.tables = dict(tables)
        self.params = list(params) if params is not None else None
        self.derived: dict[int, TableInfo | None] = {}  # id(scope) -> the layout a subquery/CTE exposes

    def resolve(self, tree: exp.Expr) -> None:
        for scope in _scopes(tree):
            self._resolve_tables(scope)
        plans: dict[int, _Plan] = {}
        for scope in _scopes(tree):
            self._plan_columns(scope, plans)
        # decide every extraction's type before rewriting: contexts look at neighbouring columns
        known = self._known_kinds(tree, plans)
        kinds = {key: _context_kind(plan.top, known) for key, plan in plans.items() if plan.kind == "json"}
        for key, plan in plans.items():
            self._rewrite(plan, kinds.get(key, "text"))

    def _known_kinds(self, tree: exp.Expr, plans: Mapping[int, _Plan]) -> dict[int, str]:
        """Kinds of typed columns and of parameters whose values were given, by node id."""
        known: dict[int, str] = {}
        for key, plan in plans.items():
            if plan.kind == "typed" and plan.type and not _is_variant(plan.type):
                kind = _declared_kind(plan.type)
                if kind:
                    known[key] = kind
        if self.params is not None:
            anonymous = 0
            for node in tree.walk(bfs=False):
                if not isinstance(node, exp.Placeholder):
                    continue
                if node.this:
                    index = int(node.name) - 1 if node.name.isdigit() else -1
                else:
                    index, anonymous = anonymous, anonymous + 1
                if 0 <= index < len(self.params) and (kind := _value_kind(self.params[index])):
                    known[id(node)] = kind
        return known

    # tables -----------------------------------------------------------------------------------

    def table_name(self, name: str) -> str:
        if name in self.tables:
            return name
        folded = [t for t in self.tables if t.lower() == name.lower()]
        if len(folded) == 1:
            return folded[0]
        raise UnknownTableError(name, self.tables)

    def _resolve_tables(self, scope: Scope) -> None:
        for table in scope.tables:
            if not _is_stored_table(table):
                continue  # table functions and qualified names (information_schema.tables) pass through
            ctes = [name for name, src in scope.sources.items() if isinstance(src, Scope)]
            if any(name.lower() == table.name.lower() for name in ctes):
                continue  # a CTE reference
            table.set("this", exp.to_identifier(self.table_name(table.name), quoted=True))

    # columns ----------------------------------------------------------------------------------

    def _sources(self, scope: Scope) -> list[_Source]:
        sources = []
        for name, (_node, source) in scope.selected_sources.items():
            if isinstance(source, Scope):
                sources.append(_Source(name, self.derived.get(id(source))))
            elif _is_stored_table(source) and source.name in self.tables:
                info = self.tables[source.name]
                sources.append(_Source(name, info if info.is_known else None))
            else:
                sources.append(_Source(name, None))
        return sources

    def _plan_columns(self, scope: Scope, plans: dict[int, _Plan]) -> None:
        sources = self._sources(scope)
        query = scope.expression
        projections = query.expressions if isinstance(query, exp.Select) else []
        aliases = {e.alias: e for e in projections if isinstance(e, exp.Alias)}
        for column in scope.columns:
            if isinstance(column.this, exp.Star):
                continue
            top, path = _column_path(column)
            if id(top) in plans or not path:
                continue
            if column.table and _pick_source(path[0], sources) is None and _outer_source(scope, path[0]):
                continue  # a correlated reference: the outer scope lists and resolves it
            alias = aliases.get(path[0])
            in_projection = any(_is_within(column, e) for e in projections)
            is_alias = len(path) == 1 and alias is not None and not in_projection
            plan = self._plan(top, path, sources, is_alias)
            if plan is not None:
                plans[id(top)] = plan
        self.derived[id(scope)] = _derived_info(scope, sources, plans, self.derived)

    def _plan(self, top: exp.Expr, path: list[str | int], sources: list[_Source], is_alias: bool) -> _Plan | None:
        chosen = _pick_source(str(path[0]), sources) if len(path) > 1 and isinstance(path[1], str) else None
        if chosen is not None:
            candidates, path, qualified = [chosen], path[1:], True
        else:
            candidates, qualified = sources, False
        if not candidates:
            return None
        head, rest = str(path[0]), path[1:]
        qualify = qualified or len(sources) > 1

        typed = [(s, hit) for s in candidates if s.info is not None and (hit := s.info.column(head))]
        if len(typed) > 1:
            names = ", ".join(s.name for s, _ in typed)
            raise SQLError(f"sql: column {head!r} is ambiguous (in {names}); qualify it with a table name")
        if typed:
            source, (name, type_) = typed[0]
            if rest and not type_:
                return None  # a subquery column of unknown type: DuckDB resolves the path
            kind = "typed" if not rest else "json" if _is_variant(type_) else "struct"
            if kind == "struct" and not all(isinstance(k, str) for k in rest):
                return None  # list indexing on a typed column: DuckDB's own (1-based) brackets
            if kind == "struct" and not type_.strip().upper().startswith(("STRUCT", "MAP", "UNION")):
                raise SQLError(f"sql: column {name!r} has type {type_}; it has no field {rest[0]!r}")
            return _Plan(top, path, kind, source.name if qualify else None, name, type_, rest)

        if any(s.info is None for s in candidates):
            return None  # a table function or a subquery of unknown shape: DuckDB resolves the name
        if not qualified and is_alias:
            return None  # a select-list alias (GROUP BY n, HAVING n > 1)
        with_data = [s for s in candidates if s.info is not None and s.info.has_data]
        if len(with_data) > 1:
            names = ", ".join(s.name for s in with_data)
            raise SQLError(f"sql: field {_dotted(path)!r} is ambiguous (in {names}); qualify it with a table name")
        if with_data:
            source = with_data[0]
            return _Plan(top, path, "json", source.name if qualify else None, DATA_COLUMN, VARIANT_TYPE, path)
        known = sorted({c for s in candidates if s.info is not None for c in s.info.columns})
        where = ", ".join(s.name for s in candidates)
        hint = did_you_mean(head, known)
        raise SQLError(f"sql: unknown column {head!r} in {where}{hint} (columns: {', '.join(known)})")

    # rewriting --------------------------------------------------------------------------------

    def _rewrite(self, plan: _Plan, kind: str) -> None:
        table = exp.to_identifier(plan.qualifier, quoted=True) if plan.qualifier else None
        base = exp.column(exp.to_identifier(plan.column, quoted=True), table=table)
        if plan.kind == "typed":
            node: exp.Expr = base
        elif plan.kind == "json":
            node = _json_value(base, plan.keys, kind)
        else:
            node = base
            for key in plan.keys:
                node = exp.Bracket(this=node, expressions=[exp.Literal.string(str(key))])
        top = plan.top
        if not isinstance(node, exp.Column) and isinstance(top.parent, exp.Select) and top.arg_key == "expressions":
            name = next((k for k in reversed(plan.path) if isinstance(k, str)), plan.column)
            node = exp.alias_(node, exp.to_identifier(name))
        top.replace(node)


def _derived_info(
    scope: Scope, sources: list[_Source], plans: Mapping[int, _Plan], derived: Mapping[int, TableInfo | None]
) -> TableInfo | None:
    """The layout a subquery or CTE exposes to its outer query (``None``: unknown).

    ``SELECT *`` passes its sources' typed columns and ``$data`` through, so
    ``WITH recent AS (SELECT * FROM TailEvents ...) SELECT event.request.cf.colo
    FROM recent`` still reads the variant column. Other outputs keep the type of
    the typed column they name, or an unknown type.
    """
    query = scope.expression
    if isinstance(query, exp.SetOperation):
        left = next(iter(scope.set_operation_scopes), None)
        return derived.get(id(left)) if left is not None else None
    if not isinstance(query, exp.Select):
        return None
    columns: dict[str, str] = {}
    has_data = False
    for projection in query.expressions:
        if isinstance(projection, exp.Star) or (isinstance(projection, exp.Column) and projection.is_star):
            qualifier = projection.table if isinstance(projection, exp.Column) else ""
            star = projection if isinstance(projection, exp.Star) else projection.this
            excluded = {c.name.lower() for c in star.args.get("except_") or []}
            for source in sources:
                if qualifier and source.name.lower() != qualifier.lower():
                    continue
                if source.info is None:
                    return None
                columns.update({c: t for c, t in source.info.columns.items() if c.lower() not in excluded})
                has_data = has_data or (source.info.has_data and DATA_COLUMN.lower() not in excluded)
            continue
        plan = plans.get(id(projection.this if isinstance(projection, exp.Alias) else projection))
        typed = plan is not None and plan.kind == "typed"
        columns[projection.alias_or_name] = plan.type if typed and plan is not None else ""
    return TableInfo(columns, has_data=has_data)


def _is_stored_table(node: object) -> bool:
    """A plain table name (no function call, no schema or catalog qualifier)."""
    return (
        isinstance(node, exp.Table)
        and isinstance(node.this, exp.Identifier)
        and not node.args.get("db")
        and not node.args.get("catalog")
    )


def _outer_source(scope: Scope, name: str) -> bool:
    """Whether an enclosing scope selects a source called ``name``."""
    outer = scope.parent
    while outer is not None:
        if any(n.lower() == name.lower() for n in outer.selected_sources):
            return True
        outer = outer.parent
    return False


def _is_within(node: exp.Expr, ancestor: exp.Expr) -> bool:
    if node is ancestor:
        return True
    parent = node.parent
    while parent is not None:
        if parent is ancestor:
            return True
        parent = parent.parent
    return False


def _scopes(tree: exp.Expr) -> list[Scope]:
    try:
        return traverse_scope(tree)
    except OptimizeError as err:
        raise SQLError(f"sql: {err}") from err


def _pick_source(name: str, sources: Iterable[_Source]) -> _Source | None:
    sources = list(sources)
    exact = [s for s in sources if s.name == name]
    if exact:
        return exact[0]
    folded = [s for s in sources if s.name.lower() == name.lower()]
    return folded[0] if len(folded) == 1 else None


def _column_path(column: exp.Column) -> tuple[exp.Expr, list[str | int]]:
    """The outermost node of ``a.b.c[0].d`` (a column plus dots and brackets) and its path.

    A bracket index is kept as written (0-based, as DuckDB indexes JSON arrays and
    ParqueDB paths ``a.0.b`` do); sqlglot stores DuckDB brackets shifted by one.
    """
    top: exp.Expr = column
    path: list[str | int] = [part.name for part in column.parts]
    while top.arg_key == "this":
        parent = top.parent
        if isinstance(parent, exp.Dot) and isinstance(parent.expression, exp.Identifier):
            path.append(parent.expression.name)
        elif isinstance(parent, exp.Bracket) and (key := _bracket_key(parent)) is not None:
            path.append(key)
        else:
            break
        top = parent
    return top, path


def _bracket_key(bracket: exp.Bracket) -> str | int | None:
    if len(bracket.expressions) != 1:
        return None
    key = bracket.expressions[0]
    if isinstance(key, exp.Literal) and key.is_string:
        return key.this
    sign = 1
    if isinstance(key, exp.Neg):
        key, sign = key.this, -1
    if isinstance(key, exp.Literal) and key.is_int:
        index = sign * int(key.this) + 1  # undo sqlglot's DuckDB index offset
        return index if index >= 0 else None
    return None


def _is_variant(type_: str) -> bool:
    return type_.strip().upper() == VARIANT_TYPE


# -- JSON extraction --------------------------------------------------------------------------


def _dotted(path: Iterable[str | int]) -> str:
    return ".".join(map(str, path))


def _json_path(keys: Iterable[str | int]) -> exp.JSONPath:
    parts: list[exp.Expr] = [exp.JSONPathRoot()]
    for key in keys:
        if isinstance(key, int):
            parts.append(exp.JSONPathSubscript(this=key))
            continue
        if '"' in key:
            raise SQLError(f"sql: field name {key!r} contains a double quote, which a JSON path cannot express")
        parts.append(exp.JSONPathKey(this=key))
    return exp.JSONPath(expressions=parts)


def _json_text(base: exp.Expr, keys: list[str | int]) -> exp.Expr:
    return exp.JSONExtractScalar(this=base.copy(), expression=_json_path(keys))


def _json_value(base: exp.Expr, keys: list[str | int], kind: str) -> exp.Expr:
    """``base ->> '$.keys'``, cast for its context (timestamps also read ParqueDB's ``{"$date": ...}`` tag)."""
    text = _json_text(base, keys)
    if kind == "timestamp":
        text = exp.Coalesce(this=_json_text(base, [*keys, DATE_TAG]), expressions=[text])
    if kind in _EXTRACT_AS:
        return exp.TryCast(this=text, to=exp.DataType.build(_EXTRACT_AS[kind]))
    return text


def _context_kind(top: exp.Expr, known: Mapping[int, str]) -> str:
    """What the surrounding expression wants from a JSON value: number, boolean, timestamp or text."""
    node, parent = top, top.parent
    while isinstance(parent, exp.Paren):
        node, parent = parent, parent.parent
    kind: str | None = None
    if isinstance(parent, _COMPARISONS):
        other = parent.expression if node is parent.this else parent.this
        kind = _kind_of(other, known)
    elif isinstance(parent, exp.In) and node is parent.this:
        kinds = {_kind_of(v, known) for v in parent.expressions}
        kind = kinds.pop() if len(kinds) == 1 else None
    elif isinstance(parent, exp.Between) and node is parent.this:
        kinds = {_kind_of(parent.args["low"], known), _kind_of(parent.args["high"], known)}
        kind = kinds.pop() if len(kinds) == 1 else None
    elif isinstance(parent, _ARITHMETIC):
        other = parent.expression if node is parent.this else parent.this
        other_kind = _kind_of(other, known)
        shifts_time = other_kind == "interval" or (other_kind == "timestamp" and isinstance(parent, exp.Add))
        kind = "timestamp" if shifts_time else "number"
    elif isinstance(parent, _NUMERIC_AGGREGATES):
        kind = "number"
    elif isinstance(parent, _BOOLEAN_PARENTS) and node.arg_key in ("this", "expression"):
        kind = "boolean"
    return kind if kind in _EXTRACT_AS else "text"


def _kind_of(node: exp.Expr, known: Mapping[int, str]) -> str | None:
    """The kind of value an expression yields, as far as it is evident from the SQL."""
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Literal):
        return "text" if node.is_string else "number"
    if isinstance(node, exp.Neg):
        return _kind_of(node.this, known)
    if isinstance(node, exp.Boolean):
        return "boolean"
    if isinstance(node, exp.Interval):
        return "interval"
    if isinstance(node, (exp.Cast, exp.TryCast)):
        return _type_kind(node.to)
    if isinstance(node, (exp.CurrentTimestamp, exp.CurrentDate)):
        return "timestamp"
    if isinstance(node, exp.Anonymous) and node.name.upper() in _NOW_FUNCTIONS:
        return "timestamp"
    if isinstance(node, (exp.Add, exp.Sub)):
        kinds = {_kind_of(node.this, known), _kind_of(node.expression, known)}
        if "timestamp" in kinds:
            return "timestamp"
        return "number" if kinds == {"number"} else None
    if isinstance(node, _ARITHMETIC):
        return "number"
    return known.get(id(node))


def _declared_kind(type_: str) -> str | None:
    try:
        return _type_kind(exp.DataType.build(type_, dialect="duckdb"))
    except (ParseError, ValueError):
        return None


def _value_kind(value: Any) -> str | None:
    """The kind of a bound parameter value."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float, Decimal)):
        return "number"
    if isinstance(value, (dt.date, dt.datetime)):
        return "timestamp"
    if isinstance(value, str):
        return "text"
    return None


def _type_kind(to: exp.DataType) -> str | None:
    if to.is_type(*exp.DataType.NUMERIC_TYPES):
        return "number"
    if to.is_type(exp.DType.BOOLEAN):
        return "boolean"
    if to.is_type(*exp.DataType.TEMPORAL_TYPES):
        return "timestamp"
    if to.is_type(*exp.DataType.TEXT_TYPES):
        return "text"
    return None

