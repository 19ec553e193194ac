"""Each store failure becomes one clear error of our hierarchy, never a vendor traceback as the message."""

from __future__ import annotations

import os

import pytest

from conftest import KEY, SECRET, S3Server, store_options
from parquedb_ibis.errors import (
    BucketNotFoundError,
    ObjectNotFoundError,
    ParqueDBError,
    PermissionDeniedError,
    StorageError,
)
from parquedb_ibis.store import open_store


def test_missing_bucket_is_named(s3):
    store = open_store("s3://no-such-bucket/x", **store_options(s3))
    with pytest.raises(BucketNotFoundError, match=r"s3://no-such-bucket: get: no such bucket; create the bucket") as info:
        store.get("a")
    assert isinstance(info.value, OSError) and isinstance(info.value, ParqueDBError)
    assert "botocore" not in str(info.value)


def test_missing_object_on_s3(s3):
    store = open_store("s3://pqdb-test/x", **store_options(s3))
    with pytest.raises(ObjectNotFoundError, match=r"s3://pqdb-test/x/missing\.json: get: no such object"):
        store.get("missing.json")


@pytest.fixture(scope="module")
def auth_server():
    """A second moto server that checks credentials (unknown access keys get 403)."""
    server = S3Server("--auth")
    yield server
    server.stop()


def test_wrong_credentials_give_a_permission_error_without_the_secret(auth_server):
    store = open_store("s3://pqdb-test/x", endpoint=auth_server.endpoint, access_key_id="AKIAUNKNOWN",
                       secret_access_key="do-not-print-me", max_attempts=1)
    with pytest.raises(PermissionDeniedError, match=r"access denied \(InvalidAccessKeyId\); the access key id is unknown") as info:
        store.put("k", b"x")
    assert "do-not-print-me" not in str(info.value)
    assert isinstance(info.value, PermissionError)


def test_unreachable_endpoint_is_a_storage_error_after_retries():
    store = open_store("s3://pqdb-test/x", endpoint="http://127.0.0.1:9", access_key_id=KEY,
                       secret_access_key=SECRET, max_attempts=2, connect_timeout=0.5)
    with pytest.raises(StorageError, match=r"cannot reach the endpoint http://127\.0\.0\.1:9 after 2 attempts"):
        store.get("k")


def test_local_permission_error(tmp_path):
    if os.geteuid() == 0:
        # root ignores directory modes; use a path under a regular file instead, which the OS refuses for everyone.
        (tmp_path / "file").write_bytes(b"x")
        store = open_store(str(tmp_path / "file" / "sub"))
        with pytest.raises(StorageError, match="put failed"):
            store.put("k", b"x")
        return
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    store = open_store(str(locked))
    with pytest.raises(PermissionDeniedError, match="permission denied"):
        store.put("k", b"x")
