"""Efficiency columns, measured on the model a run trained: parameters, MACs, latency, peak memory.

One instrumented forward pass on a random input of a stated size counts MACs with PyTorch's own
FLOP counter (torch.utils.flop_counter.FlopCounterMode; MACs = FLOPs / 2: convolutions and
matrix products, the papers' convention, e.g. fvcore in DaAIR App. A) and the peak memory of the
tensors the forward pass allocates beyond the weights and the input. Then `repeats` timed passes
under inference mode give the median CPU latency (and the GPU latency when the model lives on a
GPU). Runs log the figures as `efficiency.*` metrics; the leaderboard reads them.
"""
from __future__ import annotations

import copy
import math
import statistics
import time
import weakref
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

DEFAULT_SIZE = 256  # input side in pixels: the papers' 256 x 256 convention (e.g. HAIR, DaAIR Tab. 5 MACs)


@dataclass(frozen=True)
class EfficiencyConfig:
    """What is measured: input size, timed repetitions after warm-up passes, devices."""

    size: int = DEFAULT_SIZE
    repeats: int = 3
    warmup: int = 1
    cpu_latency: bool = True  # also time the model on the CPU when it lives on a GPU


@dataclass(frozen=True)
class Efficiency:
    """Measured figures of one model at one input size."""

    params: int
    macs: int
    input_size: str  # "1x3xHxW"
    latency_ms: float | None  # CPU, median of `repeats`
    peak_memory_mb: float  # tensors allocated by one forward pass (the device the model lives on)
    threads: int
    gpu_latency_ms: float | None = None
    gpu_peak_memory_mb: float | None = None  # torch.cuda.max_memory_allocated beyond weights + input

    def metrics(self) -> dict[str, float]:
        """The figures as `efficiency.*` MLflow metrics (numbers only)."""
        return {f"efficiency.{k}": float(v) for k, v in asdict(self).items()
                if isinstance(v, (int, float)) and v is not None and k != "threads"}

    def params_dict(self) -> dict[str, Any]:
        """How they were measured, as `efficiency.*` params."""
        return {"efficiency.input_size": self.input_size, "efficiency.threads": self.threads,
                "efficiency.macs_counter": "torch.utils.flop_counter.FlopCounterMode (MACs = FLOPs / 2)"}


def _deform_conv_flops(input_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of torchvision's deform_conv2d: those of the convolution it computes (2 per MAC)."""
    out_channels, in_per_group, kh, kw = weight_shape
    return 2 * out_shape[0] * out_shape[2] * out_shape[3] * out_channels * in_per_group * kh * kw


class _TensorMemory(TorchDispatchMode):
    """Tracks the bytes of storages created during a forward pass and their peak while alive.

    Each op's outputs are counted once per storage (views share it) and released when the last
    Python tensor holding that storage is collected; the peak is over op boundaries.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, list[int]] = {}  # storage pointer -> [bytes, holders]
        self.current = self.peak = 0
        self.known: set[int] = set()

    def ignore(self, tensors) -> None:
        """Storages that exist before the pass (weights, input) are never counted."""
        self.known.update(t.untyped_storage().data_ptr() for t in tensors)

    def _release(self, key: int) -> None:
        entry = self.live.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self.live[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if not isinstance(t, Tensor) or t.device.type == "meta":
                continue
            key = t.untyped_storage().data_ptr()
            if key == 0 or key in self.known:
                continue
            if key in self.live:
                self.live[key][1] += 1
            else:
                self.live[key] = [t.untyped_storage().nbytes(), 1]
                self.current += self.live[key][0]
                self.peak = max(self.peak, self.current)
            weakref.finalize(t, self._release, key)
        return out


def count_macs_and_memory(model: nn.Module, x: Tensor, cond=None) -> tuple[int, int]:
    """(MACs, peak bytes of tensors allocated) of one forward pass of `model` on `x`."""
    from torch.utils.flop_counter import FlopCounterMode

    custom = {}
    if hasattr(torch.ops, "torchvision") and hasattr(torch.ops.torchvision, "deform_conv2d"):
        custom[torch.ops.torchvision.deform_conv2d] = _deform_conv_flops
    counter = FlopCounterMode(display=False, custom_mapping=custom)
    memory = _TensorMemory()
    memory.ignore([*model.parameters(), *model.buffers(), x])
    with torch.inference_mode(), counter, memory:
        out = model(x, cond) if cond is not None else model(x)
        del out
    return counter.get_total_flops() // 2, memory.peak


def _timed(model: nn.Module, x: Tensor, cond, repeats: int, warmup: int) -> float:
    """Median wall time in ms of `repeats` forward passes after `warmup` ones."""
    cuda = x.device.type == "cuda"
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(x, cond) if cond is not None else model(x)
            if cuda:
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def measure(model: nn.Module, config: EfficiencyConfig = EfficiencyConfig(), cond=None, seed: int = 0) -> Efficiency:
    """Measure `model` (left in eval mode on its device) on one random 1x3xSxS input.

    The side is rounded up to the model's `pad_multiple`. `cond` is passed to the forward pass
    when given (a Conditioning for level-conditioned models).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters(), torch.empty(0)).device
    multiple = int(getattr(model, "pad_multiple", 1))
    side = int(math.ceil(config.size / multiple) * multiple)
    generator = torch.Generator().manual_seed(seed)
    x_cpu = torch.rand(1, 3, side, side, generator=generator)
    params = sum(p.numel() for p in model.parameters())
    try:
        on_gpu = device.type == "cuda"
        x = x_cpu.to(device)
        gpu_peak = None
        if on_gpu:
            torch.cuda.synchronize()
            baseline = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
        macs, peak = count_macs_and_memory(model, x, None if cond is None else cond.to(device))
        if on_gpu:
            gpu_peak = (torch.cuda.max_memory_allocated(device) - baseline) / 2**20
        gpu_latency = _timed(model, x, None if cond is None else cond.to(device), config.repeats, config.warmup) if on_gpu else None
        latency = None
        if not on_gpu:
            latency = _timed(model, x, cond, config.repeats, config.warmup)
        elif config.cpu_latency:
            cpu_model = copy.deepcopy(model).cpu()
            latency = _timed(cpu_model, x_cpu, None if cond is None else cond.to("cpu"), config.repeats, config.warmup)
            del cpu_model
    finally:
        model.train(was_training)
    return Efficiency(params=params, macs=int(macs), input_size=f"1x3x{side}x{side}", latency_ms=latency,
                      peak_memory_mb=peak / 2**20, threads=torch.get_num_threads(), gpu_latency_ms=gpu_latency,
                      gpu_peak_memory_mb=gpu_peak)
