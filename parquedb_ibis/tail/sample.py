"""Seeded, realistic Cloudflare Workers tail ``TraceItem`` dicts, for demos, tests and benchmarks.

The items have the shape a tail consumer receives and upstream ParqueDB's
TailDO stores (upstream-format.md §8.1)::

    {scriptName, outcome, eventTimestamp (epoch ms),
     event: {request: {url, method, headers, cf: {colo, country, ...}}, response: {status}}
            | {scheduledTime, cron},
     logs: [{timestamp, level, message: [...]}],
     exceptions: [{name, message, timestamp}],
     diagnosticsChannelEvents: [...],
     cpuTime, wallTime,                               # ms
     scriptVersion, entrypoint, executionModel, truncated}   # newer fields, sometimes absent

What makes them realistic:

* several scripts (an API gateway, auth, a static-asset router, webhooks, an
  image resizer, a Durable Object chat service and a cron script), each with
  its own URL path patterns, methods, latency and failure profile;
* colos with their countries, cities and time zones; user agents; ``cf-ray``;
* status codes with about 2-5 % 5xx and 5-10 % 4xx among requests, outcomes
  ``ok``, ``exception``, ``exceededCpu``, ``exceededMemory``, ``canceled`` and
  ``responseStreamDisconnected``, exceptions with real-looking names and
  messages, console logs whose level mix worsens on failures;
* ``cpuTime``/``wallTime`` drawn log-normal per script, heavier for failures;
* a diurnal traffic curve (peak around 15:00 UTC, trough around 03:00 UTC),
  a short error incident per day of span, and a deploy (new ``scriptVersion``)
  per script;
* scheduled events aligned to their cron schedule (``* * * * *``,
  ``*/5 * * * *``, ``*/15 * * * *``), with no request.

Items come in non-decreasing ``eventTimestamp`` order, all within
``[start, start + span)``. The same ``seed`` (and arguments) gives the same
items; the default ``start`` is a fixed instant (2025-01-01 UTC), not "now",
so runs are reproducible. Only the standard library is used.
"""

from __future__ import annotations

import bisect
import datetime as dt
import heapq
import itertools
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from parquedb_ibis.errors import ValidationError

DEFAULT_START = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
DEFAULT_SPAN = dt.timedelta(hours=24)

#: Share of items that are cron (scheduled) events.
SCHEDULED_SHARE = 0.03
#: The cron schedules used, with their period in ms (scheduled events snap to these ticks).
CRONS: tuple[tuple[str, int], ...] = (("* * * * *", 60_000), ("*/5 * * * *", 300_000), ("*/15 * * * *", 900_000))
_MAX_CRON_PERIOD = max(period for _, period in CRONS)

OUTCOMES = ("ok", "exception", "exceededCpu", "exceededMemory", "canceled", "responseStreamDisconnected")
LEVELS = ("debug", "info", "log", "warn", "error")

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


class _Choice:
    """Weighted choice with precomputed cumulative weights (faster than random.choices per call)."""

    __slots__ = ("items", "cum", "total")

    def __init__(self, pairs: Sequence[tuple[Any, float]]) -> None:
        self.items = [item for item, _ in pairs]
        self.cum = list(itertools.accumulate(weight for _, weight in pairs))
        self.total = self.cum[-1]

    def pick(self, rng: random.Random) -> Any:
        return self.items[bisect.bisect_right(self.cum, rng.random() * self.total)]


@dataclass(frozen=True)
class Route:
    """A URL path pattern of one script and how requests to it behave."""

    pattern: str  # "{id}", "{uuid}", "{hash}", "{n}" placeholders
    weight: float
    methods: tuple[tuple[str, float], ...] = (("GET", 1.0),)
    query: str = ""  # "search" | "oauth" | ""
    client_error: float = 0.07  # share of 4xx among ok outcomes
    redirect: float = 0.02  # share of 3xx among ok outcomes


@dataclass(frozen=True)
class Script:
    """One Worker script's traffic profile."""

    name: str
    weight: float  # share of request traffic
    host: str
    routes: tuple[Route, ...]
    cpu_ms: float  # median CPU time of a successful request
    io_ms: float  # median extra wall time (subrequests, I/O)
    failure: float = 1.0  # multiplier on exception rates
    cpu_exceeded: float = 0.002
    execution_model: str = "stateless"
    entrypoint: str = "default"
    modern: float = 0.8  # share of items that carry the newer optional fields


SCRIPTS: tuple[Script, ...] = (
    Script("api-gateway", 40, "api.example.com", (
        Route("/v1/users/{id}", 25, (("GET", 85), ("PATCH", 10), ("DELETE", 5))),
        Route("/v1/users", 8, (("GET", 60), ("POST", 40)), client_error=0.09),
        Route("/v1/orders/{uuid}", 18, (("GET", 80), ("PUT", 15), ("DELETE", 5))),
        Route("/v1/orders", 12, (("POST", 70), ("GET", 30)), client_error=0.08),
        Route("/v1/search", 15, (("GET", 100),), query="search"),
        Route("/v1/products/{id}/reviews", 10, (("GET", 75), ("POST", 25))),
        Route("/health", 6, (("GET", 90), ("HEAD", 10)), client_error=0.0),
        Route("/v1/{any}", 1, (("GET", 60), ("OPTIONS", 40)), client_error=0.6),
    ), cpu_ms=3.0, io_ms=35.0),
    Script("auth-worker", 14, "auth.example.com", (
        Route("/login", 30, (("POST", 100),), client_error=0.14),
        Route("/token", 35, (("POST", 100),), client_error=0.08),
        Route("/logout", 10, (("POST", 100),)),
        Route("/oauth/callback", 15, (("GET", 100),), query="oauth", client_error=0.05, redirect=0.8),
        Route("/.well-known/jwks.json", 10, (("GET", 100),), client_error=0.0, redirect=0.1),
    ), cpu_ms=7.0, io_ms=20.0, failure=1.2),
    Script("static-router", 30, "static.example.com", (
        Route("/assets/{hash}.js", 35, (("GET", 97), ("HEAD", 3)), client_error=0.03, redirect=0.3),
        Route("/assets/{hash}.css", 20, (("GET", 100),), client_error=0.03, redirect=0.3),
        Route("/img/{id}.webp", 35, (("GET", 100),), client_error=0.06, redirect=0.2),
        Route("/favicon.ico", 10, (("GET", 100),), client_error=0.08, redirect=0.5),
    ), cpu_ms=0.8, io_ms=12.0, failure=0.3, cpu_exceeded=0.0002),
    Script("webhook-handler", 6, "hooks.example.com", (
        Route("/stripe", 40, (("POST", 100),), client_error=0.03),
        Route("/github", 40, (("POST", 100),), client_error=0.05),
        Route("/slack/events", 20, (("POST", 100),), client_error=0.02),
    ), cpu_ms=4.0, io_ms=80.0, failure=1.5),
    Script("image-resizer", 5, "images.example.com", (
        Route("/cdn-cgi/image/width={n},quality=80/{id}.jpg", 100, (("GET", 100),), client_error=0.03, redirect=0.05),
    ), cpu_ms=35.0, io_ms=60.0, failure=1.3, cpu_exceeded=0.02, modern=0.5),
    Script("chat-room", 5, "chat.example.com", (
        Route("/room/{id}/websocket", 30, (("GET", 100),), client_error=0.02),
        Route("/room/{id}/messages", 70, (("GET", 60), ("POST", 40)), client_error=0.04),
    ), cpu_ms=2.0, io_ms=15.0, execution_model="durableObject", entrypoint="ChatRoom", modern=0.95),
)

#: The script that runs the cron triggers (besides the API gateway's cleanup job).
CRON_SCRIPTS: tuple[tuple[str, float], ...] = (("cron-jobs", 70), ("api-gateway", 30))
_CRON_PROFILE = Script("cron-jobs", 0, "", (), cpu_ms=15.0, io_ms=250.0, failure=2.0, cpu_exceeded=0.01)

_SCRIPTS_BY_NAME = {s.name: s for s in SCRIPTS}

#: (colo, country, city, continent, timezone, weight)
COLOS: tuple[tuple[str, str, str, str, str, float], ...] = (
    ("IAD", "US", "Ashburn", "NA", "America/New_York", 12),
    ("EWR", "US", "Newark", "NA", "America/New_York", 7),
    ("ORD", "US", "Chicago", "NA", "America/Chicago", 7),
    ("DFW", "US", "Dallas", "NA", "America/Chicago", 6),
    ("LAX", "US", "Los Angeles", "NA", "America/Los_Angeles", 8),
    ("SJC", "US", "San Jose", "NA", "America/Los_Angeles", 5),
    ("YYZ", "CA", "Toronto", "NA", "America/Toronto", 3),
    ("GRU", "BR", "São Paulo", "SA", "America/Sao_Paulo", 4),
    ("LHR", "GB", "London", "EU", "Europe/London", 8),
    ("AMS", "NL", "Amsterdam", "EU", "Europe/Amsterdam", 5),
    ("FRA", "DE", "Frankfurt", "EU", "Europe/Berlin", 7),
    ("CDG", "FR", "Paris", "EU", "Europe/Paris", 5),
    ("WAW", "PL", "Warsaw", "EU", "Europe/Warsaw", 2),
    ("BOM", "IN", "Mumbai", "AS", "Asia/Kolkata", 4),
    ("SIN", "SG", "Singapore", "AS", "Asia/Singapore", 4),
    ("NRT", "JP", "Tokyo", "AS", "Asia/Tokyo", 5),
    ("ICN", "KR", "Seoul", "AS", "Asia/Seoul", 2),
    ("SYD", "AU", "Sydney", "OC", "Australia/Sydney", 3),
    ("JNB", "ZA", "Johannesburg", "AF", "Africa/Johannesburg", 1),
)

USER_AGENTS = _Choice((
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", 30),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15", 15),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148", 18),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36", 14),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", 5),
    ("curl/8.7.1", 4),
    ("python-requests/2.32.3", 4),
    ("Go-http-client/2.0", 3),
    ("Stripe/1.0 (+https://stripe.com/docs/webhooks)", 2),
    ("GitHub-Hookshot/8c1b3f2", 2),
    ("Googlebot/2.1 (+http://www.google.com/bot.html)", 3),
))
ASNS = _Choice((
    ((7922, "Comcast Cable"), 10), ((701, "Verizon Business"), 6), ((3320, "Deutsche Telekom AG"), 5),
    ((2856, "British Telecommunications PLC"), 4), ((4713, "NTT Communications"), 3),
    ((16509, "Amazon.com, Inc."), 6), ((15169, "Google LLC"), 4), ((13335, "Cloudflare, Inc."), 1),
    ((9498, "Bharti Airtel Ltd."), 3), ((28573, "Claro NXT Telecomunicacoes"), 2),
))
PROTOCOLS = _Choice((("HTTP/2", 60), ("HTTP/3", 25), ("HTTP/1.1", 15)))
TLS_VERSIONS = _Choice((("TLSv1.3", 85), ("TLSv1.2", 15)))
SEARCH_TERMS = ("shoes", "red dress", "laptop stand", "usb-c hub", "coffee beans", "garden hose", "desk lamp",
                "wireless mouse", "yoga mat", "phone case", "running socks", "tea kettle")

_OK_STATUS_5XX = 0.018  # upstream/origin failures behind an ok outcome
_SERVER_ERRORS = _Choice(((502, 40), (503, 30), (500, 20), (504, 10)))
_CLIENT_ERRORS = _Choice(((404, 45), (401, 15), (400, 14), (403, 8), (429, 9), (409, 4), (422, 3), (405, 2)))
_REDIRECTS = _Choice(((304, 60), (302, 25), (301, 15)))
_FAILURE_OUTCOMES = (  # (outcome, base probability per request)
    ("exception", 0.010),
    ("exceededMemory", 0.0005),
    ("canceled", 0.006),
    ("responseStreamDisconnected", 0.001),
)
_EXCEPTIONS = _Choice((
    (("TypeError", "Cannot read properties of undefined (reading 'id')"), 20),
    (("TypeError", "fetch failed"), 12),
    (("Error", "D1_ERROR: no such table: sessions"), 6),
    (("Error", "Network connection lost."), 10),
    (("SyntaxError", "Unexpected token '<', \"<!DOCTYPE \"... is not valid JSON"), 9),
    (("RangeError", "Maximum call stack size exceeded"), 3),
    (("Error", "Too many subrequests."), 4),
    (("ReferenceError", "env is not defined"), 3),
    (("Error", "KV GET failed: 500 Internal Server Error"), 6),
    (("Error", "Durable Object reset because its code was updated."), 4),
    (("AbortError", "The operation was aborted due to timeout"), 8),
))
_LEVELS_OK = _Choice((("log", 35), ("info", 30), ("debug", 20), ("warn", 10), ("error", 5)))
_LEVELS_FAILED = _Choice((("log", 20), ("info", 15), ("debug", 10), ("warn", 20), ("error", 35)))
_LOG_2_5, _LOG_3, _LOG_2000, _LOG_25 = math.log(2.5), math.log(3.0), math.log(2_000), math.log(25)
_LOG_COUNT = _Choice(((0, 45), (1, 28), (2, 14), (3, 7), (4, 4), (6, 2)))


def generate_trace_items(
    n: int,
    *,
    seed: int = 0,
    start: dt.datetime | int | None = None,
    span: dt.timedelta = DEFAULT_SPAN,
) -> list[dict[str, Any]]:
    """``n`` trace items spread over ``[start, start + span)`` (see the module docstring).

    >>> items = generate_trace_items(1000, seed=7)
    >>> len(items), items == generate_trace_items(1000, seed=7)
    (1000, True)
    >>> {"scriptName", "outcome", "eventTimestamp", "event", "logs", "exceptions", "cpuTime", "wallTime"} <= set(items[0])
    True
    """
    return list(iter_trace_items(n, seed=seed, start=start, span=span))


def iter_trace_items(
    n: int,
    *,
    seed: int = 0,
    start: dt.datetime | int | None = None,
    span: dt.timedelta = DEFAULT_SPAN,
) -> Iterator[dict[str, Any]]:
    """Like :func:`generate_trace_items`, one item at a time (constant memory for any ``n``)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValidationError("generate_trace_items", f"n must be a non-negative integer, found {n!r}")
    start_ms = _start_ms(start)
    span_ms = int(span / dt.timedelta(milliseconds=1))
    if span_ms <= 0:
        raise ValidationError("generate_trace_items", f"span must be positive, found {span!r}")
    return _Generator(seed, start_ms, span_ms).items(n)


def _start_ms(start: dt.datetime | int | None) -> int:
    if start is None:
        start = DEFAULT_START
    if isinstance(start, dt.datetime):
        if start.tzinfo is None:
            start = start.replace(tzinfo=dt.timezone.utc)
        return (start - _EPOCH) // dt.timedelta(milliseconds=1)
    if isinstance(start, bool) or not isinstance(start, int):
        raise ValidationError("generate_trace_items", f"start must be a datetime or epoch ms, found {start!r}")
    return start


def diurnal_weight(hour_utc: float) -> float:
    """Relative traffic at ``hour_utc`` (0-24): peak about 15:00 UTC, trough about 03:00 UTC.

    >>> round(diurnal_weight(15) / diurnal_weight(3), 1)
    2.9
    """
    angle = 2 * math.pi * (hour_utc - 15) / 24
    return 1.0 + 0.55 * math.cos(angle) + 0.12 * math.cos(2 * angle)


class _TimeSampler:
    """Inverse CDF of the diurnal intensity over the span (piecewise linear on a fine grid)."""

    def __init__(self, start_ms: int, span_ms: int, bins: int = 4096) -> None:
        self.start_ms = start_ms
        self.span_ms = span_ms
        self.bins = max(1, min(bins, span_ms))
        width = span_ms / self.bins
        cum = [0.0]
        for i in range(self.bins):
            hour = ((start_ms + (i + 0.5) * width) / 3_600_000) % 24
            cum.append(cum[-1] + diurnal_weight(hour) * width)
        self.cum = cum
        self.width = width

    def at(self, u: float) -> int:
        """The time (ms) below which a share ``u`` of the traffic lies."""
        target = u * self.cum[-1]
        i = min(bisect.bisect_right(self.cum, target) - 1, self.bins - 1)
        low, high = self.cum[i], self.cum[i + 1]
        frac = (target - low) / (high - low) if high > low else 0.0
        ms = self.start_ms + int((i + frac) * self.width)
        return min(ms, self.start_ms + self.span_ms - 1)


class _Generator:
    def __init__(self, seed: int, start_ms: int, span_ms: int) -> None:
        self.rng = random.Random(seed)
        self.start_ms = start_ms
        self.span_ms = span_ms
        self.times = _TimeSampler(start_ms, span_ms)
        self.scripts = _Choice([(s, s.weight) for s in SCRIPTS])
        self.cron_scripts = _Choice(CRON_SCRIPTS)
        self.crons = _Choice(((CRONS[0], 60), (CRONS[1], 30), (CRONS[2], 10)))
        self.colos = _Choice([(c, c[5]) for c in COLOS])
        self.colo_cf = {c[0]: {"colo": c[0], "country": c[1], "city": c[2], "continent": c[3], "timezone": c[4]} for c in COLOS}
        self.routes = {  # (route, method) pairs, weighted by route share x method share
            s.name: _Choice([((r, m), r.weight * w / sum(x for _, x in r.methods)) for r in s.routes for m, w in r.methods])
            for s in SCRIPTS
        }
        rng = self.rng
        # One deploy per script somewhere in the span: items before it carry the old version.
        self.deploys = {
            s.name: (start_ms + int(rng.uniform(0.2, 0.8) * span_ms), _version_id(rng), _version_id(rng))
            for s in (*SCRIPTS, _CRON_PROFILE)
        }
        # One short error incident per day of span, on one script.
        days = max(1, round(span_ms / 86_400_000))
        self.incidents = []
        for _ in range(days):
            begin = start_ms + int(rng.random() * span_ms)
            self.incidents.append((begin, begin + rng.randint(15, 45) * 60_000, self.scripts.pick(rng).name))
        self.incident_windows: dict[str, list[tuple[int, int]]] = {}
        for begin, end, name in self.incidents:
            self.incident_windows.setdefault(name, []).append((begin, end))

    # -- the stream --------------------------------------------------------------------

    def items(self, n: int) -> Iterator[dict[str, Any]]:
        """``n`` items in time order. Scheduled events snap back to their cron tick, so they are
        held in a heap until no later-sampled item can precede them."""
        rng = self.rng
        pending: list[tuple[int, int, dict[str, Any]]] = []
        seq = itertools.count()
        x = 1.0
        for i in range(n, 0, -1):
            x *= (1.0 - rng.random()) ** (1.0 / i)  # descending order statistics of n uniforms
            t = self.times.at(1.0 - x)
            if rng.random() < SCHEDULED_SHARE:
                item = self.scheduled(t)
            else:
                item = self.request(t)
            heapq.heappush(pending, (item["eventTimestamp"], next(seq), item))
            horizon = t - _MAX_CRON_PERIOD
            while pending and pending[0][0] <= horizon:
                yield heapq.heappop(pending)[2]
        while pending:
            yield heapq.heappop(pending)[2]

    # -- one item ---------------------------------------------------------------------------

    def request(self, t: int) -> dict[str, Any]:
        rng = self.rng
        script: Script = self.scripts.pick(rng)
        route, method = self.routes[script.name].pick(rng)
        colo = self.colos.pick(rng)
        incident = self._incident(script.name, t)

        outcome = self._outcome(script, incident)
        status = self._status(route, method, outcome, incident)
        cpu, wall = self._timing(script, outcome)
        path = _fill(route.pattern, rng)
        url = f"https://{script.host}{path}{_query(route.query, rng)}"
        headers = {
            "cf-ray": f"{rng.getrandbits(64):016x}-{colo[0]}",
            "user-agent": USER_AGENTS.pick(rng),
            "accept": "application/json" if script.name != "static-router" else "*/*",
        }
        if method in ("POST", "PUT", "PATCH"):
            headers["content-type"] = "application/json"
        asn, org = ASNS.pick(rng)
        request = {
            "url": url,
            "method": method,
            "headers": headers,
            "cf": {
                **self.colo_cf[colo[0]],
                "asn": asn, "asOrganization": org, "httpProtocol": PROTOCOLS.pick(rng),
                "tlsVersion": TLS_VERSIONS.pick(rng), "clientTcpRtt": int(math.exp(_LOG_25 + 0.7 * rng.gauss(0.0, 1.0))),
            },
        }
        event: dict[str, Any] = {"request": request}
        if status is not None:
            event["response"] = {"status": status}
        logs = self._logs(t, wall, outcome, method, path, status)
        exceptions = self._exceptions(t, wall, outcome)
        return self._item(script, outcome, t, event, logs, exceptions, cpu, wall)

    def scheduled(self, t: int) -> dict[str, Any]:
        rng = self.rng
        cron, period = self.crons.pick(rng)
        name = self.cron_scripts.pick(rng)
        tick = t - (t % period)
        if tick < self.start_ms:
            tick = t  # the first partial period: no tick inside the span
        event_ts = min(t, tick + rng.randint(1, 900))
        profile = _SCRIPTS_BY_NAME.get(name, _CRON_PROFILE)
        outcome = self._outcome(_CRON_PROFILE, self._incident(name, t), scheduled=True)
        cpu, wall = self._timing(_CRON_PROFILE, outcome)
        logs = self._logs(event_ts, wall, outcome, None, cron, None)
        exceptions = self._exceptions(event_ts, wall, outcome)
        return self._item(profile, outcome, event_ts, {"scheduledTime": tick, "cron": cron}, logs, exceptions, cpu, wall)

    def _item(self, script: Script, outcome: str, t: int, event: dict[str, Any], logs: list[dict[str, Any]],
              exceptions: list[dict[str, Any]], cpu: int, wall: int) -> dict[str, Any]:
        rng = self.rng
        item: dict[str, Any] = {
            "scriptName": script.name,
            "outcome": outcome,
            "eventTimestamp": t,
            "event": event,
            "logs": logs,
            "exceptions": exceptions,
            "diagnosticsChannelEvents": [],
            "cpuTime": cpu,
            "wallTime": wall,
        }
        if rng.random() < 0.02:
            item["diagnosticsChannelEvents"] = [{
                "channel": "app:cache",
                "message": {"hit": rng.random() < 0.7, "key": f"k{int(rng.random() * 10_000)}"},
                "timestamp": t + int(rng.random() * (wall + 1 if wall > 0 else 1)),
            }]
        if rng.random() < script.modern:  # newer runtimes send these optional fields
            deploy_at, old_version, new_version = self.deploys[script.name]
            item["scriptVersion"] = {"id": new_version if t >= deploy_at else old_version}
            item["entrypoint"] = script.entrypoint
            item["executionModel"] = script.execution_model
            item["truncated"] = len(logs) >= 6 and rng.random() < 0.5
        return item

    def _incident(self, script: str, t: int) -> bool:
        for begin, end in self.incident_windows.get(script, ()):
            if begin <= t < end:
                return True
        return False

    def _outcome(self, script: Script, incident: bool, *, scheduled: bool = False) -> str:
        rng = self.rng
        r = rng.random()
        factor = script.failure * (8.0 if incident else 1.0)
        if r < script.cpu_exceeded:
            return "exceededCpu"
        r -= script.cpu_exceeded
        for outcome, base in _FAILURE_OUTCOMES:
            if scheduled and outcome in ("canceled", "responseStreamDisconnected"):
                continue
            p = base * (factor if outcome == "exception" else 1.0)
            if r < p:
                return outcome
            r -= p
        return "ok"

    def _status(self, route: Route, method: str, outcome: str, incident: bool) -> int | None:
        rng = self.rng
        if outcome == "exception":
            return 500
        if outcome in ("exceededCpu", "exceededMemory"):
            return 503
        if outcome == "canceled" and rng.random() < 0.7:
            return None  # the client went away before a response
        r = rng.random()
        server = _OK_STATUS_5XX * (5.0 if incident else 1.0)
        if r < server:
            return _SERVER_ERRORS.pick(rng)
        r -= server
        if r < route.client_error:
            return _CLIENT_ERRORS.pick(rng)
        r -= route.client_error
        if r < route.redirect and method in ("GET", "HEAD"):
            return _REDIRECTS.pick(rng)
        if route.pattern.endswith("/websocket"):
            return 101
        if method == "POST":
            return 201 if rng.random() < 0.6 else 200
        if method in ("DELETE", "OPTIONS"):
            return 204
        return 200

    def _timing(self, script: Script, outcome: str) -> tuple[int, int]:
        rng = self.rng
        heavy = outcome != "ok"
        exp, gauss = math.exp, rng.gauss
        cpu = exp(math.log(script.cpu_ms) + (_LOG_2_5 if heavy else 0.0) + 0.9 * gauss(0.0, 1.0))
        if outcome == "exceededCpu":
            cpu = 50.0 + rng.random() * 5.0  # the CPU limit, overshot a little
        wall = cpu + exp(math.log(script.io_ms) + (_LOG_3 if heavy else 0.0) + 1.1 * gauss(0.0, 1.0))
        if outcome == "canceled":
            wall += exp(_LOG_2000 + 0.8 * gauss(0.0, 1.0))
        return int(round(cpu)), int(round(wall))

    def _logs(self, t: int, wall: int, outcome: str, method: str | None, path: str, status: int | None
              ) -> list[dict[str, Any]]:
        rng = self.rng
        count = _LOG_COUNT.pick(rng) + (1 if outcome != "ok" else 0)
        if not count:
            return []
        levels = _LEVELS_OK if outcome == "ok" and (status or 200) < 500 else _LEVELS_FAILED
        random_ = rng.random
        span = wall + 1 if wall > 0 else 1
        offsets = [int(random_() * span)] if count == 1 else sorted(int(random_() * span) for _ in range(count))
        logs = []
        for offset in offsets:
            level = levels.pick(rng)
            logs.append({"timestamp": t + offset, "level": level, "message": _message(level, method, path, status, rng)})
        return logs

    def _exceptions(self, t: int, wall: int, outcome: str) -> list[dict[str, Any]]:
        rng = self.rng
        if outcome == "exception":
            first = _EXCEPTIONS.pick(rng)
            found = [first] if rng.random() < 0.85 else [first, _EXCEPTIONS.pick(rng)]
        elif outcome == "exceededCpu" and rng.random() < 0.7:
            found = [("Error", "Worker exceeded CPU time limit.")]
        elif outcome == "exceededMemory" and rng.random() < 0.7:
            found = [("Error", "Worker exceeded memory limit.")]
        else:
            return []
        span = wall + 1 if wall > 0 else 1
        return [{"name": name, "message": message, "timestamp": t + int(rng.random() * span)}
                for name, message in found]


def _version_id(rng: random.Random) -> str:
    raw = f"{rng.getrandbits(128):032x}"
    variant = "89ab"[int(raw[16], 16) & 3]
    return f"{raw[:8]}-{raw[8:12]}-4{raw[13:16]}-{variant}{raw[17:20]}-{raw[20:]}"


def _fill(pattern: str, rng: random.Random) -> str:
    if "{" not in pattern:
        return pattern
    out = pattern
    if "{id}" in out:
        out = out.replace("{id}", str(int(rng.paretovariate(1.2) * 100)))  # a few hot ids, a long tail
    if "{uuid}" in out:
        out = out.replace("{uuid}", _version_id(rng))
    if "{hash}" in out:
        out = out.replace("{hash}", f"{rng.getrandbits(32):08x}")
    if "{n}" in out:
        out = out.replace("{n}", str(rng.choice((160, 320, 640, 1280))))
    if "{any}" in out:
        out = out.replace("{any}", rng.choice(("wp-login.php", ".env", "admin", "graphql", "v2/users")))
    return out


def _query(kind: str, rng: random.Random) -> str:
    if kind == "search":
        term = rng.choice(SEARCH_TERMS).replace(" ", "%20")
        return f"?q={term}&page={1 + int(rng.expovariate(1.2))}"
    if kind == "oauth":
        return f"?code={rng.getrandbits(64):016x}&state={rng.getrandbits(32):08x}"
    return ""


def _message(level: str, method: str | None, path: str, status: int | None, rng: random.Random) -> list[Any]:
    pick = int(rng.random() * 4)
    if level == "error":
        if pick == 0:
            return ["upstream fetch failed:", f"{502 + int(rng.random() * 3)} from origin"]
        if pick == 1:
            return ["Unhandled rejection:", "TypeError: fetch failed"]
        if pick == 2:
            return ["D1_ERROR:", "database is locked"]
        return ["KV write failed", {"key": f"session:{rng.getrandbits(32):08x}", "attempt": 1 + int(rng.random() * 3)}]
    if level == "warn":
        if pick == 0:
            return ["slow upstream", {"ms": int(math.exp(_LOG_800 + 0.5 * rng.gauss(0.0, 1.0))), "upstream": "origin"}]
        if pick == 1:
            return ["rate limit approaching", {"remaining": int(rng.random() * 21)}]
        if pick == 2:
            return ["deprecated API version used:", "v1"]
        return ["retrying request", {"attempt": 1 + int(rng.random() * 3)}]
    if level == "debug":
        return ["cache", _CACHE_STATES[pick % 3], path]
    if method is None:
        return ["cron run", path, "done"] if pick < 2 else ["processed batch", {"rows": int(rng.random() * 5001)}]
    if pick < 2:
        return [f"{method} {path} -> {status if status is not None else 'no response'}"]
    if pick == 2:
        return ["user authenticated", {"userId": 1 + int(rng.random() * 50_000)}]
    return ["served from", _SOURCES[int(rng.random() * 3)]]


_LOG_800 = math.log(800)
_CACHE_STATES = ("HIT", "MISS", "STALE")
_SOURCES = ("cache", "origin", "kv")
