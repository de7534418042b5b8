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
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else a SQLite store in home(); a server must answer."""
    if explicit or os.environ.get("MLFLOW_TRACKING_URI"):
        uri = explicit or os.environ["MLFLOW_TRACKING_URI"]
        check_answers(uri)
        return uri
    home().mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home() / 'mlflow.db'}"


PROBE_TIMEOUT_S = 5.0  # how long a tracking server has to answer before a command gives up on it
_ANSWERED: set[str] = set()


def check_answers(uri: str) -> None:
    """ValueError naming `uri` when it is an http(s) tracking server that does not answer.

    MLflow's client retries a dead server for minutes; one request with a short timeout, before
    anything is written, turns that into one line. Any HTTP answer (even an error status) counts.
    """
    import urllib.error
    import urllib.request

    if not uri.startswith(("http://", "https://")) or uri in _ANSWERED:
        return
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        pass  # it answered
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise ValueError(f"tracking URI {uri} does not answer ({reason}); start the MLflow server "
                         "or give another --tracking-uri") from None
    _ANSWERED.add(uri)


def sqlite_file(uri: str) -> Path | None:
    """The database file of a local `sqlite:///` store (without SQLAlchemy's ?options); None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):].split("?", 1)[0]).resolve()


def local_store_state(uri: str) -> str | None:
    """A fingerprint of a local SQLite store's files (path, inode, size, mtime); None for any other store.

    SQLite rewrites the database file (or its -wal/-journal file) on every commit, so an unchanged
    fingerprint means no run, metric or tag was written since: what a cached answer may rely on.
    A server's store (http, postgresql) cannot be fingerprinted without asking it, so it gets None.
    """
    database = sqlite_file(uri)
    if database is None:
        return None
    parts = []
    for path in (database, Path(f"{database}-wal"), Path(f"{database}-journal")):
        try:
            stat = path.stat()
        except OSError:
            parts.append(f"{path.name}:absent")
            continue
        parts.append(f"{path}:{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}")
    return "|".join(parts) if database.exists() else None


def missing_local_store(uri: str) -> Path | None:
    """The database file of a local SQLite store that does not exist yet (opening it would create it); else None."""
    database = sqlite_file(uri)
    return None if database is None or database.exists() else database
