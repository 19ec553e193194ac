"""IPython magics: ``%parquedb`` and ``%%parquedb`` over a ParqueDB database (docs/magic.md).

Load with ``%load_ext parquedb_ibis``, then::

    %parquedb connect ./data                  # or s3://bucket/prefix, r2://bucket/prefix, :db
    %%parquedb -o errors --limit 100          # a cell of ParqueDB SQL (the default)
    SELECT scriptName, COUNT(*) AS n FROM TailEvents WHERE outcome <> :ok GROUP BY ALL
    %%parquedb find users                     # a Mongo-style filter (JSON or a Python literal)
    {"age": {"$gte": :min_age}}
    %%parquedb view ActiveUsers               # a view definition: define (or alter), refresh, show
    {"$from": "users", "$filter": {"status": "active"}}

Python variables written ``:name`` or ``{name}`` are always *bound*, never
spliced into text: in SQL they become DuckDB parameters (``$1``, ``$2``...)
after the ParqueDB dialect translation; in filter and view bodies their values
are put into the parsed structure. Line magics get no ``{var}`` / ``$var``
expansion from IPython either.

The magic is thin: configuration lives in traitlets on :class:`ParqueDBMagics`
(``%config ParqueDBMagics.display_limit = 50``), arguments are parsed with
``magic_arguments``, the work is done by the database and the functions
below, and every :class:`~parquedb_ibis.errors.ParqueDBError` (and DuckDB
error) becomes an IPython ``UsageError`` in one place, :meth:`ParqueDBMagics.parquedb`,
so a notebook shows the message without a traceback. Credentials are never
printed: store URLs are shown without them, and the values of secret options
are masked in every message the magic shows.
"""

from __future__ import annotations

import ast
import datetime as dt
import html
import io
import json
import os
import re
import shlex
import tokenize
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from sqlglot import exp
from sqlglot.optimizer.scope import traverse_scope
from traitlets import Enum, Float, Int, Unicode, observe

from parquedb_ibis.config import URL_ENV
from parquedb_ibis.dialect import TableInfo, translate
from parquedb_ibis.documents import DATA_COLUMN
from parquedb_ibis.errors import (
    ConfigurationError,
    FilterError,
    ParqueDBError,
    QueryError,
    ViewDefinitionError,
    ViewNotFoundError,
)
from parquedb_ibis.views.database import STALE_READS, Database

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

__all__ = [
    "COMMANDS",
    "FORMATS",
    "CompiledSQL",
    "Explanation",
    "ParqueDBMagics",
    "QueryResult",
    "bind_sql",
    "compile_sql",
    "documents_to_arrow",
    "explain_sql",
    "load_ipython_extension",
    "parse_body",
    "run_sql",
    "table_infos",
    "unload_ipython_extension",
]

#: Result formats of ``--format`` (and ``ParqueDBMagics.default_format``).
FORMATS: tuple[str, ...] = ("pandas", "polars", "arrow", "ibis")

#: The statement words a ``%parquedb`` line or ``%%parquedb`` cell line may start with.
COMMANDS: tuple[str, ...] = ("connect", "tables", "find", "view", "sql")

#: Connect options whose values are credentials: masked in every message the magic shows.
SECRET_OPTIONS: tuple[str, ...] = ("access_key_id", "secret_access_key", "session_token")

#: Options that take a value, and flags, as they may lead a line magic (``%parquedb --limit 5 SELECT ...``).
_VALUE_OPTIONS = frozenset({"-o", "--out", "--limit", "--format"})
_FLAG_OPTIONS = frozenset({"--explain", "--full", "-h", "--help"})

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BRACED = re.compile(r"\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}")
_DOLLAR_QUOTE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")

#: Bare names a JSON body may contain, and their Python values.
_JSON_NAMES: dict[str, Any] = {"true": True, "false": False, "null": None}
_LITERAL_NAMES = frozenset({"True", "False", "None", *_JSON_NAMES})


# -- variables -------------------------------------------------------------------------------------


def lookup_variable(name: str, namespace: Mapping[str, Any]) -> Any:
    """The value of ``name`` in the user namespace; a UsageError names it when it is not defined."""
    if name not in namespace:
        raise UsageError(f"variable {name!r} is not defined (referenced as :{name} or {{{name}}})")
    return namespace[name]


def sql_references(text: str) -> Iterator[tuple[int, int, str]]:
    """``(start, end, name)`` of each ``:name`` and ``{name}`` in SQL text, outside strings and comments.

    ``::`` casts, quoted identifiers, ``'...'`` and ``$$...$$`` strings and
    ``--`` / ``/* */`` comments are skipped, so a variable reference is only
    ever recognized where a value can stand.

    >>> [name for _, _, name in sql_references("SELECT a::INT FROM t WHERE b = :x AND c = '{y}' -- :z")]
    ['x']
    """
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "'\"":
            i = _end_of_quoted(text, i, c)
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif c == "$" and (m := _DOLLAR_QUOTE.match(text, i)) and (i == 0 or not _is_word(text[i - 1])):
            end = text.find(m.group(), m.end())
            i = n if end < 0 else end + len(m.group())
        elif c == ":" and (i == 0 or text[i - 1] != ":") and (m := _NAME.match(text, i + 1)):
            yield i, m.end(), m.group()
            i = m.end()
        elif c == "{" and (m := _BRACED.match(text, i)):
            yield i, m.end(), m.group(1)
            i = m.end()
        else:
            i += 1


def _end_of_quoted(text: str, start: int, quote: str) -> int:
    """The index after the quoted string or identifier opening at ``start`` (doubled quotes escape)."""
    i = start + 1
    while True:
        end = text.find(quote, i)
        if end < 0:
            return len(text)
        if text.startswith(quote * 2, end):
            i = end + 2
            continue
        return end + 1


def _is_word(c: str) -> bool:
    return c.isalnum() or c == "_"


def bind_sql(text: str, namespace: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """Replace each ``:name`` / ``{name}`` with a positional parameter; return the SQL and the values.

    The same variable used twice is one parameter. Values never become SQL text.

    >>> bind_sql("SELECT * FROM t WHERE a = :x OR b = {x} OR c = :y", {"x": 1, "y": "it's"})
    ('SELECT * FROM t WHERE a = $1 OR b = $1 OR c = $2', [1, "it's"])
    """
    out: list[str] = []
    params: list[Any] = []
    numbers: dict[str, int] = {}
    last = 0
    for start, end, name in sql_references(text):
        if name not in numbers:
            params.append(lookup_variable(name, namespace))
            numbers[name] = len(params)
        out.append(text[last:start])
        out.append(f"${numbers[name]}")
        last = end
    out.append(text[last:])
    return "".join(out), params


def parse_body(text: str, namespace: Mapping[str, Any], *, where: str = "cell body") -> Any:
    """Parse a filter or view-definition body: JSON or a Python literal, with variables bound.

    ``:name`` (where a value stands: after ``:``, ``,``, ``[``, ``(`` or at the
    start) and ``{name}`` are variables; their values replace them in the
    parsed structure (never in the text). ``true``/``false``/``null`` are read
    as in JSON. Nothing is evaluated: the text must be a literal (``ast.literal_eval``).
    An empty body is ``{}``. Raises ``UsageError`` with a hint when the text is
    neither JSON nor a Python literal.

    >>> parse_body('{"age": {"$gte": :n}, "tags": [:t, "x"]}', {"n": 18, "t": "a"})
    {'age': {'$gte': 18}, 'tags': ['a', 'x']}
    """
    if not text.strip():
        return {}
    tokens = _tokens(text, where)
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))

    def offset(pos: tuple[int, int]) -> int:
        return offsets[pos[0] - 1] + pos[1]

    significant = [t for t in tokens if t.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT,
                                                        tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER)]
    replacements: list[tuple[int, int, str]] = []
    variables: dict[str, Any] = {}
    i = 0
    while i < len(significant):
        tok = significant[i]
        prev = significant[i - 1] if i else None
        nxt = significant[i + 1] if i + 1 < len(significant) else None
        after = significant[i + 2] if i + 2 < len(significant) else None
        if (tok.string == ":" and nxt is not None and nxt.type == tokenize.NAME and nxt.start == tok.end
                and (prev is None or prev.string in (":", ",", "[", "("))):
            name = nxt.string
            replacements.append((offset(tok.start), offset(nxt.end), _placeholder(name, namespace, variables)))
            i += 2
            continue
        if (tok.string == "{" and nxt is not None and nxt.type == tokenize.NAME and nxt.string not in _LITERAL_NAMES
                and after is not None and after.string == "}"):
            name = nxt.string
            replacements.append((offset(tok.start), offset(after.end), _placeholder(name, namespace, variables)))
            i += 3
            continue
        if tok.type == tokenize.NAME and tok.string in _JSON_NAMES:
            replacements.append((offset(tok.start), offset(tok.end), repr(_JSON_NAMES[tok.string])))
        elif tok.type == tokenize.NAME and tok.string not in _LITERAL_NAMES:
            raise UsageError(f"{where}: bare name {tok.string!r} at line {tok.start[0]}; "
                              f"write :{tok.string} to use the Python variable, or quote it")
        i += 1
    if not replacements:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass
    source = text
    for start, end, new in sorted(replacements, reverse=True):
        source = source[:start] + new + source[end:]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escapes in JSON strings ("\/") warn in Python
            parsed = ast.literal_eval(source.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as err:
        raise UsageError(f"{where}: not JSON or a Python literal ({_reason(err)}); "
                          "write a JSON object like {\"field\": {\"$gte\": :variable}}") from None
    return _substitute(parsed, variables)


def _tokens(text: str, where: str) -> list[tokenize.TokenInfo]:
    try:
        return list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError) as err:
        raise UsageError(f"{where}: not JSON or a Python literal ({_reason(err)})") from None


def _reason(err: BaseException) -> str:
    if isinstance(err, SyntaxError) and err.msg:
        return f"{err.msg} at line {err.lineno}" if err.lineno else err.msg
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def _placeholder(name: str, namespace: Mapping[str, Any], variables: dict[str, Any]) -> str:
    variables[name] = lookup_variable(name, namespace)
    return repr(f"\x00var:{name}\x00")


def _substitute(value: Any, variables: Mapping[str, Any]) -> Any:
    """Put variable values where their placeholders are (keys too); tuples become lists."""
    if isinstance(value, str):
        if value.startswith("\x00var:") and value.endswith("\x00"):
            return variables[value[5:-1]]
        return value
    if isinstance(value, dict):
        return {_substitute(k, variables): _substitute(v, variables) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_substitute(v, variables) for v in value]
    return value


def parse_option_value(text: str, namespace: Mapping[str, Any]) -> Any:
    """A ``key=value`` connect option's value: ``:name``/``{name}`` is a variable; numbers, true/false/none; else text."""
    m = _NAME.fullmatch(text[1:]) if text.startswith(":") else None
    braced = _BRACED.fullmatch(text)
    if m or braced:
        return lookup_variable(m.group() if m else braced.group(1), namespace)
    lowered = text.lower()
    if lowered in ("true", "false", "none"):
        return {"true": True, "false": False, "none": None}[lowered]
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+)", text):
        return float(text)
    return text


# -- running queries -----------------------------------------------------------------------------


def table_infos(db: Database) -> dict[str, TableInfo]:
    """The layout of every collection and view, as the ParqueDB SQL dialect resolves names against it."""
    infos = {name: TableInfo.from_schema(db.collection_schema(name)) for name in db.list_collections()}
    for name, definition in db.definitions().items():
        plan = db.plan(name, definition)
        infos[name] = TableInfo({c: plan.output_types[c] for c in plan.outputs}, has_data=DATA_COLUMN in plan.outputs)
    return infos


def inline_tables(tree: exp.Expr, relation: Callable[[str], exp.Expr], names: Iterable[str]) -> exp.Expr:
    """Replace each reference to a stored table (not a CTE) by a subquery over its current files."""
    known = set(names)
    found: dict[int, exp.Table] = {}
    for scope in traverse_scope(tree):
        for source in scope.sources.values():
            if isinstance(source, exp.Table) and not source.db and not source.catalog and source.name in known:
                found[id(source)] = source
    for table in found.values():
        alias = exp.TableAlias(this=exp.to_identifier(table.alias_or_name, quoted=True))
        table.replace(exp.Subquery(this=relation(table.name), alias=alias))
    return tree


@dataclass(frozen=True)
class CompiledSQL:
    """A ParqueDB query as DuckDB runs it (``runnable``, with its parameters); ``translated`` is the readable
    DuckDB SQL before the tables are pointed at their files (only made for ``--explain``)."""

    source: str
    runnable: exp.Expr
    params: list[Any]
    translated: str | None = None


def compile_sql(db: Database, text: str, params: list[Any], *, limit: int | None = None,
                readable: bool = False) -> CompiledSQL:
    """Translate a (bound) ParqueDB query and point its tables at the current files of ``db``."""
    infos = table_infos(db)
    tree = translate(text, infos, params)
    if limit is not None:
        tree = exp.select("*").from_(tree.subquery("$query"), copy=False).limit(limit, copy=False)
    translated = tree.sql("duckdb", pretty=True) if readable else None
    runnable = inline_tables(tree, db.relation, infos)
    return CompiledSQL(text, runnable, params, translated)


def run_sql(db: Database, text: str, params: list[Any] | None = None, *, limit: int | None = None) -> pa.Table:
    """Run a ParqueDB SQL query (``$1``... bound to ``params``) over ``db``; an Arrow table."""
    compiled = compile_sql(db, text, list(params or []), limit=limit)
    return db.query_arrow(compiled.runnable, compiled.params)


def explain_sql(db: Database, text: str, params: list[Any] | None = None, *, limit: int | None = None) -> Explanation:
    """The DuckDB SQL a ParqueDB query becomes and DuckDB's physical plan for it."""
    compiled = compile_sql(db, text, list(params or []), limit=limit, readable=True)
    rows = db.query_rows("EXPLAIN " + compiled.runnable.sql("duckdb"), compiled.params)
    plan = "\n".join(str(row.get("explain_value", "")) for row in rows)
    return Explanation(source=text, sql=compiled.translated or "", plan=plan, params=compiled.params)


# -- results -------------------------------------------------------------------------------------


def documents_to_arrow(docs: list[Mapping[str, Any]]) -> pa.Table:
    """Documents as an Arrow table: one column per field (first-seen order); a field whose values
    do not share one Arrow type (mixed, or nested with varying shapes) becomes JSON text."""
    names: dict[str, None] = {}
    for doc in docs:
        names.update(dict.fromkeys(doc))
    arrays = {}
    for name in names:
        values = [doc.get(name) for doc in docs]
        try:
            arrays[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError, TypeError):
            arrays[name] = pa.array([None if v is None else json.dumps(v, ensure_ascii=False, default=str)
                                     for v in values], pa.string())
    return pa.table(arrays)


def convert(table: pa.Table, fmt: str) -> Any:
    """An Arrow table in the requested format (``pandas``, ``polars`` or ``arrow``)."""
    if fmt == "pandas":
        return table.to_pandas()
    if fmt == "polars":
        import polars as pl

        return pl.from_arrow(table)
    return table


def _cell_text(value: Any, width: int = 80) -> str:
    if value is None:
        return "null"
    if isinstance(value, dt.datetime):
        text = value.isoformat(sep=" ")
    elif isinstance(value, (dict, list, tuple)):
        text = json.dumps(value, ensure_ascii=False, default=str)
    elif isinstance(value, float):
        text = repr(value)
    else:
        text = str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


class QueryResult:
    """What a ``%%parquedb`` cell returns: the data (``.data``, in the requested format) and a readable table.

    The table shows the first ``display_limit`` rows and the row count.
    ``len(result)`` is the number of rows; ``result.data`` is a pandas or
    polars DataFrame, a pyarrow Table or an ibis table expression.
    """

    def __init__(self, data: Any, columns: list[str], preview: list[Mapping[str, Any]], rows: int, *,
                 fmt: str, display_limit: int, caption: str = "") -> None:
        self.data = data
        self.columns = columns
        self.preview = preview[:display_limit]
        self.rows = rows
        self.format = fmt
        self.display_limit = display_limit
        self.caption = caption

    @classmethod
    def from_arrow(cls, table: pa.Table, *, fmt: str, display_limit: int, caption: str = "") -> QueryResult:
        return cls(convert(table, fmt), table.column_names, table.slice(0, display_limit).to_pylist(), table.num_rows,
                   fmt=fmt, display_limit=display_limit, caption=caption)

    def __len__(self) -> int:
        return self.rows

    @property
    def footer(self) -> str:
        shown = len(self.preview)
        noun = "row" if self.rows == 1 else "rows"
        text = f"{self.rows:,} {noun} × {len(self.columns)} columns"
        if shown < self.rows:
            text += f" (showing the first {shown})"
        return text

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_cell_text(row.get(c)))}</td>" for c in self.columns) + "</tr>"
            for row in self.preview
        )
        caption = f"<p class='pqdb-caption'>{html.escape(self.caption)}</p>" if self.caption else ""
        return (f"<div class='pqdb-result'>{caption}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
                f"</table><p class='pqdb-footer'>{html.escape(self.footer)}</p></div>")

    def __repr__(self) -> str:
        cells = [[_cell_text(row.get(c), 40) for c in self.columns] for row in self.preview]
        widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(self.columns)]
        lines = [self.caption] if self.caption else []
        if self.columns:
            lines.append("  ".join(c.ljust(w) for c, w in zip(self.columns, widths, strict=True)).rstrip())
            lines.append("  ".join("-" * w for w in widths))
            lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
        lines.append(self.footer)
        return "\n".join(lines)


@dataclass(frozen=True)
class Explanation:
    """What ``--explain`` shows: the query as written, the DuckDB SQL it becomes, and DuckDB's plan."""

    source: str
    sql: str
    plan: str
    params: list[Any]

    def __str__(self) -> str:
        bound = f"\n-- parameters: {', '.join(f'${i}={v!r}' for i, v in enumerate(self.params, 1))}" if self.params else ""
        return f"-- DuckDB SQL\n{self.sql}{bound}\n\n-- DuckDB plan\n{self.plan}"

    __repr__ = __str__

    def _repr_html_(self) -> str:
        bound = ""
        if self.params:
            bound = "<p>parameters: " + html.escape(", ".join(f"${i} = {v!r}" for i, v in enumerate(self.params, 1))) + "</p>"
        return (f"<div class='pqdb-explain'><p>DuckDB SQL</p><pre>{html.escape(self.sql)}</pre>{bound}"
                f"<p>DuckDB plan</p><pre>{html.escape(self.plan)}</pre></div>")


# -- the magics ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    """A parsed ``%parquedb`` line or ``%%parquedb`` cell: the command, its target and its body."""

    command: str  # one of COMMANDS, or "status"
    target: str = ""
    body: str = ""


def split_leading_options(line: str) -> tuple[str, str]:
    """Split a line magic into its leading options and the statement (kept verbatim).

    >>> split_leading_options("-o df --limit=5 --explain SELECT 1 -- not an option")
    ('-o df --limit=5 --explain', 'SELECT 1 -- not an option')
    """
    expect_value = False
    for m in re.finditer(r"\S+", line):
        token = m.group()
        if expect_value:
            expect_value = False
            continue
        name = token.split("=", 1)[0]
        if name in _VALUE_OPTIONS:
            expect_value = "=" not in token
        elif name not in _FLAG_OPTIONS:
            return line[: m.start()].strip(), line[m.start():].strip()
    return line.strip(), ""


def parse_statement(text: str, body: str | None) -> Statement:
    """The statement of a line (``body is None``: everything after the command word is the body) or a cell."""
    words = text.split(None, 2)
    head = words[0].lower() if words else ""
    if head in ("find", "view"):
        if len(words) < 2:
            raise UsageError(f"{head} needs a name: %%parquedb {head} <{'collection' if head == 'find' else 'ViewName'}>")
        rest = words[2] if len(words) > 2 else ""
        if body is not None and rest.strip():
            raise UsageError(f"unexpected {rest.strip()!r} after '{head} {words[1]}'; the {head} body goes in the cell")
        return Statement(head, words[1], rest if body is None else body)
    if head in ("connect", "tables"):
        if body is not None and body.strip():
            raise UsageError(f"{head} takes no cell body; use the line magic: %parquedb {head} ...")
        return Statement(head, text.split(None, 1)[1] if len(words) > 1 else "")
    if head == "sql":
        return Statement("sql", "", text.split(None, 1)[1] if body is None and len(words) > 1 else (body or ""))
    if body is None:
        return Statement("sql", "", text) if text.strip() else Statement("status")
    if text.strip():
        raise UsageError(f"unknown command {words[0]!r}; a %%parquedb cell line is [options] and one of "
                         "'find <collection>', 'view <Name>', 'sql' or nothing (SQL in the cell)")
    return Statement("sql", "", body)


@magics_class
class ParqueDBMagics(Magics):
    """Query ParqueDB collections and views from IPython and Jupyter (see docs/magic.md)."""

    url = Unicode("", config=True,
                  help="Store URL the magic connects to when no '%parquedb connect' was run (else $PARQUEDB_URL).")
    display_limit = Int(20, config=True, help="Rows shown in a result's table (the result keeps every row fetched).")
    default_format = Enum(FORMATS, default_value="pandas", config=True,
                          help="Format of results when no --format is given: pandas, polars, arrow or ibis.")
    stale_reads = Enum(STALE_READS, default_value="refresh", config=True,
                       help="What reading a view that is behind its sources does: 'refresh' it first, 'warn', or "
                            "'ignore' (the database's stale_reads).")
    progress_after = Float(2.0, config=True,
                           help="Seconds after which a running query shows DuckDB's progress bar (0 turns it off).")

    def __init__(self, shell: InteractiveShell | None = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.db: Database | None = None
        self._owns_db = False
        self._secrets: set[str] = set()
        self._ibis: Any = None

    def __repr__(self) -> str:
        return f"ParqueDBMagics({self.db.config.url if self.db is not None else None!r})"

    # -- configuration -----------------------------------------------------------------------

    @observe("stale_reads", "progress_after")
    def _settings_changed(self, change: Any) -> None:
        if self.db is not None:
            self._apply_settings(self.db)

    def _apply_settings(self, db: Database) -> None:
        db.stale_reads = self.stale_reads
        ms = int(self.progress_after * 1000)
        with db.session() as con:
            con.execute("SET enable_progress_bar = $1", [ms > 0])
            if ms > 0:
                con.execute("SET progress_bar_time = $1", [ms])

    # -- connecting ------------------------------------------------------------------------------

    def connect(self, target: Any = None, **options: Any) -> Database:
        """Use ``target`` (a URL, a path, or an open Database) from now on; returns the database."""
        from parquedb_ibis import connect

        for key in SECRET_OPTIONS:
            if isinstance(options.get(key), str):
                self._secrets.add(options[key])
        if isinstance(target, Database):
            if options:
                raise ConfigurationError(f"{target.config.url}: options {sorted(options)} apply when opening a "
                                         "database, not to one that is already open")
            db, owns = target, False
        else:
            db, owns = connect(os.fspath(target) if target is not None else None, **options), True
        self.close()
        self.db, self._owns_db, self._ibis = db, owns, None
        for secret in (db.config.access_key_id, db.config.secret_access_key, db.config.session_token):
            if secret is not None:
                self._secrets.add(secret.reveal())
        self._apply_settings(db)
        return db

    def close(self) -> None:
        """Forget the current database (closing it when the magic opened it)."""
        if self._ibis is not None:
            self._ibis = None
        if self.db is not None and self._owns_db:
            self.db.close()
        self.db = None

    def database(self) -> Database:
        """The connected database, connecting to ``url`` or ``$PARQUEDB_URL`` on first use."""
        if self.db is None:
            target = self.url or os.environ.get(URL_ENV)
            if not target:
                raise ConfigurationError(
                    "%parquedb: not connected; run '%parquedb connect <url>', set "
                    "'%config ParqueDBMagics.url = \"<url>\"' or the PARQUEDB_URL environment variable")
            self.connect(target)
        assert self.db is not None
        return self.db

    def ibis(self) -> Any:
        """The ibis backend over the connected database (created on first use)."""
        if self._ibis is None:
            from parquedb_ibis.backend import Backend

            self._ibis = Backend().connect(self.database())
        return self._ibis

    def redact(self, text: str) -> str:
        """``text`` with every credential the magic has seen replaced by ``***``."""
        for secret in sorted(self._secrets, key=len, reverse=True):
            if len(secret) >= 4:
                text = text.replace(secret, "***")
        return text

    # -- the magic -------------------------------------------------------------------------------

    @no_var_expand
    @magic_arguments()
    @argument("statement", nargs="*",
              help="connect <url|:db> [key=value ...] | tables | find <collection> | view <ViewName> | sql; "
                   "a cell with no command runs the SQL in its body; a line with no command is a SQL query.")
    @argument("-o", "--out", metavar="NAME", help="Also store the result's data in the Python variable NAME.")
    @argument("--limit", type=int, metavar="N", help="Fetch at most N rows.")
    @argument("--explain", action="store_true",
              help="Show the DuckDB SQL the statement becomes and DuckDB's plan instead of running it.")
    @argument("--format", choices=FORMATS, default=None,
              help="Result format: pandas, polars, arrow or ibis (default: ParqueDBMagics.default_format).")
    @argument("--full", action="store_true", help="view: rebuild the view from scratch instead of incrementally.")
    @line_cell_magic
    def parquedb(self, line: str, cell: str | None = None) -> Any:
        """Query ParqueDB collections and views: SQL (default), find <collection>, view <Name>, connect, tables.

        Python variables written :name or {name} are bound as parameters, never spliced.
        """
        try:
            return self._run(line, cell)
        except (ParqueDBError, duckdb.Error) as err:
            kind = type(err).__name__ if isinstance(err, ParqueDBError) else QueryError.__name__
            raise UsageError(self.redact(f"{kind}: {err}")) from err

    def _run(self, line: str, cell: str | None) -> Any:
        if cell is None:
            options, text = split_leading_options(line)
            args = parse_argstring(self.parquedb, options)
            statement = parse_statement(text, None)
        else:
            args = parse_argstring(self.parquedb, line)
            statement = parse_statement(" ".join(args.statement), cell)
        if args.limit is not None and args.limit < 0:
            raise UsageError(f"--limit must be zero or more, found {args.limit}")
        handler = {
            "status": self._status, "connect": self._connect, "tables": self._tables,
            "sql": self._sql, "find": self._find, "view": self._view,
        }[statement.command]
        result = handler(statement, args)
        if args.out and isinstance(result, QueryResult):
            if not args.out.isidentifier():
                raise UsageError(f"-o needs a Python variable name, found {args.out!r}")
            self.shell.user_ns[args.out] = result.data
        return result

    @property
    def _namespace(self) -> Mapping[str, Any]:
        return self.shell.user_ns if self.shell is not None else {}

    def _format(self, args: Any) -> str:
        return args.format or self.default_format

    def _status(self, statement: Statement, args: Any) -> None:
        if self.db is None:
            print("parquedb: not connected; run %parquedb connect <url>")
        else:
            print(f"parquedb: connected to {self.db.config.url}")

    def _connect(self, statement: Statement, args: Any) -> None:
        try:
            words = shlex.split(statement.target)
        except ValueError as err:
            raise UsageError(f"connect: {err}") from None
        target: Any = None
        options: dict[str, Any] = {}
        for word in words:
            key, sep, value = word.partition("=")
            if sep and key.isidentifier():
                options[key] = parse_option_value(value, self._namespace)
            elif target is None:
                target = parse_option_value(word, self._namespace) if word.startswith((":", "{")) else word
            else:
                raise UsageError(f"connect: unexpected {word!r}; write options as key=value")
        db = self.connect(target if target is not None else (self.url or None), **options)
        names = db.list_collections()
        views = db.list_views()
        print(f"Connected to {db.config.url}: {len(names)} collection{'s' * (len(names) != 1)}, "
              f"{len(views)} view{'s' * (len(views) != 1)}")

    def _tables(self, statement: Statement, args: Any) -> QueryResult:
        db = self.database()
        names = [(n, "collection") for n in db.list_collections()] + [(n, "view") for n in db.list_views()]
        table = pa.table({"name": [n for n, _ in names], "kind": [k for _, k in names]})
        return QueryResult.from_arrow(table, fmt="arrow" if self._format(args) == "ibis" else self._format(args),
                                      display_limit=max(self.display_limit, len(names)))

    def _sql(self, statement: Statement, args: Any) -> QueryResult | Explanation:
        db = self.database()
        if not statement.body.strip():
            raise UsageError("the cell has no SQL; write a query, or 'find <collection>' / 'view <Name>' on the magic line")
        text, params = bind_sql(statement.body, self._namespace)
        if args.explain:
            return explain_sql(db, text, params, limit=args.limit)
        fmt = self._format(args)
        if fmt == "ibis":
            return self._ibis_result(self._ibis_sql(text, params), args.limit)
        return QueryResult.from_arrow(run_sql(db, text, params, limit=args.limit), fmt=fmt,
                                      display_limit=self.display_limit)

    def _ibis_sql(self, text: str, params: list[Any]) -> Any:
        if not params:
            return self.ibis().sql(text)
        import ibis  # bound values cannot go into a lazy ibis SQL expression: run once, hand back a memtable

        return ibis.memtable(run_sql(self.database(), text, params))

    def _ibis_result(self, expr: Any, limit: int | None, caption: str = "") -> QueryResult:
        if limit is not None:
            expr = expr.limit(limit)
        preview = expr.limit(self.display_limit).to_pyarrow()
        rows = int(expr.count().to_pyarrow().as_py())
        return QueryResult(expr, preview.column_names, preview.to_pylist(), rows, fmt="ibis",
                           display_limit=self.display_limit, caption=caption)

    def _find(self, statement: Statement, args: Any) -> QueryResult | Explanation:
        from parquedb_ibis import query

        db = self.database()
        name = statement.target
        filter = parse_body(statement.body, self._namespace, where=f"find {name}")
        if not isinstance(filter, Mapping):
            raise FilterError("$", f"expected a filter object, found {type(filter).__name__}")
        is_view = name in db.definitions()
        if not is_view and not db.has_collection(name):
            raise ViewNotFoundError(name, [*db.list_collections(), *db.list_views()], kind="collection or view")
        if args.explain:
            if is_view:
                view = db.view(name)
                with db.session() as con:
                    found = query.explain(con, view.relation(), view.plan.layout, filter, limit=args.limit,
                                          system_columns=False)
            else:
                found = db.collection(name).explain(filter, limit=args.limit)
            return Explanation(source=statement.body, sql=found.sql, plan=found.plan, params=[])
        fmt = self._format(args)
        if fmt == "ibis":
            from parquedb_ibis.ibis_filters import mongo

            table = self.ibis().table(name)
            return self._ibis_result(table.filter(mongo(filter, table)) if filter else table, args.limit)
        source = db.view(name) if is_view else db.collection(name)
        docs = source.find(filter, limit=args.limit)
        return QueryResult.from_arrow(documents_to_arrow(docs), fmt=fmt, display_limit=self.display_limit)

    def _view(self, statement: Statement, args: Any) -> QueryResult:
        db = self.database()
        name = statement.target
        action = "refreshed"
        if statement.body.strip():
            spec = parse_body(statement.body, self._namespace, where=f"view {name}")
            if not isinstance(spec, Mapping):
                raise ViewDefinitionError(name, "", f"the cell body must be a view definition object, found "
                                          f"{type(spec).__name__}")
            if name in db.list_views():
                planned = db.plan(name, spec, overrides={name: spec}).definition
                if planned != db.definitions().get(name):
                    db.alter_view(name, spec)
                    action = "altered"
            else:
                db.define_view(name, spec)
                action = "defined"
        else:
            db.view(name)
        refreshed = db.refresh_view(name, full=args.full)
        state = db.view_state(name)
        caption = (f"view {name}: {action}; refresh {refreshed.mode}; {state.state}, "
                   f"{state.document_count:,} rows ({state.refresh_mode})")
        limit = args.limit if args.limit is not None else self.display_limit
        fmt = self._format(args)
        if fmt == "ibis":
            return self._ibis_result(self.ibis().table(name), limit, caption)
        relation = (exp.select("*").from_(db.view(name).relation().subquery("$view"), copy=False)
                    .order_by(exp.Ordered(this=exp.var("ALL")), copy=False).limit(limit, copy=False))  # a stable order
        table = db.query_arrow(relation)
        return QueryResult.from_arrow(table, fmt=fmt, display_limit=self.display_limit, caption=caption)


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """``%load_ext parquedb_ibis``: register ``%parquedb`` / ``%%parquedb``."""
    ipython.register_magics(ParqueDBMagics(ipython))


def unload_ipython_extension(ipython: InteractiveShell) -> None:
    """``%unload_ext`` / ``%reload_ext parquedb_ibis``: close the database the magic opened."""
    magics = ipython.magics_manager.registry.get(ParqueDBMagics.__name__)
    if isinstance(magics, ParqueDBMagics):
        magics.close()
