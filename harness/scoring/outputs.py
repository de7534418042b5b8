"""Restored-image entries: check a folder of a method's outputs against a setting's test set, then score it.

The folder holds `<task>/<image>.png` with the names `harness data export` wrote. Every file is
checked before anything is scored or recorded (missing images, sizes, 8-bit RGB, the manifest of
the inputs it was restored from), then each image is scored against its target with the metrics
and protocol a model's evaluation uses (harness.scoring.scorers), into the same EvaluationResult.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from harness.data.export import MANIFEST, file_sha256, image_file
from harness.data.tree import BadImageError, inspect_image, load_rgb
from harness.progress import Progress
from harness.scoring.evaluation import EvaluationResult, TaskResult
from harness.scoring.metrics import score
from harness.scoring.scorers import Scorer, score_all
from harness.scoring.views import default_views

SHOWN = 5  # names listed in a message about many files


@dataclass
class OutputsFolder:
    """A checked folder: the image of every test pair, each file's SHA-256, and the files it does not use."""

    root: Path
    images: dict[tuple[str, str], Path]  # (task, image name) -> restored file
    sha256: dict[str, str] = field(default_factory=dict)  # relative path -> SHA-256 of every file
    extra: list[str] = field(default_factory=list)

    def digest(self) -> str:
        """One SHA-256 over the sorted (relative path, SHA-256) list of every file in the folder."""
        return hashlib.sha256(json.dumps(sorted(self.sha256.items())).encode()).hexdigest()


def _listing(names: list[str]) -> str:
    return ", ".join(names[:SHOWN]) + (f" (and {len(names) - SHOWN} more)" if len(names) > SHOWN else "")


def check_manifest(root: Path, setting, data) -> None:
    """A manifest.json in the folder must be that of this setting's inputs (same setting and fingerprint)."""
    path = root / MANIFEST
    if not path.is_file():
        return
    try:
        manifest = json.loads(path.read_text())
        theirs = (manifest["setting"], str(manifest["setting_version"]), manifest["fingerprint"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a manifest written by `harness data export` ({err!r})") from None
    ours = (setting.name, str(setting.version), data.fingerprint())
    if theirs != ours:
        raise ValueError(f"{path}: the outputs were restored from other inputs (setting {theirs[0]} v{theirs[1]}, "
                         f"fingerprint {theirs[2]}); this test set is {ours[0]} v{ours[1]}, fingerprint {ours[2]} "
                         f"(export it with `harness data export --setting {setting.name}`)")


def check_outputs(root: Path, setting, data) -> OutputsFolder:
    """Every test pair's restored image, checked for presence, 8-bit RGB and size; ValueError (one line) if not."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"--outputs {root}: no such folder")
    check_manifest(root, setting, data)
    expected: dict[str, tuple[str, str]] = {}
    for task in setting.task_names:
        for pair in data.test_pairs(task):
            expected[image_file(task, pair.name)] = (task, pair.name)
    present = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    missing = [name for name in expected if name not in present]
    if missing:
        raise ValueError(f"--outputs {root}: {len(missing)} of {len(expected)} restored images missing, "
                         f"first {_listing(missing)}")
    folder = OutputsFolder(root, {key: root / name for name, key in expected.items()})
    folder.extra = sorted(present - set(expected) - {MANIFEST})
    targets = {(task, pair.name): pair.target for task in setting.task_names for pair in data.test_pairs(task)}
    for (task, name), path in folder.images.items():
        try:
            width, height = inspect_image(path)
        except BadImageError as err:
            raise ValueError(str(err)) from None
        h, w = targets[(task, name)].shape[:2]
        if (width, height) != (w, h):
            raise ValueError(f"{path}: is {width}x{height}, the target of {task}/{name} is {w}x{h}")
    folder.sha256 = {name: file_sha256(root / name) for name in sorted(present)}
    return folder


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]


def score_outputs(folder: OutputsFolder, setting, data, scorers: dict[str, Scorer] | None = None,
                  save_outputs: bool = False) -> EvaluationResult:
    """Score every restored image against its target as `evaluate` scores a model's output, per task:
    under the setting's protocol and its colour twin (harness.scoring.views.default_views), keeping the
    images (uint8) in TaskResult.outputs when `save_outputs`."""
    views = default_views(setting)
    result = EvaluationResult(views=dict(views))
    progress, done = Progress("eval", len(folder.images)), 0
    for task in setting.task_names:
        per_image, example, outputs = {}, None, {}
        for pair in data.test_pairs(task):
            restored = load_rgb(folder.images[(task, pair.name)])  # float32 on the 8-bit grid, like the inputs
            values = (score_all(scorers, _tensor(restored), _tensor(pair.target), setting.protocol) if scorers
                      else score(_tensor(restored), _tensor(pair.target), setting.protocol))
            for prefix, protocol in views.items():
                if prefix:
                    values.update({f"{prefix}{k}": v
                                   for k, v in score(_tensor(restored), _tensor(pair.target), protocol).items()})
            if save_outputs:  # already 8-bit: the saved PNG holds exactly the levels scored
                outputs[pair.name] = np.round(restored * 255.0).astype(np.uint8)
            per_image[pair.name] = {k: float(v.item()) for k, v in values.items()}
            if example is None:
                example = (pair.degraded, restored, pair.target)
            done += 1
            progress.update(done, f"task {task}")
        metrics = next(iter(per_image.values())).keys()
        means = {m: float(np.mean([s[m] for s in per_image.values()])) for m in metrics}
        result.tasks[task] = TaskResult(task, per_image, means, example, outputs)
    return result
