"""Frozen test inputs: a setting's degraded test images as 8-bit PNG files plus a manifest.

`harness data export` writes `<task>/<image>.png` for every test pair and `manifest.json` (the
setting, its version, the data source, the test-set fingerprint and each file's SHA-256), so a
method outside the harness restores exactly the inputs the harness' models see.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST = "manifest.json"
FORMAT = 1  # the manifest's own version


def image_file(task: str, name: str) -> str:
    """Relative path of the PNG of test image `name` of `task` (any extension becomes .png)."""
    return str(Path(task) / Path(name).with_suffix(".png"))


def to_uint8(image: np.ndarray) -> np.ndarray:
    """An H x W x 3 float image in [0, 1] on the 8-bit grid as uint8 (exact for the harness' inputs)."""
    return np.clip(np.round(np.asarray(image, np.float64) * 255.0), 0, 255).astype(np.uint8)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass(frozen=True)
class Export:
    """What an export wrote: the folder and its manifest."""

    folder: Path
    manifest: dict[str, Any]


def export_inputs(setting, data, out: Path) -> Export:
    """Write every degraded test input of `setting` from `data` under `out`, then manifest.json."""
    from PIL import Image

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    for task in setting.task_names:
        for pair in data.test_pairs(task):
            relative = image_file(task, pair.name)
            path = out / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(to_uint8(pair.degraded), "RGB").save(path, format="PNG")
            files[relative] = file_sha256(path)
    manifest = {"format": FORMAT, "setting": setting.name, "setting_version": setting.version,
                "data_source": data.name, "fingerprint": data.fingerprint(),
                "tasks": {task: len(data.test_pairs(task)) for task in setting.task_names}, "files": files}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return Export(out, manifest)
