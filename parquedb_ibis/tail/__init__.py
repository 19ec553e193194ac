"""Cloudflare Workers tail events: the TailEvents schema, views and ingestion (see parquedb_ibis.tail.sample for generated data)."""
