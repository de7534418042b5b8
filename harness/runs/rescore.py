"""Re-score an entry's saved outputs (outputs/<task>/<image>.png) under another protocol view.

The new view's metrics are added to the same MLflow run under its prefix (harness.scoring.views);
nothing already logged changes. A view the run already holds at the current protocol version is
re-computed and compared, not logged again; one held at an older version (stale) gets the new
values as the latest entries of the same metric keys (MLflow keeps the old ones in their history)
and its `<prefix>protocol.scored` tag moves to the new version.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mlflow.entities import Param
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from harness.data import open_data
from harness.runs import tracking
from harness.scoring.evaluation import _to_tensor, from_8bit
from harness.scoring.metrics import score
from harness.scoring.views import (
    check_fits,
    prefix,
    protocol_params,
    recorded_views,
    scored_tag,
)
from harness.settings import MetricProtocol, get_protocol, get_setting


class NoSavedOutputs(ValueError):
    """The run kept no restored images, so it cannot be re-scored."""


@dataclass
class Rescored:
    """One run re-scored under one protocol: its metrics and what happened to them."""

    run_id: str
    protocol: MetricProtocol
    prefix: str
    metrics: dict[str, float] = field(default_factory=dict)
    action: str = "logged"  # logged (a new view) | updated (stale version) | checked (already current)
    matches: bool | None = None  # checked: whether the values equal the logged ones exactly


def get_run(mlflow: MlflowClient, run_id: str):
    """The MLflow run `run_id`; ValueError names an id the store does not hold."""
    try:
        return mlflow.get_run(run_id)
    except MlflowException:
        raise ValueError(f"no run '{run_id}' in the tracking store {mlflow.tracking_uri}") from None


def has_outputs(mlflow: MlflowClient, run_id: str) -> bool:
    """Whether the run saved its restored images."""
    return bool(mlflow.list_artifacts(run_id, tracking.OUTPUTS))


def _scores(folder: Path, setting, data, protocol: MetricProtocol) -> dict[str, dict[str, float]]:
    """Mean PSNR/SSIM per task of the saved images in `folder` (task sub-folders) against the targets."""
    import imageio.v3 as iio

    means = {}
    for task in [t for t in setting.task_names if (folder / t).is_dir()]:
        pairs = {tracking.output_file(p.name): p for p in data.test_pairs(task)}
        saved = {path.name: path for path in (folder / task).glob("*.png")}
        if set(saved) - set(pairs):
            raise ValueError(f"saved outputs {task}/{sorted(set(saved) - set(pairs))[0]} has no test image in this data")
        values: dict[str, list[float]] = {"psnr": [], "ssim": []}
        for name, pair in pairs.items():  # the data's order: the means sum as the evaluation summed them
            if name not in saved:
                continue
            restored = from_8bit(np.asarray(iio.imread(saved[name])))
            per_image = score(restored, _to_tensor(pair.target, "cpu").float(), protocol)
            for metric in values:
                values[metric].append(float(per_image[metric].item()))
        means[task] = {m: float(np.mean(v)) for m, v in values.items()}
    return means


def compute(mlflow: MlflowClient, run, protocol: MetricProtocol) -> dict[str, float]:
    """The view's flat metrics ('<prefix>psnr/<task>', ..., '<prefix>psnr/avg') from the run's saved outputs."""
    tags = run.data.tags
    setting = get_setting(tags["setting"])
    check_fits(setting, protocol)
    run_id = run.info.run_id
    if not has_outputs(mlflow, run_id):
        raise NoSavedOutputs(f"run {run_id} ({run.info.run_name}) has no saved outputs to re-score "
                             "(it ran with --no-save-outputs or before outputs were saved)")
    source = tags.get("data_source", "embedded")
    data = open_data(setting, None if source == "embedded" else source)
    if tags.get("data_fingerprint") and data.fingerprint() != tags["data_fingerprint"]:
        raise ValueError(f"run {run_id} was scored on test data {tags['data_fingerprint'][:8]}, "
                         f"but {source} now holds {data.fingerprint()[:8]}")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one line per run, not a bar per file
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(mlflow.download_artifacts(run_id, tracking.OUTPUTS, tmp))
        means = _scores(folder, setting, data, protocol)
    p = prefix(setting, protocol)
    flat = {f"{p}{m}/{t}": v for t, ms in means.items() for m, v in ms.items()}
    for metric in ("psnr", "ssim"):
        flat[f"{p}{metric}/avg"] = float(np.mean([ms[metric] for ms in means.values()]))
    return flat


def _step(mlflow: MlflowClient, run_id: str) -> int:
    """The step a run's scores were logged at (its last training step)."""
    history = mlflow.get_metric_history(run_id, "psnr/avg")
    return max((m.step for m in history), default=0)


def rescore(mlflow: MlflowClient, run, protocol: MetricProtocol) -> Rescored:
    """Re-score `run` under `protocol` and record the view (see the module docstring)."""
    setting = get_setting(run.data.tags["setting"])
    p = prefix(setting, protocol)
    metrics = compute(mlflow, run, protocol)
    outcome = Rescored(run.info.run_id, protocol, p, metrics)
    recorded = recorded_views(run.data.params, run.data.tags).get(p)
    if recorded == (protocol.name, protocol.version):
        outcome.action = "checked"
        outcome.matches = all(run.data.metrics.get(k) == v for k, v in metrics.items())
        return outcome
    if recorded is None:
        mlflow.log_batch(outcome.run_id, params=[Param(k, v) for k, v in protocol_params(p, protocol).items()])
    else:
        outcome.action = "updated"
    tracking.log_metrics(mlflow, outcome.run_id, metrics, step=_step(mlflow, outcome.run_id))
    tracking.set_tags(mlflow, outcome.run_id, scored_tag(p, protocol))
    return outcome


def stale_views(run) -> list[MetricProtocol]:
    """The current protocols of the views `run` holds at an older version than the registry's."""
    from harness.settings import PROTOCOLS

    stale = []
    for name, version in recorded_views(run.data.params, run.data.tags).values():
        if name in PROTOCOLS and get_protocol(name).version > version:
            stale.append(get_protocol(name))
    return stale


def setting_runs(mlflow: MlflowClient, setting: str) -> list:
    """Every FINISHED run of `setting`."""
    experiment = mlflow.get_experiment_by_name(f"restoration-bench/{setting}")
    if experiment is None:
        return []
    return list(mlflow.search_runs([experiment.experiment_id], "attributes.status = 'FINISHED'",
                                   max_results=50000))
