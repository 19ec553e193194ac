"""A store on any S3-compatible endpoint (AWS S3, Cloudflare R2, MinIO, moto) through boto3.

Transient failures (5xx, 429/throttling, timeouts, connection resets) are
retried by botocore's ``standard`` retry mode with exponential backoff and
jitter, up to ``config.max_attempts``. A PUT is atomic on S3, so a failed write
leaves the old object (or none) in place. Vendor errors are translated here,
and only here, into our hierarchy; boto's own text is never the message.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError as BotoConnectionError

from parquedb_ibis.config import StoreConfig
from parquedb_ibis.errors import (
    BucketNotFoundError,
    ObjectNotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
    StorageError,
)
from parquedb_ibis.store.objectstore import Blob, ObjectInfo, join_key

#: S3 error codes -> (our error class, hint). One row per code we recognise.
ERROR_CODES: dict[str, tuple[type[StorageError], str]] = {
    "NoSuchKey": (ObjectNotFoundError, ""),
    "404": (ObjectNotFoundError, ""),
    "NotFound": (ObjectNotFoundError, ""),
    "NoSuchBucket": (BucketNotFoundError, "create the bucket or check the URL and endpoint"),
    "AccessDenied": (PermissionDeniedError, "check the credentials' permissions on this bucket"),
    "403": (PermissionDeniedError, "check the credentials' permissions on this bucket"),
    "InvalidAccessKeyId": (PermissionDeniedError, "the access key id is unknown to the endpoint; check the credentials"),
    "SignatureDoesNotMatch": (PermissionDeniedError, "the secret access key does not match; check the credentials"),
    "InvalidToken": (PermissionDeniedError, "the session token is invalid; refresh the credentials"),
    "ExpiredToken": (PermissionDeniedError, "the session token expired; refresh the credentials"),
    "PreconditionFailed": (PreconditionFailedError, ""),
    "412": (PreconditionFailedError, ""),
    "ConditionalRequestConflict": (PreconditionFailedError, ""),
}


class S3Store:
    """Objects under ``s3://bucket/root/`` (or ``r2://``) on one endpoint."""

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self.bucket = config.bucket or ""
        self.prefix = config.root
        session = boto3.session.Session()
        self._client = session.client(
            "s3",
            endpoint_url=config.endpoint,
            region_name=config.region,
            aws_access_key_id=config.access_key_id.reveal() if config.access_key_id else None,
            aws_secret_access_key=config.secret_access_key.reveal() if config.secret_access_key else None,
            aws_session_token=config.session_token.reveal() if config.session_token else None,
            config=Config(
                retries={"total_max_attempts": config.max_attempts, "mode": "standard"},
                connect_timeout=config.connect_timeout,
                read_timeout=config.read_timeout,
                s3={"addressing_style": "path" if config.url_style == "path" else "virtual"},
                signature_version="s3v4",
                # R2 and many S3-compatible servers reject the newer default checksum trailers.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                max_pool_connections=32,
            ),
        )

    def __repr__(self) -> str:
        return f"S3Store({self.config.url!r}, endpoint={self.config.endpoint!r})"

    def _key(self, key: str) -> str:
        if not key or key.startswith("/") or any(s in ("", ".", "..") for s in key.split("/")):
            raise StorageError(self.config.url, f"invalid key {key!r}", "keys are relative, '/'-separated, without '.' or '..'")
        return join_key(self.prefix, key)

    def url_for(self, key: str) -> str:
        return f"{self.config.scheme}://{self.bucket}/{self._key(key)}"

    @contextmanager
    def _errors(self, key: str, op: str):
        where = f"{self.config.scheme}://{self.bucket}/{join_key(self.prefix, key)}"
        try:
            yield
        except ClientError as err:
            code = str(err.response.get("Error", {}).get("Code", ""))
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            cls, hint = ERROR_CODES.get(code) or ERROR_CODES.get(str(status)) or (StorageError, "")
            if cls is BucketNotFoundError:
                where = f"{self.config.scheme}://{self.bucket}"
            problem = {
                ObjectNotFoundError: f"{op}: no such object",
                BucketNotFoundError: f"{op}: no such bucket",
                PermissionDeniedError: f"{op}: access denied ({code or status})",
                PreconditionFailedError: f"{op}: precondition failed ({code or status})",
            }.get(cls, f"{op} failed: server answered {status} {code}")
            raise cls(where, problem, hint) from err
        except BotoConnectionError as err:
            raise StorageError(
                where,
                f"{op}: cannot reach the endpoint {self.config.endpoint or 'AWS'} after {self.config.max_attempts} attempts",
                "check the endpoint URL and the network",
            ) from err
        except BotoCoreError as err:
            raise StorageError(where, f"{op} failed: {type(err).__name__}") from err

    # -- reads -------------------------------------------------------------------

    def get(self, key: str, *, start: int | None = None, end: int | None = None) -> bytes:
        kwargs = {}
        if start is not None or end is not None:
            first = start or 0
            if end is not None and end <= first:
                return b""
            kwargs["Range"] = f"bytes={first}-" + ("" if end is None else str(end - 1))
        with self._errors(key, "get"):
            resp = self._client.get_object(Bucket=self.bucket, Key=self._key(key), **kwargs)
            return resp["Body"].read()

    def get_blob(self, key: str) -> Blob:
        with self._errors(key, "get"):
            resp = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
            return Blob(resp["Body"].read(), _etag(resp["ETag"]))

    def head(self, key: str) -> ObjectInfo | None:
        try:
            with self._errors(key, "head"):
                resp = self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ObjectNotFoundError:
            return None
        return ObjectInfo(key, resp["ContentLength"], _etag(resp["ETag"]), resp.get("LastModified"))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        base = join_key(self.prefix) + "/" if self.prefix else ""
        with self._errors(prefix or "", "list"):
            pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base + prefix)
            out = [
                ObjectInfo(obj["Key"][len(base):], obj["Size"], _etag(obj["ETag"]), obj.get("LastModified"))
                for page in pages
                for obj in page.get("Contents", ())
            ]
        return iter(out)

    # -- writes ------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> str:
        with self._errors(key, "put"):
            resp = self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        return _etag(resp["ETag"])

    def _conditional(self, key: str, data: bytes, op: str, **condition: str) -> str:
        try:
            with self._errors(key, op):
                resp = self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **condition)
            return _etag(resp["ETag"])
        except PreconditionFailedError:
            # A retried request whose first attempt landed also gets 412: same bytes = ours.
            try:
                current = self.get_blob(key)
            except ObjectNotFoundError:
                raise
            if current.data == data:
                return current.etag
            raise

    def put_if_absent(self, key: str, data: bytes) -> str:
        return self._conditional(key, data, "put_if_absent", IfNoneMatch="*")

    def put_if_match(self, key: str, data: bytes, etag: str) -> str:
        return self._conditional(key, data, "put_if_match", IfMatch=f'"{etag}"')

    def delete(self, key: str) -> None:
        with self._errors(key, "delete"):
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def delete_many(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            chunk = keys[i : i + 1000]
            with self._errors(chunk[0] if chunk else "", "delete_many"):
                self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": self._key(k)} for k in chunk], "Quiet": True}
                )


def _etag(raw: str) -> str:
    return raw.strip('"')
