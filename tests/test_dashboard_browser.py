"""The dashboard in a real browser: Voilà serves notebooks/worker-dashboard.ipynb, headless Debian chromium opens it.

Checks that the Vega-Lite charts render (vega-embed SVGs) and that picking a
script in the dropdown re-renders them; saves a screenshot to tests/artifacts/.
Chromium must be Debian's (``/usr/bin/chromium``, or ``$CHROMIUM``): no browser
is ever downloaded. Without it the test fails (CI installs it: ``make test``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "notebooks" / "worker-dashboard.ipynb"
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
SERVER_START_S = 90
RENDER_MS = 180_000
UPDATE_MS = 90_000

pytestmark = pytest.mark.browser


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def voila(tmp_path):
    """Voilà on 127.0.0.1 and a free port, serving the dashboard app; stopped by its handle."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PARQUEDB_URL"}
    log = open(tmp_path / "voila.log", "w+")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "voila", str(APP), "--no-browser", "--Voila.ip=127.0.0.1", f"--port={port}",
         "--VoilaExecutor.timeout=240", "--show_tracebacks=True"],
        cwd=APP.parent, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"voila exited with {proc.returncode}:\n{log.read()[-4000:]}")
            try:
                with urllib.request.urlopen(url + "voila/static/voila.js", timeout=5) as resp:
                    resp.read(1)
                break
            except urllib.error.HTTPError:
                break  # it answers
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail(f"voila did not answer on {url} within {SERVER_START_S} s")
                time.sleep(0.3)
        yield url, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_dashboard_charts_render_and_follow_the_script_filter(voila):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: the browser test needs Debian's chromium "
                    "(apt-get install chromium; `make test` installs it), never a downloaded browser")
    from playwright.sync_api import sync_playwright

    url, log = voila
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.set_default_timeout(RENDER_MS)
            page.goto(url, wait_until="domcontentloaded")
            try:
                page.locator(".pqdb-traffic .vega-embed svg").first.wait_for(state="attached")
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "worker-dashboard-failed.png"), full_page=True)
                log.seek(0)
                raise AssertionError(f"no chart rendered; voila log:\n{log.read()[-4000:]}") from None
            assert page.locator(".pqdb-dashboard .vega-embed svg").count() >= 4  # traffic, latency, status, colos
            traffic = page.locator(".pqdb-traffic .vega-embed svg").first
            before = traffic.inner_html()
            assert "Requests per minute · all scripts" in traffic.text_content()

            page.locator(".widget-dropdown", has_text="Script").locator("select").select_option("api-gateway")
            page.wait_for_function(
                "() => (document.querySelector('.pqdb-traffic .vega-embed svg') || {}).textContent"
                "?.includes('Requests per minute · api-gateway')", timeout=UPDATE_MS)
            after = page.locator(".pqdb-traffic .vega-embed svg").first.inner_html()
            assert after != before
            assert "api-gateway" in page.locator(".pqdb-latency .vega-embed svg").first.text_content()
            page.screenshot(path=str(ARTIFACTS / "worker-dashboard.png"), full_page=True)
        finally:
            browser.close()
