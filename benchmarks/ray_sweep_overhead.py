"""Ray's overhead per sweep trial, and the speed-up of a sweep on two nodes over one.

Needs root (every Ray process runs in a private network namespace with only loopback, as in the
tests). Three measurements of the same tiny trial (nafnet tiny, `derain`, smoke profile):

1. in process, without Ray: the trial body (`harness.runs.trial.train_evaluate` with a do-nothing
   RayApi) logging into an MLflow run, `--repeats` times after one warm-up;
2. `harness sweep` of `--trials` trials on a one-node cluster with 1 CPU (trials one after
   another): overhead per trial = sweep duration / trials - in-process time. The sweep
   duration is the parent MLflow run's (Tune's part: trial actors, torch import in each
   new worker process, child runs, checkpoints, reports); the CLI's wall time also counts the
   driver's own start;
3. the same sweep on two nodes with 1 CPU each: speed-up = one-node / two-node duration.

`trial_active_s` is a trial's time from the creation of its child run (its actor is up and has
imported torch) to its final metrics; the rest of the per-trial overhead is before that.

    sudo .venv/bin/python benchmarks/ray_sweep_overhead.py [--trials 4] [--repeats 2]

Writes benchmarks/results/ray_sweep_overhead.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
TRIAL = ["--model", "nafnet", "--setting", "derain", "--profile", "smoke", "--efficiency-size", "0",
         "--scheduler", "fifo", "--no-default-space", "--space", "lr=0.001"]


def in_process_seconds(repeats: int) -> list[float]:
    """Wall time of the trial body without Ray, after one warm-up run (imports and caches)."""
    import os

    from harness.runs import tracking
    from harness.runs.config import RunConfig
    from harness.runs.trial import RayApi, train_evaluate

    times = []
    with tempfile.TemporaryDirectory() as home:
        os.environ["RESTORATION_BENCH_HOME"] = home
        uri = f"sqlite:///{home}/mlflow.db"
        mlflow = tracking.client(uri)
        api = RayApi(report=lambda *a, **k: None, get_checkpoint=lambda: None, checkpoint_from_directory=lambda d: None)
        run = RunConfig(model="nafnet", setting="derain", profile="smoke", efficiency_size=0,
                        profile_options={"lr": 0.001})
        for i in range(repeats + 1):
            start = time.perf_counter()
            run_id = tracking.start_run(mlflow, run.setting, f"in-process-{i}", {}, run.params())
            train_evaluate(run, uri, run_id, 1, api, validate_every_checkpoint=True)
            mlflow.set_terminated(run_id, "FINISHED")
            if i:
                times.append(time.perf_counter() - start)
    return times


def sweep_seconds(nodes: int, trials: int, base: Path) -> dict[str, float]:
    """Run a sweep of `trials` trials on a loopback cluster of `nodes` 1-CPU nodes; its durations."""
    from mlflow.tracking import MlflowClient

    from conftest import LoopbackRayCluster

    base.mkdir(parents=True, exist_ok=True)
    cluster = LoopbackRayCluster(base, port=6396, worker_port=6397, nodes=nodes)
    cluster.start()
    try:
        start = time.perf_counter()
        proc = cluster.popen(["sweep", *TRIAL, "--num-samples", str(trials), "--address", cluster.address], base)
        out, err = proc.communicate(timeout=1800)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"sweep on {nodes} node(s) failed:\n{out[-2000:]}\n{err[-2000:]}")
    finally:
        cluster.stop()
    mlflow = MlflowClient(f"sqlite:///{base / 'mlflow.db'}")
    runs = mlflow.search_runs([mlflow.get_experiment_by_name("restoration-bench/derain").experiment_id])
    parent = next(r for r in runs if r.data.tags.get("role") == "sweep")
    children = [r for r in runs if r.data.tags.get("sweep_parent") == parent.info.run_id]
    # inside a trial: from its child run's creation (the actor is up, torch imported) to its final metrics
    active = [(mlflow.get_metric_history(c.info.run_id, "psnr/avg")[0].timestamp - c.info.start_time) / 1000
              for c in children]
    return {"cli_wall_s": wall, "sweep_s": (parent.info.end_time - parent.info.start_time) / 1000,
            "trial_active_s": statistics.mean(active), "nodes_used": len({c.data.tags["ray.node_id"] for c in children})}


def main() -> None:
    """Measure and write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    body = in_process_seconds(args.repeats)
    with tempfile.TemporaryDirectory(prefix="rbbench") as tmp:
        one = sweep_seconds(1, args.trials, Path(tmp) / "one")
        two = sweep_seconds(2, args.trials, Path(tmp) / "two")
    in_process = statistics.mean(body)
    report = {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}; 1 CPU per Ray node",
        "trial": " ".join(TRIAL), "trials": args.trials,
        "in_process_trial_s": round(in_process, 2), "in_process_runs_s": [round(t, 2) for t in body],
        "one_node": {k: round(v, 2) for k, v in one.items()}, "two_nodes": {k: round(v, 2) for k, v in two.items()},
        "ray_overhead_per_trial_s": round(one["sweep_s"] / args.trials - in_process, 2),
        "speedup_two_nodes_sweep": round(one["sweep_s"] / two["sweep_s"], 2),
        "speedup_two_nodes_cli_wall": round(one["cli_wall_s"] / two["cli_wall_s"], 2),
    }
    out = REPO / "benchmarks" / "results" / "ray_sweep_overhead.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
