"""A run's training budget: epochs over the setting's repetition-weighted training set, steps, batches.

A recipe (harness/runs/recipes.py) states its budget in epochs; the steps follow from the size
of the data it trains on and the effective batch: ceil(epochs x epoch size / effective batch),
so at least the stated epochs are seen. The effective batch (the recipe's global batch) is split
into `workers` equal per-worker batches and each of those into `accumulate` micro-batches.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable

from harness.runs.config import RunConfig


@dataclass(frozen=True)
class Budget:
    """What a run trains for and how its batch is split."""

    epochs: float
    steps: int
    epoch_size: int  # training samples per epoch: each task's pairs times its repetition factor
    effective_batch: int
    workers: int
    accumulate: int

    @property
    def per_worker_batch(self) -> int:
        """Samples each worker takes per step (before micro-batching)."""
        return self.effective_batch // self.workers

    def params(self) -> dict[str, Any]:
        """The budget as MLflow parameters (`budget.*`)."""
        return {"budget.epochs": round(self.epochs, 4), "budget.steps": self.steps,
                "budget.epoch_size": self.epoch_size, "budget.effective_batch": self.effective_batch,
                "budget.per_worker_batch": self.per_worker_batch, "budget.workers": self.workers,
                "budget.accumulate": self.accumulate}

    def label(self) -> str:
        """Short text for the leaderboard: epochs, steps and effective batch."""
        return f"{self.epochs:.4g} ep = {self.steps:,} steps x {self.effective_batch}"


def epoch_size(setting, count: Callable[[Any], int]) -> int:
    """Samples in one epoch of `setting`: every training task's pairs, times its repetition factor.

    `count(layout)` gives a training set's number of pairs. PromptIR's epoch lists each denoising
    level's images and repeats the deraining set (`train_repeat` in the setting; harness/data/real.py
    draws tasks in that proportion). Names that share one folder (BSD400 and WED) count it once.
    """
    from harness.data.real import training_layouts

    tasks = setting.training_tasks[:1] if setting.all_levels_per_patch else setting.training_tasks
    total = 0
    for task in tasks:  # a setting that degrades each patch at every level (HyperRes) reads its pairs once
        total += task.train_repeat * sum(count(layout) for layout in training_layouts(task))
    return total


def counter(data) -> Callable[[Any], int]:
    """Pairs per training set of `data`: files in a real tree, one crop source per photograph in the embedded suite."""
    from harness.data.real import RealData

    if isinstance(data, RealData):
        from harness.data.layouts import pairs_of

        return lambda layout: len(pairs_of(layout, data.root)[0])
    from harness.data.embedded import load_photos

    photos = len(load_photos())
    return lambda layout: photos


def published(layout) -> int:
    """Pairs of a published training set (its expected count, cited in harness/data/layouts.py)."""
    if layout.expected is None:
        raise ValueError(f"training set {layout.name} has no published count; give --data-root")
    return layout.expected


def check_split(batch: int, workers: int, accumulate: int) -> None:
    """Refuse a batch that does not split equally into `workers` x `accumulate` parts, in one line."""
    if workers < 1:
        raise ValueError(f"--workers must be a positive number of data-parallel workers, got {workers}")
    if batch % (workers * accumulate):
        raise ValueError(f"the effective batch of {batch} does not split into {workers} worker(s) x "
                         f"{accumulate} micro-batch(es) (needs a divisor of {batch}); change --workers or --accumulate")


def plan_budget(run: RunConfig, data, workers: int = 1) -> Budget:
    """The budget of `run` on `data` with `workers` data-parallel workers (its steps from epochs when a recipe says so)."""
    profile = run.resolved_profile()
    check_split(profile.batch_size, workers, profile.accumulate)
    size = epoch_size(data.setting, counter(data))
    if size < 1:
        raise ValueError(f"setting '{run.setting}' has no training samples in {data.name}")
    return budget_of(run, size, workers)


def budget_of(run: RunConfig, size: int, workers: int = 1) -> Budget:
    """The budget of `run` on an epoch of `size` samples with `workers` data-parallel workers."""
    profile = run.resolved_profile()
    if profile.epochs is not None and run.steps is None:
        steps = math.ceil(profile.epochs * size / profile.batch_size)
    else:
        steps = profile.steps
    return Budget(steps * profile.batch_size / size, steps, size, profile.batch_size, workers, profile.accumulate)


def with_budget(run: RunConfig, budget: Budget) -> RunConfig:
    """`run` with the budget's steps fixed (recorded in run.json, so a resumed run keeps them)."""
    if run.resolved_profile().steps == budget.steps:
        return run
    return dataclasses.replace(run, steps=budget.steps)
