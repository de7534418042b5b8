"""The embedded default suite: the settings' degradations synthesised on scikit-image's photos.

Each photograph is split once: a central box is the test image, and training crops are drawn
only from outside that box, so train and test share no pixel. Test inputs are generated with a
seed derived from (task, image) alone, so every model and every setting sees the same inputs.
"""
from __future__ import annotations

import functools
import hashlib
import zlib
from dataclasses import dataclass

import numpy as np
import torch
from skimage import data as skdata
from torch.utils.data import Dataset

from harness.data.source import TestPair, training_sample
from harness.data.degradations import degrade
from harness.settings import Setting

#: bump when the suite's images, split or synthesis change (it enters the fingerprint)
SUITE_VERSION = 1
#: the natural RGB photographs shipped inside the scikit-image wheel (public domain / CC0)
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
TEST_FRACTION = 0.45  # side of the central test box, relative to the photo
TEST_MAX_SIDE = 256  # keeps CPU evaluation of the largest photos short


@dataclass(frozen=True)
class Photo:
    """A source photograph and its held-out test box (top, left, height, width)."""

    name: str
    pixels: np.ndarray  # H x W x 3 float32 on the 8-bit grid
    box: tuple[int, int, int, int]

    @property
    def test_image(self) -> np.ndarray:
        """The pixels inside the test box."""
        top, left, h, w = self.box
        return self.pixels[top : top + h, left : left + w]

    def crop_positions_outside_box(self, patch: int) -> tuple[np.ndarray, np.ndarray]:
        """All top-left corners of `patch`-sized crops that do not touch the test box."""
        height, width = self.pixels.shape[:2]
        top, left, h, w = self.box
        rows, cols = np.mgrid[0 : height - patch + 1, 0 : width - patch + 1]
        outside = (rows + patch <= top) | (rows >= top + h) | (cols + patch <= left) | (cols >= left + w)
        return rows[outside], cols[outside]


@functools.cache
def load_photos() -> tuple[Photo, ...]:
    """The suite's photographs with their test boxes (loaded offline from scikit-image)."""
    photos = []
    for name in PHOTOS:
        pixels = getattr(skdata, name)()[..., :3].astype(np.float32) / 255.0
        height, width = pixels.shape[:2]
        h = min(int(height * TEST_FRACTION), TEST_MAX_SIDE)
        w = min(int(width * TEST_FRACTION), TEST_MAX_SIDE)
        photos.append(Photo(name, pixels, ((height - h) // 2, (width - w) // 2, h, w)))
    return tuple(photos)


def to_grey(image: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma on the 8-bit grid, replicated on three channels."""
    luma = image @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.repeat((np.round(luma * 255) / 255).astype(np.float32)[..., None], 3, axis=2)


def test_seed(task: str, image: str) -> int:
    """Seed of the test input of `image` for `task`: independent of settings and file order."""
    return zlib.crc32(f"embedded-v{SUITE_VERSION}/{task}/{image}".encode())


class EmbeddedSuite:
    """The embedded default data source for one setting."""

    name = "embedded"

    def __init__(self, setting: Setting):
        self.setting = setting

    @functools.cache
    def test_pairs(self, task: str) -> list[TestPair]:
        """Degraded test inputs of `task`, one per photograph."""
        spec = next((t for t in self.setting.tasks if t.name == task), None)
        if spec is None:
            raise KeyError(f"setting '{self.setting.name}' has no task '{task}' ({self.setting.task_names})")
        pairs = []
        for photo in load_photos():
            clean = to_grey(photo.test_image) if self.setting.greyscale else photo.test_image
            rng = np.random.default_rng(test_seed(task, photo.name))
            degraded = degrade(spec.degradation.kind, clean, rng, **spec.degradation.params)
            pairs.append(TestPair(photo.name, degraded, clean))
        return pairs

    def training_set(self, patch_size: int, length: int, seed: int) -> Dataset:
        """Seeded random crops from outside the test boxes, degraded on the fly."""
        return EmbeddedTrainingSet(self.setting, patch_size, length, seed)

    def test_manifest(self) -> list[dict[str, str]]:
        """One row per test image: task, image, and where its degraded input and its target come from."""
        rows = []
        for spec in self.setting.tasks:
            for photo in load_photos():
                rows.append({"task": spec.name, "image": photo.name,
                             "degraded": f"synthesised: {spec.degradation.kind}, seed {test_seed(spec.name, photo.name)}",
                             "target": f"skimage.data.{photo.name}() box {photo.box}"})
        return rows

    def training_manifest(self) -> list[dict[str, str]]:
        """One row per (training task, photograph): crops come from outside the photo's test box."""
        return [{"task": spec.name, "image": photo.name, "degraded": f"synthesised: {spec.degradation.kind}",
                 "target": f"skimage.data.{photo.name}() outside box {photo.box}"}
                for spec in self.setting.training_tasks for photo in load_photos()]

    @functools.cache
    def fingerprint(self) -> str:
        """SHA-256 (first 16 hex digits) of every test pair and of the split definition."""
        digest = hashlib.sha256(f"embedded-v{SUITE_VERSION}".encode())
        for photo in load_photos():
            digest.update(f"{photo.name}:{photo.pixels.shape}:{photo.box}".encode())
        for task in self.setting.task_names:
            for pair in self.test_pairs(task):
                digest.update(task.encode())
                digest.update(np.round(pair.degraded * 255).astype(np.uint8).tobytes())
                digest.update(np.round(pair.target * 255).astype(np.uint8).tobytes())
        return digest.hexdigest()[:16]


class EmbeddedTrainingSet(Dataset):
    """Item i is a deterministic function of (seed, i): task, photo, crop, degradation, flips."""

    def __init__(self, setting: Setting, patch_size: int, length: int, seed: int):
        self.setting, self.patch, self.length, self.seed = setting, patch_size, length, seed
        self.photos = []
        for photo in load_photos():
            rows, cols = photo.crop_positions_outside_box(patch_size)
            if len(rows):
                self.photos.append((photo, rows, cols))
        if not self.photos:
            raise ValueError(f"patch size {patch_size} is too large for the embedded suite's photos")

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        tasks = self.setting.training_tasks
        if self.setting.all_levels_per_patch:
            # HyperRes Fig. 3: one patch degraded at every training level, one view per level.
            task_indices = list(range(len(tasks)))
        else:
            # Tasks are drawn uniformly: the embedded suite has no dataset sizes to balance.
            task_indices = [int(rng.integers(len(tasks)))]
        photo, rows, cols = self.photos[int(rng.integers(len(self.photos)))]
        k = int(rng.integers(len(rows)))
        r, c = rows[k], cols[k]
        clean = photo.pixels[r : r + self.patch, c : c + self.patch]
        if self.setting.greyscale:
            clean = to_grey(clean)
        # Random horizontal and vertical flips of the pair (HAIR Sec. 4.1).
        for axis in (0, 1):
            if rng.random() < 0.5:
                clean = np.flip(clean, axis)
        degraded = [degrade(tasks[i].degradation.kind, clean, rng, **tasks[i].degradation.params) for i in task_indices]
        return training_sample(self.setting, task_indices, degraded, clean)
