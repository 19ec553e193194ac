"""parquedb-ibis: ParqueDB collections and views for Python, on DuckDB and Parquet.

>>> import parquedb_ibis
>>> parquedb_ibis.to_sql({"status": {"$gte": 500}}, {"status": "int"})
'"status" >= 500'

The public API is re-exported here; each name lives in the module that owns it.
"""

from __future__ import annotations

import os
from typing import Any

from parquedb_ibis import errors
from parquedb_ibis.compile.filters import compile_filter, to_sql
from parquedb_ibis.compile.views import compile_view
from parquedb_ibis.errors import ParqueDBError
from parquedb_ibis.query import find_in
from parquedb_ibis.updates import apply_update

__version__ = "0.1.0"

#: connect() keywords that configure the database; every other keyword configures the store.
_DATABASE_OPTIONS = ("actor", "wal_dir", "wal_sync", "flush_every", "flush_bytes", "flush_age", "compression",
                     "auto_checkpoint", "stale_reads")


def connect(url: str | os.PathLike[str] | None = None, **options: Any):
    """Open the database at ``url`` (a directory, ``s3://bucket/prefix`` or ``r2://bucket/prefix``).

    With no URL: ``$PARQUEDB_URL``, else the local directory ``./parquedb-data``.
    Store options (``endpoint``, ``access_key_id``, ``secret_access_key``,
    ``account_id``, ``region``...) are described in docs/connecting.md;
    database options are ``actor``, ``wal_dir``, ``wal_sync``, ``flush_every``,
    ``flush_bytes``, ``flush_age``, ``compression``, ``auto_checkpoint`` and
    ``stale_reads`` (``'refresh'``, ``'warn'`` or ``'ignore'``: reading a view past its grace period).
    """
    from parquedb_ibis.store import open_store
    from parquedb_ibis.views.database import Database

    db_options = {k: options.pop(k) for k in _DATABASE_OPTIONS if k in options}
    return Database(open_store(url, **options), **db_options)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext parquedb_ibis``: the %parquedb / %%parquedb magics."""
    from parquedb_ibis.magic import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from parquedb_ibis.magic import unload_ipython_extension as unload

    unload(ipython)


#: Ibis helpers, imported on first use so `import parquedb_ibis` does not pay for ibis.
_IBIS_HELPERS = ("mongo", "field", "unpack", "view_to_ibis")


def __getattr__(name: str) -> Any:
    if name in _IBIS_HELPERS:
        from parquedb_ibis import ibis_filters

        return getattr(ibis_filters, name)
    raise AttributeError(f"module 'parquedb_ibis' has no attribute {name!r}")


__all__ = [
    "ParqueDBError",
    "__version__",
    "apply_update",
    "compile_filter",
    "compile_view",
    "connect",
    "errors",
    "field",
    "find_in",
    "load_ipython_extension",
    "mongo",
    "to_sql",
    "unload_ipython_extension",
    "unpack",
    "view_to_ibis",
]
