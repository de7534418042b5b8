"""`harness submit`: one run as a Ray Tune trial, tracked in an MLflow run the driver owns."""
from __future__ import annotations

import dataclasses
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from harness import tracking
from harness.config import RunConfig, home, tracking_uri
from harness.data import open_data
from harness.environment import git_commit, package_versions


class RunFailedError(RuntimeError):
    """The run did not finish; its MLflow run is marked FAILED."""


@dataclass(frozen=True)
class ClusterOptions:
    """Where and with what resources the trial runs."""

    address: str | None = None  # an existing Ray cluster; None starts a local one
    cpus: int | None = None  # CPUs for the trial (default: all of the local machine)
    gpus: float = 0.0
    max_failures: int = 0  # retries of a crashed trial from its last checkpoint


@dataclass(frozen=True)
class SubmitResult:
    """What a finished submission produced."""

    run_id: str
    tracking_uri: str
    experiment_id: str
    metrics: dict[str, float]


def run_tags(run: RunConfig, data_name: str, fingerprint: str) -> dict[str, str]:
    """Tags that identify a run on the leaderboard and make it reproducible."""
    setting = run.resolved_setting()
    tags = {
        "model": run.model,
        "variant": run.variant,
        "setting": run.setting,
        "setting_version": str(setting.version),
        "profile": run.profile,
        "seed": str(run.seed),
        "data_source": data_name,
        "data_fingerprint": fingerprint,
        "git_commit": git_commit(),
        "mlflow.source.git.commit": git_commit(),
    }
    tags.update({f"version.{k}": v for k, v in package_versions().items()})
    if run.blind:
        tags["blind"] = "true"
    if run.train_level is not None:
        tags["dedicated_level"] = f"{run.train_level:g}"
    return tags


def _error_summary(error: BaseException) -> str:
    """The last meaningful line of a (possibly Ray-wrapped) exception."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def run_grid(param_space: dict, name: str, cluster: ClusterOptions, cpus_per_trial: int | None = None):
    """Run `run_trial` over `param_space` (grid axes allowed) on a local or given Ray cluster.

    Returns Ray Tune's ResultGrid. Each trial gets `cpus_per_trial` CPUs (default: all).
    """
    import ray
    from ray import tune

    from harness.trial import run_trial

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started_here = not ray.is_initialized()
    if started_here:
        if cluster.address:
            ray.init(address=cluster.address)
        else:
            ray.init(address="local", num_cpus=cluster.cpus, num_gpus=None if cluster.gpus else 0,
                     include_dashboard=False, configure_logging=False)
    try:
        cpus = cpus_per_trial or cluster.cpus or max(int(ray.available_resources().get("CPU", 1)), 1)
        trainable = tune.with_resources(run_trial, {"cpu": cpus, "gpu": cluster.gpus})
        tuner = tune.Tuner(
            trainable,
            param_space={**param_space, "threads": cpus},
            run_config=tune.RunConfig(
                name=name,
                storage_path=str(home() / "ray_results"),
                failure_config=tune.FailureConfig(max_failures=cluster.max_failures),
                verbose=0,
            ),
        )
        return tuner.fit()
    finally:
        if started_here:
            ray.shutdown()


def trial_outcome(result) -> dict[str, float]:
    """The metrics of a finished trial, or RunFailedError with the trial's own error line."""
    if result.error is not None:
        raise RunFailedError(_error_summary(result.error))
    if result.metrics.get("phase") != "done":
        raise RunFailedError("the trial ended without reporting its evaluation")
    return {k: v for k, v in result.metrics.items() if k.startswith(("psnr/", "ssim/", "level_error/"))}


def _fit(run: RunConfig, uri: str, run_id: str, cluster: ClusterOptions) -> dict[str, float]:
    space = {"run": dataclasses.asdict(run), "tracking_uri": uri, "run_id": run_id}
    return trial_outcome(run_grid(space, f"submit-{run_id}", cluster)[0])


def submit(run: RunConfig, cluster: ClusterOptions = ClusterOptions(), explicit_uri: str | None = None) -> SubmitResult:
    """Validate, track, train and evaluate one run; the MLflow run ends FINISHED only on success."""
    run.validate()
    run = run.with_setting_options()
    if run.data_root is not None:
        run = dataclasses.replace(run, data_root=str(Path(run.data_root).resolve()))
    data = open_data(run.resolved_setting(), run.data_root)
    uri = tracking_uri(explicit_uri)
    mlflow = tracking.client(uri)
    run_name = f"{run.model}-{run.variant}-{run.setting}-{uuid.uuid4().hex[:6]}"
    run_id = tracking.start_run(mlflow, run.setting, run_name, run_tags(run, data.name, data.fingerprint()), run.params())
    print(f"MLflow run {run_id} ({run_name}) in {uri}", flush=True)
    status = "FAILED"
    try:
        metrics = _fit(run, uri, run_id, cluster)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        tracking.set_tags(mlflow, run_id, {"error": "interrupted by the user"})
        raise
    except Exception as err:
        tracking.set_tags(mlflow, run_id, {"error": _error_summary(err)})
        raise RunFailedError(f"run {run_id} failed: {_error_summary(err)}") from err
    finally:
        mlflow.set_terminated(run_id, status)
    experiment = mlflow.get_run(run_id).info.experiment_id
    return SubmitResult(run_id, uri, experiment, metrics)
