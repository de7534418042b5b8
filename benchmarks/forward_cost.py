"""Forward time, peak memory and MACs of zoo models at one input size; prints a table and writes JSON.

    python benchmarks/forward_cost.py --models restormer promptir res_hair daair airnet --size 128 --batch 1

Each model runs in its own subprocess, so peak resident memory (CPU) or peak allocated memory
(CUDA) belongs to that model alone. Times are the median of --repeats forward passes after
--warmup passes, under torch.inference_mode.

By default the subprocesses ask glibc to keep freed memory (MALLOC_MMAP_THRESHOLD_ and
MALLOC_TRIM_THRESHOLD_), as jemalloc or tcmalloc would: otherwise every forward pass maps and
unmaps its large tensors afresh and page faults add 20-60% noise to CPU times on these
machines. --plain-malloc measures with glibc's defaults.

MACs (multiply-accumulates) of one forward pass come from PyTorch's own FLOP counter
(torch.utils.flop_counter.FlopCounterMode; MACs = FLOPs / 2), which counts convolutions and
matrix products, the papers' convention (fvcore in DaAIR App. A); element-wise work, norms,
softmax and bilinear sampling are not counted. torchvision's deformable convolution (AirNet on
CUDA) is counted as the convolution it computes; on CPU AirNet's sampled form already counts
as a matrix product of the same size.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


def deform_conv_flops(input_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of torchvision's deform_conv2d: those of the convolution it computes (2 per MAC)."""
    out_channels, in_per_group, kh, kw = weight_shape
    return 2 * out_shape[0] * out_shape[2] * out_shape[3] * out_channels * in_per_group * kh * kw


def count_macs(model, x) -> int:
    """Multiply-accumulates of one forward pass of `model` on `x` (PyTorch FLOP counter / 2)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    custom = {}
    if hasattr(torch.ops, "torchvision") and hasattr(torch.ops.torchvision, "deform_conv2d"):
        custom[torch.ops.torchvision.deform_conv2d] = deform_conv_flops
    counter = FlopCounterMode(display=False, custom_mapping=custom)
    with torch.no_grad(), counter:
        model(x)
    return counter.get_total_flops() // 2


def measure(model_name: str, variant: str, size: int, batch: int, repeats: int, warmup: int,
            device: str, options: dict) -> dict:
    """Time `repeats` forward passes of one model and report its peak memory."""
    import torch

    import zoo

    torch.manual_seed(0)
    model = zoo.create_model(model_name, variant, **options).to(device).eval()
    x = torch.rand(batch, 3, size, size, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            sync()
            start = time.perf_counter()
            model(x)
            sync()
            if i >= warmup:
                times.append(time.perf_counter() - start)
    if device.startswith("cuda"):
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
    else:  # growth of the process' peak RSS over what the model and input already held
        peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline_kib) / 1024
    macs = count_macs(model, x)  # after the memory reading, so counting does not inflate it
    return {
        "model": model_name, "variant": variant, "options": options, "size": size, "batch": batch,
        "device": device, "threads": torch.get_num_threads(),
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "forward_ms_median": 1000 * statistics.median(times),
        "forward_ms_min": 1000 * min(times), "peak_memory_mib": peak_mib, "gmacs": macs / 1e9,
    }


def main() -> None:
    """Run every requested model in a subprocess, print a table and write the figures to JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["restormer", "promptir", "res_hair", "daair", "airnet", "airnet_hair"])
    parser.add_argument("--variant", default="paper")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--option", action="append", default=[], metavar="MODEL:KEY=VALUE",
                        help="extra model option, e.g. res_hair:application=distributive (adds a row)")
    parser.add_argument("--plain-malloc", action="store_true", help="keep glibc's default malloc tuning")
    parser.add_argument("--output", default="benchmarks/results/forward_cost.json")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one model, print JSON
    args = parser.parse_args()

    if args.one:
        name, options = json.loads(args.one)
        print(json.dumps(measure(name, args.variant, args.size, args.batch, args.repeats, args.warmup,
                                 args.device, options)))
        return

    jobs = [(name, {}) for name in args.models]
    for spec in args.option:
        name, _, assignment = spec.partition(":")
        key, _, value = assignment.partition("=")
        jobs.append((name, {key: value}))
    env = dict(os.environ)
    if not args.plain_malloc:
        env.update(MALLOC_MMAP_THRESHOLD_=str(2**32), MALLOC_TRIM_THRESHOLD_=str(2**36))
    rows = []
    for name, options in jobs:
        command = [sys.executable, __file__, "--one", json.dumps([name, options]), "--variant", args.variant,
                   "--size", str(args.size), "--batch", str(args.batch), "--repeats", str(args.repeats),
                   "--warmup", str(args.warmup), "--device", args.device]
        done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
        if done.returncode:
            sys.exit(f"measuring {name} {options} failed:\n{done.stderr}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        row = rows[-1]
        label = name + "".join(f" {k}={v}" for k, v in options.items())
        print(f"{label:40s} {row['params_m']:7.2f}M  {row['forward_ms_median']:9.1f} ms  "
              f"{row['peak_memory_mib']:8.1f} MiB  {row['gmacs']:8.2f} GMACs", flush=True)
    reference = next((r for r in rows if r["model"] == "restormer" and not r["options"]), None)
    if reference:
        for row in rows:
            row["time_vs_restormer"] = row["forward_ms_median"] / reference["forward_ms_median"]
    promptir = next((r for r in rows if r["model"] == "promptir" and not r["options"]), None)
    if promptir:  # DaAIR's claim is a large MAC reduction relative to PromptIR (DaAIR Sec. 4.2, Tab. 5)
        for row in rows:
            row["promptir_macs_over_model"] = promptir["gmacs"] / row["gmacs"] if row["gmacs"] else None
            if row is not promptir and row["gmacs"]:
                print(f"PromptIR has {row['promptir_macs_over_model']:.1f}x the MACs of {row['model']}")
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                                  "python": platform.python_version(), "plain_malloc": args.plain_malloc,
                                  "rows": rows}, indent=2))
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
