"""The training loop: L1 loss, AdamW, warm-up + cosine decay, seeded crops, resumable by step.

The loop knows nothing about particular models: auxiliary losses, conditioning, joint networks
and stages come from the model contract (zoo/contract.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from harness.runs.profiles import Profile
from harness.progress import Progress
from zoo.contract import Conditioning, RestorationModel, TrainingStage


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
    """Linear warm-up then cosine decay to zero within a stage."""
    length = max(span.end - span.start, 1)
    t = (step - span.start) / length
    warm = profile.warmup_fraction
    factor = (t + 1.0 / length) / warm if t < warm else 0.5 * (1 + math.cos(math.pi * (t - warm) / (1 - warm)))
    return profile.lr * span.stage.lr_scale * min(factor, 1.0)


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
    after_backward: Callable[[list[torch.nn.Parameter]], None] | None = None,
) -> int:
    """Train `model` from `start_step` to `profile.steps`; returns the number of steps done.

    `dataset` item i belongs to step i // batch_size, so a resumed run sees exactly the samples
    an uninterrupted one would. `on_log(step, metrics)` and `on_checkpoint(step, optimizer,
    stage_name)` are called every `log_every` / `checkpoint_every` steps and at the end. When
    `stop_requested()` turns true, the step just done is checkpointed and TrainingStopped raised.

    Data-parallel training: with `shard=(rank, world)` this process takes the rank-th of `world`
    equal slices of every step's batch (the batch size must divide by `world`), and
    `after_backward(params)` runs between the backward pass and the optimiser step, where the
    caller averages the gradients across processes. With equal slices and averaged gradients
    every process takes the step one process would take on the whole batch.
    """
    rank, world = shard
    if world < 1 or not 0 <= rank < world or profile.batch_size % world:
        raise ValueError(f"a batch of {profile.batch_size} cannot be split into {world} equal slices "
                         f"(rank {rank}); choose a number of workers that divides the batch size")
    local = profile.batch_size // world
    model.to(device).train()
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
        loader = DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=local)
        for step, batch in enumerate(loader, start=first):
            lr = learning_rate(profile, span, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = flatten_views(batch)
            level = batch["level"] if torch.isfinite(batch["level"]).all() else None
            cond = Conditioning(task_index=batch["task_index"], level=level,
                                degradation_index=batch.get("degradation_index")).to(device)
            try:
                terms = model.training_loss(
                    batch["degraded"].to(device), batch["target"].to(device), cond, F.l1_loss, span.stage
                )
                if not torch.isfinite(terms.total):
                    parts = ", ".join(f"{k} {v.item():.4g}" for k, v in terms.parts.items())
                    raise NonFiniteLossError(
                        f"loss became {terms.total.item()} at step {step} (stage '{span.stage.name}'; terms: "
                        f"{parts or 'none'}); the run is stopped, the last checkpoint is kept"
                    )
                optimizer.zero_grad(set_to_none=True)
                terms.total.backward()
                if after_backward is not None:
                    after_backward(params)
            except (torch.OutOfMemoryError, RuntimeError) as err:
                if not is_out_of_memory(err):
                    raise
                raise TrainingOutOfMemoryError(
                    f"out of memory at step {step} with a batch of {profile.batch_size} "
                    f"{profile.patch_size}x{profile.patch_size} patches on {device}: choose a profile with a "
                    f"smaller batch or patch size (`harness list profiles`) or a smaller variant"
                ) from err
            optimizer.step()
            model.after_optimizer_step(span.stage)
            done = step + 1
            loss = terms.total.item()
            progress.update(done, f"stage {span.stage.name} loss {loss:.4f} lr {lr:.2e}")
            if on_log and (done % profile.log_every == 0 or done == span.end):
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
