"""Real benchmark datasets under `--data-root`: validated reading, fixed test noise, fingerprints."""
from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from harness.data.embedded import test_seed, to_grey
from harness.data.layouts import LAYOUTS, FilePair, Layout, pairs_of, train_layout
from harness.data.source import TestPair, training_sample
from harness.data.tree import layouts_for, load_rgb
from harness.data.degradations import degrade
from harness.settings import Setting

#: bump when the way test inputs are synthesised from real files changes (enters the fingerprint)
READER_VERSION = 1


class RealData:
    """A setting's data read from a benchmark tree under `root`."""

    def __init__(self, setting: Setting, root: str | Path):
        self.setting, self.root = setting, Path(root)
        self.name = str(self.root)
        if not self.root.is_dir():
            raise ValueError(f"--data-root {self.root} is not a folder; `harness data layout` shows the expected tree")
        for layout in layouts_for(setting):
            if not (self.root / layout.clean_dir).is_dir():
                raise ValueError(f"--data-root {self.root}: {layout.name} is missing (expected {layout.describe()}); "
                                 f"run `harness data check --root {self.root} --setting {setting.name}`")

    def _pairs(self, layout: Layout) -> list[FilePair]:
        pairs, problems = pairs_of(layout, self.root)
        if problems:
            raise ValueError(f"--data-root {self.root}: " + "; ".join(problems[:5])
                             + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""))
        return pairs

    def _clean(self, path: Path) -> np.ndarray:
        image = load_rgb(path)
        return to_grey(image) if self.setting.greyscale else image

    @functools.cache
    def test_pairs(self, task: str) -> list[TestPair]:
        """The task's test pairs; synthesised degradations use a fixed seed per (task, image)."""
        spec = next((t for t in self.setting.tasks if t.name == task), None)
        if spec is None:
            raise KeyError(f"setting '{self.setting.name}' has no task '{task}' ({self.setting.task_names})")
        result = []
        for pair in self._pairs(LAYOUTS.get(spec.test_set)):
            clean = self._clean(pair.target)
            if pair.degraded is None:
                rng = np.random.default_rng(test_seed(task, pair.name))
                degraded = degrade(spec.degradation.kind, clean, rng, **spec.degradation.params)
            else:
                degraded = self._clean(pair.degraded)
            result.append(TestPair(pair.name, degraded, clean))
        return result

    def training_set(self, patch_size: int, length: int, seed: int) -> Dataset:
        """Seeded random crops of the training sets, mixed by the setting's repetition factors."""
        sources = []
        for index, task in enumerate(self.setting.training_tasks):
            pairs = [p for layout in training_layouts(task) for p in self._pairs(layout)]
            if not pairs:
                raise ValueError(f"--data-root {self.root}: no training images for task '{task.name}'")
            sources.append((index, pairs))
        return RealTrainingSet(self.setting, sources, patch_size, length, seed, self._clean)

    def test_manifest(self) -> list[dict[str, str]]:
        """One row per test image: task, image, and its degraded and target files relative to the root."""
        return [self._row(spec.name, spec.degradation.kind, pair) for spec in self.setting.tasks
                for pair in self._pairs(LAYOUTS.get(spec.test_set))]

    def training_manifest(self) -> list[dict[str, str]]:
        """One row per training pair of every training task, files relative to the root."""
        return [self._row(task.name, task.degradation.kind, pair) for task in self.setting.training_tasks
                for layout in training_layouts(task) for pair in self._pairs(layout)]

    def _row(self, task: str, kind: str, pair: FilePair) -> dict[str, str]:
        degraded = f"synthesised: {kind}" if pair.degraded is None else str(pair.degraded.relative_to(self.root))
        return {"task": task, "image": pair.name, "degraded": degraded, "target": str(pair.target.relative_to(self.root))}

    @functools.cache
    def fingerprint(self) -> str:
        """SHA-256 (16 hex digits) of every test file's bytes and of how test inputs are made."""
        digest = hashlib.sha256(f"real-v{READER_VERSION}/{self.setting.greyscale}".encode())
        for spec in self.setting.tasks:
            digest.update(json.dumps([spec.name, spec.degradation.kind, spec.degradation.params], sort_keys=True).encode())
            for pair in self._pairs(LAYOUTS.get(spec.test_set)):
                for path in (pair.degraded, pair.target):
                    if path is not None:
                        digest.update(str(path.relative_to(self.root)).encode())
                        digest.update(file_digest(path).encode())
        return digest.hexdigest()[:16]


def training_layouts(task) -> list[Layout]:
    """The folders of a task's training sets, each once: BSD400 and WED share Train/Denoise (layouts.TRAIN_ALIASES),
    so listing them by name would read every denoising image twice."""
    return list({layout.name: layout for layout in map(train_layout, task.train_sets)}.values())


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, cached by (path, size, modification time) for this process."""
    stat = path.stat()
    return _digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=None)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class RealTrainingSet(Dataset):
    """Item i is a deterministic function of (seed, i): task, file, crop, flips, synthesis.

    Items come in epochs, as a DistributedSampler with shuffling gives them: the epoch is PromptIR's
    concatenated training set (each task's pairs, repeated by its repetition factor; one block of pairs for
    a setting that degrades every patch at all levels), item i is entry i mod E of epoch i // E's seeded
    permutation. Every pair is seen once per epoch however many workers split the steps: workers take
    equal slices of each step's consecutive items (harness/runs/training.py), so together they read the
    permutation exactly as one process would.
    """

    def __init__(self, setting, sources, patch: int, length: int, seed: int, read):
        self.setting, self.sources, self.patch, self.length, self.seed, self.read = setting, sources, patch, length, seed, read
        blocks = sources[:1] if setting.all_levels_per_patch else sources
        sizes = [setting.training_tasks[i].train_repeat * len(pairs) for i, pairs in blocks]
        self.block_ends = np.cumsum(sizes)  # entry k of an epoch is in the first block ending after k
        self.epoch_size = int(self.block_ends[-1])

    def __len__(self) -> int:
        return self.length

    @functools.lru_cache(maxsize=64)
    def _image(self, path: Path) -> np.ndarray:
        return self.read(path)

    @functools.lru_cache(maxsize=2)
    def _order(self, epoch: int) -> np.ndarray:
        """The seeded permutation of epoch `epoch`'s entries."""
        return np.random.default_rng([self.seed, epoch, 1]).permutation(self.epoch_size)

    def entry(self, index: int) -> tuple[int, FilePair]:
        """Item `index`'s position in self.sources and its pair, from its epoch's permutation."""
        epoch, position = divmod(index, self.epoch_size)
        k = int(self._order(epoch)[position])
        block = int(np.searchsorted(self.block_ends, k, side="right"))
        pairs = self.sources[block][1]
        start = int(self.block_ends[block - 1]) if block else 0
        return block, pairs[(k - start) % len(pairs)]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        tasks = self.setting.training_tasks
        block, pair = self.entry(index)
        chosen = list(range(len(self.sources))) if self.setting.all_levels_per_patch else [block]
        # One file for all views of an all-levels sample (they share the clean patch).
        clean_full = self._image(pair.target)
        degraded_full = None if pair.degraded is None else self._image(pair.degraded)
        height, width = clean_full.shape[:2]
        if height < self.patch or width < self.patch:
            raise ValueError(f"{pair.target} is {width}x{height}, smaller than the {self.patch}px training patch")
        top, left = int(rng.integers(height - self.patch + 1)), int(rng.integers(width - self.patch + 1))
        crop = lambda a: a[top : top + self.patch, left : left + self.patch]  # noqa: E731
        clean = crop(clean_full)
        flips = [axis for axis in (0, 1) if rng.random() < 0.5]  # HAIR Sec. 4.1
        views, indices = [], []
        for i in chosen:
            task_index, _ = self.sources[i]
            spec = tasks[task_index]
            view = crop(degraded_full) if degraded_full is not None else degrade(spec.degradation.kind, clean, rng, **spec.degradation.params)
            views.append(view)
            indices.append(task_index)
        for axis in flips:
            clean, views = np.flip(clean, axis), [np.flip(v, axis) for v in views]
        return training_sample(self.setting, indices, views, clean)
