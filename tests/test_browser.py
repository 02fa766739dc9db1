"""The dashboard in a real browser: `streamlit run` on a free port against a small demo store,
every page loaded in headless Chromium (Debian's /usr/bin/chromium), no exception shown.

CI installs the browser with `apt-get install -y chromium`; without it this test is skipped
and says why.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tokentrail.dashboard import APP_PATH

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# url path -> text the page shows once its data has rendered
PAGES: dict[str, str] = {
    "": "Spend by model",  # Overview, the default page
    "breakdown": "Download CSV",
    "budgets": "Budget events",
    "traces": "Trace cost",
    "efficiency": "The same traffic on another model",
    "sql": "Read-only",
}

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium: apt-get install -y chromium"),
    pytest.mark.timeout(180),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("streamlit did not become healthy in time")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("browser-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENTRAIL_")}
    env["TOKENTRAIL_HOME"] = str(home)
    cwd = tmp_path_factory.mktemp("browser-cwd")
    (cwd / "tokentrail.toml").write_text(
        '[[budgets]]\nname = "all-traffic"\nlimit_usd = 5\nperiod = "month"\naction = "warn"\n'
    )
    demo = subprocess.run(
        [sys.executable, "-m", "tokentrail", "demo", "--no-dashboard", "--days", "3", "--calls", "250", "--seed", "7"],
        env=env, cwd=cwd, capture_output=True, timeout=120,
    )
    assert demo.returncode == 0, demo.stderr.decode()[-2000:]
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(APP_PATH), "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, time.monotonic() + 60)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_every_page_renders_in_chromium(served: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            for path, expected in PAGES.items():
                page.goto(f"{served}/{path}?range=all")
                page.get_by_text(expected, exact=False).first.wait_for()
                _wait_idle(page)
                assert page.get_by_text("Page not found").count() == 0, path
                errors = page.locator('[data-testid="stException"]')
                assert errors.count() == 0, f"{path}: {errors.first.inner_text()}"
                assert page.locator('[data-testid="stAlertContentError"]').count() == 0, path
                if path == "":
                    page.locator('[data-testid="stVegaLiteChart"]').first.wait_for()
                    assert page.get_by_text("Month-end forecast").count() == 1
                if path == "sql":
                    page.get_by_role("button", name="Run").click()
                    page.locator('[data-testid="stDataFrame"]').first.wait_for()
                    _wait_idle(page)
                    assert page.locator('[data-testid="stException"]').count() == 0
        finally:
            browser.close()


def _wait_idle(page: object) -> None:
    """Until Streamlit's "running" indicator is gone (the script run has finished)."""
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=30_000
    )
