"""Wall time of `harness` commands where no model runs (issue 26), each in a fresh process.

Commands: `--help`, `list settings`, `list models` (cached counts, and the first call that builds
every model), and `leaderboard` on stores of 16 and 1,024 finished runs: repeated on an unchanged
store (answered from the cache) and the first call after the store changed (MLflow read). The runs are written with
MLflow's client as `harness submit` writes them (tags, per-task metrics, efficiency figures and
`results/per_image.json` through harness.runs.tracking), over eight models, so the leaderboard
reads, picks and bootstraps exactly as on real runs. Prints a table and writes
benchmarks/results/cli_latency.json.

    .venv/bin/python benchmarks/cli_latency.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "cli_latency.json"
MODELS = ("identity", "nafnet", "restormer", "promptir", "res_hair", "daair", "airnet", "hyperres")
IMAGES = 100  # Rain100L's test set size (PromptIR test/derain)


def make_store(uri: str, runs: int, seed: int = 0) -> None:
    """`runs` FINISHED derain runs spread over MODELS, as the trial logs them."""
    from mlflow.tracking import MlflowClient

    from harness.runs import tracking

    client = MlflowClient(uri)
    experiment = client.create_experiment("restoration-bench/derain")
    rng = np.random.default_rng(seed)
    for index in range(runs):
        model = MODELS[index % len(MODELS)]
        run = client.create_run(experiment, tags={
            "setting": "derain", "setting_version": "1", "model": model, "variant": "tiny", "profile": "default",
            "data_source": "embedded", "data_fingerprint": "f" * 16, "seed": str(index // len(MODELS))})
        psnr = rng.normal(28 + MODELS.index(model) * 0.3, 2.0, IMAGES)
        ssim = np.clip(rng.normal(0.85, 0.05, IMAGES), 0, 1)
        tracking.log_metrics(client, run.info.run_id, {
            "psnr/derain": float(psnr.mean()), "ssim/derain": float(ssim.mean()), "psnr/avg": float(psnr.mean()),
            "ssim/avg": float(ssim.mean()), "efficiency.params": 1e6 + index}, step=1)
        per_image = {"derain": {f"{i:03d}.png": {"psnr": float(p), "ssim": float(s)}
                                for i, (p, s) in enumerate(zip(psnr, ssim))}}
        tracking.log_json(client, run.info.run_id, per_image, "per_image.json", "results")
        client.set_terminated(run.info.run_id, "FINISHED")


def wall_time(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    """Seconds from spawning `harness ARGV` to its exit (it must succeed)."""
    harness = str(Path(sys.executable).with_name("harness"))
    start = time.perf_counter()
    done = subprocess.run([harness, *argv], env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"harness {' '.join(argv)} failed: {done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = dict(os.environ, RESTORATION_BENCH_HOME=str(work / "home"), RESTORATION_BENCH_CACHE=str(work / "cache"))
        env.pop("MLFLOW_TRACKING_URI", None)
        stores = {}
        for runs in (16, 1024):
            stores[runs] = f"sqlite:///{work / f'runs{runs}.db'}"
            started = time.perf_counter()
            make_store(stores[runs], runs)
            print(f"store of {runs} runs written in {time.perf_counter() - started:.1f} s", flush=True)
        commands = {
            "harness --help": ["--help"],
            "harness list settings": ["list", "settings"],
            "harness list models": ["list", "models"],
            "harness leaderboard --setting derain (16 runs)": ["leaderboard", "--setting", "derain",
                                                               "--tracking-uri", stores[16]],
            "harness leaderboard --setting derain (1,024 runs)": ["leaderboard", "--setting", "derain",
                                                                  "--tracking-uri", stores[1024]],
        }
        cold_env = dict(env, RESTORATION_BENCH_CACHE=str(work / "cold-cache"))
        first_models = wall_time(["list", "models"], cold_env, work)  # builds every model, fills the cache
        wall_time(["list", "models"], env, work)  # warm the cache the timed calls read
        figures = {}
        for name, argv in commands.items():
            times = [wall_time(argv, env, work) for _ in range(args.repeats)]
            figures[name] = {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
                             "max_s": round(max(times), 3)}
            print(f"{name:<52} median {figures[name]['median_s']:.3f} s  (min {figures[name]['min_s']:.3f})",
                  flush=True)
        for runs in (16, 1024):  # the first board after a store changed: no cached answer, MLflow is read
            times = [wall_time(commands[f"harness leaderboard --setting derain ({runs:,} runs)"],
                               dict(env, RESTORATION_BENCH_CACHE=str(work / f"board-cold-{runs}-{i}")), work)
                     for i in range(args.repeats)]
            name = f"harness leaderboard --setting derain ({runs:,} runs), store changed since the last call"
            figures[name] = {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
                             "max_s": round(max(times), 3)}
            print(f"{name:<52} median {figures[name]['median_s']:.3f} s", flush=True)
        figures["harness list models (first call: builds every model, fills the cache)"] = {
            "median_s": round(first_models, 3), "min_s": round(first_models, 3), "max_s": round(first_models, 3)}
        print(f"{'harness list models, first call (cache empty)':<52} {first_models:.3f} s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"repeats": args.repeats, "cpus": os.cpu_count(), "python": platform.python_version(),
                                   "load_average_1min": os.getloadavg()[0], "commands": figures}, indent=2) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
