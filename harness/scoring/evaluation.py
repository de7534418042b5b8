"""Evaluation on every task of a setting: pad to the model's multiple, restore, crop, score."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from harness.data import DataSource
from harness.scoring.metrics import score
from harness.scoring.scorers import Scorer, score_all
from harness.scoring.tiling import restore_tiled, tile_grid
from harness.scoring.views import default_views
from harness.progress import Progress
from harness.precision import PRECISIONS, Compiler, autocast, compiled
from harness.settings import MetricProtocol, Setting
from zoo.contract import Conditioning, RestorationModel


@dataclass
class TaskResult:
    """Per-image and mean scores of one task, plus one example for the record."""

    task: str
    per_image: dict[str, dict[str, float]]  # image -> metric -> value
    means: dict[str, float]
    example: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # degraded, restored, target
    outputs: dict[str, np.ndarray] = field(default_factory=dict)  # image -> restored H x W x 3 uint8 (as saved)


@dataclass
class EvaluationResult:
    """Scores of a model on a setting: per task and averaged over tasks (the tables' "Average")."""

    tasks: dict[str, TaskResult] = field(default_factory=dict)
    views: dict[str, MetricProtocol] = field(default_factory=dict)  # metric prefix -> protocol ('' : the setting's)

    def averages(self) -> dict[str, float]:
        """Unweighted mean over tasks of each metric, as the papers' Average column."""
        metrics = next(iter(self.tasks.values())).means.keys()
        return {m: float(np.mean([t.means[m] for t in self.tasks.values()])) for m in metrics}

    def flat_metrics(self) -> dict[str, float]:
        """{'psnr/<task>': ..., 'ssim/<task>': ..., 'psnr/avg': ...} for tracking."""
        flat = {f"{m}/{name}": v for name, t in self.tasks.items() for m, v in t.means.items()}
        flat.update({f"{m}/avg": v for m, v in self.averages().items()})
        return flat


def restore(model: RestorationModel, degraded: Tensor, cond: Conditioning | None = None) -> Tensor:
    """Run `model` on images of any size: reflect-pad to its multiple, then crop back."""
    h, w = degraded.shape[-2:]
    m = model.pad_multiple
    pad_h, pad_w = (-h) % m, (-w) % m
    x = F.pad(degraded, (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else degraded
    return model(x, cond)[..., :h, :w]


def to_8bit(restored: Tensor) -> tuple[Tensor, Tensor]:
    """Restored images as a PNG holds them: (uint8 levels, float32 levels / 255), clipped to [0, 1]."""
    levels = torch.round(restored.clamp(0, 1) * 255.0)
    return levels.to(torch.uint8), levels.float() / 255.0


def from_8bit(levels: np.ndarray, device="cpu") -> Tensor:
    """A saved H x W x 3 uint8 image as the 1 x 3 x H x W float32 tensor that was scored."""
    return _to_tensor(levels, device).float() / 255.0


def _to_tensor(image: np.ndarray, device) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].to(device)


@torch.no_grad()
def evaluate(
    model: RestorationModel, setting: Setting, data: DataSource, device="cpu", blind: bool = False,
    scorers: dict[str, Scorer] | None = None, tile: int | None = None, tile_overlap: int | None = None,
    views: dict[str, MetricProtocol] | None = None, save_outputs: bool = False,
    precision: str = "fp32", compiler: Compiler | None = None,
) -> EvaluationResult:
    """Score `model` on every test pair of every task of `setting`.

    No task label is ever given. On continuous settings the model is told each task's level
    (normalised by the setting's level scale) unless `blind`; a model that can estimate levels
    is also scored on its estimate ("level_error": relative error of the estimated level).
    `scorers` (harness.scoring.scorers.build_scorers) adds metrics beyond the protocol's PSNR and SSIM.
    `tile` restores each image in overlapping tiles of about that side, overlapping by `tile_overlap`
    (default: a quarter of the tile; harness/scoring/tiling.py).
    Every restored image is rounded to 8 bits (as its saved PNG) before it is scored, so saved
    outputs re-score identically. `views` (prefix -> protocol; default: the setting's protocol and
    its colour twin, harness.scoring.views) adds '<prefix>psnr' and '<prefix>ssim' per image;
    `save_outputs` keeps each restored image (uint8) in its TaskResult.outputs. `precision`
    autocasts the model's forward pass and `compiler` compiles it (harness/precision.py);
    the outputs are cast back to float32 before they are rounded and scored.
    """
    model.to(device).eval()
    grid = None if tile is None else tile_grid(tile, model.pad_multiple, tile_overlap)
    views = default_views(setting) if views is None else views
    result = EvaluationResult(views=dict(views))
    total = sum(len(data.test_pairs(t)) for t in setting.task_names)
    progress, done = Progress("eval", total), 0
    mixed = PRECISIONS.get(precision)
    with compiled(model, compiler or Compiler()) as guard:
        for spec in setting.tasks:
            task = spec.name
            per_image, example, outputs = {}, None, {}
            level = None
            if setting.continuous and spec.level is not None:
                level = torch.tensor([spec.level / setting.level_scale], device=device)
            cond = Conditioning(level=level) if level is not None and not blind else None
            for pair in data.test_pairs(task):
                degraded, target = _to_tensor(pair.degraded, device), _to_tensor(pair.target, device)
                with autocast(mixed, device):
                    restored = guard(lambda: restore(model, degraded, cond) if grid is None
                                     else restore_tiled(model, degraded, cond, grid))
                levels, restored = to_8bit(restored.float())
                target = target.float()
                values = score_all(scorers, restored, target, setting.protocol) if scorers else score(restored, target, setting.protocol)
                for prefix, protocol in views.items():
                    if prefix:
                        values.update({f"{prefix}{k}": v for k, v in score(restored, target, protocol).items()})
                if save_outputs:
                    outputs[pair.name] = levels[0].permute(1, 2, 0).cpu().numpy()
                per_image[pair.name] = {k: float(v.item()) for k, v in values.items()}
                estimate = model.estimate_level(degraded) if level is not None else None
                if estimate is not None:
                    per_image[pair.name]["level_error"] = float((estimate - level).abs().item() / level.item())
                if example is None:
                    as_image = lambda t: t[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy()  # noqa: E731
                    example = (pair.degraded, as_image(restored), pair.target)
                done += 1
                progress.update(done, f"task {task}")
            metrics = next(iter(per_image.values())).keys()
            means = {m: float(np.mean([s[m] for s in per_image.values()])) for m in metrics}
            result.tasks[task] = TaskResult(task, per_image, means, example, outputs)
    return result
