"""The seeded Cloudflare Workers tail TraceItem generator (parquedb_ibis.tail.sample)."""

from __future__ import annotations

import collections
import datetime as dt
import json
import re
import statistics

import pytest

from parquedb_ibis.errors import ValidationError
from parquedb_ibis.tail.sample import (
    CRONS,
    DEFAULT_START,
    LEVELS,
    OUTCOMES,
    generate_trace_items,
    iter_trace_items,
)

UTC = dt.timezone.utc
START_MS = int(DEFAULT_START.timestamp() * 1000)
DAY_MS = 86_400_000
CRON_PERIODS = dict(CRONS)
METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
NEWER_FIELDS = ("scriptVersion", "entrypoint", "executionModel", "truncated")


@pytest.fixture(scope="module")
def items() -> list[dict]:
    return generate_trace_items(20_000, seed=11)


def requests_of(items):
    return [item for item in items if "request" in item["event"]]


def statuses(items):
    return [item["event"]["response"]["status"] for item in requests_of(items) if "response" in item["event"]]


# -- determinism ----------------------------------------------------------------------------


def test_same_seed_gives_the_same_items():
    assert generate_trace_items(2_000, seed=5) == generate_trace_items(2_000, seed=5)


def test_other_seeds_give_other_items():
    assert generate_trace_items(500, seed=5) != generate_trace_items(500, seed=6)


def test_iterator_yields_what_the_list_holds():
    assert list(iter_trace_items(3_000, seed=2)) == generate_trace_items(3_000, seed=2)


def test_zero_items_is_an_empty_list():
    assert generate_trace_items(0) == []


# -- shapes (upstream-format.md §8.1) --------------------------------------------------------


def test_every_item_has_the_trace_item_shape(items):
    for item in items:
        assert isinstance(item["scriptName"], str) and item["outcome"] in OUTCOMES
        assert isinstance(item["eventTimestamp"], int)
        assert isinstance(item["cpuTime"], int) and isinstance(item["wallTime"], int)
        assert 0 <= item["cpuTime"] <= item["wallTime"]
        assert isinstance(item["diagnosticsChannelEvents"], list)
        for log in item["logs"]:
            assert set(log) == {"timestamp", "level", "message"}
            assert log["level"] in LEVELS and isinstance(log["message"], list) and log["message"]
            assert item["eventTimestamp"] <= log["timestamp"] <= item["eventTimestamp"] + item["wallTime"]
        for exception in item["exceptions"]:
            assert set(exception) == {"name", "message", "timestamp"}
            assert isinstance(exception["name"], str) and isinstance(exception["message"], str)
            assert item["eventTimestamp"] <= exception["timestamp"] <= item["eventTimestamp"] + item["wallTime"]
    json.dumps(items)  # what TailDO writes as NDJSON lines


def test_request_events_have_url_method_headers_cf_and_status(items):
    for item in requests_of(items):
        event = item["event"]
        request = event["request"]
        assert set(event) <= {"request", "response"}
        assert re.match(r"^https://[a-z.]+\.example\.com/", request["url"])
        assert request["method"] in METHODS
        assert re.match(r"^[0-9a-f]{16}-[A-Z]{3}$", request["headers"]["cf-ray"])
        assert request["headers"]["user-agent"]
        cf = request["cf"]
        assert re.match(r"^[A-Z]{3}$", cf["colo"]) and re.match(r"^[A-Z]{2}$", cf["country"])
        assert request["headers"]["cf-ray"].endswith(cf["colo"])
        if "response" in event:
            assert isinstance(event["response"]["status"], int) and 100 <= event["response"]["status"] <= 599


def test_scheduled_events_have_no_request_and_align_to_their_cron(items):
    scheduled = [item for item in items if "scheduledTime" in item["event"]]
    assert 0.02 < len(scheduled) / len(items) < 0.04
    for item in scheduled:
        event = item["event"]
        assert set(event) == {"scheduledTime", "cron"} and event["cron"] in CRON_PERIODS
        assert event["scheduledTime"] <= item["eventTimestamp"] < event["scheduledTime"] + 1_000
        if event["scheduledTime"] > START_MS + CRON_PERIODS[event["cron"]]:
            assert event["scheduledTime"] % CRON_PERIODS[event["cron"]] == 0


def test_several_scripts_colos_countries_methods_and_path_patterns(items):
    scripts = collections.Counter(item["scriptName"] for item in items)
    colos = {item["event"]["request"]["cf"]["colo"] for item in requests_of(items)}
    countries = {item["event"]["request"]["cf"]["country"] for item in requests_of(items)}
    methods = {item["event"]["request"]["method"] for item in requests_of(items)}
    ids = re.compile(r"/(?:[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}|[0-9a-f]{8}|\d+)(?=[./]|$)")
    paths = {ids.sub("/:id", item["event"]["request"]["url"].split("?")[0]) for item in requests_of(items)}
    assert len(scripts) >= 6 and min(scripts.values()) > 100
    assert len(colos) >= 15 and len(countries) >= 10 and methods >= {"GET", "POST", "PUT", "DELETE"}
    assert 15 <= len(paths) < 200  # ids vary, patterns repeat


def test_newer_optional_fields_are_sometimes_missing(items):
    with_fields = [item for item in items if "scriptVersion" in item]
    assert 0.5 < len(with_fields) / len(items) < 0.95
    for item in items:
        present = [key in item for key in NEWER_FIELDS]
        assert all(present) or not any(present)
    for item in with_fields:
        assert re.match(r"^[0-9a-f-]{36}$", item["scriptVersion"]["id"])
        assert item["executionModel"] in ("stateless", "durableObject") and isinstance(item["truncated"], bool)
    versions = {item["scriptVersion"]["id"] for item in with_fields if item["scriptName"] == "api-gateway"}
    assert len(versions) == 2  # one deploy during the span


# -- realism -----------------------------------------------------------------------------------


def test_error_shares_are_realistic(items):
    codes = statuses(items)
    server = sum(code >= 500 for code in codes) / len(codes)
    client = sum(400 <= code < 500 for code in codes) / len(codes)
    failed = sum(item["outcome"] != "ok" for item in items) / len(items)
    assert 0.02 <= server <= 0.05
    assert 0.03 <= client <= 0.12
    assert 0.01 <= failed <= 0.06
    assert set(collections.Counter(item["outcome"] for item in items)) == set(OUTCOMES)


def test_failures_carry_exceptions_error_logs_and_heavier_timings(items):
    for item in items:
        if item["outcome"] == "exception":
            assert item["exceptions"] and item["event"].get("response", {}).get("status", 500) == 500
    failed = [item for item in items if item["outcome"] != "ok"]
    ok = [item for item in items if item["outcome"] == "ok"]
    assert statistics.median(i["cpuTime"] for i in failed) > statistics.median(i["cpuTime"] for i in ok)
    assert statistics.median(i["wallTime"] for i in failed) > 2 * statistics.median(i["wallTime"] for i in ok)
    error_share = {
        name: sum(log["level"] == "error" for i in group for log in i["logs"]) / max(1, sum(len(i["logs"]) for i in group))
        for name, group in (("failed", failed), ("ok", ok))
    }
    assert error_share["failed"] > 3 * error_share["ok"]
    names = {e["name"] for item in items for e in item["exceptions"]}
    assert {"TypeError", "Error"} <= names


def test_traffic_follows_a_diurnal_pattern(items):
    hours = collections.Counter((item["eventTimestamp"] // 3_600_000) % 24 for item in requests_of(items))
    peak, trough = max(hours, key=hours.get), min(hours, key=hours.get)
    assert 12 <= peak <= 18 and (trough <= 6 or trough >= 23)
    assert hours[peak] > 2 * hours[trough]


# -- time range -----------------------------------------------------------------------------------


def test_timestamps_lie_in_the_span_in_order(items):
    stamps = [item["eventTimestamp"] for item in items]
    assert stamps == sorted(stamps)
    assert START_MS <= stamps[0] and stamps[-1] < START_MS + DAY_MS
    assert stamps[-1] - stamps[0] > 0.95 * DAY_MS


@pytest.mark.parametrize(
    "start, start_ms",
    [
        (dt.datetime(2026, 3, 1, 12, tzinfo=UTC), 1772366400000),
        (dt.datetime(2026, 3, 1, 12), 1772366400000),  # naive means UTC
        (1772366400000, 1772366400000),
    ],
)
def test_custom_start_and_span(start, start_ms):
    batch = generate_trace_items(2_000, seed=1, start=start, span=dt.timedelta(minutes=30))
    stamps = [item["eventTimestamp"] for item in batch]
    assert start_ms <= min(stamps) and max(stamps) < start_ms + 30 * 60_000
    scheduled = [item["event"]["scheduledTime"] for item in batch if "scheduledTime" in item["event"]]
    assert scheduled and all(start_ms <= s < start_ms + 30 * 60_000 for s in scheduled)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": -1}, "non-negative integer"),
        ({"n": 10, "span": dt.timedelta(0)}, "span must be positive"),
        ({"n": 10, "start": "2026-01-01"}, "datetime or epoch ms"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        generate_trace_items(**kwargs)


def test_the_iterator_streams_the_same_items_as_the_list():
    streamed = list(iter_trace_items(2_000, seed=4))
    assert streamed == generate_trace_items(2_000, seed=4)
