"""A small on-disk cache for listings that are slow to compute (model parameter counts, pyiqa's metrics).

Each entry is one JSON file holding a key and a value; the key is a digest of what the value is
computed from (the zoo's source files, pyiqa's version), so an edit to a model or an upgrade of
pyiqa recomputes it. A cache that cannot be read or written is ignored: the value is computed.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

CACHE_ENV = "RESTORATION_BENCH_CACHE"


def cache_dir() -> Path:
    """$RESTORATION_BENCH_CACHE, else $XDG_CACHE_HOME/restoration-bench, else ~/.cache/restoration-bench."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "restoration-bench"


def package_digest(package: str) -> str:
    """SHA-256 over the names and bytes of every .py file of an importable package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"package '{package}' is not importable")
    digest = hashlib.sha256()
    for folder in spec.submodule_search_locations:
        for path in sorted(Path(folder).rglob("*.py")):
            digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def file_digest(path: Path) -> str:
    """SHA-256 of one file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def distribution_version(name: str) -> str:
    """The installed version of a distribution, or 'absent'."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def cached(name: str, key: str, compute: Callable[[], Any]) -> Any:
    """The cached value of `name` when it was computed under `key`; else compute it, store it and return it."""
    path = cache_dir() / f"{name}.json"
    try:
        entry = json.loads(path.read_text())
        if entry.get("key") == key:
            return entry["value"]
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    value = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as handle:
            json.dump({"key": key, "value": value}, handle)
        os.replace(handle.name, path)  # atomic: a concurrent reader sees the old entry or the new one
    except OSError:
        pass
    return value
