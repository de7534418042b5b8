"""Shared fixtures: run the `harness` CLI the way a user does, with Ray kept on loopback."""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
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


def recorded_runs(home: Path) -> list:
    """Every run in the test's local store (none when the store was never created)."""
    database = home / "mlflow.db"
    if not database.exists():
        return []
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{database}")
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids) if ids else []


def harness_main(args: list[str], home: Path) -> subprocess.CompletedProcess:
    """Run `harness ARGS` in this process (the console script's own `main`), with its state in `home`.

    For commands refused before any model, Ray or MLflow work starts: the same code path as
    `run_harness` without the 5-7 s of starting Python and importing torch and MLflow per call.
    """
    from harness.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in ("RESTORATION_BENCH_HOME", "MLFLOW_TRACKING_URI")}
    os.environ["RESTORATION_BENCH_HOME"] = str(home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exit_:  # argparse's usage errors
                code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return subprocess.CompletedProcess(["harness", *args], code, out.getvalue(), err.getvalue())


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


RAY = str(Path(sys.executable).with_name("ray"))
NODE_MEMORY = 2_000_000_000  # without --memory each node claims all the RAM (../shared/ECOSYSTEM.md)
NODE_OBJECT_STORE = 200_000_000


class LoopbackRayCluster:
    """A real two-node (or, with nodes=1, one-node) Ray cluster on 127.0.0.1 in one private network namespace.

    `ray start --head` plus `ray start --address` of a second node (1 CPU each), both in a
    namespace with only `lo` (Ray binds to the machine's interface address otherwise). Commands
    join the namespace with `nsenter`; every process in it was started here, and `stop()` ends
    exactly those by PID (never `ray stop`, which would end every Ray process on the machine).
    """

    def __init__(self, base: Path, port: int = 6390, worker_port: int = 6391, nodes: int = 2):
        self.base, self.port, self.worker_port, self.nodes = base, port, worker_port, nodes
        self.temp = Path(tempfile.mkdtemp(prefix="rb", dir="/tmp"))  # Ray's socket paths must stay short
        self.holder: subprocess.Popen | None = None
        self.ns: str | None = None

    @property
    def address(self) -> str:
        """The head node's GCS address."""
        return f"127.0.0.1:{self.port}"

    def env(self, home: Path | None = None) -> dict[str, str]:
        """Environment of every process of the cluster: no auth token, no usage stats, no global MLflow URI."""
        # no idle workers prestarted as a driver connects: trial actors never take them (as in the
        # local clusters the harness starts, harness/runs/submit.py ClusterOptions.init_ray)
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", RAY_prestart_worker_first_driver="0")
        env.pop("MLFLOW_TRACKING_URI", None)
        if home is not None:
            env["RESTORATION_BENCH_HOME"] = str(home)
        return env

    def start(self, timeout: float = 120) -> None:
        """Start both nodes and wait until the second one has joined."""
        common = (f"--node-ip-address=127.0.0.1 --num-cpus=1 --memory={NODE_MEMORY} "
                  f"--object-store-memory={NODE_OBJECT_STORE} --disable-usage-stats")
        ready = self.base / "cluster.ready"
        script = (f"ip link set lo up && "
                  f"{RAY} start --head --port={self.port} --include-dashboard=false --temp-dir={self.temp} {common} "
                  f"> {self.base}/head.log 2>&1 && "
                  + (f"{RAY} start --address={self.address} --node-manager-port={self.worker_port} {common} "
                     f"> {self.base}/worker.log 2>&1 && " if self.nodes == 2 else "")
                  + f"touch {ready} && exec sleep 100000")
        self.holder = subprocess.Popen(["unshare", "--net", "bash", "-c", script], env=self.env(),
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.2)  # unshare has entered the new namespace by the time bash runs `ip`
        self.ns = self.namespace()
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self.holder.poll() is not None or time.monotonic() > deadline:
                logs = "".join(p.read_text()[-2000:] for p in (self.base / "head.log", self.base / "worker.log")
                               if p.exists())
                self.stop()
                raise RuntimeError(f"the two-node Ray cluster did not start:\n{logs}")
            time.sleep(0.5)

    def namespace(self) -> str:
        """The network namespace of the cluster (its /proc ns link)."""
        return os.readlink(f"/proc/{self.holder.pid}/ns/net")

    def pids(self) -> list[int]:
        """Every process in the cluster's namespace: all of them were started by this object."""
        ns, found = self.ns, []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if os.readlink(entry / "ns" / "net") == ns:
                        found.append(int(entry.name))
                except OSError:
                    continue
        return found

    def worker_raylet(self) -> int:
        """PID of the second node's raylet (the one listening on `worker_port`)."""
        for pid in self.pids():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmdline and cmdline[0].endswith(b"raylet") and f"--node_manager_port={self.worker_port}".encode() in cmdline:
                return pid
        raise RuntimeError("the worker node's raylet is not running")

    def popen(self, args: list[str], home: Path, **env: str) -> subprocess.Popen:
        """Start `harness ARGS` inside the cluster's namespace, with its state in `home` (and extra `env`)."""
        command = ["nsenter", f"--net=/proc/{self.holder.pid}/ns/net", HARNESS, *args]
        return subprocess.Popen(command, env={**self.env(home), **env}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=home)

    def stop(self) -> None:
        """End every process of the cluster by PID: SIGTERM, then SIGKILL for those still there."""
        if self.holder is None:
            return
        pids = self.pids() if self.ns else []
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            time.sleep(2 if sig == signal.SIGTERM else 0)
            pids = [p for p in pids if Path(f"/proc/{p}").exists()]
        self.holder.wait(timeout=30)
        shutil.rmtree(self.temp, ignore_errors=True)
