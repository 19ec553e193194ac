"""Object-store layer: our puts and gets vs the raw client/filesystem calls they wrap."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import boto3

from bench.harness import Case
from parquedb_ibis._testing import TEST_KEY, TEST_SECRET, MotoServer
from parquedb_ibis.store import open_store

N_OBJECTS = 200
PAYLOAD = os.urandom(64 * 1024)


def _local_setup():
    root = Path(tempfile.mkdtemp(prefix="bench-store-"))
    return {"root": root, "store": open_store(str(root / "ours"))}


def _local_baseline(state) -> int:
    base = state["root"] / "raw"
    base.mkdir(exist_ok=True)
    for i in range(N_OBJECTS):
        path = base / f"obj-{i}"
        tmp = base / f".obj-{i}.tmp"
        with open(tmp, "wb") as fh:  # the same durability as ours: write, fsync, rename
            fh.write(PAYLOAD)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    return N_OBJECTS


def _local_candidate(state) -> int:
    for i in range(N_OBJECTS):
        state["store"].put(f"obj-{i}", PAYLOAD)
    return N_OBJECTS


def _s3_setup():
    server = MotoServer(buckets=("bench",))
    server.reset()
    client = boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id=TEST_KEY,
                          aws_secret_access_key=TEST_SECRET, region_name="us-east-1")
    return {"server": server, "client": client, "store": open_store("s3://bench/ours", **server.options())}


def _s3_baseline(state) -> int:
    for i in range(N_OBJECTS // 4):
        state["client"].put_object(Bucket="bench", Key=f"raw/obj-{i}", Body=PAYLOAD)
    return N_OBJECTS // 4


def _s3_candidate(state) -> int:
    for i in range(N_OBJECTS // 4):
        state["store"].put(f"obj-{i}", PAYLOAD)
    return N_OBJECTS // 4


def cases() -> list[Case]:
    return [
        Case("store", f"local put ×{N_OBJECTS} (64 KiB)", _local_setup, _local_baseline, _local_candidate,
             baseline_label="write+fsync+rename", unit="puts"),
        Case("store", f"S3 put ×{N_OBJECTS // 4} (64 KiB, moto)", _s3_setup, _s3_baseline, _s3_candidate,
             baseline_label="boto3 put_object", unit="puts",
             teardown=lambda s: s["server"].stop()),
    ]
