"""How a training step runs: in one process, or data-parallel through DistributedDataParallel.

The model contract stays as it is: ``training_loss`` calls the model itself, so the step wraps
``training_loss`` in a thin module (`TrainingStep`) and DistributedDataParallel wraps that. DDP
then sees the forward pass that builds the loss, registers its gradient hooks, puts gradients
into buckets and starts each bucket's all-reduce while the backward pass is still running — the
reason PyTorch's docs give for preferring it to per-tensor all-reduce (issue 27 measured 815 ms
per step with one all-reduce per tensor against 140 ms bucketed, paper Res-HAIR on 2 gloo workers).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Iterable, Iterator

import torch
from torch import Tensor, nn

from zoo.contract import Conditioning, LossTerms, PixelLoss, RestorationModel, TrainingStage


class TrainingStep(nn.Module):
    """`model.training_loss` as a module call, so that a wrapper around it sees the forward pass."""

    def __init__(self, model: RestorationModel):
        super().__init__()
        self.model = model

    def forward(self, degraded: Tensor, target: Tensor, cond: Conditioning, pixel_loss: PixelLoss,
                stage: TrainingStage) -> LossTerms:
        return self.model.training_loss(degraded, target, cond, pixel_loss, stage)


@dataclass(frozen=True)
class DataParallel:
    """Gradient synchronisation across an initialised torch.distributed group (gloo or NCCL)."""

    bucket_cap_mb: float = 25.0  # DistributedDataParallel's default bucket size
    # A DDP communication hook `hook(state, bucket) -> Future` (e.g. fp16 compression, or a counter
    # in the tests); None keeps DDP's built-in all-reduce.
    comm_hook: Callable[[Any, Any], Any] | None = None
    comm_state: Any = None


@contextlib.contextmanager
def only_trainable(model: nn.Module, params: Iterable[nn.Parameter]) -> Iterator[None]:
    """Within the block, only `params` require gradients (a stage's parameters); restored after.

    A stage that trains part of the model (AirNet's encoder warm-up, ADS' stages) then leaves the
    rest out of autograd and out of DDP's buckets, instead of needing `find_unused_parameters`.
    """
    keep = {id(p) for p in params}
    before = {id(p): p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep and before[id(p)])
    try:
        yield
    finally:
        for p in model.parameters():
            p.requires_grad_(before[id(p)])


class StepRunner:
    """Runs a stage's training steps: `runner(...)` returns the LossTerms; `defer_sync()` skips a sync."""

    def __init__(self, module: nn.Module):
        self.module = module

    def __call__(self, degraded: Tensor, target: Tensor, cond: Conditioning, pixel_loss: PixelLoss,
                 stage: TrainingStage) -> LossTerms:
        return self.module(degraded, target, cond, pixel_loss, stage)

    def defer_sync(self) -> ContextManager[Any]:
        """Backward passes inside this block accumulate gradients without syncing them (micro-batches)."""
        no_sync = getattr(self.module, "no_sync", None)
        return no_sync() if no_sync is not None else contextlib.nullcontext()


def step_runner(model: RestorationModel, parallel: DataParallel | None) -> StepRunner:
    """A runner for the current stage: plain, or DDP-wrapped when `parallel` is given.

    Build it inside `only_trainable`, since DDP registers the parameters that require gradients
    when it is constructed. Models whose forward may skip parameters in a step (routing, masks)
    declare `parameters_may_go_unused`, and only they pay for DDP's unused-parameter search.
    """
    step = TrainingStep(model)
    if parallel is None:
        return StepRunner(step)
    from torch.nn.parallel import DistributedDataParallel

    device = next(model.parameters()).device
    ddp = DistributedDataParallel(
        step,
        device_ids=[device] if device.type == "cuda" else None,
        bucket_cap_mb=parallel.bucket_cap_mb,
        find_unused_parameters=model.parameters_may_go_unused,
        # Buffers (MoCo queues, running statistics) stay per process as before: DDP would
        # otherwise overwrite every worker's buffers with rank 0's at each forward.
        broadcast_buffers=False,
    )
    if parallel.comm_hook is not None:
        ddp.register_comm_hook(parallel.comm_state, parallel.comm_hook)
    return StepRunner(ddp)


def distributed_ready() -> bool:
    """True when a torch.distributed process group of more than one process is initialised."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def mean_over_group(metrics: dict[str, float]) -> dict[str, float]:
    """Average logged numbers over the process group (each process saw only its slice)."""
    import torch.distributed as dist

    values = torch.tensor(list(metrics.values()), dtype=torch.float64)
    dist.all_reduce(values)
    return dict(zip(metrics, (values / dist.get_world_size()).tolist()))


def group_stop(local: Callable[[], bool]) -> Callable[[], bool]:
    """A stop check every process of the group calls at the same steps: true on all once `local()` is true on any.

    One all-reduce of a single flag per call (on the GPU under NCCL, which has no CPU tensors), so
    the workers stop after the same step and rank 0's checkpoint of it is the one to resume from.
    """
    import torch.distributed as dist

    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")

    def stop() -> bool:
        flag = torch.tensor([1.0 if local() else 0.0], device=device)
        dist.all_reduce(flag)
        return bool(flag.item() > 0)

    return stop
