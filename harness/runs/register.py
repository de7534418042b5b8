"""`harness register`: put a finished run's logged model into the MLflow Model Registry."""
from __future__ import annotations

from dataclasses import dataclass

from harness.runs import tracking
from harness.runs.models import MODEL_NAME


@dataclass(frozen=True)
class Registered:
    """A new model version: its registered name, version number, alias and logged model id."""

    name: str
    version: str
    alias: str | None
    model_id: str


def logged_model_id(mlflow, run) -> str:
    """The id of the model run `run` logged as `model`; ValueError when it logged none."""
    for output in (run.outputs.model_outputs if run.outputs else []):
        model = mlflow.get_logged_model(output.model_id)
        if model.name == MODEL_NAME:
            return model.model_id
    raise ValueError(f"run {run.info.run_id} has no logged model (runs finished before models were logged "
                     "have only checkpoint/model.safetensors)")


def register_run(run_id: str, name: str, uri: str, alias: str | None = None) -> Registered:
    """Register FINISHED run `run_id`'s model under `name` as a new version, optionally with `alias`."""
    from mlflow.exceptions import MlflowException

    mlflow, run = tracking.existing_run(uri, run_id)
    if run.info.status != "FINISHED":
        raise ValueError(f"run {run_id} is {run.info.status}, not FINISHED: only a finished run's model is registered")
    model_id = logged_model_id(mlflow, run)
    try:
        mlflow.get_registered_model(name)
    except MlflowException:
        try:
            mlflow.create_registered_model(name, tags={"setting": run.data.tags.get("setting", "")})
        except MlflowException:  # created by someone else in between
            mlflow.get_registered_model(name)
    version = mlflow.create_model_version(name, f"models:/{model_id}", run_id=run_id, model_id=model_id,
                                          tags={k: run.data.tags[k] for k in ("model", "setting", "data_fingerprint")
                                                if k in run.data.tags})
    if alias:
        mlflow.set_registered_model_alias(name, alias, version.version)
    return Registered(name, str(version.version), alias, model_id)
