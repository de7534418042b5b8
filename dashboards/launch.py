"""`harness dashboard`: serve dashboards/app.py with Streamlit, headless, on 127.0.0.1 by default."""
from __future__ import annotations

import os
import sys
from pathlib import Path

APP = Path(__file__).with_name("app.py")
DEFAULT_MLFLOW_UI = "http://127.0.0.1:5000"


def mlflow_ui_url(tracking_uri: str, explicit: str | None = None) -> str:
    """Base URL of the MLflow UI that run links point to: explicit, else an http(s) tracking server, else the default."""
    if explicit:
        return explicit.rstrip("/")
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return DEFAULT_MLFLOW_UI


def streamlit_command(address: str = "127.0.0.1", port: int = 8501) -> list[str]:
    """The `streamlit run` command line: headless, no usage statistics, no file watcher, viewer toolbar."""
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.address", address,
        "--server.port", str(port),
        "--server.headless", "true",
        "--server.fileWatcherType", "none",
        "--server.runOnSave", "false",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",
        "--global.developmentMode", "false",
    ]


def dashboard_env(tracking_uri: str, mlflow_ui: str | None = None) -> dict[str, str]:
    """The environment the app reads its tracking URI and MLflow UI link base from."""
    return dict(os.environ, MLFLOW_TRACKING_URI=tracking_uri,
                RESTORATION_BENCH_MLFLOW_UI=mlflow_ui_url(tracking_uri, mlflow_ui),
                STREAMLIT_BROWSER_GATHER_USAGE_STATS="false", MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")


def serve(tracking_uri: str, address: str = "127.0.0.1", port: int = 8501, mlflow_ui: str | None = None) -> int:
    """Replace this process with the Streamlit server (so signals reach it directly); returns only on failure."""
    print(f"Dashboard (read-only) on http://{address}:{port} reading {tracking_uri}", flush=True)
    command = streamlit_command(address, port)
    os.execve(command[0], command, dashboard_env(tracking_uri, mlflow_ui))
    return 1  # not reached: execve returns only by raising
