"""Training images/s and forward latency per precision, compilation and memory format, on CPU or one GPU.

    python benchmarks/training_speed.py --device cuda --variant paper --size 128 --batch 8 \
        --modes fp32 bf16 bf16+compile --latency-size 256 --out benchmarks/results/gpu_training_speed.json
    python benchmarks/training_speed.py --device cpu --variant tiny --models res_hair nafnet \
        --size 64 --batch 8 --modes fp32 fp32+channels_last bf16 fp32+compile bf16+compile

A mode is a precision (harness/precision.py) with optional `+compile` (torch.compile through
`harness.precision.compiled`, the path `--compile` takes) and `+channels_last` (model and inputs in
channels-last memory format). Each model trains on one fixed random batch already on the device
(data loading excluded: this measures the model step) with the harness' step pieces: autocast,
the fp16 gradient scaler, AdamW, L1 through the model's `training_loss`. --warmup steps (which
include compilation) are not timed; then --steps steps are, synchronised at the end. Modes
alternate within each of --rounds rounds and the figure is the median. Forward latency is the
median eager forward time (inference mode) at --latency-size in each precision. A mode that
fails (out of memory, a compile fallback) is recorded with its error instead of a figure.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.precision import PRECISIONS, Compiler, GradientScaler, autocast, compiled  # noqa: E402
from zoo import TrainingStage, create_model  # noqa: E402
from zoo.contract import Conditioning  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Mode:
    """One measured configuration: precision, compiled or eager, memory format."""

    precision: str
    compile: bool = False
    channels_last: bool = False

    @classmethod
    def parse(cls, text: str) -> "Mode":
        """'bf16+compile+channels_last' -> Mode('bf16', True, True)."""
        name, *flags = text.split("+")
        PRECISIONS.get(name)
        unknown = set(flags) - {"compile", "channels_last"}
        if unknown:
            raise SystemExit(f"error: mode '{text}': unknown flag(s) {sorted(unknown)}; expected compile, channels_last")
        return cls(name, "compile" in flags, "channels_last" in flags)


def sync(device: torch.device) -> None:
    """Wait for queued GPU work (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def channels_last(model: torch.nn.Module) -> None:
    """Every 4-D parameter and buffer in channels-last memory format, in place.

    `Module.to(memory_format=torch.channels_last)` also converts 5-D tensors and fails on them
    (HAIR's weight boxes stack one kernel per candidate: N x out x in x k x k).
    """
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.dim() == 4:
                tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)


class Trainer:
    """One model in one mode: a seeded model, AdamW, a fixed batch; `steps(n)` trains n steps."""

    def __init__(self, name: str, variant: str, mode: Mode, device: torch.device, size: int, batch: int):
        torch.manual_seed(0)
        self.model = create_model(name, variant).to(device).train()
        self.precision = PRECISIONS.get(mode.precision)
        self.device, self.mode = device, mode
        fmt = torch.channels_last if mode.channels_last else torch.contiguous_format
        if mode.channels_last:
            channels_last(self.model)
        self.x = torch.rand(batch, 3, size, size, device=device).contiguous(memory_format=fmt)
        self.y = torch.rand(batch, 3, size, size, device=device).contiguous(memory_format=fmt)
        self.cond = Conditioning(task_index=torch.zeros(batch, dtype=torch.long, device=device))
        self.stage = self.model.training_stages()[-1]
        self.optimizer = torch.optim.AdamW(list(self.model.stage_parameters(self.stage)), lr=1e-4)
        self.scaler = GradientScaler(self.precision, device)
        self.compiler = Compiler(mode.compile)

    def steps(self, count: int, guard) -> float:
        """Train `count` steps; returns the last loss."""
        loss = torch.zeros(())
        for _ in range(count):
            self.optimizer.zero_grad(set_to_none=True)

            def step():
                with autocast(self.precision, self.device):
                    terms = self.model.training_loss(self.x, self.y, self.cond, F.l1_loss, self.stage)
                self.scaler.backward(terms.total)
                return terms.total

            loss = guard(step)
            self.scaler.step(self.optimizer)
        sync(self.device)
        return float(loss.detach().float())


def train_speed(name: str, args, mode: Mode, device: torch.device) -> dict:
    """Images/s of one model in one mode: median over rounds of --steps timed steps."""
    trainer = Trainer(name, args.variant, mode, device, args.size, args.batch)
    rates = []
    with compiled(trainer.model, trainer.compiler) as guard:
        started = time.perf_counter()
        loss = trainer.steps(args.warmup, guard)
        warmup_s = time.perf_counter() - started  # with +compile: the compilation, paid once per run
        for _ in range(args.rounds):
            started = time.perf_counter()
            loss = trainer.steps(args.steps, guard)
            rates.append(args.steps * args.batch / (time.perf_counter() - started))
    out = {"images_per_s": statistics.median(rates), "rounds": rates, "last_loss": loss, "warmup_s": warmup_s}
    if trainer.compiler.fallback:
        out["compile_fallback"] = trainer.compiler.fallback
    return out


@torch.inference_mode()
def latency_ms(name: str, args, precision: str, device: torch.device) -> float:
    """Median forward time (ms) of one image at --latency-size, eager."""
    torch.manual_seed(0)
    model = create_model(name, args.variant).to(device).eval()
    x = torch.rand(1, 3, args.latency_size, args.latency_size, device=device)
    mixed = PRECISIONS.get(precision)
    times = []
    for i in range(args.latency_warmup + args.latency_repeats):
        sync(device)
        started = time.perf_counter()
        with autocast(mixed, device):
            model(x)
        sync(device)
        if i >= args.latency_warmup:
            times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


def main() -> None:
    """Measure every model in every mode, print a table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--variant", default="paper")
    parser.add_argument("--models", nargs="+", default=["res_hair", "promptir", "restormer", "nafnet", "daair"])
    parser.add_argument("--size", type=int, default=128)  # the 128x128 crops, batch 8
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--modes", nargs="+", default=["fp32", "bf16", "bf16+compile"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-size", type=int, default=256)
    parser.add_argument("--latency-precisions", nargs="*", default=["fp32", "bf16"])
    parser.add_argument("--latency-warmup", type=int, default=3)
    parser.add_argument("--latency-repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    modes = [Mode.parse(m) for m in args.modes]
    from harness.precision import check_precision

    for mode in modes:
        check_precision(mode.precision, device)
    figures: dict = {}
    for name in args.models:
        row: dict = {"training": {}, "latency_ms": {}}
        for text, mode in zip(args.modes, modes):
            try:
                row["training"][text] = train_speed(name, args, mode, device)
                shown = f"{row['training'][text]['images_per_s']:.2f} img/s"
            except Exception as err:  # out of memory, an unsupported op: recorded, the others still run
                row["training"][text] = {"error": f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"}
                shown = "failed: " + row["training"][text]["error"][:80]
            finally:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            print(f"{name:<10} {args.variant} {text:<26} {shown}", flush=True)
        for precision in args.latency_precisions:
            try:
                row["latency_ms"][precision] = latency_ms(name, args, precision, device)
                print(f"{name:<10} forward {args.latency_size}x{args.latency_size} {precision}: "
                      f"{row['latency_ms'][precision]:.1f} ms", flush=True)
            except Exception as err:
                row["latency_ms"][precision] = f"{type(err).__name__}: {' '.join(str(err).split())[:200]}"
        base = row["training"].get(args.modes[0], {}).get("images_per_s")
        row["speedup_over_" + args.modes[0]] = {t: r["images_per_s"] / base for t, r in row["training"].items()
                                                 if base and "images_per_s" in r}
        figures[name] = row
        write(args, device, figures)  # after every model: a run stopped by a time limit keeps what it measured
    print(f"wrote {args.out}")


def write(args, device: torch.device, figures: dict) -> None:
    """The figures so far, with what they were measured on, as JSON at --out."""
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    result = {"device": args.device, "gpu": gpu, "machine": platform.machine(), "cpus": os.cpu_count(),
              "threads": torch.get_num_threads(), "torch": torch.__version__, "variant": args.variant,
              "size": args.size, "batch": args.batch, "steps": args.steps, "warmup": args.warmup, "rounds": args.rounds,
              "latency_size": args.latency_size, "modes": args.modes, "models": figures}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
