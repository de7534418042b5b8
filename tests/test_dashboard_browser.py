"""`harness dashboard` in a real browser: headless Debian Chromium, driven by Playwright, on 127.0.0.1 only."""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from mlflow_runs import bench_home, evaluation, log_run

pytestmark = pytest.mark.slow  # opens a browser: not in the fast tier

CHROMIUM = "/usr/bin/chromium"  # Debian's package; Playwright never downloads a browser here
HARNESS = str(Path(sys.executable).with_name("harness"))
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on `port`, read from /proc/net/tcp{,6} (no traffic sent)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def wait_until_healthy(port: int, server: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, "the dashboard server exited early"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the dashboard did not answer on 127.0.0.1:{port} within {timeout} s")


@pytest.fixture
def dashboard(tmp_path):
    """`harness dashboard` serving a store with one finished five_deg run; yields (port, log path)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's browser with `apt-get install -y chromium` "
                    "(.ci/run does this)")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with bench_home(tmp_path):
        log_run(uri, "five_deg", "identity", evaluation("five_deg", "identity"))
    port, log = free_port(), tmp_path / "dashboard.log"
    env = dict(os.environ, RESTORATION_BENCH_HOME=str(tmp_path))
    with open(log, "w") as out:
        server = subprocess.Popen([HARNESS, "dashboard", "--port", str(port), "--tracking-uri", uri],
                                  stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_until_healthy(port, server)
        yield port, log
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def test_leaderboard_renders_in_headless_chromium(dashboard, tmp_path):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: pip install -e '.[test]'")

    port, log = dashboard
    assert listening_addresses(port) == {"0100007F"}, "the dashboard must listen on 127.0.0.1 only"
    shot = Path(os.environ.get("RESTORATION_BENCH_SCREENSHOTS", tmp_path)) / "dashboard_leaderboard.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1100})
            page.goto(f"http://127.0.0.1:{port}/?setting=five_deg", timeout=120_000)
            page.wait_for_selector('[data-testid="stDataFrame"]', timeout=180_000)
            # the grid draws on a canvas; its accessible view (a role=grid table that is the canvas's
            # fallback content, so Playwright counts it as hidden) names the visible cells
            cell = page.get_by_role("gridcell", name="identity", exact=True, include_hidden=True)
            cell.first.wait_for(state="attached", timeout=60_000)
            page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)
            assert page.get_by_role("heading", name="Leaderboard: five_deg").count() == 1
            assert page.get_by_role("gridcell", name="HAIR Tab. 2", exact=True, include_hidden=True).count() > 0
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 20_000
    assert "Traceback" not in log.read_text()
