"""The training loop: L1 loss, AdamW, warm-up + cosine decay, seeded crops, resumable by step.

The loop knows nothing about particular models: auxiliary losses, conditioning, joint networks
and stages come from the model contract (zoo/contract.py).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from harness.runs.parallel import DataParallel, only_trainable, step_runner
from harness.precision import PRECISIONS, Compiler, GradientScaler, autocast, compiled
from harness.runs.profiles import Profile
from harness.progress import Progress
from zoo.contract import Conditioning, LossTerms, RestorationModel, TrainingStage


class TrainingStopped(RuntimeError):
    """Training was asked to stop (the run was interrupted); a checkpoint of step `step` was saved first."""

    def __init__(self, step: int):
        super().__init__(f"TrainingStopped: stopped on request after step {step}; its checkpoint is saved")
        self.step = step


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the step, stage and loss terms."""


class TrainingOutOfMemoryError(RuntimeError):
    """The device ran out of memory; the message names the batch and patch size to lower."""


def is_out_of_memory(error: BaseException) -> bool:
    """True for a device running out of memory: CUDA's OutOfMemoryError or the CPU allocator's RuntimeError."""
    return isinstance(error, torch.OutOfMemoryError) or "can't allocate memory" in str(error)


@dataclass(frozen=True)
class StageSpan:
    """A stage and the global steps [start, end) it covers."""

    stage: TrainingStage
    start: int
    end: int


def plan_stages(stages: list[TrainingStage], total_steps: int) -> list[StageSpan]:
    """Split `total_steps` among stages by their fractions (the last stage takes the remainder)."""
    total_fraction = sum(s.fraction for s in stages)
    spans, start = [], 0
    for i, stage in enumerate(stages):
        end = total_steps if i == len(stages) - 1 else start + round(total_steps * stage.fraction / total_fraction)
        spans.append(StageSpan(stage, start, end))
        start = end
    return spans


def learning_rate(profile: Profile, span: StageSpan, step: int) -> float:
    """The rate of `step` within a stage by the profile's schedule (default: linear warm-up then cosine to zero)."""
    from harness.runs.schedules import SCHEDULES

    return SCHEDULES.get(profile.schedule)(profile, span, step)


Callback = Callable[..., None]


def flatten_views(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Batches of samples with several views (B x V x C x H x W) become B*V ordinary samples."""
    if batch["degraded"].dim() == 5:
        return {k: v.flatten(0, 1) for k, v in batch.items()}
    return batch


def train(
    model: RestorationModel,
    dataset: Dataset,
    profile: Profile,
    *,
    start_step: int = 0,
    optimizer_state: dict[str, Any] | None = None,
    on_log: Callback | None = None,
    on_checkpoint: Callback | None = None,
    device: torch.device | str = "cpu",
    stop_requested: Callable[[], bool] | None = None,
    shard: tuple[int, int] = (0, 1),
    data_parallel: DataParallel | None = None,
    precision: str = "fp32",
    compiler: Compiler | None = None,
) -> int:
    """Train `model` from `start_step` to `profile.steps`; returns the number of steps done.

    `dataset` item i belongs to step i // batch_size, so a resumed run sees exactly the samples
    an uninterrupted one would. `on_log(step, metrics)` and `on_checkpoint(step, optimizer,
    stage_name)` are called every `log_every` / `checkpoint_every` steps and at the end. When
    `stop_requested()` turns true, the step just done is checkpointed and TrainingStopped raised.

    Data-parallel training: with `shard=(rank, world)` this process takes the rank-th of `world`
    equal slices of every step's batch (the batch size must divide by `world`), and with
    `data_parallel` the step runs through DistributedDataParallel (harness/runs/parallel.py),
    which averages the gradients across the initialised process group. With equal slices and
    averaged gradients every process takes the step one process would take on the whole batch.
    `profile.accumulate` splits each process's slice into micro-batches whose gradients are
    synced once, after the last of them.

    `precision` (harness/precision.py) autocasts the forward pass (fp16 also scales the
    gradients); `compiler` compiles the model's forward, falling back to eager if it fails.
    """
    rank, world = shard
    parts = world * profile.accumulate
    if world < 1 or not 0 <= rank < world or profile.accumulate < 1 or profile.batch_size % parts:
        raise ValueError(f"a batch of {profile.batch_size} cannot be split into {world} worker slice(s) of "
                         f"{profile.accumulate} micro-batch(es) each (rank {rank}); choose workers x accumulate "
                         "that divides the batch size")
    local = profile.batch_size // world
    micro = local // profile.accumulate
    model.to(device).train()
    mixed = PRECISIONS.get(precision)
    compiler = compiler or Compiler()
    spans = plan_stages(model.training_stages(), profile.steps)
    progress = Progress("train", profile.steps, start=start_step)
    for span in spans:
        if span.end <= start_step:
            continue
        params = list(model.stage_parameters(span.stage))
        if not params:
            print(f"[train] stage '{span.stage.name}': no trainable parameters, skipped", flush=True)
            continue
        optimizer = torch.optim.AdamW(params, lr=profile.lr, betas=profile.betas, weight_decay=profile.weight_decay)
        if optimizer_state is not None and optimizer_state.get("stage") == span.stage.name:
            optimizer.load_state_dict(optimizer_state["optimizer"])
        optimizer_state = None
        first = max(span.start, start_step)
        indices = [step * profile.batch_size + rank * local + i for step in range(first, span.end) for i in range(local)]
        loader = DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=micro)
        scaler = GradientScaler(mixed, device)
        with only_trainable(model, params), compiled(model, compiler, (NonFiniteLossError, TrainingOutOfMemoryError)) as guard:
            run_step = step_runner(model, data_parallel)
            for step, micro_batches in enumerate(_grouped(loader, profile.accumulate), start=first):
                lr = learning_rate(profile, span, step)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                terms = guard(lambda: _accumulated_step(run_step, optimizer, micro_batches, span.stage, step, device,
                                                        profile, mixed, scaler))
                scaler.step(optimizer)
                model.after_optimizer_step(span.stage)
                done = step + 1
                logged = on_log is not None and (done % profile.log_every == 0 or done == span.end)
                if logged or progress.due(done):  # .item() waits for the device: only when the loss is shown
                    loss = terms.total.item()
                    progress.update(done, f"stage {span.stage.name} loss {loss:.4f} lr {lr:.2e}")
                if logged:
                    metrics = {"train/loss": loss, "train/lr": lr}
                    metrics.update({f"train/loss_{k}": v.item() for k, v in terms.parts.items()})
                    on_log(done, metrics)
                saved = done % profile.checkpoint_every == 0 or done == span.end
                if on_checkpoint and saved:
                    on_checkpoint(done, {"stage": span.stage.name, "optimizer": optimizer.state_dict()})
                if stop_requested is not None and done < profile.steps and stop_requested():
                    if on_checkpoint and not saved:  # resume from exactly here, not the last periodic checkpoint
                        on_checkpoint(done, {"stage": span.stage.name, "optimizer": optimizer.state_dict()})
                    raise TrainingStopped(done)
    return profile.steps


def _grouped(loader: DataLoader, size: int):
    """The loader's micro-batches, `size` at a time (one optimiser step each)."""
    group = []
    for batch in loader:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []


def _accumulated_step(run_step, optimizer, micro_batches: list[dict[str, Tensor]], stage: TrainingStage,
                      step: int, device, profile: Profile, precision, scaler: GradientScaler) -> LossTerms:
    """Forward and backward every micro-batch of one step; gradients are synced after the last only.

    Each micro-batch's loss is divided by their number, so the summed gradient is that of the mean
    loss over the whole slice; the returned terms are the micro-batches' means.
    """
    optimizer.zero_grad(set_to_none=True)
    totals: list[LossTerms] = []
    for index, batch in enumerate(micro_batches):
        batch = flatten_views(batch)
        level = batch["level"] if torch.isfinite(batch["level"]).all() else None
        cond = Conditioning(task_index=batch["task_index"], level=level,
                            degradation_index=batch.get("degradation_index")).to(device)
        last = index == len(micro_batches) - 1
        try:
            with contextlib.nullcontext() if last else run_step.defer_sync():
                with autocast(precision, device):
                    terms = run_step(batch["degraded"].to(device), batch["target"].to(device), cond, F.l1_loss, stage)
                if not torch.isfinite(terms.total):
                    parts = ", ".join(f"{k} {v.item():.4g}" for k, v in terms.parts.items())
                    raise NonFiniteLossError(
                        f"loss became {terms.total.item()} at step {step} (stage '{stage.name}'; terms: "
                        f"{parts or 'none'}); the run is stopped, the last checkpoint is kept"
                    )
                scaler.backward(terms.total if len(micro_batches) == 1 else terms.total / len(micro_batches))
        except (torch.OutOfMemoryError, RuntimeError) as err:
            if not is_out_of_memory(err):
                raise
            raise TrainingOutOfMemoryError(
                f"out of memory at step {step} with micro-batches of {len(batch['degraded'])} "
                f"{profile.patch_size}x{profile.patch_size} patches on {device} (batch {profile.batch_size}, "
                f"accumulate {profile.accumulate}): raise --accumulate, or choose a profile with a smaller batch "
                f"or patch size (`harness list profiles`) or a smaller variant"
            ) from err
        totals.append(LossTerms(terms.total.detach(), {k: v.detach() for k, v in terms.parts.items()}))
    count = len(totals)
    if count == 1:  # one batch per step (the usual case): its terms are the means, no averaging ops
        return totals[0]
    return LossTerms(sum(t.total for t in totals) / count,
                     {k: sum(t.parts[k] for t in totals) / count for k in totals[0].parts})
