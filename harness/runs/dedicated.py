"""Dedicated baselines of a continuous setting: one model per level, as one Ray Tune grid.

HyperRes' headline comparison (Tab. 1, "Baseline" and "Distance" rows) sets one network for
all levels against the same main network trained separately at each level. Here every level
is one trial of a single Tune grid; each trial has its own MLflow run (tag `dedicated_level`),
and a parent run groups them (MLflow's `mlflow.parentRunId` tag).
"""
from __future__ import annotations

import dataclasses
import uuid

from harness.runs import tracking
from harness.runs.config import RunConfig
from harness.runs.store import tracking_uri
from harness.data import open_data
from harness.runs.submit import (ClusterOptions, RunFailedError, RunInterruptedError, _error_summary, run_grid,
                            run_tags, trial_outcome)


def default_levels(run: RunConfig) -> list[float]:
    """Every evaluated level of the setting inside its trained range (HyperRes Tab. 1)."""
    setting = run.resolved_setting()
    low, high = setting.trained_range()
    return [t.level for t in setting.tasks if low <= t.level <= high]


def submit_dedicated(
    run: RunConfig,
    levels: list[float] | None = None,
    cluster: ClusterOptions = ClusterOptions(),
    explicit_uri: str | None = None,
    cpus_per_trial: int = 1,
) -> dict[float, dict[str, float]]:
    """Train and evaluate one dedicated model per level; returns each level's metrics.

    Every trial's MLflow run ends FINISHED only if that trial succeeded; if any failed, the
    parent run is FAILED and RunFailedError names the levels.
    """
    run.validate()
    levels = sorted(float(level) for level in (levels or default_levels(run)))
    if not levels:
        raise ValueError(f"no levels to train dedicated models at for setting '{run.setting}'")
    for level in levels:
        dataclasses.replace(run, train_level=level).validate()
    setting = run.resolved_setting()
    data = open_data(setting, run.data_root)
    uri = tracking_uri(explicit_uri)
    mlflow = tracking.client(uri)
    sweep = uuid.uuid4().hex[:6]
    parent_tags = {**run_tags(run, data.name, data.fingerprint()), "role": "dedicated-sweep",
                   "levels": ",".join(f"{lv:g}" for lv in levels)}
    parent = tracking.start_run(mlflow, run.setting, f"{run.model}-dedicated-{run.setting}-{sweep}", parent_tags, run.params())
    run_ids = {}
    for level in levels:
        child = dataclasses.replace(run, train_level=level)
        tags = {**run_tags(child, data.name, data.fingerprint()), "mlflow.parentRunId": parent}
        run_ids[f"{level:g}"] = tracking.start_run(
            mlflow, run.setting, f"{run.model}-level{level:g}-{run.setting}-{sweep}", tags, child.params())
    print(f"MLflow parent run {parent}: {len(levels)} dedicated models at levels {', '.join(run_ids)} in {uri}", flush=True)
    space = {"run": dataclasses.asdict(run), "tracking_uri": uri, "run_ids": run_ids}
    outcomes, failures = {}, []
    try:
        from ray import tune

        grid = run_grid({**space, "train_level": tune.grid_search(levels)}, f"dedicated-{parent}", cluster, cpus_per_trial)
        for result in grid:
            level = float(result.config["train_level"])
            run_id = run_ids[f"{level:g}"]
            try:
                outcomes[level] = trial_outcome(result)
                mlflow.set_terminated(run_id, "FINISHED")
            except RunFailedError as err:
                failures.append(f"level {level:g}: {err}")
                tracking.set_tags(mlflow, run_id, {"error": str(err)})
                mlflow.set_terminated(run_id, "FAILED")
    except BaseException as err:
        status = "KILLED" if isinstance(err, (KeyboardInterrupt, RunInterruptedError)) else "FAILED"
        for run_id in run_ids.values():
            if mlflow.get_run(run_id).info.status == "RUNNING":
                mlflow.set_terminated(run_id, status)
        mlflow.set_terminated(parent, status)
        tracking.set_tags(mlflow, parent, {"error": _error_summary(err)})
        raise
    mlflow.set_terminated(parent, "FAILED" if failures else "FINISHED")
    if failures:
        tracking.set_tags(mlflow, parent, {"error": "; ".join(failures)})
        raise RunFailedError("dedicated models failed: " + "; ".join(failures))
    return outcomes
