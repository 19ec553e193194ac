"""The ``parquedb`` ibis backend: ParqueDB collections and materialized views as ibis tables.

The backend *is* ibis' DuckDB backend (a subclass) over an in-memory DuckDB
session, plus one ParqueDB :class:`~parquedb_ibis.views.Database`:

* each collection (and each view) is a DuckDB view over the Parquet files of
  its current head, built from ``db.relation(name)`` with sqlglot. Before
  every execution the views an expression reads are re-pointed at the newest
  head (a head read per table; DuckDB re-plans only when the files changed),
  so a table always shows the latest committed state when it is fetched;
* typed columns keep their types; variant columns (``$data`` and declared
  ``variant`` fields) are ibis ``JSON``, so ``t["$data"]["event"]`` works,
  and :func:`~parquedb_ibis.ibis_filters.field` reads typed values out of them;
* ``con.table(name, as_of=datetime)`` is the collection at that time;
* ``con.sql(query)`` accepts the ParqueDB SQL dialect (:mod:`parquedb_ibis.dialect`);
* the :mod:`~parquedb_ibis.ibis_filters` nodes (Mongo filters, variant paths)
  compile here.

Connect with ``ibis.parquedb.connect(url, **options)`` (the options of
:func:`parquedb_ibis.connect`), ``ibis.connect("parquedb:///path")`` or
``ibis.connect("parquedb+s3://bucket/prefix?endpoint=...")``. See docs/ibis.md.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ibis.expr.datatypes as idt
import ibis.expr.operations as ops
import ibis.expr.schema as sch
import ibis.expr.types as ir
import sqlglot
from ibis.backends.duckdb import Backend as DuckDBBackend
from ibis.backends.sql.compilers.duckdb import DuckDBCompiler
from sqlglot import exp

from parquedb_ibis.compile import sql
from parquedb_ibis.dialect import DIALECT, ParqueDB, TableInfo, translate
from parquedb_ibis.documents import DATA_COLUMN, DATE_TAG, DATEONLY_TAG, DECIMAL_TAG, NUMBER_TAG, format_datetime
from parquedb_ibis.errors import ConfigurationError, UnknownTableError, ValidationError, ViewNotFoundError
from parquedb_ibis.ibis_filters import FieldSpec, MongoCondition, VariantValue, unpack
from parquedb_ibis.store.session import prepare
from parquedb_ibis.views.database import Database

if TYPE_CHECKING:
    from urllib.parse import ParseResult

__all__ = ["Backend", "ParqueDBCompiler"]

#: How long the list of collections is reused when resolving table names in ``con.sql`` (like the view catalog's).
LISTING_TTL = 2.0

#: Names ibis gives its own temporary tables (memtables, caches): ``ibis_<namespace>_<26 base32 chars>``.
_IBIS_TEMP_NAME = re.compile(r"^ibis_[a-z_]+_[a-z2-7]{26}$")

#: URL schemes ``ibis.connect`` hands to this backend, and the store URL scheme each stands for.
URL_SCHEMES: dict[str, str] = {"parquedb": "file", "parquedb+file": "file", "parquedb+s3": "s3", "parquedb+r2": "r2"}

#: Query-string values that read as these Python values (``?flush_age=none``, ``?wal_sync=true``).
_URL_WORDS: dict[str, Any] = {"true": True, "false": False, "none": None}


class ParqueDBCompiler(DuckDBCompiler):
    """DuckDB's ibis compiler plus the nodes of :mod:`parquedb_ibis.ibis_filters`."""

    __slots__ = ()

    def visit_SQLQueryResult(self, op: ops.SQLQueryResult, *, query: str, schema: Any, source: Any) -> exp.Expr:
        return _parsed(query).copy().subquery(copy=False)

    def visit_MongoCondition(self, op: MongoCondition, *, columns: tuple[exp.Expr, ...], names: tuple[str, ...],
                             condition: str) -> exp.Expr:
        compiled = dict(zip(names, columns, strict=False))
        tree = _parsed(condition).copy()
        for column in list(tree.find_all(exp.Column)):
            ident = column.this
            if column.table or not isinstance(ident, exp.Identifier) or not ident.quoted:
                continue  # lambda variables (_e1) are unquoted; every stored column is quoted
            if ident.name in compiled:
                column.replace(compiled[ident.name].copy())
        return exp.Paren(this=tree)

    def visit_VariantValue(self, op: VariantValue, *, arg: exp.Expr, path: tuple[str, ...],
                           to: idt.DataType) -> exp.Expr:
        pointer = sql.json_pointer(path)
        if to.is_json():
            return sql.json_value(arg.copy(), pointer)
        text = sql.json_text(arg.copy(), pointer)
        if to.is_string():
            return text
        tag = _TAGS.get(type(to))
        if tag is not None:
            tagged = sql.json_text(arg.copy(), sql.json_pointer((*path, tag)))
            text = exp.Coalesce(this=tagged, expressions=[text])
        if to.is_nested():
            text = sql.json_value(arg.copy(), pointer)
        return exp.TryCast(this=text, to=self.type_mapper.from_ibis(to))


@functools.lru_cache(maxsize=512)
def _parsed(text: str) -> exp.Expr:
    """DuckDB SQL parsed once per text (callers copy the tree before changing it)."""
    return sqlglot.parse_one(text, read="duckdb")


#: The variant tag a typed read of a tagged value looks in first.
_TAGS: dict[type[idt.DataType], str] = {
    idt.Timestamp: DATE_TAG,
    idt.Date: DATEONLY_TAG,
    idt.Decimal: DECIMAL_TAG,
    idt.Float64: NUMBER_TAG,
    idt.Float32: NUMBER_TAG,
}


@dataclass
class _Table:
    """One DuckDB view this backend keeps pointed at a collection's (or view's) current files."""

    kind: str  # "collection" | "view"
    source: str  # the collection or view name
    as_of: dt.datetime | None = None
    include_deleted: bool = False
    definition: str | None = None  # the CREATE VIEW last run
    key: tuple[int, str] | None = None  # (version, commit) of the head it was built from
    schema: sch.Schema | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def duck_name(self) -> str:
        name = self.source
        if self.as_of is not None:
            name += f"@{format_datetime(self.as_of)}"
        if self.include_deleted:
            name += "+deleted"
        return name


@dataclass
class _Translated:
    """A ParqueDB query translated against ``infos``: DuckDB SQL, the stored tables it reads, its schema."""

    infos: dict[str, TableInfo]
    sql: str
    sources: tuple[tuple[str, str], ...]  # (kind, name)
    schema: sch.Schema | None = None


class Backend(DuckDBBackend):
    """ibis over a ParqueDB store: collections and materialized views are tables."""

    name = "parquedb"
    compiler = ParqueDBCompiler()

    db: Database

    # -- connecting --------------------------------------------------------------------------

    def do_connect(self, url: Any = None, /, **options: Any) -> None:
        """Open the database at ``url`` (see :func:`parquedb_ibis.connect` for URLs and options).

        ``url`` may also be an open :class:`~parquedb_ibis.views.Database`, which
        is shared (and not closed by :meth:`disconnect`).
        """
        if isinstance(url, Database):
            if options:
                raise ConfigurationError(f"{url.config.url}: options {sorted(options)} apply when opening a "
                                         "database, not to one that is already open")
            db, self._owns_db = url, False
        else:
            from parquedb_ibis import connect

            db, self._owns_db = connect(url, **options), True
        super().do_connect(":memory:", autoinstall_known_extensions=False)
        prepare(self.con, db.config)
        self.db = db
        self._tables: dict[str, _Table] = {}
        self._sql_tables: dict[str, frozenset[str]] = {}
        self._listing: tuple[float, list[str]] | None = None
        self._translations: dict[str, _Translated] = {}

    def _from_url(self, url: ParseResult, **kwargs: Any) -> Backend:
        """``parquedb:///abs/path``, ``parquedb://rel/path``, ``parquedb+s3://bucket/prefix``, ``parquedb+r2://...``.

        Query parameters are connect options (``?endpoint=http://...&flush_age=none``).
        """
        scheme = URL_SCHEMES.get(url.scheme)
        if scheme is None:
            known = ", ".join(f"{s}://" for s in URL_SCHEMES)
            raise ConfigurationError(f"ibis URL {url.geturl()!r}: unknown scheme {url.scheme!r}; use one of {known}")
        location = f"{url.netloc}{url.path}"
        if scheme == "file":
            target = location or None
        else:
            target = f"{scheme}://{location}"
        options = {k: _url_value(v) for k, v in kwargs.items()}
        return self.connect(target, **options)

    def disconnect(self) -> None:
        """Close the DuckDB session, and the database unless it was passed in open."""
        super().disconnect()
        if getattr(self, "_owns_db", False):
            self.db.close()

    # -- tables ----------------------------------------------------------------------------------

    def list_tables(self, *, like: str | None = None, database: tuple[str, str] | str | None = None) -> list[str]:
        """The collections and views, plus tables created in this session (never ibis' memtables)."""
        if database is not None:
            return super().list_tables(like=like, database=database)
        ours = {t.duck_name for t in self._tables.values()}
        session = [n for n in super().list_tables() if n not in ours and not _IBIS_TEMP_NAME.match(n)]
        names = sorted({*self.db.list_collections(), *self.db.list_views(), *session})
        return self._filter_with_like(names, like)

    def table(self, name: str, /, *, database: tuple[str, str] | str | None = None,
              as_of: dt.datetime | None = None, include_deleted: bool = False,
              fields: Mapping[str, FieldSpec] | None = None) -> ir.Table:
        """A collection's current state, a view's rows, or a table of this session.

        ``as_of`` gives the collection as it was at that time; ``include_deleted``
        keeps soft-deleted entities. ``fields`` adds typed columns read from
        variant paths: ``{"status": ("event.response.status", "int64"), "colo":
        "event.request.cf.colo"}`` (see :func:`~parquedb_ibis.ibis_filters.unpack`).
        """
        if database is not None:
            return super().table(name, database=database)
        kind = self._kind(name)
        if kind is None:
            if name in self._session_tables():
                expr = super().table(name)
                return unpack(expr, fields) if fields else expr
            raise ViewNotFoundError(name, self._known_names(), kind="table")
        if kind == "view" and (as_of is not None or include_deleted):
            raise ValidationError(f"view {name!r}", "as_of and include_deleted apply to collections; "
                                  "a view has only its current rows")
        if as_of is not None and not isinstance(as_of, dt.datetime):
            raise ValidationError(f"collection {name!r}", f"as_of must be a datetime, found {as_of!r}")
        managed = self._manage(_Table(kind, name, as_of, include_deleted))
        self._refresh(managed)
        assert managed.schema is not None
        expr = ops.DatabaseTable(managed.duck_name, schema=managed.schema, source=self,
                                 namespace=ops.Namespace()).to_expr()
        return unpack(expr, fields) if fields else expr

    def get_schema(self, table_name: str, *, catalog: str | None = None, database: str | None = None) -> sch.Schema:
        """The schema ``con.table(table_name)`` has (variants as JSON); DuckDB's for other tables."""
        if catalog is None and database is None:
            managed = self._tables.get(table_name)
            if managed is not None:
                self._refresh(managed)
                assert managed.schema is not None
                return managed.schema
            if self._kind(table_name) is not None:
                return self.table(table_name).schema()
        return super().get_schema(table_name, catalog=catalog, database=database)

    def _kind(self, name: str) -> str | None:
        if not isinstance(name, str):
            raise ValidationError("table name", f"expected a string, found {type(name).__name__} {name!r}")
        if name in self.db.definitions():
            return "view"
        if self.db.has_collection(name):
            return "collection"
        return None

    def _known_names(self) -> list[str]:
        return sorted({*self.db.list_collections(), *self.db.list_views(), *self._session_tables()})

    def _session_tables(self) -> list[str]:
        ours = {t.duck_name for t in self._tables.values()}
        return [n for n in super().list_tables() if n not in ours and not _IBIS_TEMP_NAME.match(n)]

    def _manage(self, wanted: _Table) -> _Table:
        return self._tables.setdefault(wanted.duck_name, wanted)

    def _refresh(self, managed: _Table) -> None:
        """Point the DuckDB view at the newest head: a head read when nothing changed, a rebuild when it did."""
        with managed.lock:
            if managed.kind == "view":
                vhead = self.db.fresh_head(managed.source)  # applies the stale-read policy
                key = (vhead.version, vhead.commit)
                if key == managed.key:
                    return
                view = self.db.view(managed.source)
                relation = view.relation()
                types = _view_types(view.plan)
            else:
                coll = self.db.collection(managed.source)
                coll.flush()  # this process's acknowledged writes are part of the latest state
                head = coll.refresh()
                key = (head.version, head.commit)
                if key == managed.key:
                    return
                relation = coll.relation(as_of=managed.as_of, include_deleted=managed.include_deleted)
                types = {**self.db.collection_schema(managed.source).column_types(), DATA_COLUMN: "JSON"}
            create = exp.Create(this=exp.Table(this=sql.identifier(managed.duck_name)), kind="VIEW", replace=True,
                                expression=relation)
            statement = create.sql("duckdb")
            if statement != managed.definition:
                self.con.execute(statement)
                managed.definition = statement
            managed.schema = _ibis_schema(types, self.compiler.type_mapper)
            managed.key = key

    def _run_pre_execute_hooks(self, expr: ir.Expr) -> None:
        for name in self._tables_read_by(expr):
            self._refresh(self._tables[name])
        super()._run_pre_execute_hooks(expr)

    def _tables_read_by(self, expr: ir.Expr) -> set[str]:
        names: set[str] = set()
        for node in expr.op().find((ops.DatabaseTable, ops.SQLQueryResult, ops.SQLStringView)):
            if isinstance(node, ops.DatabaseTable):
                if node.source is self and node.name in self._tables and not node.namespace.database:
                    names.add(node.name)
            else:
                names |= self._names_in_sql(node.query)
        return names

    def _names_in_sql(self, query: str) -> frozenset[str]:
        found = self._sql_tables.get(query)
        if found is None:
            try:
                tree = _parsed(query)
            except sqlglot.errors.SqlglotError:
                return frozenset()  # DuckDB reports what is wrong with it
            found = frozenset(t.name for t in tree.find_all(exp.Table) if not t.db and t.name in self._tables)
            if len(self._sql_tables) > 512:
                self._sql_tables.clear()
            self._sql_tables[query] = found
        return found

    # -- SQL ----------------------------------------------------------------------------------------

    def sql(self, query: str, /, *, schema: Any = None, dialect: str | None = None) -> ir.Table:
        """A table from a query in the ParqueDB SQL dialect (docs/sql.md).

        Collections and views are addressed by name (case-insensitively),
        dotted paths read variant fields, ``NOW() - INTERVAL '1 hour'`` compares
        with timestamps inside ``$data``. ``dialect="duckdb"`` (or any other
        sqlglot dialect) skips the ParqueDB translation and reads raw SQL over
        this session, where collections are the DuckDB views of ``con.table``.
        """
        if dialect is not None and dialect not in (DIALECT, ParqueDB):
            return super().sql(query, schema=schema, dialect=dialect)
        translated = self._translate(query)
        for kind, name in translated.sources:
            managed = self._manage(_Table(kind, name))
            if managed.definition is None or translated.schema is None:  # the schema query reads the views
                self._refresh(managed)
        if schema is not None:
            return super().sql(translated.sql, schema=schema)
        if translated.schema is None:
            translated.schema = self._get_schema_using_query(translated.sql)
        return ops.SQLQueryResult(translated.sql, translated.schema, self).to_expr()

    def _translate(self, query: str) -> _Translated:
        """``query`` in DuckDB SQL, reused while no collection or view it could name has changed its layout."""
        infos = self._table_infos()
        cached = self._translations.get(query)
        if cached is not None and cached.infos == infos:
            return cached
        try:
            tree = translate(query, infos)
        except UnknownTableError:  # a collection created elsewhere moments ago, or a table of this session
            infos = self._table_infos(fresh=True)
            tree = translate(query, infos)
        sources = []
        for table in tree.find_all(exp.Table):
            if not table.db and not table.catalog and (kind := self._source_kind(table.name)):
                sources.append((kind, table.name))
        translated = _Translated(infos, tree.sql("duckdb"), tuple(dict.fromkeys(sources)))
        if len(sources) == len(list(tree.find_all(exp.Table))):  # only stored tables: the schema is stable
            if len(self._translations) > 256:
                self._translations.clear()
            self._translations[query] = translated
        return translated

    def _source_kind(self, name: str) -> str | None:
        if name in self.db.definitions():
            return "view"
        return "collection" if name in self._collection_names() else None

    def _collection_names(self, fresh: bool = False) -> list[str]:
        """The store's collections, listed at most every :data:`LISTING_TTL` seconds unless ``fresh``."""
        now = time.monotonic()
        if fresh or self._listing is None or now - self._listing[0] > LISTING_TTL:
            self._listing = (now, self.db.list_collections())
        return self._listing[1]

    def _table_infos(self, fresh: bool = False) -> dict[str, TableInfo]:
        """The tables a ParqueDB query can name: collections, views (and, when ``fresh``, this session's tables)."""
        infos: dict[str, TableInfo] = {}
        if fresh:
            infos.update({n: TableInfo({}, has_data=False) for n in self._session_tables()})
        for name in self._collection_names(fresh):
            infos[name] = TableInfo.from_schema(self.db.collection_schema(name))
        for name, definition in self.db.definitions().items():
            plan = self.db.plan(name, definition)
            infos[name] = TableInfo(_view_types(plan), has_data=DATA_COLUMN in plan.outputs)
        return infos

    def view_expr(self, view: str | Mapping[str, Any], *, name: str = "adhoc") -> ir.Table:
        """A view definition evaluated live over its sources (see :func:`parquedb_ibis.ibis_filters.view_to_ibis`)."""
        if isinstance(view, str):
            definition = self.db.definitions().get(view)
            if definition is None:
                raise ViewNotFoundError(view, self.db.list_views())
            name = view
        else:
            definition = dict(view)
        plan = self.db.plan(name, definition)
        source = self._source_relation(plan.source, plan.source_kind)
        lookups = {n: self._source_relation(n, "collection") for n in plan.lookups}
        rows = plan.output(source, lookups)
        visible = exp.select(*[sql.column(c) for c in plan.outputs]).from_(
            exp.Subquery(this=rows, alias=exp.TableAlias(this=sql.identifier("$view"))))
        return super().sql(visible.sql("duckdb"))

    def _source_relation(self, name: str, kind: str) -> exp.Expr:
        """A collection source as its (refreshed-on-execute) DuckDB view; a view source as materialized now."""
        if kind == "collection":
            managed = self._manage(_Table("collection", name))
            self._refresh(managed)
            return exp.Table(this=sql.identifier(managed.duck_name))
        vhead, _ = self.db.view_catalog.require(name)
        vplan = self.db.plan(name, vhead.definition)
        from parquedb_ibis.views.refresh import stored_relation

        return vplan.readable(stored_relation(self.db, vhead, vplan))

    # -- results ------------------------------------------------------------------------------------

    def to_polars(self, expr: ir.Expr, /, **kwargs: Any) -> Any:
        """As ibis' ``to_polars``; JSON columns arrive as JSON text (ibis 12 maps no JSON type to polars)."""
        if isinstance(expr, ir.Table):
            json_columns = {c: "string" for c, t in expr.schema().items() if t.is_json()}
            if json_columns:
                expr = expr.cast(json_columns)
        elif isinstance(expr, ir.Value) and expr.type().is_json():
            expr = expr.cast("string")
        return super().to_polars(expr, **kwargs)


def _view_types(plan: Any) -> dict[str, str]:
    """DuckDB types of a view's visible columns (a passthrough view's ``$data`` is variant text, like a collection's)."""
    return {c: "JSON" if c == DATA_COLUMN else plan.output_types[c] for c in plan.outputs}


def _ibis_schema(types: Mapping[str, str], mapper: Any) -> sch.Schema:
    """ibis types of DuckDB column types; ``JSON`` (variant text, stored as VARCHAR) becomes ibis JSON."""
    return sch.Schema({
        name: idt.JSON(nullable=True) if t.strip().upper() == "JSON" else mapper.from_string(t, nullable=True)
        for name, t in types.items()
    })


def _url_value(value: Any) -> Any:
    """A query-string value as the option value it spells: integers, decimals, true/false/none, else text."""
    if not isinstance(value, str):
        return value
    if value.lower() in _URL_WORDS:
        return _URL_WORDS[value.lower()]
    if re.fullmatch(r"[+-]?\d+", value):
        return int(value)
    if re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+)", value):
        return float(value)
    return value
