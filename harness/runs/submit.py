"""`harness submit`: one run as a Ray Tune trial, tracked in an MLflow run the driver owns."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from harness.runs import tracking
from harness.runs.config import RunConfig
from harness.runs.store import home, tracking_uri
from harness.data import open_data
from harness.runs.environment import git_commit, package_versions
from harness.runs.plugins import check_model, check_resumable, log_plugin_file, plugin_tags


# How long an interrupted trial may take to checkpoint its current step before the driver stops
# it from its last periodic checkpoint; a cluster whose checkpoints take longer can raise it.
STOP_GRACE_S = float(os.environ.get("RESTORATION_BENCH_STOP_GRACE_S", "60"))


class RunFailedError(RuntimeError):
    """The run did not finish; its MLflow run is marked FAILED."""


class RunInterruptedError(RuntimeError):
    """The run was stopped (SIGINT/SIGTERM) before it finished; its MLflow run is marked KILLED."""


@dataclass(frozen=True)
class ClusterOptions:
    """Where and with what resources the trial runs."""

    address: str | None = None  # an existing Ray cluster; None starts a local one
    cpus: int | None = None  # CPUs for the trial (default: all of the local machine)
    gpus: float = 0.0
    max_failures: int = 0  # retries of a crashed trial from its last checkpoint
    py_modules: tuple[str, ...] = ()  # plug-in files every Ray worker imports (runtime_env py_modules)
    # data-parallel Ray Train workers of the run (None: one process; on --resume, the run's own)
    workers: int | None = None
    gpus_per_worker: float = 0.0

    def data_parallel(self) -> bool:
        """True when the run trains on Ray Train workers (several, or GPU workers)."""
        return (self.workers or 1) > 1 or self.gpus_per_worker > 0

    def init_ray(self, runtime_env: dict | None = None) -> None:
        """Connect to the cluster at `address`, or start a local one sized by `cpus` and `gpus`."""
        import ray

        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if self.address:
            ray.init(address=self.address, runtime_env=runtime_env)
            return
        # A local Ray prestarts an idle Python worker per CPU as the driver connects (the raylet reads
        # this variable); Tune's trial actors never take one (their runtime environment differs), so
        # they only compete for the CPUs at start-up: 1.9 of 43.8 CPU s of a smoke submission
        # (benchmarks/submit_cpu.py). A user's own setting wins.
        os.environ.setdefault("RAY_prestart_worker_first_driver", "0")
        ray.init(address="local", num_cpus=self.cpus, num_gpus=None if self.gpus else 0,
                 include_dashboard=False, configure_logging=False, runtime_env=runtime_env)


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
        "precision": run.precision,  # the leaderboard's precision column
        "git_commit": git_commit(),
        "mlflow.source.git.commit": git_commit(),
    }
    tags.update({f"version.{k}": v for k, v in package_versions().items()})
    if run.blind:
        tags["blind"] = "true"
    if run.train_level is not None:
        tags["dedicated_level"] = f"{run.train_level:g}"
    tags.update(plugin_tags(run.model))
    return tags


def _error_summary(error: BaseException) -> str:
    """The last meaningful line of a (possibly Ray-wrapped) exception."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def experiment_path(name: str) -> Path:
    """Where Ray Tune keeps the trials and checkpoints of experiment `name`."""
    return home() / "ray_results" / name


def run_grid(param_space: dict, name: str, cluster: ClusterOptions, cpus_per_trial: float | None = None,
             restore: bool = False, on_stop=None, trainable=None, resources: dict | None = None,
             tune_config=None):
    """Run `run_trial` over `param_space` (grid axes allowed) on a local or given Ray cluster.

    Returns Ray Tune's ResultGrid. Each trial gets `cpus_per_trial` CPUs (default: all). With
    `restore`, the experiment `name` continues where it stopped (Ray's Tuner.restore), each
    unfinished or errored trial from its last checkpoint. SIGTERM is handled like Ctrl+C: Tune
    stops the trials and saves its experiment state, so the run can be resumed; `on_stop()` runs
    first, so the tracking store says KILLED even if the whole process group is being killed.
    Sweeps pass their own `trainable`, per-trial `resources` (Tune's with_resources form; the
    param space then carries its own "threads") and `tune_config` (metric, scheduler, samples).
    """
    import ray
    from ray import tune

    from harness.runs.trial import run_trial

    trainable = trainable or run_trial

    started_here = not ray.is_initialized()
    if started_here:
        cluster.init_ray({"py_modules": list(cluster.py_modules)} if cluster.py_modules else None)
    try:
        if resources is None:
            cpus = cpus_per_trial or cluster.cpus or max(int(ray.available_resources().get("CPU", 1)), 1)
            resources, param_space = {"cpu": cpus, "gpu": cluster.gpus}, {**param_space, "threads": cpus}
        trainable = tune.with_resources(trainable, resources)
        if restore:
            tuner = tune.Tuner.restore(str(experiment_path(name)), trainable, resume_unfinished=True, resume_errored=True)
        else:
            tuner = tune.Tuner(
                trainable,
                param_space=param_space,
                tune_config=tune_config,
                run_config=tune.RunConfig(
                    name=name,
                    storage_path=str(experiment_path(name).parent),
                    failure_config=tune.FailureConfig(max_failures=cluster.max_failures),
                    verbose=0,
                ),
            )
        handled = threading.current_thread() is threading.main_thread()
        timers: list[threading.Timer] = []
        if handled:
            # SIGINT and SIGTERM are ours; Tune keeps SIGUSR1, its clean stop with saved state
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"

            def stop(signum, frame):
                if signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None):  # Tune has not started yet
                    raise KeyboardInterrupt
                if on_stop is None or timers:  # nothing polls for the stop, or a second signal: stop now
                    _stop_tune()
                    return
                on_stop()  # the trial sees its run KILLED, checkpoints the step it finished and stops
                print(f"[submit] stopping: the trial saves its current step (up to {STOP_GRACE_S:g} s; "
                      "signal again to stop at once from the last checkpoint)", flush=True)
                timers.append(threading.Timer(STOP_GRACE_S, _stop_tune))
                timers[0].daemon = True
                timers[0].start()

            previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
            # Tune installs its SIGUSR1 handler in each fit and never removes it: a stale one from an
            # earlier fit in this process (the ADS pipeline's previous stage) would swallow a stop
            # that arrives before this fit installs its own
            signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        try:
            return tuner.fit()
        finally:
            for timer in timers:
                timer.cancel()
            if handled:
                signal.signal(signal.SIGUSR1, signal.SIG_DFL)
                for s, handler in previous.items():
                    signal.signal(s, handler)
                os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
    finally:
        if started_here:
            ray.shutdown()


def _stop_tune() -> None:
    """Ask the running Tune fit to stop (SIGUSR1: it saves its state and ends the trials)."""
    if signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, None):  # the default action would kill us
        os.kill(os.getpid(), signal.SIGUSR1)


def scoring_run(mlflow, uri: str, run_id: str, score) -> SubmitResult:
    """Run `score()` (metrics) for started run `run_id`: FINISHED on success, KILLED on Ctrl+C, else FAILED
    with the error tagged; the one ending of `harness evaluate`'s runs (released weights, restored images)."""
    status = "FAILED"
    try:
        metrics = score()
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
    return SubmitResult(run_id, uri, mlflow.get_run(run_id).info.experiment_id, metrics)


def trial_outcome(result) -> dict[str, float]:
    """The metrics of a finished trial, or RunFailedError with the trial's own error line."""
    if result.error is not None:
        stopped = re.search(r"TrainingStopped: stopped on request after step (\d+)", str(result.error))
        if stopped:  # the trial saw the run marked KILLED and checkpointed its step (harness/runs/trial.py)
            raise RunInterruptedError(f"stopped after step {stopped.group(1)}, which is checkpointed")
        raise RunFailedError(_error_summary(result.error))
    if result.metrics.get("phase") != "done":
        # No error and no evaluation: Tune stopped the trial on SIGINT/SIGTERM.
        step = result.metrics.get("step")
        raise RunInterruptedError("stopped before it finished" + (f" (last checkpoint at step {step})" if step else ""))
    return {k: v for k, v in result.metrics.items() if k.startswith(("psnr/", "ssim/", "level_error/"))}


def _fit(run: RunConfig, uri: str, run_id: str, cluster: ClusterOptions) -> dict[str, float]:
    space = {"run": dataclasses.asdict(run), "tracking_uri": uri, "run_id": run_id}
    resources = None
    if cluster.data_parallel():  # the trial drives Ray Train workers (harness/runs/distributed.py)
        space, resources = _data_parallel_space(space, run_id, cluster)
    return trial_outcome(run_grid(space, f"submit-{run_id}", _with_gpus(cluster), on_stop=_mark_killed(uri, run_id),
                                  resources=resources)[0])


def _data_parallel_space(space: dict, run_id: str, cluster: ClusterOptions) -> tuple[dict, dict[str, float]]:
    """The trial config and resources of a data-parallel run: the trial holds a token CPU, its workers the rest."""
    from harness.runs.distributed import DRIVER_CPU

    total = cluster.cpus or os.cpu_count() or 1
    return ({**space, "data_parallel": True, "cpus": total, "threads": 1, "max_failures": cluster.max_failures,
             "train_storage": str(experiment_path(f"submit-{run_id}") / "train")}, {"cpu": DRIVER_CPU})


def _with_gpus(cluster: ClusterOptions) -> ClusterOptions:
    """A local Ray cluster started for GPU workers must see the GPUs."""
    if cluster.gpus_per_worker and not cluster.gpus:
        return dataclasses.replace(cluster, gpus=cluster.gpus_per_worker * (cluster.workers or 1))
    return cluster


def _mark_killed(uri: str, run_id: str):
    """A callback that records at once that run `run_id` was stopped and how to resume it."""

    def mark() -> None:
        mlflow = tracking.client(uri)
        tracking.set_tags(mlflow, run_id, {"error": f"interrupted; resume with `harness submit --resume {run_id}`"})
        mlflow.set_terminated(run_id, "KILLED")

    return mark


def submit(run: RunConfig, cluster: ClusterOptions = ClusterOptions(), explicit_uri: str | None = None) -> SubmitResult:
    """Validate, track, train and evaluate one run; the MLflow run ends FINISHED only on success."""
    run.validate()
    run = run.with_setting_options()
    check_model(run.model, run.variant, run.model_options)  # a plug-in's forward must keep the image size
    if run.data_root is not None:
        run = dataclasses.replace(run, data_root=str(Path(run.data_root).resolve()))
    check_cluster(run, cluster)
    data = open_data(run.resolved_setting(), run.data_root)
    from harness.runs.budget import plan_budget, with_budget

    budget = plan_budget(run, data, cluster.workers or 1)  # a recipe's epochs become steps on this data
    run = with_budget(run, budget)
    uri = tracking_uri(explicit_uri)
    mlflow = tracking.client(uri)
    run_name = f"{run.model}-{run.variant}-{run.setting}-{uuid.uuid4().hex[:6]}"
    tags = {**run_tags(run, data.name, data.fingerprint()), "budget": budget.label(), **_worker_tags(cluster)}
    run_id = tracking.start_run(mlflow, run.setting, run_name, tags, {**run.params(), **budget.params()})
    log_plugin_file(mlflow, run_id, run.model)
    print(f"MLflow run {run_id} ({run_name}) in {uri}", flush=True)
    tracking.set_tags(mlflow, run_id, {"ray_experiment": str(experiment_path(f"submit-{run_id}"))})
    return _track_fit(mlflow, run_id, uri, lambda: _fit(run, uri, run_id, cluster))


def check_cluster(run: RunConfig, cluster: ClusterOptions) -> None:
    """Refuse bad worker options in one line each, before Ray or MLflow start."""
    from harness.runs.budget import check_split

    if cluster.workers is not None and cluster.workers < 1:
        raise ValueError(f"--workers must be a positive number of data-parallel workers, got {cluster.workers}")
    if cluster.gpus_per_worker < 0:
        raise ValueError(f"--gpus-per-worker must be >= 0, got {cluster.gpus_per_worker}")
    if cluster.gpus_per_worker and cluster.address is None:
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"--gpus-per-worker {cluster.gpus_per_worker:g}: this machine has no CUDA GPU "
                             "(give --address of a Ray cluster with GPUs, or leave the option out)")
    profile = run.resolved_profile()
    check_split(profile.batch_size, cluster.workers or 1, profile.accumulate)


def _worker_tags(cluster: ClusterOptions) -> dict[str, str]:
    """Tags that say where a data-parallel run trains now (read by its trial; --resume may change them)."""
    if not cluster.data_parallel():
        return {}
    return {"data_parallel": "true", "workers": str(cluster.workers or 1), "gpus_per_worker": f"{cluster.gpus_per_worker:g}"}


def _track_fit(mlflow, run_id: str, uri: str, fit) -> SubmitResult:
    """Run `fit` and end the MLflow run FINISHED, KILLED (interrupted) or FAILED accordingly."""
    status = "FAILED"
    try:
        metrics = fit()
        status = "FINISHED"
        if "error" in mlflow.get_run(run_id).data.tags:  # a stop that came during the evaluation
            mlflow.delete_tag(run_id, "error")
    except (KeyboardInterrupt, RunInterruptedError) as err:
        status = "KILLED"
        message = f"interrupted: {err}" if str(err) else "interrupted by the user"
        tracking.set_tags(mlflow, run_id, {"error": f"{message}; resume with `harness submit --resume {run_id}`"})
        if isinstance(err, RunInterruptedError):
            raise RunInterruptedError(f"run {run_id} {err}; resume it with `harness submit --resume {run_id}`") from err
        raise
    except Exception as err:
        tracking.set_tags(mlflow, run_id, {"error": _error_summary(err)})
        raise RunFailedError(f"run {run_id} failed: {_error_summary(err)}") from err
    finally:
        mlflow.set_terminated(run_id, status)
    experiment = mlflow.get_run(run_id).info.experiment_id
    return SubmitResult(run_id, uri, experiment, metrics)


def resume(run_id: str, cluster: ClusterOptions = ClusterOptions(), explicit_uri: str | None = None) -> SubmitResult:
    """Continue an interrupted or crashed run from its last Ray checkpoint, in the same MLflow run."""
    uri = tracking_uri(explicit_uri)
    mlflow, previous = tracking.existing_run(uri, run_id)
    if previous.info.status == "FINISHED":
        raise ValueError(f"run {run_id} is already FINISHED; there is nothing to resume")
    if "run.json" not in previous.data.params:
        raise ValueError(f"run {run_id} was not made by `harness submit` (it has no run.json parameter)")
    run = RunConfig(**json.loads(previous.data.params["run.json"]))
    check_resumable(run_id, run.model, run.plugin_modules, previous.data.tags)  # before Ray: the file is needed
    parallel = previous.data.tags.get("data_parallel") == "true"
    if cluster.data_parallel() and not parallel:
        raise ValueError(f"run {run_id} trained in one process and resumes in one; --workers and --gpus-per-worker "
                         "apply to runs submitted with them")
    if parallel:  # any number of workers: every step's batch is the same whatever its number of slices
        if cluster.workers is None:
            cluster = dataclasses.replace(cluster, workers=int(previous.data.tags.get("workers", "1")),
                                          gpus_per_worker=cluster.gpus_per_worker
                                          or float(previous.data.tags.get("gpus_per_worker", "0")))
        check_cluster(run, cluster)
    from ray import tune  # only now: the checks above answer bad input without importing Ray

    path = Path(previous.data.tags.get("ray_experiment", experiment_path(f"submit-{run_id}")))
    if not tune.Tuner.can_restore(str(path)):
        raise ValueError(f"run {run_id} has no Ray experiment to resume at {path}")
    if path != experiment_path(path.name):
        raise ValueError(f"run {run_id} was run with its state in {path.parent.parent}; "
                         f"resume it with RESTORATION_BENCH_HOME={path.parent.parent}")
    tracking.reopen_for_resume(mlflow, previous)
    resources = None
    if parallel:
        from harness.runs.distributed import DRIVER_CPU

        tracking.set_tags(mlflow, run_id, {"workers": str(cluster.workers), "gpus_per_worker": f"{cluster.gpus_per_worker:g}"})
        resources = {"cpu": DRIVER_CPU}
    print(f"Resuming MLflow run {run_id} ({run.model} on {run.setting}) from {path}"
          + (f" on {cluster.workers} worker(s)" if parallel else ""), flush=True)

    def fit() -> dict[str, float]:
        return trial_outcome(run_grid({}, path.name, _with_gpus(cluster), restore=True, on_stop=_mark_killed(uri, run_id),
                                      resources=resources)[0])

    return _track_fit(mlflow, run_id, uri, fit)
