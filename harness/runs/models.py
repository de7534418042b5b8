"""A finished run's network as an MLflow model: a pyfunc over the zoo model, its configuration and weights.

The model folder holds the zoo configuration (config.json: model, variant, options, setting) and
the safetensors weights; `load_context` rebuilds the zoo model from them, so loading never
unpickles a network. `predict` takes RGB images in [0, 1] as an N x 3 x H x W float32 array and
returns the restored images, clipped to [0, 1], through the same code as `harness restore`.
The harness itself (`load_logged`: restore, evaluate) reads only those data files and never runs
MLflow's pyfunc loader, which unpickles the logged wrapper (python_model.pkl).
"""
from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import torch

from harness.runs.checkpoints import WEIGHTS, load_weights, save_weights
from harness.scoring.evaluation import restore
from harness.settings import get_setting
from zoo import Conditioning, create_model

MODEL_NAME = "model"  # the run's logged model: runs:/<run id>/model
MODEL_URI_SCHEMES = ("runs:/", "models:/")  # what `harness restore --run` and `evaluate --weights` take as a model
CONFIG = "config.json"
CONFIG_ARTIFACT, WEIGHTS_ARTIFACT = "config", "weights"  # the pyfunc's artifact names (log_model, load_logged)
EXAMPLE_SIZE = 32  # side of the logged input example


def model_config(model: str, variant: str, options: dict[str, Any], setting: str) -> dict[str, Any]:
    """What rebuilds a run's network: the zoo model, variant and options, and the setting it restores."""
    return {"model": model, "variant": variant, "model_options": options, "setting": setting}


def build_model(config: dict[str, Any], weights: Path) -> torch.nn.Module:
    """The zoo model of `config` with the safetensors `weights` loaded, in eval mode."""
    network = create_model(config["model"], config["variant"], **config.get("model_options", {}))
    load_weights(network, weights)
    return network.eval()


@torch.no_grad()
def restore_tensor(network, setting, image: torch.Tensor,
                   level: float | None = None) -> tuple[torch.Tensor, float | None]:
    """Restore N x 3 x H x W `image` with `network`; returns the output clipped to [0, 1] and the level used.

    A continuous setting restores at `level` when given, else at the level the network estimates;
    a level for any other setting is refused.
    """
    cond, used = None, None
    if level is not None:
        if not setting.continuous:
            raise ValueError(f"a level needs a model of a continuous setting; this one restores '{setting.name}'")
        cond, used = Conditioning(level=torch.full((image.shape[0],), level / setting.level_scale)), level
    elif setting.continuous:
        estimate = network.estimate_level(image)
        used = None if estimate is None else float(estimate.flatten()[0].item() * setting.level_scale)
    return restore(network, image, cond).clamp(0, 1), used


class RestorationModel(mlflow.pyfunc.PythonModel):
    """The pyfunc of a run's network: predict(N x 3 x H x W float32 in [0, 1], params={"level": ...})."""

    def load_context(self, context) -> None:
        """Rebuild the zoo model from the logged configuration and safetensors weights."""
        config = json.loads(Path(context.artifacts[CONFIG_ARTIFACT]).read_text())
        self.config = config
        self.setting = get_setting(config["setting"])
        self.network = build_model(config, Path(context.artifacts[WEIGHTS_ARTIFACT]))

    def restore(self, image: torch.Tensor, level: float | None = None) -> tuple[torch.Tensor, float | None]:
        """Restored images and the level used (what `harness restore` reports)."""
        return restore_tensor(self.network, self.setting, image, level)

    # `model_input: np.ndarray` is a hint MLflow infers no schema from (the signature is given when logging);
    # without a hint it warns on every import of this module, through a filter of its own that overrides ours
    def predict(self, context, model_input: np.ndarray, params: dict[str, Any] | None = None) -> np.ndarray:
        """Restored images, N x 3 x H x W float32 in [0, 1]."""
        level = (params or {}).get("level")
        image = torch.from_numpy(np.ascontiguousarray(model_input, dtype=np.float32))
        return self.restore(image, None if level is None else float(level))[0].numpy()


def signature():
    """Input and output: RGB images in [0, 1], N x 3 x H x W float32; an optional `level` parameter."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ParamSchema, ParamSpec, Schema, TensorSpec

    images = Schema([TensorSpec(np.dtype(np.float32), (-1, 3, -1, -1))])
    return ModelSignature(inputs=images, outputs=images, params=ParamSchema([ParamSpec("level", "double", None)]))


def input_example() -> np.ndarray:
    """A small smooth RGB image, 1 x 3 x 32 x 32 in [0, 1]."""
    ramp = np.linspace(0, 1, EXAMPLE_SIZE, dtype=np.float32)
    return np.stack([np.add.outer(ramp, ramp) / 2, np.outer(ramp, ramp), 1 - np.add.outer(ramp, ramp) / 2])[None]


def requirements() -> list[str]:
    """What loading the model needs (given, so MLflow does not infer it in a subprocess)."""
    from importlib.metadata import version

    return [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}",
            f"safetensors=={version('safetensors')}", f"numpy=={np.__version__}", "restoration-bench"]


@contextlib.contextmanager
def _no_distribution_scan():
    """MLflow checks a model's requirements against the environment with a map of every installed
    distribution's modules (importlib_metadata.packages_distributions: about 1 s per process here).
    The map only serves requirements it cannot look up by distribution name; ours are distribution
    names with the installed versions (requirements()), so an empty map gives the same check."""
    from mlflow.utils import requirements_utils

    if getattr(requirements_utils, "_MODULES_TO_PACKAGES", False) is not None:  # built already, or MLflow changed
        yield
        return
    requirements_utils._MODULES_TO_PACKAGES = {}
    try:
        yield
    finally:
        requirements_utils._MODULES_TO_PACKAGES = None  # anything else MLflow infers later gets the full map


def log_model(uri: str, run_id: str, network: torch.nn.Module, config: dict[str, Any], step: int) -> str:
    """Log `network` as run `run_id`'s MLflow model (linked to its metrics at `step`); returns the model id."""
    from mlflow.models import Model

    mlflow.set_tracking_uri(uri)  # Model.log reads the process-wide URI; a trial process serves one store
    client = mlflow.MlflowClient(uri)
    run = client.get_run(run_id)
    # created here, in the run's experiment (Model.log alone would use the process' active experiment)
    logged = client.create_logged_model(run.info.experiment_id, name=MODEL_NAME, source_run_id=run_id,
                                        params=dict(run.data.params), tags={"mlflow.modelFlavor": "python_function"})
    with tempfile.TemporaryDirectory() as tmp:
        weights, config_file = Path(tmp) / WEIGHTS, Path(tmp) / CONFIG
        save_weights(network, weights)
        config_file.write_text(json.dumps(config, indent=2))
        with _no_distribution_scan():
            info = Model.log(None, mlflow.pyfunc, run_id=run_id, model_id=logged.model_id, step=step,
                             python_model=RestorationModel(),
                             artifacts={WEIGHTS_ARTIFACT: str(weights), CONFIG_ARTIFACT: str(config_file)},
                             signature=signature(), input_example=input_example(), pip_requirements=requirements())
    return info.model_id


def is_model_uri(text: str | None) -> bool:
    """True for an MLflow model URI (runs:/... or models:/...), as opposed to a run id or a file."""
    return bool(text) and text.startswith(MODEL_URI_SCHEMES)


@dataclass(frozen=True)
class LoggedModel:
    """A logged model loaded back: the zoo network, the setting it restores, its configuration and provenance."""

    uri: str
    network: torch.nn.Module
    setting: Any
    config: dict[str, Any]
    model_id: str | None
    source_run: str | None


def load_logged(model_uri: str, tracking: str) -> LoggedModel:
    """Load `model_uri` (runs:/<run id>/model, models:/NAME/VERSION, models:/NAME@ALIAS) from store `tracking`.

    Only data is read: the MLmodel file, config.json and the safetensors weights; the network is
    rebuilt from the zoo. MLflow's own loader would unpickle the logged python_model.pkl, and a
    store anyone can log to must not run code on the machine that restores from it.
    ValueError (one line naming the URI and the store) when there is no such model or it was not
    logged by the harness.
    """
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    from harness.runs.store import missing_local_store

    if (database := missing_local_store(tracking)) is not None:  # opening it would create an empty store
        raise ValueError(f"no MLflow model at {model_uri}: there is no tracking store at {database}")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            folder = Path(download_artifacts(artifact_uri=model_uri, dst_path=tmp, tracking_uri=tracking,
                                             registry_uri=tracking)).resolve()
            meta = Model.load(folder)
        except (MlflowException, OSError) as err:
            text = str(err).strip()
            reason = text.splitlines()[0] if text else type(err).__name__
            raise ValueError(f"no MLflow model at {model_uri} in {tracking}: {reason}") from None
        artifacts = meta.flavors.get("python_function", {}).get("artifacts") or {}
        paths = {name: (folder / str(entry.get("path"))).resolve() for name, entry in artifacts.items()
                 if isinstance(entry, dict)}
        paths = {name: path for name, path in paths.items() if folder in path.parents}  # nothing outside the model
        try:
            config = json.loads(paths[CONFIG_ARTIFACT].read_text()) if CONFIG_ARTIFACT in paths else {}
        except (OSError, ValueError):
            config = {}  # unreadable: not the harness' configuration
        zoo_config = isinstance(config, dict) and {"model", "variant", "setting"} <= set(config)
        if WEIGHTS_ARTIFACT not in paths or not zoo_config:
            raise ValueError(f"{model_uri} is not a model logged by the harness (no zoo configuration and "
                             f"safetensors weights among its artifacts: {sorted(artifacts) or 'none'})")
        network = build_model(config, paths[WEIGHTS_ARTIFACT])
    return LoggedModel(model_uri, network, get_setting(config["setting"]), config,
                       getattr(meta, "model_id", None), getattr(meta, "run_id", None))
