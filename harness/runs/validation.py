"""Periodic validation during training: a fixed set of held-out crops, never the test images.

A sweep chooses among trials by these numbers (ASHA/PBT compare them at equal steps), so they
must not come from the test split the leaderboard reports. The crops are made by the data
source's own training-sample generator with a seed no training run uses (VALIDATION_SEED_OFFSET
added to the run's seed), so every trial of a sweep is validated on the same crops.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.runs.training import flatten_views
from zoo.contract import Conditioning, RestorationModel

VALIDATION_SEED_OFFSET = 1_000_003  # a prime far above any seed a user passes; only separates the streams
VALIDATION_CROPS = 16  # crops per validation: 4 batches of the smoke profile, seconds on a CPU


@dataclass(frozen=True)
class ValidationSet:
    """Stacked held-out crops with their conditioning fields."""

    degraded: Tensor
    target: Tensor
    task_index: Tensor
    level: Tensor
    degradation_index: Tensor


def validation_set(data, patch_size: int, seed: int, crops: int = VALIDATION_CROPS) -> ValidationSet:
    """`crops` held-out training-style crops of `data` (a DataSource) for a run of `seed`."""
    dataset = data.training_set(patch_size, crops, seed + VALIDATION_SEED_OFFSET)
    batch = flatten_views(torch.utils.data.default_collate([dataset[i] for i in range(crops)]))
    return ValidationSet(batch["degraded"], batch["target"], batch["task_index"], batch["level"],
                         batch["degradation_index"])


@torch.no_grad()
def validate(model: RestorationModel, crops: ValidationSet, device="cpu", batch_size: int = 4) -> dict[str, float]:
    """Mean L1 loss and PSNR (outputs clipped to [0, 1], data range 1) over the validation crops.

    Conditioning is what training gives the model (task labels and levels), not the blind
    test-time input: this measures optimisation progress, the leaderboard measures restoration.
    """
    was_training = model.training
    model.eval()
    losses, psnrs = [], []
    for i in range(0, len(crops.degraded), batch_size):
        part = slice(i, i + batch_size)
        level = crops.level[part] if torch.isfinite(crops.level[part]).all() else None
        cond = Conditioning(task_index=crops.task_index[part], level=level,
                            degradation_index=crops.degradation_index[part]).to(device)
        degraded, target = crops.degraded[part].to(device), crops.target[part].to(device)
        restored = model(degraded, cond)
        losses.append(F.l1_loss(restored, target, reduction="none").flatten(1).mean(1))
        mse = (restored.clamp(0, 1) - target).pow(2).flatten(1).mean(1).clamp_min(1e-10)
        psnrs.append(-10 * torch.log10(mse))
    model.train(was_training)
    return {"val/loss": torch.cat(losses).mean().item(), "val/psnr": torch.cat(psnrs).mean().item()}
