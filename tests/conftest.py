"""Shared fixtures: run the `harness` CLI the way a user does, with Ray kept on loopback."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = str(Path(sys.executable).with_name("harness"))


def isolated_network_available() -> bool:
    """True when tests can give Ray a private network namespace with only loopback (root + unshare)."""
    return os.geteuid() == 0 and shutil.which("unshare") is not None and shutil.which("ip") is not None


def run_harness(args: list[str], home: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run `harness ARGS` with its state in `home`; inside `unshare --net` when possible.

    Ray binds to the machine's interface address even when told 127.0.0.1, so a private
    namespace with only `lo` keeps every Ray socket on loopback (../shared/ECOSYSTEM.md).
    """
    env = dict(os.environ, RESTORATION_BENCH_HOME=str(home), RAY_USAGE_STATS_ENABLED="0")
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [HARNESS, *args]
    if isolated_network_available():
        quoted = " ".join(f"'{a}'" for a in command)
        command = ["unshare", "--net", "bash", "-c", f"ip link set lo up && exec {quoted}"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, cwd=home)


@pytest.fixture
def harness_home(tmp_path: Path) -> Path:
    """An empty state folder (MLflow store, artifacts, Ray results) for one test."""
    return tmp_path


def start_harness(args: list[str], home: Path) -> subprocess.Popen:
    """Start `harness ARGS` like `run_harness`, without waiting (for signals sent mid-run)."""
    env = dict(os.environ, RESTORATION_BENCH_HOME=str(home), RAY_USAGE_STATS_ENABLED="0")
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [HARNESS, *args]
    if isolated_network_available():
        # `exec` keeps one process: the PID we signal is the harness itself.
        quoted = " ".join(f"'{a}'" for a in command)
        command = ["unshare", "--net", "bash", "-c", f"ip link set lo up && exec {quoted}"]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=home)
