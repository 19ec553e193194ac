"""The one DuckDB session factory every reader uses.

Sessions are offline-safe: ``autoinstall_known_extensions`` is off, and httpfs
is installed from the file bundled in the ``duckdb-extension-httpfs`` wheel
(which must match the pinned duckdb exactly) unless it is already installed.
For an ``s3://`` or ``r2://`` store a scoped secret is created from the same
:class:`~parquedb_ibis.config.StoreConfig` the object store uses, so
``read_parquet('r2://bucket/...')`` works; local stores need neither.
Every session runs in UTC.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import threading

import duckdb
from sqlglot import exp

from parquedb_ibis.config import StoreConfig
from parquedb_ibis.errors import ConfigurationError

_INSTALL_LOCK = threading.Lock()


def connect_duckdb(config: StoreConfig | None = None, *, database: str = ":memory:", threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """Open a DuckDB connection ready to read the store ``config`` names."""
    settings: dict[str, object] = {"autoinstall_known_extensions": False}
    if threads:
        settings["threads"] = threads
    con = duckdb.connect(database, config=settings)
    prepare(con, config)
    return con


def prepare(con: duckdb.DuckDBPyConnection, config: StoreConfig | None) -> None:
    """Configure an existing connection (ours or ibis's) for ``config``: UTC, httpfs, secret."""
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET autoinstall_known_extensions = false")
    if config is None or config.is_local:
        return
    load_httpfs(con)
    con.execute(secret_statement(config))


def httpfs_file() -> str:
    """Path of the httpfs binary bundled for exactly this duckdb version."""
    import duckdb_extension_httpfs

    path = importlib.resources.files(duckdb_extension_httpfs) / "extensions" / f"v{duckdb.__version__}" / "httpfs.duckdb_extension"
    if not path.is_file():
        raise ConfigurationError(
            f"duckdb {duckdb.__version__}: no bundled httpfs extension for this version; "
            "install duckdb-extension-httpfs with the same version as duckdb"
        )
    return str(path)


def load_httpfs(con: duckdb.DuckDBPyConnection) -> None:
    """Install (offline, from the wheel) and load httpfs into ``con``."""
    installed = con.execute(
        "SELECT installed, loaded FROM duckdb_extensions() WHERE extension_name = 'httpfs'"
    ).fetchone()
    if installed and installed[1]:
        return
    if not (installed and installed[0]):
        with _INSTALL_LOCK:
            con.execute(f"INSTALL {_string(httpfs_file())}")
    con.execute("LOAD httpfs")


def secret_name(config: StoreConfig) -> str:
    """A stable secret name per (scheme, bucket, endpoint)."""
    digest = hashlib.sha1(f"{config.scheme}|{config.bucket}|{config.endpoint}".encode(), usedforsecurity=False)
    return f"parquedb_{config.scheme}_{digest.hexdigest()[:12]}"


def secret_statement(config: StoreConfig) -> str:
    """``CREATE OR REPLACE SECRET`` for the store, every value quoted by sqlglot.

    The statement contains the credentials: never log or raise it.
    """
    if config.access_key_id is None or config.secret_access_key is None:
        raise ConfigurationError(f"{config.url}: missing credentials for DuckDB")
    params: list[tuple[str, str]] = [
        ("TYPE", config.scheme),
        ("KEY_ID", _string(config.access_key_id.reveal())),
        ("SECRET", _string(config.secret_access_key.reveal())),
        ("REGION", _string(config.region)),
        ("SCOPE", _string(f"{config.scheme}://{config.bucket}")),
    ]
    if config.session_token is not None:
        params.append(("SESSION_TOKEN", _string(config.session_token.reveal())))
    if config.account_id and config.scheme == "r2":
        params.append(("ACCOUNT_ID", _string(config.account_id)))
    if config.endpoint:
        params += [
            ("ENDPOINT", _string(config.endpoint_host or "")),
            ("URL_STYLE", _string(config.url_style)),
            ("USE_SSL", "true" if config.use_ssl else "false"),
        ]
    body = ", ".join(f"{k} {v}" for k, v in params)
    name = exp.to_identifier(secret_name(config)).sql("duckdb")
    return f"CREATE OR REPLACE SECRET {name} ({body})"


def _string(value: str) -> str:
    """A SQL string literal rendered by sqlglot (quotes and backslashes escaped)."""
    return exp.Literal.string(value).sql("duckdb")
