"""The Ray Tune trainable of one run: train (resumable from Ray checkpoints), evaluate, log."""
from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from ray import tune

from harness import tracking
from harness.checkpoints import WEIGHTS, load_checkpoint, save_checkpoint, save_weights
from harness.config import RunConfig
from harness.data import open_data
from harness.efficiency import EfficiencyConfig, measure
from harness.evaluation import evaluate
from harness.scorers import build_scorers
from harness.training import TrainingStopped, train
from zoo import Conditioning, create_model


def stop_poller(mlflow, run_id: str, every_s: float = 1.0) -> Callable[[], bool]:
    """A check, at most once per `every_s` seconds, of whether the driver marked run `run_id` KILLED.

    The driver marks the run KILLED on SIGINT/SIGTERM (harness/submit.py); the trial then saves
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


def run_trial(config: dict[str, Any]) -> None:
    """Train and evaluate the run described by `config` inside a Ray worker.

    `config` holds the RunConfig fields ("run"), the MLflow "tracking_uri" and "run_id", and the
    number of torch "threads". A retried trial continues from Ray's latest checkpoint.
    """
    run = RunConfig(**config["run"])
    if config.get("train_level") is not None:  # one trial of a dedicated-models grid
        run = dataclasses.replace(run, train_level=config["train_level"])
    run_id = config["run_ids"][f"{run.train_level:g}"] if "run_ids" in config else config["run_id"]
    torch.set_num_threads(config["threads"])
    torch.manual_seed(run.seed)
    np.random.seed(run.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    setting, profile = run.resolved_setting(), run.resolved_profile()
    data = open_data(setting, run.data_root)
    model = create_model(run.model, run.variant, **run.model_options)
    mlflow = tracking.client(config["tracking_uri"])
    stop_requested = stop_poller(mlflow, run_id)

    start_step, optimizer_state = 0, None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state, optimizer_state = load_checkpoint(Path(directory), model)
        start_step = state["step"]
        print(f"[train] resuming from checkpoint at step {start_step}", flush=True)

    def on_log(step: int, metrics: dict[str, float]) -> None:
        tracking.log_metrics(mlflow, run_id, metrics, step)

    def on_checkpoint(step: int, optimizer: dict[str, Any]) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            save_checkpoint(Path(tmp), model, optimizer, {"step": step})
            tune.report({"step": step, "phase": "train"}, checkpoint=tune.Checkpoint.from_directory(tmp))

    if start_step < profile.steps and stop_requested():  # a retry of a trial the user stopped
        raise TrainingStopped(start_step)
    if start_step < profile.steps:
        dataset = data.training_set(profile.patch_size, profile.steps * profile.batch_size, run.seed)
        train(model, dataset, profile, start_step=start_step, optimizer_state=optimizer_state,
              on_log=on_log, on_checkpoint=on_checkpoint, device=device, stop_requested=stop_requested)

    # A dedicated model is scored at its own level only; everything else on every task.
    scored = setting if run.train_level is None else dataclasses.replace(setting, tasks=setting.train_tasks)
    scorers, missing = build_scorers(list(run.metrics), setting.protocol, device)
    for message in missing.values():
        print(f"[metrics] {message}", flush=True)
    if missing:  # recorded as missing, never as a number
        tracking.set_tags(mlflow, run_id, {"metrics.missing": ",".join(missing),
                                           **{f"metric_missing.{name}": why for name, why in missing.items()}})
    result = evaluate(model, scored, data, device, blind=run.blind, scorers=scorers)
    metrics = result.flat_metrics()
    if run.efficiency_size:
        try:
            _log_efficiency(mlflow, run_id, model, run, setting, profile.steps)
        except Exception as err:  # a measurement must not fail a trained and evaluated run
            print(f"[efficiency] not measured: {err!r}", flush=True)
            tracking.set_tags(mlflow, run_id, {"efficiency.error": repr(err)})
    tracking.log_metrics(mlflow, run_id, metrics, step=profile.steps)
    tracking.log_json(mlflow, run_id, {t: r.per_image for t, r in result.tasks.items()}, "per_image.json", "results")
    tracking.log_samples(mlflow, run_id, {t: r.example for t, r in result.tasks.items() if r.example})
    with tempfile.TemporaryDirectory() as tmp:
        save_weights(model, Path(tmp) / WEIGHTS)
        mlflow.log_artifact(run_id, str(Path(tmp) / WEIGHTS), "checkpoint")
    tune.report({**metrics, "step": profile.steps, "phase": "done"})


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
