"""Where a store lives and how to reach it: URL parsing and credentials.

A store is named by a URL:

* a plain path or ``file:///abs/path``: a local directory (the embedded default);
* ``s3://bucket/prefix``: any S3-compatible endpoint (AWS, MinIO, moto, ...);
* ``r2://bucket/prefix``: Cloudflare R2; the account id gives the endpoint
  ``https://<account>.r2.cloudflarestorage.com``.

Credentials come from keyword arguments or the environment (``R2_ACCOUNT_ID``,
``R2_ACCESS_KEY_ID``, ``R2_SECRET_ACCESS_KEY``; the usual ``AWS_*`` for S3) and
are held in :class:`Secret`, whose repr and str never show the value.

This module validates and performs no I/O.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from parquedb_ibis.errors import ConfigurationError, did_you_mean

#: Environment variable naming the default store when connect() gets no URL.
URL_ENV = "PARQUEDB_URL"
#: The local directory used when neither a URL nor PARQUEDB_URL is given.
DEFAULT_LOCAL_DIR = "parquedb-data"

SCHEMES = ("file", "s3", "r2")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


class Secret:
    """A credential value that never shows itself in a repr, str, log line or traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The real value, for the one call that must send it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class StoreConfig:
    """Everything needed to reach one store; credentials are :class:`Secret` and never printed."""

    scheme: str  # "file" | "s3" | "r2"
    root: str  # local: absolute directory; s3/r2: key prefix inside the bucket ("" or "a/b")
    bucket: str | None = None
    endpoint: str | None = None  # "https://host[:port]"; None = AWS default for s3
    region: str = "auto"
    account_id: str | None = None
    access_key_id: Secret | None = field(default=None, repr=False)
    secret_access_key: Secret | None = field(default=None, repr=False)
    session_token: Secret | None = field(default=None, repr=False)
    url_style: str = "path"  # "path" | "vhost"
    max_attempts: int = 6
    connect_timeout: float = 5.0
    read_timeout: float = 30.0

    @property
    def url(self) -> str:
        """The store URL without credentials (safe to print)."""
        if self.scheme == "file":
            return self.root
        return f"{self.scheme}://{self.bucket}/{self.root}".rstrip("/")

    @property
    def is_local(self) -> bool:
        return self.scheme == "file"

    @property
    def use_ssl(self) -> bool:
        return not (self.endpoint or "https://").startswith("http://")

    @property
    def endpoint_host(self) -> str | None:
        """The endpoint as DuckDB's secrets want it: host[:port], no scheme."""
        if not self.endpoint:
            return None
        return urlsplit(self.endpoint).netloc

    def __repr__(self) -> str:
        return f"StoreConfig({self.url!r}, endpoint={self.endpoint!r})"


def parse_url(url: str | os.PathLike[str] | None = None, **options: object) -> StoreConfig:
    """Parse a store URL and complete it from keyword options and the environment.

    Options: ``endpoint``, ``region``, ``account_id``, ``access_key_id``,
    ``secret_access_key``, ``session_token``, ``url_style``, ``max_attempts``,
    ``connect_timeout``, ``read_timeout``. Raises :class:`ConfigurationError`
    for a malformed URL, an unknown scheme or missing credentials.
    """
    known = {f for f in StoreConfig.__dataclass_fields__ if f not in ("scheme", "root", "bucket")}
    for key in options:
        if key not in known:
            raise ConfigurationError(f"connect: unknown option {key!r}{did_you_mean(key, known)}")
    env = os.environ
    if url is None:
        url = env.get(URL_ENV) or DEFAULT_LOCAL_DIR
    url = os.fspath(url)
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError("connect: empty store URL; pass a directory, s3://bucket/prefix or r2://bucket/prefix")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("", "file") or (len(scheme) == 1 and url[1:3] in (":\\", ":/")):  # plain or Windows path
        return _local(url if scheme != "file" else parts.path, options)
    if scheme not in SCHEMES:
        raise ConfigurationError(
            f"store URL {_safe(url)!r}: unknown scheme {scheme!r}{did_you_mean(scheme, SCHEMES)}; "
            "use a directory path, file://, s3:// or r2://"
        )
    if parts.username or parts.password:
        raise ConfigurationError(
            f"store URL {scheme}://{parts.hostname}: credentials in the URL are not accepted; "
            "pass access_key_id/secret_access_key or set them in the environment"
        )
    bucket = parts.netloc
    if not bucket or not _BUCKET.match(bucket):
        raise ConfigurationError(
            f"store URL {_safe(url)!r}: {bucket!r} is not a valid bucket name; expected {scheme}://bucket/prefix "
            "(3-63 lowercase letters, digits, '.' or '-')"
        )
    if parts.query or parts.fragment:
        raise ConfigurationError(f"store URL {_safe(url)!r}: query strings and fragments are not supported")
    prefix = parts.path.strip("/")
    if any(seg in ("", ".", "..") for seg in prefix.split("/")) and prefix:
        raise ConfigurationError(f"store URL {_safe(url)!r}: the prefix must not contain empty, '.' or '..' segments")
    return _remote(scheme, bucket, prefix, options, env)


def _safe(url: str) -> str:
    """The URL with any userinfo removed, for messages."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        return url.replace(parts.netloc, parts.hostname or "", 1)
    return url


def _local(path: str, options: Mapping[str, object]) -> StoreConfig:
    remote_only = {"endpoint", "account_id", "access_key_id", "secret_access_key", "session_token"}
    given = sorted(remote_only & set(options))
    if given:
        raise ConfigurationError(f"store {path!r}: option(s) {', '.join(given)} only apply to s3:// and r2:// stores")
    return StoreConfig(scheme="file", root=str(Path(path).expanduser().resolve()))


def _secret(value: object) -> Secret | None:
    if value is None or value == "":
        return None
    if isinstance(value, Secret):
        return value
    return Secret(str(value))


def _remote(scheme: str, bucket: str, prefix: str, options: Mapping[str, object], env: Mapping[str, str]) -> StoreConfig:
    where = f"{scheme}://{bucket}"
    if scheme == "r2":
        account = options.get("account_id") or env.get("R2_ACCOUNT_ID")
        key_id = options.get("access_key_id") or env.get("R2_ACCESS_KEY_ID")
        secret = options.get("secret_access_key") or env.get("R2_SECRET_ACCESS_KEY")
        endpoint = options.get("endpoint") or env.get("R2_ENDPOINT")
        region = str(options.get("region") or "auto")
        if not endpoint:
            if not account:
                raise ConfigurationError(
                    f"{where}: no R2 account id; pass account_id=... or set R2_ACCOUNT_ID "
                    "(it is shown on the R2 overview page of the Cloudflare dashboard)"
                )
            if not re.fullmatch(r"[0-9a-fA-F]{32}|[A-Za-z0-9\-]{1,63}", str(account)):
                raise ConfigurationError(f"{where}: R2 account id {account!r} is malformed; expected 32 hex digits")
            endpoint = f"https://{account}.r2.cloudflarestorage.com"
        hint = "pass access_key_id=/secret_access_key= or set R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY"
    else:
        account = None
        key_id = options.get("access_key_id") or env.get("AWS_ACCESS_KEY_ID")
        secret = options.get("secret_access_key") or env.get("AWS_SECRET_ACCESS_KEY")
        endpoint = options.get("endpoint") or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
        region = str(options.get("region") or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1")
        hint = "pass access_key_id=/secret_access_key= or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    if not key_id or not secret:
        missing = "access key id" if not key_id else "secret access key"
        raise ConfigurationError(f"{where}: missing credentials (no {missing}); {hint}")
    if endpoint is not None:
        endpoint = str(endpoint)
        if "://" not in endpoint:
            endpoint = "https://" + endpoint
        ep = urlsplit(endpoint)
        if ep.scheme not in ("http", "https") or not ep.netloc or ep.username:
            raise ConfigurationError(f"{where}: endpoint {endpoint!r} is malformed; expected https://host[:port]")
        endpoint = f"{ep.scheme}://{ep.netloc}"
    base = StoreConfig(
        scheme=scheme,
        root=prefix,
        bucket=bucket,
        endpoint=endpoint,
        region=region,
        account_id=str(account) if account else None,
        access_key_id=_secret(key_id),
        secret_access_key=_secret(secret),
        session_token=_secret(options.get("session_token") or (env.get("AWS_SESSION_TOKEN") if scheme == "s3" else None)),
    )
    tuning = {k: options[k] for k in ("url_style", "max_attempts", "connect_timeout", "read_timeout") if k in options}
    if tuning.get("url_style", "path") not in ("path", "vhost"):
        raise ConfigurationError(f"{where}: url_style must be 'path' or 'vhost', found {tuning['url_style']!r}")
    return replace(base, **tuning)  # type: ignore[arg-type]
