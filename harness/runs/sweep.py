"""`harness sweep`: a Ray Tune hyperparameter search, one MLflow child run per trial.

The driver creates an MLflow parent run (tag role=sweep) and hands its id to the trials; every
trial opens (or, when Ray restarts it after a crash, reopens) the child run tagged with its own
Tune trial id, so a trial retried by FailureConfig or continued by `harness sweep --resume` is
recorded exactly once. Trials report held-out validation metrics and a checkpoint every
`checkpoint_every` steps through Ray's API (harness/runs/trial.py), which is what ASHA and PBT
compare. The best finished trial by validation PSNR is tagged `sweep_best` and stands on the
leaderboard like a submitted run. A trial with more than one worker runs data-parallel through
Ray Train's TorchTrainer (gloo on CPUs, NCCL on GPUs).

Nested runs per sweep are not built into Ray's MLflow integration (ray-project/ray#19978), so
the parent id travels in the trial config, and the tracking URI with it (mlflow/mlflow#7206).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from harness.runs import tracking
from harness.runs.config import RunConfig
from harness.runs.distributed import DRIVER_CPU
from harness.runs.plugins import check_model, check_resumable, log_plugin_file
from harness.runs.store import tracking_uri
from harness.data import open_data
from harness.runs.submit import (ClusterOptions, RunFailedError, RunInterruptedError, _error_summary, experiment_path,
                            run_grid, run_tags)
from zoo import model_config
from zoo.registry import Registry
from zoo.search_spaces import KINDS, Dimension, SearchSpace, default_space

METRIC, MODE = "val/psnr", "max"  # what schedulers compare and the best trial is chosen by
PROFILE_KEYS = ("lr", "weight_decay", "warmup_fraction")  # training fields a sweep may search
STOPPED = "TrainingStopped"  # the error of a trial that stopped because its run was marked KILLED
# A trial's actor (its worker process, torch/MLflow/zoo imported) runs the next trial of the sweep
# instead of a new one (Tune's reuse_actors); RESTORATION_BENCH_REUSE_ACTORS=0 restores one actor
# per trial (benchmarks/ray_sweep_overhead.py measures both).
REUSE_ACTORS = os.environ.get("RESTORATION_BENCH_REUSE_ACTORS", "1") != "0"


@dataclass(frozen=True)
class SchedulerContext:
    """What a scheduler factory needs to know about the sweep."""

    steps: int  # training steps of every trial (the time axis)
    interval: int  # steps between validation reports
    mutations: dict[str, Any]  # Tune sampling objects of the searchable training fields


SCHEDULERS: Registry[Callable[[SchedulerContext], Any]] = Registry("scheduler")


@SCHEDULERS.register("asha")
def _asha(ctx: SchedulerContext):
    """Asynchronous successive halving (Li et al., MLSys 2020): stop poor trials at rungs."""
    from ray.tune.schedulers import ASHAScheduler

    # grace period: the first validation; reduction factor 4: Ray's default (ASHAScheduler). ASHA
    # stops a trial once it reaches max_t, so max_t lies one step beyond the budget: a trial that
    # survives every rung ends by itself, after its final evaluation.
    return ASHAScheduler(time_attr="step", max_t=ctx.steps + 1, grace_period=min(ctx.interval, ctx.steps),
                         reduction_factor=4)


@SCHEDULERS.register("pbt")
def _pbt(ctx: SchedulerContext):
    """Population based training (Jaderberg et al., 2017): copy good checkpoints, perturb training fields."""
    from ray.tune.schedulers import PopulationBasedTraining

    if not ctx.mutations:
        raise ValueError("--scheduler pbt needs a searched training field (lr, weight_decay, warmup_fraction) "
                         "to perturb; add e.g. --space lr=loguniform:1e-4:3e-3")
    return PopulationBasedTraining(time_attr="step", perturbation_interval=ctx.interval,
                                   hyperparam_mutations={"space": ctx.mutations})


@SCHEDULERS.register("fifo")
def _fifo(ctx: SchedulerContext):
    """No early stopping: every trial trains its full budget."""
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


@dataclass(frozen=True)
class SweepConfig:
    """A sweep: the base run, the searched space, and how trials are scheduled and placed."""

    run: RunConfig
    space: dict[str, Dimension] = field(default_factory=dict)
    num_samples: int = 4
    scheduler: str = "asha"
    cpus_per_trial: float = 1.0  # the trial's total; a multi-worker trial splits it among its workers
    gpus_per_trial: float = 0.0  # fractions allowed; above 1, one worker per GPU
    workers_per_trial: int | None = None  # data-parallel workers (default: one per GPU, or one)

    def workers(self) -> int:
        """Number of data-parallel workers of each trial."""
        if self.workers_per_trial is not None:
            return self.workers_per_trial
        return int(self.gpus_per_trial) if self.gpus_per_trial > 1 else 1

    def validate(self) -> None:
        """Reject bad values with a message naming the value and what was expected; nothing is started."""
        SCHEDULERS.get(self.scheduler)
        if not isinstance(self.num_samples, int) or self.num_samples <= 0:
            raise ValueError(f"--num-samples must be a positive number of trials, got {self.num_samples}")
        if not self.cpus_per_trial > 0:
            raise ValueError(f"--cpus-per-trial must be positive, got {self.cpus_per_trial}")
        if self.gpus_per_trial < 0:
            raise ValueError(f"--gpus-per-trial must be >= 0 (fractions allowed), got {self.gpus_per_trial}")
        if self.workers_per_trial is not None and self.workers_per_trial < 1:
            raise ValueError(f"--workers-per-trial must be >= 1, got {self.workers_per_trial}")
        if self.workers_per_trial is None and self.gpus_per_trial > 1 and self.gpus_per_trial != int(self.gpus_per_trial):
            raise ValueError(f"--gpus-per-trial above 1 means one worker per GPU and must be whole, "
                             f"got {self.gpus_per_trial}")
        profile = self.run.resolved_profile()
        batch, parts = profile.batch_size, self.workers() * profile.accumulate
        if batch % parts:
            accumulated = f" into {profile.accumulate} micro-batches each" if profile.accumulate > 1 else ""
            raise ValueError(f"{self.workers()} workers per trial cannot split the profile's batch of {batch} "
                             f"equally{accumulated}; choose a divisor of {batch}")
        validate_space(self.space, self.run)
        if self.scheduler == "pbt":
            varying = [k for k, d in self.space.items() if k.startswith("model.") and not _constant(d)]
            if varying:
                raise ValueError(f"--scheduler pbt copies checkpoints between trials, so every trial must have "
                                 f"the same architecture; {', '.join(varying)} varies (use --scheduler asha)")

    def to_json(self) -> str:
        """The sweep as JSON (logged on the parent run; rebuilds the sweep on --resume)."""
        data = dataclasses.asdict(self)
        data["space"] = {k: {"kind": d.kind, "values": list(d.values)} for k, d in self.space.items()}
        return json.dumps(data, sort_keys=True, default=list)

    @staticmethod
    def from_json(text: str) -> "SweepConfig":
        """Inverse of to_json."""
        data = json.loads(text)
        space = {k: Dimension(d["kind"], tuple(_tuple(v) for v in d["values"])) for k, d in data.pop("space").items()}
        return SweepConfig(run=RunConfig(**data.pop("run")), space=space, **data)


@dataclass(frozen=True)
class SweepResult:
    """What a finished sweep produced."""

    parent_run_id: str
    tracking_uri: str
    best_run_id: str | None
    trials: dict[str, dict[str, Any]]  # child run id -> status, trial id, node, metrics


def _tuple(value: Any) -> Any:
    """Lists as tuples (hashable, like the dataclass fields they fill); numbers written as text as numbers.

    YAML reads `1e-4` as a string (YAML 1.1 floats need a dot), so text that Python reads as a
    number becomes one.
    """
    if isinstance(value, (list, tuple)):
        return tuple(_tuple(v) for v in value)
    if isinstance(value, str):
        for convert in (int, float):
            try:
                return convert(value)
            except ValueError:
                pass
    return value


def _constant(dim: Dimension) -> bool:
    return dim.kind in ("choice", "grid") and len(dim.values) == 1


# ----------------------------------------------------------------------------- search spaces


def parse_dimension(key: str, text: str) -> Dimension:
    """`loguniform:1e-4:3e-3`, `uniform:0:1`, `randint:1:5`, `choice:8,16,24`, `grid:[3,3],[5,7]`, or one constant."""
    kind, sep, rest = text.partition(":")
    if sep and kind.isidentifier() and kind not in KINDS:
        raise ValueError(f"--space {key}={text}: unknown search-space kind '{kind}'; valid kinds: {', '.join(KINDS)}")
    if not sep or kind not in KINDS:
        value = yaml.safe_load(text)
        if isinstance(value, dict):
            return dimension_from_mapping(key, value)
        return Dimension("choice", (_tuple(value),))
    if kind in ("loguniform", "uniform", "randint"):
        bounds = rest.split(":")
        if len(bounds) != 2:
            raise ValueError(f"--space {key}={text}: a {kind} range is {kind}:LOW:HIGH")
        return Dimension(kind, tuple(_tuple(yaml.safe_load(b)) for b in bounds))
    try:  # a YAML flow sequence without its brackets: 8,16,24 or [3,3,3,3],[5,7,7,9]
        values = yaml.safe_load(f"[{rest}]")
    except yaml.YAMLError as err:
        raise ValueError(f"--space {key}={text}: cannot read the values of {kind} ({err.problem})") from err
    return Dimension(kind, tuple(_tuple(v) for v in values))


def dimension_from_mapping(key: str, value: dict[str, Any]) -> Dimension:
    """A YAML entry `{kind: loguniform, values: [1e-4, 3e-3]}` as a Dimension."""
    if set(value) - {"kind", "values"} or "kind" not in value:
        raise ValueError(f"search-space entry '{key}' must be a value or {{kind: ..., values: [...]}}, got {value}")
    values = value.get("values", [])
    return Dimension(value["kind"], tuple(_tuple(v) for v in (values if isinstance(values, list) else [values])))


def load_space_file(path: str | Path) -> SearchSpace:
    """A YAML mapping of keys to values or {kind, values} entries."""
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"search-space file {path} must hold a mapping of key: value or {{kind, values}}")
    return {str(k): dimension_from_mapping(k, v) if isinstance(v, dict) else Dimension("choice", (_tuple(v),))
            for k, v in data.items()}


def build_space(model: str, pairs: list[str], space_file: str | None = None, defaults: bool = True) -> SearchSpace:
    """The model's default space (zoo/search_spaces.py), updated by a YAML file, then by KEY=SPEC pairs."""
    space = default_space(model) if defaults else {}
    if space_file:
        space.update(load_space_file(space_file))
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--space expects KEY=SPEC (e.g. lr=loguniform:1e-4:3e-3), got '{pair}'")
        space[key] = parse_dimension(key, text)
    return space


def validate_space(space: SearchSpace, run: RunConfig) -> None:
    """Every key must be a searchable training field or an option of the model; every value must build."""
    for key, dim in space.items():
        samples = list(dim.values)
        if dim.kind == "randint":
            samples = [int(v) for v in dim.values]
        if key.startswith("model."):
            for value in samples:
                model_config(run.model, run.variant, **{**run.model_options, key[len("model."):]: value})
        elif key in PROFILE_KEYS:
            if dim.kind in ("choice", "grid", "randint") and not all(isinstance(v, (int, float)) for v in samples):
                raise ValueError(f"search-space key '{key}' takes numbers, got {samples}")
            for value in samples:
                dataclasses.replace(run, profile_options={**run.profile_options, key: value}).validate()
        else:
            raise ValueError(f"unknown search-space key '{key}': expected one of {', '.join(PROFILE_KEYS)} or "
                             f"model.<option> with an option of model '{run.model}' (`harness submit --option` names)")


def to_tune(space: SearchSpace) -> tuple[dict[str, Any], dict[str, Any]]:
    """Tune sampling objects of `space`, and those of the training fields alone (PBT's mutations)."""
    from ray import tune

    def convert(dim: Dimension):
        if dim.kind == "loguniform":
            return tune.loguniform(*dim.values)
        if dim.kind == "uniform":
            return tune.uniform(*dim.values)
        if dim.kind == "randint":
            return tune.randint(*dim.values)
        if dim.kind == "grid":
            return tune.grid_search(list(dim.values))
        return dim.values[0] if len(dim.values) == 1 else tune.choice(list(dim.values))

    converted = {k: convert(d) for k, d in space.items()}
    mutations = {k: v for k, v in converted.items() if k in PROFILE_KEYS and not _constant(space[k])}
    return converted, mutations


def trial_run(config: dict[str, Any]) -> RunConfig:
    """The RunConfig of one trial: the sweep's base run with this trial's sampled values."""
    run = RunConfig(**config["run"])
    profile, options = dict(run.profile_options), dict(run.model_options)
    for key, value in config.get("space", {}).items():
        value = _tuple(value)
        if key.startswith("model."):
            options[key[len("model."):]] = value
        else:
            profile[key] = value
    return dataclasses.replace(run, profile_options=profile, model_options=options)


# ----------------------------------------------------------------------------- trials


def _node_facts() -> dict[str, str]:
    """Where this process runs: Ray node id and IP, host name, whether it is the head node, and the worker
    process id (trials that ran one after another on a reused actor share it)."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    head = any(n["NodeID"] == node_id and "node:__internal_head__" in n.get("Resources", {}) for n in ray.nodes())
    return {"ray.node_id": node_id, "ray.node_ip": ray.util.get_node_ip_address(), "hostname": socket.gethostname(),
            "ray.head_node": str(head).lower(), "ray.worker_pid": str(os.getpid())}


def child_run(mlflow, config: dict[str, Any], run: RunConfig, trial_id: str, start_step: int) -> str:
    """The child run of trial `trial_id` under the sweep's parent: created once, reopened on every restart."""
    parent = config["parent_run_id"]
    experiment = tracking.experiment_id(mlflow, run.setting)
    found = mlflow.search_runs([experiment], filter_string=f"tags.sweep_parent = '{parent}' and tags.trial_id = '{trial_id}'")
    facts = _node_facts()
    if found:
        previous = found[0]
        run_id = previous.info.run_id
        attempts = int(previous.data.tags.get("attempts", "1")) + 1
        nodes = previous.data.tags.get("ray.node_ids", "") + "," + facts["ray.node_id"]
        # The status stays as the driver set it: a retry after a stop request sees KILLED and stops again.
        tracking.set_tags(mlflow, run_id, {**facts, "attempts": str(attempts), "ray.node_ids": nodes,
                                           f"attempt{attempts}.start_step": str(start_step),
                                           f"attempt{attempts}.ray.node_id": facts["ray.node_id"]})
        if start_step:
            print(f"[sweep] trial {trial_id} restarted (attempt {attempts}) from its checkpoint at step {start_step}",
                  flush=True)
        return run_id
    data = open_data(run.resolved_setting(), run.data_root)
    tags = {**run_tags(run, data.name, data.fingerprint()), "mlflow.parentRunId": parent, "sweep_parent": parent,
            "trial_id": trial_id, **facts, "attempts": "1", "ray.node_ids": facts["ray.node_id"],
            "attempt1.start_step": str(start_step), "attempt1.ray.node_id": facts["ray.node_id"]}
    if run.plugin_modules:  # a worker knows a plug-in file by its import name only: name and SHA-256 are the parent's
        tags.update({k: v for k, v in mlflow.get_run(parent).data.tags.items() if k.startswith("plugin")})
    name = f"{run.model}-{run.setting}-sweep-{parent[:6]}-{trial_id}"
    params = {**run.params(), **{f"sweep.{k}": v for k, v in config.get("space", {}).items()}}
    return tracking.start_run(mlflow, run.setting, name, tags, params)


def _checkpoint_step(checkpoint) -> int:
    if checkpoint is None:
        return 0
    from harness.runs.checkpoints import STATE

    with checkpoint.as_directory() as directory:
        return int(json.loads((Path(directory) / STATE).read_text())["step"])


def _log_hyperparameters(mlflow, run_id: str, config: dict[str, Any], step: int) -> None:
    """Searched numeric values as metrics at the step they took effect (PBT changes them mid-run)."""
    values = {f"hp/{k}": float(v) for k, v in config.get("space", {}).items() if isinstance(v, (int, float))}
    if values:
        tracking.log_metrics(mlflow, run_id, values, step)


def sweep_trial(config: dict[str, Any]) -> None:
    """The Tune trainable of one sweep trial: opens its child run, then trains on one or several workers."""
    from ray import tune

    from harness.runs.trial import train_evaluate, tune_api
    from zoo.plugins import import_module as import_plugin

    run = trial_run(config)
    for module in run.plugin_modules:  # the child run's params describe the model: its plug-in must be known first
        import_plugin(module)
    trial_id = tune.get_context().get_trial_id()
    start_step = _checkpoint_step(tune.get_checkpoint())
    mlflow = tracking.client(config["tracking_uri"])
    run_id = child_run(mlflow, config, run, trial_id, start_step)
    _log_hyperparameters(mlflow, run_id, config, start_step)
    if config["workers"] <= 1:
        train_evaluate(run, config["tracking_uri"], run_id, config["threads"], tune_api(), validate_every_checkpoint=True)
        return
    _fit_data_parallel(config, run, run_id, trial_id)


def _fit_data_parallel(config: dict[str, Any], run: RunConfig, run_id: str, trial_id: str) -> None:
    """Run the trial on `workers` Ray Train workers (harness/runs/distributed.py, shared with `harness submit`)."""
    from harness.runs.distributed import WorkerGroup, fit_data_parallel

    workers = config["workers"]
    group = WorkerGroup(workers, config["cpus_per_trial"] / workers, config["gpus_per_trial"] / workers,
                        max(1, int(config["cpus_per_trial"] / workers)))
    # the same name on a retry: Ray Train resumes from its latest checkpoint. A data-parallel trial
    # answers a stop only through Tune (README: a second Ctrl+C, or the grace time).
    fit_data_parallel(run, config["tracking_uri"], run_id, group, f"train-{trial_id}", config["train_storage"],
                      config["max_failures"], validate_every_checkpoint=True, stop_together=False)


# ----------------------------------------------------------------------------- driver


def _trial_resources(cfg: SweepConfig) -> dict[str, float]:
    if cfg.workers() > 1:
        # The Tune trial only drives the TorchTrainer, whose workers hold the trial's resources; Ray
        # refuses an empty resource request, so the driver holds a token share of one CPU.
        return {"cpu": DRIVER_CPU}
    return {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial}


def _param_space(cfg: SweepConfig, uri: str, parent: str, cluster: ClusterOptions) -> dict[str, Any]:
    tune_space, _ = to_tune(cfg.space)
    return {"run": dataclasses.asdict(cfg.run), "tracking_uri": uri, "parent_run_id": parent, "space": tune_space,
            "threads": max(1, int(cfg.cpus_per_trial)), "workers": cfg.workers(), "cpus_per_trial": cfg.cpus_per_trial,
            "gpus_per_trial": cfg.gpus_per_trial, "max_failures": cluster.max_failures,
            "train_storage": str(experiment_path(f"sweep-{parent}") / "train")}


def _tune_config(cfg: SweepConfig):
    from ray import tune

    profile = cfg.run.resolved_profile()
    _, mutations = to_tune(cfg.space)
    scheduler = SCHEDULERS.get(cfg.scheduler)(SchedulerContext(profile.steps, profile.checkpoint_every, mutations))
    return tune.TuneConfig(metric=METRIC, mode=MODE, num_samples=cfg.num_samples, scheduler=scheduler,
                           reuse_actors=REUSE_ACTORS)


def _local_cluster(cfg: SweepConfig, cluster: ClusterOptions) -> ClusterOptions:
    """A local cluster sees GPUs only when the trials ask for them."""
    return dataclasses.replace(cluster, gpus=cfg.gpus_per_trial)


def sweep(cfg: SweepConfig, cluster: ClusterOptions = ClusterOptions(max_failures=3),
          explicit_uri: str | None = None) -> SweepResult:
    """Run the sweep `cfg` on a local or given Ray cluster; record it in MLflow; return its trials."""
    run = cfg.run
    run.validate()
    run = run.with_setting_options()
    check_model(run.model, run.variant, run.model_options)  # a plug-in's forward must keep the image size
    if run.data_root is not None:
        run = dataclasses.replace(run, data_root=str(Path(run.data_root).resolve()))
    cfg = dataclasses.replace(cfg, run=run)
    cfg.validate()
    data = open_data(run.resolved_setting(), run.data_root)
    from harness.runs.budget import plan_budget, with_budget

    run = with_budget(run, plan_budget(run, data, cfg.workers()))  # a recipe's epochs become steps on this data
    cfg = dataclasses.replace(cfg, run=run)
    uri = tracking_uri(explicit_uri)
    mlflow = tracking.client(uri)
    name = f"{run.model}-{run.variant}-{run.setting}-sweep-{uuid.uuid4().hex[:6]}"
    tags = {**run_tags(run, data.name, data.fingerprint()), "role": "sweep", "sweep.scheduler": cfg.scheduler,
            "sweep.num_samples": str(cfg.num_samples), "sweep.workers_per_trial": str(cfg.workers())}
    params = {**run.params(), "sweep.json": cfg.to_json(), "sweep.max_failures": cluster.max_failures}
    parent = tracking.start_run(mlflow, run.setting, name, tags, params)
    log_plugin_file(mlflow, parent, run.model)
    path = experiment_path(f"sweep-{parent}")
    tracking.set_tags(mlflow, parent, {"ray_experiment": str(path)})
    print(f"MLflow parent run {parent} ({name}) in {uri}: {cfg.num_samples} sample(s), scheduler {cfg.scheduler}, "
          f"space {', '.join(cfg.space) or 'none'}", flush=True)
    return _fit_and_record(cfg, cluster, mlflow, uri, parent, restore=False)


def resume_sweep(parent: str, cluster: ClusterOptions = ClusterOptions(max_failures=3),
                 explicit_uri: str | None = None) -> SweepResult:
    """Continue an interrupted sweep: unfinished and errored trials go on from their checkpoints, in their own child runs."""
    from ray import tune

    uri = tracking_uri(explicit_uri)
    mlflow, previous = tracking.existing_run(uri, parent)
    if previous.data.tags.get("role") != "sweep" or "sweep.json" not in previous.data.params:
        raise ValueError(f"run {parent} is not a sweep's parent run (made by `harness sweep`)")
    if previous.info.status == "FINISHED":
        raise ValueError(f"sweep {parent} is already FINISHED; there is nothing to resume")
    path = Path(previous.data.tags["ray_experiment"])
    if not tune.Tuner.can_restore(str(path)):
        raise ValueError(f"sweep {parent} has no Ray experiment to resume at {path}")
    if path != experiment_path(path.name):
        raise ValueError(f"sweep {parent} keeps its state in {path.parent.parent}; "
                         f"resume it with RESTORATION_BENCH_HOME={path.parent.parent}")
    cfg = SweepConfig.from_json(previous.data.params["sweep.json"])
    check_resumable(parent, cfg.run.model, cfg.run.plugin_modules, previous.data.tags)  # its trials import the file
    tracking.reopen_for_resume(mlflow, previous)
    for child in children(mlflow, parent):  # unfinished trials go on in their own child runs
        if child.info.status in ("KILLED", "FAILED") and "stopped_early" not in child.data.tags:
            mlflow.update_run(child.info.run_id, status="RUNNING")
            if "error" in child.data.tags:
                mlflow.delete_tag(child.info.run_id, "error")
    print(f"Resuming sweep {parent} from {path}", flush=True)
    return _fit_and_record(cfg, cluster, mlflow, uri, parent, restore=True)


def _fit_and_record(cfg: SweepConfig, cluster: ClusterOptions, mlflow, uri: str, parent: str,
                    restore: bool) -> SweepResult:
    stopped = []

    def on_stop() -> None:
        stopped.append(True)
        hint = f"interrupted; resume with `harness sweep --resume {parent}`"
        _close_children(mlflow, parent, "KILLED", hint)  # each trial checkpoints its step and stops
        _mark_parent(mlflow, parent, "KILLED", hint)

    try:
        grid = run_grid(_param_space(cfg, uri, parent, cluster), f"sweep-{parent}", _local_cluster(cfg, cluster),
                        restore=restore, on_stop=on_stop, trainable=sweep_trial, resources=_trial_resources(cfg),
                        tune_config=None if restore else _tune_config(cfg))
    except KeyboardInterrupt:
        _close_children(mlflow, parent, "KILLED", f"interrupted; resume with `harness sweep --resume {parent}`")
        _mark_parent(mlflow, parent, "KILLED", f"interrupted; resume with `harness sweep --resume {parent}`")
        raise
    except Exception as err:
        _close_children(mlflow, parent, "FAILED", _error_summary(err))
        _mark_parent(mlflow, parent, "FAILED", _error_summary(err))
        raise RunFailedError(f"sweep {parent} failed: {_error_summary(err)}") from err
    return record_outcomes(mlflow, uri, parent, grid, cfg.scheduler, interrupted=bool(stopped))


def _mark_parent(mlflow, parent: str, status: str, error: str) -> None:
    tracking.set_tags(mlflow, parent, {"error": error})
    mlflow.set_terminated(parent, status)


def children(mlflow, parent: str) -> list:
    """Every child run of sweep `parent`."""
    experiment = mlflow.get_run(parent).info.experiment_id
    return mlflow.search_runs([experiment], filter_string=f"tags.sweep_parent = '{parent}'", max_results=5000)


def _close_children(mlflow, parent: str, status: str, error: str) -> None:
    for child in children(mlflow, parent):
        if child.info.status == "RUNNING":
            tracking.set_tags(mlflow, child.info.run_id, {"error": error})
            mlflow.set_terminated(child.info.run_id, status)


def record_outcomes(mlflow, uri: str, parent: str, grid, scheduler: str, interrupted: bool) -> SweepResult:
    """End every child run by its trial's outcome, tag the best finished trial, and end the parent.

    A trial that evaluated is FINISHED; one that crashed past its retries is FAILED; one the
    scheduler stopped early is KILLED (tag `stopped_early`); after an interruption, unfinished
    trials are KILLED and resumable. Only FINISHED runs can reach a leaderboard.
    """
    by_trial = {r.metrics["trial_id"]: r for r in grid if r.metrics and "trial_id" in r.metrics}
    resume_hint = f"interrupted; resume with `harness sweep --resume {parent}`"
    trials, best, failures = {}, None, []
    for child in children(mlflow, parent):
        run_id, trial_id = child.info.run_id, child.data.tags.get("trial_id")
        result = by_trial.get(trial_id)
        metrics = dict(result.metrics) if result is not None else {}
        if result is not None and result.error is not None and STOPPED in str(result.error):
            status, note = "KILLED", {"error": resume_hint}  # it saw its run KILLED, saved its step and stopped
        elif result is not None and result.error is not None:
            status, note = "FAILED", {"error": _error_summary(result.error)}
            failures.append(trial_id)
        elif metrics.get("phase") == "done":
            status, note = "FINISHED", {}
            if best is None or metrics.get(METRIC, -math.inf) > best[1]:
                best = (run_id, metrics.get(METRIC, -math.inf))
        elif interrupted:
            status, note = "KILLED", {"error": resume_hint}
        elif result is None:
            status, note = "FAILED", {"error": "the trial ended without reporting"}
            failures.append(trial_id)
        else:
            status, note = "KILLED", {"stopped_early": scheduler}
        if note:
            tracking.set_tags(mlflow, run_id, note)
        if child.info.status != status:
            mlflow.set_terminated(run_id, status)
        trials[run_id] = {"status": status, "trial_id": trial_id, "node_id": child.data.tags.get("ray.node_id"),
                          "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))}}
    if best is not None:
        tracking.set_tags(mlflow, best[0], {"sweep_best": "true"})
        tracking.set_tags(mlflow, parent, {"best_run_id": best[0]})
        tracking.log_metrics(mlflow, parent, {f"best/{METRIC}": best[1]}, step=0)
    if interrupted:
        _mark_parent(mlflow, parent, "KILLED", resume_hint)
        raise RunInterruptedError(f"sweep {parent} stopped before it finished; resume it with "
                                  f"`harness sweep --resume {parent}`")
    if best is None:
        _mark_parent(mlflow, parent, "FAILED", f"no trial finished ({len(failures)} failed)")
        raise RunFailedError(f"sweep {parent} failed: no trial finished")
    if failures:
        tracking.set_tags(mlflow, parent, {"failed_trials": ",".join(sorted(failures))})
    mlflow.set_terminated(parent, "FINISHED")
    return SweepResult(parent, uri, best[0], trials)

