"""Training-loop overhead: the harness' `train` against a bare PyTorch loop on the same model, data and threads.

    python benchmarks/loop_overhead.py --models res_hair nafnet --steps 40 --rounds 5

Both loops train a freshly seeded tiny model with AdamW on L1 for --steps steps of the --profile's
batch and patch (`smoke`: 4 x 48x48, the size the issue timed), on the same seeded `five_deg` crops
degraded on the fly and read through a DataLoader, with the same number of torch threads. The bare loop is what a hand-written script
does: zero_grad, forward, L1, backward, step, with a constant learning rate and no logging. The
harness loop is `harness.runs.training.train` as a trial calls it (warm-up + cosine schedule,
progress line, logged metrics every `log_every` steps, finite-loss check). Rounds alternate the
two loops so a busy machine slows both alike; the figures are medians over rounds of steps per
second, and the overhead is 1 - harness / bare (per round, then the median). The same ratio is
also given in process CPU time (steps per CPU-second), which a machine shared with other jobs
disturbs less than wall-clock time.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def bare_loop(model, dataset, steps: int, batch: int, lr: float, betas, weight_decay: float) -> None:
    """The reference: a hand-written loop over the same samples, same optimiser, constant learning rate."""
    from torch.utils.data import DataLoader, Subset

    from zoo.contract import Conditioning

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=betas, weight_decay=weight_decay)
    for item in DataLoader(Subset(dataset, range(steps * batch)), batch_size=batch):
        optimizer.zero_grad(set_to_none=True)
        cond = Conditioning(task_index=item["task_index"])
        loss = F.l1_loss(model(item["degraded"], cond), item["target"])
        loss.backward()
        optimizer.step()


def harness_loop(model, dataset, profile) -> None:
    """`train` as a trial calls it, with a logging callback that keeps what it is given."""
    from harness.runs.training import train

    logged = []
    train(model, dataset, profile, on_log=lambda step, metrics: logged.append((step, metrics)))


def measure(name: str, steps: int, rounds: int, warmup: int, profile_name: str) -> dict:
    """Steps per second of both loops on model `name` (tiny), alternated for `rounds` rounds."""
    from harness.data import open_data
    from harness.runs.profiles import PROFILES
    from harness.settings import get_setting
    from zoo import create_model

    base = PROFILES.get(profile_name)
    profile = dataclasses.replace(base, steps=steps)
    dataset = open_data(get_setting("five_deg"), None).training_set(profile.patch_size, steps * profile.batch_size, 0)
    fresh = lambda: (torch.manual_seed(0), create_model(name, "tiny"))[1]  # noqa: E731
    bare_loop(fresh(), dataset, warmup, profile.batch_size, profile.lr, profile.betas, profile.weight_decay)
    harness_loop(fresh(), dataset, dataclasses.replace(profile, steps=warmup))
    rows = []
    for _ in range(rounds):
        row = {}
        for loop in ("bare", "harness"):
            model = fresh()
            started, cpu = time.perf_counter(), time.process_time()
            if loop == "bare":
                bare_loop(model, dataset, steps, profile.batch_size, profile.lr, profile.betas, profile.weight_decay)
            else:
                harness_loop(model, dataset, profile)
            row[loop] = steps / (time.perf_counter() - started)
            row[f"{loop}_cpu"] = steps / (time.process_time() - cpu)
        rows.append(row)
        print(f"  {name}: bare {row['bare']:.3f} it/s, harness {row['harness']:.3f} it/s "
              f"({100 * (1 - row['harness'] / row['bare']):+.2f}% overhead)", flush=True)
    overheads = [1 - r["harness"] / r["bare"] for r in rows]
    return {"bare_it_s": statistics.median(r["bare"] for r in rows),
            "harness_it_s": statistics.median(r["harness"] for r in rows),
            "overhead": statistics.median(overheads),
            "overhead_cpu_time": statistics.median(1 - r["harness_cpu"] / r["bare_cpu"] for r in rows), "rounds": rows}


def main() -> None:
    """Measure every model, print the overheads and write benchmarks/results/loop_overhead.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["res_hair", "nafnet"])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "loop_overhead.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    figures = {}
    for name in args.models:
        figures[name] = measure(name, args.steps, args.rounds, args.warmup, args.profile)
        f = figures[name]
        print(f"{name} tiny: bare {f['bare_it_s']:.3f} it/s, harness {f['harness_it_s']:.3f} it/s, "
              f"overhead {100 * f['overhead']:.2f}% wall, {100 * f['overhead_cpu_time']:.2f}% CPU time "
              f"(median of {args.rounds} rounds)", flush=True)
    result = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "threads": args.threads,
              "torch": torch.__version__, "steps": args.steps, "rounds": args.rounds, "profile": args.profile,
              "variant": "tiny", "models": figures}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
