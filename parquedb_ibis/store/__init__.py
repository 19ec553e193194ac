"""The I/O layer: the only code that talks to the filesystem, S3/R2, or opens DuckDB sessions."""

from parquedb_ibis.store.objectstore import ObjectInfo, ObjectStore, open_store
from parquedb_ibis.store.session import connect_duckdb

__all__ = ["ObjectInfo", "ObjectStore", "connect_duckdb", "open_store"]
