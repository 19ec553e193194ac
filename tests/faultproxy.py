"""A small HTTP proxy on 127.0.0.1 that injects faults in front of the S3 test server.

Each incoming request takes the next fault from a script (a list the test
sets), then falls back to passing requests through:

* ``"503"``: answer 503 SlowDown without forwarding;
* ``"slow"``: wait ``slow_seconds`` before answering (longer than the client's read timeout);
* ``"reset"``: read the request and close the connection without answering;
* ``"pass"``: forward to the upstream server.

It is bounded: it serves until ``stop()`` and counts what it did.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FaultProxy:
    def __init__(self, upstream_port: int, slow_seconds: float = 3.0) -> None:
        self.upstream_port = upstream_port
        self.slow_seconds = slow_seconds
        self.script: list[str] = []
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fault = proxy._next()
                if fault == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault == "503":
                    payload = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
                    self.send_response(503)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if fault == "slow":
                    time.sleep(proxy.slow_seconds)
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            def _safe_handle(self):
                try:
                    self._handle()
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up (timeout): expected under "slow"

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _safe_handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_port
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _next(self) -> str:
        with self._lock:
            fault = self.script.pop(0) if self.script else "pass"
            self.counts[fault] = self.counts.get(fault, 0) + 1
            return fault

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
