"""Code version and package versions recorded with every run."""
from __future__ import annotations

import importlib.metadata
import subprocess
from pathlib import Path

PACKAGES = ("torch", "torchvision", "numpy", "scikit-image", "ray", "mlflow", "restoration-bench")


def git_commit() -> str:
    """HEAD of the checkout the harness runs from, with '-dirty' if it has local changes."""
    root = Path(__file__).resolve().parents[2]  # harness/runs/ -> the checkout
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that affect results."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
