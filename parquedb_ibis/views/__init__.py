"""Materialized views on top of the writer: registry (catalog), refresh, and the views-enabled Database."""

from parquedb_ibis.views.database import Database, View, ViewState
from parquedb_ibis.views.refresh import RefreshResult, watch

__all__ = ["Database", "RefreshResult", "View", "ViewState", "watch"]
