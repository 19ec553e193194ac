"""Test helpers shipped with the package: a real S3-compatible server on 127.0.0.1.

:class:`MotoServer` runs moto's S3 server in a subprocess bound to 127.0.0.1
on a free port, with its requests serialized: moto checks a conditional PUT
and then writes without a lock, so two racing writers could both win;
serialized, every request is atomic, which is what S3 and R2 guarantee.

``python -m parquedb_ibis._testing [--auth]`` is the subprocess: it prints
``PORT <n>`` and serves until killed. With ``--auth`` moto checks credentials
(unknown access keys get 403), for permission tests. Needs ``moto[server]``
(a dev dependency).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import urllib.request

TEST_KEY, TEST_SECRET = "testing-key", "testing-secret"


class MotoServer:
    """A running moto server subprocess on 127.0.0.1, stopped by its own handle."""

    def __init__(self, *args: str, buckets: tuple[str, ...] = ()) -> None:
        self.buckets = buckets
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "parquedb_ibis._testing", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"moto server did not start: {line!r}")
        self.port = int(line.split()[1])
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def options(self, **extra: object) -> dict[str, object]:
        """Keyword options for connect()/open_store() that reach this server."""
        return {"endpoint": self.endpoint, "access_key_id": TEST_KEY, "secret_access_key": TEST_SECRET,
                "region": "us-east-1", **extra}

    def reset(self) -> None:
        """Forget every bucket and object, then create ``self.buckets`` again."""
        req = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()
        if self.buckets:
            import boto3

            client = boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=TEST_KEY,
                                  aws_secret_access_key=TEST_SECRET, region_name="us-east-1")
            for bucket in self.buckets:
                client.create_bucket(Bucket=bucket)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()

    def __enter__(self) -> MotoServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve() -> None:
    """Serve moto's S3 on 127.0.0.1 and a free port, one request at a time."""
    if "--auth" in sys.argv:
        os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serialized(environ, start_response):
        with lock:
            return list(app(environ, start_response))

    server = make_server("127.0.0.1", 0, serialized, threaded=True)
    print(f"PORT {server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    serve()
