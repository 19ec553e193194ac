"""Transient failures are retried with backoff and nothing is corrupted (a real proxy injects them)."""

from __future__ import annotations

import pytest

from conftest import store_options
from faultproxy import FaultProxy
from parquedb_ibis.errors import PreconditionFailedError, StorageError
from parquedb_ibis.store import open_store


@pytest.fixture
def proxy(s3):
    p = FaultProxy(s3.port, slow_seconds=2.0)
    yield p
    p.stop()


def faulty_store(s3, proxy, **extra):
    options = store_options(s3, endpoint=f"http://127.0.0.1:{proxy.port}", read_timeout=1.0, connect_timeout=1.0)
    return open_store("s3://pqdb-test/faults", **{**options, **extra})


def direct_store(s3):
    return open_store("s3://pqdb-test/faults", **store_options(s3))


@pytest.mark.parametrize("fault", ["503", "reset", "slow"])
def test_puts_and_gets_survive_transient_faults(s3, proxy, fault):
    store = faulty_store(s3, proxy)
    data = b"payload-" + bytes(range(256)) * 40
    proxy.script = [fault, fault]
    store.put("obj.bin", data)
    proxy.script = [fault, fault]
    assert store.get("obj.bin") == data
    assert proxy.counts[fault] == 4  # every injected fault was met and retried past
    assert direct_store(s3).get("obj.bin") == data


def test_conditional_create_after_lost_response_is_still_ours(s3, proxy):
    """The first attempt lands but its answer is lost (slow -> client timeout); the retry sees 412 on our own bytes."""
    store = faulty_store(s3, proxy)
    proxy.script = ["slow"]
    store.put_if_absent("head.json", b"commit-abc")
    assert direct_store(s3).get("head.json") == b"commit-abc"
    with pytest.raises(PreconditionFailedError):
        store.put_if_absent("head.json", b"commit-other")


def test_exhausted_retries_raise_and_leave_the_old_object(s3, proxy):
    direct_store(s3).put("keep.bin", b"old")
    store = faulty_store(s3, proxy, max_attempts=3)
    proxy.script = ["503"] * 3
    with pytest.raises(StorageError, match=r"put failed: server answered 503 SlowDown"):
        store.put("keep.bin", b"new-but-failed")
    assert direct_store(s3).get("keep.bin") == b"old"
    assert proxy.counts["503"] == 3


def test_many_operations_under_random_faults_stay_consistent(s3, proxy):
    """A bounded mixed run: 30 writes through a proxy failing 1 in 3 requests; every object reads back intact."""
    import random

    rng = random.Random(7)
    store = faulty_store(s3, proxy, max_attempts=8)
    expected = {}
    for i in range(30):
        proxy.script = [rng.choice(["pass", "pass", "503", "reset"]) for _ in range(2)]
        key = f"mixed/{i:03d}"
        data = rng.randbytes(rng.randint(1, 5000))
        store.put(key, data)
        expected[key] = data
    direct = direct_store(s3)
    assert {o.key: direct.get(o.key) for o in direct.list("mixed/")} == expected
