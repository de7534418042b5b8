"""The Ray trainable of one run: train (resumable from Ray checkpoints), evaluate, log.

The same body runs as a Ray Tune function trial (`run_trial`) and as every worker of a Ray
Train data-parallel trial (harness/runs/sweep.py); `RayApi` is the only difference: which Ray
functions report metrics and checkpoints and read the checkpoint to resume from.
"""
from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from ray import tune

from harness.runs import tracking
from harness.runs.checkpoints import WEIGHTS, load_checkpoint, save_checkpoint, save_weights
from harness.runs.config import RunConfig
from harness.runs.datasets import log_datasets
from harness.runs.models import log_model, model_config
from harness.data import open_data
from harness.scoring.efficiency import EfficiencyConfig, measure
from harness.scoring.evaluation import evaluate
from harness.scoring.scorers import build_scorers
from harness.runs.parallel import DataParallel
from harness.precision import Compiler, check_precision
from harness.runs.training import TrainingStopped, train
from zoo import Conditioning, create_model
from zoo.plugins import import_module as import_plugin


@dataclass(frozen=True)
class RayApi:
    """How a trial talks to Ray: Tune's functions in a Tune trial, Ray Train's in a Train worker.

    `rank`/`world` place this process in a data-parallel group (rank 0 logs, checkpoints and
    evaluates); `data_parallel` syncs gradients across the group through DistributedDataParallel
    and `mean` averages logged training metrics over it (each process sees only its slice of the batch).
    """

    report: Callable[..., None]
    get_checkpoint: Callable[[], Any]
    checkpoint_from_directory: Callable[[str], Any]
    rank: int = 0
    world: int = 1
    data_parallel: DataParallel | None = None
    mean: Callable[[dict[str, float]], dict[str, float]] | None = None
    # The workers of a group check together at every step whether the run was stopped (one
    # all-reduce of a flag; harness/runs/parallel.py `group_stop`); False: only a lone process checks.
    stop_together: bool = False


def stop_poller(mlflow, run_id: str, every_s: float = 1.0) -> Callable[[], bool]:
    """A check, at most once per `every_s` seconds, of whether the driver marked run `run_id` KILLED.

    The driver marks the run KILLED on SIGINT/SIGTERM (harness/runs/submit.py); the trial then saves
    the step it has just finished and stops, so a resumed run loses no work.
    """
    last = {"at": 0.0, "killed": False}

    def killed() -> bool:
        now = time.monotonic()
        if not last["killed"] and now - last["at"] >= every_s:
            last["at"] = now
            last["killed"] = mlflow.get_run(run_id).info.status == "KILLED"
        return last["killed"]

    return killed


def tune_api() -> RayApi:
    """The RayApi of a Ray Tune function trial."""
    return RayApi(tune.report, tune.get_checkpoint, tune.Checkpoint.from_directory)


def run_trial(config: dict[str, Any]) -> None:
    """Train and evaluate the run described by `config` inside a Ray Tune trial.

    `config` holds the RunConfig fields ("run"), the MLflow "tracking_uri" and "run_id", and the
    number of torch "threads". A retried trial continues from Ray's latest checkpoint.
    """
    run = RunConfig(**config["run"])
    if config.get("train_level") is not None:  # one trial of a dedicated-models grid
        run = dataclasses.replace(run, train_level=config["train_level"])
    run_id = config["run_ids"][f"{run.train_level:g}"] if "run_ids" in config else config["run_id"]
    if config.get("data_parallel"):  # `harness submit --workers N`: Ray Train workers (harness/runs/distributed.py)
        from harness.runs.distributed import submitted_trial

        submitted_trial(config, run, run_id)
        return
    train_evaluate(run, config["tracking_uri"], run_id, config["threads"], tune_api())


def train_evaluate(run: RunConfig, uri: str, run_id: str, threads: int, ray_api: RayApi,
                   validate_every_checkpoint: bool = False) -> None:
    """Train `run` (from the latest checkpoint, if any), evaluate it, and log both to MLflow run `run_id`.

    Every checkpoint is reported through `ray_api` with the step ("phase": "train"); with
    `validate_every_checkpoint` the report also holds the held-out validation metrics
    (harness/runs/validation.py) that sweep schedulers compare. The final report holds the test
    metrics and "phase": "done".
    """
    torch.set_num_threads(threads)
    torch.manual_seed(run.seed)
    np.random.seed(run.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and ray_api.world > 1:
        import ray.train.torch

        device = ray.train.torch.get_device()
    check_precision(run.precision, device)  # the CLI checked the local device; this is the one the trial got
    compiler = Compiler(run.compile)
    setting, profile = run.resolved_setting(), run.resolved_profile()
    data = open_data(setting, run.data_root)
    for module in run.plugin_modules:  # --model-file plug-ins, shipped to every node as Ray py_modules
        import_plugin(module)
    model = create_model(run.model, run.variant, **run.model_options)
    mlflow = tracking.client(uri)
    lead = ray_api.rank == 0
    # one process only: the workers of a data-parallel trial would have to agree on the step
    stop_requested = stop_poller(mlflow, run_id) if ray_api.world == 1 else None
    if ray_api.world > 1 and ray_api.stop_together:  # rank 0 asks MLflow; the group agrees at every step
        from harness.runs.parallel import group_stop

        stop_requested = group_stop(stop_poller(mlflow, run_id) if lead else (lambda: False))
    if lead:  # the run's data as MLflow inputs; the test set's digest is the fingerprint it was tagged with
        log_datasets(mlflow, run_id, data, mlflow.get_run(run_id).data.tags["data_fingerprint"])

    start_step, optimizer_state = 0, None
    checkpoint = ray_api.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state, optimizer_state = load_checkpoint(Path(directory), model)
        start_step = state["step"]
        print(f"[train] resuming from checkpoint at step {start_step}", flush=True)

    crops = None
    if validate_every_checkpoint:
        from harness.runs.validation import validation_set

        crops = validation_set(data, profile.patch_size, run.seed)
    last_validation: dict[str, float] = {}

    def on_log(step: int, metrics: dict[str, float]) -> None:
        if ray_api.mean is not None:  # a collective: every worker logs at the same steps
            metrics = ray_api.mean(metrics)
        if lead:
            tracking.log_metrics(mlflow, run_id, metrics, step)

    def on_checkpoint(step: int, optimizer: dict[str, Any]) -> None:
        metrics: dict[str, Any] = {"step": step, "phase": "train"}
        if crops is not None and lead:
            from harness.runs.validation import validate

            last_validation.update(validate(model, crops, device))
            tracking.log_metrics(mlflow, run_id, last_validation, step)
            metrics.update(last_validation)
        if not lead:  # every worker reports as often as rank 0 (Ray Train's rule); only rank 0 saves
            ray_api.report(metrics, checkpoint=None)
            return
        with tempfile.TemporaryDirectory() as tmp:
            save_checkpoint(Path(tmp), model, optimizer, {"step": step})
            ray_api.report(metrics, checkpoint=ray_api.checkpoint_from_directory(tmp))

    if start_step < profile.steps and stop_requested is not None and stop_requested():  # a retry of a stopped trial
        raise TrainingStopped(start_step)
    if start_step < profile.steps:
        dataset = data.training_set(profile.patch_size, profile.steps * profile.batch_size, run.seed)
        train(model, dataset, profile, start_step=start_step, optimizer_state=optimizer_state,
              on_log=on_log, on_checkpoint=on_checkpoint, device=device,
              shard=(ray_api.rank, ray_api.world), data_parallel=ray_api.data_parallel,
              stop_requested=stop_requested, precision=run.precision, compiler=compiler)
    elif crops is not None and lead:  # restored after the last checkpoint: the sweep metric is still needed
        from harness.runs.validation import validate

        last_validation.update(validate(model, crops, device))

    metrics = finish_run(mlflow, run_id, model, run, device, compiler) if lead else {}
    ray_api.report({**last_validation, **metrics, "step": profile.steps, "phase": "done"})


def finish_run(mlflow, run_id: str, model, run: RunConfig, device, compiler: Compiler | None = None) -> dict[str, float]:
    """Evaluate the trained `model` on the run's test tasks and log metrics, images and weights; return the metrics.

    A compilation that fell back to eager (in training or here) is tagged `compile.fallback` with its reason.
    """
    compiler = compiler or Compiler(run.compile)
    setting, profile = run.resolved_setting(), run.resolved_profile()
    data = open_data(setting, run.data_root)
    # A dedicated model is scored at its own level only; everything else on every task.
    scored = setting if run.train_level is None else dataclasses.replace(setting, tasks=setting.train_tasks)
    scorers, missing = build_scorers(list(run.metrics), setting.protocol, device)
    for message in missing.values():
        print(f"[metrics] {message}", flush=True)
    if missing:  # recorded as missing, never as a number
        tracking.set_tags(mlflow, run_id, {"metrics.missing": ",".join(missing),
                                           **{f"metric_missing.{name}": why for name, why in missing.items()}})
    result = evaluate(model, scored, data, device, blind=run.blind, scorers=scorers, save_outputs=run.save_outputs,
                      precision=run.precision, compiler=compiler)
    if compiler.fallback is not None:
        tracking.set_tags(mlflow, run_id, {"compile.fallback": compiler.fallback})
    if run.efficiency_size:
        try:
            _log_efficiency(mlflow, run_id, model, run, setting, profile.steps)
        except Exception as err:  # a measurement must not fail a trained and evaluated run
            print(f"[efficiency] not measured: {err!r}", flush=True)
            tracking.set_tags(mlflow, run_id, {"efficiency.error": repr(err)})
    metrics = tracking.log_evaluation(mlflow, run_id, result, step=profile.steps)
    with tempfile.TemporaryDirectory() as tmp:
        save_weights(model, Path(tmp) / WEIGHTS)
        mlflow.log_artifact(run_id, str(Path(tmp) / WEIGHTS), "checkpoint")
    # the network as an MLflow model (runs:/<run id>/model), linked to the metrics just logged at this step
    started = time.monotonic()
    model_id = log_model(mlflow.tracking_uri, run_id, model,
                         model_config(run.model, run.variant, run.model_options, run.setting), step=profile.steps)
    print(f"[model] logged as MLflow model {model_id} (runs:/{run_id}/model) in {time.monotonic() - started:.1f} s",
          flush=True)
    return metrics


def _log_efficiency(mlflow, run_id: str, model, run: RunConfig, setting, step: int) -> None:
    """Measure the trained model's efficiency columns and log them as `efficiency.*`."""
    from mlflow.entities import Param

    cond = None
    if setting.continuous and not run.blind and setting.tasks[0].level is not None:
        cond = Conditioning(level=torch.tensor([setting.tasks[0].level / setting.level_scale]))
    figures = measure(model, EfficiencyConfig(size=run.efficiency_size), cond=cond)
    tracking.log_metrics(mlflow, run_id, figures.metrics(), step=step)
    mlflow.log_batch(run_id, params=[Param(k, str(v)) for k, v in figures.params_dict().items()])
    print(f"[efficiency] {figures.params:,} params, {figures.macs / 1e9:.3f} GMACs at {figures.input_size}, "
          f"CPU {figures.latency_ms or 0:.1f} ms", flush=True)
