"""Shared fixtures: hypothesis profiles, the moto S3 server, and the store under test."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from parquedb_ibis._testing import TEST_KEY, TEST_SECRET, MotoServer

settings.register_profile("dev", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

BUCKETS = ("pqdb-test", "pqdb-other")
KEY, SECRET = TEST_KEY, TEST_SECRET


def S3Server(*args: str) -> MotoServer:
    """Start a moto server with the test buckets."""
    return MotoServer(*args, buckets=BUCKETS)


@pytest.fixture(scope="session")
def s3_server():
    server = S3Server()
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server):
    """The S3 test server with fresh, empty buckets for this test."""
    s3_server.reset()
    return s3_server


def store_options(server: MotoServer, **extra) -> dict:
    """Keyword options for connect()/open_store() that reach the test server."""
    return server.options(**extra)


@pytest.fixture
def s3_url(s3) -> tuple[str, dict]:
    return "s3://pqdb-test/tests", store_options(s3)


@pytest.fixture
def r2_url(s3) -> tuple[str, dict]:
    return "r2://pqdb-test/tests", store_options(s3)


@pytest.fixture(params=["local", "s3"])
def store_url(request, tmp_path) -> tuple[str, dict]:
    """Each store kind in turn, as (url, options): a local directory and the S3 test server."""
    if request.param == "local":
        return str(tmp_path / "store"), {}
    server = request.getfixturevalue("s3")
    return "s3://pqdb-test/tests", store_options(server)
