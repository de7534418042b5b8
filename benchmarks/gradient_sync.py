"""Gradient sync of data-parallel training: per-tensor all-reduce, 25 MB buckets, and DDP.

    python benchmarks/gradient_sync.py --models res_hair promptir nafnet --size 32 --steps 3

Two gloo processes on loopback train each paper configuration on the same global batch (one
image per process, --size pixels square), four ways:

- ``none``: forward and backward, no sync (the floor);
- ``per_tensor``: after backward, one all-reduce per gradient tensor (the harness before issue 27);
- ``bucketed``: after backward, gradients flattened into 25 MB buckets, one all-reduce per bucket;
- ``ddp``: DistributedDataParallel through harness/runs/parallel.py, buckets all-reduced while
  backward still runs.

It prints, per model and way, the median step time and (for the two after-backward ways) the
sync time alone, and writes them to benchmarks/results/gradient_sync.json. On CPU the processes
share the machine's cores with the all-reduce itself, so overlap helps less than across GPUs.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
WAYS = ("none", "per_tensor", "bucketed", "ddp")
BUCKET_BYTES = 25 * 2**20  # DistributedDataParallel's default bucket_cap_mb


def per_tensor_sync(params: list[torch.nn.Parameter], world: int) -> None:
    """One all-reduce per gradient tensor, then the average."""
    for param in params:
        dist.all_reduce(param.grad)
        param.grad /= world


def bucketed_sync(params: list[torch.nn.Parameter], world: int) -> None:
    """Gradients flattened into buckets of at most 25 MB, one all-reduce per bucket."""
    bucket: list[torch.nn.Parameter] = []
    size = 0
    for param in params + [None]:
        if param is None or (bucket and size + param.grad.numel() * 4 > BUCKET_BYTES):
            flat = torch.cat([p.grad.flatten() for p in bucket])
            dist.all_reduce(flat)
            flat /= world
            offset = 0
            for p in bucket:
                p.grad.copy_(flat[offset:offset + p.grad.numel()].view_as(p.grad))
                offset += p.grad.numel()
            bucket, size = [], 0
        if param is not None:
            bucket.append(param)
            size += param.grad.numel() * 4


def _worker(rank: int, world: int, store: str, models: list[str], size: int, steps: int, out: str) -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    from harness.runs.parallel import DataParallel, step_runner
    from zoo import Conditioning, TrainingStage, create_model

    results = {}
    stage = TrainingStage("main")
    for name in models:
        torch.manual_seed(0)
        model = create_model(name, "paper").train()
        params = [p for p in model.parameters() if p.requires_grad]
        degraded, target = torch.rand(1, 3, size, size), torch.rand(1, 3, size, size)
        cond = Conditioning(task_index=torch.zeros(1, dtype=torch.long), level=torch.full((1,), 0.1),
                            degradation_index=torch.zeros(1, dtype=torch.long))
        results[name] = {"parameters": sum(p.numel() for p in params), "tensors": len(params)}
        for way in WAYS:
            runner = step_runner(model, DataParallel() if way == "ddp" else None)
            step_times, sync_times = [], []
            for step in range(steps + 1):  # the first step warms up
                model.zero_grad(set_to_none=True)
                dist.barrier()
                start = time.perf_counter()
                runner(degraded, target, cond, F.l1_loss, stage).total.backward()
                synced = time.perf_counter()
                if way == "per_tensor":
                    per_tensor_sync(params, world)
                elif way == "bucketed":
                    bucketed_sync(params, world)
                end = time.perf_counter()
                if step:
                    step_times.append(end - start)
                    sync_times.append(end - synced)
            results[name][way] = {"step_s": statistics.median(step_times)}
            if way in ("per_tensor", "bucketed"):
                results[name][way]["sync_s"] = statistics.median(sync_times)
            if rank == 0:
                print(f"  {name:<9} {way:<10} step {results[name][way]['step_s']:.3f} s", flush=True)
    if rank == 0:
        Path(out).write_text(json.dumps(results))
    dist.destroy_process_group()


def main() -> None:
    """Measure every way for every model and write the JSON file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["res_hair", "promptir", "nafnet"])
    parser.add_argument("--size", type=int, default=32, help="input side of each process' image")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per way (after one warm-up)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "gradient_sync.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        mp.spawn(_worker, args=(2, str(Path(tmp) / "store"), args.models, args.size, args.steps, str(out)),
                 nprocs=2, join=True)
        results = json.loads(out.read_text())
    print(f"\n{'model':<9} {'params':>8} {'tensors':>7} " + " ".join(f"{w:>11}" for w in WAYS)
          + f" {'sync/tensor':>11} {'sync/bucket':>11}")
    for name, row in results.items():
        print(f"{name:<9} {row['parameters'] / 1e6:7.2f}M {row['tensors']:>7} "
              + " ".join(f"{row[w]['step_s']:10.3f}s" for w in WAYS)
              + f" {row['per_tensor']['sync_s']:10.3f}s {row['bucketed']['sync_s']:10.3f}s")
    payload = {"machine": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
               "processes": 2, "backend": "gloo (loopback)", "input": f"1x3x{args.size}x{args.size} per process",
               "steps": args.steps, "results": results}
    Path(args.out).write_text(json.dumps(payload, indent=2))
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
