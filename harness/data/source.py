"""What every data source gives the harness: fixed test pairs and seeded training samples."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Dataset


@dataclass(frozen=True)
class TestPair:
    """A fixed degraded/target image pair (H x W x 3 float32 in [0, 1])."""

    name: str
    degraded: np.ndarray
    target: np.ndarray


@dataclass(frozen=True)
class TrainSample:
    """One training crop: tensors C x H x W and the index of its task in the setting."""

    degraded: np.ndarray
    target: np.ndarray
    task_index: int


class DataSource(Protocol):
    """A setting's data: the interface the training loop and the evaluator rely on."""

    name: str  # "embedded" or the data root

    def test_pairs(self, task: str) -> list[TestPair]:
        """The fixed test pairs of `task`."""

    def training_set(self, patch_size: int, length: int, seed: int) -> Dataset:
        """A map-style dataset of `length` seeded training crops (dicts of tensors)."""

    def fingerprint(self) -> str:
        """Content hash of the test split (and how training data is made)."""

    def test_manifest(self) -> list[dict[str, str]]:
        """One row per test image: task, image name, degraded input and target (paths or how they are made)."""

    def training_manifest(self) -> list[dict[str, str]]:
        """Rows like test_manifest's for the images training crops are drawn from."""


def training_sample(setting, task_indices: list[int], views: list[np.ndarray], clean: np.ndarray) -> dict[str, torch.Tensor]:
    """The tensors of one training sample: degraded views of one clean patch, with their labels.

    Each view carries its task index, its level normalised by the setting's level scale (NaN
    for fixed-task settings) and its degradation kind's index (DaAIR's expert labels). A sample
    with one view is an ordinary C x H x W pair; several views stay stacked (V x C x H x W) and
    the training loop flattens them into the batch.
    """
    tasks, scale, kinds = setting.training_tasks, setting.level_scale, setting.degradation_kinds
    as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))  # noqa: E731
    levels = [float("nan") if tasks[i].level is None or scale is None else tasks[i].level / scale for i in task_indices]
    sample = {"degraded": torch.stack([as_tensor(v) for v in views]),
              "target": as_tensor(clean).expand(len(task_indices), -1, -1, -1).contiguous(),
              "task_index": torch.tensor(task_indices), "level": torch.tensor(levels, dtype=torch.float32),
              "degradation_index": torch.tensor([kinds.index(tasks[i].degradation.kind) for i in task_indices])}
    return {k: v[0] for k, v in sample.items()} if len(task_indices) == 1 else sample
