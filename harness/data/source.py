"""What every data source gives the harness: fixed test pairs and seeded training samples."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
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
