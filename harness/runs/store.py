"""Where runs are kept: the local state folder, the MLflow tracking URI, and params as dotted keys.

Plain Python with no heavy imports, so that the dashboard and the leaderboards can ask for the
tracking URI without importing torch.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of dotted keys: {"host": {"width": 8}} -> {"host.width": 8}."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def home() -> Path:
    """Local state folder: $RESTORATION_BENCH_HOME, default ./.restoration-bench."""
    return Path(os.environ.get("RESTORATION_BENCH_HOME", ".restoration-bench")).resolve()


def tracking_uri(explicit: str | None = None) -> str:
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else a SQLite store in home()."""
    if explicit:
        return explicit
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    home().mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home() / 'mlflow.db'}"
