"""One behaviour suite for every ObjectStore: a local directory and the S3 test server."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from parquedb_ibis.errors import ObjectNotFoundError, PreconditionFailedError, StorageError
from parquedb_ibis.store import open_store


@pytest.fixture
def store(store_url):
    url, options = store_url
    return open_store(url, **options)


def test_put_then_get_returns_the_same_bytes(store):
    data = bytes(range(256)) * 10
    store.put("a/b/c.bin", data)
    assert store.get("a/b/c.bin") == data


def test_get_byte_range(store):
    store.put("r.bin", b"0123456789")
    assert store.get("r.bin", start=2, end=5) == b"234"
    assert store.get("r.bin", start=7) == b"789"
    assert store.get("r.bin", end=3) == b"012"


def test_get_missing_object_raises_object_not_found(store):
    with pytest.raises(ObjectNotFoundError, match="no such object") as info:
        store.get("nope/missing.txt")
    assert isinstance(info.value, FileNotFoundError)
    assert "nope/missing.txt" in str(info.value)


def test_head_reports_size_and_etag_and_none_when_missing(store):
    etag = store.put("h.txt", b"hello")
    info = store.head("h.txt")
    assert info is not None and info.size == 5 and info.etag == etag
    assert store.head("missing.txt") is None


def test_put_replaces_and_changes_etag(store):
    first = store.put("k", b"one")
    second = store.put("k", b"two")
    assert first != second
    assert store.get_blob("k").data == b"two"
    assert store.get_blob("k").etag == second


def test_list_by_prefix_is_sorted_and_excludes_other_prefixes(store):
    for key in ["data/x/2", "data/x/1", "data/y/1", "events/1"]:
        store.put(key, key.encode())
    assert [o.key for o in store.list("data/x/")] == ["data/x/1", "data/x/2"]
    assert [o.key for o in store.list("data/")] == ["data/x/1", "data/x/2", "data/y/1"]
    assert [o.key for o in store.list()] == ["data/x/1", "data/x/2", "data/y/1", "events/1"]
    assert [o.size for o in store.list("events/")] == [len(b"events/1")]


def test_delete_removes_and_is_idempotent(store):
    store.put("d/1", b"x")
    store.put("d/2", b"y")
    store.delete("d/1")
    store.delete("d/1")
    assert store.head("d/1") is None
    store.delete_many(["d/2"])
    assert list(store.list("d/")) == []


def test_put_if_absent_creates_once(store):
    store.put_if_absent("head.json", b"v1")
    with pytest.raises(PreconditionFailedError):
        store.put_if_absent("head.json", b"v2")
    assert store.get("head.json") == b"v1"


def test_put_if_absent_of_the_same_bytes_counts_as_won(store):
    """A retried create whose first attempt landed must not be reported as lost."""
    etag = store.put_if_absent("same.json", b"commit-1")
    assert store.put_if_absent("same.json", b"commit-1") == etag


def test_put_if_match_swaps_only_on_current_etag(store):
    etag1 = store.put_if_absent("head.json", b"v1")
    etag2 = store.put_if_match("head.json", b"v2", etag1)
    with pytest.raises(PreconditionFailedError):
        store.put_if_match("head.json", b"v3", etag1)  # stale
    assert store.get_blob("head.json").data == b"v2"
    assert store.get_blob("head.json").etag == etag2


def test_put_if_match_on_missing_key_fails(store):
    with pytest.raises(StorageError):
        store.put_if_match("never.json", b"x", "0" * 32)
    assert store.head("never.json") is None


def test_invalid_keys_are_rejected(store):
    for key in ["", "/abs", "a/../b", "a//b"]:
        with pytest.raises(StorageError, match="invalid key"):
            store.put(key, b"x")


def test_race_put_if_absent_has_exactly_one_winner_every_round(store):
    """16 threads race to create the same key, 200 rounds: exactly one wins each round."""
    rounds, writers = 200, 16
    barrier = threading.Barrier(writers)

    def attempt(round_no: int, writer: int) -> bool:
        try:
            store.put_if_absent(f"race/{round_no:04d}", f"writer-{writer}".encode())
            return True
        except PreconditionFailedError:
            return False

    def worker(writer: int) -> list[bool]:
        results = []
        for round_no in range(rounds):
            barrier.wait()
            results.append(attempt(round_no, writer))
        return results

    with ThreadPoolExecutor(writers) as pool:
        per_writer = list(pool.map(worker, range(writers)))
    winners_per_round = [sum(w[r] for w in per_writer) for r in range(rounds)]
    assert winners_per_round == [1] * rounds
    for round_no in range(rounds):
        winner = next(w for w in range(writers) if per_writer[w][round_no])
        assert store.get(f"race/{round_no:04d}") == f"writer-{winner}".encode()


def test_race_compare_and_swap_has_exactly_one_winner_every_round(store):
    """16 threads read the same ETag and race to swap it, 200 rounds: exactly one wins each round."""
    rounds, writers = 200, 16
    key = "cas/head.json"
    store.put_if_absent(key, b"round-start")
    barrier = threading.Barrier(writers)
    etags: dict[int, str] = {}

    def worker(writer: int) -> list[bool]:
        results = []
        for round_no in range(rounds):
            if writer == 0:
                etags[round_no] = store.get_blob(key).etag
            barrier.wait()
            try:
                store.put_if_match(key, f"{round_no}:{writer}".encode(), etags[round_no])
                results.append(True)
            except PreconditionFailedError:
                results.append(False)
            barrier.wait()
        return results

    with ThreadPoolExecutor(writers) as pool:
        per_writer = list(pool.map(worker, range(writers)))
    winners_per_round = [sum(w[r] for w in per_writer) for r in range(rounds)]
    assert winners_per_round == [1] * rounds
    last_winner = next(w for w in range(writers) if per_writer[w][rounds - 1])
    assert store.get(key) == f"{rounds - 1}:{last_winner}".encode()
