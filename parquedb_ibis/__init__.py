"""parquedb-ibis: ParqueDB collections and views for Python, on DuckDB and Parquet.

The public API is re-exported here; each name lives in the module that owns it.
"""

from __future__ import annotations

from parquedb_ibis.errors import ParqueDBError

__version__ = "0.1.0"

__all__ = ["ParqueDBError", "__version__"]
