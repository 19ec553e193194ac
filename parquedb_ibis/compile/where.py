"""Translate a SQL WHERE clause into a ParqueDB filter document (upstream's ``whereToFilter``).

ParqueDB's SQL integration turns ``WHERE`` text into a Mongo-style filter with
a regex-based parser. :func:`sql_to_filter` does the same job for the subset of
clauses that map onto filter operators, but parses with sqlglot (DuckDB
grammar), so precedence, parentheses, quoting and escaping follow SQL:

* ``=`` ``!=``/``<>`` ``<`` ``<=`` ``>`` ``>=`` → implicit equality, ``$ne``,
  ``$lt`` ...; a value on the left is flipped (``5 < age`` → ``age > 5``);
* ``IN`` / ``NOT IN`` → ``$in`` / ``$nin``; ``BETWEEN`` → ``$gte`` + ``$lte``;
* ``LIKE`` / ``ILIKE`` (optionally ``ESCAPE``) → an anchored ``$regex`` with
  escaped metacharacters (``ILIKE`` adds ``$options: 'i'``);
* ``IS NULL`` → ``{f: null}`` (null or missing), ``IS NOT NULL`` → ``{$ne: null}``;
* ``AND`` / ``OR`` / ``NOT`` with SQL precedence (``AND`` binds tighter);
* values: strings, numbers, ``TRUE``/``FALSE``/``NULL``, ``[..]`` lists,
  ``TIMESTAMP '..'``/``DATE '..'``, and bound parameters ``$1..$n`` and ``?``.

Parameter values are bound, never spliced into the text: a parameter that holds
SQL or an operator object is compared as a plain value. Before parsing, the text
goes through upstream's injection checks (``validateWhereClause``) with the same
rejections and messages. The deviations from upstream are listed in docs/sql.md.

This module is pure: sqlglot in, a filter ``dict`` out; it never touches DuckDB.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

from parquedb_ibis.documents import parse_datetime
from parquedb_ibis.errors import SQLError, SQLSyntaxError, UnsafeSQLError

#: The sqlglot grammar WHERE clauses are read with (ParqueDB's own dialect is DuckDB's).
READ_DIALECT = "duckdb"

# -- upstream's injection checks (src/utils/sql-security.ts validateWhereClause) -------------

_MULTIPLE_STATEMENTS = re.compile(r";\s*(SELECT|INSERT|UPDATE|DELETE|DROP|CREATE|ALTER|TRUNCATE|EXEC|UNION)", re.I)
_COMMENT = re.compile(r"--|/\*")
_UNION = re.compile(r"\bUNION\b", re.I | re.ASCII)
#: Rejected anywhere in the text, string literals included (upstream checks the raw text).
DANGEROUS_KEYWORDS: tuple[str, ...] = (
    "DROP",
    "TRUNCATE",
    "ALTER",
    "CREATE",
    "GRANT",
    "REVOKE",
    "EXEC",
    "EXECUTE",
    "INTO",
    "OUTFILE",
    "DUMPFILE",
    "LOAD_FILE",
)
_DANGEROUS = [(kw, re.compile(rf"\b{kw}\b", re.ASCII)) for kw in DANGEROUS_KEYWORDS]
MAX_PARENTHESES = 10


def validate_where_clause(where_clause: str) -> None:
    """Apply upstream's ``validateWhereClause`` checks, in its order and with its messages.

    >>> validate_where_clause("status = 'active'; DROP TABLE users")
    Traceback (most recent call last):
    ...
    parquedb_ibis.errors.UnsafeSQLError: SQL injection detected: multiple statements not allowed
    """
    if _MULTIPLE_STATEMENTS.search(where_clause):
        raise UnsafeSQLError("SQL injection detected: multiple statements not allowed")
    if _COMMENT.search(where_clause):
        raise UnsafeSQLError("SQL injection detected: comments not allowed in WHERE clause")
    if _UNION.search(where_clause):
        raise UnsafeSQLError("SQL injection detected: UNION not allowed in WHERE clause")
    normalized = where_clause.upper()
    for keyword, pattern in _DANGEROUS:
        if pattern.search(normalized):
            raise UnsafeSQLError(f"SQL injection detected: {keyword} not allowed in WHERE clause")
    if where_clause.count("(") != where_clause.count(")"):
        raise UnsafeSQLError("Invalid WHERE clause: unbalanced parentheses")
    if where_clause.count("(") > MAX_PARENTHESES:
        raise UnsafeSQLError("Invalid WHERE clause: excessive nesting depth")


# -- parsing ----------------------------------------------------------------------------------


def resolve_dollar_names(tree: exp.Expr) -> exp.Expr:
    """Turn ``$id``-style names into column references (DuckDB reads them as named parameters).

    ParqueDB's system fields start with ``$``; in ParqueDB SQL ``$id``, ``$type``
    and ``t.$id`` name columns, while ``$1``, ``$2`` ... stay positional parameters.
    """
    for node in list(tree.find_all(exp.Placeholder)):
        name = node.this.name if isinstance(node.this, exp.Expr) else node.this
        if not name or name.isdigit():
            continue
        ident = exp.to_identifier(f"${name}", quoted=True)
        if isinstance(node.parent, exp.Column):
            node.replace(ident)
        elif node is tree:
            tree = exp.column(ident)
        else:
            node.replace(exp.column(ident))
    return tree


def syntax_error(err: ParseError | TokenError, sql: str) -> SQLSyntaxError:
    """Build a :class:`SQLSyntaxError` with the line/column sqlglot reports (or can infer)."""
    if isinstance(err, ParseError) and err.errors:
        first = err.errors[0]
        problem = _describe(str(first.get("description") or "cannot parse"))
        return SQLSyntaxError(problem, first.get("line") or 1, first.get("col") or 1, first.get("highlight") or "")
    if isinstance(err, TokenError):
        cause = str(err.__cause__ or "")
        m = re.search(r"Missing (.+) from \d+:(\d+)", cause)
        if m:
            offset, problem = int(m.group(2)), f"unterminated {_delimiter_name(m.group(1))}"
        else:
            offset, problem = (err.start or 0) + (50 if err.start else 0), "cannot tokenize"
        line, column = _line_col(sql, offset)
        return SQLSyntaxError(problem, line, column, sql[offset : offset + 20])
    return SQLSyntaxError(str(err).splitlines()[0], 1, 1)


def _describe(description: str) -> str:
    """Reword sqlglot's parse error descriptions for users."""
    m = re.match(r"Required keyword: '(\w+)' missing for <class '[\w.]*\.(\w+)'>", description)
    if m:
        side = {"this": "left-hand side", "expression": "right-hand side"}.get(m.group(1), m.group(1))
        return f"incomplete {m.group(2).upper()} expression ({side} missing)"
    if description.startswith("Invalid expression / Unexpected token"):
        return "unexpected token"
    description = description.split(". Line")[0]
    return description[:1].lower() + description[1:]


def _delimiter_name(delimiter: str) -> str:
    return {"'": "string literal", '"': "quoted identifier"}.get(delimiter, f"text (missing {delimiter})")


def _line_col(text: str, offset: int) -> tuple[int, int]:
    offset = max(0, min(offset, len(text)))
    before = text[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


def _parse_condition(where_clause: str) -> exp.Expr:
    dialect = sqlglot.Dialect.get_or_raise(READ_DIALECT)
    try:
        tokens = dialect.tokenize(where_clause)
    except TokenError as err:
        raise syntax_error(err, where_clause) from err
    semicolons = [i for i, tok in enumerate(tokens) if tok.token_type == TokenType.SEMICOLON]
    if semicolons and semicolons != [len(tokens) - 1]:
        raise UnsafeSQLError("SQL injection detected: multiple statements not allowed")
    text = where_clause[: tokens[-1].start] if semicolons else where_clause
    try:
        tree = sqlglot.parse_one(text, read=READ_DIALECT, into=exp.Condition)
    except ParseError as err:
        raise syntax_error(err, where_clause) from err
    return resolve_dollar_names(tree)


# -- translation ------------------------------------------------------------------------------

_FLIPPED = {"$gt": "$lt", "$gte": "$lte", "$lt": "$gt", "$lte": "$gte", "$eq": "$eq", "$ne": "$ne"}
_NEGATED = {"$gt": "$lte", "$gte": "$lt", "$lt": "$gte", "$lte": "$gt", "$eq": "$ne", "$ne": "$eq"}

#: SQL comparison node -> filter operator (``$eq`` becomes implicit equality).
COMPARISONS: dict[type[exp.Expr], str] = {
    exp.EQ: "$eq",
    exp.NEQ: "$ne",
    exp.GT: "$gt",
    exp.GTE: "$gte",
    exp.LT: "$lt",
    exp.LTE: "$lte",
}

#: Regex metacharacters escaped in LIKE patterns (JavaScript's set, as ParqueDB evaluates JS regexes).
_REGEX_META = frozenset(".*+?^${}()|[]\\/")


def sql_to_filter(where_clause: str, params: Sequence[Any] = ()) -> dict[str, Any]:
    """Translate a SQL WHERE clause (without ``WHERE``) into a ParqueDB filter.

    ``$n`` takes ``params[n-1]``; each ``?`` takes the next parameter in order.

    >>> sql_to_filter("status = $1 AND age > $2", ["active", 25])
    {'status': 'active', 'age': {'$gt': 25}}
    >>> sql_to_filter("a = 1 AND (b = 2 OR c LIKE 'x%')")
    {'a': 1, '$or': [{'b': 2}, {'c': {'$regex': '^x'}}]}
    """
    if not isinstance(where_clause, str):
        raise SQLError(f"where clause: expected a string, found {type(where_clause).__name__}")
    validate_where_clause(where_clause)
    if not where_clause.strip().rstrip(";").strip():
        return {}
    tree = _parse_condition(where_clause)
    return _Translator(params, tree).translate(tree)


class _Translator:
    """One translation: binds parameters and maps condition nodes to filter fragments."""

    def __init__(self, params: Sequence[Any], tree: exp.Expr) -> None:
        if isinstance(params, (str, bytes)) or not isinstance(params, Sequence):
            raise SQLError(f"where clause parameters: expected a sequence, found {type(params).__name__}")
        self.params = list(params)
        # `?` placeholders are numbered in source order (a depth-first walk follows the text).
        anonymous = [n for n in tree.walk(bfs=False) if isinstance(n, exp.Placeholder) and not n.this]
        self.positions = {id(node): i for i, node in enumerate(anonymous)}

    # conditions ------------------------------------------------------------------------------

    def translate(self, node: exp.Expr) -> dict[str, Any]:
        node = _unwrap(node)
        handler = self._HANDLERS.get(type(node))
        if handler is not None:
            return handler(self, node)
        if isinstance(node, (exp.Column, exp.Dot)):
            return {_field(node): True}
        if isinstance(node, exp.Boolean):
            return {} if node.this else {"$or": []}
        raise _unsupported(node, "is not a condition that maps to a filter")

    def _and(self, node: exp.Expr) -> dict[str, Any]:
        return merge_and([self.translate(part) for part in _flatten(node, exp.And)])

    def _or(self, node: exp.Expr) -> dict[str, Any]:
        branches: list[dict[str, Any]] = []
        for part in _flatten(node, exp.Or):
            sub = self.translate(part)
            branches.extend(sub["$or"] if list(sub) == ["$or"] else [sub])
        return {"$or": branches}

    def _not(self, node: exp.Not) -> dict[str, Any]:
        return self.negate(_unwrap(node.this))

    def _comparison(self, node: exp.Expr) -> dict[str, Any]:
        op = COMPARISONS[type(node)]
        left, right = _unwrap(node.this), _unwrap(node.expression)
        if _is_field(left) and _is_field(right) and not _is_string_identifier(right):
            raise _unsupported(node, "compares two fields; a filter compares a field with a value")
        if not _is_field(left):
            if not _is_field(right):
                raise _unsupported(node, "has no field on either side")
            left, right, op = right, left, _FLIPPED[op]
        return {_field(left): _condition(op, self.value(right))}

    def _in(self, node: exp.In) -> dict[str, Any]:
        if node.args.get("query") or node.args.get("unnest") or node.args.get("field"):
            raise _unsupported(node, "uses a subquery or UNNEST; only a list of values maps to $in")
        field = _field_of(node, node.this)
        return {field: {"$in": [self.value(v) for v in node.expressions]}}

    def _between(self, node: exp.Between) -> dict[str, Any]:
        field = _field_of(node, node.this)
        return {field: {"$gte": self.value(node.args["low"]), "$lte": self.value(node.args["high"])}}

    def _like(self, node: exp.Expr, escape: str | None = None) -> dict[str, Any]:
        field = _field_of(node, node.this)
        pattern = self.value(node.expression)
        if not isinstance(pattern, str):
            raise _unsupported(node, f"needs a string pattern, found {pattern!r}")
        regex, dotall = like_to_regex(pattern, escape)
        options = ("i" if isinstance(node, exp.ILike) else "") + ("s" if dotall else "")
        cond: dict[str, Any] = {"$regex": regex}
        if options:
            cond["$options"] = options
        result = {field: cond}
        return {field: {"$not": cond}} if node.args.get("negate") else result

    def _escape(self, node: exp.Escape) -> dict[str, Any]:
        inner = _unwrap(node.this)
        escape = self.value(node.expression)
        if not isinstance(inner, (exp.Like, exp.ILike)) or not isinstance(escape, str) or len(escape) != 1:
            raise _unsupported(node, "ESCAPE needs LIKE/ILIKE and a single character")
        return self._like(inner, escape)

    def _is(self, node: exp.Is) -> dict[str, Any]:
        field = _field_of(node, node.this)
        target = _unwrap(node.expression)
        if isinstance(target, exp.Null):
            return {field: None}
        if isinstance(target, exp.Boolean):
            return {field: bool(target.this)}
        raise _unsupported(node, "only IS [NOT] NULL / TRUE / FALSE map to a filter")

    _HANDLERS: dict[type[exp.Expr], Callable[[_Translator, Any], dict[str, Any]]] = {
        exp.And: _and,
        exp.Or: _or,
        exp.Not: _not,
        **dict.fromkeys(COMPARISONS, _comparison),
        exp.In: _in,
        exp.Between: _between,
        exp.Like: _like,
        exp.ILike: _like,
        exp.Escape: _escape,
        exp.Is: _is,
    }

    # negation --------------------------------------------------------------------------------

    def negate(self, node: exp.Expr) -> dict[str, Any]:
        """``NOT x`` as a filter: the complementary operator where one exists, else ``$nor``."""
        if isinstance(node, exp.Not):
            return self.translate(node.this)
        if type(node) in COMPARISONS:
            ((field, cond),) = self._comparison(node).items()
            op, value = _split_condition(cond)
            return {field: _condition(_NEGATED[op], value)}
        if isinstance(node, exp.In):
            ((field, cond),) = self._in(node).items()
            return {field: {"$nin": cond["$in"]}}
        if isinstance(node, exp.Is):
            ((field, value),) = self._is(node).items()
            return {field: {"$ne": value}}
        if isinstance(node, exp.Between):
            ((field, cond),) = self._between(node).items()
            return {"$or": [{field: {"$lt": cond["$gte"]}}, {field: {"$gt": cond["$lte"]}}]}
        if isinstance(node, (exp.Like, exp.ILike)):
            node = node.copy()
            node.set("negate", not node.args.get("negate"))
            return self._like(node)
        if isinstance(node, exp.Escape):
            node = node.copy()
            inner = _unwrap(node.this)
            inner.set("negate", not inner.args.get("negate"))
            return self._escape(node)
        if isinstance(node, (exp.Column, exp.Dot)):
            return {_field(node): False}
        inner = self.translate(node)
        return {"$nor": inner["$or"] if list(inner) == ["$or"] else [inner]}

    # values ----------------------------------------------------------------------------------

    def value(self, node: exp.Expr) -> Any:
        """The Python value of a literal or bound parameter (never SQL text)."""
        node = _unwrap(node)
        if isinstance(node, exp.Placeholder):
            return self._parameter(node)
        if isinstance(node, exp.Literal):
            return node.this if node.is_string else _number(node.this)
        if isinstance(node, exp.Neg):
            inner = self.value(node.this)
            if isinstance(inner, (int, float)) and not isinstance(inner, bool):
                return -inner
            raise _unsupported(node, "negates a value that is not a number")
        if isinstance(node, exp.Boolean):
            return bool(node.this)
        if isinstance(node, exp.Null):
            return None
        if isinstance(node, exp.Array):
            return [self.value(v) for v in node.expressions]
        if isinstance(node, exp.Struct):
            return {_struct_key(node, p): self.value(p.expression) for p in node.expressions}
        if isinstance(node, exp.Cast):
            return self._typed_literal(node)
        if _is_string_identifier(node):
            # upstream reads "..." as a string value; kept for compatibility (SQL would say column)
            return node.name
        raise _unsupported(node, "is not a literal value or parameter")

    def _parameter(self, node: exp.Placeholder) -> Any:
        if node.this:
            index, label = int(node.name) - 1, f"${node.name}"
        else:
            index = self.positions[id(node)]
            label = f"? number {index + 1}"
        if not 0 <= index < len(self.params):
            raise SQLError(f"where clause: parameter {label} has no value ({len(self.params)} given)")
        return self.params[index]

    def _typed_literal(self, node: exp.Cast) -> Any:
        text = self.value(node.this)
        to = node.to
        if isinstance(text, str) and to.is_type(*exp.DataType.TEMPORAL_TYPES):
            try:
                if to.is_type(exp.DType.DATE):
                    return dt.date.fromisoformat(text)
                return parse_datetime(text)
            except ValueError as err:
                raise _unsupported(node, f"has an invalid {to.sql()} literal {text!r}") from err
        raise _unsupported(node, "casts are not supported in a filter (only TIMESTAMP/DATE '...' literals)")


# -- helpers ----------------------------------------------------------------------------------


def merge_and(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """AND filters together: merge disjoint keys and operator objects, collect clashes in ``$and``.

    >>> merge_and([{"age": {"$gt": 1}}, {"age": {"$lt": 9}}, {"a": 1}, {"a": 2}])
    {'age': {'$gt': 1, '$lt': 9}, 'a': 1, '$and': [{'a': 2}]}
    """
    merged: dict[str, Any] = {}
    clashes: list[dict[str, Any]] = []
    for part in parts:
        for key, cond in part.items():
            if key == "$and":
                clashes.extend(cond)
            elif key not in merged:
                merged[key] = cond
            elif _is_operator_object(merged[key]) and _is_operator_object(cond) and not set(merged[key]) & set(cond):
                merged[key] = {**merged[key], **cond}
            else:
                clashes.append({key: cond})
    if clashes:
        merged["$and"] = clashes
    return merged


def like_to_regex(pattern: str, escape: str | None = None) -> tuple[str, bool]:
    """Translate a LIKE pattern into an anchored regex; also report whether it needs dot-all.

    A leading or trailing ``%`` drops the anchor instead of adding ``.*`` (same
    matches, and ParqueDB's regex guard rejects ``^.*x$``).

    >>> like_to_regex("%john%")
    ('john', False)
    >>> like_to_regex("a_b%c.d")
    ('^a.b.*c\\\\.d$', True)
    """
    pieces: list[str | None] = []  # regex fragments; None marks a wildcard, kept as "%" / "_"
    wildcards: list[str] = []
    chars = iter(pattern)
    for ch in chars:
        if escape is not None and ch == escape:
            literal = next(chars, None)
            if literal is None:
                raise SQLError(f"LIKE pattern {pattern!r}: ends with the escape character {escape!r}")
            pieces.append(_escape_regex(literal))
        elif ch in "%_":
            pieces.append(None)
            wildcards.append(ch)
        else:
            pieces.append(_escape_regex(ch))
    kinds = iter(wildcards)
    tokens = [p if p is not None else next(kinds) * 2 for p in pieces]  # "%%" / "__": never a fragment
    head, tail = "^", "$"
    while tokens and tokens[0] == "%%":
        tokens.pop(0)
        head = ""
    while tokens and tokens[-1] == "%%":
        tokens.pop()
        tail = ""
    if not tokens and not head:  # only "%": any string
        tail = ""
    body = "".join({"%%": ".*", "__": "."}.get(t, t) for t in tokens)
    dotall = any(t in ("%%", "__") for t in tokens)
    return head + body + tail, dotall


def _escape_regex(ch: str) -> str:
    return "\\" + ch if ch in _REGEX_META else ch


def _is_operator_object(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(str(k).startswith("$") for k in value)


def _condition(op: str, value: Any) -> Any:
    """``{op: value}``, with equality written implicitly when that is unambiguous."""
    if op == "$eq" and not isinstance(value, Mapping):
        return value
    return {op: value}


def _split_condition(cond: Any) -> tuple[str, Any]:
    if _is_operator_object(cond) and len(cond) == 1:
        ((op, value),) = cond.items()
        if op in _NEGATED:
            return op, value
    return "$eq", cond


def _unwrap(node: exp.Expr) -> exp.Expr:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _flatten(node: exp.Expr, kind: type[exp.Expr]) -> list[exp.Expr]:
    node = _unwrap(node)
    if isinstance(node, kind):
        return _flatten(node.this, kind) + _flatten(node.expression, kind)
    return [node]


def _is_field(node: exp.Expr) -> bool:
    return isinstance(node, (exp.Column, exp.Dot)) and not isinstance(node.this, exp.Star)


def _is_string_identifier(node: exp.Expr) -> bool:
    """A lone double-quoted name on the value side (``a = "x"``), which upstream reads as a string."""
    return isinstance(node, exp.Column) and not node.table and node.this.args.get("quoted", False)


def _field_of(node: exp.Expr, operand: exp.Expr) -> str:
    operand = _unwrap(operand)
    if not _is_field(operand):
        raise _unsupported(node, "needs a field on the left")
    return _field(operand)


def _field(node: exp.Expr) -> str:
    """The dotted field path of a column reference (``a.b.c`` → ``"a.b.c"``)."""
    parts = [p.name for p in node.parts] if isinstance(node, exp.Column) else _dot_parts(node)
    return ".".join(parts)


def _dot_parts(node: exp.Expr) -> list[str]:
    if isinstance(node, exp.Dot):
        return _dot_parts(node.this) + [node.expression.name]
    if isinstance(node, exp.Column):
        return [p.name for p in node.parts]
    raise _unsupported(node, "is not a field path")


def _struct_key(struct: exp.Expr, pair: exp.Expr) -> str:
    if isinstance(pair, (exp.PropertyEQ, exp.Slice)) and pair.this is not None:
        return pair.this.name
    raise _unsupported(struct, "struct values need 'key': value pairs")


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def _unsupported(node: exp.Expr, problem: str) -> SQLError:
    snippet = node.sql(dialect=READ_DIALECT)
    if len(snippet) > 60:
        snippet = snippet[:57] + "..."
    return SQLError(f"where clause: {snippet!r} {problem}")
