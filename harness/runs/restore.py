"""`harness restore`: restore a user's own image with the model of a finished run or a logged MLflow model.

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
from harness.runs.models import is_model_uri, load_logged, restore_tensor
from harness.settings import get_setting
from zoo import create_model


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


def run_network(run_id: str, uri: str):
    """The network and setting of FINISHED run `run_id`, from its checkpoint artifact."""
    client, run = tracking.existing_run(uri, run_id)
    if run.info.status != "FINISHED":
        raise ValueError(f"run {run_id} is {run.info.status}, not FINISHED: it has no final checkpoint")
    tags, params = run.data.tags, run.data.params
    model = create_model(tags["model"], tags["variant"], **json.loads(params.get("run.model_options", "{}")))
    with tempfile.TemporaryDirectory() as tmp:
        weights = client.download_artifacts(run_id, f"checkpoint/{WEIGHTS}", tmp)
        load_weights(model, Path(weights))
    return model.eval(), get_setting(tags["setting"]), tags["model"]


def logged_network(model_uri: str, uri: str):
    """The network and setting of a logged MLflow model (runs:/<run id>/model or models:/...)."""
    logged = load_logged(model_uri, uri)
    return logged.network, logged.setting, logged.config["model"]


def restore_file(
    run_id: str, uri: str, source: Path, destination: Path, level: float | None = None
) -> dict[str, float | str | None]:
    """Restore `source` into `destination` with run `run_id`'s checkpoint or a model URI; returns what was used."""
    if is_model_uri(run_id):
        network, setting, name = logged_network(run_id, uri)
    else:
        network, setting, name = run_network(run_id, uri)
    image = torch.from_numpy(read_image(source).transpose(2, 0, 1).copy())[None]
    if level is not None and not setting.continuous:
        raise ValueError(f"--level needs a run of a continuous setting; {run_id} is on '{setting.name}'")
    restored, used = restore_tensor(network, setting, image, level)
    pixels = (restored[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    destination.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(destination)
    return {"model": name, "setting": setting.name, "level": used,
            "level_source": "given" if level is not None else ("estimated" if used is not None else None)}
