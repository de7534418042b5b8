"""`harness dashboard`: serve the read-only Streamlit dashboard of the tracked runs."""
from __future__ import annotations

import argparse

from harness.cli.registry import command


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--tracking-uri", help="MLflow tracking URI to read (default as for submit)")
    p.add_argument("--mlflow-ui", help="base URL of an MLflow UI for run links (default: the tracking URI when "
                                       "it is http(s), else http://127.0.0.1:5000)")


@command("dashboard", "serve the read-only Streamlit dashboard of the tracked runs", _arguments)
def run(args: argparse.Namespace) -> int:
    """Serve the dashboard (on 127.0.0.1 unless --address says otherwise) until interrupted."""
    from dashboards.launch import serve
    from harness.runs.store import tracking_uri

    return serve(tracking_uri(args.tracking_uri), address=args.address, port=args.port, mlflow_ui=args.mlflow_ui)
