"""`harness restore`: restore a user's own image with the model of a finished run.

For continuous settings the level is the user's dial (HyperRes' interactive use): the same
weights restore at any level, or at the level the model estimates when none is given.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from harness.runs import tracking
from harness.runs.checkpoints import WEIGHTS, load_weights
from harness.scoring.evaluation import restore
from harness.settings import get_setting
from zoo import Conditioning, create_model


def read_image(path: Path) -> np.ndarray:
    """An 8-bit image file as H x W x 3 float32 in [0, 1]; names the file if it cannot be read."""
    if not path.is_file():
        raise ValueError(f"input image {path} does not exist")
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"input image {path} cannot be read as an image: {err}") from err
    return pixels


def restore_file(
    run_id: str, uri: str, source: Path, destination: Path, level: float | None = None
) -> dict[str, float | str | None]:
    """Restore `source` into `destination` with run `run_id`'s checkpoint; returns what was used."""
    client = tracking.client(uri)
    run = client.get_run(run_id)
    if run.info.status != "FINISHED":
        raise ValueError(f"run {run_id} is {run.info.status}, not FINISHED: it has no final checkpoint")
    tags, params = run.data.tags, run.data.params
    setting = get_setting(tags["setting"])
    model = create_model(tags["model"], tags["variant"], **json.loads(params.get("run.model_options", "{}")))
    with tempfile.TemporaryDirectory() as tmp:
        weights = client.download_artifacts(run_id, f"checkpoint/{WEIGHTS}", tmp)
        load_weights(model, Path(weights))
    model.eval()
    image = torch.from_numpy(read_image(source).transpose(2, 0, 1).copy())[None]
    cond, used = None, None
    if level is not None:
        if not setting.continuous:
            raise ValueError(f"--level needs a run of a continuous setting; run {run_id} is on '{setting.name}'")
        cond, used = Conditioning(level=torch.tensor([level / setting.level_scale])), level
    with torch.no_grad():
        if cond is None and setting.continuous:
            estimate = model.estimate_level(image)
            used = None if estimate is None else float(estimate.item() * setting.level_scale)
        restored = restore(model, image, cond)
    pixels = (restored[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    destination.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(destination)
    return {"model": tags["model"], "setting": setting.name, "level": used,
            "level_source": "given" if level is not None else ("estimated" if used is not None else None)}
