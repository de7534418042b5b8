"""Ray's overhead per sweep trial, one actor per trial against reused actors, and the two-node speed-up.

Needs root (every Ray process runs in a private network namespace with only loopback, as in the
tests). Measurements of the same tiny trial (nafnet tiny, `derain`, smoke profile), in `--rounds`
rounds, each of them back to back so that both paths see the same load on a shared machine:

1. in process, without Ray: the trial body (`harness.runs.trial.train_evaluate` with a do-nothing
   RayApi) logging into an MLflow run (one warm-up run first, for imports and caches), before,
   between and after the round's two sweeps (the median is the round's body: on a shared virtual
   machine the speed drifts within minutes; the CPU steal of each round is recorded);
2. `harness sweep` of `--trials` trials on a one-node cluster with 1 CPU (trials one after
   another), once with one actor per trial (RESTORATION_BENCH_REUSE_ACTORS=0, the path before
   issue 21: a new worker process per trial, which imports torch, MLflow and the zoo again) and
   once with reused actors (the default): overhead per trial = sweep duration / trials - the
   round's in-process time. The sweep duration is the parent MLflow run's (Ray's import and
   connection, Tune's setup, trial actors, child runs, checkpoints, reports); the CLI's wall
   time also counts the driver's own start;
3. once, after the rounds: the reused-actor sweep on two nodes with 1 CPU each: speed-up =
   one-node (median) / two-node duration.

`trial_active_s` is a trial's time from the creation of its child run (its actor is up and has
imported torch) to its final metrics; `first_trial_start_s` is from the parent run's start to the
first child run's (the fixed cost of a sweep); `between_trials_s` from one trial's final metrics
to the next child run's creation (its model and artifacts logged, Tune's bookkeeping, the next
actor's start or reset; on two nodes, where trials overlap, it can be negative). Medians are reported, with every round's figure and the load average.

    sudo .venv/bin/python benchmarks/ray_sweep_overhead.py [--trials 4] [--rounds 3]

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


MODES = {"actor_per_trial": "0", "reused_actors": "1"}  # RESTORATION_BENCH_REUSE_ACTORS of each path


def cpu_times() -> list[int]:
    """The machine's CPU time counters (/proc/stat: user, nice, system, idle, iowait, irq, softirq, steal)."""
    return [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]


def steal_percent(before: list[int], after: list[int]) -> float:
    """Share of CPU time the hypervisor gave to other machines between two `cpu_times()` (a busy host
    slows every figure here, which the load average does not show)."""
    delta = [b - a for a, b in zip(before, after)]
    return round(100 * delta[7] / max(sum(delta), 1), 1)


class InProcessTrial:
    """The trial body without Ray, timed in one warm process (MLflow store in a temporary home)."""

    def __init__(self, home: str):
        import os

        from harness.data import open_data
        from harness.runs import tracking
        from harness.runs.config import RunConfig
        from harness.runs.submit import run_tags
        from harness.runs.trial import RayApi

        os.environ["RESTORATION_BENCH_HOME"] = home
        self.uri = f"sqlite:///{home}/mlflow.db"
        self.mlflow = tracking.client(self.uri)
        self.api = RayApi(report=lambda *a, **k: None, get_checkpoint=lambda: None,
                          checkpoint_from_directory=lambda d: None)
        self.run = RunConfig(model="nafnet", setting="derain", profile="smoke", efficiency_size=0,
                             profile_options={"lr": 0.001})
        self.runs = 0
        data = open_data(self.run.resolved_setting(), self.run.data_root)
        self.tags = run_tags(self.run, data.name, data.fingerprint())  # data_fingerprint, as a trial's run has
        self.seconds()  # warm-up: imports and caches

    def seconds(self) -> float:
        """Wall time of one trial body: its run created, trained, validated, evaluated, logged."""
        from harness.runs import tracking
        from harness.runs.trial import train_evaluate

        start = time.perf_counter()
        self.runs += 1
        run_id = tracking.start_run(self.mlflow, self.run.setting, f"in-process-{self.runs}", self.tags,
                                    self.run.params())
        train_evaluate(self.run, self.uri, run_id, 1, self.api, validate_every_checkpoint=True)
        self.mlflow.set_terminated(run_id, "FINISHED")
        return time.perf_counter() - start


def sweep_seconds(nodes: int, trials: int, base: Path, reuse: str = "1") -> dict[str, float]:
    """Run a sweep of `trials` trials on a loopback cluster of `nodes` 1-CPU nodes; its durations."""
    from mlflow.tracking import MlflowClient

    from conftest import LoopbackRayCluster

    base.mkdir(parents=True, exist_ok=True)
    cluster = LoopbackRayCluster(base, port=6396, worker_port=6397, nodes=nodes)
    cluster.start()
    try:
        start = time.perf_counter()
        proc = cluster.popen(["sweep", *TRIAL, "--num-samples", str(trials), "--address", cluster.address], base,
                             RESTORATION_BENCH_REUSE_ACTORS=reuse)
        out, err = proc.communicate(timeout=1800)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"sweep on {nodes} node(s) failed:\n{out[-2000:]}\n{err[-2000:]}")
    finally:
        cluster.stop()
    mlflow = MlflowClient(f"sqlite:///{base / 'mlflow.db'}")
    runs = mlflow.search_runs([mlflow.get_experiment_by_name("restoration-bench/derain").experiment_id])
    parent = next(r for r in runs if r.data.tags.get("role") == "sweep")
    children = sorted((r for r in runs if r.data.tags.get("sweep_parent") == parent.info.run_id),
                      key=lambda r: r.info.start_time)
    # inside a trial: from its child run's creation (the actor is up, torch imported) to its final metrics
    final = [mlflow.get_metric_history(c.info.run_id, "psnr/avg")[0].timestamp for c in children]
    active = [(f - c.info.start_time) / 1000 for f, c in zip(final, children)]
    between = [(c.info.start_time - f) / 1000 for f, c in zip(final, children[1:])]
    return {"cli_wall_s": wall, "sweep_s": (parent.info.end_time - parent.info.start_time) / 1000,
            "trial_active_s": statistics.median(active),
            "first_trial_start_s": (children[0].info.start_time - parent.info.start_time) / 1000,
            "between_trials_s": statistics.median(between) if between else 0.0,
            "nodes_used": len({c.data.tags["ray.node_id"] for c in children})}


def main() -> None:
    """Measure and write the JSON report."""
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    body: list[float] = []
    one: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    overhead: dict[str, list[float]] = {mode: [] for mode in MODES}
    load: list[float] = []
    steal: list[float] = []
    with tempfile.TemporaryDirectory(prefix="rbbench") as tmp:
        trial = InProcessTrial(str(Path(tmp) / "in-process"))
        for i in range(args.rounds):
            load.append(os.getloadavg()[0])
            counters = cpu_times()
            # the body before, between and after the two sweeps (median): the machine's speed drifts
            bodies = [trial.seconds()]
            for mode, reuse in MODES.items():
                one[mode].append(sweep_seconds(1, args.trials, Path(tmp) / f"{mode}-{i}", reuse))
                bodies.append(trial.seconds())
            body.append(statistics.median(bodies))
            for mode in MODES:
                overhead[mode].append(one[mode][-1]["sweep_s"] / args.trials - body[-1])
            steal.append(steal_percent(counters, cpu_times()))
            print(f"round {i + 1}: in process {body[-1]:.2f} s; overhead per trial "
                  + ", ".join(f"{m} {overhead[m][-1]:.2f} s" for m in MODES) + f"; CPU steal {steal[-1]}%", flush=True)
        load.append(os.getloadavg()[0])
        try:  # the rounds stand without it (on a shared machine Ray may kill workers for memory)
            two = sweep_seconds(2, args.trials, Path(tmp) / "two")
        except RuntimeError as err:
            two = {"error": str(err).splitlines()[-1][:300]}
        load.append(os.getloadavg()[0])

    def medians(rows: list[dict[str, float]]) -> dict[str, float]:
        return {k: round(statistics.median(r[k] for r in rows), 2) for k in rows[0]}

    one_node = {mode: {**medians(rows), "runs_sweep_s": [round(r["sweep_s"], 2) for r in rows]}
                for mode, rows in one.items()}
    report = {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, {os.cpu_count()} cores; 1 CPU per Ray node",
        "trial": " ".join(TRIAL), "trials": args.trials, "rounds": args.rounds,
        "load_average_1min": [round(v, 2) for v in load],  # before each round, after the rounds, after two nodes
        "cpu_steal_percent_per_round": steal,
        "in_process_trial_s": round(statistics.median(body), 2), "in_process_runs_s": [round(t, 2) for t in body],
        "one_node": one_node,
        "ray_overhead_per_trial_s": {mode: round(statistics.median(v), 2) for mode, v in overhead.items()},
        "ray_overhead_per_trial_runs_s": {mode: [round(t, 2) for t in v] for mode, v in overhead.items()},
        "two_nodes_reused_actors": {k: v if isinstance(v, str) else round(v, 2) for k, v in two.items()},
    }
    if "sweep_s" in two:
        report["speedup_two_nodes_sweep"] = round(one_node["reused_actors"]["sweep_s"] / two["sweep_s"], 2)
        report["speedup_two_nodes_cli_wall"] = round(one_node["reused_actors"]["cli_wall_s"] / two["cli_wall_s"], 2)
    out = REPO / "benchmarks" / "results" / "ray_sweep_overhead.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
