"""Reading a run's artifacts through the MLflow client: per-image metrics and sample strips."""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from leaderboards.bootstrap import PerImage

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

PER_IMAGE = "results/per_image.json"
SAMPLES = "samples"


@contextmanager
def _quiet():
    """No per-download progress bar from MLflow (one per run would flood a leaderboard's output)."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    old = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def per_image_metrics(client: "MlflowClient", run_id: str) -> PerImage | None:
    """The run's results/per_image.json (task -> image -> metric -> value), or None if it has none."""
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp, _quiet():
        try:
            path = client.download_artifacts(run_id, PER_IMAGE, tmp)
        except (MlflowException, OSError):
            return None
        return json.loads(Path(path).read_text())


def sample_tasks(client: "MlflowClient", run_id: str) -> list[str]:
    """Tasks for which the run stored a 'degraded | restored | target' strip under samples/."""
    from mlflow.exceptions import MlflowException

    try:
        files = client.list_artifacts(run_id, SAMPLES)
    except (MlflowException, OSError):
        return []
    return sorted(Path(f.path).stem for f in files if f.path.endswith(".png"))


def sample_strip(client: "MlflowClient", run_id: str, task: str) -> np.ndarray | None:
    """The run's sample strip of `task` as an H x 3W x 3 uint8 array, or None if it has none."""
    from mlflow.exceptions import MlflowException
    from skimage.io import imread

    with tempfile.TemporaryDirectory() as tmp, _quiet():
        try:
            path = client.download_artifacts(run_id, f"{SAMPLES}/{task}.png", tmp)
        except (MlflowException, OSError):
            return None
        image = imread(path)
    return np.asarray(image)[..., :3]


def split_strip(strip: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The degraded, restored and target images of a sample strip (three equal-width panels)."""
    width = strip.shape[1] // 3
    return strip[:, :width], strip[:, width : 2 * width], strip[:, 2 * width : 3 * width]


def zoom_crop(image: np.ndarray, center: tuple[float, float], size: int, scale: int) -> np.ndarray:
    """A `size` x `size` crop around `center` (fractions of height, width), enlarged `scale` times (nearest)."""
    h, w = image.shape[:2]
    size = max(1, min(size, h, w))
    top = int(round(center[0] * h - size / 2))
    left = int(round(center[1] * w - size / 2))
    top, left = min(max(top, 0), h - size), min(max(left, 0), w - size)
    crop = image[top : top + size, left : left + size]
    return np.repeat(np.repeat(crop, scale, axis=0), scale, axis=1)
