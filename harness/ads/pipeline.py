"""The ADS pipeline as one tracked job: an MLflow parent run and one child run per stage.

Stages run in order, each as a Ray Tune trial (harness/ads/stages.py). A stage's child run ends
FINISHED only after its output artifact is stored; the parent ends FINISHED after the last
stage. When the pipeline is interrupted (Ctrl+C, SIGTERM: KILLED) or a stage fails (FAILED),
`harness submit --resume PARENT_ID` reuses every FINISHED stage and reruns the others, from the
first unfinished one. Rows on the leaderboard: the `unified` child (model = the host, e.g.
`nafnet`) and the `ads` child (model = `nafnet_ads`); the parent and stages 2-3 carry a `role`
tag and stay off it.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
import uuid

from harness.runs import tracking
from harness.ads.stages import STAGES
from harness.runs.config import RunConfig
from harness.runs.store import tracking_uri
from harness.data import open_data
from harness.runs.submit import (ClusterOptions, RunFailedError, RunInterruptedError, SubmitResult, _error_summary,
                            experiment_path, run_tags)
from zoo import model_config
from zoo.ads import PIPELINE_MODELS

ROLE = "ads-pipeline"


def host_run(run: RunConfig) -> RunConfig:
    """The unified model's run: the host model with the ADS host configuration's non-default fields."""
    host = PIPELINE_MODELS[run.model]
    ads_host = model_config(run.model, run.variant, **run.model_options).host
    default = model_config(host, run.variant)
    options = {f.name: getattr(ads_host, f.name) for f in dataclasses.fields(ads_host)
               if getattr(ads_host, f.name) != getattr(default, f.name)}
    return dataclasses.replace(run, model=host, model_options=options)


def _stage_tags(run: RunConfig, stage: str, parent: str, data) -> tuple[RunConfig, dict[str, str]]:
    """The RunConfig a stage's child run records and its tags (leaderboard rows for unified and ads)."""
    child = host_run(run) if stage == "unified" else run
    tags = {**run_tags(child, data.name, data.fingerprint()), "mlflow.parentRunId": parent, "ads_stage": stage,
            "ads_pipeline": parent, "ads_selection": model_config(run.model, run.variant, **run.model_options).selection}
    if stage in ("masks", "classifier"):
        tags["role"] = "ads-stage"  # no restoration scores: not a leaderboard row
    return child, tags


def _children(mlflow, parent: str) -> dict[str, object]:
    """The existing child run of each stage of pipeline `parent`."""
    experiment = mlflow.get_run(parent).info.experiment_id
    runs = mlflow.search_runs([experiment], filter_string=f"tags.ads_pipeline = '{parent}'")
    return {r.data.tags["ads_stage"]: r for r in runs}


def _run_stage_trial(stage: str, space: dict, name: str, cluster: ClusterOptions) -> dict[str, float]:
    """Run one stage as a Ray Tune trial; its metrics, or RunFailedError / RunInterruptedError."""
    from ray import tune

    from harness.ads.stages import run_stage

    import ray

    cpus = cluster.cpus or max(int(ray.available_resources().get("CPU", 1)), 1)
    tuner = tune.Tuner(
        tune.with_resources(run_stage, {"cpu": cpus, "gpu": cluster.gpus}),
        param_space={**space, "stage": stage, "threads": cpus},
        run_config=tune.RunConfig(name=name, storage_path=str(experiment_path(name).parent),
                                  failure_config=tune.FailureConfig(max_failures=cluster.max_failures), verbose=0),
    )
    handled = threading.current_thread() is threading.main_thread()
    if handled:  # Tune never removes the SIGUSR1 handler of an earlier stage's fit: a stop sent to it is lost
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    try:
        (result,) = tuner.fit()
    finally:
        if handled:
            signal.signal(signal.SIGUSR1, signal.SIG_DFL)  # outside a fit, a stop interrupts the driver itself
    if result.error is not None:
        raise RunFailedError(f"stage '{stage}': {_error_summary(result.error)}")
    if result.metrics.get("phase") != "done":
        raise RunInterruptedError(f"stopped during stage '{stage}'")
    return {k: v for k, v in result.metrics.items() if k.startswith(("psnr/", "ssim/", "classifier/"))}


def _execute(run: RunConfig, parent: str, uri: str, cluster: ClusterOptions, on_sigterm=None,
             stopping: threading.Event | None = None, reuse: dict[str, str] | None = None) -> dict[str, float]:
    """Run every unfinished stage of pipeline `parent` in order; the ADS model's metrics.

    `reuse` maps stages to FINISHED child runs of another pipeline that stand in for them (a unified
    model and classifier shared by pipelines that differ in their selection method only).

    `on_sigterm` is (re)installed as the SIGINT and SIGTERM handler once Ray has started, since
    ray.init installs its own handler, which would end the driver without recording anything. Once
    `stopping` is set no further stage starts.
    """
    import ray

    mlflow = tracking.client(uri)
    data = open_data(run.resolved_setting(), run.data_root)
    existing = _children(mlflow, parent)
    inputs: dict[str, str] = {}
    metrics: dict[str, float] = {}
    started = False
    try:
        for stage in STAGES:
            if stopping is not None and stopping.is_set():
                raise RunInterruptedError(f"stopped before stage '{stage}'")
            if stage in (reuse or {}):
                inputs[stage] = reuse[stage]
                print(f"[ads] stage '{stage}': reused from run {reuse[stage]}", flush=True)
                continue
            child = existing.get(stage)
            if child is not None and child.info.status == "FINISHED":
                inputs[stage] = child.info.run_id
                print(f"[ads] stage '{stage}' already FINISHED in run {child.info.run_id}: reused", flush=True)
                continue
            child_run, tags = _stage_tags(run, stage, parent, data)
            if child is None:
                child_id = tracking.start_run(mlflow, run.setting, f"{run.model}-{stage}-{parent[:6]}", tags,
                                              child_run.params())
            else:  # rerun an interrupted or failed stage in its own child run
                child_id = child.info.run_id
                mlflow.update_run(child_id, status="RUNNING")
                if "error" in child.data.tags:
                    mlflow.delete_tag(child_id, "error")
            if not started and not ray.is_initialized():
                cluster.init_ray()
                started = True
                if on_sigterm is not None:
                    for stop_signal in (signal.SIGINT, signal.SIGTERM):
                        signal.signal(stop_signal, on_sigterm)
            space = {"run": dataclasses.asdict(run), "tracking_uri": uri, "run_id": child_id, "inputs": dict(inputs)}
            begin = time.monotonic()
            try:
                outcome = _run_stage_trial(stage, space, f"ads-{parent}-{stage}", cluster)
            except BaseException as err:
                killed = isinstance(err, (KeyboardInterrupt, RunInterruptedError))
                tracking.set_tags(mlflow, child_id, {"error": _error_summary(err) if not killed else "interrupted"})
                mlflow.set_terminated(child_id, "KILLED" if killed else "FAILED")
                raise
            tracking.set_tags(mlflow, child_id, {"stage_seconds": f"{time.monotonic() - begin:.1f}"})
            mlflow.set_terminated(child_id, "FINISHED")
            print(f"[ads] stage '{stage}' FINISHED in {time.monotonic() - begin:.1f} s (run {child_id})", flush=True)
            inputs[stage] = child_id
            metrics = outcome
    finally:
        if started:
            ray.shutdown()
    tracking.set_tags(mlflow, parent, {f"ads_stage_run.{s}": r for s, r in inputs.items()})
    return metrics


def _track(mlflow, parent: str, uri: str, run: RunConfig, cluster: ClusterOptions,
           reuse: dict[str, str] | None = None) -> SubmitResult:
    """Run the pipeline and end the parent FINISHED, KILLED (interrupted) or FAILED."""
    resume_hint = f"resume with `harness submit --resume {parent}`"
    status = "FAILED"
    forward = threading.current_thread() is threading.main_thread()
    stopping = threading.Event()
    if forward:  # Ctrl+C or SIGTERM: Tune stops a running stage at its next report; between stages, stop here

        def stop(signum, frame):
            if not stopping.is_set():
                stopping.set()
                tracking.set_tags(mlflow, parent, {"error": f"interrupted; {resume_hint}"})
                mlflow.set_terminated(parent, "KILLED")
            if signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None):  # no stage's fit is running
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGUSR1)  # the running fit's own handler: it stops the stage's trial

        previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # Ctrl+C is ours too; Tune keeps SIGUSR1
    try:
        metrics = _execute(run, parent, uri, cluster, stop if forward else None, stopping, reuse)
        status = "FINISHED"
    except (KeyboardInterrupt, RunInterruptedError) as err:
        status = "KILLED"
        tracking.set_tags(mlflow, parent, {"error": f"interrupted: {err or 'by the user'}; {resume_hint}"})
        raise RunInterruptedError(f"ADS pipeline {parent} interrupted; {resume_hint}") from err
    except Exception as err:
        tracking.set_tags(mlflow, parent, {"error": _error_summary(err)})
        raise RunFailedError(f"ADS pipeline {parent} failed: {_error_summary(err)}; {resume_hint}") from err
    finally:
        if forward:
            for stop_signal, handler in previous.items():
                signal.signal(stop_signal, handler)
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        mlflow.set_terminated(parent, status)
    tracking.log_metrics(mlflow, parent, metrics, step=run.resolved_profile().steps)
    experiment = mlflow.get_run(parent).info.experiment_id
    return SubmitResult(parent, uri, experiment, metrics)


REUSABLE = ("unified", "classifier")  # stages that do not depend on the selection method or q


def submit_pipeline(run: RunConfig, cluster: ClusterOptions = ClusterOptions(),
                    explicit_uri: str | None = None, reuse: dict[str, str] | None = None) -> SubmitResult:
    """Validate, then run ADS' four stages under a new MLflow parent run; the ADS model's metrics.

    `reuse` ({stage: run id}) takes the unified model and/or classifier of another pipeline's FINISHED
    stages instead of training them again (recorded as `ads_reuse.<stage>` tags, kept on resume).
    """
    run.validate()
    run = run.with_setting_options()
    if run.blind or run.train_level is not None:
        raise ValueError("the ADS pipeline trains on a setting's fixed tasks; --blind and dedicated levels do not apply")
    data = open_data(run.resolved_setting(), run.data_root)
    uri = tracking_uri(explicit_uri)
    mlflow = tracking.client(uri)
    name = f"{run.model}-{run.variant}-{run.setting}-pipeline-{uuid.uuid4().hex[:6]}"
    reuse = dict(reuse or {})
    for stage, run_id in reuse.items():
        if stage not in REUSABLE:
            raise ValueError(f"ADS stage '{stage}' depends on the selection method; only {', '.join(REUSABLE)} can be reused")
        if mlflow.get_run(run_id).info.status != "FINISHED":
            raise ValueError(f"run {run_id} (stage '{stage}' to reuse) is not FINISHED")
    tags = {**run_tags(run, data.name, data.fingerprint()), "role": ROLE, "ads_stages": ",".join(STAGES),
            "ads_selection": model_config(run.model, run.variant, **run.model_options).selection,
            **{f"ads_reuse.{stage}": run_id for stage, run_id in reuse.items()}}
    parent = tracking.start_run(mlflow, run.setting, name, tags, run.params())
    print(f"MLflow parent run {parent} ({name}): ADS stages {', '.join(STAGES)} in {uri}", flush=True)
    return _track(mlflow, parent, uri, run, cluster, reuse)


def is_pipeline_run(run_id: str, explicit_uri: str | None = None) -> bool:
    """True when `run_id` is the parent run of an ADS pipeline."""
    try:
        return tracking.existing_run(tracking_uri(explicit_uri), run_id)[1].data.tags.get("role") == ROLE
    except ValueError:  # no such run (or no store): not a pipeline
        return False


def resume_pipeline(parent: str, cluster: ClusterOptions = ClusterOptions(),
                    explicit_uri: str | None = None) -> SubmitResult:
    """Continue pipeline `parent` from its first unfinished stage, in the same MLflow runs."""
    uri = tracking_uri(explicit_uri)
    mlflow, previous = tracking.existing_run(uri, parent)
    if previous.info.status == "FINISHED":
        raise ValueError(f"ADS pipeline {parent} is already FINISHED; there is nothing to resume")
    run = RunConfig(**json.loads(previous.data.params["run.json"]))
    tracking.reopen_for_resume(mlflow, previous)
    reuse = {key[len("ads_reuse."):]: value for key, value in previous.data.tags.items() if key.startswith("ads_reuse.")}
    print(f"Resuming ADS pipeline {parent} ({run.model} on {run.setting})", flush=True)
    return _track(mlflow, parent, uri, run, cluster, reuse)
