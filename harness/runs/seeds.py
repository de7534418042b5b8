"""`harness submit --seeds 0,1,2`: one configuration trained once per seed, as one Ray Tune grid.

At the scale this machine trains, retraining with another seed moves a score by as much as the
differences people draw conclusions from (issue 24). Every seed is one trial of a single Tune grid
(in parallel on a cluster) with its own MLflow run (tags `seed`, `seed_parent`); a parent run (tag
`role=seeds`, so it is no leaderboard row itself) groups them through MLflow's `mlflow.parentRunId`.
The leaderboard folds the seeds into one row (leaderboards/seeds.py).
"""
from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from typing import Any

from harness.runs import tracking
from harness.runs.config import RunConfig
from harness.runs.store import tracking_uri
from harness.data import open_data
from harness.runs.submit import (ClusterOptions, RunFailedError, RunInterruptedError, _error_summary, run_grid,
                                 run_tags, trial_outcome)

ROLE = "seeds"


@dataclass(frozen=True)
class SeedsResult:
    """A finished seeded entry: the parent run, each seed's run id and test metrics."""

    parent: str
    tracking_uri: str
    run_ids: dict[int, str]
    metrics: dict[int, dict[str, float]]


def seed_trial(config: dict[str, Any]) -> None:
    """The Ray Tune trainable of one (entry, seed) trial: `run_trial`'s body with that entry's run, seed and MLflow run."""
    from harness.runs.trial import train_evaluate, tune_api

    key = config["trial"]
    run = RunConfig(**config["runs"][key])
    train_evaluate(run, config["tracking_uri"], config["run_ids"][key], config["threads"], tune_api())


def submit_seeds(run: RunConfig, seeds: list[int], cluster: ClusterOptions = ClusterOptions(),
                 explicit_uri: str | None = None, cpus_per_trial: int | None = None,
                 parent_tags: dict[str, str] | None = None) -> SeedsResult:
    """Train and evaluate `run` once per seed in one Tune grid; the parent run ends FINISHED only if every seed did.

    `cpus_per_trial` defaults to the machine's CPUs shared out over the seeds (at least 1); `parent_tags`
    are extra tags of the parent run.
    """
    return submit_entries([run], seeds, cluster, explicit_uri, cpus_per_trial, parent_tags)[0]


def submit_entries(runs: list[RunConfig], seeds: list[int], cluster: ClusterOptions = ClusterOptions(),
                   explicit_uri: str | None = None, cpus_per_trial: int | None = None,
                   parent_tags: dict[str, str] | None = None) -> list[SeedsResult]:
    """Train every run of `runs` once per seed, all (run, seed) pairs as trials of one Tune grid.

    Each run gets its own parent MLflow run (tags `role=seeds`, `seeds` and `parent_tags`) with one child
    per seed; a parent ends FINISHED only if all its seeds did, else RunFailedError names the failures.
    A run with a `train_level` is a dedicated one-level model (harness/runs/dedicated.py) trained per seed.
    """
    from zoo.ads import is_pipeline_model

    for run in runs:
        if is_pipeline_model(run.model):
            raise ValueError(f"--seeds does not cover the ADS pipeline model '{run.model}'; submit it once per --seed")
        for seed in seeds:
            dataclasses.replace(run, seed=seed).validate()
    uri = tracking_uri(explicit_uri)
    mlflow = tracking.client(uri)
    group = uuid.uuid4().hex[:6]
    parents, configs, run_ids = [], {}, {}
    for index, run in enumerate(runs):
        run = run.with_setting_options()
        data = open_data(run.resolved_setting(), run.data_root)
        level = "" if run.train_level is None else f"-level{run.train_level:g}"
        name = f"{run.model}-{run.variant}-{run.setting}{level}-seeds-{group}"
        tags = {**run_tags(run, data.name, data.fingerprint()), "role": ROLE, "seeds": ",".join(map(str, seeds)),
                **(parent_tags or {})}
        parent = tracking.start_run(mlflow, run.setting, name, tags, run.params())
        parents.append(parent)
        for seed in seeds:
            child = dataclasses.replace(run, seed=seed)
            key = f"{index}:{seed}"
            child_tags = {**run_tags(child, data.name, data.fingerprint()), "mlflow.parentRunId": parent,
                          "seed_parent": parent}
            configs[key] = dataclasses.asdict(child)
            run_ids[key] = tracking.start_run(mlflow, run.setting, name.replace("-seeds-", f"-seed{seed}-"), child_tags,
                                              child.params())
        print(f"MLflow parent run {parent}: {len(seeds)} seeds ({', '.join(map(str, seeds))}) of {run.model}{level} "
              f"on {run.setting} in {uri}", flush=True)
    keys = list(configs)
    if cpus_per_trial is None:
        cpus_per_trial = max((cluster.cpus or _local_cpus()) // len(keys), 1)
    outcomes: dict[str, dict[str, float]] = {}
    failures: dict[int, list[str]] = {}
    try:
        from ray import tune

        grid = run_grid({"runs": configs, "run_ids": run_ids, "tracking_uri": uri, "trial": tune.grid_search(keys)},
                        f"seeds-{group}-{parents[0]}", cluster, cpus_per_trial, trainable=seed_trial)
        for position, result in enumerate(grid):
            # a trial killed before it reported (e.g. by Ray's memory monitor) has no config: grid order is trial order
            key = result.config["trial"] if result.config else keys[position]
            try:
                outcomes[key] = trial_outcome(result)
                mlflow.set_terminated(run_ids[key], "FINISHED")
            except RunFailedError as err:
                index, seed = key.split(":")
                failures.setdefault(int(index), []).append(f"seed {seed}: {err}")
                tracking.set_tags(mlflow, run_ids[key], {"error": str(err)})
                mlflow.set_terminated(run_ids[key], "FAILED")
    except BaseException as err:
        status = "KILLED" if isinstance(err, (KeyboardInterrupt, RunInterruptedError)) else "FAILED"
        for run_id in [*run_ids.values(), *parents]:
            if mlflow.get_run(run_id).info.status == "RUNNING":
                tracking.set_tags(mlflow, run_id, {"error": _error_summary(err)})
                mlflow.set_terminated(run_id, status)
        raise
    for index, parent in enumerate(parents):
        if index in failures:
            tracking.set_tags(mlflow, parent, {"error": "; ".join(failures[index])})
        mlflow.set_terminated(parent, "FAILED" if index in failures else "FINISHED")
    if failures:
        raise RunFailedError("seeds failed: " + "; ".join(f"{runs[i].model}: {'; '.join(f)}" for i, f in failures.items()))
    return [SeedsResult(parent, uri, {s: run_ids[f"{i}:{s}"] for s in seeds}, {s: outcomes[f"{i}:{s}"] for s in seeds})
            for i, parent in enumerate(parents)]


def _local_cpus() -> int:
    """The local machine's CPUs (what a local Ray cluster gets)."""
    import os

    return os.cpu_count() or 1
